"""Scoring rules of the XNLI study and the summary of a run.

- **generate** (the paper's metric): greedy decoding of at most 10 tokens; an item is correct when the output,
  stripped of surrounding whitespace, starts with the gold label word, compared case-insensitively (Unicode case
  folding). :func:`parse_label` names the label whose word the output starts with (``None`` when none does), so
  a generated answer can be compared with the log-likelihood one.
  The authors' script used a slightly different test — case-sensitive, and the label at position 0 or 1 of the
  raw output (``out.startswith(w) or out[1:].startswith(w)``); :func:`correct_exact_rule` implements it and runs
  report its accuracy too, so the two can be compared.
- **loglik**: the three continuations (``" True"``, ``" Neither"``, ``" False"``) are scored after the prompt;
  the prediction is the argmax of the summed log-probabilities (ties go to the lower label id).
- **agreement** (``both``): the share of items where the generated label (:func:`parse_label`) equals the
  log-likelihood prediction; an output that starts with no label word disagrees.

A stored prediction keeps what the model produced (its ``output``, or its three ``scores``); whatever depends on
the gold label (``correct``, ``correct_exact``, ``gold``) is recomputed from the current data by :func:`rescore`
whenever a summary is made, so a data file whose labels changed is never scored with the old ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .templates import label_words

MODES = ("generate", "loglik")


def parse_label(output: str, lang: str) -> int | None:
    """The label id whose word the stripped, case-folded output starts with (the longest such word), or None."""
    text = output.strip().casefold()
    best, best_len = None, -1
    for i, word in enumerate(label_words(lang)):
        w = word.casefold()
        if text.startswith(w) and len(w) > best_len:
            best, best_len = i, len(w)
    return best


def correct_generate(output: str, lang: str, label: int) -> bool:
    """The paper's metric as specified: the stripped output starts with the gold word, case-insensitively."""
    return output.strip().casefold().startswith(label_words(lang)[label].casefold())


def correct_exact_rule(output: str, lang: str, label: int) -> bool:
    """The authors' script's test: case-sensitive, the word at character 0 or 1 of the raw output."""
    word = label_words(lang)[label]
    return output.startswith(word) or output[1:].startswith(word)


def argmax(scores: Sequence[float]) -> int:
    """Index of the largest score (first on ties); NaN never wins."""
    best = 0
    for i, s in enumerate(scores):
        if not math.isnan(s) and (math.isnan(scores[best]) or s > scores[best]):
            best = i
    return best


def rescore(row: dict, item: dict) -> dict:
    """``row`` (a stored prediction) scored against the current ``item``: the model's output (generate) or its
    three scores (loglik) are kept; the label, gold word, prediction and correctness are computed afresh."""
    lang, label = item["lang"], item["label"]
    new = {**row, "label": label, "gold": label_words(lang)[label]}
    if row["mode"] == "generate":
        out = row["output"]
        new.update(pred=parse_label(out, lang), correct=correct_generate(out, lang, label),
                   correct_exact=correct_exact_rule(out, lang, label))
    else:
        pred = argmax(row["scores"])
        new.update(pred=pred, correct=pred == label)
    return new


def is_prediction(row: dict) -> bool:
    """A stored row holds what :func:`rescore` needs: a text ``output`` (generate) or three numeric ``scores``."""
    if row.get("mode") == "generate":
        return isinstance(row.get("output"), str)
    scores = row.get("scores")
    return (row.get("mode") == "loglik" and isinstance(scores, list) and len(scores) == 3
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in scores))


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n and not math.isnan(p) else float("nan")


def summarise(rows: Iterable[dict], items: Sequence[dict], models: Sequence[str], modes: Sequence[str]) -> dict:
    """The run summary from the prediction rows of the current ``items``, each rescored (:func:`rescore`)
    against its item, so correctness always follows the current gold labels.

    ``accuracy[mode][model][lang]``, its binomial ``stderr``, ``n[lang]``; for generate mode also
    ``valid_rate`` (outputs that start with some label word) and ``accuracy_exact_rule``; ``agreement[model][lang]``
    when both modes ran; ``drop[mode][model][lang]`` = base accuracy − model accuracy for every model after the
    first. Every (model, mode, item) must have a row.
    """
    langs: list[str] = []
    n: dict[str, int] = {}
    for it in items:
        if it["lang"] not in n:
            langs.append(it["lang"])
            n[it["lang"]] = 0
        n[it["lang"]] += 1
    stored = {(r["model"], r["mode"], r["lang"], r["idx"]): r for r in rows}
    by_key = {(m, mode, it["lang"], it["idx"]): rescore(stored[(m, mode, it["lang"], it["idx"])], it)
              for m in models for mode in modes for it in items}

    def collect(model: str, mode: str, lang: str, field: str) -> list:
        return [by_key[(model, mode, lang, it["idx"])][field] for it in items if it["lang"] == lang]

    summary: dict = {"models": list(models), "languages": langs, "modes": list(modes), "n": n,
                     "accuracy": {}, "stderr": {}}
    for mode in modes:
        acc = {m: {lang: _mean(collect(m, mode, lang, "correct")) for lang in langs} for m in models}
        summary["accuracy"][mode] = acc
        summary["stderr"][mode] = {m: {lang: _stderr(acc[m][lang], n[lang]) for lang in langs} for m in models}
    if "generate" in modes:
        summary["valid_rate"] = {m: {lang: _mean([p is not None for p in collect(m, "generate", lang, "pred")])
                                     for lang in langs} for m in models}
        summary["accuracy_exact_rule"] = {m: {lang: _mean(collect(m, "generate", lang, "correct_exact"))
                                              for lang in langs} for m in models}
    if set(MODES) <= set(modes):
        summary["agreement"] = {
            m: {lang: _mean([g == ll for g, ll in zip(collect(m, "generate", lang, "pred"),
                                                       collect(m, "loglik", lang, "pred"), strict=True)])
                for lang in langs} for m in models}
    if len(models) > 1:
        base = models[0]
        summary["drop"] = {mode: {m: {lang: summary["accuracy"][mode][base][lang] - summary["accuracy"][mode][m][lang]
                                      for lang in langs} for m in models[1:]} for mode in modes}
    return summary
