"""Did the pretrained model learn the mixture, and how much of the forgetting is a shift of the inferred prior?

Two blocks of ``summary.json``, computed from numbers the evaluation already has (plain floats in, plain dicts
out, so each is checked from known inputs), and the report's sentences about them, worded from the numbers.

``learned`` — the pretrained model against the exact Bayes predictors on the held-out test prompts
(errors: squared error against ``x·w`` divided by d; "at n−1" = the error curve's last point, the prediction
made from n−1 exemplars; "summary" = the curve averaged over 1…n−1 exemplars, as everywhere else):

- ``disc_last_vs_ridge``: D_disc error at n−1 exemplars / ridge's there (≤ 0.3: the model identifies the
  discrete task, which ridge cannot);
- ``disc_vs_bayes``: summary D_disc error / mixture-Bayes's at α pretrain (≤ 2);
- ``cont_vs_bayes``: summary D_cont error / mixture-Bayes's at α pretrain (≤ 1.15);
- ``cont_last_vs_ridge``: D_cont error at n−1 exemplars / ridge's there (≤ 1.5).

``decomposition`` — the D_cont forgetting split by the implicit-inference fit. ``Bayes(α)`` is the
mixture-Bayes predictor with prior weight α on D_disc; α_eff is the weight whose Bayes predictor best matches
a model's predictions (:func:`conjugate.synthetic.evaluate.fit_alpha`). All errors are summary D_cont errors
on the same held-out D_cont test prompts:

- ``observed`` = fine-tuned − pretrained error;
- ``explained`` = Bayes(α_eff fine-tuned) − Bayes(α_eff pretrained) error: the forgetting that the shift of the
  inferred prior alone produces in the Bayes predictor (suppression);
- ``unexplained`` = observed − explained (erasure: what the prior shift does not account for);
- ``explained_share`` = explained / observed (None when there is no forgetting, observed ≤ 0);
- ``fit_residual`` (pretrained, fine-tuned) = D(α_eff) / D(0), where D(α) is the mean squared difference
  between the model's predictions and Bayes(α)'s over the fit's prompts (the D_cont and D_disc test
  prompts) and exemplar counts 1…n−1, and Bayes(0) is ridge: 0 means the model is exactly Bayes(α_eff),
  1 that no mixture prior describes it better than ridge does (also the value whenever α_eff = 0);
- ``fit_distance`` = D(α_eff) / d, in the errors' units;
- ``recovery``: for the conjugate scale c chosen on validation prompts, ``observed`` = fine-tuned error −
  fine-tuned error with labels × c, ``predicted`` = Bayes(α_eff fine-tuned) error − the same predictor's error
  with labels × c (predictions ÷ c), and each as a share of the observed forgetting (``observed_share``,
  ``predicted_share``; None without forgetting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LEARNED_THRESHOLDS = {"disc_last_vs_ridge": 0.3, "disc_vs_bayes": 2.0, "cont_vs_bayes": 1.15,
                      "cont_last_vs_ridge": 1.5}
LEARNED_LABELS = {
    "disc_last_vs_ridge": "D_disc at {last} exemplars / ridge",
    "disc_vs_bayes": "D_disc (mean over 1…{last}) / mixture-Bayes",
    "cont_vs_bayes": "D_cont (mean over 1…{last}) / mixture-Bayes",
    "cont_last_vs_ridge": "D_cont at {last} exemplars / ridge",
}
POOR_FIT = 0.5  # a fit residual from which the report calls Bayes(α_eff) a poor description of the model


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def learned(*, exemplars: int, disc_last: float, ridge_disc_last: float, disc: float, bayes_disc: float,
            cont: float, bayes_cont: float, cont_last: float, ridge_cont_last: float) -> dict[str, Any]:
    """``summary.json: learned``: the four ratios (see the module), ``at_exemplars`` (n − 1), the
    ``thresholds`` (each ratio must be ≤ its threshold), ``met`` per criterion and ``all_met``."""
    ratios = {"disc_last_vs_ridge": _ratio(disc_last, ridge_disc_last), "disc_vs_bayes": _ratio(disc, bayes_disc),
              "cont_vs_bayes": _ratio(cont, bayes_cont), "cont_last_vs_ridge": _ratio(cont_last, ridge_cont_last)}
    met = {k: (None if v is None else v <= LEARNED_THRESHOLDS[k]) for k, v in ratios.items()}
    return {**ratios, "at_exemplars": exemplars, "thresholds": dict(LEARNED_THRESHOLDS), "met": met,
            "all_met": all(m is True for m in met.values())}


def fit_residual(alphas: Sequence[float], distance: Sequence[float]) -> float | None:
    """D(α_eff) / D(0) of one α_eff fit (its grid ``alphas``, which holds 0, and ``distance`` D per α);
    None when the grid lacks α = 0 or D(0) = 0 (the model is ridge exactly)."""
    if 0.0 not in alphas:
        return None
    d0 = distance[list(alphas).index(0.0)]
    return min(distance) / d0 if d0 > 0 else None


def decomposition(*, pretrained: float, finetuned: float, bayes_pretrained: float, bayes_finetuned: float,
                  alpha_pretrained: float, alpha_finetuned: float, residual_pretrained: float | None,
                  residual_finetuned: float | None, distance_pretrained: float, distance_finetuned: float,
                  scale: float, conjugate: float, bayes_finetuned_conjugate: float) -> dict[str, Any]:
    """``summary.json: decomposition`` (definitions in the module docstring). Inputs: the pretrained and
    fine-tuned models' D_cont errors, Bayes(α_eff)'s for each model's α_eff, both α_eff, the fit residuals and
    distances, the conjugate scale c, the fine-tuned model's error with labels × c and Bayes(α_eff fine-tuned)'s
    error with labels × c."""
    observed = finetuned - pretrained
    explained = bayes_finetuned - bayes_pretrained
    share = (lambda v: v / observed) if observed > 0 else (lambda v: None)  # noqa: E731
    rec_obs, rec_pred = finetuned - conjugate, bayes_finetuned - bayes_finetuned_conjugate
    return {
        "observed": observed, "explained": explained, "unexplained": observed - explained,
        "explained_share": share(explained),
        "alpha_eff": {"pretrained": alpha_pretrained, "finetuned": alpha_finetuned},
        "bayes_at_alpha_eff": {"pretrained": bayes_pretrained, "finetuned": bayes_finetuned},
        "fit_residual": {"pretrained": residual_pretrained, "finetuned": residual_finetuned},
        "fit_distance": {"pretrained": distance_pretrained, "finetuned": distance_finetuned},
        "recovery": {"scale": scale, "observed": rec_obs, "predicted": rec_pred, "observed_share": share(rec_obs),
                     "predicted_share": share(rec_pred)},
    }


# ---- the report's words, from the numbers ----------------------------------------------------------------

def _num(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _signed(v: float) -> str:
    return f"{v:+.4f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def learned_table(block: dict[str, Any]) -> list[str]:
    """Markdown: one row per criterion — value, threshold, met."""
    last = block.get("at_exemplars")
    lines = ["| pretrained model, held-out prompts | value | must be | met |", "|---|---|---|---|"]
    for key, label in LEARNED_LABELS.items():
        met = block["met"].get(key)
        lines.append(f"| {label.format(last=last)} | {_num(block.get(key), 3)} | ≤ {block['thresholds'][key]:g} | "
                     f"{'n/a' if met is None else ('yes' if met else '**no**')} |")
    met = block["met"]
    n_met = sum(m is True for m in met.values())
    verdict = f"{n_met} of {len(LEARNED_LABELS)} criteria met"
    if block["all_met"]:
        verdict += ": the pretrained model tracks the mixture-Bayes predictor on both task families."
    else:
        failed = []
        if met.get("disc_last_vs_ridge") is False or met.get("disc_vs_bayes") is False:
            failed.append("it has not learned the discrete family as well as the criteria ask, so fine-tuning has "
                          "less of an inferred discrete prior to shift")
        if met.get("cont_vs_bayes") is False or met.get("cont_last_vs_ridge") is False:
            failed.append("on D_cont it is further from the Bayes predictor than the criteria allow")
        verdict += (": " + "; ".join(failed) + ".") if failed else "."
    return [*lines, "", verdict]


def decomposition_lines(dec: dict[str, Any]) -> list[str]:
    """Markdown bullets: the split of the forgetting into suppression and erasure, the fit residuals and the
    conjugate recovery against Bayes(α_eff)'s prediction — each sentence chosen by the numbers' signs and sizes."""
    obs, exp, unexp, share = dec["observed"], dec["explained"], dec["unexplained"], dec["explained_share"]
    a, b, r = dec["alpha_eff"], dec["bayes_at_alpha_eff"], dec["fit_residual"]
    shift = (f"the prior shift α_eff {a['pretrained']:.2f} → {a['finetuned']:.2f} (Bayes(α_eff) error "
             f"{b['pretrained']:.4f} → {b['finetuned']:.4f}, {_signed(exp)})")
    lines = [f"- Observed D_cont forgetting (fine-tuned − pretrained): **{_signed(obs)}**."]
    if obs <= 0:
        lines.append(f"- There is no forgetting to split; {shift}.")
    elif share is None or share <= 0:
        lines.append(f"- {shift[0].upper()}{shift[1:]} predicts no forgetting: none of it is suppression; all of it "
                     f"({_signed(obs)}) is **erasure** (not explained by the prior shift).")
    elif share >= 1:
        lines.append(f"- {shift[0].upper()}{shift[1:]} accounts for all of it ({_pct(share)} of the observed): the "
                     "forgetting is **suppression** (a change of the inferred task), with no erasure left over.")
    else:
        lines.append(f"- {shift[0].upper()}{shift[1:]} explains {_signed(exp)} of it: **{_pct(share)} suppression** "
                     f"(a change of the inferred task) and **{_pct(1 - share)} erasure** ({_signed(unexp)}, not "
                     "explained by the prior shift).")
    lines.append(f"- Fit residual (distance to Bayes(α_eff) / distance to ridge): {_num(r['pretrained'], 2)} before "
                 f"and {_num(r['finetuned'], 2)} after fine-tuning (0: the model is Bayes(α_eff); 1: no better than "
                 "ridge).")
    poor = [name for name in ("pretrained", "finetuned") if r[name] is not None and r[name] >= POOR_FIT]
    if poor and obs > 0:
        lines.append(f"- Bayes(α_eff) describes the {' and '.join(poor)} model poorly (residual ≥ {POOR_FIT}), so "
                     "this split is a rough guide rather than a measurement of inference alone.")
    rec = dec["recovery"]
    lines.append(f"- Conjugate prompting (labels × {rec['scale']:g}) "
                 f"{_change(rec['observed'], 'the fine-tuned model')} "
                 f"({_pct(rec['observed_share'])} of the forgetting recovered); "
                 f"{_change(rec['predicted'], 'Bayes(α_eff fine-tuned)')} ({_pct(rec['predicted_share'])}).")
    return lines


def split_phrase(dec: dict[str, Any]) -> str:
    """A few words on how the forgetting splits (the command line's summary line)."""
    share = dec["explained_share"]
    if share is None:
        return "no forgetting to split"
    if share <= 0:
        return "none of it explained by the prior shift (all erasure)"
    if share >= 1:
        return f"all of it explained by the prior shift ({_pct(share)}: suppression)"
    return f"{_pct(share)} explained by the prior shift (suppression), {_pct(1 - share)} not (erasure)"


def _change(recovered: float, whose: str) -> str:
    """``lowers WHOSE error by 0.0123`` for an error that fell by 0.0123, ``raises ...`` for one that rose."""
    return f"{'lowers' if recovered >= 0 else 'raises'} {whose}'s error by {abs(recovered):.4f}"


__all__ = ["LEARNED_THRESHOLDS", "decomposition", "decomposition_lines", "fit_residual", "learned", "learned_table",
           "split_phrase"]
