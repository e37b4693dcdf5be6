"""The ``conjugate`` command line: one sub-command group per study, no logic of its own."""

from __future__ import annotations

import typer

from .commands import synthetic

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(synthetic.app, name="synthetic", help="The synthetic in-context regression study (SPEC §1).")


def main() -> None:  # pragma: no cover
    app()
