"""``conjugate xnli``: XNLI accuracy of base vs code-tuned models across languages (SPEC §2c)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import BOS_HELP, CACHE_HELP, NO_CACHE_HELP, TRANSFORM_HELP, cache_setting, setup_value
from .common import batch_size as _batch_size
from .common import fail as _fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def run(
    model: list[str] = typer.Option(..., "--model", help="model spec or preset, e.g. llama2-7b-codellama "
                                                        "(repeatable; the first is the base model)"),
    out: Path = typer.Option(..., help="output folder (rerun to resume)"),
    data: str = typer.Option("hf", help="hf (facebook/xnli validation), hf:<hub id or save_to_disk folder>, "
                                        "a save_to_disk folder, or a .jsonl/.tsv file"),
    langs: str | None = typer.Option(None, help="comma-separated languages (default: en,fr,es,de for hf, "
                                                "every language of a local file)"),
    limit: int | None = typer.Option(None, min=1, help="use only the first N items of each language"),
    mode: str | None = typer.Option(None, help="generate (the paper's metric) | loglik | both [default: generate]"),
    setup: str = typer.Option("default", help="default | paper: the authors' decoding — raw text, no BOS token, "
                                              "generate mode, 10 greedy tokens"),
    batch_size: str = typer.Option("auto", help="items per model call: auto or N"),
    max_new_tokens: int | None = typer.Option(None, min=1, help="greedy tokens generated per item (generate "
                                                                "mode) [default: 10]"),
    device: str = typer.Option("auto", help="auto | cpu | cuda (local models)"),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16 (local models)"),
    transform: list[str] = typer.Option([], "--transform", help=TRANSFORM_HELP),
    bos: bool | None = typer.Option(None, "--bos/--no-bos", help=BOS_HELP),
    cache: Path | None = typer.Option(None, help=CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Score each model on XNLI, write predictions, summary, table and figure."""
    from ..lm.backend import BackendError
    from ..lm.presets import resolve_models
    from ..lm.report import conjugate_lines
    from ..lm.xnli import XNLIInputError, resolve_modes, run_study

    size = _batch_size(batch_size)
    mode = setup_value(setup, "--mode", mode, "generate", "generate")
    max_new_tokens = setup_value(setup, "--max-new-tokens", max_new_tokens, 10, 10)
    bos = setup_value(setup, "--bos/--no-bos", bos, False, None)
    try:
        resolve_modes(mode)
        models = resolve_models(model)
        summary = run_study(models, out, data=data, langs=langs, limit=limit, mode=mode, batch_size=size,
                            max_new_tokens=max_new_tokens, device=device, dtype=dtype, show_progress=not quiet,
                            transforms=transform, cache=cache_setting(cache, no_cache), bos=bos,
                            setup=setup)
    except (XNLIInputError, BackendError, ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    for m in summary["modes"]:
        for name in summary["models"]:
            cells = "  ".join(f"{lang} {100 * acc:5.1f}" for lang, acc in summary["accuracy"][m][name].items())
            typer.echo(f"XNLI accuracy % [{m}] | {name}: {cells}")
    for m, block in summary.get("conjugate", {}).items():
        for line in conjugate_lines(block):
            typer.echo(f"[{m}] {line}")
    for name, per in summary.get("agreement", {}).items():
        typer.echo(f"agreement % | {name}: " + "  ".join(f"{lang} {100 * a:5.1f}" for lang, a in per.items()))
    typer.echo(f"computed {summary['computed']}, reused {summary['reused']}; wrote {out / 'table.md'}")


@app.command()
def templates(
    lang: str | None = typer.Option(None, help="show one language (default: all)"),
) -> None:
    """Show each language's prompt and label words (entailment, neutral, contradiction)."""
    from ..lm.xnli import TEMPLATES, XNLIInputError, make_prompt
    from ..lm.xnli.templates import check_lang

    try:
        codes = [lang] if lang else list(TEMPLATES)
        for code in codes:
            check_lang(code)
    except XNLIInputError as e:
        raise _fail(str(e)) from None
    for code in codes:
        t = TEMPLATES[code]
        typer.echo(f"== {code} ({t['name']}, {t['source']}): labels {' / '.join(t['labels'])}")
        typer.echo(make_prompt(code, "<premise>", "<hypothesis>") + t["sep"] + t["labels"][0])
