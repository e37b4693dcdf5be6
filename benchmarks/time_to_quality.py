"""Time to quality: wall seconds of training until the quick preset's model is within 1.2× of Bayes on D_cont.

Both runs train the quick preset's model (read at run time from ``resolve_synthetic("quick")``: d, points,
K, σ, α, width, layers, heads) from the same initialisation on the same stream of batches from the
pretraining mixture D_α:

* ours: the quick preset's recipe (AdamW, its lr with linear warm-up and cosine decay over its
  ``pretrain_steps`` via ``lr_at``, its batch size, weight decay and gradient clipping);
* baseline: the standard recipe of Garg et al. (Adam, constant lr 1e-4, batch 64, no clipping).

Every ``--eval-every`` steps each model's D_cont error (squared error vs x·w divided by d, mean over
1..n-1 exemplars) is measured on a fixed held-out set of prompts; evaluation time is kept off the training
clock. The target is 1.2 × the error of the mixture-Bayes predictor (prior α) on the same prompts. The two
runs advance in alternating chunks so that the machine's load hits both alike; each stops at the target,
at ``--cap-seconds`` of training, or (ours) at the end of its schedule.

    python benchmarks/time_to_quality.py --json --cap-seconds 300 [--threads 1] [--set pretrain_lr=3e-4]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import QuickSetup, Trainer, dcont_mse, emit, fail, log, machine_info, quick_setup, rounded


def thin(rows: list[list[float]], keep: int = 80) -> list[list[float]]:
    """At most about ``keep`` rows, evenly spaced, always with the last one."""
    if len(rows) <= keep:
        return rows
    stride = -(-len(rows) // keep)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


def race(setup: QuickSetup, cap: float, eval_every: int, seed: int) -> dict:
    target = 1.2 * setup.bayes_mse
    trainers = {"ours": Trainer(setup, "ours", seed), "baseline": Trainer(setup, "baseline", seed)}
    curves = {name: [[0, 0.0, rounded(dcont_mse(tr.model, setup))]] for name, tr in trainers.items()}
    reached: dict[str, tuple[int, float] | None] = {name: None for name in trainers}
    active = list(trainers)
    eval_seconds = 0.0
    turn = 0
    while active:
        order = active if turn % 2 == 0 else active[::-1]
        turn += 1
        for name in list(order):
            tr = trainers[name]
            n = min(eval_every, tr.spec.steps - tr.step)
            tr.run(n)
            t0 = time.perf_counter()
            err = dcont_mse(tr.model, setup)
            eval_seconds += time.perf_counter() - t0
            curves[name].append([tr.step, rounded(tr.seconds), rounded(err)])
            if len(curves[name]) % 10 == 0 or err <= target:
                log(f"{name}: step {tr.step}, {tr.seconds:.1f} s, D_cont error {err:.4f} (target {target:.4f})")
            if err <= target:
                reached[name] = (tr.step, tr.seconds)
            if reached[name] or tr.seconds >= cap or tr.step >= tr.spec.steps:
                active.remove(name)
    out: dict = {}
    for name, tr in trainers.items():
        out[f"{name}_seconds"] = rounded(reached[name][1]) if reached[name] else None
        out[f"{name}_steps"] = reached[name][0] if reached[name] else None
        out[f"{name}_final_mse"] = curves[name][-1][2]
        out[f"{name}_best_mse"] = min(row[2] for row in curves[name])
        out[f"{name}_trained_seconds"] = rounded(tr.seconds)
        out[f"{name}_trained_steps"] = tr.step
        out[f"{name}_steps_per_s"] = rounded(tr.step / tr.seconds) if tr.seconds else None
    o, b = reached["ours"], reached["baseline"]
    out["ratio"] = rounded(b[1] / o[1]) if o and b else None
    out["steps_ratio"] = rounded(b[0] / o[0]) if o and b else None
    if o and not b:  # the baseline never got there: it needs more than the time it trained
        out["ratio_lower_bound"] = rounded(trainers["baseline"].seconds / o[1])
        out["steps_ratio_lower_bound"] = rounded(trainers["baseline"].step / o[0])
    out.update({"bayes_mse": rounded(setup.bayes_mse), "target_mse": rounded(target), "cap_seconds": cap,
                "eval_every": eval_every, "eval_seconds_total": rounded(eval_seconds),
                "curves_step_seconds_mse": {k: thin(v) for k, v in curves.items()}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one line of JSON")
    ap.add_argument("--cap-seconds", type=float, default=300.0, help="training-time cap of each run")
    ap.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    ap.add_argument("--eval-prompts", type=int, default=1000, help="held-out D_cont prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a quick-preset setting for this run (repeatable), e.g. --set pretrain_lr=3e-4")
    args = ap.parse_args()
    from conjugate.config import ConfigError, parse_overrides

    try:
        overrides = parse_overrides(args.overrides)
    except ConfigError as e:
        fail(str(e))
    if args.cap_seconds <= 0 or args.eval_every < 1 or args.eval_prompts < 1:
        fail("need --cap-seconds > 0, --eval-every >= 1 and --eval-prompts >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        setup = quick_setup(args.eval_prompts, overrides=overrides)
    except ConfigError as e:
        fail(str(e))
    c = setup.cfg
    result = race(setup, args.cap_seconds, args.eval_every, args.seed)
    result["targets"] = {"ratio_min": 3.0, "met": bool((result["ratio"] or result.get("ratio_lower_bound") or 0)
                                                       >= 3.0)}
    result["quick_preset"] = {k: getattr(c, k) for k in (
        "d", "n_points", "n_tasks", "sigma", "alpha_pretrain", "width", "layers", "heads", "pretrain_steps",
        "pretrain_batch", "pretrain_lr", "pretrain_warmup", "weight_decay", "grad_clip")}
    result["baseline_recipe"] = {"optimizer": "Adam", "lr": 1e-4, "schedule": "constant", "batch": 64,
                                 "grad_clip": None}
    result["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    result["wall_seconds"] = rounded(time.perf_counter() - t0)
    result["threads"] = torch.get_num_threads()
    result["machine"] = machine_info()
    emit(result, args.json)


if __name__ == "__main__":
    main()
