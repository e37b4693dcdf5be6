"""The synthetic study's claims as checks on one run's ``summary.json``. ``conjugate sweep aggregate`` counts,
per grid point, how many seeds meet each one.

A claim's value is a number computed from the summary, its target a threshold; a claim whose inputs are missing
(an older summary) is left out rather than guessed. Errors averaged over exemplar counts hide what matters at
the end of the prompt (early on every predictor looks alike), so the claims about what the pretrained model
learned and about the discrete family are judged at n−1 exemplars too (``summary.json: learned`` and
``last_exemplar``; see :mod:`conjugate.synthetic.decomposition`).
"""

from __future__ import annotations

from typing import Any

from .decomposition import LEARNED_THRESHOLDS

EXPLAINED_SHARE_MIN = 0.5


def _get(summary: dict[str, Any], path: str) -> float | None:
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def synthetic_claims(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name → ``{"value", "target", "met"}`` for each claim the summary has the numbers for:

    - ``learned_bayes``: pretrained D_cont / mixture-Bayes (α pretrain) D_cont, mean over exemplar counts, ≤ 1.15;
    - ``learned_cont_last``: pretrained D_cont / ridge's at n−1 exemplars ≤ 1.5;
    - ``learned_disc``: pretrained D_disc / mixture-Bayes D_disc, mean over exemplar counts, ≤ 2;
    - ``learned_disc_last``: pretrained D_disc / ridge's at n−1 exemplars ≤ 0.3 (the model identifies the task);
    - ``forgetting``: fine-tuned / pretrained D_cont ≥ 1.25;
    - ``disc_not_worse``: fine-tuned − pretrained D_disc at n−1 exemplars ≤ 0 (fine-tuning helped, or did not
      hurt, the fine-tuning task where the prompt is longest);
    - ``recovery``: share of the forgetting gap that conjugate prompting closes ≥ 0.3;
    - ``implicit_inference``: α_eff after − before fine-tuning ≥ 0.2 (the model now infers "discrete");
    - ``explained_share``: share of the D_cont forgetting that the prior shift explains (Bayes at α_eff
      fine-tuned − at α_eff pretrained, over the observed forgetting) ≥ 0.5.
    """
    g = lambda p: _get(summary, p)  # noqa: E731
    out: dict[str, dict[str, Any]] = {}

    def claim(name: str, value: float | None, target: str, met: bool | None) -> None:
        if value is not None and met is not None:
            out[name] = {"value": value, "target": target, "met": bool(met)}

    def at_most(name: str, value: float | None, limit: float) -> None:
        claim(name, value, f"≤ {limit:g}", None if value is None else value <= limit)

    pre, ft, conj, bayes = g("cont_mse.pretrained"), g("cont_mse.finetuned"), g("cont_mse.finetuned_conjugate"), \
        g("bayes.mixture_pretrain_cont")
    cont_vs_bayes = g("learned.cont_vs_bayes")
    if cont_vs_bayes is None and pre is not None and bayes:  # a summary written before `learned` existed
        cont_vs_bayes = pre / bayes
    at_most("learned_bayes", cont_vs_bayes, LEARNED_THRESHOLDS["cont_vs_bayes"])
    at_most("learned_cont_last", g("learned.cont_last_vs_ridge"), LEARNED_THRESHOLDS["cont_last_vs_ridge"])
    at_most("learned_disc", g("learned.disc_vs_bayes"), LEARNED_THRESHOLDS["disc_vs_bayes"])
    at_most("learned_disc_last", g("learned.disc_last_vs_ridge"), LEARNED_THRESHOLDS["disc_last_vs_ridge"])
    if pre and ft is not None:
        claim("forgetting", ft / pre, "≥ 1.25", ft >= 1.25 * pre)
    d_pre, d_ft = g("last_exemplar.disc.pretrained"), g("last_exemplar.disc.finetuned")
    if d_pre is not None and d_ft is not None:
        claim("disc_not_worse", d_ft - d_pre, "≤ 0 at n−1 exemplars", d_ft <= d_pre)
    if pre is not None and ft is not None and conj is not None and ft > pre:
        claim("recovery", (ft - conj) / (ft - pre), "≥ 0.3", ft - conj >= 0.3 * (ft - pre))
    a_pre, a_ft = g("implicit_alpha.pretrained"), g("implicit_alpha.finetuned")
    if a_pre is not None and a_ft is not None:
        claim("implicit_inference", a_ft - a_pre, "≥ 0.2", a_ft >= a_pre + 0.2)
    share = g("decomposition.explained_share")
    claim("explained_share", share, f"≥ {EXPLAINED_SHARE_MIN:g}",
          None if share is None else share >= EXPLAINED_SHARE_MIN)
    return out
