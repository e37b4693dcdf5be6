"""Pieces every CLI group shares: the one-line error exit, the ``--batch-size auto|N`` parser, and running a
training study with its exit codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


TRANSFORM_HELP = ("conjugate transform spec run beside the prompts as they are (repeatable), e.g. leetspeak, "
                  "rot13, piglatin-marked, base64, leetspeak+base64, translate:fr@table:DIR")
CACHE_HELP = "request cache file (default: $CONJUGATE_CACHE/requests.sqlite, CONJUGATE_CACHE=~/.cache/conjugate)"
BOS_HELP = ("put the tokenizer's BOS token before each prompt (--bos) or not (--no-bos: the paper's setup); "
            "default: the tokenizer's own behaviour for raw text (local models)")
NO_CACHE_HELP = "send every request to the model and store nothing (default: answers come from the request cache)"


SETUPS = ("default", "paper")
SETUP_HELP = "default | paper: the authors' setup for what this option list does not set otherwise (see the README)"


def setup_value(setup: str, option: str, given: Any, paper: Any, default: Any) -> Any:
    """The value of ``option`` under ``--setup``: ``paper`` imposes the authors' value (an explicit other value is
    a usage error, exit 2), ``default`` takes the given value or the study's default."""
    if setup not in SETUPS:
        raise fail(f"unknown --setup {setup!r}; choose {' or '.join(SETUPS)}")
    if setup == "paper":
        if given is not None and given != paper:
            raise fail(f"{option} {given!r} conflicts with --setup paper, which uses {paper!r}")
        return paper
    return default if given is None else given


def cache_setting(cache: Any, no_cache: bool) -> Any:
    """What a study's ``cache`` argument gets from ``--cache PATH`` / ``--no-cache``."""
    return False if no_cache else (cache or True)


def run_or_exit(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a training study and return its summary: bad config or a diverged training → exit 2 with one line;
    Ctrl-C during training (the stage checkpoints first) or between or after stages → exit 130 with a note
    that a rerun resumes. Damaged state and write failures are the CLI's (:class:`conjugate.cli.Group`)."""
    from ..config import ConfigError
    from ..training import Diverged, Interrupted

    try:
        return call()
    except (ConfigError, Diverged) as e:
        raise fail(str(e)) from None
    except Interrupted as e:
        typer.echo(f"interrupted: {e}", err=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume (finished stages are kept)", err=True)
        raise typer.Exit(130) from None
