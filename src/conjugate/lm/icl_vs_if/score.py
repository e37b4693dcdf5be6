"""Scoring of ICL-vs-IF outputs, and of CSVs in the authors' released format.

Rules (SPEC §2a, as in the authors' ``evaluate_accuracy.py``):

- The output is first normalised: escaped underscores ``\\_`` (Markdown habits of tuned models) become ``_``.
- **ICL-correct**: the normalised output starts with the ICL answer, either directly or after exactly one
  leading space (``" What is 7 times 12?"`` and ``"What is..."`` both count for ``What``).
- **Instruction-following** (our addition, to say where the lost ICL accuracy went): the output is not
  ICL-correct and contains the IF answer as a whole word, case-insensitively — not preceded or followed by a
  letter, digit or underscore (Unicode ``\\w``). ``"84"``, ``" The answer is 84."`` and ``" birds"`` count;
  ``"840"`` does not. The two outcomes are exclusive; an output can be neither.

A fill-in-the-blank prompt whose missing word has one or two characters (``A``, ``La``, ``My``) is
instruction-followed by chance in most outputs, so the summary also gives the IF rate on the fill-in-the-blank
prompts whose missing word has at least :data:`FILLBLANK_MIN_CHARS` characters (``if_rate_fillblank_3plus``).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..textio import read_text

LEGACY_COLUMNS = ("prompt", "icl_ans", "if_ans", "config", "model_outputs")
LEGACY_ICL = {"capslock": "capitalize", "repeat": "repeat"}
LEGACY_IF = {"math": "math", "startblank": "fillblank"}
LEGACY_LANG = {"ls": "leet", "pl": "piglatin"}
FILLBLANK_MIN_CHARS = 3


def normalize(output: str) -> str:
    """Undo Markdown-escaped underscores."""
    return output.replace("\\_", "_")


def icl_correct(output: str, icl_answer: str) -> bool:
    """The output starts with the ICL answer, with or without one leading space."""
    out = normalize(output)
    return out.startswith(icl_answer) or out.startswith(" " + icl_answer)


def follows_instruction(output: str, icl_answer: str, if_answer: str) -> bool:
    """Not ICL-correct, and the IF answer appears as a whole word (case-insensitive)."""
    if icl_correct(output, icl_answer):
        return False
    answer = if_answer.strip().casefold()
    if not answer:
        return False
    pattern = rf"(?<!\w){re.escape(answer)}(?!\w)"
    return re.search(pattern, normalize(output).casefold()) is not None


def score_row(row: dict, output: str, model: str) -> dict:
    """One scored prompt: identifiers, the output, and both outcomes."""
    return {"model": model, "id": row["id"], "task": f"{row['icl_task']}-{row['if_task']}",
            "icl_task": row["icl_task"], "if_task": row["if_task"], "lang": row["lang"],
            "icl_answer": row["icl_answer"], "if_answer": row["if_answer"], "output": output,
            "icl_correct": icl_correct(output, row["icl_answer"]),
            "if_follow": follows_instruction(output, row["icl_answer"], row["if_answer"])}


def _mean(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def missing_word_chars(row: dict) -> int | None:
    """The length of a fill-in-the-blank prompt's missing word (its blank, the ICL answer); None for others."""
    return len(row["icl_answer"]) if row["if_task"] == "fillblank" else None


def default_pairs(models: Sequence[str]) -> dict[str, str]:
    """Every model after the first against the first: ``{tuned: base}``."""
    return {m: models[0] for m in models[1:]}


def check_pairs(models: Sequence[str], pairs: Mapping[str, str]) -> dict[str, str]:
    """``{tuned: base}`` with both among ``models`` and no model its own base (errors name the pair)."""
    for tuned, base in pairs.items():
        for name in (tuned, base):
            if name not in models:
                raise ValueError(f"pair {tuned}={base}: no model {name!r}; models: {', '.join(models)}")
        if tuned == base:
            raise ValueError(f"pair {tuned}={base}: a model cannot be its own base")
    return dict(pairs)


def aggregate(scored: Iterable[dict], models: Sequence[str], pairs: Mapping[str, str] | None = None) -> dict:
    """Per-model, per-language ICL accuracy and IF rate (also on the fill-in-the-blank prompts whose missing word
    has ≥ :data:`FILLBLANK_MIN_CHARS` characters), per-task accuracy, and the drop base → tuned.

    ``pairs`` maps each tuned model to its own base (default :func:`default_pairs`: ``models[0]`` is the base of
    all others); ``drop[tuned][lang] = accuracy[base][lang] - accuracy[tuned][lang]`` for each pair, and
    ``pairs`` is in the summary whenever ``drop`` is.
    """
    pairs = default_pairs(models) if pairs is None else check_pairs(models, pairs)
    acc: dict = defaultdict(lambda: defaultdict(list))
    ifr: dict = defaultdict(lambda: defaultdict(list))
    ifr_long: dict = defaultdict(lambda: defaultdict(list))
    by_task: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    ids: dict = defaultdict(set)
    long_ids: dict = defaultdict(set)
    langs: list[str] = []
    for s in scored:
        if s["lang"] not in langs:
            langs.append(s["lang"])
        acc[s["model"]][s["lang"]].append(s["icl_correct"])
        ifr[s["model"]][s["lang"]].append(s["if_follow"])
        by_task[s["model"]][s["task"]][s["lang"]].append(s["icl_correct"])
        ids[s["lang"]].add(s["id"])
        chars = missing_word_chars(s)
        if chars is not None and chars >= FILLBLANK_MIN_CHARS:
            ifr_long[s["model"]][s["lang"]].append(s["if_follow"])
            long_ids[s["lang"]].add(s["id"])
    accuracy = {m: {lang: _mean(acc[m][lang]) for lang in langs} for m in models}
    summary = {
        "models": list(models),
        "languages": langs,
        "accuracy": accuracy,
        "if_rate": {m: {lang: _mean(ifr[m][lang]) for lang in langs} for m in models},
        "if_rate_fillblank_3plus": {m: {lang: _mean(ifr_long[m][lang]) for lang in langs} for m in models},
        "n": {lang: len(ids[lang]) for lang in langs},
        "n_fillblank_3plus": {lang: len(long_ids[lang]) for lang in langs},
        "accuracy_by_task": {m: {t: {lang: _mean(v) for lang, v in per.items()} for t, per in by_task[m].items()}
                             for m in models},
    }
    if pairs:
        summary["pairs"] = pairs
        summary["drop"] = {m: {lang: accuracy[base][lang] - accuracy[m][lang] for lang in langs}
                           for m, base in pairs.items()}
    return summary


SCORE_COLUMNS = ("model", "id", "task", "icl_task", "if_task", "lang", "icl_answer", "if_answer", "output",
                 "icl_correct", "if_follow")


def scores_csv(scored: Iterable[dict]) -> str:
    """The per-prompt scores as CSV text."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SCORE_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for s in scored:
        w.writerow({**s, "icl_correct": int(s["icl_correct"]), "if_follow": int(s["if_follow"])})
    return buf.getvalue()


# ---------------------------------------------------------------- the authors' released CSV format

def parse_legacy_config(config: str) -> tuple[str, str, str]:
    """``capslock-math-instr-input-fr-2shot`` → (``capitalize``, ``math``, ``fr``)."""
    parts = config.split("-")
    if len(parts) < 6 or parts[0] not in LEGACY_ICL or parts[1] not in LEGACY_IF:
        raise ValueError(f"config {config!r} is not <icl>-<if>-<instr>-<template>-<lang>-<k>shot")
    lang = parts[-2]
    return LEGACY_ICL[parts[0]], LEGACY_IF[parts[1]], LEGACY_LANG.get(lang, lang)


def legacy_answer(answer: str) -> str:
    """The released answers carry one leading space (``" What"``); the French quirk of the released
    evaluation (``" Qu"`` meant ``" Combien"``) is applied as the authors did."""
    answer = {" Qu": " Combien", " QU": " COMBIEN"}.get(answer, answer)
    return answer[1:] if answer.startswith(" ") else answer


def read_legacy_csv(path: str | Path, model: str | None = None) -> list[dict]:
    """Scored rows from one released-format CSV (one model's outputs); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CSV file")
    model = model or path.stem
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LEGACY_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(LEGACY_COLUMNS)}")
        scored = []
        for i, rec in enumerate(reader):
            try:
                icl_task, if_task, lang = parse_legacy_config(rec["config"] or "")
            except ValueError as e:
                raise ValueError(f"{path}:{reader.line_num}: {e}") from None
            if not rec["icl_ans"]:
                raise ValueError(f"{path}:{reader.line_num}: empty icl_ans")
            row = {"id": f"{rec['config']}-{i:05d}", "icl_task": icl_task, "if_task": if_task, "lang": lang,
                   "icl_answer": legacy_answer(rec["icl_ans"]), "if_answer": legacy_answer(rec["if_ans"] or "")}
            scored.append(score_row(row, rec["model_outputs"] or "", model))
    if not scored:
        raise ValueError(f"{path}: no rows")
    return scored
