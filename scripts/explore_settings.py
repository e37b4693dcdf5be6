"""Settings exploration for the quick preset: pretrain once, fine-tune variants, report forgetting/recovery.

Uses its own validation prompts (generator seeds 123/456), never the study's test prompts (the study draws
those from seed + 1,000,003). One JSON line per stage. Example (the round-2 winner, R4):

  PYTHONPATH=src python scripts/explore_settings.py '{"tag":"R4","d":4,"n":12,"K":4,"sigma":0.25,"a_pt":0.5,
    "w":64,"L":3,"H":2,"steps":4000,"batch":64,"warmup":300,"threads":2,"lr":1e-3,"clip":1.0,
    "ft":[{"a":1.0,"lr":3e-5,"checkpoints":[50,150,400]}]}'
"""
import copy
import json
import sys
import tempfile
import time

import torch

sys.path.insert(0, "src")
from conjugate import training as tr
from conjugate.synthetic import bayes, tasks
from conjugate.synthetic import evaluate as ev
from conjugate.synthetic.model import InContextRegressor, ModelConfig

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg.get("threads", 2))
dev = cfg.get("device", "cpu")
d, n, K, s = cfg["d"], cfg["n"], cfg["K"], cfg["sigma"]
W = tasks.discrete_tasks(K, d, 1)
def sets(seed):
    g = tasks.make_generator(seed)
    pc = tasks.sample_mixture(1500, 0.0, W, n, s, g, dtype=torch.float64)
    pd = tasks.sample_mixture(1500, 1.0, W, n, s, g, dtype=torch.float64)
    return pc, pd
(pc, pd), (vc, vd) = sets(123), sets(456)
tc, td = bayes.batched_terms(pc.xs, pc.ys, W, s), bayes.batched_terms(pd.xs, pd.ys, W, s)
both = bayes.BayesTerms(*(torch.cat([getattr(tc, f), getattr(td, f)]) for f in ("ridge", "dmmse", "llr")))
a_pt = cfg["a_pt"]
out = {"cfg": cfg, "bayes": {"cont": ev.mse(tc.mixture(a_pt), pc), "disc": ev.mse(td.mixture(a_pt), pd),
       "ridge_cont": ev.mse(tc.ridge, pc), "ridge_disc": ev.mse(td.ridge, pd), "dmmse": ev.mse(td.dmmse, pd)}}
CS = cfg.get("cs", [1.25, 1.5, 2.0, 3.0])
def evaluate(model):
    r = {"cont": ev.mse(ev.predict(model, pc), pc), "disc": ev.mse(ev.predict(model, pd), pd)}
    r["cont_c"] = {c: ev.mse(ev.predict(model, pc, scale=c), pc) for c in CS}
    r["val_c"] = {c: ev.mse(ev.predict(model, vc, scale=c), vc) for c in [1.0] + CS}
    r["alpha"] = ev.fit_alpha(torch.cat([ev.predict(model, pc), ev.predict(model, pd)]), both, 101)[0]
    return r
def sampler(alpha):
    return lambda b, g: tasks.sample_mixture(b, alpha, W, n, s, g, device=dev)
model = InContextRegressor(ModelConfig(d=d, n_points=n, width=cfg["w"], layers=cfg["L"], heads=cfg["H"])).to(dev)
t0 = time.time()
spec = tr.StageSpec("pretrain", cfg["steps"], cfg.get("batch", 64), cfg.get("lr", 1e-3), cfg.get("warmup", 500),
                    grad_clip=cfg.get("clip", 1.0))
st = tr.train_stage(model, spec, sampler(a_pt), seed=cfg.get("seed", 0), workdir=tempfile.mkdtemp(), device=dev,
                    show_progress=False, checkpoint_every=10**9)
out["pretrain_s"] = time.time() - t0
out["steps_per_s"] = st["steps_per_s"]
out["pt"] = pt = evaluate(model)
print(json.dumps({"tag": cfg.get("tag"), "stage": "pt", **out}), flush=True)
for ft in cfg.get("ft", [{"a": 1.0, "lr": 3e-5}]):
    m, done, res = copy.deepcopy(model), 0, []
    for target in ft.get("checkpoints", [100, 200, 400, 800, 1600]):
        fspec = tr.StageSpec("finetune", target - done, 64, ft["lr"], 0)
        # constant lr (cosine over each segment would restart); approximate with warmup=0 and decay to 10%
        tr.train_stage(m, fspec, sampler(ft["a"]), seed=cfg.get("seed", 0) + target, workdir=tempfile.mkdtemp(),
                       device=dev, show_progress=False, checkpoint_every=10**9)
        done = target
        r = evaluate(m)
        cstar = min(r["val_c"], key=r["val_c"].get)
        conj = r["cont"] if cstar == 1.0 else r["cont_c"][cstar]
        gap = r["cont"] - pt["cont"]
        pt_c = pt["cont"] if cstar == 1.0 else pt["cont_c"][cstar]
        net = (r["cont"] - conj - (pt["cont"] - pt_c)) / gap if gap > 0 else None
        res.append({"steps": target, "cont": r["cont"], "disc": r["disc"], "ratio": r["cont"] / pt["cont"],
                    "cstar": cstar, "conj": conj, "rec": (r["cont"] - conj) / gap if gap > 0 else None, "rec_net": net,
                    "alpha": r["alpha"], "cont_c": r["cont_c"]})
        print(json.dumps({"tag": cfg.get("tag"), "stage": "ft", "ft": ft, **res[-1]}), flush=True)
