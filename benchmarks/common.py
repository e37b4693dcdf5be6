"""Shared helpers of the benchmark scripts: machine facts, peak memory, interleaved timing, JSON output,
and the quick preset's training/evaluation pieces that two benchmarks share.

The scripts are run as ``python benchmarks/<name>.py``, so this module is imported as ``common``; the
project is imported from ``src/`` when it is not installed (e.g. on a bare GPU machine).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "src" / "conjugate").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident memory of this process (``ru_maxrss``; kilobytes on Linux, bytes on macOS) in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def own_peak_rss_mb() -> float:
    """This address space's own peak RSS (``VmHWM``, which starts afresh at exec), else :func:`peak_rss_mb`.

    ``ru_maxrss`` of a child process started from a large parent carries the parent's peak over the exec, so
    children that measure memory use this instead."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else peak_rss_mb()


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in rows}


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on: CPU model, cores, ISA flags that matter, library versions, load."""
    cpu = _lscpu()
    flags = set(cpu.get("Flags", "").split())
    info = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu.get("Model name") or platform.processor() or "unknown",
        "cpus_online": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"}),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


_T0 = time.perf_counter()


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries only the result)."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> typing.NoReturn:
    """Bad input: one line on stderr naming the problem, exit code 2 (no traceback)."""
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def emit(result: dict, as_json: bool) -> None:
    """Print ``result`` as one JSON document (``--json``) or as indented JSON for people."""
    result = {**result, "peak_rss_mb": round(peak_rss_mb(), 1)}
    print(json.dumps(result, indent=None if as_json else 2, default=_json_default))


def _json_default(o: object) -> object:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def rounded(x: float | None, digits: int = 4) -> float | None:
    """Round to ``digits`` significant figures (None and non-finite values become None)."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


# ---- interleaved timing ------------------------------------------------------------------------------------

@dataclass
class Contestant:
    """One thing to time: ``fn`` runs one unit of work (a training step, a batch of products);
    ``enter`` runs, untimed, before each of its blocks (e.g. to set the thread count)."""

    fn: Callable[[], object]
    enter: Callable[[], None] | None = None
    block: int = 1  # units per timed block


def interleaved(contestants: dict[str, Contestant], *, repeats: int, warmup: int,
                sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per unit of each contestant, one value per block, with blocks of all contestants alternated.

    Every contestant first runs ``warmup`` untimed units. Then, ``repeats`` times, each runs its ``block``
    units in turn; the order reverses on every repeat so that slow drifts of the machine (other jobs, clocks)
    hit every contestant alike. Paired ratios of blocks of the same repeat cancel most of the noise.
    """
    for c in contestants.values():
        if c.enter:
            c.enter()
        for _ in range(warmup):
            c.fn()
        sync()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    names = list(contestants)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            c = contestants[name]
            if c.enter:
                c.enter()
            sync()
            t0 = time.perf_counter()
            for _ in range(c.block):
                c.fn()
            sync()
            times[name].append((time.perf_counter() - t0) / c.block)
    return times


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over repeats of ``slow[r] / fast[r]``: how many times faster ``fast`` is."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def per_second(times: list[float]) -> float:
    return 1.0 / statistics.median(times)


# ---- matmul rate -------------------------------------------------------------------------------------------

def model_gemms(width: int, tokens: int) -> list[tuple[int, int, int]]:
    """The (m, k, n) shapes of one transformer block's linear layers in a training step: for each of
    QKV (w→3w), output projection (w→w), MLP up (w→4w) and down (4w→w), the forward product, the
    gradient w.r.t. the input and the gradient w.r.t. the weight."""
    shapes = []
    for fan_in, fan_out in ((width, 3 * width), (width, width), (width, 4 * width), (4 * width, width)):
        shapes += [(tokens, fan_in, fan_out), (tokens, fan_out, fan_in), (fan_out, tokens, fan_in)]
    return shapes


def matmul_contestant(width: int, tokens: int, device: str, dtype: torch.dtype = torch.float32,
                      reps: int = 2) -> tuple[Contestant, float]:
    """A contestant running the model's GEMMs ``reps`` times, and the FLOPs of one of its units."""
    g = torch.Generator(device="cpu").manual_seed(0)
    pairs = [(torch.randn(m, k, generator=g).to(device, dtype), torch.randn(k, n, generator=g).to(device, dtype))
             for m, k, n in model_gemms(width, tokens)]
    outs = [torch.empty(a.shape[0], b.shape[1], device=device, dtype=dtype) for a, b in pairs]
    flops = reps * sum(2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs)

    def run() -> None:
        for _ in range(reps):
            for (a, b), o in zip(pairs, outs, strict=True):
                torch.mm(a, b, out=o)

    return Contestant(run), flops


# ---- the quick preset's pieces, shared by time_to_quality.py and synthetic_train.py -----------------------

@dataclass
class QuickSetup:
    """The quick preset (read at run time), its discrete task set and a fixed held-out D_cont set."""

    cfg: object  # conjugate.config.SyntheticConfig
    w_disc: torch.Tensor  # (K, d) float32
    eval_xs: torch.Tensor  # (P, n, d) float32
    eval_ys: torch.Tensor
    eval_clean: torch.Tensor  # (P, n) float64, x·w
    bayes_mse: float  # the mixture-Bayes predictor's D_cont error on the same prompts


def quick_setup(eval_prompts: int = 1000, eval_seed: int = 20_231_009, overrides: dict | None = None) -> QuickSetup:
    """The quick preset as it is now (plus ``overrides``, e.g. from ``--set``), read at run time."""
    from conjugate.config import resolve_synthetic
    from conjugate.synthetic import bayes, evaluate, tasks

    cfg = resolve_synthetic("quick", overrides)
    w64 = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed, torch.float64)
    p = tasks.sample_mixture(eval_prompts, 0.0, w64, cfg.n_points, cfg.sigma, tasks.make_generator(eval_seed),
                             dtype=torch.float64)
    terms = bayes.batched_terms(p.xs, p.ys, w64, cfg.sigma)
    bayes_mse = evaluate.mse(terms.mixture(cfg.alpha_pretrain), p)
    return QuickSetup(cfg, w64.float(), p.xs.float(), p.ys.float(), p.clean, bayes_mse)


def quick_model(setup: QuickSetup, seed: int, device: str = "cpu") -> torch.nn.Module:
    from conjugate.synthetic.model import InContextRegressor, ModelConfig

    c = setup.cfg
    torch.manual_seed(seed)
    return InContextRegressor(ModelConfig(c.d, c.n_points, c.width, c.layers, c.heads)).to(device)


@torch.no_grad()
def dcont_mse(model: torch.nn.Module, setup: QuickSetup, amp_bf16: bool = False) -> float:
    """D_cont error of ``model`` on the held-out set: squared error vs x·w / d, mean over 1..n-1 exemplars."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if amp_bf16 else _null()
    with ctx:
        pred = model(setup.eval_xs.to(dev), setup.eval_ys.to(dev)).double().cpu()
    model.train(was_training)
    d = setup.eval_xs.shape[-1]
    return float((((pred - setup.eval_clean) ** 2).mean(0) / d)[1:].mean())


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Trainer:
    """A resumable training loop in chunks: ``ours`` is the project's recipe (AdamW, warm-up + cosine
    :func:`lr_at`, gradient clipping, batches from :func:`step_generator`, all from the quick preset), the
    ``baseline`` the standard one of Garg et al. (Adam, constant lr 1e-4, batch 64, no clipping). Both draw
    their batches from the quick preset's pretraining mixture. Only the time inside :meth:`run` counts."""

    def __init__(self, setup: QuickSetup, recipe: str, seed: int, device: str = "cpu", amp_bf16: bool = False,
                 steps: int | None = None):
        from conjugate.training import StageSpec

        c = setup.cfg
        self.setup, self.recipe, self.seed, self.device, self.amp_bf16 = setup, recipe, seed, device, amp_bf16
        self.model = quick_model(setup, seed, device)
        self.model.train()
        if recipe == "ours":
            self.spec = StageSpec("pretrain", steps or c.pretrain_steps, c.pretrain_batch, c.pretrain_lr,
                                  c.pretrain_warmup, c.weight_decay, c.grad_clip)
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=c.pretrain_lr, weight_decay=c.weight_decay)
        elif recipe == "baseline":
            self.spec = StageSpec("pretrain", steps or 10**9, 64, 1e-4, 0, 0.0, 0.0)
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        else:
            raise ValueError(f"unknown recipe {recipe!r}")
        self.step, self.seconds = 0, 0.0

    def run(self, n: int) -> None:
        from conjugate.synthetic import tasks
        from conjugate.training import lr_at, step_generator

        c, spec, model, opt = self.setup.cfg, self.spec, self.model, self.opt
        ctx = torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16) if self.amp_bf16 else _null()
        t0 = time.perf_counter()
        for _ in range(n):
            if self.recipe == "ours":
                for group in opt.param_groups:
                    group["lr"] = lr_at(self.step, spec)
            batch = tasks.sample_mixture(spec.batch, c.alpha_pretrain, self.setup.w_disc, c.n_points, c.sigma,
                                         step_generator(self.seed, spec.name, self.step, self.device),
                                         device=self.device)
            with ctx:
                pred = model(batch.xs, batch.ys)
            loss = torch.mean((pred.float() - batch.ys) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            opt.step()
            self.step += 1
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
