"""Figures of the synthetic study (matplotlib, Agg backend, written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..runs import write_figure  # noqa: E402


def save(fig: plt.Figure, path: Path) -> Path:
    return write_figure(fig, path, 110, bbox_inches="tight")


def study_figures(folder: Path, metrics: dict, summary: dict, cfg) -> list[Path]:
    folder = Path(folder)
    pos = metrics["positions"]
    cur, bc = metrics["curves"], metrics["bayes_curves"]
    c_star = summary["conjugate_scale"]
    out = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((axes[0], "cont", "D_cont (general capability)"), (axes[1], "disc", "D_disc (fine-tuning)"))
    for ax, dist, title in panels:
        ax.plot(pos[1:], cur[f"pretrained/{dist}/c=1.0"][1:], "o-", label="pretrained")
        ax.plot(pos[1:], cur[f"finetuned/{dist}/c=1.0"][1:], "s-", label="fine-tuned")
        if dist == "cont":
            ax.plot(pos[1:], cur[f"finetuned/{dist}/c={c_star}"][1:], "^-", label=f"fine-tuned, conjugate c={c_star:g}")
        ax.plot(pos[1:], bc[f"mixture_pretrain/{dist}"][1:], "k--", label=f"Bayes α={cfg.alpha_pretrain}")
        ax.plot(pos[1:], bc[f"ridge/{dist}"][1:], ":", color="gray", label="ridge")
        if dist == "disc":
            ax.plot(pos[1:], bc[f"dmmse/{dist}"][1:], "-.", color="gray", label="dMMSE")
        ax.set(title=title, xlabel="number of exemplars", ylabel="squared error / d", yscale="log")
        ax.legend(fontsize=8)
    out.append(save(fig, folder / "loss_vs_exemplars.png"))

    fig, ax = plt.subplots(figsize=(5.5, 4))
    by = summary["cont_mse_by_scale"]
    cs = sorted(float(c) for c in by["pretrained"])
    ax.plot(cs, [by["pretrained"][str(c)] for c in cs], "o-", label="pretrained")
    ax.plot(cs, [by["finetuned"][str(c)] for c in cs], "s-", label="fine-tuned")
    bs = summary["bayes_cont_mse_by_scale"]
    for key, style in (("pretrain", "k--"), ("finetune", "k:")):
        alpha = cfg.alpha_pretrain if key == "pretrain" else cfg.alpha_finetune
        ax.plot(cs, [bs[key][str(c)] for c in cs], style, label=f"Bayes α={alpha}")
    if "alpha_eff_finetuned" in bs:
        a = summary["implicit_alpha"]["finetuned"]
        ax.plot(cs, [bs["alpha_eff_finetuned"][str(c)] for c in cs], "-.", color="C1", alpha=0.6,
                label=f"Bayes at fine-tuned α_eff={a:.2f}")
    ax.axvline(c_star, color="gray", lw=0.8)
    ax.set(title="D_cont error vs label scale c", xlabel="c (labels × c, prediction ÷ c)", ylabel="squared error / d")
    ax.legend(fontsize=8)
    out.append(save(fig, folder / "loss_vs_scale.png"))

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, fit in metrics["alpha_fit"].items():
        ax.plot(fit["alphas"], fit["distance"], label=f"{name} (α_eff={summary['implicit_alpha'][name]:.2f})")
    ax.set(title="Which Bayes prior explains the model?", xlabel="α", ylabel="mean squared distance to Bayes(α)",
           yscale="log")
    ax.legend(fontsize=8)
    out.append(save(fig, folder / "alpha_eff.png"))

    fig, ax = plt.subplots(figsize=(5.5, 4))
    rows = metrics["numbers"]["distance_sweep"]
    s = [r["s"] for r in rows]
    for key, style in (("pretrained", "o-"), ("finetuned", "s-"), ("ridge", ":"), ("mixture_pretrain", "k--")):
        ax.plot(s, [r[key] for r in rows], style, label=key)
    ax.set(title="Tasks w_k + δ, δ ~ N(0, s²I)", xlabel="s (distance from the fine-tuning tasks)",
           ylabel="squared error / d")
    ax.legend(fontsize=8)
    out.append(save(fig, folder / "distance_sweep.png"))
    return out


def theory_figure(folder: Path, result: dict) -> Path:
    """Bayes-only curves: error vs exemplars for each α on both distributions, and D_cont error vs scale."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    pos = result["positions"]
    for a, row in result["alphas"].items():
        axes[0].plot(pos[1:], row["cont_curve"][1:], label=f"α={a}")
        axes[1].plot(pos[1:], row["disc_curve"][1:], label=f"α={a}")
        cs = sorted(float(c) for c in row["cont_by_scale"])
        axes[2].plot(cs, [row["cont_by_scale"][str(c)] for c in cs], "o-", label=f"α={a}")
    axes[0].set(title="Bayes, D_cont", xlabel="exemplars", ylabel="squared error / d", yscale="log")
    axes[1].set(title="Bayes, D_disc", xlabel="exemplars", yscale="log")
    axes[2].set(title="Bayes, D_cont vs label scale c", xlabel="c")
    for ax in axes:
        ax.legend(fontsize=8)
    return save(fig, Path(folder) / "theory.png")
