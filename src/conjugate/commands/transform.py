"""``conjugate transform``: apply (or invert) a conjugate transform to a text."""

from __future__ import annotations

import sys

import typer

from ..lm.backend import BackendError
from ..lm.translators import get_translator  # every translator kind, the model-backed ones included
from ..transforms import TransformError, get_transform
from .common import fail


def main(
    text: str = typer.Argument(..., help="the text, or - to read it from standard input"),
    kind: str = typer.Option(..., "--kind", "-k", help="transform spec, e.g. leetspeak, piglatin-marked, "
                                                       "translate:fr, leetspeak+base64"),
    inverse: bool = typer.Option(False, "--inverse", help="apply the inverse transform"),
    translator: str | None = typer.Option(None, help="translator for translate:<lang>: table | table:DIR | "
                                                     "hf:<model> | llm:<backend spec> (default: the built-in table)"),
    src: str = typer.Option("en", help="source language of translate:<lang>"),
) -> None:
    """Print TEXT transformed by --kind (or its inverse with --inverse)."""
    if text == "-":
        text = sys.stdin.read()
        text = text[:-1] if text.endswith("\n") else text
    try:
        options = {"src": src}
        if translator:
            options["translator"] = get_translator(translator)
        t = get_transform(kind, **options)
        result = t.invert(text) if inverse else t.apply(text)
    except (TransformError, BackendError) as e:
        raise fail(str(e)) from None
    typer.echo(result)

