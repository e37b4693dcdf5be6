"""The study's human-readable outputs: a Markdown table and a grouped-bar figure."""

from __future__ import annotations

import math
from pathlib import Path

from ...runs import atomic_write_text, write_figure
from ..report import conjugate_table, pct, short_name
from .score import FILLBLANK_MIN_CHARS


def _pairs(summary: dict) -> dict[str, str]:
    """``{tuned: base}``: the summary's, or (an older summary) every model after the first against the first."""
    models = summary["models"]
    return summary.get("pairs", {m: models[0] for m in models[1:]} if "drop" in summary else {})


def table_markdown(summary: dict) -> str:
    """Per language: each model's accuracy, each tuned model's drop against its base; then the IF rates."""
    models, langs = summary["models"], summary["languages"]
    pairs = _pairs(summary)
    acc, ifr = summary["accuracy"], summary["if_rate"]
    default = pairs == {m: models[0] for m in models[1:]}
    head = ["language", "n"]
    for m in models:
        head += [f"tuned: {m}", f"drop ({m})"] if m in pairs else [f"base: {m}"]
    note = ("The first model is the base model; drop = base accuracy − tuned accuracy (points)." if default else
            "Each tuned model against its own base: " + ", ".join(f"{b} → {t}" for t, b in pairs.items())
            + "; drop = base accuracy − tuned accuracy (points).")
    lines = ["## ICL accuracy (%)", "", note, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lang in langs:
        cells = [lang, str(summary["n"][lang])]
        for m in models:
            cells += [pct(acc[m][lang]), pct(summary["drop"][m][lang])] if m in pairs else [pct(acc[m][lang])]
        lines.append("| " + " | ".join(cells) + " |")
    for m in pairs:
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
    long = summary.get("if_rate_fillblank_3plus")
    if long is not None and any(summary["n_fillblank_3plus"].values()):
        k = FILLBLANK_MIN_CHARS
        lines += ["", f"## Instruction-following rate, fill-in-the-blank with a missing word of ≥ {k} characters (%)",
                  "", f"A missing word of fewer than {k} characters (`A`, `La`, `My`) appears as a word in many "
                  "outputs by chance; n = such prompts per language.", "",
                  "| language | n | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 2)]
        for lang in langs:
            cells = [lang, str(summary["n_fillblank_3plus"][lang]), *(pct(long[m][lang]) for m in models)]
            lines.append("| " + " | ".join(cells) + " |")
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
    pairs = _pairs(summary)
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(langs) + 2), 3.6))
    for k, m in enumerate(models):
        xs = [i + (k - (len(models) - 1) / 2) * width for i in range(len(langs))]
        ys = [summary["accuracy"][m][lang] for lang in langs]
        label = ("tuned: " if m in pairs else "base: ") + short_name(m)
        ax.bar(xs, ys, width=width, label=label)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ICL accuracy")
    ax.set_title("In-context learning accuracy by prompt language")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return write_figure(fig, path, 130)
