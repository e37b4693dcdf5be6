"""Thread settings on a busy machine: quick-preset pretraining steps/s alone and beside one CPU-bound process.

For each thread setting (the old default: 2 torch threads, OpenMP's default wait policy; the new choice:
whatever ``conjugate synthetic run`` now picks, :mod:`conjugate.synthetic.threads`), a fresh child process
(OpenMP reads its settings once, when torch loads it) runs a short quick-preset pretraining through the study's
own training loop (``conjugate.training.train_stage``: the quick preset's model, batch, learning rate and
sampler), first alone, then beside a "hog": a Python busy loop in a subprocess this script starts, bounded
by its own deadline and killed as soon as the measurement ends. Each child runs ``--warmup`` untimed steps,
then ``--steps`` timed ones; one still running after ``--timeout`` seconds is stopped and measured from the
steps it had logged (``"partial": true``), so a pathologically slow setting costs at most that long.

Prints one JSON object: per setting, steps/s alone and beside the hog and the slowdown (alone / beside); the
new choice's slowdown against the target (≤ 2.5×); and the new choice beside the hog against the old default
alone. The "alone" numbers are only as clean as the machine: other jobs running at the same time count as
load (``load_average_1m`` before each measurement is reported, and ``note`` says so).

    .venv/bin/python benchmarks/threads.py --json              # 1–3 minutes on the 2-core CPU
    .venv/bin/python benchmarks/threads.py --json --variants old,new,2-passive,1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TARGET_SLOWDOWN = 2.5
LOG_EVERY = 10  # a child that runs out of time is measured from its last log row
HOG_CODE = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"

# name -> (torch threads or None for the study's own choice, OMP_WAIT_POLICY or None for OpenMP's default)
VARIANTS: dict[str, tuple[int | None, str | None]] = {
    "old": (2, None),  # the old default: torch's 2 threads on this machine, active (spinning) waits
    "new": (None, None),  # what `conjugate synthetic run` now chooses (conjugate.synthetic.threads)
    "1": (1, None),
    "2-passive": (2, "PASSIVE"),
}


def child(steps: int, warmup: int, threads: int | None, workdir: Path) -> dict:
    """Runs in the child process: the thread setting, then ``warmup`` + ``steps`` quick-preset steps."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from conjugate.synthetic import threads as policy

    if threads is None:
        policy.prepare_openmp()  # as the CLI does, before torch is imported
    import dataclasses

    import torch

    from conjugate.config import resolve_synthetic
    from conjugate.synthetic import tasks
    from conjugate.synthetic.model import InContextRegressor
    from conjugate.synthetic.study import _stage_spec, model_config
    from conjugate.training import train_stage

    if threads is None:
        rec = policy.apply(0, "cpu")
    else:
        torch.set_num_threads(threads)
        rec = policy.record("benchmark", f"{threads} threads")
    cfg = resolve_synthetic("quick")
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed)

    def sampler(batch: int, gen: torch.Generator) -> tasks.Prompts:
        return tasks.sample_mixture(batch, cfg.alpha_pretrain, w_disc, cfg.n_points, cfg.sigma, gen)

    torch.manual_seed(0)
    model = InContextRegressor(model_config(cfg))
    out = {"settings": rec}
    (workdir / "started").write_text(repr(time.time()))  # a child that runs out of time is measured from here
    for name, n in (("warmup", warmup), ("timed", steps)):
        spec = dataclasses.replace(_stage_spec(cfg, "pretrain"), steps=n)
        stats = train_stage(model, spec, sampler, seed=0, workdir=workdir / name, checkpoint_every=10**9,
                            log_every=LOG_EVERY, show_progress=False)
        model.train()
        out[name] = {"steps": stats["steps"], "seconds": round(stats["seconds"], 3),
                     "steps_per_s": round(stats["steps_per_s"], 2)}
    return out


def partial(workdir: Path, deadline: float) -> dict:
    """What a child stopped at wall-clock time ``deadline`` got through: from its timed stage's last log row
    (one every LOG_EVERY steps) its rate; without one, an upper bound — it had not logged the next row, so
    fewer than ``next row's steps / seconds since training started`` steps per second."""
    log, started = workdir / "timed" / "train_log.jsonl", workdir / "started"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    if rows and rows[-1].get("elapsed"):
        last = rows[-1]
        return {"steps": last["step"], "seconds": last["elapsed"],
                "steps_per_s": round(last["step"] / last["elapsed"], 2), "partial": True}
    if not started.exists():
        return {}
    warm = workdir / "warmup" / "train_log.jsonl"
    warm_rows = [json.loads(line) for line in warm.read_text().splitlines() if line.strip()] if warm.exists() else []
    done = warm_rows[-1]["step"] if warm_rows else 0  # warm-up steps logged so far (none of the timed stage)
    seconds = deadline - float(started.read_text())
    return {"steps_per_s_below": round((done + LOG_EVERY) / seconds, 3) if seconds > 0 else None,
            "seconds": round(seconds, 1), "partial": True}


def measure(variant: str, beside_hog: bool, args: argparse.Namespace) -> dict:
    threads, wait = VARIANTS[variant]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                              "CONJUGATE_THREADS")}
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", "auto" if threads is None else str(threads)]
    load = os.getloadavg()[0]
    hog = None
    if beside_hog:
        hog = subprocess.Popen([sys.executable, "-c", HOG_CODE.format(limit=args.timeout)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let it get going
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run([*cmd, "--workdir", tmp], env=env, capture_output=True, text=True,
                                  timeout=args.timeout, check=False)
        except subprocess.TimeoutExpired:
            got = partial(Path(tmp), time.time())
            return {"error": f"timed out after {args.timeout} s", "load_average_1m": round(load, 2),
                    **({"timed": got} if got else {})}
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"],
                "load_average_1m": load}
    return {**json.loads(done.stdout), "load_average_1m": round(load, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100, help="timed pretraining steps per measurement")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--variants", default="old,new", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--timeout", type=int, default=60, help="seconds a measurement (and the hog) may last")
    ap.add_argument("--json", action="store_true", help="one line of JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps, args.warmup, None if args.threads == "auto" else int(args.threads),
                               Path(args.workdir))))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or args.steps < 1 or args.warmup < 0 or args.timeout < 1:
        print(f"error: unknown variant(s) {bad} (valid: {', '.join(VARIANTS)})" if bad
              else "error: --steps and --timeout must be ≥ 1, --warmup ≥ 0", file=sys.stderr)
        raise SystemExit(2)
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    for v in variants:
        alone, hog = measure(v, False, args), measure(v, True, args)
        row = {"alone": alone, "beside_hog": hog}
        a, h = alone.get("timed", {}).get("steps_per_s"), hog.get("timed", {}).get("steps_per_s")
        row["alone_steps_per_s"], row["beside_hog_steps_per_s"] = a, h
        row["slowdown_beside_hog"] = round(a / h, 2) if a and h else None
        below = hog.get("timed", {}).get("steps_per_s_below")
        if h is None and a and below:  # it timed out before logging a timed step: only bounds are known
            row["beside_hog_steps_per_s_below"] = below
            row["slowdown_beside_hog_above"] = round(a / below, 2)
        results[v] = row
        print(f"{v}: alone {a} steps/s, beside a hog {h} steps/s", file=sys.stderr, flush=True)
    out: dict = {"benchmark": "threads", "preset": "quick", "stage": "pretrain", "steps": args.steps,
                 "warmup": args.warmup, "cpus": os.cpu_count(), "variants": results}
    new, old = results.get("new", {}), results.get("old", {})
    if new.get("slowdown_beside_hog") is not None:
        out["target"] = {"new_beside_hog_vs_new_alone_max": TARGET_SLOWDOWN,
                         "new_beside_hog_vs_new_alone": new["slowdown_beside_hog"],
                         "met": new["slowdown_beside_hog"] <= TARGET_SLOWDOWN}
        if old.get("alone_steps_per_s"):
            out["target"]["new_beside_hog_vs_old_alone"] = round(old["alone_steps_per_s"]
                                                                 / new["beside_hog_steps_per_s"], 2)
    if new.get("beside_hog_steps_per_s") and old.get("beside_hog_steps_per_s"):
        out["new_vs_old_beside_hog_speedup"] = round(new["beside_hog_steps_per_s"] / old["beside_hog_steps_per_s"], 2)
    elif new.get("beside_hog_steps_per_s") and old.get("beside_hog_steps_per_s_below"):
        out["new_vs_old_beside_hog_speedup_above"] = round(new["beside_hog_steps_per_s"]
                                                           / old["beside_hog_steps_per_s_below"], 1)
    out["note"] = ("'alone' means no hog of ours; other jobs on the machine during the measurement count as load "
                   "(see load_average_1m), so 'alone' is not a clean single-job number when the machine is shared")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
