"""``conjugate lm``: make tuned siblings of a language model — training data, then LoRA tuning."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("tune-data")
def tune_data(
    kind: str = typer.Option(..., help="instructions | refusals"),
    out: Path = typer.Option(..., help="JSONL file to write (prompt, answer per row)"),
    n: int = typer.Option(None, min=1, help="rows to make (default: the kind's default)"),
    seed: int = typer.Option(0, help="seed of the sampling"),
    authors: Path = typer.Option(None, help="the paper's data folder (refusals: train on the AdvBench lines kept "
                                            "for training; the others stay held out)"),
) -> None:
    """English-only training pairs, built from material kept apart from every evaluation set."""
    from ..lm.tunedata import build_tune_data, write_tune_data

    try:
        rows = build_tune_data(kind, n=n, seed=seed, authors=authors)
    except (ValueError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    write_tune_data(rows, out)
    tasks: dict[str, int] = {}
    for r in rows:
        tasks[r.task] = tasks.get(r.task, 0) + 1
    typer.echo(f"wrote {len(rows)} rows to {out} (" + ", ".join(f"{k} {v}" for k, v in sorted(tasks.items())) + ")")


@app.command()
def tune(
    model: str = typer.Option(..., help="base model spec: a folder, gguf:PATH, or a name (conjugate models list)"),
    data: Path = typer.Option(..., help="training rows (conjugate lm tune-data)"),
    out: Path = typer.Option(..., help="folder for the adapter, its provenance and the resumable run state"),
    steps: int = typer.Option(400, min=1, help="optimiser steps"),
    batch: int = typer.Option(8, min=1, help="rows per step"),
    lr: float = typer.Option(1e-3, help="peak learning rate (warm-up, then cosine decay to 10 %)"),
    rank: int = typer.Option(8, min=1, help="LoRA rank"),
    alpha: int = typer.Option(16, min=1, help="LoRA alpha"),
    max_len: int = typer.Option(160, min=8, help="tokens per row at most"),
    seed: int = typer.Option(0, min=0, help="seed of the adapter's start and of the batches"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """LoRA-tune a model on prompt → answer rows (resumable; rerun the same command after a crash or Ctrl-C)."""
    from ..lm.backend import BackendError
    from ..lm.tune import TuneConfig
    from ..lm.tune import tune as run_tune
    from ..training import Diverged, Interrupted

    cfg = TuneConfig(steps=steps, batch=batch, lr=lr, rank=rank, alpha=alpha, max_len=max_len)
    try:
        cfg.validate()
        folder = run_tune(model, data, out, cfg, seed=seed, show_progress=not quiet)
    except (BackendError, ValueError, Diverged) as e:
        raise fail(str(e)) from None
    except Interrupted as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(130) from None
    typer.echo(f"adapter in {folder}; load it as {model}+adapter:{folder}")
