"""``conjugate icl-vs-if``: build the prompts, run models on them, score released CSVs (SPEC §2a)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import BOS_HELP, CACHE_HELP, NO_CACHE_HELP, TRANSFORM_HELP, cache_setting, setup_value
from .common import batch_size as _batch_size
from .common import fail as _fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def build(
    out: Path = typer.Option(..., help="prompts file to write (JSONL)"),
    authors: Path | None = typer.Option(
        None, help="the authors' sentence files random_sentences_<lang>.txt (this folder, its sentences/ or, in a "
                   "clone of kothasuhas/understanding-forgetting, icl_vs_if/sentences/): write the paper's 2,800 "
                   "prompts, byte for byte (default: the project's own prompts from its own 160-sentence corpus)"),
    langs: str | None = typer.Option(None, help="comma-separated languages (default: en,fr,es,nl,hu,leet,piglatin)"),
    tasks: str | None = typer.Option(None, help="comma-separated tasks (default: repeat-math,repeat-fillblank,"
                                                "capitalize-math,capitalize-fillblank)"),
    n: int | None = typer.Option(None, help="prompts per (task, language) (default: 100; not with --authors)"),
    shots: int | None = typer.Option(None, help="exemplars per prompt (default: 2; not with --authors)"),
    seed: int | None = typer.Option(None, help="seed of the sentence and number draws (default: 0; not with "
                                               "--authors, whose seed is the authors' 10)"),
) -> None:
    """Write the prompt set: one JSON object per prompt (the project's own, or with --authors the paper's)."""
    from ..lm.icl_vs_if import build_authors_dataset, build_dataset, write_dataset

    try:
        if authors is not None:
            given = [f"--{k}" for k, v in (("n", n), ("shots", shots), ("seed", seed)) if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: not with --authors (the paper's prompts are fixed: seed 10, "
                                 "2 shots, 100 per task and language)")
            rows = build_authors_dataset(authors, langs, tasks)
        else:
            rows = build_dataset(langs, tasks, n=100 if n is None else n, shots=2 if shots is None else shots,
                                 seed=0 if seed is None else seed)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    write_dataset(rows, out)
    source = f"the authors' sentences in {authors}" if authors is not None else "the project's own corpus"
    typer.echo(f"wrote {len(rows)} prompts from {source} to {out}")


@app.command()
def run(
    model: list[str] = typer.Option(..., "--model", help="model spec or preset (repeatable; first = base model)"),
    out: Path = typer.Option(..., help="output folder (rerun to resume)"),
    data: Path | None = typer.Option(None, help="prompts file from `build` (default: build the project's set)"),
    authors: Path | None = typer.Option(None, help="run on the paper's 2,800 prompts, built from the authors' "
                                                   "sentence files in this folder (instead of --data)"),
    setup: str = typer.Option("default", help="default | paper: the authors' decoding — raw text, no BOS token, "
                                              "10 greedy tokens — on the paper's prompts (--authors or --data)"),
    limit: int | None = typer.Option(None, help="use only the first N prompts of each (task, language)"),
    batch_size: str = typer.Option("auto", help="prompts per generation call: auto or N"),
    max_new_tokens: int | None = typer.Option(None, help="greedy tokens generated per prompt [default: 10]"),
    seed: int = typer.Option(0, help="seed of the default prompt set"),
    chat: bool | None = typer.Option(None, "--chat/--no-chat", help="wrap prompts in the model's chat template "
                                                                    "(default: raw text, as in the paper)"),
    transform: list[str] = typer.Option([], "--transform", help=TRANSFORM_HELP),
    bos: bool | None = typer.Option(None, "--bos/--no-bos", help=BOS_HELP),
    cache: Path | None = typer.Option(None, help=CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Generate with each model, score, and write outputs, scores, summary, table and figure."""
    from ..lm.backend import BackendError
    from ..lm.icl_vs_if import run_study
    from ..lm.presets import resolve_models
    from ..lm.report import conjugate_lines

    size = _batch_size(batch_size)
    max_new_tokens = setup_value(setup, "--max-new-tokens", max_new_tokens, 10, 10)
    chat = setup_value(setup, "--chat/--no-chat", chat, False, False)
    bos = setup_value(setup, "--bos/--no-bos", bos, False, None)
    if data is not None and authors is not None:
        raise _fail("--data and --authors: give one prompt source")
    if setup == "paper" and data is None and authors is None:
        raise _fail("--setup paper runs the paper's prompts: give --authors DIR (the authors' sentence files) or "
                    "--data FILE (from `build --authors`)")
    try:
        models = resolve_models(model)
        summary = run_study(models, out, data=data, limit=limit, batch_size=size, max_new_tokens=max_new_tokens,
                            seed=seed, chat=chat, show_progress=not quiet, transforms=transform,
                            cache=cache_setting(cache, no_cache), bos=bos, authors=authors, setup=setup)
    except (BackendError, ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    _print(summary)
    if "conjugate" in summary:
        for line in conjugate_lines(summary["conjugate"]):
            typer.echo(line)
    typer.echo(f"generated {summary['generated']}, reused {summary['cached']}; wrote {out / 'table.md'}")


@app.command()
def score(
    legacy_csv: list[Path] = typer.Option(..., "--legacy-csv", help="CSV in the authors' released format "
                                                                    "(repeatable: one per model, base first)"),
    pair: list[str] = typer.Option(
        [], "--pair", help="TUNED=BASE (repeatable): compare a tuned model with its own base, each named by its CSV's "
                           "file stem or path, e.g. --pair alpaca=llama --pair vicuna=llama --pair "
                           "opt-iml-max-1.3b=opt-1.3b; a model in no pair gets no drop (default: every file "
                           "against the first)"),
    out: Path | None = typer.Option(None, help="folder for scores.csv, summary.json, table.md and the figure"),
) -> None:
    """Score CSVs with columns prompt, icl_ans, if_ans, config, model_outputs."""
    from ..lm.icl_vs_if import score_legacy

    try:
        pairs = [_parse_pair(p) for p in pair] if pair else None
        summary = score_legacy(legacy_csv, out, pairs=pairs)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    _print(summary)
    for tuned, base in summary.get("pairs", {}).items():
        cells = "  ".join(f"{lang} {100 * d:5.1f}" for lang, d in summary["drop"][tuned].items())
        typer.echo(f"drop (points) | {base} -> {tuned}: {cells}")
    if out is not None:
        typer.echo(f"wrote {out / 'table.md'}")


def _parse_pair(raw: str) -> tuple[str, str]:
    tuned, sep, base = raw.partition("=")
    if not sep or not tuned.strip() or not base.strip():
        raise ValueError(f"--pair {raw!r}: expected TUNED=BASE, e.g. alpaca=llama")
    return tuned.strip(), base.strip()


def _print(summary: dict) -> None:
    for m in summary["models"]:
        cells = "  ".join(f"{lang} {100 * acc:5.1f}" for lang, acc in summary["accuracy"][m].items())
        typer.echo(f"ICL accuracy % | {m}: {cells}")
