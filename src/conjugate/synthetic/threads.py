"""CPU thread settings of a synthetic run, chosen so that a run survives a machine shared with other jobs.

The study's models are tiny (the quick preset: 64 wide × 3 layers, 64 prompts × 24 tokens per step): the
matrix products of one step are too small to split well over cores, and with two OpenMP threads every product
ends at a barrier where one thread waits for the other. Alone on two cores that costs little; beside one other
CPU-bound process the two threads and that process share two cores, a thread that waits is often waiting for
its partner that is not running, and OpenMP's default "active" wait spins on the core the partner needs. The
measured result (issue 16): 5.6 steps/s beside one busy process instead of 38 alone.

The choice, in order of precedence:

1. ``threads = N`` in the config (``--set threads=N``, N ≥ 1): exactly N torch threads;
2. the environment variable ``CONJUGATE_THREADS=N`` (N ≥ 1);
3. otherwise (``threads = 0``, "auto"): one torch thread on the CPU (no barrier to wait at; a second thread
   buys little for a model this small, see ``benchmarks/threads.py``); on a GPU, torch's own count (the GPU
   does the work).

Independently, the ``conjugate synthetic run`` command sets ``OMP_WAIT_POLICY=PASSIVE`` (threads waiting at a
barrier sleep instead of spinning) before torch is first imported — OpenMP reads it once, when torch loads its
runtime, so setting it later has no effect; an ``OMP_WAIT_POLICY`` already in the environment is kept. It
matters only when more than one thread is chosen. :func:`record` is what the run's ``config.json`` keeps under
``threads``.

Numbers depend on the thread count (sums are reduced in another order), so a run is bit-for-bit reproducible
for a fixed count; the count is recorded, and a resumed run should use the same one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..config import ConfigError

ENV_THREADS = "CONJUGATE_THREADS"
WAIT_POLICY = "OMP_WAIT_POLICY"
AUTO_CPU_THREADS = 1

_omp_source: str | None = None  # who set OMP_WAIT_POLICY: "conjugate", "environment" or None (unset)


def prepare_openmp(policy: str = "PASSIVE") -> str | None:
    """Set ``OMP_WAIT_POLICY`` to ``policy`` unless it is already set or torch is already imported (then it
    could no longer take effect). Call it before anything imports torch; returns the policy now in force
    (None: OpenMP's default)."""
    global _omp_source
    if WAIT_POLICY in os.environ:
        _omp_source = _omp_source or "environment"
    elif "torch" not in sys.modules:
        os.environ[WAIT_POLICY] = policy
        _omp_source = "conjugate"
    return os.environ.get(WAIT_POLICY)


def env_threads() -> int | None:
    """``CONJUGATE_THREADS`` as a positive integer, None when unset or empty."""
    raw = os.environ.get(ENV_THREADS, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{ENV_THREADS} must be a positive integer, got {raw!r}")
    return n


def choose(config_threads: int, device_type: str) -> tuple[int | None, str, str]:
    """``(threads or None to leave torch's count, source, reason)`` by the precedence above."""
    if config_threads:
        return config_threads, "config", f"threads={config_threads} set in the config (--set threads=N)"
    n = env_threads()
    if n is not None:
        return n, "environment", f"{ENV_THREADS}={n}"
    if device_type != "cpu":
        return None, "auto", f"on {device_type} the accelerator does the work: torch's default CPU threads kept"
    return AUTO_CPU_THREADS, "auto", (
        "one thread for a model this small: a second thread speeds a step up little when the cores are free, and "
        "on a busy machine it waits at every barrier for a partner that is not running (override: --set "
        f"threads=N or {ENV_THREADS}=N)")


def apply(config_threads: int, device_type: str) -> dict[str, Any]:
    """Set torch's intra-op threads by :func:`choose` and return :func:`record`."""
    import torch

    n, source, reason = choose(config_threads, device_type)
    if n is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return record(source, reason)


def record(source: str, reason: str) -> dict[str, Any]:
    """The settings in force, for ``config.json``: torch's intra- and inter-op threads, the OpenMP wait
    policy and who set it, where the choice came from and why."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "omp_wait_policy": os.environ.get(WAIT_POLICY),
            "omp_wait_policy_source": _omp_source or ("environment" if WAIT_POLICY in os.environ else None),
            "source": source, "reason": reason}


__all__ = ["AUTO_CPU_THREADS", "ENV_THREADS", "apply", "choose", "env_threads",
           "prepare_openmp", "record"]
