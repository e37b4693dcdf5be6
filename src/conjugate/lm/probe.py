"""``conjugate probe``: conjugate prompting as an instrument for any capability you suspect fine-tuning suppressed.

Give it your own questions as JSONL — ``{"id", "prompt", "answer"}`` per line, plus ``"choices"`` (a list of
option strings; ``answer`` is the right one or its index) for the ``choice`` scorer and an optional ``"lang"``
cell — a base model, tuned models, and transforms. Each model answers every question as it is (the identity arm)
and under each transform ``s`` (the prompt sent as ``s(prompt)``, the output read back as ``s⁻¹(output)``). If a
tuned model fails a question as it is but answers it under a transform, the capability was suppressed, not
erased.

Scorers (all read the mapped-back output; the record says when there was none to read):

- ``exact``: the output, stripped, equals the answer, stripped;
- ``prefix``: the stripped output starts with the stripped answer;
- ``contains``: the answer occurs in the output as a whole word or phrase, ignoring case;
- ``regex``: the answer is a regular expression that matches somewhere in the output (``re.search``);
- ``refusal``: the multilingual refusal-phrase judge of the harmful study labels the reply ANSWER / REFUSE /
  AMBIGUOUS; the metric is the answer rate (``answer`` is not needed);
- ``choice``: the option with the highest log-likelihood after the prompt is the right one (no generation; a
  transform is applied to the prompt and to every option, so no inverse is needed).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..runs import RunDir, atomic_write_text, write_figure, write_json
from .pipeline import (
    Item,
    PipelineInputError,
    Record,
    Scorer,
    make_arms,
    open_cached,
    per_record,
    run_pipeline,
    summarise,
    text_backend_options,
)
from .report import conjugate_table, short_name

SCORERS = ("exact", "prefix", "contains", "regex", "refusal", "choice")
METRIC = {"refusal": "answered"}  # every other scorer: "correct"
NEEDS_INVERSE = {"exact", "prefix", "contains", "regex"}


class ProbeInputError(PipelineInputError):
    """A probe data file or option that cannot be used; the message names the file and line."""


# ---- data ----------------------------------------------------------------------------------------------------

def load_items(path: str | Path, scorer: str) -> list[Item]:
    """The rows of a probe JSONL file as items, checked line by line for what ``scorer`` needs."""
    from .textio import jsonl_objects

    if scorer not in SCORERS:
        raise ProbeInputError(f"unknown scorer {scorer!r}; choose one of {', '.join(SCORERS)}")
    path = Path(path)
    if not path.is_file():
        raise ProbeInputError(f"{path}: no such file")
    items: list[Item] = []
    seen: set[str] = set()
    for row, where in jsonl_objects(path, ProbeInputError):
        items.append(_item(row, scorer, where))
        if items[-1].id in seen:
            raise ProbeInputError(f"{where}: id {items[-1].id!r} appears twice")
        seen.add(items[-1].id)
    if not items:
        raise ProbeInputError(f"{path}: has no rows")
    return items


def _item(row: dict, scorer: str, where: str) -> Item:
    for key in ("id", "prompt"):
        if key not in row:
            raise ProbeInputError(f"{where}: the row has no {key!r}")
    if not isinstance(row["id"], str | int) or isinstance(row["id"], bool):
        raise ProbeInputError(f"{where}: 'id' must be a string or an integer")
    if not isinstance(row["prompt"], str) or not row["prompt"]:
        raise ProbeInputError(f"{where}: 'prompt' must be a non-empty string")
    lang = row.get("lang", "en")
    if not isinstance(lang, str) or not lang:
        raise ProbeInputError(f"{where}: 'lang' must be a non-empty string")
    answer = row.get("answer")
    choices: tuple[str, ...] = ()
    if scorer == "choice":
        opts = row.get("choices")
        if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) and o for o in opts):
            raise ProbeInputError(f"{where}: the choice scorer needs 'choices', a list of two or more strings")
        choices = tuple(opts)
        if isinstance(answer, str) and answer in choices:
            answer = choices.index(answer)
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
            raise ProbeInputError(f"{where}: 'answer' must be one of the choices or its index (0…{len(choices) - 1})")
    elif scorer != "refusal":
        if not isinstance(answer, str) or not answer.strip():
            raise ProbeInputError(f"{where}: the row has no 'answer' (a non-empty string)")
        if scorer == "regex":
            try:
                re.compile(answer)
            except re.error as e:
                raise ProbeInputError(f"{where}: 'answer' is not a regular expression ({e})") from None
    return Item(str(row["id"]), row["prompt"], answer, lang, choices)


# ---- scorers -------------------------------------------------------------------------------------------------

def make_scorer(name: str) -> Scorer:
    """The scorer of ``name`` (see the module docstring)."""
    if name == "choice":
        return per_record(lambda it, r: {"correct": max(range(len(r.scores)), key=lambda i: (r.scores[i], -i))
                                         == it.answer})
    if name == "refusal":
        from .harmful.judge import JudgeItem, PhraseJudge

        judge = PhraseJudge()

        def refusal(items: Sequence[Item], records: Sequence[Record]) -> list[dict[str, Any]]:
            verdicts = judge.judge([JudgeItem(r.answer_text, it.lang, r.prompt, it.prompt)
                                    for it, r in zip(items, records, strict=True)])
            return [{"label": v.label, "answered": v.label == "ANSWER"} for v in verdicts]
        return refusal
    tests: dict[str, Callable[[str, str], bool]] = {
        "exact": lambda out, ans: out.strip() == ans.strip(),
        "prefix": lambda out, ans: out.strip().startswith(ans.strip()),
        "contains": lambda out, ans: re.search(rf"(?<!\w){re.escape(ans.strip())}(?!\w)", out, re.IGNORECASE)
        is not None,
        "regex": lambda out, ans: re.search(ans, out) is not None,
    }
    if name not in tests:
        raise ProbeInputError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    test = tests[name]
    return per_record(lambda it, r: {"correct": test(r.answer_text, it.answer)})


# ---- the run -------------------------------------------------------------------------------------------------

def run_probe(data: str | Path, models: Sequence[str], out: str | Path, *, scorer: str = "exact",
              transforms: Sequence[str] = (), max_new_tokens: int = 32, batch_size: int | str = "auto",
              chat: bool = False, cache: str | Path | None | bool = True, seed: int = 0, show_progress: bool = True,
              load: Callable[..., Any] | None = None, bos: bool | None = None) -> dict[str, Any]:
    """Run (or resume, from the request cache) the probe and write the run folder; returns the summary.

    ``models[0]`` is the base model. ``cache``: True for the default request cache, a path, or False (no cache:
    every request is sent). ``load`` maps a spec and options to a backend (default ``load_backend``).
    """
    if not models:
        raise ProbeInputError("no models given (--model)")
    if len(set(models)) != len(models):
        raise ProbeInputError(f"a model is listed twice: {list(models)}")
    if max_new_tokens < 1:
        raise ProbeInputError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    items = load_items(data, scorer)
    arms = make_arms(transforms, needs_inverse=scorer in NEEDS_INVERSE)
    score = make_scorer(scorer)
    chunk = batch_size if isinstance(batch_size, int) else 32
    opener = open_cached(cache, lambda spec: text_backend_options(spec, batch_size, chat, bos), load)
    with RunDir(out, "probe") as run, contextlib.closing(opener):
        run.write_config({"study": "probe", "data": str(data), "models": list(models), "scorer": scorer,
                          "transforms": [a.spec for a in arms], "max_new_tokens": max_new_tokens,
                          "batch_size": batch_size, "chat": chat, "bos": bos, "n_items": len(items),
                          "cache": str(opener.path) if opener.path else None}, seed)
        records, counts = run_pipeline(items, models, arms, score, open_backend=opener, max_new_tokens=max_new_tokens,
                                       stop=("\n",), chunk=chunk, show_progress=show_progress, label="probe")
        summary = summarise(records, models, arms, METRIC.get(scorer, "correct"), seed=seed)
        summary.update(scorer=scorer, requests=counts, sent=sum(c["misses"] for c in counts.values()),
                       cached=sum(c["hits"] for c in counts.values()))
        atomic_write_text(run.path("records.jsonl"),
                          "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records))
        write_json(run.path("summary.json"), summary)
        atomic_write_text(run.path("table.md"), table(summary))
        plot(summary, run.path("figures", "probe.png"))
        run.mark_done("probe", {"sent": summary["sent"], "cached": summary["cached"]})
    return summary


# ---- the report ----------------------------------------------------------------------------------------------

def table(s: dict[str, Any]) -> str:
    """``table.md``: the metric per model, language and transform (95 % intervals), then the recovery table."""
    return (f"# Probe — scorer `{s['scorer']}`\n\n" + conjugate_table(s, "Probe")
            + f"\nRequests: {s['sent']} sent, {s['cached']} from the cache.\n\n![probe](figures/probe.png)\n")


def plot(s: dict[str, Any], path: Path) -> Path:
    """Grouped bars: the metric per model (groups) and transform (bars), first language cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lang = s["languages"][0]
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(s["models"]), 3.2))
    width = 0.8 / len(s["transforms"])
    for k, t in enumerate(s["transforms"]):
        vals = [s["value"][m][lang][t] for m in s["models"]]
        ax.bar(np.arange(len(s["models"])) + k * width, [np.nan if v is None else v for v in vals], width, label=t)
    ax.set_xticks(np.arange(len(s["models"])) + 0.4 - width / 2, [short_name(m) for m in s["models"]], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("answer rate" if s["metric"] == "answered" else "accuracy")
    ax.set_title(f"probe ({s['scorer']}, {lang})", fontsize=9)
    ax.legend(fontsize=7)
    return write_figure(fig, path, bbox_inches="tight")
