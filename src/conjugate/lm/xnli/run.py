"""Run the XNLI study on the study pipeline (:mod:`conjugate.lm.pipeline`): each (item, mode) is a pipeline
item — a generation for ``generate``, a three-way choice for ``loglik`` — :func:`.score.rescore` the scorer, and
this module the report.

Files in ``out``:

- ``config.json`` — settings, the templates used and provenance (``RunDir.write_config``);
- ``predictions.jsonl`` — one row per (model, transform, mode, lang, idx), appended batch by batch as answers
  come in, then rewritten whole at the end: ``model, transform, mode, lang, idx, sha, label, gold`` and, for
  ``generate``, ``output, pred, correct, correct_exact, max_new_tokens`` (under a transform also ``mapped``,
  ``s⁻¹(output)``, which is what is scored, and ``inverse``); for ``loglik``, ``scores`` (the three summed
  log-probabilities, by label id), ``pred, correct``. ``pred`` is a label id (``None`` when a generated output
  starts with no label word). Model answers are kept in the request cache, which is what a rerun resumes from;
  whatever depends on the gold label is recomputed from the current data on every run;
- ``summary.json`` — ``accuracy[mode][model][lang]``, ``stderr``, ``n[lang]``, ``agreement[model][lang]`` (both
  modes), ``drop[mode][model][lang]`` (base − tuned), ``valid_rate`` and ``accuracy_exact_rule`` (generate),
  how many answers were computed now versus taken from the cache, and with ``--transform`` a ``conjugate``
  block per mode: accuracy per (model, language, transform) with bootstrap 95 % intervals and the recovered
  share of the base → tuned drop;
- ``table.md`` and ``figures/xnli_accuracy.png``.

Items go to the backend in batches sorted by prompt length (longest first). Prompts are sent as raw text (no
chat template), as in the paper. Under a transform the prompt (and, in loglik mode, each label continuation) is
transformed; a generated answer is mapped back before it is scored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...runs import RunDir, append_jsonl, atomic_write_text, write_json
from ..pipeline import IDENTITY, Item, Record, make_arms, open_cached, per_record, run_pipeline, text_backend_options
from ..pipeline import summarise as arms_summary
from .data import load_items
from .report import plot_accuracy, write_table
from .score import MODES, rescore, summarise
from .templates import TEMPLATES, XNLIInputError, continuations, make_prompt, parse_langs

DEFAULT_CHUNK = 64
MAX_NEW_TOKENS = 10
STOP: tuple[str, ...] = ()  # no stop string: "\nTrue" must count, as in the authors' script (10 tokens at most)


def resolve_modes(mode: str) -> list[str]:
    """``generate`` | ``loglik`` | ``both`` → the modes to run."""
    if mode == "both":
        return list(MODES)
    if mode not in MODES:
        raise XNLIInputError(f"unknown mode {mode!r}; choose generate, loglik or both")
    return [mode]


def row_sha(mode: str, prompt: str, lang: str, max_new_tokens: int) -> str:
    """What a prediction depends on, hashed (recorded in each row, for provenance)."""
    what = [prompt, max_new_tokens] if mode == "generate" else [prompt, list(continuations(lang))]
    return hashlib.sha256(json.dumps(what, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def backend_options(spec: str, batch_size: int | str, device: str, dtype: str,
                    bos: bool | None = None) -> dict[str, Any]:
    """Options for ``load_backend``: raw text (the paper sent no chat template; ``openai-chat:`` specs are chat
    endpoints by definition), the batch size, device and dtype, ``bos`` (local models) when set."""
    return {**text_backend_options(spec, batch_size, False, bos), "device": device, "dtype": dtype}


def items_of(items: Sequence[dict], modes: Sequence[str]) -> list[Item]:
    """The XNLI items of every mode as pipeline items (a three-way choice in loglik mode)."""
    return [Item(f"{m}:{it['lang']}:{it['idx']}", it["prompt"], it["label"], it["lang"],
                 choices=tuple(continuations(it["lang"])) if m == "loglik" else (), meta={"mode": m, **it})
            for m in modes for it in items]


def prediction_row(r: Record, item: Item, max_new_tokens: int) -> dict[str, Any]:
    """A ``predictions.jsonl`` row for one record, scored against the item's current label."""
    it, mode = item.meta, item.meta["mode"]
    row: dict[str, Any] = {"model": r.model, "transform": r.transform, "mode": mode, "lang": it["lang"],
                           "idx": it["idx"], "sha": it["sha"][mode]}
    if mode == "generate":
        row.update(output=r.answer_text, max_new_tokens=max_new_tokens)
        if r.transform != IDENTITY:
            row.update(raw_output=r.output, inverse=r.inverse)
    else:
        row.update(scores=r.scores)
    return rescore(row, it)


def run_study(
    models: Sequence[str],
    out: str | Path,
    data: str | Path = "hf",
    langs: str | Sequence[str] | None = None,
    limit: int | None = None,
    mode: str = "generate",
    batch_size: int | str = "auto",
    max_new_tokens: int = MAX_NEW_TOKENS,
    device: str = "auto",
    dtype: str = "auto",
    show_progress: bool = True,
    load: Callable[..., Any] | None = None,
    transforms: Sequence[str] = (),
    cache: str | Path | bool = True,
    bos: bool | None = None,
    setup: str = "default",
) -> dict:
    """Predict (resuming from the request cache), score and report. ``models[0]`` is the base model, the rest
    code-tuned ones; ``transforms``: conjugate transform specs run beside the identity arm.

    ``data``: see :func:`.data.load_items`; ``langs``: codes (default: the paper's four for the hub, every
    language of a local file); ``limit``: the first N items of each language. ``load`` maps a spec and options to
    a Backend (default :func:`conjugate.lm.load.load_backend`; tests pass wrappers). ``cache``: True (the default
    request cache), a path, or False. Bad input raises :class:`XNLIInputError` (a ``ValueError``).
    """
    if not models:
        raise XNLIInputError("no models given")
    if len(set(models)) != len(models):
        raise XNLIInputError(f"a model is listed twice: {list(models)}")
    if max_new_tokens < 1:
        raise XNLIInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not (batch_size == "auto" or (isinstance(batch_size, int) and not isinstance(batch_size, bool)
                                     and batch_size >= 1)):
        raise XNLIInputError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
    modes = resolve_modes(mode)
    lang_list = parse_langs(langs) if langs is not None else None
    try:
        arms = make_arms(transforms, needs_inverse="generate" in modes)
    except ValueError as e:
        raise XNLIInputError(str(e)) from None
    items = load_items(data, lang_list, limit)
    for it in items:
        it["prompt"] = make_prompt(it["lang"], it["premise"], it["hypothesis"])
        it["sha"] = {m: row_sha(m, it["prompt"], it["lang"], max_new_tokens) for m in MODES}
    used = list(dict.fromkeys(it["lang"] for it in items))
    opener = open_cached(cache, lambda spec: backend_options(spec, batch_size, device, dtype, bos), load)

    with RunDir(out, "xnli run") as run, contextlib.closing(opener):
        config = {"study": "xnli", "setup": setup, "models": list(models), "data": str(data), "langs": used,
                  "limit": limit, "mode": mode, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                  "device": device, "dtype": dtype, "n_items": len(items),
                  "templates": {lang: TEMPLATES[lang] for lang in used}, "transforms": [a.spec for a in arms],
                  "bos": bos, "cache": str(opener.path) if opener.path else None}
        run.write_config(config, seed=0)
        path = run.path("predictions.jsonl")
        path.unlink(missing_ok=True)  # rewritten from this run's answers (the cache holds them all)
        chunk = batch_size if isinstance(batch_size, int) else DEFAULT_CHUNK
        pipeline_items = items_of(items, modes)
        by_id = {it.id: it for it in pipeline_items}
        records, counts = run_pipeline(
            pipeline_items, models, arms, per_record(lambda it, r: prediction_row(r, it, max_new_tokens)),
            open_backend=opener, max_new_tokens=max_new_tokens, stop=STOP, chunk=chunk, show_progress=show_progress,
            label="xnli", on_records=lambda part: append_jsonl(
                path, [prediction_row(r, by_id[r.item], max_new_tokens) for r in part]))
        rows = [r.result for r in records]
        computed, reused = sum(c["misses"] for c in counts.values()), sum(c["hits"] for c in counts.values())
        conjugate = {m: arms_summary([r for r in records if by_id[r.item].meta["mode"] == m], models, arms, "correct")
                     for m in modes} if len(arms) > 1 else {}
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        summary = summarise([r for r in rows if r["transform"] == IDENTITY], items, models, modes)
        summary.update(computed=computed, reused=reused, max_new_tokens=max_new_tokens, data=str(data))
        if conjugate:
            summary["conjugate"] = conjugate
        write_json(run.path("summary.json"), summary)
        write_table(summary, run.path("table.md"))
        plot_accuracy(summary, run.path("figures", "xnli_accuracy.png"))
        run.mark_done("xnli", {"computed": computed, "reused": reused})
        return summary
