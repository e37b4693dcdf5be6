"""Throughput of the paper-size model (256 wide x 12 layers x 8 heads, d=8, 16 points, batch 128) on a CUDA GPU:
eager fp32 vs bf16 autocast vs bf16 autocast + torch.compile. Prints one JSON object.

Usage: PYTHONPATH=src python benchmarks/gpu_throughput.py   (needs a CUDA device)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from conjugate.synthetic import tasks  # noqa: E402
from conjugate.synthetic.model import InContextRegressor, ModelConfig  # noqa: E402

BATCH, WARMUP, STEPS = 128, 30, 300


def measure(amp: bool, compiled: bool, w_disc: torch.Tensor) -> dict:
    model = InContextRegressor(ModelConfig(d=8, n_points=16, width=256, layers=12, heads=8)).to("cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    fwd = torch.compile(model) if compiled else model
    g = tasks.make_generator(0, "cuda")

    def step() -> None:
        b = tasks.sample_mixture(BATCH, 0.2, w_disc, 16, 0.5, g, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            pred = fwd(b.xs, b.ys)
        loss = ((pred.float() - b.ys) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    warm = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"steps_per_s": STEPS / dt, "warmup_s": warm, "tflops": model.flops_per_step(BATCH) * STEPS / dt / 1e12}


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("gpu_throughput.py needs a CUDA device")
    w_disc = tasks.discrete_tasks(64, 8, 1)
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    for name, amp, compiled in (("eager_fp32", False, False), ("eager_bf16", True, False),
                                ("compiled_bf16", True, True)):
        res[name] = measure(amp, compiled, w_disc)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
