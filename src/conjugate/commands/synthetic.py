"""``conjugate synthetic``: run, pretrain-seeds, theory, eval."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ..config import ConfigError, SyntheticConfig, parse_overrides, resolve_synthetic
from .common import fail, run_or_exit

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def _parse_floats(raw: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise fail(f"{what}: expected comma-separated numbers, got {raw!r}") from None
    if not vals:
        raise fail(f"{what}: empty list")
    return vals


@app.command()
def run(
    preset: str = typer.Option("quick", help="smoke | quick | standard | paper"),
    out: Path = typer.Option(..., help="output folder (rerun the same command to resume)"),
    seed: int = typer.Option(0, help="seed of training batches and evaluation prompts"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    set_: list[str] = typer.Option([], "--set", help="override a config field: key=value (repeatable)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
    pretrain_cache: Path = typer.Option(None, help="folder shared by runs of the same pretraining: take the "
                                                   "pretrained model from it, or train and store it there"),
    from_scratch: bool = typer.Option(False, "--from-scratch",
                                      help="pretrain even when the preset ships a pretrained checkpoint"),
) -> None:
    """Pretrain → fine-tune → evaluate → figures and report. A preset that ships a pretrained checkpoint is
    fine-tuned and evaluated from it (minutes), unless --from-scratch."""
    from ..synthetic.threads import prepare_openmp

    prepare_openmp()  # OpenMP reads its wait policy once, when torch loads it: before the first torch import
    from ..synthetic.shipped import describe
    from ..synthetic.study import run_synthetic

    def study() -> dict:
        cfg = resolve_synthetic(preset, parse_overrides(set_))
        return run_synthetic(cfg, out, preset=preset, seed=seed, device=device, show_progress=not quiet,
                             pretrain_cache=pretrain_cache, from_scratch=from_scratch,
                             on_shipped=lambda record: typer.echo(describe(record), err=True))

    summary = run_or_exit(study)
    tp = summary.get("throughput", {}).get("pretrain", {})
    if tp.get("steps_per_s") and summary.get("pretrained_from", {}).get("source") != "shipped":  # not this run's
        console.print(f"throughput (pretraining): {tp['steps_per_s']:.1f} steps/s, {tp['tokens_per_s']:.0f} tokens/s")
    console.print(f"D_cont error: pretrained {summary['cont_mse']['pretrained']:.4f}, fine-tuned "
                  f"{summary['cont_mse']['finetuned']:.4f}, conjugate (c={summary['conjugate_scale']:g}) "
                  f"{summary['cont_mse']['finetuned_conjugate']:.4f}")
    _print_diagnostics(summary)
    typer.echo(f"report: {Path(out) / 'report.md'}")


@app.command("pretrain-seeds")
def pretrain_seeds(
    preset: str = typer.Option("quick", help="smoke | quick | standard | paper"),
    seeds: str = typer.Option(..., help="comma-separated seeds, or a range a-b (e.g. 0-4)"),
    cache: Path = typer.Option(..., help="shared-pretraining cache to publish to: the --pretrain-cache of "
                                         "`synthetic run`, or OUT/pretrained of `sweep synthetic --out OUT`"),
    set_: list[str] = typer.Option([], "--set", help="override a config field: key=value (repeatable)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Pretrain several seeds at once, as one batched (stacked) computation, into a shared-pretraining cache
    (seeds already in it are skipped; rerun the same command to resume). Then run `conjugate sweep synthetic
    --out OUT ...` (when --cache is OUT/pretrained) or `conjugate synthetic run --seed N --pretrain-cache DIR`
    to fine-tune and evaluate each seed: with the same --preset, --set and device type, they take the
    pretrained models from the cache instead of training them."""
    from ..synthetic.threads import prepare_openmp

    prepare_openmp()
    from ..sweep import parse_seeds
    from ..synthetic.stacked import pretrain_seeds as stacked_pretrain

    def study() -> dict:
        cfg = resolve_synthetic(preset, parse_overrides(set_))
        return stacked_pretrain(cfg, parse_seeds(seeds), cache, device=device, show_progress=not quiet)

    result = run_or_exit(study)
    for seed in result["pretraining_seeds"]:
        what = "already in the cache" if seed in result["skipped"] else "pretrained"
        typer.echo(f"seed {seed}: {what}: {result['entries'][seed]}")
    if result["trained"]:
        console.print(f"throughput: {result['steps_per_s']:.1f} steps/s per seed × {result['stacked']} seeds = "
                      f"{result['steps_per_s_total']:.1f} steps/s", highlight=False)


def _print_diagnostics(summary: dict) -> None:
    """The learned-mixture criteria and the forgetting's split, one line each (the report has the details)."""
    learned, dec = summary.get("learned"), summary.get("decomposition")
    if learned:
        parts = [f"{k} {learned[k]:.3g} (≤ {learned['thresholds'][k]:g}: {'met' if learned['met'][k] else 'NOT met'})"
                 for k in learned["thresholds"] if learned.get(k) is not None]
        console.print("learned (pretrained vs Bayes): " + ", ".join(parts))
    if dec:
        from ..synthetic.decomposition import split_phrase

        split, rec = split_phrase(dec), dec["recovery"]
        console.print(f"forgetting {dec['observed']:+.4f}: prior shift (α_eff {dec['alpha_eff']['pretrained']:.2f} → "
                      f"{dec['alpha_eff']['finetuned']:.2f}) explains {dec['explained']:+.4f}; {split}; conjugate "
                      f"recovery {rec['observed']:+.4f} observed vs {rec['predicted']:+.4f} predicted by Bayes(α_eff)")


@app.command()
def theory(
    out: Path = typer.Option(..., help="output folder"),
    alpha: list[float] = typer.Option([0.0, 0.2, 0.5, 0.9, 0.99, 1.0], help="prior weight(s) of D_disc"),
    preset: str = typer.Option("quick", help="preset whose task settings to use"),
    set_: list[str] = typer.Option([], "--set", help="override a config field: key=value"),
    seed: int = 0,
) -> None:
    """Bayes-only curves for any α: no training, seconds."""
    from ..synthetic.theory import run_theory

    try:
        cfg = resolve_synthetic(preset, parse_overrides(set_))
        if any(not 0 <= a <= 1 for a in alpha):
            raise ConfigError(f"--alpha values must lie in [0, 1], got {alpha}")
        result = run_theory(cfg, list(alpha), out, seed)
    except ConfigError as e:
        raise fail(str(e)) from None
    for a, row in result["alphas"].items():
        typer.echo(f"alpha={a}: D_cont {row['cont_mse']:.4f}  D_disc {row['disc_mse']:.4f}  "
                   f"D_cont by scale {json.dumps({c: round(v, 4) for c, v in row['cont_by_scale'].items()})}")
    typer.echo(f"wrote {Path(out) / 'theory.json'}")


@app.command("eval")
def eval_(
    checkpoint: Path = typer.Option(..., help="a model checkpoint (.safetensors) written by `synthetic run`"),
    out: Path = typer.Option(..., help="output folder"),
    scales: str = typer.Option("1,1.5,2,3", help="label scales c to evaluate"),
    preset: str = typer.Option("quick", help="preset whose task settings to use when the checkpoint's run "
                                             "folder has no config.json"),
    set_: list[str] = typer.Option([], "--set", help="override a config field: key=value"),
    seed: int = 0,
) -> None:
    """Evaluate a saved model on fresh prompts at several label scales."""
    from ..synthetic.evaluate_saved import evaluate_checkpoint

    try:
        cs = _parse_floats(scales, "--scales")
        result = evaluate_checkpoint(checkpoint, out, cs, preset, parse_overrides(set_), seed)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    for c, row in result["mse"].items():
        typer.echo(f"c={c}: D_cont {row['cont']:.4f}  D_disc {row['disc']:.4f}")
    typer.echo(f"wrote {Path(out) / 'eval.json'}")


__all__ = ["app", "SyntheticConfig"]
