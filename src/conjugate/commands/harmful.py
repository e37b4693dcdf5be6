"""``conjugate harmful``: harmful-instruction refusals across languages; run, eval-sets, export, agreement."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import BOS_HELP, CACHE_HELP, NO_CACHE_HELP, TRANSFORM_HELP, cache_setting, setup_value
from .common import batch_size as _batch_size
from .common import fail as _fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _errors() -> tuple[type[BaseException], ...]:
    """The library's errors for bad input, models or translators: one line on stderr, exit 2."""
    from ..lm.backend import BackendError
    from ..lm.harmful import HarmfulInputError, JudgeError
    from ..transforms import TransformError

    return BackendError, HarmfulInputError, JudgeError, TransformError, FileNotFoundError


@app.command()
def run(
    input: Path | None = typer.Option(None, "--input", help="AdvBench harmful_behaviors.csv (goal column), a .jsonl "
                                                           "with 'prompt', or a text file with one instruction per "
                                                           "line (or give --eval-set)"),
    eval_set: str | None = typer.Option(None, "--eval-set", help="a held-out evaluation set instead of --input: "
                                                                 "harmbench-test, advbench-heldout (needs --authors) "
                                                                 "or benign (over-refusal); see `harmful eval-sets`"),
    authors: Path | None = typer.Option(None, help="the authors' files for --eval-set advbench-heldout: a clone of "
                                                   "kothasuhas/understanding-forgetting, its harmful_generation/ or "
                                                   "harmful_instructions/ folder"),
    langs: str | None = typer.Option(None, help="comma-separated language codes, e.g. en,ja,hu,sw,ml (required with "
                                                "--input; with --eval-set: the set's languages)"),
    model: list[str] = typer.Option(..., "--model", help="chat model: local folder / hub id (chat template) or "
                                                         "openai-chat:<model>@<url> (repeatable)"),
    out: Path = typer.Option(..., help="output folder (rerun to resume)"),
    translated: Path | None = typer.Option(None, help="folder of <lang>.txt files aligned line by line with "
                                                      "the input"),
    translator: str | None = typer.Option(None, help="translator for prompts without a file and for "
                                                     "back-translating replies: table:DIR, hf:<model>, "
                                                     "llm:<model spec>"),
    judge: str = typer.Option("phrases", help="phrases | llm:<model spec>"),
    sample: int | None = typer.Option(None, help="draw N instructions with --seed (default: all)"),
    sample_method: str | None = typer.Option(None, help="project (a NumPy draw, input order) | authors (the "
                                                        "paper's: random.seed, shuffle, first N) [default: project]"),
    seed: int | None = typer.Option(None, help="seed of the sample and of the bootstrap intervals [default: 0]"),
    arm: list[str] = typer.Option([], "--arm", help="chat (the chat template / endpoint) and/or completion (the "
                                                    "instruction + a blank line as raw text) [default: chat]"),
    setup: str = typer.Option("default", help="default | paper: the authors' selection (--sample-method authors, "
                                              "--sample 100, --seed 10), 512 tokens, both arms"),
    bos: bool | None = typer.Option(None, "--bos/--no-bos", help=BOS_HELP + " — completion arm"),
    redact: bool = typer.Option(False, help="keep model text out of every report file (text goes to "
                                            "private/responses_text.jsonl)"),
    max_new_tokens: int | None = typer.Option(None, help="tokens generated per reply (greedy) [default: 256]"),
    system_prompt: str | None = typer.Option(None, help="system turn sent before every instruction"),
    batch_size: str = typer.Option("auto", help="prompts per generation call: auto or N"),
    transform: list[str] = typer.Option([], "--transform", help=TRANSFORM_HELP),
    cache: Path | None = typer.Option(None, help=CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Ask each model every instruction in every language, label the replies, write rates, table and figure."""
    from ..lm.harmful import run_study
    from ..lm.report import conjugate_lines

    size = _batch_size(batch_size)
    sample_method = setup_value(setup, "--sample-method", sample_method, "authors", "project")
    sample = setup_value(setup, "--sample", sample, 100, None)
    seed = setup_value(setup, "--seed", seed, 10, 0)
    max_new_tokens = setup_value(setup, "--max-new-tokens", max_new_tokens, 512, 256)
    arms = setup_value(setup, "--arm", tuple(arm) or None, ("chat", "completion"), ("chat",))
    try:
        summary = run_study(input, langs, model, out, translated=translated, translator=translator, judge=judge,
                            sample=sample, seed=seed, redact=redact, max_new_tokens=max_new_tokens,
                            system_prompt=system_prompt, batch_size=size, show_progress=not quiet,
                            transforms=transform, cache=cache_setting(cache, no_cache), model_arms=arms,
                            sample_method=sample_method, bos=bos, setup=setup, eval_set=eval_set, authors=authors)
    except _errors() as e:
        raise _fail(str(e)) from None
    if "eval_set" in summary:
        es = summary["eval_set"]
        typer.echo(f"eval set {es['name']}: {es['n_items']} of {es['n_set']} items")
    for m in summary["models"]:
        if "over_refusal" in summary:
            cells = "  ".join(f"{lang} {100 * r['rate']:5.1f}" for lang, r in summary["over_refusal"][m].items())
            typer.echo(f"over-refusal % | {m}: {cells}")
            continue
        cells = "  ".join(f"{lang} {100 * r['ANSWER']:5.1f}" for lang, r in summary["rates"][m].items())
        typer.echo(f"answer rate % | {m}: {cells}")
    if "conjugate" in summary:
        for line in conjugate_lines(summary["conjugate"]):
            typer.echo(line)
    typer.echo(f"generated {summary['generated']}, reused {summary['reused']}, relabelled {summary['relabelled']}; "
               f"wrote {out / 'table.md'}")


@app.command("eval-sets")
def eval_sets(
    authors: Path | None = typer.Option(None, help="the authors' folder, to count advbench-heldout too"),
) -> None:
    """List the held-out evaluation sets of `harmful run --eval-set`, with their item counts and sources."""
    from ..lm.harmful.evalsets import EVAL_SETS, load_eval_set

    for name in EVAL_SETS:
        if name == "advbench-heldout" and authors is None:
            typer.echo(f"{name}: the odd lines of the authors' harmful_instructions_en.txt in en, ja, hu, sw, ml "
                       "(give --authors DIR to count them)")
            continue
        try:
            es = load_eval_set(name, authors=authors if name == "advbench-heldout" else None)
        except _errors() as e:
            raise _fail(str(e)) from None
        typer.echo(f"{es.describe()}; languages {','.join(es.default_langs)}; from {es.source}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="a run folder of `conjugate harmful run`"),
    out: Path = typer.Option(..., help="CSV to write for annotation"),
    force: bool = typer.Option(False, help="overwrite a CSV that already holds human labels"),
) -> None:
    """Write the run's replies as a CSV with an empty human_label column."""
    from ..lm.harmful import export_labels

    try:
        n = export_labels(run_dir, out, force=force)
    except _errors() as e:
        raise _fail(str(e)) from None
    typer.echo(f"wrote {n} rows to {out}; fill human_label with ANSWER, REFUSE or AMBIGUOUS")


@app.command()
def agreement(
    run_dir: Path = typer.Argument(..., help="the run folder the labels were exported from"),
    labels: Path = typer.Option(..., help="the exported CSV with human_label filled in"),
) -> None:
    """Cohen's kappa and the confusion matrix between the automatic and the human labels."""
    from ..lm.harmful import agreement as compute
    from ..lm.harmful import format_agreement

    try:
        result = compute(labels, run_dir)
    except _errors() as e:
        raise _fail(str(e)) from None
    typer.echo(format_agreement(result))
    typer.echo(f"wrote {run_dir / 'agreement.json'}")
