"""Run the XNLI study: score each model in generate and/or loglik mode, resumably, and write the run folder.

Files in ``out``:

- ``config.json`` — settings, the templates used and provenance (``RunDir.write_config``);
- ``predictions.jsonl`` — one row per (model, mode, lang, idx), appended batch by batch as they are produced:
  ``model, mode, lang, idx, sha, label, gold`` and, for ``generate``, ``output, pred, correct, correct_exact,
  max_new_tokens``; for ``loglik``, ``scores`` (the three summed log-probabilities, by label id), ``pred,
  correct``. ``pred`` is a label id (``None`` when a generated output starts with no label word). ``sha`` hashes
  what the model's answer depends on (the prompt and ``max_new_tokens``, or the prompt and the three
  continuations): a rerun reuses every row whose key and hash match (the latest such row wins) and computes only
  the rest, so an interrupted run loses at most the batch in flight. The gold label is not part of the hash: a
  reused row keeps its ``output``/``scores`` and is scored again against the current label (``correct`` in the
  file is the score at the time it was written; the summary never reads it);
- ``summary.json`` — ``accuracy[mode][model][lang]``, ``stderr``, ``n[lang]``, ``agreement[model][lang]`` (both
  modes), ``drop[mode][model][lang]`` (base − tuned), ``valid_rate`` and ``accuracy_exact_rule`` (generate),
  and how many predictions were computed now versus reused (see :func:`.score.summarise`);
- ``table.md`` and ``figures/xnli_accuracy.png``.

Items go to the backend in batches sorted by prompt length (longest first), so a batch pads little and an
out-of-memory error shows up at once. Prompts are sent as raw text (no chat template), as in the paper. In loglik
mode a local model runs each prompt once for its three continuations (:mod:`.choices`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...runs import RunDir, read_jsonl, write_json
from ..runner import ProgressBar, in_chunks, release
from .choices import choice_logliks
from .data import load_items
from .report import plot_accuracy, write_table
from .score import MODES, is_prediction, rescore, summarise
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
    """What a prediction depends on, hashed."""
    what = [prompt, max_new_tokens] if mode == "generate" else [prompt, list(continuations(lang))]
    return hashlib.sha256(json.dumps(what, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def load_done(path: Path, shas: dict[tuple[str, str, int], str]) -> dict[tuple, dict]:
    """(model, mode, lang, idx) → the latest stored row whose hash matches the current item."""
    done = {}
    for row in read_jsonl(path):
        try:
            key = (row["model"], row["mode"], row["lang"], row["idx"])
        except KeyError as e:
            raise ValueError(f"{path}: a row lacks field {e.args[0]}; is this a predictions file of `xnli run`?")\
                from None
        if shas.get((row["mode"], row["lang"], row["idx"])) == row.get("sha") and is_prediction(row):
            done[key] = row
    return done


def backend_options(spec: str, batch_size: int | str, device: str, dtype: str) -> dict[str, Any]:
    """Options for ``load_backend``: raw text (the paper sent no chat template), the batch size and device.
    ``openai-chat:`` specs are chat endpoints by definition."""
    opts: dict[str, Any] = {"show_progress": False, "device": device, "dtype": dtype}
    if isinstance(batch_size, int):
        opts["batch_size"] = batch_size
    if not spec.startswith("openai-chat:"):
        opts["chat"] = False
    return opts


def generate_rows(backend: Any, model: str, part: Sequence[dict], max_new_tokens: int) -> list[dict]:
    """Greedy outputs for a batch of items, scored."""
    outs = backend.generate([it["prompt"] for it in part], max_new_tokens, stop=STOP)
    if len(outs) != len(part):
        raise RuntimeError(f"{model}: backend returned {len(outs)} outputs for {len(part)} prompts")
    return [rescore({"model": model, "mode": "generate", "lang": it["lang"], "idx": it["idx"],
                     "sha": it["sha"]["generate"], "output": out, "max_new_tokens": max_new_tokens}, it)
            for it, out in zip(part, outs, strict=True)]


def loglik_rows(backend: Any, model: str, part: Sequence[dict]) -> list[dict]:
    """One batched scoring of the three label continuations of every item (the prompt run once per item on a
    local model, see :mod:`.choices`); prediction = argmax."""
    scores = choice_logliks(backend, [it["prompt"] for it in part], [continuations(it["lang"]) for it in part])
    return [rescore({"model": model, "mode": "loglik", "lang": it["lang"], "idx": it["idx"],
                     "sha": it["sha"]["loglik"], "scores": s}, it) for it, s in zip(part, scores, strict=True)]


def predict_missing(backend: Any, model: str, mode: str, todo: Sequence[dict], path: Path, done: dict,
                    chunk: int, max_new_tokens: int, advance: Callable[[int], None]) -> int:
    """Predict every item of ``todo`` (longest prompt first), appending each batch's rows as it completes."""
    def predict(part: Sequence[dict]) -> list[dict]:
        return generate_rows(backend, model, part, max_new_tokens) if mode == "generate" else \
            loglik_rows(backend, model, part)

    rows = in_chunks(todo, chunk, predict, path, advance)
    done.update({(model, mode, r["lang"], r["idx"]): r for r in rows})
    return len(rows)


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
) -> dict:
    """Predict (resuming), score and report. ``models[0]`` is the base model, the rest code-tuned ones.

    ``data``: see :func:`.data.load_items`; ``langs``: codes (default: the paper's four for the hub, every
    language of a local file); ``limit``: the first N items of each language. ``load`` maps a spec and options to
    a Backend (default :func:`conjugate.lm.load.load_backend`; tests pass wrappers). Bad input raises
    :class:`XNLIInputError` (a ``ValueError``).
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
    if load is None:
        from ..load import load_backend as load
    items = load_items(data, lang_list, limit)
    for it in items:
        it["prompt"] = make_prompt(it["lang"], it["premise"], it["hypothesis"])
        it["sha"] = {m: row_sha(m, it["prompt"], it["lang"], max_new_tokens) for m in MODES}
    used = list(dict.fromkeys(it["lang"] for it in items))

    with RunDir(out, "xnli run") as run:
        config = {"study": "xnli", "models": list(models), "data": str(data), "langs": used, "limit": limit,
                  "mode": mode, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "device": device,
                  "dtype": dtype, "n_items": len(items), "templates": {lang: TEMPLATES[lang] for lang in used}}
        run.write_config(config, seed=0)
        path = run.path("predictions.jsonl")
        done = load_done(path, {(m, it["lang"], it["idx"]): it["sha"][m] for it in items for m in MODES})
        missing = {(model, m): [it for it in items if (model, m, it["lang"], it["idx"]) not in done]
                   for model in models for m in modes}
        reused = sum(len(items) - len(v) for v in missing.values())
        chunk = batch_size if isinstance(batch_size, int) else DEFAULT_CHUNK
        progress = ProgressBar(show_progress, sum(len(v) for v in missing.values()), "xnli")
        computed = 0
        try:
            for model in models:
                if not any(missing[(model, m)] for m in modes):
                    continue
                progress.describe(f"loading {model}")
                backend = load(model, **backend_options(model, batch_size, device, dtype))
                try:
                    for m in modes:
                        progress.describe(f"{model} [{m}]")
                        computed += predict_missing(backend, model, m, missing[(model, m)], path, done, chunk,
                                                    max_new_tokens, progress.advance)
                finally:
                    release(backend)
                    del backend
        finally:
            progress.close()
        summary = summarise(done.values(), items, models, modes)
        summary.update(computed=computed, reused=reused, max_new_tokens=max_new_tokens, data=str(data))
        write_json(run.path("summary.json"), summary)
        write_table(summary, run.path("table.md"))
        plot_accuracy(summary, run.path("figures", "xnli_accuracy.png"))
        run.mark_done("xnli", {"computed": computed, "reused": reused})
        return summary
