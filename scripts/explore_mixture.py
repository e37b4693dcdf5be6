"""Why does the small model not learn the α = 0.5 mixture? Train one setting and print the four "learned"
ratios on validation prompts every ``every`` steps (one JSON line each).

Validation prompts come from generator seed 123 (never the study's test prompts, which are drawn from
seed + 1,000,003). Settings are the quick preset's unless the JSON argument overrides them:

  steps, batch, lr, warmup, clip, width, layers, heads, seed, every, threads; task settings d, n_points,
  n_tasks, sigma, alpha_pretrain
  weight:  "none" (the study's loss) or "position" (each position's squared error divided by mixture-Bayes's
           expected loss there, measured once on 20,000 training-distribution prompts)
  alpha_start, alpha_frac: curriculum over the mixture weight: α goes linearly from alpha_start to
           alpha_pretrain over the first alpha_frac of the steps (then stays)
  save:    path to write the final model (safetensors, the study's format)

Example: PYTHONPATH=src python scripts/explore_mixture.py '{"tag":"base40k","steps":40000,"every":4000}'
The results of the exploration are in docs/mixture-exploration.jsonl and docs/synthetic-settings.md.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from conjugate import training as tr  # noqa: E402
from conjugate.config import SyntheticConfig  # noqa: E402
from conjugate.synthetic import bayes, tasks  # noqa: E402
from conjugate.synthetic import evaluate as ev  # noqa: E402
from conjugate.synthetic.model import InContextRegressor, ModelConfig  # noqa: E402

arg = json.loads(sys.argv[1])
base = SyntheticConfig()
torch.set_num_threads(arg.get("threads", 1))
d, n, K = arg.get("d", base.d), arg.get("n_points", base.n_points), arg.get("n_tasks", base.n_tasks)
s, a_pt = arg.get("sigma", base.sigma), arg.get("alpha_pretrain", base.alpha_pretrain)
W = tasks.discrete_tasks(K, d, base.task_seed)
steps, every = arg.get("steps", base.pretrain_steps), arg.get("every", 2000)

g = tasks.make_generator(123)
vc = tasks.sample_mixture(2000, 0.0, W, n, s, g, dtype=torch.float64)
vd = tasks.sample_mixture(2000, 1.0, W, n, s, g, dtype=torch.float64)
tc, td = bayes.batched_terms(vc.xs, vc.ys, W, s), bayes.batched_terms(vd.xs, vd.ys, W, s)
ref = {"ridge_c": ev.error_curve(tc.ridge, vc), "ridge_d": ev.error_curve(td.ridge, vd),
       "bayes_c": ev.error_curve(tc.mixture(a_pt), vc), "bayes_d": ev.error_curve(td.mixture(a_pt), vd)}

weights = None
if arg.get("weight", "none") == "position":
    gw = tasks.make_generator(789)
    pw = tasks.sample_mixture(20000, a_pt, W, n, s, gw, dtype=torch.float64)
    tw = bayes.batched_terms(pw.xs, pw.ys, W, s)
    per_pos = ((tw.mixture(a_pt) - pw.ys) ** 2).mean(0)  # expected loss of the Bayes predictor per position
    weights = (1.0 / per_pos).float()
    weights = weights / weights.mean()


def loss_fn(forward, batch):
    err = (forward(batch.xs, batch.ys).float() - batch.ys) ** 2
    return torch.mean(err * weights) if weights is not None else torch.mean(err)


calls = {"n": 0}
a0, frac = arg.get("alpha_start", a_pt), arg.get("alpha_frac", 0.0)


def sampler(b, gen):
    step = calls["n"]
    calls["n"] += 1
    t = min(1.0, step / max(1, frac * steps)) if frac else 1.0
    return tasks.sample_mixture(b, a0 + (a_pt - a0) * t, W, n, s, gen)


def learned(model) -> dict:
    cc, cd = ev.error_curve(ev.predict(model, vc), vc), ev.error_curve(ev.predict(model, vd), vd)
    r = {"disc_last_vs_ridge": float(cd[-1] / ref["ridge_d"][-1]),
         "disc_vs_bayes": ev.summary_error(cd) / ev.summary_error(ref["bayes_d"]),
         "cont_vs_bayes": ev.summary_error(cc) / ev.summary_error(ref["bayes_c"]),
         "cont_last_vs_ridge": float(cc[-1] / ref["ridge_c"][-1])}
    r["met"] = (r["disc_last_vs_ridge"] <= 0.3 and r["disc_vs_bayes"] <= 2 and r["cont_vs_bayes"] <= 1.15
                and r["cont_last_vs_ridge"] <= 1.5)
    r["disc_curve"] = [round(float(x), 5) for x in cd]
    r["cont_curve"] = [round(float(x), 5) for x in cc]
    return r


model = InContextRegressor(ModelConfig(d=d, n_points=n, width=arg.get("width", base.width),
                                       layers=arg.get("layers", base.layers), heads=arg.get("heads", base.heads)))
spec = tr.StageSpec("pretrain", steps, arg.get("batch", base.pretrain_batch), arg.get("lr", base.pretrain_lr),
                    arg.get("warmup", base.pretrain_warmup), grad_clip=arg.get("clip", base.grad_clip))
work, t0, done = tempfile.mkdtemp(), time.time(), 0
print(json.dumps({"tag": arg.get("tag"), "cfg": arg, "ref_last": {k: float(v[-1]) for k, v in ref.items()}}),
      flush=True)
while True:
    try:
        tr.train_stage(model, spec, sampler, seed=arg.get("seed", 0), workdir=work, show_progress=False,
                       checkpoint_every=10**9, stop_after=every, loss_fn=loss_fn)
        done = steps
    except tr.Interrupted:
        done += every
    row = {"tag": arg.get("tag"), "step": done, "seconds": round(time.time() - t0, 1), **learned(model)}
    print(json.dumps(row), flush=True)
    if done >= steps:
        break
if arg.get("save"):
    tr.save_model(arg["save"], model, {"config": {**ModelConfig(d=d, n_points=n, width=model.cfg.width,
                                                                layers=model.cfg.layers,
                                                                heads=model.cfg.heads).to_dict()}})
