"""Exact Bayes-optimal predictors for in-context linear regression, for every prefix at once.

For a prompt ``(x_1, y_1, ..., x_n, y_n)`` and each ``k = 0 ... n-1`` we predict ``y_{k+1}`` at ``x_{k+1}``
from the first ``k`` pairs (column ``k`` of every returned ``(B, n)`` array):

* ridge, the posterior mean under ``D_cont = N(0, I)``: ``w = (XᵀX + σ²I)⁻¹ Xᵀy``;
* dMMSE, the posterior mean under the discrete prior: ``p_j ∝ exp(-‖y - X w_j‖² / 2σ²)``, ``w = Σ p_j w_j``;
* the mixture posterior under ``D_α``: ``P(disc | prompt) = α L_disc / (α L_disc + (1-α) L_cont)`` with
  ``L_disc = mean_j N(y; X w_j, σ²I)`` and ``L_cont = N(y; 0, XXᵀ + σ²I)``; its prediction blends the two.

All prefixes are computed together from cumulative sums, in float64 and in log space:
``log L_cont`` is the sum of one-step predictive log densities (exact, no k×k determinants), ``log L_disc``
a logsumexp over the K tasks. Nothing overflows for long prompts, tiny σ or labels scaled by 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


def _exclusive_cumsum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``out[k] = sum_{i<k} t[i]`` along ``dim``."""
    c = torch.cumsum(t, dim=dim)
    return c - t


def ridge(xs: torch.Tensor, ys: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge (λ = σ²) predictions and ``log L_cont`` for every prefix.

    ``xs`` (B, n, d), ``ys`` (B, n). Returns ``(pred, loglik)``, both (B, n) float64: ``pred[:, k]`` uses the
    first k pairs to predict at ``x_k`` (0-based); ``loglik[:, k] = log N(y_{<k}; 0, X Xᵀ + σ² I)``.
    """
    xs, ys = xs.double(), ys.double()
    b, n, d = xs.shape
    s2 = float(sigma) ** 2
    outer = xs[..., :, None] * xs[..., None, :]  # (B, n, d, d)
    gram = _exclusive_cumsum(outer, 1) + s2 * torch.eye(d, dtype=xs.dtype, device=xs.device)
    xty = _exclusive_cumsum(xs * ys[..., None], 1)  # (B, n, d)
    chol = torch.linalg.cholesky(gram)
    sol = torch.cholesky_solve(torch.stack([xty, xs], dim=-1), chol)  # (B, n, d, 2)
    pred = (xs * sol[..., 0]).sum(-1)
    var = s2 * (1.0 + (xs * sol[..., 1]).sum(-1))  # predictive variance of y_k given the first k pairs
    step = -0.5 * (LOG_2PI + torch.log(var) + (ys - pred) ** 2 / var)
    return pred, _exclusive_cumsum(step, 1)


def dmmse(
    xs: torch.Tensor, ys: torch.Tensor, w_disc: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete posterior-mean predictions and ``log L_disc`` for every prefix (see :func:`ridge`)."""
    xs, ys = xs.double(), ys.double()
    w = w_disc.to(device=xs.device, dtype=torch.float64)
    k_tasks = w.shape[0]
    s2 = float(sigma) ** 2
    preds = torch.einsum("bnd,kd->bnk", xs, w)  # every task's prediction at every position
    sq = _exclusive_cumsum((ys[..., None] - preds) ** 2, 1)  # (B, n, K)
    logw = -sq / (2 * s2)
    pred = (torch.softmax(logw, dim=-1) * preds).sum(-1)
    npts = torch.arange(xs.shape[1], device=xs.device, dtype=torch.float64)
    loglik = torch.logsumexp(logw, dim=-1) - math.log(k_tasks) - 0.5 * npts * (LOG_2PI + math.log(s2))
    return pred, loglik


@dataclass(frozen=True)
class BayesTerms:
    """Everything the mixture posterior needs, independent of α: blend for any α in O(B·n)."""

    ridge: torch.Tensor  # (B, n) ridge predictions
    dmmse: torch.Tensor  # (B, n) discrete posterior-mean predictions
    llr: torch.Tensor  # (B, n) log L_disc - log L_cont

    def p_disc(self, alpha: float | torch.Tensor) -> torch.Tensor:
        """``P(disc | prompt prefix)`` under prior weight ``alpha`` (a float, or a tensor that broadcasts)."""
        return torch.sigmoid(logit(alpha, self.llr) + self.llr)

    def mixture(self, alpha: float | torch.Tensor) -> torch.Tensor:
        """The mixture posterior-mean prediction under ``D_alpha``."""
        p = self.p_disc(alpha)
        return p * self.dmmse + (1 - p) * self.ridge


def logit(alpha: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``log α - log(1-α)`` as a float64 tensor on ``like``'s device (±inf at 1 and 0)."""
    a = torch.as_tensor(alpha, dtype=torch.float64, device=like.device)
    if bool(((a < 0) | (a > 1)).any()):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return torch.log(a) - torch.log1p(-a)


def bayes_terms(xs: torch.Tensor, ys: torch.Tensor, w_disc: torch.Tensor, sigma: float) -> BayesTerms:
    """Ridge, dMMSE and their log-likelihood ratio for every prefix of every prompt."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    r_pred, r_ll = ridge(xs, ys, sigma)
    d_pred, d_ll = dmmse(xs, ys, w_disc, sigma)
    return BayesTerms(r_pred, d_pred, d_ll - r_ll)


def mixture(
    xs: torch.Tensor, ys: torch.Tensor, w_disc: torch.Tensor, sigma: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixture posterior-mean predictions and ``P(disc | prompt)`` for every prefix, under ``D_alpha``."""
    t = bayes_terms(xs, ys, w_disc, sigma)
    return t.mixture(alpha), t.p_disc(alpha)


def batched_terms(
    xs: torch.Tensor, ys: torch.Tensor, w_disc: torch.Tensor, sigma: float, chunk: int = 256
) -> BayesTerms:
    """:func:`bayes_terms` in chunks of prompts, to bound memory for large evaluation sets."""
    parts = [bayes_terms(xs[i : i + chunk], ys[i : i + chunk], w_disc, sigma) for i in range(0, len(xs), chunk)]
    return BayesTerms(*(torch.cat([getattr(p, f) for p in parts]) for f in ("ridge", "dmmse", "llr")))
