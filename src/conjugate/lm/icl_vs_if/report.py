"""The study's human-readable outputs: a Markdown table and a grouped-bar figure."""

from __future__ import annotations

import math
from pathlib import Path

from ...runs import atomic_write_text, write_figure
from ..report import conjugate_table, pct, short_name


def table_markdown(summary: dict) -> str:
    """Per language: base accuracy, each tuned model's accuracy and drop; then the IF rates."""
    models, langs = summary["models"], summary["languages"]
    base, tuned = models[0], models[1:]
    acc, ifr = summary["accuracy"], summary["if_rate"]
    head = ["language", "n", f"base: {base}"]
    for m in tuned:
        head += [f"tuned: {m}", f"drop ({m})"]
    lines = ["## ICL accuracy (%)", "",
             "The first model is the base model; drop = base accuracy − tuned accuracy (points).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lang in langs:
        cells = [lang, str(summary["n"][lang]), pct(acc[base][lang])]
        for m in tuned:
            cells += [pct(acc[m][lang]), pct(summary["drop"][m][lang])]
        lines.append("| " + " | ".join(cells) + " |")
    for m in tuned:
        drops = {lang: d for lang, d in summary["drop"][m].items() if not math.isnan(d)}
        top = max(drops.values(), default=0.0)
        if top > 0:
            worst = ", ".join(lang for lang, d in drops.items() if d == top)
            lines += ["", f"Largest drop for {m}: **{worst}** ({pct(top)} points)."]
        elif drops:
            lines += ["", f"No drop for {m} in any language."]
    lines += ["", "## Instruction-following rate (%)", "",
              "Outputs that are not ICL-correct and contain the instruction-following answer as a word.", "",
              "| language | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 1)]
    for lang in langs:
        lines.append(f"| {lang} | " + " | ".join(pct(ifr[m][lang]) for m in models) + " |")
    return "\n".join(lines) + "\n"


def write_table(summary: dict, path: str | Path) -> Path:
    """``table.md``: the ICL table, and with transforms the conjugate-prompting table."""
    extra = "\n" + conjugate_table(summary["conjugate"], "ICL accuracy under conjugate prompting") \
        if "conjugate" in summary else ""
    return atomic_write_text(path, table_markdown(summary) + extra)


def plot_accuracy(summary: dict, path: str | Path) -> Path:
    """Grouped bars: one group per language, one bar per model (ICL accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, langs = summary["models"], summary["languages"]
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(langs) + 2), 3.6))
    for k, m in enumerate(models):
        xs = [i + (k - (len(models) - 1) / 2) * width for i in range(len(langs))]
        ys = [summary["accuracy"][m][lang] for lang in langs]
        label = ("base: " if k == 0 else "tuned: ") + short_name(m)
        ax.bar(xs, ys, width=width, label=label)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ICL accuracy")
    ax.set_title("In-context learning accuracy by prompt language")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return write_figure(fig, path, 130)
