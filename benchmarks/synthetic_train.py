"""Training-step speed: our in-context regressor vs the standard GPT-2-based model of public ICL code.

The baseline is the way Garg et al. (2022) and the code derived from it build the model: a stock
``transformers.GPT2Model`` (dropout off, no cache) fed through ``inputs_embeds`` by a linear read-in, with a
linear read-out at the x positions; x-tokens are ``[x]``, y-tokens ``[y, 0, ..., 0]``. Ours is
``conjugate.synthetic.model.InContextRegressor`` (fused QKV, SDPA, read-out only at x positions). Both are
timed at equal size on the same pre-sampled batches, for one full training step (forward, backward, AdamW
step, and the ``loss.item()`` both training loops do every step); ours also clips gradients, as
``train_stage`` does. Timing alternates blocks of steps of ours, the baseline and a block of the model's
own matrix products (the CPU's attainable fp32 matmul rate, measured under the same load).

Also per size: the same step with a last layer computed only at the x positions (a model change we
propose; same outputs) against the baseline, and the peak-RSS growth of training each model (child
processes). Variants (ours vs ours, interleaved the same way): fused AdamW, another thread count,
flush-denormal, bf16 autocast, the last-layer change, and ``torch.compile`` (in a child process with a
time cap, since inductor's CPU compile can be slow); on CUDA also TF32, no per-step ``.item()``, and bf16 +
compile. On the CPU, a check of OpenMP settings (default, ``OMP_WAIT_POLICY=PASSIVE``, one thread) runs the
quick preset's model in child processes, and a short bf16-vs-fp32 training of the quick preset measures
what bf16 costs in error.

    python benchmarks/synthetic_train.py --json [--threads 1]    # CPU, 128x4 and 256x8
    python benchmarks/synthetic_train.py --json --device cuda    # adds the paper preset's 256x12 size
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (
    Contestant,
    Trainer,
    dcont_mse,
    emit,
    fail,
    interleaved,
    log,
    machine_info,
    matmul_contestant,
    own_peak_rss_mb,
    paired_ratio,
    peak_rss_mb,
    per_second,
    quick_setup,
    rounded,
)
from torch import nn

from conjugate.synthetic.model import InContextRegressor, ModelConfig


@dataclass(frozen=True)
class Size:
    name: str
    d: int
    n_points: int
    batch: int
    width: int
    layers: int
    heads: int

    def model_config(self) -> ModelConfig:
        return ModelConfig(self.d, self.n_points, self.width, self.layers, self.heads)


def parse_size(text: str, d: int, n_points: int, batch: int) -> Size:
    """``WIDTHxLAYERS[xHEADS]`` at the common d / points / batch, or ``paper`` / ``quick`` (a preset's model,
    d, points and batch, read at run time)."""
    if text in ("paper", "quick"):
        from conjugate.config import resolve_synthetic

        c = resolve_synthetic(text)
        return Size(f"{text}-{c.width}x{c.layers}", c.d, c.n_points, c.pretrain_batch, c.width, c.layers, c.heads)
    try:
        parts = [int(p) for p in text.lower().split("x")]
        width, layers = parts[:2]
        heads = parts[2] if len(parts) > 2 else max(1, width // 32)
    except ValueError:
        fail(f"bad size {text!r}; expected WIDTHxLAYERS[xHEADS], 'paper' or 'quick'")
    if min(width, layers, heads) < 1 or width % heads:
        fail(f"bad size {text!r}: need positive numbers and a width divisible by the heads")
    return Size(f"{width}x{layers}", d, n_points, batch, width, layers, heads)


# ---- the baseline model --------------------------------------------------------------------------------------

class GargModel(nn.Module):
    """Garg et al.'s ``TransformerModel``: GPT-2 backbone, linear read-in and read-out, x-token ``[x]`` and
    y-token ``[y, 0, ..., 0]``, predictions read at the x positions."""

    def __init__(self, size: Size):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        cfg = GPT2Config(n_positions=2 * size.n_points, n_embd=size.width, n_layer=size.layers, n_head=size.heads,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
        self._read_in = nn.Linear(size.d, size.width)
        self._backbone = GPT2Model(cfg)
        self._read_out = nn.Linear(size.width, 1)

    @staticmethod
    def _combine(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        b, n, d = xs.shape
        ys_wide = torch.cat([ys.view(b, n, 1), torch.zeros(b, n, d - 1, device=ys.device, dtype=ys.dtype)], dim=2)
        return torch.stack((xs, ys_wide), dim=2).view(b, 2 * n, d)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        embeds = self._read_in(self._combine(xs, ys))
        h = self._backbone(inputs_embeds=embeds).last_hidden_state
        return self._read_out(h)[:, ::2, 0]

    def used_params(self) -> int:
        """Parameters that take part (the stock config's 50257-token embedding table is never used)."""
        return sum(p.numel() for n, p in self.named_parameters() if "wte" not in n)


# ---- a proposed model change: the last layer only at the x positions ---------------------------------------

class LastLayerAtX(InContextRegressor):
    """Same parameters and outputs as :class:`InContextRegressor`, but the last block computes its attention
    output, projection and MLP only at the x positions, the only ones the read-out uses (keys and values
    still come from every position). Saves about 3/8 of the last block's FLOPs."""

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        n = xs.shape[1]
        h = self.read_in(self.tokens(xs, ys)) + self.pos[: 2 * n]
        for blk in self.blocks[:-1]:
            h = blk(h)
        blk = self.blocks[-1]
        b, t, w = h.shape
        q, k, v = blk.qkv(blk.ln1(h)).view(b, t, 3, blk.heads, w // blk.heads).permute(2, 0, 3, 1, 4)
        allowed = torch.arange(t, device=h.device)[None, :] <= torch.arange(0, t, 2, device=h.device)[:, None]
        a = F.scaled_dot_product_attention(q[:, :, ::2], k, v, attn_mask=allowed)
        hx = h[:, ::2] + blk.proj(a.transpose(1, 2).reshape(b, n, w))
        hx = hx + blk.mlp(blk.ln2(hx))
        return self.read_out(self.ln_f(hx))[..., 0]


# ---- training steps ------------------------------------------------------------------------------------------

def batches(size: Size, device: str, count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator(device="cpu").manual_seed(1234)
    out = []
    for _ in range(count):
        xs = torch.randn(size.batch, size.n_points, size.d, generator=g)
        ws = torch.randn(size.batch, size.d, generator=g)
        ys = torch.einsum("bnd,bd->bn", xs, ws) + 0.5 * torch.randn(size.batch, size.n_points, generator=g)
        out.append((xs.to(device), ys.to(device)))
    return out


def make_step(model: nn.Module, data: list, *, clip: float, amp_bf16: bool = False, fused: bool = False,
              compile_model: bool = False, item_every_step: bool = True, lr: float = 1e-4):
    """One training step closure over ``model`` (forward, MSE loss, backward, optional clip, AdamW step)."""
    device_type = next(model.parameters()).device.type
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=fused or None)
    fwd = torch.compile(model) if compile_model else model
    params = [p for p in model.parameters()]
    state = {"i": 0, "acc": torch.zeros((), device=next(model.parameters()).device)}
    model.train()

    def step() -> None:
        xs, ys = data[state["i"] % len(data)]
        state["i"] += 1
        for group in opt.param_groups:
            group["lr"] = lr
        if amp_bf16:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                pred = fwd(xs, ys)
        else:
            pred = fwd(xs, ys)
        loss = torch.mean((pred.float() - ys) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if item_every_step:
            loss.item()
        else:
            state["acc"] += loss.detach()

    return step


def ours(size: Size, device: str, seed: int = 0, cls: type = InContextRegressor) -> nn.Module:
    torch.manual_seed(seed)
    return cls(size.model_config()).to(device)


def sync_for(device: str):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def counted_flops(size: Size, device: str) -> dict:
    """An independent count of one training step's FLOPs: the matrix products of a forward + backward of ours,
    counted by ``torch.utils.flop_counter`` (mm/addmm/bmm only: it does not count the CPU SDPA kernel), plus
    the attention products counted by hand (QKᵀ and AV, full t × t, forward 4·B·t²·w per layer, backward
    twice that)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = ours(size, device)
    xs, ys = batches(size, device, 1)[0]
    with FlopCounterMode(display=False) as counter:
        torch.mean((model(xs, ys) - ys) ** 2).backward()
    per_op = counter.get_flop_counts().get("Global", {})
    matmuls = float(sum(v for k, v in per_op.items() if str(k).split(".")[-1] in ("mm", "addmm", "bmm")))
    t = 2 * size.n_points
    attention = 3.0 * 4 * size.batch * t * t * size.width * size.layers
    return {"matmuls_torch": matmuls, "attention_hand": attention, "total": matmuls + attention}


def block_for(step, sync, target_s: float, probe: int = 2) -> int:
    """Steps per timed block so that one block lasts about ``target_s`` seconds."""
    sync()
    t0 = time.perf_counter()
    for _ in range(probe):
        step()
    sync()
    return max(1, round(target_s / ((time.perf_counter() - t0) / probe)))


def compare_size(size: Size, device: str, args: argparse.Namespace) -> dict:
    log(f"size {size.name}: ours vs baseline vs matmul")
    sync = sync_for(device)
    data = batches(size, device)
    mine = ours(size, device)
    base = GargModel(size).to(device)
    ours_step = make_step(mine, data, clip=1.0)
    base_step = make_step(base, data, clip=0.0)
    mm, mm_flops = matmul_contestant(args.matmul_width, args.matmul_tokens, device)
    steps = {"ours": ours_step, "baseline": base_step}
    if args.proposed:  # our step with the proposed last-layer change, also against the baseline
        steps["proposed"] = make_step(ours(size, device, cls=LastLayerAtX), data, clip=1.0)
    for fn in (*steps.values(), mm.fn):
        for _ in range(args.warmup):
            fn()
    contestants = {k: Contestant(fn, block=block_for(fn, sync, args.block_seconds)) for k, fn in steps.items()}
    contestants["matmul"] = Contestant(mm.fn, block=block_for(mm.fn, sync, args.block_seconds, probe=1))
    times = interleaved(contestants, repeats=args.repeats, warmup=0, sync=sync)
    mm_rate = mm_flops / statistics.median(times["matmul"]) / 1e9
    flops = mine.flops_per_step(size.batch)
    ours_sps = per_second(times["ours"])
    counted = counted_flops(size, device)
    return {
        "name": size.name, "width": size.width, "layers": size.layers, "heads": size.heads, "d": size.d,
        "n_points": size.n_points, "batch": size.batch,
        "ours_steps_per_s": rounded(ours_sps),
        "baseline_steps_per_s": rounded(per_second(times["baseline"])),
        "ratio": rounded(paired_ratio(times["baseline"], times["ours"])),
        "ours_ms_per_step": rounded(1e3 * statistics.median(times["ours"])),
        "baseline_ms_per_step": rounded(1e3 * statistics.median(times["baseline"])),
        "gflops": rounded(flops * ours_sps / 1e9),
        "matmul_gflops_during": rounded(mm_rate),
        "fraction_of_matmul_peak": rounded(flops * ours_sps / 1e9 / mm_rate, 3),
        "flops_per_step": flops, "flops_counted": counted,
        "flops_formula_over_counted": rounded(flops / counted["total"]),
        "params_ours": mine.num_params(), "params_baseline_used": base.used_params(),
        "params_baseline_total": sum(p.numel() for p in base.parameters()),
        "block_steps": {k: c.block for k, c in contestants.items()}, "repeats": args.repeats,
        "ours_block_ms": [round(1e3 * t, 2) for t in times["ours"]],
        "baseline_block_ms": [round(1e3 * t, 2) for t in times["baseline"]],
        "matmul_block_gflops": [round(mm_flops / t / 1e9, 1) for t in times["matmul"]],
        **({"proposed_last_layer_at_x": {
            "steps_per_s": rounded(per_second(times["proposed"])),
            "ratio_vs_baseline": rounded(paired_ratio(times["baseline"], times["proposed"])),
            "ratio_vs_ours": rounded(paired_ratio(times["ours"], times["proposed"]))}} if "proposed" in times else {}),
        "peak_rss_mb_so_far": rounded(peak_rss_mb()),
    }


# ---- variants (ours vs ours) ---------------------------------------------------------------------------------

CPU_VARIANTS = ["fused_adamw", "threads_1", "flush_denormal", "bf16_autocast", "last_layer_at_x", "compile"]
CUDA_VARIANTS = ["fused_adamw", "no_item_sync", "tf32", "bf16_autocast", "last_layer_at_x", "compile", "bf16_compile",
                 "bf16_compile_fused_noitem"]
ALL_VARIANTS = sorted(set(CPU_VARIANTS + CUDA_VARIANTS))


def _settings(threads: int, flush_denormal: bool, tf32: bool = False):
    def enter() -> None:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(flush_denormal)
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32

    return enter


def variant_contestant(name: str, size: Size, device: str, data: list, threads: int) -> tuple[Contestant, dict]:
    """One variant of our training step, and facts about it (e.g. how far its outputs differ from ours)."""
    extra: dict = {}
    kw: dict = {"clip": 1.0}
    cls = InContextRegressor
    enter = _settings(threads, False)
    if name == "ours":
        pass
    elif name == "fused_adamw":
        kw["fused"] = True
    elif name == "no_item_sync":
        kw["item_every_step"] = False
    elif name == "tf32":
        enter = _settings(threads, False, tf32=True)
    elif name.startswith("threads_") and name[8:].isdigit():
        enter = _settings(int(name[8:]), False)
    elif name == "flush_denormal":
        extra["supported"] = torch.set_flush_denormal(True)
        torch.set_flush_denormal(False)
        enter = _settings(threads, True)
    elif name == "bf16_autocast":
        kw["amp_bf16"] = True
    elif name == "last_layer_at_x":
        cls = LastLayerAtX
        a, b = ours(size, device), ours(size, device, cls=LastLayerAtX)
        xs, ys = data[0]
        with torch.no_grad():
            ref = a(xs, ys)
            extra["max_abs_output_diff"] = float((ref - b(xs, ys)).abs().max())
            extra["max_abs_output"] = float(ref.abs().max())
    elif name in ("compile", "bf16_compile", "bf16_compile_fused_noitem"):
        kw["compile_model"] = True
        kw["amp_bf16"] = name.startswith("bf16")
        if name.endswith("fused_noitem"):
            kw["fused"] = device == "cuda"
            kw["item_every_step"] = False
    else:
        fail(f"unknown variant {name!r}; valid: {', '.join(ALL_VARIANTS)}, threads_N")
    return Contestant(make_step(ours(size, device, cls=cls), data, **kw), enter=enter), extra


def run_variants(names: list[str], size: Size, device: str, args: argparse.Namespace) -> dict:
    """Time ``names`` against our plain step, all interleaved in one group; one result per variant."""
    log(f"variants {', '.join(names)} at {size.name}")
    sync = sync_for(device)
    threads = torch.get_num_threads()
    data = batches(size, device)
    contestants, extras, first, errors = {}, {}, {}, {}
    for name in ["ours", *names]:
        try:
            c, extras[name] = variant_contestant(name, size, device, data, threads)
            c.enter()
            t0 = time.perf_counter()
            c.fn()  # the first step compiles, for the compile variants
            sync()
            first[name] = time.perf_counter() - t0
            log(f"  {name}: first step {first[name]:.1f} s")
            contestants[name] = c
        except Exception as e:  # noqa: BLE001 - one failing variant must not lose the others
            errors[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    _settings(threads, False)()
    block = block_for(contestants["ours"].fn, sync, args.block_seconds)
    for c in contestants.values():
        c.block = block
    times = interleaved(contestants, repeats=args.repeats, warmup=args.warmup, sync=sync)
    _settings(threads, False)()
    out = {}
    rss = rounded(peak_rss_mb())
    for name in names:
        if name in errors:
            out[name] = {"size": size.name, "error": errors[name]}
            continue
        out[name] = {"size": size.name, **extras[name],
                     "steps_per_s": rounded(per_second(times[name])),
                     "ours_steps_per_s": rounded(per_second(times["ours"])),
                     "speedup_vs_ours": rounded(paired_ratio(times["ours"], times[name])),
                     "first_step_seconds": rounded(first[name]), "block_steps": block,
                     "peak_rss_mb_so_far": rss}
    return out


def run_variants_child(names: list[str], size_text: str, args: argparse.Namespace) -> dict:
    """:func:`run_variants` in a child process with a wall-clock cap (for torch.compile)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-variants", ",".join(names),
           "--variant-size", size_text, "--device", args.device, "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--block-seconds", str(args.block_seconds), "--d", str(args.d),
           "--points", str(args.points), "--batch", str(args.batch), "--threads", str(args.threads)]
    t0 = time.perf_counter()
    try:
        log(f"child process for {', '.join(names)} (cap {args.compile_timeout} s)")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=args.compile_timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {n: {"size": size_text, "error": f"did not finish within --compile-timeout {args.compile_timeout} s"}
                for n in names}
    if proc.returncode:
        return {n: {"size": size_text, "error": f"child exited {proc.returncode} (its traceback went to stderr)"}
                for n in names}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for v in out.values():
        v["child_wall_seconds"] = rounded(time.perf_counter() - t0)
    return out


# ---- thread settings: separate processes, since OpenMP reads its environment once -----------------------------

THREAD_SETTINGS = {"default": {}, "omp_wait_passive": {"OMP_WAIT_POLICY": "PASSIVE"},
                   "omp_threads_1": {"OMP_NUM_THREADS": "1"}}


def child_throughput(size: Size, seconds: float, model: str = "ours") -> dict:
    """Milliseconds per step of ours (or the baseline) at ``size`` over about ``seconds`` (after two warm-up
    steps, at least three timed), and the growth of peak RSS from before the model was built."""
    data = batches(size, "cpu")
    rss0 = own_peak_rss_mb()
    if model == "baseline":
        step = make_step(GargModel(size), data, clip=0.0)
    else:
        step = make_step(ours(size, "cpu"), data, clip=1.0)
    step()
    step()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return {"ms_per_step": (time.perf_counter() - t0) / n * 1e3, "steps": n, "threads": torch.get_num_threads(),
            "rss_growth_mb": own_peak_rss_mb() - rss0}


def step_memory(size: Size, args: argparse.Namespace) -> dict:
    """Peak-RSS growth of training ours and the baseline (model, optimiser state, activations, allocator
    caches), each in a fresh child process on the cpu."""
    out = {}
    for model in ("ours", "baseline"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-throughput", "0", "--child-model", model,
               "--variant-size", f"{size.width}x{size.layers}x{size.heads}", "--d", str(size.d),
               "--points", str(size.n_points), "--batch", str(size.batch), "--threads", str(args.threads or 0)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=600, check=False)
        if proc.returncode:
            return {"error": f"child exited {proc.returncode}"}
        out[f"{model}_step_rss_growth_mb"] = rounded(json.loads(proc.stdout.strip().splitlines()[-1])["rss_growth_mb"])
    out["baseline_over_ours"] = rounded(out["baseline_step_rss_growth_mb"] / out["ours_step_rss_growth_mb"])
    return out


def thread_settings_check(size_text: str, args: argparse.Namespace) -> dict:
    """Time ours at one size in child processes under each OpenMP setting, alternating the settings over
    ``--thread-repeats`` rounds; medians per setting and paired speedups over the default."""
    import os

    log(f"thread settings at {size_text}: {', '.join(THREAD_SETTINGS)}")
    ms: dict[str, list[float]] = {k: [] for k in THREAD_SETTINGS}
    names = list(THREAD_SETTINGS)
    for r in range(args.thread_repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child-throughput", str(args.thread_seconds),
                   "--variant-size", size_text, "--d", str(args.d), "--points", str(args.points),
                   "--batch", str(args.batch)]
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**env, **THREAD_SETTINGS[name]},
                                  timeout=600, check=False)
            if proc.returncode:
                return {"error": f"child exited {proc.returncode} under {name}"}
            ms[name].append(json.loads(proc.stdout.strip().splitlines()[-1])["ms_per_step"])
    return {"size": size_text, "env": THREAD_SETTINGS, "seconds_per_run": args.thread_seconds,
            "ms_per_step": {k: rounded(statistics.median(v)) for k, v in ms.items()},
            "runs_ms_per_step": {k: [rounded(x) for x in v] for k, v in ms.items()},
            "speedup_vs_default": {k: rounded(paired_ratio(ms["default"], v)) for k, v in ms.items() if k != "default"}}


# ---- bf16: the error it costs on the quick preset ------------------------------------------------------------

def bf16_quality(steps: int, device: str, seed: int = 0) -> dict:
    """Train the quick preset's model with our recipe (schedule over ``steps``) in fp32 and under bf16 autocast
    from the same init and batches; compare their D_cont error with the mixture-Bayes predictor's."""
    log(f"bf16 quality check: {steps} steps of the quick preset, fp32 and bf16")
    setup = quick_setup()
    out: dict = {"steps": steps, "bayes_mse": rounded(setup.bayes_mse), "preset": "quick"}
    for label, amp in (("fp32", False), ("bf16", True)):
        tr = Trainer(setup, "ours", seed, device, amp_bf16=amp, steps=steps)
        tr.run(steps)
        out[f"{label}_mse"] = rounded(dcont_mse(tr.model, setup, amp_bf16=amp))
        out[f"{label}_train_seconds"] = rounded(tr.seconds)
    out["bf16_over_fp32_mse"] = rounded(out["bf16_mse"] / out["fp32_mse"])
    return out


# ---- main ------------------------------------------------------------------------------------------------------

def _met(checks: list[bool]) -> bool | None:
    return all(checks) if checks else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one line of JSON")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--sizes", default=None, help="comma-separated WIDTHxLAYERSxHEADS or 'paper' "
                    "(default: 128x4x4,256x8x8, plus paper on cuda)")
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per contestant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per contestant first")
    ap.add_argument("--block-seconds", type=float, default=None,
                    help="target length of one timed block (default 2 s on cpu, 0.5 s on cuda)")
    ap.add_argument("--variants", default=None, help="comma-separated variants, 'none' for none "
                    f"(default cpu: {','.join(CPU_VARIANTS)}; cuda: {','.join(CUDA_VARIANTS)})")
    ap.add_argument("--variant-size", default=None, help="size the variants run at (default 256x8x8; cuda: paper)")
    ap.add_argument("--compile-timeout", type=float, default=420.0, help="cap (s) on each torch.compile variant")
    ap.add_argument("--bf16-mse-steps", type=int, default=None,
                    help="steps of the bf16 quality check on the quick preset (0: skip; default cpu 1500, cuda 4000)")
    ap.add_argument("--matmul-width", type=int, default=256)
    ap.add_argument("--no-proposed", dest="proposed", action="store_false",
                    help="skip timing the proposed last-layer change against the baseline")
    ap.add_argument("--thread-check-size", default="quick",
                    help="size of the OpenMP thread-settings check on cpu ('quick': the quick preset's model; "
                         "'none' to skip)")
    ap.add_argument("--thread-repeats", type=int, default=3)
    ap.add_argument("--thread-seconds", type=float, default=4.0, help="timed seconds per child run")
    ap.add_argument("--child-variants", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-throughput", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-model", default="ours", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda requested but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.matmul_tokens = args.batch * 2 * args.points
    if args.block_seconds is None:
        args.block_seconds = 0.5 if args.device == "cuda" else 2.0
    variant_size_text = args.variant_size or ("paper" if args.device == "cuda" else "256x8x8")

    if args.child_throughput is not None:
        size = parse_size(variant_size_text, args.d, args.points, args.batch)
        print(json.dumps(child_throughput(size, args.child_throughput, args.child_model)))
        return
    if args.child_variants:
        size = parse_size(variant_size_text, args.d, args.points, args.batch)
        print(json.dumps(run_variants(args.child_variants.split(","), size, args.device, args)))
        return

    sizes_text = args.sizes or ("128x4x4,256x8x8" + (",paper" if args.device == "cuda" else ""))
    sizes = [parse_size(s.strip(), args.d, args.points, args.batch) for s in sizes_text.split(",") if s.strip()]
    default_variants = CUDA_VARIANTS if args.device == "cuda" else [
        v if v != "threads_1" else f"threads_{1 if torch.get_num_threads() > 1 else 2}" for v in CPU_VARIANTS]
    names = args.variants or ",".join(default_variants)
    chosen = [n.strip() for n in names.split(",") if n.strip()] if names != "none" else []
    for n in chosen:
        if n not in ALL_VARIANTS and not (n.startswith("threads_") and n[8:].isdigit()):
            fail(f"--variants: unknown variant {n!r}; valid: {', '.join(ALL_VARIANTS)}, threads_N, or none")
    vsize = parse_size(variant_size_text, args.d, args.points, args.batch)
    t_start = time.perf_counter()
    result: dict = {"device": args.device, "machine": machine_info(args.device), "threads": torch.get_num_threads()}
    rows = [compare_size(s, args.device, args) for s in sizes]
    if args.device == "cpu":
        for size, row in zip(sizes, rows, strict=True):
            log(f"step memory at {size.name}")
            row["memory"] = step_memory(size, args)
    mm_rates = [r["matmul_gflops_during"] for r in rows]
    result["matmul_gflops"] = rounded(statistics.median(mm_rates))
    result["matmul_shapes"] = (f"fp32 torch.mm, the 12 GEMMs of one {args.matmul_width}-wide block's training step "
                               f"at {args.matmul_tokens} tokens (forward, grad-input, grad-weight of QKV, proj, "
                               "MLP up, MLP down); median of blocks interleaved with the steps of each size")
    bf16_mm, bf16_flops = matmul_contestant(args.matmul_width, args.matmul_tokens, args.device, torch.bfloat16)
    bf16_mm.block = 2
    bt = interleaved({"bf16": bf16_mm}, repeats=3, warmup=1, sync=sync_for(args.device))
    result["matmul_gflops_bf16"] = rounded(bf16_flops / statistics.median(bt["bf16"]) / 1e9)
    result["sizes"] = rows

    variants: dict = {}
    if names != "none":
        eager = [n for n in chosen if "compile" not in n]
        compiled = [n for n in chosen if "compile" in n]
        if eager:
            variants.update(run_variants(eager, vsize, args.device, args))
        if compiled:  # in a child process: inductor's compile can be slow, and the cap must hold
            variants.update(run_variants_child(compiled, variant_size_text, args))
    result["variants"] = variants
    if args.device == "cpu" and args.thread_check_size != "none":
        result["thread_settings"] = thread_settings_check(args.thread_check_size, args)
    steps = args.bf16_mse_steps if args.bf16_mse_steps is not None else (4000 if args.device == "cuda" else 1500)
    result["bf16_mse"] = bf16_quality(steps, args.device) if steps else "not measured (--bf16-mse-steps 0)"
    result["targets"] = {"ratio_min": 1.15, "fraction_of_matmul_peak_min_at_256x8": 0.65,
                         "met_ratio": _met([r["ratio"] >= 1.15 for r in rows if r["name"] in ("128x4", "256x8")]),
                         "met_fraction": _met([r["fraction_of_matmul_peak"] >= 0.65 for r in rows
                                               if r["name"] == "256x8"])}
    result["wall_seconds"] = rounded(time.perf_counter() - t_start)
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "child_variants")}
    emit(result, args.json)


if __name__ == "__main__":
    main()
