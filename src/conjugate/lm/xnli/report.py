"""The XNLI study's human-readable outputs: a Markdown table per mode and a grouped-bar figure."""

from __future__ import annotations

import math
from pathlib import Path

from ...runs import atomic_write_text, write_figure
from ..report import conjugate_table, pct, short_name

MODE_TITLES = {"generate": "greedy generation, output starts with the label word",
               "loglik": "argmax of the three label log-likelihoods"}




def table_markdown(summary: dict) -> str:
    """Per mode and language: n, base accuracy, each code-tuned model's accuracy and its drop from the base."""
    models, langs = summary["models"], summary["languages"]
    base, tuned = models[0], models[1:]
    lines = ["# XNLI: code fine-tuning vs natural-language reasoning", "",
             f"The first model ({base}) is the base model; drop = base accuracy − tuned accuracy, in points. "
             "Chance is 33.3%; ± is one binomial standard error.", ""]
    for mode in summary["modes"]:
        acc, err = summary["accuracy"][mode], summary["stderr"][mode]
        head = ["language", "n", f"base: {short_name(base)}"]
        for m in tuned:
            head += [f"tuned: {short_name(m)}", "drop"]
        lines += [f"## Accuracy (%): {mode} ({MODE_TITLES[mode]})", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lang in langs:
            cells = [lang, str(summary["n"][lang]), f"{pct(acc[base][lang])} ± {pct(err[base][lang])}"]
            for m in tuned:
                cells += [f"{pct(acc[m][lang])} ± {pct(err[m][lang])}", pct(summary["drop"][mode][m][lang])]
            lines.append("| " + " | ".join(cells) + " |")
        for m in tuned:
            drops = {lang: d for lang, d in summary["drop"][mode][m].items() if not math.isnan(d)}
            top = max(drops.values(), default=0.0)
            if top > 0:
                worst = ", ".join(lang for lang, d in drops.items() if d == top)
                lines += ["", f"Largest drop for {short_name(m)} ({mode}): **{worst}** ({pct(top)} points)."]
            elif drops:
                lines += ["", f"No drop for {short_name(m)} ({mode}) in any language."]
        lines.append("")
    if "valid_rate" in summary:
        lines += ["## Generation details (%)", "",
                  "valid: the output starts with one of the three label words; exact rule: the authors' script's "
                  "test (case-sensitive, label at character 0 or 1).", "",
                  "| language | " + " | ".join(f"valid: {short_name(m)} | exact rule: {short_name(m)}" for m in models)
                  + " |", "|" + "---|" * (1 + 2 * len(models))]
        for lang in langs:
            cells = [c for m in models for c in (pct(summary["valid_rate"][m][lang]),
                                                  pct(summary["accuracy_exact_rule"][m][lang]))]
            lines.append(f"| {lang} | " + " | ".join(cells) + " |")
        lines.append("")
    if "agreement" in summary:
        lines += ["## Agreement of generate and loglik predictions (%)", "",
                  "| language | " + " | ".join(short_name(m) for m in models) + " |", "|" + "---|" * (len(models) + 1)]
        for lang in langs:
            lines.append(f"| {lang} | " + " | ".join(pct(summary["agreement"][m][lang]) for m in models) + " |")
        lines.append("")
    return "\n".join(lines)


def write_table(summary: dict, path: str | Path) -> Path:
    """``table.md``: the accuracy table, and with transforms one conjugate-prompting table per mode."""
    extra = "".join("\n" + conjugate_table(block, f"XNLI [{mode}] under conjugate prompting")
                    for mode, block in summary.get("conjugate", {}).items())
    return atomic_write_text(path, table_markdown(summary) + extra)


def plot_accuracy(summary: dict, path: str | Path) -> Path:
    """One panel per mode: a group of bars per language, one bar per model, and the chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, langs, modes = summary["models"], summary["languages"], summary["modes"]
    width = 0.8 / max(len(models), 1)
    fig, axes = plt.subplots(1, len(modes), figsize=(max(5.5, 1.0 * len(langs) + 2.5) * len(modes), 3.6),
                             squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        for k, m in enumerate(models):
            xs = [i + (k - (len(models) - 1) / 2) * width for i in range(len(langs))]
            ys = [summary["accuracy"][mode][m][lang] for lang in langs]
            errs = [summary["stderr"][mode][m][lang] for lang in langs]
            label = ("base: " if k == 0 else "tuned: ") + short_name(m)
            ax.bar(xs, ys, width=width, yerr=errs, capsize=2, label=label)
        ax.axhline(1 / 3, color="grey", linestyle=":", linewidth=1, label="chance")
        ax.set_xticks(range(len(langs)), langs)
        ax.set_ylim(0, 1)
        ax.set_ylabel("XNLI accuracy")
        ax.set_title(f"{mode}", fontsize=10)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("XNLI accuracy by prompt language: base vs code fine-tuned", fontsize=11)
    fig.tight_layout()
    return write_figure(fig, path, 130)
