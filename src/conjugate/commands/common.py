"""Pieces every CLI group shares: the one-line error exit and the ``--batch-size auto|N`` parser."""

from __future__ import annotations

import typer


def fail(msg: str) -> typer.Exit:
    """Print ``error: msg`` to stderr and return the exit (code 2) for the caller to raise."""
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


def batch_size(raw: str) -> int | str:
    """``auto`` or a positive integer; anything else is a usage error naming ``--batch-size``."""
    if raw == "auto":
        return raw
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise typer.BadParameter(f"expected 'auto' or a positive integer, got {raw!r}", param_hint="--batch-size")
    return value
