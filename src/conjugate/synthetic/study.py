"""The synthetic study as one pipeline: pretrain → fine-tune → evaluate → figures and report.

Each stage writes its outputs atomically and a marker when it finishes; rerunning the same command skips
finished stages and resumes an interrupted training stage from its last checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .. import share
from ..config import ConfigError, SyntheticConfig, check_seed
from ..runs import RunDir, StateError, read_json, write_json
from . import bayes, plots, tasks
from . import evaluate as ev
from .model import InContextRegressor, ModelConfig
from .train import StageSpec, finish_stage, load_model, train_stage

EVAL_SEED_OFFSET = 1_000_003  # evaluation prompts never share a generator with training batches


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    return torch.device(device)


def model_config(cfg: SyntheticConfig) -> ModelConfig:
    return ModelConfig(d=cfg.d, n_points=cfg.n_points, width=cfg.width, layers=cfg.layers, heads=cfg.heads)


def start_run(cfg: Any, out: str | Path, seed: int, device: str, pretrain_cache: str | Path | None,
              command: str) -> tuple[RunDir, torch.device]:
    """What every study's run does first: validate the config (a dataclass with ``validate``, ``to_dict`` and
    ``threads``), the seed and the cache path, pick the device, set torch's threads, and open (and lock) the
    run folder for ``command``, refusing one that holds a run with another config or seed. The caller closes
    the folder (``with run:``)."""
    cfg.validate()
    check_seed(seed)
    share.check_cache_path(pretrain_cache)
    dev = pick_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = RunDir(out, command)
    try:
        path = run.path("config.json")
        if path.exists():
            try:
                old = read_json(path)
            except StateError as e:
                raise StateError(f"{e}; delete the folder {run.root} to start again, or choose another --out") from None
            if old.get("config") != cfg.to_dict() or old.get("seed") != seed:
                raise ConfigError(f"{run.root} already holds a run with a different config or seed; "
                                  "use a new --out (or delete the folder)")
    except BaseException:
        run.close()
        raise
    return run, dev


def _stage_spec(cfg: SyntheticConfig, stage: str) -> StageSpec:
    p = "pretrain" if stage == "pretrain" else "finetune"
    return StageSpec(stage, getattr(cfg, f"{p}_steps"), getattr(cfg, f"{p}_batch"), getattr(cfg, f"{p}_lr"),
                     getattr(cfg, f"{p}_warmup"), cfg.weight_decay, cfg.grad_clip)


def train_model(cfg: SyntheticConfig, run: RunDir, seed: int, device: torch.device, stage: str,
                init: InContextRegressor | None, show_progress: bool = True,
                stop_after: int | None = None, pretrain_cache: Path | None = None) -> InContextRegressor:
    """Run (or resume, or skip) one training stage and return its model. With ``pretrain_cache``, pretraining
    is taken from (or published to) that folder, shared with every run of the same pretraining
    (:mod:`conjugate.share`)."""
    ckpt = run.finished_checkpoint(stage, run.path("checkpoints", f"{stage}.safetensors"))
    if ckpt is not None:
        return load_model(ckpt, device)[0]
    if stage == "pretrain" and pretrain_cache is not None:
        return _shared_pretrain(cfg, run, seed, device, Path(pretrain_cache), show_progress, stop_after)
    model = InContextRegressor(model_config(cfg))
    if init is not None:
        model.load_state_dict(init.state_dict())
    model.to(device)
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed)
    alpha = cfg.alpha_pretrain if stage == "pretrain" else cfg.alpha_finetune

    def sampler(batch: int, gen: torch.Generator) -> tasks.Prompts:
        return tasks.sample_mixture(batch, alpha, w_disc, cfg.n_points, cfg.sigma, gen, device=device)

    spec = _stage_spec(cfg, stage)
    use_amp = cfg.amp_bf16 and device.type == "cuda"
    stats = train_stage(model, spec, sampler, seed=seed, workdir=run.root, device=device,
                        checkpoint_every=cfg.checkpoint_every, compile_model=cfg.compile and device.type == "cuda",
                        amp_bf16=use_amp, show_progress=show_progress, stop_after=stop_after)
    path = finish_stage(model, spec, run.root, {"stage": stage, "seed": seed, "alpha": alpha})
    run.mark_done(stage, stats, checkpoint=path)
    return model


def _shared_pretrain(cfg: SyntheticConfig, run: RunDir, seed: int, device: torch.device, cache: Path,
                     show_progress: bool, stop_after: int | None) -> InContextRegressor:
    return share.shared_stage(
        run, cache, share.fields_before(cfg, cfg.AFTER_PRETRAINING), seed, device.type,
        train=lambda: train_model(cfg, run, seed, device, "pretrain", None, show_progress, stop_after),
        load=lambda ckpt: load_model(ckpt, device)[0])


# ---- evaluation ----------------------------------------------------------------------------------------

def eval_sets(cfg: SyntheticConfig, seed: int) -> dict[str, tasks.Prompts]:
    """Held-out test and validation prompts (float64, CPU), from a generator no training batch uses."""
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed, torch.float64)
    g = tasks.make_generator(seed + EVAL_SEED_OFFSET)
    out = {}
    for split, count in (("test", cfg.eval_prompts), ("val", cfg.val_prompts)):
        for name, alpha in (("cont", 0.0), ("disc", 1.0)):
            out[f"{name}_{split}"] = tasks.sample_mixture(count, alpha, w_disc, cfg.n_points, cfg.sigma, g,
                                                          dtype=torch.float64)
    return out


def _curve(x: torch.Tensor) -> list[float]:
    return [round(float(v), 6) for v in x]


def evaluate_models(cfg: SyntheticConfig, models: dict[str, InContextRegressor], seed: int,
                    scales: list[float] | None = None) -> tuple[dict, dict]:
    """Everything the report shows. Returns ``(summary_numbers, metrics)``."""
    scales = list(scales or cfg.scales)
    sets = eval_sets(cfg, seed)
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed, torch.float64)
    terms = {k: bayes.batched_terms(p.xs, p.ys, w_disc, cfg.sigma) for k, p in sets.items()}
    metrics: dict = {"positions": list(range(cfg.n_points)), "curves": {}, "bayes_curves": {}}
    num: dict = {"mse": {}, "bayes": {}}

    # Bayes references on the same test prompts
    for dist in ("cont", "disc"):
        p, t = sets[f"{dist}_test"], terms[f"{dist}_test"]
        refs = {"ridge": t.ridge, "dmmse": t.dmmse, "mixture_pretrain": t.mixture(cfg.alpha_pretrain),
                "mixture_finetune": t.mixture(cfg.alpha_finetune)}
        for name, pred in refs.items():
            c = ev.error_curve(pred, p)
            metrics["bayes_curves"][f"{name}/{dist}"] = _curve(c)
            num["bayes"][f"{name}_{dist}"] = ev.summary_error(c)
        metrics["bayes_curves"][f"p_disc_pretrain/{dist}"] = _curve(t.p_disc(cfg.alpha_pretrain).mean(0))
    # the Bayes predictor's own response to the conjugate transform, for both priors
    num["bayes_scaled"] = {}
    for c in scales:
        t = ev.bayes_on_scaled(sets["cont_test"], w_disc, cfg.sigma, c)
        for tag, a in (("pretrain", cfg.alpha_pretrain), ("finetune", cfg.alpha_finetune)):
            num["bayes_scaled"].setdefault(tag, {})[str(c)] = ev.mse(t.mixture(a), sets["cont_test"])

    # models: every distribution × scale, test and validation
    gq = tasks.make_generator(seed + 2 * EVAL_SEED_OFFSET)
    rot = {dist: tasks.random_rotations(len(sets[f"{dist}_test"].xs), cfg.d, gq) for dist in ("cont", "disc")}
    for name, model in models.items():
        for dist in ("cont", "disc"):
            for split in ("test", "val"):
                p = sets[f"{dist}_{split}"]
                for c in scales:
                    curve = ev.error_curve(ev.predict(model, p, scale=c), p)
                    num["mse"].setdefault(name, {}).setdefault(f"{dist}_{split}", {})[str(c)] = ev.summary_error(curve)
                    if split == "test":
                        metrics["curves"][f"{name}/{dist}/c={c}"] = _curve(curve)
            p = tasks.rotate_inputs(sets[f"{dist}_test"], rot[dist])
            num["mse"][name][f"{dist}_rotated"] = ev.mse(ev.predict(model, p), p)

    # α_eff: the mixture prior that best explains each model's predictions (test prompts of both kinds)
    both = bayes.BayesTerms(*(torch.cat([getattr(terms["cont_test"], f), getattr(terms["disc_test"], f)])
                              for f in ("ridge", "dmmse", "llr")))
    num["alpha_eff"], metrics["alpha_fit"] = {}, {}
    for name, model in models.items():
        preds = torch.cat([ev.predict(model, sets["cont_test"]), ev.predict(model, sets["disc_test"])])
        a, alphas, dist = ev.fit_alpha(preds, both, cfg.alpha_grid)
        num["alpha_eff"][name] = a
        metrics["alpha_fit"][name] = {"alphas": _curve(alphas), "distance": [float(v) for v in dist]}
        # does the transform act on the model as on the Bayes predictor with that α_eff?
        for c in scales:
            t = ev.bayes_on_scaled(sets["cont_test"], w_disc, cfg.sigma, c)
            num["bayes_scaled"].setdefault(f"alpha_eff_{name}", {})[str(c)] = ev.mse(t.mixture(a), sets["cont_test"])

    # distance sweep: tasks w_k + δ, δ ~ N(0, s² I)
    gs = tasks.make_generator(seed + 3 * EVAL_SEED_OFFSET)
    sweep = []
    for s in cfg.distance_spreads:
        p = tasks.sample_near_discrete(cfg.eval_prompts, s, w_disc, cfg.n_points, cfg.sigma, gs, dtype=torch.float64)
        t = bayes.batched_terms(p.xs, p.ys, w_disc, cfg.sigma)
        row = {"s": s, **{name: ev.mse(ev.predict(m, p), p) for name, m in models.items()},
               "ridge": ev.mse(t.ridge, p), "mixture_pretrain": ev.mse(t.mixture(cfg.alpha_pretrain), p),
               "mixture_finetune": ev.mse(t.mixture(cfg.alpha_finetune), p)}
        sweep.append(row)
    num["distance_sweep"] = sweep
    return num, metrics


def summarise(cfg: SyntheticConfig, preset: str, seed: int, num: dict, seconds: float) -> dict:
    """``summary.json``: the schema of the issue, plus derived forgetting / recovery numbers."""
    m = num["mse"]
    val = m["finetuned"]["cont_val"]
    c_star = float(min(val, key=lambda c: (val[c], float(c))))  # chosen on validation prompts only
    pre, fin = m["pretrained"]["cont_test"]["1.0"], m["finetuned"]["cont_test"]["1.0"]
    conj = m["finetuned"]["cont_test"][str(c_star)]
    pre_c = m["pretrained"]["cont_test"][str(c_star)]
    gap = fin - pre
    return {
        "preset": preset, "seed": seed, "d": cfg.d, "n_points": cfg.n_points,
        "cont_mse": {"pretrained": pre, "finetuned": fin, "finetuned_conjugate": conj},
        "disc_mse": {"pretrained": m["pretrained"]["disc_test"]["1.0"],
                     "finetuned": m["finetuned"]["disc_test"]["1.0"]},
        "bayes": {"ridge_cont": num["bayes"]["ridge_cont"],
                  "mixture_pretrain_cont": num["bayes"]["mixture_pretrain_cont"],
                  "dmmse_disc": num["bayes"]["dmmse_disc"],
                  "mixture_finetune_cont": num["bayes"]["mixture_finetune_cont"],
                  "mixture_pretrain_disc": num["bayes"]["mixture_pretrain_disc"],
                  "ridge_disc": num["bayes"]["ridge_disc"]},
        "conjugate_scale": c_star,
        "implicit_alpha": num["alpha_eff"],
        "distance_sweep": [{k: r[k] for k in ("s", "pretrained", "finetuned", "ridge")} for r in num["distance_sweep"]],
        "seconds": seconds,
        # derived, for reading the result at a glance
        "forgetting_ratio": fin / pre,
        "recovered_fraction": (fin - conj) / gap if gap > 0 else None,
        "pretrained_conjugate_cont": pre_c,
        "recovered_fraction_net": ((fin - conj) - (pre - pre_c)) / gap if gap > 0 else None,
        "rotation_control": {name: {"cont": m[name]["cont_rotated"], "disc": m[name]["disc_rotated"]}
                             for name in ("pretrained", "finetuned")},
        "cont_mse_by_scale": {name: m[name]["cont_test"] for name in ("pretrained", "finetuned")},
        "bayes_cont_mse_by_scale": num["bayes_scaled"],
    }


def run_synthetic(cfg: SyntheticConfig, out: str | Path, *, preset: str = "custom", seed: int = 0,
                  device: str = "auto", show_progress: bool = True, stop_after: int | None = None,
                  pretrain_cache: str | Path | None = None) -> dict:
    """The whole pipeline into ``out``; returns the summary. Finished stages are skipped on rerun.
    ``pretrain_cache``: a folder through which runs of the same pretraining share it (:mod:`conjugate.share`)."""
    run, dev = start_run(cfg, out, seed, device, pretrain_cache, "synthetic run")
    with run:
        if not run.path("config.json").exists():
            run.write_config(cfg.to_dict(), seed, {"preset": preset, "device": str(dev)})
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        pre = train_model(cfg, run, seed, dev, "pretrain", None, show_progress, stop_after,
                          Path(pretrain_cache) if pretrain_cache is not None else None)
        fin = train_model(cfg, run, seed, dev, "finetune", pre, show_progress, stop_after)
        saved = run.outputs("evaluate", "summary.json", "metrics.json")
        if saved is not None:
            summary, metrics_json = saved
        else:
            t_eval = time.perf_counter()
            num, metrics = evaluate_models(cfg, {"pretrained": pre, "finetuned": fin}, seed)
            run.mark_done("evaluate", {"seconds": time.perf_counter() - t_eval})
            stage_seconds = sum(read_json(run.path(".stages", f"{s}.done")).get("seconds", 0.0)
                                for s in ("pretrain", "finetune", "evaluate"))
            summary = summarise(cfg, preset, seed, num, stage_seconds)
            summary["throughput"] = {s: {k: read_json(run.path(".stages", f"{s}.done")).get(k)
                                         for k in ("steps_per_s", "tokens_per_s")} for s in ("pretrain", "finetune")}
            summary["pretrain_reused"] = "reused_from" in read_json(run.path(".stages", "pretrain.done"))
            write_json(run.path("metrics.json"), {"numbers": num, **metrics})
            write_json(run.path("summary.json"), summary)
            metrics_json = read_json(run.path("metrics.json"))  # the figures read what a rerun reads
        plots.study_figures(run.path("figures"), metrics_json, summary, cfg)
        write_report(run, summary, cfg)
        summary["wall_seconds_this_call"] = time.perf_counter() - t0
        return summary


def write_report(run: RunDir, s: dict, cfg: SyntheticConfig) -> Path:
    from ..runs import atomic_write_text

    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    pct = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    lines = [
        f"# Synthetic study — preset `{s['preset']}`, seed {s['seed']}", "",
        f"d = {cfg.d}, {cfg.n_points} points, K = {cfg.n_tasks}, σ = {cfg.sigma}, "
        f"α pretrain = {cfg.alpha_pretrain}, α fine-tune = {cfg.alpha_finetune}; model {cfg.width} wide × "
        f"{cfg.layers} layers × {cfg.heads} heads; {cfg.pretrain_steps} pretraining and {cfg.finetune_steps} "
        f"fine-tuning steps. Errors: squared error against x·w divided by d, mean over 1…{cfg.n_points - 1} "
        f"exemplars, {cfg.eval_prompts} held-out prompts per distribution.", "",
        "| | D_cont | D_disc |", "|---|---|---|",
        f"| pretrained | {f(s['cont_mse']['pretrained'])} | {f(s['disc_mse']['pretrained'])} |",
        f"| fine-tuned | {f(s['cont_mse']['finetuned'])} | {f(s['disc_mse']['finetuned'])} |",
        f"| fine-tuned, conjugate (labels × {s['conjugate_scale']:g}, chosen on validation) | "
        f"{f(s['cont_mse']['finetuned_conjugate'])} | |",
        f"| Bayes, mixture α = {cfg.alpha_pretrain} | {f(s['bayes']['mixture_pretrain_cont'])} | "
        f"{f(s['bayes']['mixture_pretrain_disc'])} |",
        f"| ridge | {f(s['bayes']['ridge_cont'])} | {f(s['bayes']['ridge_disc'])} |",
        f"| dMMSE | | {f(s['bayes']['dmmse_disc'])} |", "",
        f"- Forgetting: fine-tuned / pretrained D_cont error = **{s['forgetting_ratio']:.2f}×**.",
        f"- Recovery by conjugate prompting: **{pct(s['recovered_fraction'])}** of the forgetting gap; net of what "
        f"the same scale does to the pretrained model ({f(s['pretrained_conjugate_cont'])}): "
        f"{pct(s['recovered_fraction_net'])}.",
        f"- Implicit inference: α_eff pretrained = {s['implicit_alpha']['pretrained']:.3f}, fine-tuned = "
        f"{s['implicit_alpha']['finetuned']:.3f}.",
        f"- Rotation control (D_cont / D_disc): pretrained {f(s['rotation_control']['pretrained']['cont'])} / "
        f"{f(s['rotation_control']['pretrained']['disc'])}, fine-tuned {f(s['rotation_control']['finetuned']['cont'])}"
        f" / {f(s['rotation_control']['finetuned']['disc'])}.",
        f"- Wall time: {s['seconds']:.0f} s.", "",
        "![loss vs exemplars](figures/loss_vs_exemplars.png)", "",
        "![loss vs scale](figures/loss_vs_scale.png)", "",
        "![alpha_eff](figures/alpha_eff.png)", "",
        "![distance sweep](figures/distance_sweep.png)", "",
    ]
    return atomic_write_text(run.path("report.md"), "\n".join(lines))
