"""``conjugate probe``: your own questions × models × conjugate transforms — is a capability suppressed or erased?"""

from __future__ import annotations

from pathlib import Path

import typer

from .common import BOS_HELP, cache_setting
from .common import batch_size as _batch_size
from .common import fail as _fail


def main(
    data: Path = typer.Option(..., help='JSONL: {"id", "prompt", "answer"} per line (+ "choices" for the choice '
                                        'scorer, optional "lang")'),
    model: list[str] = typer.Option(..., "--model", help="model spec or preset (repeatable; the first is the base)"),
    out: Path = typer.Option(..., help="output folder (rerun to resume: answers come from the request cache)"),
    scorer: str = typer.Option("exact", help="exact | prefix | contains | regex | refusal | choice"),
    transform: list[str] = typer.Option([], "--transform", help="conjugate transform spec (repeatable), e.g. "
                                                                "leetspeak, rot13, piglatin-marked, leetspeak+base64"),
    max_new_tokens: int = typer.Option(32, help="greedy tokens generated per prompt (cut at the first newline)"),
    batch_size: str = typer.Option("auto", help="prompts per model call: auto or N"),
    chat: bool = typer.Option(False, help="wrap prompts in the model's chat template (local models)"),
    bos: bool | None = typer.Option(None, "--bos/--no-bos", help=BOS_HELP),
    cache: Path = typer.Option(None, help="request cache file (default: $CONJUGATE_CACHE/requests.sqlite)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="send every request; store nothing"),
    seed: int = typer.Option(0, help="seed of the bootstrap intervals"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Ask every model every question as it is and under each transform; score, with 95 % intervals and the
    share of the base → tuned drop each transform recovers."""
    from ..lm.backend import BackendError
    from ..lm.pipeline import PipelineInputError
    from ..lm.presets import resolve_models
    from ..lm.probe import run_probe
    from ..lm.report import conjugate_lines

    size = _batch_size(batch_size)
    try:
        models = resolve_models(model)
        s = run_probe(data, models, out, scorer=scorer, transforms=transform, max_new_tokens=max_new_tokens,
                      batch_size=size, chat=chat, cache=cache_setting(cache, no_cache), seed=seed,
                      show_progress=not quiet, bos=bos)
    except (PipelineInputError, BackendError) as e:
        raise _fail(str(e)) from None
    for line in conjugate_lines(s):
        typer.echo(line)
    typer.echo(f"sent {s['sent']}, cached {s['cached']}; wrote {out / 'table.md'}")
