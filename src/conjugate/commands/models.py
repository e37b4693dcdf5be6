"""``conjugate models``: tiny offline models, the preset list, and a one-prompt check of any backend."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .common import fail

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


@app.command()
def tiny(
    out: Path = typer.Option(..., help="folder to write the model and tokenizer into"),
    arch: str = typer.Option("gpt2", help="gpt2 | llama"),
    seed: int = typer.Option(0, help="seed of the random weights"),
) -> None:
    """Write a tiny random model + BPE tokenizer (safetensors) that loads like any hub model."""
    from ..lm.tiny import ARCHS, write_tiny_model

    if arch not in ARCHS:
        raise fail(f"--arch: unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if out.exists() and not out.is_dir():
        raise fail(f"--out: {out} exists and is not a folder")
    path = write_tiny_model(out, arch=arch, seed=seed)
    typer.echo(f"wrote tiny {arch} model to {path}")


@app.command()
def presets() -> None:
    """List the named base → tuned model pairs (use a name with --model, or <name>:base / <name>:tuned)."""
    from ..lm.presets import PRESETS

    table = Table("preset", "base", "tuned", "study", "notes", show_lines=False)
    for name, p in PRESETS.items():
        table.add_row(name, p["base"], p["tuned"], p["study"], p["notes"])
    Console().print(table)


@app.command()
def generate(
    spec: str = typer.Argument(..., help="model spec: path, hub id, openai:<model>@<url>, <preset>:base|tuned"),
    prompt: str = typer.Argument(..., help="the prompt"),
    max_new_tokens: int = typer.Option(20, min=1, help="tokens to generate"),
    stop: list[str] = typer.Option(["\n"], help="stop string (repeatable)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda (local models)"),
) -> None:
    """Greedy continuation of one prompt: a quick check that a backend loads and answers."""
    from ..lm.backend import BackendError
    from ..lm.load import load_backend

    try:
        backend = load_backend(spec, device=device)
        (text,) = backend.generate([prompt], max_new_tokens=max_new_tokens, stop=tuple(stop))
    except BackendError as e:
        raise fail(str(e)) from None
    typer.echo(text)


@app.command("list")
def list_models() -> None:
    """The real models this installation can load by name, and the GGUF conversions cached so far."""
    from ..lm.catalog import listing
    from ..lm.gguf import cached_entries, conversion_dir

    table = Table("name", "what", "role", "status", "files")
    for row in listing():
        table.add_row(row.name, row.title, row.role, row.status, row.file)
    out = Console()
    out.print(table)
    entries = cached_entries()
    cache = Table("conversion cache entry", "from", "transformers", "size")
    for folder, meta in entries:
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        cache.add_row(folder.name, str(meta.get("gguf_name", "?")), str(meta.get("transformers", "?")),
                      f"{size / 1e6:,.0f} MB")
    if entries:
        out.print(cache)
    else:
        out.print(f"no GGUF conversions cached yet in {conversion_dir()} (the first load of a GGUF model makes one)")
