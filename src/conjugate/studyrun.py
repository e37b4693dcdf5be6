"""What every training study's run does first (:func:`start_run`), and the ``--device`` choice it makes
(:func:`pick_device`). The synthetic and miniature-LM pipelines open their run folders through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import share
from .config import ConfigError, check_seed
from .runs import RunDir, StateError, read_json


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    return torch.device(device)


def start_run(cfg: Any, out: str | Path, seed: int, device: str, pretrain_cache: str | Path | None,
              command: str) -> tuple[RunDir, torch.device]:
    """What every study's run does first: validate the config (a dataclass with ``validate``, ``to_dict`` and
    ``threads``), the seed and the cache path, pick the device, set torch's threads, and open (and lock) the
    run folder for ``command``, refusing one that holds a run with another config or seed. The caller closes
    the folder (``with run:``)."""
    cfg.validate()
    check_seed(seed)
    share.check_cache_path(pretrain_cache)
    dev = pick_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = RunDir(out, command)
    try:
        path = run.path("config.json")
        if path.exists():
            try:
                old = read_json(path)
            except StateError as e:
                raise StateError(f"{e}; delete the folder {run.root} to start again, or choose another --out") from None
            if old.get("config") != cfg.to_dict() or old.get("seed") != seed:
                raise ConfigError(f"{run.root} already holds a run with a different config or seed; "
                                  "use a new --out (or delete the folder)")
    except BaseException:
        run.close()
        raise
    return run, dev


__all__ = ["pick_device", "start_run"]
