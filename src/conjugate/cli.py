"""The ``conjugate`` command line: one sub-command group per study, no logic of its own."""

from __future__ import annotations

import errno

import click
import typer
from typer.core import TyperGroup

from .commands import harmful as harmful_commands
from .commands import icl_vs_if, lm, models, probe, synthetic, transform
from .commands import minilm as minilm_commands
from .commands import sweep as sweep_commands
from .commands import xnli as xnli_commands


class Group(TyperGroup):
    """The root command group: what any command may run into with the files it reads and writes becomes one
    line and exit code 2 — damaged or foreign run state (:class:`conjugate.runs.StateError`), a folder that
    cannot be written (read-only, full, a file in the way, no permission) — instead of a traceback."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        from .runs import StateError

        try:
            return super().invoke(ctx)
        except StateError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except OSError as e:
            if e.errno == errno.EPIPE or isinstance(e, BrokenPipeError):
                raise
            where = f"{e.filename}: " if e.filename else ""
            typer.echo(f"error: {where}{e.strerror or e}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=Group, no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(synthetic.app, name="synthetic", help="The synthetic in-context regression study.")
app.add_typer(sweep_commands.app, name="sweep", help="Sweeps over seeds and settings, on local processes or Ray.")
app.add_typer(models.app, name="models", help="Model backends: real models by name, tiny offline models, presets, "
              "a quick check.")
app.add_typer(lm.app, name="lm", help="Make tuned siblings of a language model: training data, LoRA tuning.")
app.command("transform", help="Apply or invert a conjugate transform (leetspeak, translate:fr, ...).")(transform.main)
app.add_typer(icl_vs_if.app, name="icl-vs-if", help="ICL vs instruction following across languages.")
app.add_typer(minilm_commands.app, name="minilm", help="Offline miniature of the ICL-vs-IF study on a CPU.")
app.add_typer(harmful_commands.app, name="harmful", help="Harmful-instruction refusals across languages.")
app.command("probe", help="Your own questions × models × conjugate transforms: is a capability suppressed or "
            "erased?")(probe.main)
app.add_typer(xnli_commands.app, name="xnli", help="XNLI: code fine-tuning vs reasoning across languages.")


def main() -> None:  # pragma: no cover
    app()
