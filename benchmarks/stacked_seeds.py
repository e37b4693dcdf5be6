"""Pretraining S seeds stacked into one batched computation vs S sequential single-seed runs, same process.

The "sequential" arm pretrains each seed as a run does (``torch.manual_seed(seed)``, the model, then
``training.train_stage`` with the preset's pretraining spec and the run's batch sampler); the "stacked" arm
pretrains all S at once with ``conjugate.synthetic.stacked.pretrain_seeds`` (into a temporary share cache).
Both arms run ``--steps`` pretraining steps of ``--preset`` (``pretrain_steps`` is set to it, so the lr schedule
is the one of a ``--steps``-long pretraining), after an untimed warm-up of a few steps of each. Rates are of
the training loops only (``stats["seconds"]``); wall seconds including model set-up and checkpoint writing are
reported beside them. Also reports how far the stacked models are from the sequential ones (max abs
parameter difference; they agree to float tolerance, not bit for bit: see the module's docstring).

    python benchmarks/stacked_seeds.py --json --threads 1 --seeds 5 --steps 200      # quick preset, CPU
    python benchmarks/stacked_seeds.py --json --device cuda --preset paper --seeds 8 --steps 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import emit, fail, log, machine_info, rounded

from conjugate.config import ConfigError, parse_overrides, resolve_synthetic
from conjugate.studyrun import pick_device
from conjugate.synthetic import tasks
from conjugate.synthetic.model import InContextRegressor, load_model
from conjugate.synthetic.stacked import pretrain_seeds
from conjugate.synthetic.study import _stage_spec, model_config
from conjugate.training import train_stage


def sequential(cfg, seeds: list[int], dev: torch.device, root: Path) -> tuple[dict, dict[int, dict]]:
    """Each seed pretrained alone, as ``study.train_model`` does it."""
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed)
    spec = _stage_spec(cfg, "pretrain")
    loop, states = 0.0, {}
    t0 = time.perf_counter()
    for seed in seeds:
        torch.manual_seed(seed)
        model = InContextRegressor(model_config(cfg)).to(dev)

        def sampler(batch: int, gen: torch.Generator) -> tasks.Prompts:
            return tasks.sample_mixture(batch, cfg.alpha_pretrain, w_disc, cfg.n_points, cfg.sigma, gen, device=dev)

        stats = train_stage(model, spec, sampler, seed=seed, workdir=root / f"seed{seed}", device=dev,
                            checkpoint_every=cfg.checkpoint_every, amp_bf16=cfg.amp_bf16 and dev.type == "cuda",
                            show_progress=False)
        loop += stats["seconds"]
        states[seed] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    wall = time.perf_counter() - t0
    rate = len(seeds) * cfg.pretrain_steps / loop
    return {"steps_per_s_per_seed": rate / len(seeds), "steps_per_s_total": rate, "loop_seconds": loop,
            "wall_seconds": wall}, states


def stacked(cfg, seeds: list[int], dev: torch.device, root: Path) -> tuple[dict, dict[int, dict]]:
    t0 = time.perf_counter()
    result = pretrain_seeds(cfg, seeds, root / "cache", dev, show_progress=False)
    wall = time.perf_counter() - t0
    states = {s: load_model(Path(result["entries"][s]) / "pretrain.safetensors")[0].state_dict() for s in seeds}
    return {"steps_per_s_per_seed": result["steps_per_s"], "steps_per_s_total": result["steps_per_s_total"],
            "loop_seconds": result["seconds"], "wall_seconds": wall}, states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--seeds", type=int, default=5, help="S: seeds 0 … S-1")
    ap.add_argument("--steps", type=int, default=200, help="pretraining steps per seed (pretrain_steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the config's threads)")
    ap.add_argument("--warmup-steps", type=int, default=5, help="untimed steps of each arm first")
    ap.add_argument("--set", dest="set_", action="append", default=[], help="key=value config override")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.seeds < 1 or a.steps < 1 or a.threads < 1 or a.warmup_steps < 0:
        fail("--seeds, --steps and --threads must be >= 1, --warmup-steps >= 0")
    try:
        over = {**parse_overrides(a.set_), "pretrain_steps": a.steps, "threads": a.threads}
        cfg = resolve_synthetic(a.preset, over).validate()
        dev = pick_device(a.device)
    except ConfigError as e:
        fail(str(e))
    torch.set_num_threads(a.threads)
    seeds = list(range(a.seeds))
    with tempfile.TemporaryDirectory(prefix="bench-stacked-") as tmp:
        if a.warmup_steps:
            log(f"warm-up: {a.warmup_steps} steps of each arm")
            warm = resolve_synthetic(a.preset, {**over, "pretrain_steps": a.warmup_steps})
            sequential(warm, seeds[:1], dev, Path(tmp) / "warm-seq")
            stacked(warm, seeds, dev, Path(tmp) / "warm-stack")
        log(f"sequential: {a.seeds} single-seed runs of {a.steps} steps")
        seq, seq_states = sequential(cfg, seeds, dev, Path(tmp) / "seq")
        log(f"stacked: {a.seeds} seeds at once, {a.steps} steps")
        stk, stk_states = stacked(cfg, seeds, dev, Path(tmp) / "stack")
    diff = max((stk_states[s][k] - seq_states[s][k]).abs().max().item() for s in seeds for k in seq_states[s])
    close = all(torch.allclose(stk_states[s][k], seq_states[s][k], rtol=1e-4, atol=1e-5)
                for s in seeds for k in seq_states[s])
    emit({"ratio": rounded(stk["steps_per_s_total"] / seq["steps_per_s_total"], 3),
          "sequential": {k: rounded(v) for k, v in seq.items()},
          "stacked": {k: rounded(v) for k, v in stk.items()},
          "max_abs_param_diff": diff, "allclose_rtol1e-4_atol1e-5": close,
          "settings": {"preset": a.preset, "device": str(dev), "seeds": a.seeds, "steps": a.steps,
                       "threads": a.threads, "warmup_steps": a.warmup_steps, "overrides": a.set_,
                       "model": f"{cfg.width}x{cfg.layers}x{cfg.heads}", "batch": cfg.pretrain_batch},
          "machine": machine_info(dev.type)}, a.json)


if __name__ == "__main__":
    main()
