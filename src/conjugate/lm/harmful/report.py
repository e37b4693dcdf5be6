"""Rates, bootstrap intervals, the Markdown table and the figure of the harmful-instruction study.

The 95% intervals are percentile bootstrap intervals over the items of one (model, language) cell: resampling
``n`` labels with replacement is the same as drawing label counts from ``Multinomial(n, observed rates)``, so
all ``n_boot`` resamples of a cell come from one vectorised ``numpy`` call, independent of ``n``. Each cell has
its own generator seeded with ``[seed, model index, language index]``, so a cell's interval does not depend on
which other cells exist. No model text ever reaches these files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ...runs import atomic_write_text, write_figure
from ..report import conjugate_table, pct
from .judge import LABELS

N_BOOT = 2000


def bootstrap_ci(counts: Sequence[int], seed: Sequence[int], n_boot: int = N_BOOT) -> np.ndarray:
    """95% percentile intervals, shape (len(counts), 2), for each label's rate given its label ``counts``."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return np.full((len(counts), 2), np.nan)
    rng = np.random.default_rng(list(seed))
    draws = rng.multinomial(n, counts / n, size=n_boot) / n  # (n_boot, labels)
    return np.percentile(draws, [2.5, 97.5], axis=0).T


def summarise(rows: Iterable[dict], models: Sequence[str], langs: Sequence[str], seed: int,
              n_boot: int = N_BOOT) -> dict:
    """``rates``/``ci95``/``counts`` per model and language from labelled rows (``model``, ``lang``, ``label``)."""
    counts = {m: {lang: dict.fromkeys(LABELS, 0) for lang in langs} for m in models}
    for r in rows:
        counts[r["model"]][r["lang"]][r["label"]] += 1
    rates: dict = {}
    ci95: dict = {}
    for i, m in enumerate(models):
        rates[m], ci95[m] = {}, {}
        for j, lang in enumerate(langs):
            c = [counts[m][lang][k] for k in LABELS]
            n = sum(c)
            rates[m][lang] = {k: (v / n if n else float("nan")) for k, v in zip(LABELS, c, strict=True)} | {"n": n}
            ci = bootstrap_ci(c, (seed, i, j), n_boot)
            ci95[m][lang] = {k: [float(lo), float(hi)] for k, (lo, hi) in zip(LABELS, ci, strict=True)}
    summary = {"models": list(models), "langs": list(langs), "rates": rates, "ci95": ci95, "counts": counts,
               "bootstrap": {"resamples": n_boot, "seed": seed, "method": "percentile, multinomial resampling"}}
    if "en" in langs:
        summary["answer_rate_minus_en"] = {
            m: {lang: rates[m][lang]["ANSWER"] - rates[m]["en"]["ANSWER"] for lang in langs if lang != "en"}
            for m in models}
    return summary


def add_eval_set(summary: dict, rows: Iterable[dict], es, seed: int, n_boot: int = N_BOOT) -> dict:
    """Add an evaluation set's blocks to ``summary`` (in place): ``eval_set`` (name, kind, items, source),
    ``by_type`` (per model, language and item type: ``n`` and the refusal rate with its 95 % interval) and, for
    the ``benign`` set, ``over_refusal`` (per model and language: the refusal rate with its 95 % interval, the
    same numbers as ``rates``/``ci95``'s ``REFUSE``)."""
    rows = list(rows)
    n_items = len({r["id"] for r in rows})
    summary["eval_set"] = {"name": es.name, "kind": es.kind, "n_items": n_items, "n_set": len(es.items),
                           "source": es.source}
    models, langs = summary["models"], summary["langs"]
    types = sorted(set(es.types.values()))
    refuse = LABELS.index("REFUSE")
    if types:
        counts = {(m, lang, t): dict.fromkeys(LABELS, 0) for m in models for lang in langs for t in types}
        for r in rows:
            counts[(r["model"], r["lang"], es.types[r["id"]])][r["label"]] += 1
        by_type: dict = {}
        for i, m in enumerate(models):
            by_type[m] = {}
            for j, lang in enumerate(langs):
                by_type[m][lang] = {}
                for k, t in enumerate(types):
                    c = [counts[(m, lang, t)][lab] for lab in LABELS]
                    n = sum(c)
                    if not n:
                        continue
                    lo, hi = bootstrap_ci(c, (seed, i, j, k + 1), n_boot)[refuse]
                    by_type[m][lang][t] = {"n": n, "REFUSE": c[refuse] / n, "ci95": [float(lo), float(hi)]}
        summary["by_type"] = by_type
    if es.kind == "benign":
        summary["over_refusal"] = {
            m: {lang: {"rate": summary["rates"][m][lang]["REFUSE"], "ci95": summary["ci95"][m][lang]["REFUSE"],
                       "n": summary["rates"][m][lang]["n"]} for lang in langs} for m in models}
    return summary


def table_markdown(summary: dict, judge: str) -> str:
    """One table per model: per language the answer rate with its 95% interval, refuse and ambiguous rates; for
    the benign evaluation set the refusal (over-refusal) rate with its interval comes first."""
    if "over_refusal" in summary:
        return _benign_table(summary, judge)
    boot = summary["bootstrap"]
    lines = ["## Harmful instructions: answer / refuse / ambiguous rates (%)", "",
             f"Judge: `{judge}`. Brackets: 95% bootstrap interval of the answer rate ({boot['resamples']} "
             f"resamples, seed {boot['seed']}). A higher answer rate means the safety tuning held less."]
    if "eval_set" in summary:
        lines += ["", _eval_set_line(summary)]
    has_en = "answer_rate_minus_en" in summary
    for m in summary["models"]:
        head = ["language", "n", "answer % [95% CI]", "refuse %", "ambiguous %"] + (["answer − en (points)"]
                                                                                   if has_en else [])
        lines += ["", f"### {m}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lang in summary["langs"]:
            r, ci = summary["rates"][m][lang], summary["ci95"][m][lang]["ANSWER"]
            cells = [lang, str(r["n"]), f"{pct(r['ANSWER'])} [{pct(ci[0])}, {pct(ci[1])}]",
                     pct(r["REFUSE"]), pct(r["AMBIGUOUS"])]
            if has_en:
                diff = summary["answer_rate_minus_en"][m].get(lang)
                cells.append("–" if diff is None else (f"{100 * diff:+.1f}" if not math.isnan(diff) else "–"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _type_lines(summary)) + "\n"


def _eval_set_line(summary: dict) -> str:
    es = summary["eval_set"]
    sampled = f"{es['n_items']} of its {es['n_set']} items" if es["n_items"] != es["n_set"] else \
        f"all {es['n_set']} items"
    return f"Evaluation set: `{es['name']}`, {sampled}."


def _benign_table(summary: dict, judge: str) -> str:
    """The benign set: over-refusal (the refusal rate) per model and language, with its 95% interval."""
    boot = summary["bootstrap"]
    lines = ["## Benign prompts: over-refusal (%)", "",
             f"Judge: `{judge}`. Over-refusal: the share of benign prompts labelled REFUSE; brackets: its 95% "
             f"bootstrap interval ({boot['resamples']} resamples, seed {boot['seed']}). Lower is better.", "",
             _eval_set_line(summary)]
    for m in summary["models"]:
        head = ["language", "n", "over-refusal % [95% CI]", "answer %", "ambiguous %"]
        lines += ["", f"### {m}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lang in summary["langs"]:
            r, o = summary["rates"][m][lang], summary["over_refusal"][m][lang]
            lines.append("| " + " | ".join([lang, str(r["n"]), f"{pct(o['rate'])} [{pct(o['ci95'][0])}, "
                                                             f"{pct(o['ci95'][1])}]", pct(r["ANSWER"]),
                                            pct(r["AMBIGUOUS"])]) + " |")
    return "\n".join(lines + _type_lines(summary)) + "\n"


def _type_lines(summary: dict) -> list[str]:
    """Refusal rate per item type (benign: look-alike / plain; HarmBench: semantic category)."""
    if "by_type" not in summary:
        return []
    lines = ["", "### Refusal rate by item type (%)", "", "| model | language | type | n | refuse % [95% CI] |",
             "|---|---|---|---|---|"]
    for m, per_lang in summary["by_type"].items():
        for lang, per_type in per_lang.items():
            for t, v in per_type.items():
                lines.append(f"| {m} | {lang} | {t} | {v['n']} | {pct(v['REFUSE'])} [{pct(v['ci95'][0])}, "
                             f"{pct(v['ci95'][1])}] |")
    return lines


def write_table(summary: dict, judge: str, path: str | Path) -> Path:
    """``table.md``: the rates table, and with transforms the answer rate under each (no model text)."""
    extra = "\n" + conjugate_table(summary["conjugate"], "Answer rate under conjugate transforms") \
        if "conjugate" in summary else ""
    return atomic_write_text(path, table_markdown(summary, judge) + extra)


def plot_answer_rates(summary: dict, path: str | Path, judge: str = "") -> Path:
    """Grouped bars: one group per language, one bar per model, answer rate with 95% interval error bars (for
    the benign evaluation set: the over-refusal rate)."""
    benign = "over_refusal" in summary
    label = "REFUSE" if benign else "ANSWER"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, langs = summary["models"], summary["langs"]
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(langs) + 2.5), 3.6))
    for k, m in enumerate(models):
        xs = np.arange(len(langs)) + (k - (len(models) - 1) / 2) * width
        ys = np.array([summary["rates"][m][lang][label] for lang in langs], dtype=float)
        ci = np.array([summary["ci95"][m][lang][label] for lang in langs], dtype=float)
        err = np.clip(np.vstack([ys - ci[:, 0], ci[:, 1] - ys]), 0, None)
        ax.bar(xs, np.nan_to_num(ys), width=width, yerr=np.nan_to_num(err), capsize=3, label=_short(m))
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("over-refusal (benign prompts labelled REFUSE)" if benign else "answer rate (share labelled ANSWER)")
    title = ("Benign prompts refused" if benign else "Harmful instructions answered") + ", by prompt language"
    ax.set_title(title + (f" (judge: {judge})" if judge else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return write_figure(fig, path, 130)


def _short(spec: str) -> str:
    """A model's label in the legend: a local folder's name, otherwise the spec without its server URL."""
    if Path(spec).expanduser().is_dir():
        return Path(spec).name
    return spec.split("@http")[0]
