"""Run the ICL-vs-IF study: generate with each model, score, and write the run folder.

Files in ``out``:

- ``data.jsonl`` — the prompts used (after ``limit``), for provenance;
- ``outputs.jsonl`` — one row per (model, prompt): ``model, id, prompt_sha, max_new_tokens, output``, appended
  chunk by chunk as generation proceeds. A rerun reuses every row whose prompt hash and ``max_new_tokens``
  still match, so an interrupted run resumes and loses at most the chunk in flight;
- ``scores.csv`` — per prompt and model: answers, output, ``icl_correct``, ``if_follow`` (see :mod:`.score`);
- ``summary.json`` — accuracy and IF rate per model and language, prompt counts, drops, and how many outputs
  were generated now versus reused;
- ``table.md`` and ``figures/icl_accuracy.png``; ``config.json`` with provenance.

Prompts are sent to the backend in chunks sorted by length (longest first), so each chunk pads little and an
out-of-memory error shows up at once. Greedy decoding, cut at the first newline.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...runs import RunDir, atomic_write_text, read_jsonl, write_json
from ..runner import ProgressBar, in_chunks, release
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


def load_cache(path: Path, rows: Sequence[dict], max_new_tokens: int) -> dict[tuple[str, str], str]:
    """(model, id) → output for finished generations that match the current prompts and settings."""
    want = {r["id"]: prompt_sha(r["prompt"]) for r in rows}
    cache = {}
    for rec in read_jsonl(path):
        if want.get(rec.get("id")) == rec.get("prompt_sha") and rec.get("max_new_tokens") == max_new_tokens:
            cache[(rec["model"], rec["id"])] = rec["output"]
    return cache


def backend_options(spec: str, batch_size: int | str, chat: bool) -> dict[str, Any]:
    """Options for ``load_backend``: raw prompts unless ``chat`` (the paper used raw text for every model);
    ``openai-chat:`` specs are chat models by definition."""
    opts: dict[str, Any] = {"show_progress": False}
    if isinstance(batch_size, int):
        opts["batch_size"] = batch_size
    if not spec.startswith("openai-chat:"):
        opts["chat"] = chat
    return opts


def generate_missing(backend: Any, model: str, rows: Sequence[dict], outputs: Path, cache: dict,
                     max_new_tokens: int, chunk: int, advance: Callable[[int], None]) -> int:
    """Generate every prompt of ``rows`` not in ``cache``; append each chunk's outputs as it completes."""
    def generate(part: Sequence[dict]) -> list[dict]:
        outs = backend.generate([r["prompt"] for r in part], max_new_tokens, stop=STOP)
        if len(outs) != len(part):
            raise RuntimeError(f"{model}: backend returned {len(outs)} outputs for {len(part)} prompts")
        return [{"model": model, "id": r["id"], "prompt_sha": prompt_sha(r["prompt"]),
                 "max_new_tokens": max_new_tokens, "output": o} for r, o in zip(part, outs, strict=True)]

    done = in_chunks([r for r in rows if (model, r["id"]) not in cache], chunk, generate, outputs, advance)
    cache.update({(model, r["id"]): r["output"] for r in done})
    return len(done)


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
) -> dict:
    """Generate (resuming), score and report. ``models[0]`` is the base model, the rest tuned ones.

    ``data``: a prompts JSONL (``build``'s output); None builds the default set with ``seed``. ``load`` maps a
    spec and options to a Backend (default :func:`conjugate.lm.load.load_backend`; tests pass fakes).
    """
    if not models:
        raise ValueError("no models given")
    if len(set(models)) != len(models):
        raise ValueError(f"a model is listed twice: {list(models)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not (batch_size == "auto" or (isinstance(batch_size, int) and batch_size >= 1)):
        raise ValueError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
    if load is None:
        from ..load import load_backend as load
    rows = limit_rows(load_dataset(data) if data is not None else build_dataset(seed=seed), limit)
    with RunDir(out, "icl-vs-if run") as run:
        config = {"study": "icl_vs_if", "models": list(models), "data": str(data) if data else "default",
                  "limit": limit, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "chat": chat,
                  "n_prompts": len(rows)}
        run.write_config(config, seed)
        write_dataset(rows, run.path("data.jsonl"))
        outputs = run.path("outputs.jsonl")
        cache = load_cache(outputs, rows, max_new_tokens)
        cached = sum((m, r["id"]) in cache for m in models for r in rows)
        chunk = batch_size if isinstance(batch_size, int) else DEFAULT_CHUNK
        progress = ProgressBar(show_progress, len(models) * len(rows) - cached, "icl-vs-if")
        generated = 0
        try:
            for model in models:
                if all((model, r["id"]) in cache for r in rows):
                    continue
                progress.describe(f"loading {model}")
                backend = load(model, **backend_options(model, batch_size, chat))
                progress.describe(model)
                generated += generate_missing(backend, model, rows, outputs, cache, max_new_tokens, chunk,
                                              progress.advance)
                release(backend)
                del backend
        finally:
            progress.close()
        scored = [score_row(r, cache[(m, r["id"])], m) for m in models for r in rows]
        summary = aggregate(scored, models)
        summary.update(generated=generated, cached=cached, max_new_tokens=max_new_tokens)
        atomic_write_text(run.path("scores.csv"), scores_csv(scored))
        write_json(run.path("summary.json"), summary)
        write_table(summary, run.path("table.md"))
        plot_accuracy(summary, run.path("figures", "icl_accuracy.png"))
        run.mark_done("icl_vs_if", {"generated": generated, "cached": cached})
        return summary


def score_legacy(paths: Sequence[str | Path], out: str | Path | None = None) -> dict:
    """Score released-format CSVs (one per model; the first is the base) with the same rules."""
    from .score import read_legacy_csv

    if not paths:
        raise ValueError("no CSV files given")
    models, scored = [], []
    for p in paths:
        name = Path(p).stem
        if name in models:
            name = str(p)
        models.append(name)
        scored += read_legacy_csv(p, model=name)
    summary = aggregate(scored, models)
    if out is not None:
        with RunDir(out, "icl-vs-if score") as run:
            run.write_config({"study": "icl_vs_if", "legacy_csv": [str(p) for p in paths]}, seed=0)
            atomic_write_text(run.path("scores.csv"), scores_csv(scored))
            write_json(run.path("summary.json"), summary)
            write_table(summary, run.path("table.md"))
            plot_accuracy(summary, run.path("figures", "icl_accuracy.png"))
    return summary
