"""Wall time of a fine-tuning grid with and without shared pretraining, in the same process and machine state.

Both arms run the same sweep (``conjugate.sweep.run_sweep``, local engine, one run at a time): the quick preset
with fewer pretraining steps and prompts (so the benchmark takes minutes), a grid over ``finetune_steps``, one
or more seeds. The "share" arm trains each seed's pretrained model once (``SWEEP/pretrained/``); the "alone"
arm, ``share_pretraining=False``, trains it in every run. The arms alternate (alone, share, alone, share ...)
so slow drift in machine load hits both. Also checks that both arms give identical numbers.

    python benchmarks/shared_pretraining.py --json            # ~6 min on the 2-core CPU (3 runs per sweep)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import emit, fail, log, machine_info, rounded
from rich.console import Console

from conjugate.config import ConfigError
from conjugate.sweep import EngineOptions, plan_sweep, run_sweep

SKIP = {"seconds", "throughput", "pretrain_reused", "wall_seconds_this_call"}


def one_sweep(out: Path, grid: str, seeds: str, overrides: list[str], threads: int, share: bool) -> float:
    plan = plan_sweep("synthetic", "quick", seeds, [grid], overrides)
    opts = EngineOptions("local", None, 1, threads, 0.0, share)
    t0 = time.perf_counter()
    outcome = run_sweep(plan, out, opts, Console(quiet=True))
    seconds = time.perf_counter() - t0
    if outcome.failed:
        fail(f"a run failed: {outcome.failed[0].get('error')}")
    return seconds


def numbers(out: Path) -> dict[str, dict]:
    return {p.name: {k: v for k, v in json.loads((p / "summary.json").read_text()).items() if k not in SKIP}
            for p in sorted((out / "runs").iterdir())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="finetune_steps=100,300,1000")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--pretrain-steps", type=int, default=2000)
    ap.add_argument("--eval-prompts", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run")
    ap.add_argument("--repeats", type=int, default=1, help="sweeps per arm (alternating)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.pretrain_steps < 1 or a.eval_prompts < 1 or a.threads < 1 or a.repeats < 1:
        fail("--pretrain-steps, --eval-prompts, --threads and --repeats must be >= 1")
    overrides = [f"pretrain_steps={a.pretrain_steps}", f"eval_prompts={a.eval_prompts}",
                 f"val_prompts={a.eval_prompts}"]
    try:
        plan = plan_sweep("synthetic", "quick", a.seeds, [a.grid], overrides)
    except ConfigError as e:
        fail(str(e))
    times: dict[str, list[float]] = {"alone": [], "share": []}
    same = True
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        for r in range(a.repeats):
            outs = {}
            for arm in ("alone", "share"):
                out = Path(tmp) / f"{arm}-{r}"
                log(f"round {r + 1}/{a.repeats}: {arm}")
                times[arm].append(one_sweep(out, a.grid, a.seeds, overrides, a.threads, arm == "share"))
                outs[arm] = out
            same = same and numbers(outs["alone"]) == numbers(outs["share"])
            for out in outs.values():
                shutil.rmtree(out)
    alone, share = statistics.median(times["alone"]), statistics.median(times["share"])
    emit({"speedup": rounded(alone / share, 3), "alone_seconds": rounded(alone), "share_seconds": rounded(share),
          "identical_numbers": same, "runs_per_sweep": len(plan.points()) * len(plan.seeds),
          "runs_seconds": {k: [rounded(t) for t in v] for k, v in times.items()},
          "settings": {"grid": a.grid, "seeds": a.seeds, "pretrain_steps": a.pretrain_steps,
                       "eval_prompts": a.eval_prompts, "threads": a.threads, "repeats": a.repeats},
          "machine": machine_info()}, a.json)


if __name__ == "__main__":
    main()
