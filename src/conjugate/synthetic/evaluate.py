"""Evaluation: error curves, conjugate prompting by label scaling, the rotation control, the α_eff fit,
and the distance sweep. All vectorised over prompts and prefixes.

Errors are squared errors against the noiseless target ``x·w``, divided by ``d``; a curve has one value per
number of exemplars ``k = 0 ... n-1``, and a summary number averages ``k = 1 ... n-1``.
"""

from __future__ import annotations

import torch

from . import bayes
from .tasks import Prompts


@torch.no_grad()
def predict(model: torch.nn.Module, p: Prompts, chunk: int = 2048, scale: float = 1.0) -> torch.Tensor:
    """Model predictions (B, n) in float64 on the CPU. With ``scale = c``, the conjugate prompt: labels are
    multiplied by ``c`` before the model sees them and the prediction is divided by ``c``."""
    model.eval()
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out = []
    for i in range(0, p.xs.shape[0], chunk):
        xs = p.xs[i : i + chunk].to(dev, dtype)
        ys = p.ys[i : i + chunk].to(dev, dtype) * scale
        out.append(model(xs, ys).double().cpu() / scale)
    return torch.cat(out)


def error_curve(pred: torch.Tensor, p: Prompts) -> torch.Tensor:
    """Mean squared error against ``x·w``, divided by d, per number of exemplars (n,)."""
    d = p.xs.shape[-1]
    return ((pred.double() - p.clean.double().cpu()) ** 2).mean(0) / d


def summary_error(curve: torch.Tensor) -> float:
    """The headline number: the curve averaged over 1 ... n-1 exemplars."""
    return float(curve[1:].mean())


def mse(pred: torch.Tensor, p: Prompts) -> float:
    return summary_error(error_curve(pred, p))


def bayes_on_scaled(p: Prompts, w_disc: torch.Tensor, sigma: float, scale: float) -> bayes.BayesTerms:
    """Bayes terms for the conjugate prompt (labels × c), with predictions mapped back (÷ c)."""
    t = bayes.batched_terms(p.xs, p.ys * scale, w_disc, sigma)
    return bayes.BayesTerms(t.ridge / scale, t.dmmse / scale, t.llr)


def fit_alpha(
    preds: torch.Tensor, terms: bayes.BayesTerms, grid: int = 201
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """α_eff: the prior weight whose mixture-Bayes predictor best matches ``preds`` (least squares over all
    prompts and positions with ≥ 1 exemplar). Returns ``(alpha, alphas, distance per alpha)``.

    The grid is uniform in logit space between 1e-4 and 1 - 1e-4 (plus the end points 0 and 1), so values
    near 0 and 1, where the predictor changes fastest, are resolved.
    """
    z = torch.linspace(-9.2, 9.2, max(grid - 2, 1), dtype=torch.float64)
    alphas = torch.cat([torch.zeros(1, dtype=torch.float64), torch.sigmoid(z), torch.ones(1, dtype=torch.float64)])
    target = preds.double()[:, 1:]
    dist = torch.empty(len(alphas), dtype=torch.float64)
    for i, a in enumerate(alphas):  # loop over the grid only; each step is vectorised over all prompts
        dist[i] = ((terms.mixture(float(a))[:, 1:] - target) ** 2).mean()
    best = int(torch.argmin(dist))
    return float(alphas[best]), alphas, dist
