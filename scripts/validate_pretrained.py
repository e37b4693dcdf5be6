"""The four "learned" ratios of a pretrained synthetic model on validation prompts (never the study's test
prompts), to choose a preset's settings without looking at what the study reports.

Usage: python scripts/validate_pretrained.py RUN_DIR [RUN_DIR ...]

Reads each run's ``config.json`` (task settings) and ``checkpoints/pretrain.safetensors``; draws 2,000 D_cont
and 2,000 D_disc prompts from generator seed 123 (the study's test prompts come from seed + 1,000,003) and prints
one JSON line per run: the ratios, whether each criterion is met, and the error curves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from conjugate.synthetic import bayes, tasks  # noqa: E402
from conjugate.synthetic import evaluate as ev  # noqa: E402
from conjugate.synthetic.decomposition import LEARNED_THRESHOLDS  # noqa: E402
from conjugate.synthetic.model import load_model  # noqa: E402

VALIDATION_SEED = 123


def ratios(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())["config"]
    d, n, k, s, a = cfg["d"], cfg["n_points"], cfg["n_tasks"], cfg["sigma"], cfg["alpha_pretrain"]
    w = tasks.discrete_tasks(k, d, cfg["task_seed"])
    g = tasks.make_generator(VALIDATION_SEED)
    vc = tasks.sample_mixture(2000, 0.0, w, n, s, g, dtype=torch.float64)
    vd = tasks.sample_mixture(2000, 1.0, w, n, s, g, dtype=torch.float64)
    tc, td = bayes.batched_terms(vc.xs, vc.ys, w, s), bayes.batched_terms(vd.xs, vd.ys, w, s)
    model, _ = load_model(run / "checkpoints" / "pretrain.safetensors")
    cc, cd = ev.error_curve(ev.predict(model, vc), vc), ev.error_curve(ev.predict(model, vd), vd)
    rc, rd = ev.error_curve(tc.ridge, vc), ev.error_curve(td.ridge, vd)
    bc, bd = ev.error_curve(tc.mixture(a), vc), ev.error_curve(td.mixture(a), vd)
    r = {"disc_last_vs_ridge": float(cd[-1] / rd[-1]), "disc_vs_bayes": ev.summary_error(cd) / ev.summary_error(bd),
         "cont_vs_bayes": ev.summary_error(cc) / ev.summary_error(bc), "cont_last_vs_ridge": float(cc[-1] / rc[-1])}
    met = {key: r[key] <= LEARNED_THRESHOLDS[key] for key in r}
    return {"run": str(run), "sigma": s, "pretrain_steps": cfg["pretrain_steps"], **r, "met": met,
            "all_met": all(met.values()), "disc_curve": [round(float(x), 5) for x in cd],
            "cont_curve": [round(float(x), 5) for x in cc]}


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for arg in sys.argv[1:]:
        print(json.dumps(ratios(Path(arg))), flush=True)
