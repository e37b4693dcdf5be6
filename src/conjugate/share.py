"""Pretraining shared between runs that differ only after it (the synthetic and miniature-LM studies).

Pretraining is most of a run (~90% of a synthetic quick run, ~80% of a minilm one); a grid over fine-tuning or
evaluation settings (``finetune_steps``, ``alpha_finetune``, ``tune_lr``, ``scales`` ...) would otherwise train
the same pretrained model once per grid point. Runs given the same ``cache`` folder (a sweep passes
``SWEEP/pretrained``) share it instead:

- the key is every config field a pretraining may depend on — all but the study's list of fields read only
  after it (:func:`fields_before`), so a field added later counts as a pretraining field until it is listed: the
  safe direction — plus the seed and the device type, hashed into the entry name ``seed<N>-<sha256 prefix>``;
  the entry's ``meta.json`` repeats the key in full and is compared on every use, so a renamed or edited entry
  is refused rather than used;
- the first run to need an entry trains it in its own run folder (resumable as always) while holding an
  exclusive lock on ``<entry>.lock``, then publishes the final checkpoint (safetensors) atomically; a run that
  needs the same entry meanwhile waits on the lock, then copies the checkpoint into its own folder (dropping
  any partial pretraining of its own);
- a run that reused an entry says so: its ``.stages/pretrain.done`` has ``reused_from``, ``producer`` and the
  producer's stats with ``seconds`` 0 (time spent by this run), and ``summary.json`` gets ``pretrain_reused``.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .config import ConfigError
from .runs import RunDir, atomic_copy, environment, read_json, sha256_file, write_json


def fields_before(cfg: Any, after: frozenset[str]) -> dict[str, Any]:
    """The fields of the config dataclass ``cfg`` that a pretraining may depend on: all but ``after``."""
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = after - names
    if unknown:
        raise ValueError(f"not fields of {type(cfg).__name__}: {sorted(unknown)}")
    return {name: getattr(cfg, name) for name in sorted(names - after)}


def entry_key(fields: dict[str, Any], seed: int, device_type: str) -> tuple[str, dict[str, Any]]:
    """The cache entry's name and the full identity it stands for."""
    ident = {"fields": fields, "seed": seed, "device": device_type}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return f"seed{seed}-{digest}", ident


@contextlib.contextmanager
def locked(cache: Path, name: str) -> Iterator[None]:
    """Hold the entry's exclusive lock (blocks while another run trains the same pretraining)."""
    check_cache_path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked_all(cache: Path, names: list[str]) -> Iterator[None]:
    """Hold the locks of several entries at once (a stacked pretraining of several seeds), taken in name order
    so that two such holders never wait on each other in a cycle (a single run holds one lock only)."""
    with contextlib.ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(locked(cache, name))
        yield


def fetch(cache: Path, name: str, ident: dict[str, Any], dest: Path) -> dict[str, Any] | None:
    """Verify the entry (its key, and its checkpoint's sha256 against ``meta.json``), then copy the checkpoint
    to ``dest`` and return the entry's ``meta.json``; None when there is no entry."""
    meta = verified_entry(cache, name, ident, dest.name)
    if meta is not None:
        atomic_copy(cache / name / dest.name, dest)
    return meta


def verified_entry(cache: Path, name: str, ident: dict[str, Any], filename: str) -> dict[str, Any] | None:
    """The entry's ``meta.json`` after the checks :func:`fetch` makes (its key; its checkpoint ``filename``'s
    sha256 against the record), copying nothing; None when there is no entry. A bad entry raises
    :class:`~conjugate.config.ConfigError` naming it."""
    entry = cache / name
    meta_path, ckpt = entry / "meta.json", entry / filename
    if not (meta_path.exists() and ckpt.exists()):
        return None
    try:
        meta = read_json(meta_path)
    except ValueError as e:
        raise ConfigError(f"{meta_path}: unreadable shared-pretraining entry ({e}); delete {entry}") from None
    if meta.get("ident") != json.loads(json.dumps(ident)):  # as JSON stores it (tuples become lists)
        raise ConfigError(f"{meta_path}: the entry was made for another config, seed or device; delete {entry}")
    recorded = meta.get("sha256")
    if recorded is None:
        raise ConfigError(f"{meta_path}: the entry records no checkpoint sha256 (made by an older version); "
                          f"delete {entry} to retrain it")
    if sha256_file(ckpt) != recorded:
        raise ConfigError(f"{ckpt}: not the checkpoint the entry recorded (sha256 differs: damaged or replaced); "
                          f"delete {entry} to retrain it")
    return meta


def publish(cache: Path, name: str, ident: dict[str, Any], ckpt: Path, stats: dict[str, Any], producer: Path) -> Path:
    """Store a finished pretraining checkpoint as the entry ``name`` (checkpoint first, then ``meta.json``
    with its sha256)."""
    entry = cache / name
    atomic_copy(ckpt, entry / ckpt.name)
    return write_json(entry / "meta.json", {"ident": ident, "sha256": sha256_file(entry / ckpt.name), "stats": stats,
                                            "producer": str(producer), "environment": environment()})


def shared_stage(run: RunDir, cache: str | Path, fields: dict[str, Any], seed: int, device_type: str,
                 train: Callable[[], Any], load: Callable[[Path], Any], stage: str = "pretrain") -> Any:
    """The model of ``stage`` for ``run``: copied from ``cache`` when an entry for (``fields``, seed, device)
    exists, else trained by ``train()`` (which writes ``checkpoints/<stage>.safetensors`` and marks the stage
    done, as a run does) and published. ``load`` reads a checkpoint into a model."""
    cache = Path(cache)
    name, ident = entry_key(fields, seed, device_type)
    ckpt = run.path("checkpoints", f"{stage}.safetensors")
    with locked(cache, name):
        meta = fetch(cache, name, ident, ckpt)
        if meta is not None:  # verified, copied; loaded before the stage is marked done
            try:
                model = load(ckpt)
            except BaseException:
                ckpt.unlink(missing_ok=True)
                raise
            run.path("checkpoints", f"{stage}.resume.safetensors").unlink(missing_ok=True)  # an earlier attempt's
            run.mark_done(stage, {**meta["stats"], "seconds": 0.0, "reused_from": str(cache / name),
                                  "producer": meta["producer"], "producer_seconds": meta["stats"].get("seconds")},
                          checkpoint=ckpt)
            return model
        model = train()
        publish(cache, name, ident, ckpt, read_json(run.path(".stages", f"{stage}.done")), run.root)
    return model


def check_cache_path(cache: str | Path | None) -> None:
    """Bad input before anything is written: a cache path that exists and is not a folder."""
    if cache is not None and Path(cache).exists() and not Path(cache).is_dir():
        raise ConfigError(f"pretrain cache {cache}: exists and is not a folder")
