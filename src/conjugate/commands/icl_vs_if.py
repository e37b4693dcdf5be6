"""``conjugate icl-vs-if``: build the prompts, run models on them, score released CSVs (SPEC §2a)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import CACHE_HELP, NO_CACHE_HELP, TRANSFORM_HELP, cache_setting
from .common import batch_size as _batch_size
from .common import fail as _fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def build(
    out: Path = typer.Option(..., help="prompts file to write (JSONL)"),
    langs: str | None = typer.Option(None, help="comma-separated languages (default: en,fr,es,nl,hu,leet,piglatin)"),
    tasks: str | None = typer.Option(None, help="comma-separated tasks (default: repeat-math,repeat-fillblank,"
                                                "capitalize-math,capitalize-fillblank)"),
    n: int = typer.Option(100, help="prompts per (task, language)"),
    shots: int = typer.Option(2, help="exemplars per prompt"),
    seed: int = typer.Option(0, help="seed of the sentence and number draws"),
) -> None:
    """Write the prompt set: one JSON object per prompt."""
    from ..lm.icl_vs_if import build_dataset, write_dataset

    try:
        rows = build_dataset(langs, tasks, n=n, shots=shots, seed=seed)
    except ValueError as e:
        raise _fail(str(e)) from None
    write_dataset(rows, out)
    typer.echo(f"wrote {len(rows)} prompts to {out}")


@app.command()
def run(
    model: list[str] = typer.Option(..., "--model", help="model spec or preset (repeatable; first = base model)"),
    out: Path = typer.Option(..., help="output folder (rerun to resume)"),
    data: Path | None = typer.Option(None, help="prompts file from `build` (default: build the default set)"),
    limit: int | None = typer.Option(None, help="use only the first N prompts of each (task, language)"),
    batch_size: str = typer.Option("auto", help="prompts per generation call: auto or N"),
    max_new_tokens: int = typer.Option(10, help="greedy tokens generated per prompt"),
    seed: int = typer.Option(0, help="seed of the default prompt set"),
    chat: bool = typer.Option(False, "--chat/--no-chat", help="wrap prompts in the model's chat template "
                                                             "(default: raw text, as in the paper)"),
    transform: list[str] = typer.Option([], "--transform", help=TRANSFORM_HELP),
    cache: Path | None = typer.Option(None, help=CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Generate with each model, score, and write outputs, scores, summary, table and figure."""
    from ..lm.backend import BackendError
    from ..lm.icl_vs_if import run_study
    from ..lm.presets import resolve_models
    from ..lm.report import conjugate_lines

    size = _batch_size(batch_size)
    try:
        models = resolve_models(model)
        summary = run_study(models, out, data=data, limit=limit, batch_size=size, max_new_tokens=max_new_tokens,
                            seed=seed, chat=chat, show_progress=not quiet, transforms=transform,
                            cache=cache_setting(cache, no_cache))
    except (BackendError, ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    _print(summary)
    if "conjugate" in summary:
        for line in conjugate_lines(summary["conjugate"]):
            typer.echo(line)
    typer.echo(f"generated {summary['generated']}, reused {summary['cached']}; wrote {out / 'table.md'}")


@app.command()
def score(
    legacy_csv: list[Path] = typer.Option(..., "--legacy-csv", help="CSV in the authors' released format "
                                                                    "(repeatable: one per model, base first)"),
    out: Path | None = typer.Option(None, help="folder for scores.csv, summary.json, table.md and the figure"),
) -> None:
    """Score CSVs with columns prompt, icl_ans, if_ans, config, model_outputs."""
    from ..lm.icl_vs_if import score_legacy

    try:
        summary = score_legacy(legacy_csv, out)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    _print(summary)
    if out is not None:
        typer.echo(f"wrote {out / 'table.md'}")


def _print(summary: dict) -> None:
    for m in summary["models"]:
        cells = "  ".join(f"{lang} {100 * acc:5.1f}" for lang, acc in summary["accuracy"][m].items())
        typer.echo(f"ICL accuracy % | {m}: {cells}")
