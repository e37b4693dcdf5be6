"""Run the ICL-vs-IF study on the study pipeline (:mod:`conjugate.lm.pipeline`): the prompts are the items,
:func:`.score.score_row` the scorer, and this module the report.

Files in ``out``:

- ``data.jsonl`` — the prompts used (after ``limit``), for provenance;
- ``outputs.jsonl`` — one row per (model, transform, prompt): ``model, id, transform, prompt_sha,
  max_new_tokens, output`` and, under a transform, ``mapped`` (``s⁻¹(output)``, what is scored) and ``inverse``;
  appended chunk by chunk as answers come in, then rewritten whole at the end. Answers also go to the request
  cache, which is what a rerun resumes from: an interrupted run loses at most the chunk in flight, and a
  finished one sends nothing and loads no model;
- ``scores.csv`` — per prompt and model (identity arm): answers, output, ``icl_correct``, ``if_follow``;
- ``summary.json`` — accuracy and IF rate per model and language, prompt counts, drops, how many outputs were
  generated now versus taken from the cache, and with ``--transform`` a ``conjugate`` block: accuracy per
  (model, language, transform) with bootstrap 95 % intervals and the share of the base → tuned drop that each
  transform recovers;
- ``table.md`` and ``figures/icl_accuracy.png``; ``config.json`` with provenance.

Prompts are sent in chunks sorted by length (longest first), so each chunk pads little and an out-of-memory
error shows up at once. Greedy decoding, cut at the first newline. A transform applies on top of the prompt's
language; the output is mapped back with the transform's inverse before it is scored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...runs import RunDir, append_jsonl, atomic_write_text, write_json
from ..pipeline import IDENTITY, Item, Record, make_arms, open_cached, per_record, run_pipeline, summarise
from ..pipeline import text_backend_options as backend_options
from .build import build_dataset, load_dataset, write_dataset
from .report import plot_accuracy, write_table
from .score import aggregate, score_row, scores_csv

DEFAULT_CHUNK = 64
STOP = ("\n",)


def prompt_sha(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def limit_rows(rows: Sequence[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` prompts of every (task, language) group, in file order (all when None)."""
    if limit is None:
        return list(rows)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    seen: dict[tuple, int] = defaultdict(int)
    out = []
    for r in rows:
        key = (r["icl_task"], r["if_task"], r["lang"])
        if seen[key] < limit:
            seen[key] += 1
            out.append(r)
    return out


def items_of(rows: Sequence[dict]) -> list[Item]:
    """The study's prompts as pipeline items (the whole row kept as ``meta`` for the scorer)."""
    return [Item(r["id"], r["prompt"], r["icl_answer"], r["lang"], meta=r) for r in rows]


def score(item: Item, record: Record) -> dict[str, Any]:
    """ICL-correct and instruction-following, on the mapped-back output (:func:`.score.score_row`)."""
    return score_row(item.meta, record.answer_text, record.model)


def output_row(r: Record, max_new_tokens: int) -> dict[str, Any]:
    row = {"model": r.model, "id": r.item, "transform": r.transform, "prompt_sha": prompt_sha(r.prompt),
           "max_new_tokens": max_new_tokens, "output": r.output}
    if r.transform != IDENTITY:
        row.update(mapped=r.mapped, inverse=r.inverse)
    return row


def run_study(
    models: Sequence[str],
    out: str | Path,
    data: str | Path | None = None,
    limit: int | None = None,
    batch_size: int | str = "auto",
    max_new_tokens: int = 10,
    seed: int = 0,
    chat: bool = False,
    show_progress: bool = True,
    load: Callable[..., Any] | None = None,
    transforms: Sequence[str] = (),
    cache: str | Path | bool = True,
    bos: bool | None = None,
    authors: str | Path | None = None,
    setup: str = "default",
) -> dict:
    """Generate (resuming from the request cache), score and report. ``models[0]`` is the base model, the rest
    tuned ones; ``transforms``: conjugate transform specs run beside the identity arm.

    ``data``: a prompts JSONL (``build``'s output); None builds the default set with ``seed``. ``load`` maps a
    spec and options to a Backend (default :func:`conjugate.lm.load.load_backend`; tests pass fakes).
    ``cache``: True (the default request cache), a path, or False (send everything). ``authors``: the folder of
    the authors' sentence files, to run on the paper's 2,800 prompts instead of ``data``; ``setup`` is recorded.
    """
    if not models:
        raise ValueError("no models given")
    if len(set(models)) != len(models):
        raise ValueError(f"a model is listed twice: {list(models)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not (batch_size == "auto" or (isinstance(batch_size, int) and batch_size >= 1)):
        raise ValueError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
    if authors is not None:
        from .build import build_authors_dataset

        rows = limit_rows(build_authors_dataset(authors), limit)
    else:
        rows = limit_rows(load_dataset(data) if data is not None else build_dataset(seed=seed), limit)
    arms = make_arms(transforms, needs_inverse=True)
    opener = open_cached(cache, lambda spec: backend_options(spec, batch_size, chat, bos), load)
    with RunDir(out, "icl-vs-if run") as run, contextlib.closing(opener):
        source = f"authors:{authors}" if authors is not None else (str(data) if data else "default")
        config = {"study": "icl_vs_if", "setup": setup, "models": list(models), "data": source,
                  "limit": limit, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "chat": chat,
                  "n_prompts": len(rows), "transforms": [a.spec for a in arms], "bos": bos,
                  "cache": str(opener.path) if opener.path else None}
        run.write_config(config, seed)
        write_dataset(rows, run.path("data.jsonl"))
        outputs = run.path("outputs.jsonl")
        outputs.unlink(missing_ok=True)  # rewritten from the answers of this run (the cache holds them all)
        chunk = batch_size if isinstance(batch_size, int) else DEFAULT_CHUNK
        items = items_of(rows)
        records, counts = run_pipeline(
            items, models, arms, per_record(score), open_backend=opener, max_new_tokens=max_new_tokens, stop=STOP,
            chunk=chunk, show_progress=show_progress, label="icl-vs-if",
            on_records=lambda part: append_jsonl(outputs, [output_row(r, max_new_tokens) for r in part]))
        atomic_write_text(outputs, "".join(json.dumps(output_row(r, max_new_tokens), ensure_ascii=False) + "\n"
                                           for r in records))
        scored = [r.result for r in records if r.transform == IDENTITY]
        generated, cached = sum(c["misses"] for c in counts.values()), sum(c["hits"] for c in counts.values())
        summary = aggregate(scored, models)
        summary.update(generated=generated, cached=cached, max_new_tokens=max_new_tokens)
        intervals = summarise(records, models, arms, "icl_correct", seed=seed)
        summary["ci"] = {k: intervals[k] for k in ("ci95", "n", "drop_ci95", "bootstrap") if k in intervals}
        if len(arms) > 1:
            summary["conjugate"] = intervals
        atomic_write_text(run.path("scores.csv"), scores_csv(scored))
        write_json(run.path("summary.json"), summary)
        write_table(summary, run.path("table.md"))
        plot_accuracy(summary, run.path("figures", "icl_accuracy.png"))
        run.mark_done("icl_vs_if", {"generated": generated, "cached": cached})
        return summary


def score_legacy(paths: Sequence[str | Path], out: str | Path | None = None,
                 pairs: Sequence[tuple[str, str]] | None = None) -> dict:
    """Score released-format CSVs (one per model, named by the file's stem, or its path when two stems clash)
    with the same rules.

    ``pairs``: ``(tuned, base)`` couples, each a model name or the path as given, e.g. the paper's
    ``[("alpaca", "llama"), ("vicuna", "llama"), ("opt-iml-max-1.3b", "opt-1.3b")]``; each tuned model's drop is
    then against its own base, and a model in no pair gets no drop. None (the default): the first file is the
    base of all the others.
    """
    from .score import read_legacy_csv

    if not paths:
        raise ValueError("no CSV files given")
    models, scored, names = [], [], {}
    for p in paths:
        name = Path(p).stem
        if name in models:
            name = str(p)
        models.append(name)
        names[str(p)] = name
        scored += read_legacy_csv(p, model=name)
    paired = None
    if pairs is not None:
        paired = {}
        for tuned, base in pairs:
            t, b = names.get(str(tuned), str(tuned)), names.get(str(base), str(base))
            if t in paired:
                raise ValueError(f"pair {tuned}={base}: {t} already has the base {paired[t]}")
            paired[t] = b
    summary = aggregate(scored, models, paired)
    if out is not None:
        with RunDir(out, "icl-vs-if score") as run:
            run.write_config({"study": "icl_vs_if", "legacy_csv": [str(p) for p in paths],
                              "pairs": summary.get("pairs")}, seed=0)
            atomic_write_text(run.path("scores.csv"), scores_csv(scored))
            write_json(run.path("summary.json"), summary)
            write_table(summary, run.path("table.md"))
            plot_accuracy(summary, run.path("figures", "icl_accuracy.png"))
    return summary
