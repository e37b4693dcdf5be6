"""Task distributions and prompt sampling (``conjugate.synthetic.tasks``)."""

from __future__ import annotations

import math

import pytest
import torch

from conjugate.synthetic import tasks


def gen(seed: int) -> torch.Generator:
    return tasks.make_generator(seed)


def dist_to_set(ws: torch.Tensor, w_disc: torch.Tensor) -> torch.Tensor:
    """(B,) Euclidean distance from each row of ``ws`` to the nearest row of ``w_disc`` (exact, no cdist)."""
    return (ws.double()[:, None, :] - w_disc.double()[None]).norm(dim=-1).min(1).values


def in_set(ws: torch.Tensor, w_disc: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """(B,) bool: whether each row of ``ws`` is one of the rows of ``w_disc`` (within ``tol``)."""
    return dist_to_set(ws, w_disc) <= tol


W_DISC = tasks.discrete_tasks(8, 5, seed=1, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(dtype):
    p = tasks.sample_mixture(7, 0.5, W_DISC, n_points=11, sigma=0.3, generator=gen(0), dtype=dtype)
    assert p.xs.shape == (7, 11, 5) and p.ys.shape == (7, 11) and p.ws.shape == (7, 5)
    assert p.xs.dtype == p.ys.dtype == p.ws.dtype == p.clean.dtype == dtype
    assert p.clean.shape == (7, 11)
    q = p.to(torch.float64)
    assert q.xs.dtype == torch.float64 and torch.equal(q.ys, p.ys.double())
    near = tasks.sample_near_discrete(4, 0.5, W_DISC, 6, 0.3, gen(0), dtype=dtype)
    assert near.xs.shape == (4, 6, 5) and near.ws.dtype == dtype
    rot = tasks.random_rotations(3, 5, gen(0))
    assert rot.shape == (3, 5, 5) and rot.dtype == torch.float64


def test_same_seed_same_batch_and_different_seed_different_batch():
    a = tasks.sample_mixture(16, 0.3, W_DISC, 9, 0.2, gen(42))
    b = tasks.sample_mixture(16, 0.3, W_DISC, 9, 0.2, gen(42))
    c = tasks.sample_mixture(16, 0.3, W_DISC, 9, 0.2, gen(43))
    for f in ("xs", "ys", "ws"):
        assert torch.equal(getattr(a, f), getattr(b, f))
        assert not torch.equal(getattr(a, f), getattr(c, f))


def test_discrete_set_identical_regardless_of_dtype_and_fixed_by_its_seed():
    w32 = tasks.discrete_tasks(16, 6, seed=3, dtype=torch.float32)
    w64 = tasks.discrete_tasks(16, 6, seed=3, dtype=torch.float64)
    assert w32.dtype == torch.float32 and w64.dtype == torch.float64 and w32.shape == (16, 6)
    assert torch.equal(w64.float(), w32)
    assert torch.equal(tasks.discrete_tasks(16, 6, seed=3, dtype=torch.float64), w64)
    assert not torch.equal(tasks.discrete_tasks(16, 6, seed=4, dtype=torch.float64), w64)


def test_alpha_selects_the_distribution():
    p_disc = tasks.sample_mixture(200, 1.0, W_DISC, 4, 0.1, gen(0), dtype=torch.float64)
    assert in_set(p_disc.ws, W_DISC).all()
    p_cont = tasks.sample_mixture(200, 0.0, W_DISC, 4, 0.1, gen(0), dtype=torch.float64)
    assert not in_set(p_cont.ws, W_DISC).any()
    n, alpha = 20_000, 0.3
    ws, is_disc = tasks.sample_tasks(n, alpha, W_DISC, gen(1), dtype=torch.float64)
    assert torch.equal(in_set(ws, W_DISC), is_disc)
    se = math.sqrt(alpha * (1 - alpha) / n)
    assert abs(is_disc.double().mean().item() - alpha) < 5 * se
    # the discrete tasks are drawn uniformly from the set
    counts = (ws[is_disc][:, None] - W_DISC[None]).norm(dim=-1).argmin(1).bincount(minlength=len(W_DISC)).double()
    expect = is_disc.sum().item() / len(W_DISC)
    assert (counts - expect).abs().max() < 5 * math.sqrt(expect)


def test_labels_are_linear_plus_gaussian_noise():
    sigma = 0.4
    p = tasks.sample_mixture(4000, 0.0, W_DISC, 10, sigma, gen(5), dtype=torch.float64)
    noise = (p.ys - p.clean).flatten()
    assert torch.allclose(p.clean, torch.einsum("bnd,bd->bn", p.xs, p.ws))
    assert abs(noise.mean().item()) < 5 * sigma / math.sqrt(noise.numel())
    assert abs(noise.std().item() / sigma - 1) < 0.02
    # inputs and continuous tasks are standard normal
    assert abs(p.xs.mean().item()) < 0.01 and abs(p.xs.var().item() - 1) < 0.02
    assert abs(p.ws.mean().item()) < 0.05 and abs(p.ws.var().item() - 1) < 0.05


def test_near_discrete_tasks_sit_at_the_requested_distance():
    exact = tasks.sample_near_discrete(300, 0.0, W_DISC, 4, 0.1, gen(0), dtype=torch.float64)
    assert in_set(exact.ws, W_DISC).all()
    s = 0.05
    near = tasks.sample_near_discrete(3000, s, W_DISC, 4, 0.1, gen(0), dtype=torch.float64)
    dist2 = dist_to_set(near.ws, W_DISC) ** 2  # nearest w_k is the one perturbed at this s
    assert abs(dist2.mean().item() / (W_DISC.shape[1] * s**2) - 1) < 0.05


def test_rotations_are_orthogonal():
    q = tasks.random_rotations(50, 5, gen(0))
    eye = torch.eye(5, dtype=torch.float64).expand(50, 5, 5)
    torch.testing.assert_close(q.transpose(1, 2) @ q, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(q).abs(), torch.ones(50, dtype=torch.float64))
    assert not torch.allclose(q[0], q[1])  # one matrix per prompt


def test_rotation_keeps_targets_and_labels_and_the_cont_distribution():
    n = 4000
    p = tasks.sample_mixture(n, 0.0, W_DISC, 8, 0.3, gen(7), dtype=torch.float64)
    q = tasks.random_rotations(n, 5, gen(8))
    r = tasks.rotate_inputs(p, q)
    torch.testing.assert_close(r.clean, p.clean, rtol=0, atol=1e-10)
    assert torch.equal(r.ys, p.ys)
    torch.testing.assert_close(r.xs.norm(dim=-1), p.xs.norm(dim=-1))
    torch.testing.assert_close(r.ws.norm(dim=-1), p.ws.norm(dim=-1))
    # a rotated D_cont prompt is still D_cont: inputs and tasks keep mean 0 and covariance I
    for t in (r.xs.reshape(-1, 5), r.ws):
        cov = t.T @ t / len(t)
        assert t.mean(0).abs().max() < 0.05
        assert (cov - torch.eye(5, dtype=torch.float64)).abs().max() < 0.1
    # a rotated D_disc prompt leaves the discrete set
    pd = tasks.sample_mixture(200, 1.0, W_DISC, 8, 0.3, gen(9), dtype=torch.float64)
    rd = tasks.rotate_inputs(pd, tasks.random_rotations(200, 5, gen(10)))
    torch.testing.assert_close(rd.clean, pd.clean, rtol=0, atol=1e-10)
    assert not in_set(rd.ws, W_DISC, tol=1e-6).any()


def test_rotation_of_float32_prompts_keeps_dtype():
    p = tasks.sample_mixture(10, 0.5, W_DISC, 6, 0.3, gen(0), dtype=torch.float32)
    r = tasks.rotate_inputs(p, tasks.random_rotations(10, 5, gen(1)))
    assert r.xs.dtype == r.ws.dtype == torch.float32
    torch.testing.assert_close(r.clean, p.clean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [0.5, 2.0, 100.0])
def test_scale_labels(c):
    p = tasks.sample_mixture(6, 0.5, W_DISC, 7, 0.3, gen(0), dtype=torch.float64)
    s = tasks.scale_labels(p, c)
    assert torch.equal(s.xs, p.xs)
    assert torch.equal(s.ys, p.ys * c) and torch.equal(s.ws, p.ws * c)
    torch.testing.assert_close(s.clean, c * p.clean)
    back = tasks.scale_labels(s, 1 / c)
    torch.testing.assert_close(back.ys, p.ys)
