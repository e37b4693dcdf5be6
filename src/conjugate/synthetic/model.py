"""The in-context regression transformer: a compact pre-LayerNorm GPT-2-style model.

Tokens interleave inputs and labels: an x-token is ``[0, x]`` and a y-token ``[y, 0_d]`` (a dedicated label
channel, as in Raventós et al. 2023), read in by one linear layer. A causal transformer runs over the
``2n`` tokens and one linear read-out predicts ``y_{k+1}`` at the position of ``x_{k+1}``, from the ``k``
earlier pairs. The blocks are the shared :class:`conjugate.blocks.Block` (fused QKV,
``torch.nn.functional.scaled_dot_product_attention``). :func:`load_model` reads a checkpoint of one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import Block


@dataclass(frozen=True)
class ModelConfig:
    d: int = 4
    n_points: int = 12
    width: int = 64
    layers: int = 3
    heads: int = 2
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class InContextRegressor(nn.Module):
    """``forward(xs (B, n, d), ys (B, n)) -> predictions (B, n)``; column k uses the first k pairs."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"width {cfg.width} is not divisible by heads {cfg.heads}")
        self.cfg = cfg
        self.read_in = nn.Linear(cfg.d + 1, cfg.width)
        self.pos = nn.Parameter(torch.zeros(2 * cfg.n_points, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.read_out = nn.Linear(cfg.width, 1)
        self.apply(self._init)
        nn.init.normal_(self.pos, std=0.02)
        for blk in self.blocks:  # GPT-2's scaled init of the residual projections
            for lin in (blk.proj, blk.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02 / (2 * cfg.layers) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def tokens(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Interleave ``[0, x_1], [y_1, 0], [0, x_2], ...`` into (B, 2n, d + 1)."""
        b, n, d = xs.shape
        xt = F.pad(xs, (1, 0))
        yt = F.pad(ys[..., None], (0, d))
        return torch.stack([xt, yt], dim=2).reshape(b, 2 * n, d + 1)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        n = xs.shape[1]
        if xs.shape[-1] != self.cfg.d or n > self.cfg.n_points:
            raise ValueError(f"prompts of shape {tuple(xs.shape)} do not fit a model with d={self.cfg.d}, "
                             f"n_points={self.cfg.n_points}")
        h = self.read_in(self.tokens(xs, ys)) + self.pos[: 2 * n]
        for blk in self.blocks:
            h = blk(h)
        return self.read_out(self.ln_f(h[:, ::2]))[..., 0]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_step(self, batch: int) -> float:
        """Matmul FLOPs of one training step (forward + backward ≈ 3 × forward)."""
        c, t = self.cfg, 2 * self.cfg.n_points
        per_token = c.layers * (2 * 12 * c.width**2 + 2 * 2 * t * c.width) + 2 * (c.d + 1) * c.width
        return 3.0 * batch * t * per_token


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[InContextRegressor, dict]:
    """Load a checkpoint written by :func:`conjugate.training.save_model` (safetensors only: no pickle)."""
    from ..training import load_checkpoint

    model, meta = load_checkpoint(path, "conjugate model", lambda cfg, _: InContextRegressor(ModelConfig(**cfg)))
    return model.to(device), meta
