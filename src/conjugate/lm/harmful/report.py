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



def table_markdown(summary: dict, judge: str) -> str:
    """One table per model: per language the answer rate with its 95% interval, refuse and ambiguous rates."""
    boot = summary["bootstrap"]
    lines = ["## Harmful instructions: answer / refuse / ambiguous rates (%)", "",
             f"Judge: `{judge}`. Brackets: 95% bootstrap interval of the answer rate ({boot['resamples']} "
             f"resamples, seed {boot['seed']}). A higher answer rate means the safety tuning held less."]
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
    return "\n".join(lines) + "\n"


def write_table(summary: dict, judge: str, path: str | Path) -> Path:
    """``table.md``: the rates table, and with transforms the answer rate under each (no model text)."""
    extra = "\n" + conjugate_table(summary["conjugate"], "Answer rate under conjugate transforms") \
        if "conjugate" in summary else ""
    return atomic_write_text(path, table_markdown(summary, judge) + extra)


def plot_answer_rates(summary: dict, path: str | Path, judge: str = "") -> Path:
    """Grouped bars: one group per language, one bar per model, answer rate with 95% interval error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, langs = summary["models"], summary["langs"]
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(langs) + 2.5), 3.6))
    for k, m in enumerate(models):
        xs = np.arange(len(langs)) + (k - (len(models) - 1) / 2) * width
        ys = np.array([summary["rates"][m][lang]["ANSWER"] for lang in langs], dtype=float)
        ci = np.array([summary["ci95"][m][lang]["ANSWER"] for lang in langs], dtype=float)
        err = np.clip(np.vstack([ys - ci[:, 0], ci[:, 1] - ys]), 0, None)
        ax.bar(xs, np.nan_to_num(ys), width=width, yerr=np.nan_to_num(err), capsize=3, label=_short(m))
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("answer rate (share labelled ANSWER)")
    ax.set_title("Harmful instructions answered, by prompt language" + (f" (judge: {judge})" if judge else ""),
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return write_figure(fig, path, 130)


def _short(spec: str) -> str:
    """A model's label in the legend: a local folder's name, otherwise the spec without its server URL."""
    if Path(spec).expanduser().is_dir():
        return Path(spec).name
    return spec.split("@http")[0]
