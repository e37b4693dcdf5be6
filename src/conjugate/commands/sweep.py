"""``conjugate sweep``: one command per study (grid × seeds, local processes or Ray), and ``aggregate``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from ..config import ConfigError
from ..studies import STUDIES
from ..sweep import EngineError, EngineOptions, SweepInterrupted, plan_sweep, run_sweep
from .common import fail

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Sweeps over seeds and settings: every grid point × seed is an ordinary run folder.")
console = Console(stderr=True)


def _study_command(study: str) -> Callable[..., None]:
    def command(
        out: Path = typer.Option(..., help="sweep folder (rerun the same command to resume or extend it)"),
        preset: str = typer.Option("quick", help="preset every run starts from"),
        seeds: str = typer.Option("0,1,2", help="comma-separated seeds, or a range a-b"),
        grid: list[str] = typer.Option([], "--grid", help="key=v1,v2,... (repeatable; Cartesian product; "
                                                          "separate values with ';' for list-valued keys)"),
        set_: list[str] = typer.Option([], "--set", help="key=value applied to every run (repeatable)"),
        engine: str = typer.Option("local", help="local (processes on this machine) | ray"),
        address: str = typer.Option(None, help="Ray cluster: auto, host:port or ray://host:port; "
                                               "without it --engine ray starts Ray locally"),
        max_parallel: int = typer.Option(None, help="runs at a time (default: what the machine or cluster "
                                                    "holds: CPUs // cpus-per-run, GPUs // gpus-per-run)"),
        cpus_per_run: int = typer.Option(1, help="CPU cores (torch threads) per run"),
        gpus_per_run: float = typer.Option(0.0, help="GPUs per run, 0…1 (0: runs on CPU; 0.5: two runs per GPU)"),
        share_pretraining: bool = typer.Option(True, help="runs that differ only after pretraining train it "
                                                          "once (OUT/pretrained/)"),
    ) -> None:
        try:
            plan = plan_sweep(study, preset, seeds, grid, set_)
            opts = EngineOptions(engine, address, max_parallel, cpus_per_run, gpus_per_run, share_pretraining)
            outcome = run_sweep(plan, out, opts, console)
        except (ConfigError, EngineError) as e:
            raise fail(str(e)) from None
        except SweepInterrupted as e:
            console.print(f"[yellow]interrupted:[/yellow] {e}")
            raise typer.Exit(130) from None
        console.print(f"{len(outcome.completed)} runs completed, {len(outcome.skipped)} already finished, "
                      f"{len(outcome.failed)} failed"
                      + (f" (see {Path(out) / 'failures.json'})" if outcome.failed else ""), highlight=False)
        typer.echo(f"aggregate: {Path(out) / 'aggregate.md'}")
        if outcome.failed:
            raise typer.Exit(1)

    command.__doc__ = (f"Run the {study} study for every --grid point × seed into OUT/runs/<name>/, then "
                       "aggregate. Exit code 1 when a run failed (it is recorded and the others go on).")
    return command


for _study in STUDIES:
    app.command(_study)(_study_command(_study))


@app.command()
def aggregate(folder: Path = typer.Argument(..., help="a sweep folder (holds sweep.json)")) -> None:
    """Recompute aggregate.json, aggregate.md and figures/ from the finished runs; runs nothing."""
    from ..aggregate import aggregate_sweep

    try:
        result = aggregate_sweep(folder)
    except ConfigError as e:
        raise fail(str(e)) from None
    done = sum(len(p["runs"]) for p in result["points"])
    missing = sum(len(p["missing"]) for p in result["points"])
    typer.echo(f"{len(result['points'])} grid points, {done} finished runs, {missing} unfinished; "
               f"wrote {folder / 'aggregate.json'}, {folder / 'aggregate.md'}")
