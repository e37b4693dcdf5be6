"""Configs as dataclasses, named presets, and ``--set key=value`` parsing with validation.

A config is plain data: resolving a preset and applying overrides gives one ``SyntheticConfig`` that is
recorded in full next to the results. Every bad value raises :class:`ConfigError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields


class ConfigError(ValueError):
    """A config value, key or preset is invalid; the message names it."""


MAX_SEED = 2**63 - 1


def check_seed(seed: int, option: str = "--seed") -> int:
    """A seed every generator of the studies accepts: an integer in [0, 2⁶³ − 1]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{option} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed


@dataclass
class SyntheticConfig:
    """Every setting of the synthetic study (SPEC §1). Defaults are the ``quick`` preset."""

    # task distributions
    d: int = 4
    n_points: int = 12
    n_tasks: int = 4  # K, the size of the discrete task set
    sigma: float = 0.25  # label noise
    alpha_pretrain: float = 0.5
    alpha_finetune: float = 1.0  # 1.0 = fine-tune on D_disc only
    task_seed: int = 1  # seed of the discrete set {w_1 ... w_K}, fixed across runs
    # seed of pretraining (initialisation and batches); None: the run's --seed. Set it to fine-tune and evaluate
    # several seeds from one pretrained model (a shipped checkpoint, or a shared pretraining)
    pretrain_seed: int | None = None
    # model
    width: int = 64
    layers: int = 3
    heads: int = 2
    # pretraining
    pretrain_steps: int = 14000
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3
    pretrain_warmup: int = 500
    # fine-tuning
    finetune_steps: int = 300
    finetune_batch: int = 64
    finetune_lr: float = 3e-5
    finetune_warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # evaluation
    eval_prompts: int = 2000  # fresh held-out prompts per distribution
    val_prompts: int = 2000  # separate prompts on which the conjugate scale is chosen
    scales: list[float] = field(default_factory=lambda: [1.0, 1.1, 1.25, 1.5, 2.0, 3.0])
    distance_spreads: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 1.0, 2.0])
    alpha_grid: int = 201  # points of the α grid for the α_eff fit
    # execution
    checkpoint_every: int = 1000
    threads: int = 0  # 0: auto (see conjugate.synthetic.threads)
    compile: bool = False
    amp_bf16: bool = False

    # fields pretraining never reads (the key of shared pretraining is every other field: conjugate.share)
    AFTER_PRETRAINING: typing.ClassVar[frozenset[str]] = frozenset({
        "alpha_finetune", "finetune_steps", "finetune_batch", "finetune_lr", "finetune_warmup", "eval_prompts",
        "val_prompts", "scales", "distance_spreads", "alpha_grid", "checkpoint_every", "threads"})
    # the identity of a pretraining is every other field plus pretraining_seed(seed), which stands for
    # pretrain_seed: so "--seed 0" and "--seed 0 --set pretrain_seed=0" are the same pretraining
    NOT_PRETRAINING_KEY: typing.ClassVar[frozenset[str]] = AFTER_PRETRAINING | {"pretrain_seed"}

    def pretraining_seed(self, seed: int) -> int:
        """The seed pretraining uses in a run of ``seed``: ``pretrain_seed`` when set, else ``seed``."""
        return seed if self.pretrain_seed is None else self.pretrain_seed

    def validate(self) -> SyntheticConfig:
        for f in fields(self):
            v = getattr(self, f.name)
            for x in (v if isinstance(v, list) else [v]):
                if isinstance(x, float) and not math.isfinite(x):
                    raise ConfigError(f"{f.name} must be finite, got {v}")
        pos_int = ["d", "n_points", "n_tasks", "width", "layers", "heads", "pretrain_batch", "finetune_batch",
                   "eval_prompts", "val_prompts", "checkpoint_every", "alpha_grid"]
        for name in pos_int:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pretrain_seed is not None:
            check_seed(self.pretrain_seed, "pretrain_seed")
        for name in ("pretrain_steps", "finetune_steps", "pretrain_warmup", "finetune_warmup", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_points < 2:
            raise ConfigError(f"n_points must be >= 2, got {self.n_points}")
        if not self.sigma > 0:
            raise ConfigError(f"sigma must be > 0, got {self.sigma}")
        for name in ("alpha_pretrain", "alpha_finetune"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("pretrain_lr", "finetune_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0")
        if not self.scales or any(not c > 0 for c in self.scales):
            raise ConfigError(f"scales must be a non-empty list of values > 0 (the scale c), got {self.scales}")
        if 1.0 not in self.scales:
            raise ConfigError(f"scales must include 1.0 (no transform), got {self.scales}")
        if not self.distance_spreads or any(s < 0 for s in self.distance_spreads):
            raise ConfigError(f"distance_spreads must be a non-empty list of values >= 0, got {self.distance_spreads}")
        if self.width % self.heads:
            raise ConfigError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SYNTHETIC_PRESETS: dict[str, dict] = {
    # the whole pipeline in seconds, for tests
    "smoke": dict(pretrain_steps=150, finetune_steps=30, eval_prompts=256, val_prompts=256, width=32, layers=2,
                  heads=2, pretrain_warmup=20, checkpoint_every=50, alpha_grid=51,
                  distance_spreads=[0.0, 0.5, 2.0]),
    # the default study on a 2-core CPU (see README for why these settings)
    "quick": {},
    # the quick model with the paper's label noise, pretrained long enough to learn the mixture (about 1 h 45 min
    # on one CPU core); its pretrained checkpoint ships with the package, so a run fine-tunes and evaluates from it
    "standard": dict(sigma=0.5, pretrain_steps=160000, checkpoint_every=5000),
    # the paper-scale model (Garg et al.'s standard size), for a GPU
    "paper": dict(d=8, n_points=16, n_tasks=64, sigma=0.5, alpha_pretrain=0.2, width=256, layers=12, heads=8,
                  pretrain_steps=100000, pretrain_batch=128, pretrain_lr=3e-4, pretrain_warmup=2000,
                  finetune_steps=2000, finetune_lr=3e-5, checkpoint_every=2000, compile=True, amp_bf16=True),
}


def _field_types(cls: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def parse_value(key: str, raw: str, typ: typing.Any) -> typing.Any:
    """Parse ``raw`` as the type of field ``key``; lists are comma-separated."""
    origin = typing.get_origin(typ)
    if origin in (list, tuple):
        (inner,) = typing.get_args(typ)[:1]
        parts = [p for p in raw.split(",") if p.strip()]
        if not parts:
            raise ConfigError(f"--set {key}: empty list")
        return [parse_value(key, p.strip(), inner) for p in parts]
    if isinstance(typ, types.UnionType):
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        return typ(raw)
    except ValueError:
        raise ConfigError(f"--set {key}={raw}: expected {getattr(typ, '__name__', typ)}") from None


def parse_overrides(pairs: Iterable[str], cls: type = SyntheticConfig) -> dict[str, typing.Any]:
    """``["d=8", "scales=1,2"]`` -> ``{"d": 8, "scales": [1.0, 2.0]}``, checking keys and types."""
    types_ = _field_types(cls)
    out: dict[str, typing.Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in types_:
            raise ConfigError(f"unknown --set key {key!r}; valid keys: {', '.join(sorted(types_))}")
        out[key] = parse_value(key, raw.strip(), types_[key])
    return out


def resolve_synthetic(preset: str, overrides: dict | None = None) -> SyntheticConfig:
    """The config of ``preset`` with ``overrides`` applied, validated."""
    if preset not in SYNTHETIC_PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(SYNTHETIC_PRESETS)}")
    values = {**SYNTHETIC_PRESETS[preset], **(overrides or {})}
    return SyntheticConfig(**values).validate()
