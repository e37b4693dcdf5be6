"""Theory only (SPEC §1, step 6): the study's curves from the exact Bayes predictors, no training."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import SyntheticConfig
from ..runs import RunDir, write_json
from . import bayes, plots, tasks
from . import evaluate as ev


def theory_curves(cfg: SyntheticConfig, alphas: list[float], seed: int = 0) -> dict:
    """For each α: D_cont and D_disc error curves of the mixture-Bayes predictor, mean P(disc | prompt),
    and the D_cont error under conjugate prompting for every scale in ``cfg.scales``."""
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed, torch.float64)
    g = tasks.make_generator(seed)
    pc = tasks.sample_mixture(cfg.eval_prompts, 0.0, w_disc, cfg.n_points, cfg.sigma, g, dtype=torch.float64)
    pd = tasks.sample_mixture(cfg.eval_prompts, 1.0, w_disc, cfg.n_points, cfg.sigma, g, dtype=torch.float64)
    tc = bayes.batched_terms(pc.xs, pc.ys, w_disc, cfg.sigma)
    td = bayes.batched_terms(pd.xs, pd.ys, w_disc, cfg.sigma)
    scaled = {c: ev.bayes_on_scaled(pc, w_disc, cfg.sigma, c) for c in cfg.scales}
    out: dict = {"positions": list(range(cfg.n_points)), "ridge_cont": ev.mse(tc.ridge, pc),
                 "dmmse_disc": ev.mse(td.dmmse, pd), "alphas": {}}
    for a in alphas:
        cc, dc = ev.error_curve(tc.mixture(a), pc), ev.error_curve(td.mixture(a), pd)
        out["alphas"][str(a)] = {
            "cont_mse": ev.summary_error(cc), "disc_mse": ev.summary_error(dc),
            "cont_curve": [float(v) for v in cc], "disc_curve": [float(v) for v in dc],
            "p_disc_cont": [float(v) for v in tc.p_disc(a).mean(0)],
            "p_disc_disc": [float(v) for v in td.p_disc(a).mean(0)],
            "cont_by_scale": {str(c): ev.mse(t.mixture(a), pc) for c, t in scaled.items()},
        }
    return out


def run_theory(cfg: SyntheticConfig, alphas: list[float], out: str | Path, seed: int = 0) -> dict:
    with RunDir(out, "synthetic theory") as run:
        run.write_config(cfg.to_dict(), seed, {"alphas": alphas, "kind": "theory"})
        result = theory_curves(cfg, alphas, seed)
        write_json(run.path("theory.json"), result)
        plots.theory_figure(run.path("figures"), result)
    return result
