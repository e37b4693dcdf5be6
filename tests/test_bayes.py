"""The exact Bayes predictors of ``conjugate.synthetic.bayes`` against independent float64 computations.

Every reference here is computed from scratch with numpy, one prompt and one prefix at a time, straight
from the definitions (SPEC §1): a direct linear solve for ridge, a dense multivariate normal density
(slogdet / solve) for ``L_cont``, a plain mean of Gaussian densities for ``L_disc``, and Monte Carlo over
the prior ``D_alpha`` for the mixture posterior. Nothing from ``bayes.py`` is reused by the references.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conjugate.synthetic import bayes

LOG_2PI = math.log(2 * math.pi)


# ---- independent references (numpy, float64, one prefix at a time) --------------------------------------

def ref_ridge_pred(x_prev: np.ndarray, y_prev: np.ndarray, x_query: np.ndarray, s2: float) -> float:
    d = x_query.shape[0]
    w = np.linalg.solve(x_prev.T @ x_prev + s2 * np.eye(d), x_prev.T @ y_prev)
    return float(x_query @ w)


def ref_log_lcont(x_prev: np.ndarray, y_prev: np.ndarray, s2: float) -> float:
    """log N(y; 0, X Xᵀ + σ² I) from the dense k×k covariance."""
    k = len(y_prev)
    if k == 0:
        return 0.0
    cov = x_prev @ x_prev.T + s2 * np.eye(k)
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return float(-0.5 * (k * LOG_2PI + logdet + y_prev @ np.linalg.solve(cov, y_prev)))


def gauss_pdf(y: np.ndarray, mean: np.ndarray, s2: float) -> np.ndarray:
    return np.exp(-((y - mean) ** 2) / (2 * s2)) / np.sqrt(2 * np.pi * s2)


def ref_disc(x_prev: np.ndarray, y_prev: np.ndarray, x_query: np.ndarray, w_disc: np.ndarray, s2: float):
    """(log L_disc, dMMSE prediction) from a plain mean of products of Gaussian densities (no log space)."""
    dens = np.array([np.prod(gauss_pdf(y_prev, x_prev @ w, s2)) for w in w_disc])
    post = dens / dens.sum()
    return float(np.log(dens.mean())), float(x_query @ (post[:, None] * w_disc).sum(0))


def make_prompts(rng: np.random.Generator, b: int, n: int, d: int, k: int, sigma: float, frac_disc: float = 0.5):
    """Prompts from a mixture of a discrete set and N(0, I), as numpy float64 arrays."""
    w_disc = rng.standard_normal((k, d))
    is_disc = rng.random(b) < frac_disc
    ws = np.where(is_disc[:, None], w_disc[rng.integers(0, k, b)], rng.standard_normal((b, d)))
    xs = rng.standard_normal((b, n, d))
    ys = np.einsum("bnd,bd->bn", xs, ws) + sigma * rng.standard_normal((b, n))
    return xs, ys, w_disc


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


# ---- ridge and L_cont ----------------------------------------------------------------------------------

def test_ridge_matches_direct_solve_for_every_prefix():
    rng = np.random.default_rng(0)
    sigma = 0.5
    xs, ys, _ = make_prompts(rng, b=6, n=10, d=3, k=4, sigma=sigma)
    pred, loglik = bayes.ridge(t(xs), t(ys), sigma)
    assert pred.shape == loglik.shape == (6, 10) and pred.dtype == loglik.dtype == torch.float64
    for i in range(6):
        for k in range(10):
            want = ref_ridge_pred(xs[i, :k], ys[i, :k], xs[i, k], sigma**2)
            np.testing.assert_allclose(pred[i, k].item(), want, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(loglik[i, k].item(), ref_log_lcont(xs[i, :k], ys[i, :k], sigma**2),
                                       rtol=1e-9, atol=1e-10)
    assert torch.all(pred[:, 0] == 0)  # no exemplars: the prior mean 0
    assert torch.all(loglik[:, 0] == 0)  # empty prefix: log 1


def test_ridge_with_vanishing_noise_is_least_squares():
    """σ → 0 with k ≥ d points: ridge → ordinary least squares. The gap is x·(ŵ_ridge − ŵ_ls) with
    ŵ_ridge − ŵ_ls = −σ²(XᵀX + σ²I)⁻¹ŵ_ls, bounded by σ²/λ_min(XᵀX)·‖x‖‖ŵ_ls‖: that is the tolerance."""
    rng = np.random.default_rng(1)
    sigma, d, n = 1e-4, 4, 14
    xs, ys, _ = make_prompts(rng, b=5, n=n, d=d, k=3, sigma=sigma)
    pred, loglik = bayes.ridge(t(xs), t(ys), sigma)
    assert torch.isfinite(loglik).all()
    for i in range(5):
        for k in range(d, n):
            x_prev, y_prev, xq = xs[i, :k], ys[i, :k], xs[i, k]
            w_ls = np.linalg.lstsq(x_prev, y_prev, rcond=None)[0]
            lam_min = np.linalg.eigvalsh(x_prev.T @ x_prev)[0]
            bound = 2 * sigma**2 / lam_min * np.linalg.norm(xq) * np.linalg.norm(w_ls) + 1e-10
            assert abs(pred[i, k].item() - xq @ w_ls) <= bound


# ---- dMMSE and L_disc ----------------------------------------------------------------------------------

def test_dmmse_and_log_ldisc_match_mean_of_densities():
    rng = np.random.default_rng(2)
    sigma = 0.5
    xs, ys, w_disc = make_prompts(rng, b=6, n=9, d=3, k=5, sigma=sigma)
    pred, loglik = bayes.dmmse(t(xs), t(ys), t(w_disc), sigma)
    assert pred.shape == loglik.shape == (6, 9)
    for i in range(6):
        for k in range(9):
            want_ll, want_pred = ref_disc(xs[i, :k], ys[i, :k], xs[i, k], w_disc, sigma**2)
            np.testing.assert_allclose(loglik[i, k].item(), want_ll, rtol=1e-9, atol=1e-10)
            np.testing.assert_allclose(pred[i, k].item(), want_pred, rtol=1e-9, atol=1e-12)


def test_mixture_matches_closed_form_from_direct_densities():
    """P(disc|prompt) = αL_disc / (αL_disc + (1−α)L_cont) and the blended prediction, with every piece
    computed by the direct references above."""
    rng = np.random.default_rng(3)
    sigma, alpha = 0.5, 0.3
    xs, ys, w_disc = make_prompts(rng, b=6, n=8, d=3, k=4, sigma=sigma)
    pred, p_disc = bayes.mixture(t(xs), t(ys), t(w_disc), sigma, alpha)
    for i in range(6):
        for k in range(8):
            x_prev, y_prev, xq = xs[i, :k], ys[i, :k], xs[i, k]
            ll_disc, pred_disc = ref_disc(x_prev, y_prev, xq, w_disc, sigma**2)
            l_disc, l_cont = math.exp(ll_disc), math.exp(ref_log_lcont(x_prev, y_prev, sigma**2))
            p = alpha * l_disc / (alpha * l_disc + (1 - alpha) * l_cont)
            want = p * pred_disc + (1 - p) * ref_ridge_pred(x_prev, y_prev, xq, sigma**2)
            np.testing.assert_allclose(p_disc[i, k].item(), p, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(pred[i, k].item(), want, rtol=1e-8, atol=1e-12)


def test_mixture_matches_monte_carlo_over_the_prior():
    """Sample w from D_α, weight each by its likelihood, average x·w (self-normalised importance sampling).

    The standard error of that estimate is estimated from the samples themselves (delta method:
    se² = Σ wᵢ²(fᵢ − f̂)² / (Σ wᵢ)²); with 400k prior samples and a broad likelihood (σ = 1, at most 3
    exemplars, d = 2) the effective sample size stays in the thousands or more, where the estimate is
    close to normal, so 5 standard errors is a safe, still tight tolerance (the seed is fixed, and the
    observed deviations are all below 2 standard errors)."""
    rng = np.random.default_rng(4)
    sigma, alpha, d, n, k_tasks, draws = 1.0, 0.3, 2, 4, 3, 400_000
    xs, ys, w_disc = make_prompts(rng, b=5, n=n, d=d, k=k_tasks, sigma=sigma)
    pred, p_disc = bayes.mixture(t(xs), t(ys), t(w_disc), sigma, alpha)

    is_disc = rng.random(draws) < alpha
    w = np.where(is_disc[:, None], w_disc[rng.integers(0, k_tasks, draws)], rng.standard_normal((draws, d)))
    for i in range(5):
        for k in range(n):
            resid = ys[i, :k][None, :] - w @ xs[i, :k].T  # (draws, k)
            logw = -0.5 * (resid**2).sum(1) / sigma**2
            wt = np.exp(logw - logw.max())
            z = wt.sum()
            ess = z**2 / (wt**2).sum()
            assert ess > 1_000
            for f, got in ((w @ xs[i, k], pred[i, k].item()), (is_disc.astype(float), p_disc[i, k].item())):
                est = (wt * f).sum() / z
                se = math.sqrt((wt**2 * (f - est) ** 2).sum()) / z
                assert abs(got - est) <= 5 * se + 1e-12, (i, k, got, est, se)


# ---- limits, ranges and numerical stability ----------------------------------------------------------------

def test_alpha_limits_are_ridge_and_dmmse():
    rng = np.random.default_rng(5)
    sigma = 0.4
    xs, ys, w_disc = make_prompts(rng, b=8, n=10, d=3, k=4, sigma=sigma)
    r_pred, _ = bayes.ridge(t(xs), t(ys), sigma)
    d_pred, _ = bayes.dmmse(t(xs), t(ys), t(w_disc), sigma)
    m0, p0 = bayes.mixture(t(xs), t(ys), t(w_disc), sigma, 0.0)
    m1, p1 = bayes.mixture(t(xs), t(ys), t(w_disc), sigma, 1.0)
    torch.testing.assert_close(m0, r_pred, rtol=0, atol=1e-15)
    torch.testing.assert_close(m1, d_pred, rtol=0, atol=1e-15)
    assert torch.all(p0 == 0) and torch.all(p1 == 1)


def test_alpha_near_the_limits_converges():
    """Approaching α → 0 and α → 1 the mixture moves monotonically onto ridge and dMMSE. Short, noisy
    prompts keep the evidence |log L_disc − log L_cont| moderate, so α = 1e-40 and 1 − 1e-15 are
    already at the limit in float64."""
    rng = np.random.default_rng(5)
    sigma = 1.0
    xs, ys, w_disc = make_prompts(rng, b=8, n=4, d=3, k=4, sigma=sigma)
    terms = bayes.bayes_terms(t(xs), t(ys), t(w_disc), sigma)
    r_pred, _ = bayes.ridge(t(xs), t(ys), sigma)
    d_pred, _ = bayes.dmmse(t(xs), t(ys), t(w_disc), sigma)
    gaps0 = [(terms.mixture(a) - r_pred).abs().max().item() for a in (1e-2, 1e-5, 1e-10, 1e-40)]
    gaps1 = [(terms.mixture(1 - a) - d_pred).abs().max().item() for a in (1e-2, 1e-5, 1e-10, 1e-15)]
    for gaps in (gaps0, gaps1):
        assert gaps[0] > 1e-3  # the test is not vacuous: at moderate α the predictors differ
        assert all(a >= b for a, b in zip(gaps, gaps[1:], strict=False))
        assert gaps[-1] < 1e-6 * gaps[0]


def test_p_disc_is_a_probability_for_any_alpha():
    rng = np.random.default_rng(6)
    xs, ys, w_disc = make_prompts(rng, b=16, n=20, d=4, k=6, sigma=0.3)
    terms = bayes.bayes_terms(t(xs), t(ys * 7.0), t(w_disc), 0.3)
    for a in (0.0, 1e-9, 0.2, 0.5, 0.99, 1.0):
        p = terms.p_disc(a)
        assert torch.isfinite(p).all() and p.min() >= 0 and p.max() <= 1
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None, None]
    p = terms.p_disc(grid)  # a tensor of α broadcasts: P(disc) is monotone in α
    assert p.shape == (11, 16, 20) and torch.all(p[1:] >= p[:-1])


def test_bad_alpha_and_sigma_are_rejected():
    xs, ys = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    w_disc = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="alpha"):
        bayes.mixture(xs, ys, w_disc, 0.5, 1.5)
    with pytest.raises(ValueError, match="sigma"):
        bayes.bayes_terms(xs, ys, w_disc, 0.0)


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("sigma", [1e-3, 0.1, 1.0])
def test_finite_for_long_prompts_small_sigma_and_large_scales(scale, sigma):
    rng = np.random.default_rng(7)
    d, n = 8, 128
    xs, ys, w_disc = make_prompts(rng, b=6, n=n, d=d, k=16, sigma=sigma)
    terms = bayes.bayes_terms(t(xs), t(ys * scale), t(w_disc), sigma)
    for name in ("ridge", "dmmse", "llr"):
        assert torch.isfinite(getattr(terms, name)).all(), name
    for a in (0.0, 0.2, 0.9, 1.0):
        m, p = terms.mixture(a), terms.p_disc(a)
        assert torch.isfinite(m).all() and torch.isfinite(p).all()
        assert p.min() >= 0 and p.max() <= 1
    # well past d exemplars ridge is still least squares-accurate on the scaled labels
    k = n - 1
    for i in range(6):
        want = ref_ridge_pred(xs[i, :k], ys[i, :k] * scale, xs[i, k], sigma**2)
        np.testing.assert_allclose(terms.ridge[i, k].item(), want, rtol=1e-7, atol=1e-9 * scale)


def test_posterior_recognises_the_discrete_set_and_scaled_prompts_leave_it():
    """With little noise, a long prompt from a discrete task is recognised (P(disc) → 1, though only
    polynomially fast: the continuous prior's Occam penalty grows like (d/2)·log(k/σ²), hence 0.999); the same
    prompt with labels × 3 (task 3w_k, far from every w_j) is not (P(disc) → 0, exponentially fast) — the
    conjugate-prompting effect."""
    rng = np.random.default_rng(8)
    sigma, d, k_tasks = 0.1, 4, 8
    w_disc = rng.standard_normal((k_tasks, d))
    ws = w_disc[rng.integers(0, k_tasks, 10)]
    xs = rng.standard_normal((10, 24, d))
    ys = np.einsum("bnd,bd->bn", xs, ws) + sigma * rng.standard_normal((10, 24))
    _, p = bayes.mixture(t(xs), t(ys), t(w_disc), sigma, 0.2)
    _, p_scaled = bayes.mixture(t(xs), t(3 * ys), t(w_disc), sigma, 0.2)
    assert p[:, -1].min() > 0.999
    assert p_scaled[:, -1].max() < 1e-6


def test_batched_terms_equal_unbatched():
    rng = np.random.default_rng(9)
    xs, ys, w_disc = make_prompts(rng, b=7, n=6, d=3, k=4, sigma=0.5)
    whole = bayes.bayes_terms(t(xs), t(ys), t(w_disc), 0.5)
    chunked = bayes.batched_terms(t(xs), t(ys), t(w_disc), 0.5, chunk=3)
    for name in ("ridge", "dmmse", "llr"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), rtol=1e-12, atol=1e-12)


def test_float32_inputs_are_computed_in_float64():
    rng = np.random.default_rng(10)
    xs, ys, w_disc = make_prompts(rng, b=3, n=6, d=3, k=4, sigma=0.5)
    xs32, ys32 = t(xs).float(), t(ys).float()
    pred, ll = bayes.ridge(xs32, ys32, 0.5)
    assert pred.dtype == ll.dtype == torch.float64
    want, _ = bayes.ridge(xs32.double(), ys32.double(), 0.5)
    torch.testing.assert_close(pred, want, rtol=0, atol=0)
