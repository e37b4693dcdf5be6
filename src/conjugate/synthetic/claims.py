"""The synthetic study's claims as checks on one run's ``summary.json`` (SPEC §1; thresholds of the quick preset's
acceptance criteria). ``conjugate sweep aggregate`` counts, per grid point, how many seeds meet each one.

A claim's value is a number computed from the summary, its target a threshold; a claim whose inputs are missing
(an older summary) is left out rather than guessed.
"""

from __future__ import annotations

from typing import Any


def _get(summary: dict[str, Any], path: str) -> float | None:
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def synthetic_claims(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name → ``{"value", "target", "met"}`` for each claim the summary has the numbers for:

    - ``learned_bayes``: pretrained D_cont / Bayes (mixture at α_pretrain) D_cont ≤ 1.5;
    - ``forgetting``: fine-tuned / pretrained D_cont ≥ 1.25;
    - ``disc_not_worse``: fine-tuned − pretrained D_disc ≤ 0 (fine-tuning helped the fine-tuning task);
    - ``recovery``: share of the forgetting gap that conjugate prompting closes ≥ 0.3;
    - ``implicit_inference``: α_eff after − before fine-tuning ≥ 0.2 (the model now infers "discrete").
    """
    g = lambda p: _get(summary, p)  # noqa: E731
    out: dict[str, dict[str, Any]] = {}

    def claim(name: str, value: float | None, target: str, met: bool | None) -> None:
        if value is not None and met is not None:
            out[name] = {"value": value, "target": target, "met": bool(met)}

    pre, ft, conj, bayes = g("cont_mse.pretrained"), g("cont_mse.finetuned"), g("cont_mse.finetuned_conjugate"), \
        g("bayes.mixture_pretrain_cont")
    if pre is not None and bayes:
        claim("learned_bayes", pre / bayes, "≤ 1.5", pre / bayes <= 1.5)
    if pre and ft is not None:
        claim("forgetting", ft / pre, "≥ 1.25", ft >= 1.25 * pre)
    d_pre, d_ft = g("disc_mse.pretrained"), g("disc_mse.finetuned")
    if d_pre is not None and d_ft is not None:
        claim("disc_not_worse", d_ft - d_pre, "≤ 0", d_ft <= d_pre)
    if pre is not None and ft is not None and conj is not None and ft > pre:
        claim("recovery", (ft - conj) / (ft - pre), "≥ 0.3", ft - conj >= 0.3 * (ft - pre))
    a_pre, a_ft = g("implicit_alpha.pretrained"), g("implicit_alpha.finetuned")
    if a_pre is not None and a_ft is not None:
        claim("implicit_inference", a_ft - a_pre, "≥ 0.2", a_ft >= a_pre + 0.2)
    return out
