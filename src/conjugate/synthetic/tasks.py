"""Task distributions and batched prompt sampling (SPEC §1, "Data").

A prompt is ``(x_1, y_1, ..., x_n, y_n)`` with ``x_i ~ N(0, I_d)`` and ``y_i = w·x_i + eps_i``,
``eps_i ~ N(0, sigma^2)``. The task ``w`` comes from

* ``D_cont = N(0, I_d)``,
* ``D_disc`` = uniform over a fixed set ``{w_1 ... w_K}`` drawn once from ``N(0, I_d)`` with its own seed,
* the mixture ``D_alpha = alpha D_disc + (1 - alpha) D_cont``.

Everything is sampled in batches, on the device that trains, from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Prompts:
    """A batch of prompts: inputs ``xs`` (B, n, d), noisy labels ``ys`` (B, n), tasks ``ws`` (B, d)."""

    xs: torch.Tensor
    ys: torch.Tensor
    ws: torch.Tensor

    @property
    def clean(self) -> torch.Tensor:
        """Noiseless targets ``x_i · w`` (B, n): the reference that errors are measured against."""
        return torch.einsum("bnd,bd->bn", self.xs, self.ws)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Prompts:
        return Prompts(*(t.to(device=device, dtype=dtype) for t in (self.xs, self.ys, self.ws)))


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def discrete_tasks(k: int, d: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The fixed discrete task set ``{w_1 ... w_K}`` (K, d), drawn once from ``N(0, I_d)``.

    Always drawn on the CPU in float64 so that the set is identical on every device and dtype.
    """
    g = make_generator(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64).to(dtype)


def sample_tasks(
    batch: int,
    alpha: float,
    w_disc: torch.Tensor,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch`` tasks from ``D_alpha``. Returns ``(ws (B, d), is_disc (B,) bool)``."""
    k, d = w_disc.shape
    w_disc = w_disc.to(device=device, dtype=dtype)
    is_disc = torch.rand(batch, generator=generator, device=device) < alpha
    idx = torch.randint(0, k, (batch,), generator=generator, device=device)
    w_cont = torch.randn(batch, d, generator=generator, device=device, dtype=dtype)
    ws = torch.where(is_disc[:, None], w_disc[idx], w_cont)
    return ws, is_disc


def sample_prompts(
    ws: torch.Tensor, n_points: int, sigma: float, generator: torch.Generator
) -> Prompts:
    """Inputs and noisy labels for the given tasks ``ws`` (B, d)."""
    b, d = ws.shape
    xs = torch.randn(b, n_points, d, generator=generator, device=ws.device, dtype=ws.dtype)
    noise = torch.randn(b, n_points, generator=generator, device=ws.device, dtype=ws.dtype)
    ys = torch.einsum("bnd,bd->bn", xs, ws) + sigma * noise
    return Prompts(xs, ys, ws)


def sample_mixture(
    batch: int,
    alpha: float,
    w_disc: torch.Tensor,
    n_points: int,
    sigma: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Prompts:
    """``batch`` prompts with tasks from ``D_alpha`` (alpha = 0: D_cont, alpha = 1: D_disc)."""
    ws, _ = sample_tasks(batch, alpha, w_disc, generator, device, dtype)
    return sample_prompts(ws, n_points, sigma, generator)


def sample_near_discrete(
    batch: int,
    spread: float,
    w_disc: torch.Tensor,
    n_points: int,
    sigma: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Prompts:
    """Tasks ``w = w_k + delta``, ``delta ~ N(0, spread^2 I)``: the distance sweep (SPEC §1, step 5)."""
    ws, _ = sample_tasks(batch, 1.0, w_disc, generator, device, dtype)
    ws = ws + spread * torch.randn(ws.shape, generator=generator, device=device, dtype=dtype)
    return sample_prompts(ws, n_points, sigma, generator)


def random_rotations(batch: int, d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``batch`` Haar-random orthogonal matrices (B, d, d) (QR of a Gaussian with sign correction)."""
    a = torch.randn(batch, d, d, generator=generator, device=device, dtype=dtype)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


def scale_labels(p: Prompts, c: float) -> Prompts:
    """Conjugate transform by label scaling: ``y -> c·y`` (the task becomes ``c·w``)."""
    return Prompts(p.xs, p.ys * c, p.ws * c)


def rotate_inputs(p: Prompts, q: torch.Tensor) -> Prompts:
    """Control transform: ``x_i -> Q x_i`` with one orthogonal ``Q`` (B, d, d) per prompt, labels kept.

    The task becomes ``Q w``, so the noiseless targets are unchanged.
    """
    q = q.to(p.xs.dtype)
    return Prompts(torch.einsum("bij,bnj->bni", q, p.xs), p.ys, torch.einsum("bij,bj->bi", q, p.ws))
