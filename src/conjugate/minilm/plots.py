"""The miniature's figure: ICL accuracy per language (pretrained, tuned, tuned with conjugate prompting, and the
best fixed-strategy baseline), next to the answer rate (how often the model answered the bait question)."""

from __future__ import annotations

from pathlib import Path

from ..runs import write_figure

SERIES = (("pretrained", "pretrained"), ("tuned", "tuned"), ("tuned_conjugate", "tuned, conjugate prompt"))


def plot_summary(summary: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = summary["languages"]
    width = 0.8 / len(SERIES)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(langs) + 3), 3.6))
    for ax, key, title in ((axes[0], "icl_accuracy", "ICL accuracy"),
                           (axes[1], "answer_rate", "answered the bait question instead")):
        for k, (name, label) in enumerate(SERIES):
            xs = [i + (k - (len(SERIES) - 1) / 2) * width for i in range(len(langs))]
            ax.bar(xs, [summary[key][name][lang] for lang in langs], width=width, label=label)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=10)
    best = [max(b[lang] for b in summary["baselines"].values()) for lang in langs]
    axes[0].scatter(range(len(langs)), best, marker="_", s=400, color="black", zorder=3,
                    label="best fixed-strategy baseline")
    axes[0].set_ylabel("fraction of held-out prompts")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"Miniature ICL vs instruction following (seed {summary['seed']}, {summary['split']} split)",
                 fontsize=10)
    fig.tight_layout()
    return write_figure(fig, path, 120)
