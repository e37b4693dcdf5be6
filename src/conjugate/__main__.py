"""``python -m conjugate``: the same CLI as the ``conjugate`` command."""

from .cli import app

app()
