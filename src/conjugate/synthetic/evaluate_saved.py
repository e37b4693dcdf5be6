"""Evaluate a saved model checkpoint on fresh prompts at several label scales (``conjugate synthetic eval``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import ConfigError, SyntheticConfig, resolve_synthetic
from ..runs import RunDir, read_json, write_json
from . import bayes, tasks
from . import evaluate as ev
from .model import load_model


def config_for_checkpoint(checkpoint: Path, preset: str, overrides: dict) -> SyntheticConfig:
    """The task settings the checkpoint was trained with (its run's ``config.json``), else the preset's;
    overrides applied last."""
    cfg_file = Path(checkpoint).resolve().parent.parent / "config.json"
    if cfg_file.exists():
        base = read_json(cfg_file)["config"]
        cfg = SyntheticConfig(**{**base, **overrides}).validate()
    else:
        cfg = resolve_synthetic(preset, overrides)
    return cfg


def evaluate_checkpoint(checkpoint: str | Path, out: str | Path, scales: list[float], preset: str = "quick",
                        overrides: dict | None = None, seed: int = 0) -> dict:
    checkpoint = Path(checkpoint)
    if any(not c > 0 for c in scales):
        raise ConfigError(f"scales must be > 0 (the label scale c), got {scales}")
    model, meta = load_model(checkpoint)
    cfg = config_for_checkpoint(checkpoint, preset, overrides or {})
    if model.cfg.d != cfg.d:
        raise ConfigError(f"{checkpoint}: the model has d={model.cfg.d} but the evaluation config has d={cfg.d}")
    if model.cfg.n_points < cfg.n_points:
        raise ConfigError(f"{checkpoint}: the model reads at most {model.cfg.n_points} points but the evaluation "
                          f"config has n_points={cfg.n_points}")
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed, torch.float64)
    g = tasks.make_generator(seed)
    sets = {name: tasks.sample_mixture(cfg.eval_prompts, a, w_disc, cfg.n_points, cfg.sigma, g, dtype=torch.float64)
            for name, a in (("cont", 0.0), ("disc", 1.0))}
    result: dict = {"checkpoint": str(checkpoint), "checkpoint_meta": meta, "mse": {}, "curves": {}, "bayes": {}}
    for c in scales:
        result["mse"][str(c)] = {}
        for name, p in sets.items():
            curve = ev.error_curve(ev.predict(model, p, scale=c), p)
            result["mse"][str(c)][name] = ev.summary_error(curve)
            result["curves"][f"{name}/c={c}"] = [float(v) for v in curve]
    for name, p in sets.items():
        t = bayes.batched_terms(p.xs, p.ys, w_disc, cfg.sigma)
        result["bayes"][name] = {"ridge": ev.mse(t.ridge, p), "dmmse": ev.mse(t.dmmse, p),
                                 "mixture_pretrain": ev.mse(t.mixture(cfg.alpha_pretrain), p)}
    with RunDir(out, "synthetic eval") as run:
        run.write_config(dataclasses.asdict(cfg), seed, {"checkpoint": str(checkpoint), "scales": scales})
        write_json(run.path("eval.json"), result)
    return result
