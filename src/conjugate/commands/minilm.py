"""``conjugate minilm``: the offline miniature of the ICL-vs-instruction-following study (SPEC §3)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import run_or_exit

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def run(
    preset: str = typer.Option("quick", help="smoke | quick"),
    out: Path = typer.Option(..., help="output folder (rerun the same command to resume)"),
    seed: int = typer.Option(0, help="seed of initialisation and training batches"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    set_: list[str] = typer.Option([], "--set", help="override a config field: key=value (repeatable)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
    pretrain_cache: Path = typer.Option(None, help="folder shared by runs of the same pretraining: take the "
                                                   "pretrained model from it, or train and store it there"),
) -> None:
    """Pretrain a character-level LM on a synthetic multilingual corpus → tune it on English question answering →
    ICL accuracy per language, before and after, and with conjugate prompting."""
    from ..config import parse_overrides
    from ..minilm.config import MiniLMConfig, resolve_minilm
    from ..minilm.study import run_minilm

    def study() -> dict:
        cfg = resolve_minilm(preset, parse_overrides(set_, MiniLMConfig))
        return run_minilm(cfg, out, preset=preset, seed=seed, device=device, show_progress=not quiet,
                          pretrain_cache=pretrain_cache)

    summary = run_or_exit(study)
    acc = summary["icl_accuracy"]
    for lang in summary["languages"]:
        typer.echo(f"{lang:>9}: ICL accuracy pretrained {acc['pretrained'][lang]:.3f}  tuned {acc['tuned'][lang]:.3f}"
                   f"  tuned+conjugate {acc['tuned_conjugate'][lang]:.3f}")
    typer.echo(f"English drop {summary['english_drop']:+.3f}, mean drop elsewhere {summary['other_drop_mean']:+.3f} "
               f"({summary['split']} split, {summary['seconds']:.0f} s)")
    typer.echo(f"table: {Path(out) / 'table.md'}")
