"""Pretraining shared between runs that differ only after it.

Pretraining is ~90% of a quick run; a grid over fine-tuning or evaluation settings (``finetune_steps``,
``alpha_finetune``, ``finetune_lr``, ``scales`` ...) would otherwise train the same pretrained model once per
grid point. Runs given the same ``cache`` folder (a sweep passes ``SWEEP/pretrained``) share it instead:

- the key is every config field pretraining may depend on (all but :data:`AFTER_PRETRAINING`), the seed and
  the device type,
  hashed into the entry name ``seed<N>-<sha256 prefix>``; the entry's ``meta.json`` repeats the key in full and
  is compared on every use, so a renamed or edited entry is refused rather than used;
- the first run to need an entry trains it in its own run folder (resumable as always) while holding an
  exclusive lock on ``<entry>.lock``, then publishes the final checkpoint (safetensors) atomically; a run that
  needs the same entry meanwhile waits on the lock, then copies the checkpoint into its own folder;
- a run that reused an entry says so: its ``.stages/pretrain.done`` has ``reused_from`` and the producer's
  stats, ``seconds`` 0 (time spent by this run), and ``summary.json`` gets ``pretrain_reused: true``.

Thread count is not part of the key: a different number of threads sums in a different order, so a reused
model can differ from one this run would have trained in the last bits (the producer's thread count is in
``meta.json``). The lock is ``fcntl.flock``: reliable on one machine; on a cluster's network filesystem it
depends on the filesystem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import ConfigError, SyntheticConfig
from ..runs import environment, read_json, write_json

# Fields pretraining does not read. Every other field is part of the key, so a field added later counts as a
# pretraining field until it is listed here: the safe direction (at worst a pretraining is not shared).
AFTER_PRETRAINING = frozenset({"alpha_finetune", "finetune_steps", "finetune_batch", "finetune_lr", "finetune_warmup",
                               "eval_prompts", "val_prompts", "scales", "distance_spreads", "alpha_grid",
                               "checkpoint_every", "threads"})


def pretrain_fields(cfg: SyntheticConfig) -> dict[str, Any]:
    """The config fields a pretraining depends on (all but :data:`AFTER_PRETRAINING`)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in AFTER_PRETRAINING}


def pretrain_key(cfg: SyntheticConfig, seed: int, device_type: str) -> tuple[str, dict[str, Any]]:
    """The cache entry's name and the full identity it stands for."""
    ident = {"fields": pretrain_fields(cfg), "seed": seed, "device": device_type}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return f"seed{seed}-{digest}", ident


@contextlib.contextmanager
def locked(cache: Path, name: str) -> Iterator[None]:
    """Hold the entry's exclusive lock (blocks while another run trains the same pretraining)."""
    if cache.exists() and not cache.is_dir():
        raise ConfigError(f"pretrain cache {cache}: exists and is not a folder")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fetch(cache: Path, name: str, ident: dict[str, Any], dest: Path) -> dict[str, Any] | None:
    """Copy the entry's checkpoint to ``dest`` and return its ``meta.json``; None when there is no entry."""
    entry = cache / name
    meta_path, ckpt = entry / "meta.json", entry / "pretrain.safetensors"
    if not (meta_path.exists() and ckpt.exists()):
        return None
    try:
        meta = read_json(meta_path)
    except ValueError as e:
        raise ConfigError(f"{meta_path}: unreadable shared-pretraining entry ({e}); delete {entry}") from None
    if meta.get("ident") != ident:
        raise ConfigError(f"{meta_path}: the entry was made for another config, seed or device; delete {entry}")
    _copy_atomic(ckpt, dest)
    return meta


def publish(cache: Path, name: str, ident: dict[str, Any], ckpt: Path, stats: dict[str, Any], producer: Path) -> Path:
    """Store a finished pretraining checkpoint as the entry ``name`` (checkpoint first, then ``meta.json``)."""
    entry = cache / name
    _copy_atomic(ckpt, entry / "pretrain.safetensors")
    return write_json(entry / "meta.json", {"ident": ident, "stats": stats, "producer": str(producer),
                                            "environment": environment()})


def _copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
