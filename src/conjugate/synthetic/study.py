"""The synthetic study as one pipeline: pretrain → fine-tune → evaluate → figures and report.

Each stage writes its outputs atomically and a marker when it finishes; rerunning the same command skips
finished stages and resumes an interrupted training stage from its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from .. import share
from ..config import SyntheticConfig, check_seed
from ..runs import RunDir, read_json, write_json
from ..studyrun import start_run
from ..training import StageSpec, finish_stage, train_stage
from . import bayes, plots, shipped, tasks
from . import decomposition as dc
from . import evaluate as ev
from . import threads as thread_policy
from .model import InContextRegressor, ModelConfig, load_model
from .results import (
    CONT_TEST,
    CONT_VAL,
    DISC_TEST,
    AlphaFit,
    BayesEval,
    Dist,
    DistanceRow,
    Evaluation,
    ModelEval,
    Prior,
    PromptSet,
    Reference,
    Split,
    scale_numbers,
)

EVAL_SEED_OFFSET = 1_000_003  # evaluation prompts never share a generator with training batches


def model_config(cfg: SyntheticConfig) -> ModelConfig:
    return ModelConfig(d=cfg.d, n_points=cfg.n_points, width=cfg.width, layers=cfg.layers, heads=cfg.heads)


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
    if stage == "pretrain":
        seed = cfg.pretraining_seed(seed)
        if pretrain_cache is not None:
            return _shared_pretrain(cfg, run, seed, device, Path(pretrain_cache), show_progress, stop_after)
        torch.manual_seed(seed)  # the initialisation
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
        run, cache, share.fields_before(cfg, cfg.NOT_PRETRAINING_KEY), seed, device.type,
        train=lambda: train_model(cfg, run, seed, device, "pretrain", None, show_progress, stop_after),
        load=lambda ckpt: load_model(ckpt, device)[0])


# ---- evaluation ----------------------------------------------------------------------------------------

def eval_sets(cfg: SyntheticConfig, seed: int) -> dict[PromptSet, tasks.Prompts]:
    """Held-out test and validation prompts (float64, CPU), from a generator no training batch uses."""
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed, torch.float64)
    g = tasks.make_generator(seed + EVAL_SEED_OFFSET)
    out = {}
    for split, count in ((Split.TEST, cfg.eval_prompts), (Split.VAL, cfg.val_prompts)):
        for dist, alpha in ((Dist.CONT, 0.0), (Dist.DISC, 1.0)):
            out[PromptSet(dist, split)] = tasks.sample_mixture(count, alpha, w_disc, cfg.n_points, cfg.sigma, g,
                                                               dtype=torch.float64)
    return out


def _curve(x: torch.Tensor) -> list[float]:
    """A curve as JSON numbers, to 6 significant digits (small errors at many exemplars keep their precision)."""
    return [float(f"{float(v):.6g}") for v in x]


def evaluate_models(cfg: SyntheticConfig, models: dict[str, InContextRegressor], seed: int,
                    scales: list[float] | None = None) -> Evaluation:
    """Everything the report shows; :meth:`~conjugate.synthetic.results.Evaluation.to_json` is ``metrics.json``."""
    scales = list(scales or cfg.scales)
    sets = eval_sets(cfg, seed)
    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed, torch.float64)
    terms = {k: bayes.batched_terms(p.xs, p.ys, w_disc, cfg.sigma) for k, p in sets.items()}
    cont = sets[CONT_TEST]

    # Bayes references on the same test prompts
    ref_mse: dict[tuple[Reference, Dist], float] = {}
    ref_curves: dict[tuple[Reference, Dist], list[float]] = {}
    p_disc: dict[Dist, list[float]] = {}
    for dist in Dist:
        p, t = sets[PromptSet(dist, Split.TEST)], terms[PromptSet(dist, Split.TEST)]
        refs = {Reference.RIDGE: t.ridge, Reference.DMMSE: t.dmmse,
                Reference.MIXTURE_PRETRAIN: t.mixture(cfg.alpha_pretrain),
                Reference.MIXTURE_FINETUNE: t.mixture(cfg.alpha_finetune)}
        for ref, pred in refs.items():
            c = ev.error_curve(pred, p)
            ref_curves[(ref, dist)] = _curve(c)
            ref_mse[(ref, dist)] = ev.summary_error(c)
        p_disc[dist] = _curve(t.p_disc(cfg.alpha_pretrain).mean(0))
    # the Bayes predictor's own response to the conjugate transform, for both priors
    scaled: dict[Prior, dict[float, float]] = {}
    for c in scales:
        t = ev.bayes_on_scaled(cont, w_disc, cfg.sigma, c)
        for prior, a in ((Prior.PRETRAIN, cfg.alpha_pretrain), (Prior.FINETUNE, cfg.alpha_finetune)):
            scaled.setdefault(prior, {})[c] = ev.mse(t.mixture(a), cont)

    # models: every distribution × scale, test and validation
    gq = tasks.make_generator(seed + 2 * EVAL_SEED_OFFSET)
    rot = {dist: tasks.random_rotations(len(sets[PromptSet(dist, Split.TEST)].xs), cfg.d, gq) for dist in Dist}
    measured = {}
    for name, model in models.items():
        mse: dict[PromptSet, dict[float, float]] = {}
        rotated: dict[Dist, float] = {}
        curves: dict[tuple[Dist, float], list[float]] = {}
        for dist in Dist:
            for split in Split:
                p = sets[PromptSet(dist, split)]
                for c in scales:
                    curve = ev.error_curve(ev.predict(model, p, scale=c), p)
                    mse.setdefault(PromptSet(dist, split), {})[c] = ev.summary_error(curve)
                    if split is Split.TEST:
                        curves[(dist, c)] = _curve(curve)
            p = tasks.rotate_inputs(sets[PromptSet(dist, Split.TEST)], rot[dist])
            rotated[dist] = ev.mse(ev.predict(model, p), p)
        measured[name] = (mse, rotated, curves)

    # α_eff: the mixture prior that best explains each model's predictions (test prompts of both kinds)
    both = bayes.BayesTerms(*(torch.cat([getattr(terms[CONT_TEST], f), getattr(terms[DISC_TEST], f)])
                              for f in ("ridge", "dmmse", "llr")))
    evals = {}
    for name, model in models.items():
        preds = torch.cat([ev.predict(model, cont), ev.predict(model, sets[DISC_TEST])])
        a, alphas, dist = ev.fit_alpha(preds, both, cfg.alpha_grid)
        # does the transform act on the model as on the Bayes predictor with that α_eff?
        at_alpha = {c: ev.mse(ev.bayes_on_scaled(cont, w_disc, cfg.sigma, c).mixture(a), cont) for c in scales}
        evals[name] = ModelEval(*measured[name], alpha_eff=a,
                                alpha_fit=AlphaFit(_curve(alphas), [float(v) for v in dist]),
                                bayes_at_alpha_eff=at_alpha)

    # distance sweep: tasks w_k + δ, δ ~ N(0, s² I)
    gs = tasks.make_generator(seed + 3 * EVAL_SEED_OFFSET)
    sweep = []
    for s in cfg.distance_spreads:
        p = tasks.sample_near_discrete(cfg.eval_prompts, s, w_disc, cfg.n_points, cfg.sigma, gs, dtype=torch.float64)
        t = bayes.batched_terms(p.xs, p.ys, w_disc, cfg.sigma)
        sweep.append(DistanceRow(s, {name: ev.mse(ev.predict(m, p), p) for name, m in models.items()},
                                 {Reference.RIDGE: ev.mse(t.ridge, p),
                                  Reference.MIXTURE_PRETRAIN: ev.mse(t.mixture(cfg.alpha_pretrain), p),
                                  Reference.MIXTURE_FINETUNE: ev.mse(t.mixture(cfg.alpha_finetune), p)}))
    return Evaluation(list(range(cfg.n_points)), evals, BayesEval(ref_mse, ref_curves, p_disc, scaled), sweep)


def summarise(cfg: SyntheticConfig, preset: str, seed: int, e: Evaluation, seconds: float) -> dict:
    """``summary.json``: the schema of the issue, plus derived forgetting / recovery numbers."""
    pretrained, finetuned = e.models["pretrained"], e.models["finetuned"]
    val = finetuned.mse[CONT_VAL]
    c_star = float(min(val, key=lambda c: (val[c], float(c))))  # chosen on validation prompts only
    pre, fin = pretrained.mse[CONT_TEST][1.0], finetuned.mse[CONT_TEST][1.0]
    conj = finetuned.mse[CONT_TEST][c_star]
    pre_c = pretrained.mse[CONT_TEST][c_star]
    gap = fin - pre
    b = e.bayes.mse
    cont, disc = Dist.CONT, Dist.DISC
    last = _last_exemplar(e, c_star)
    return {
        "preset": preset, "seed": seed, "pretrain_seed": cfg.pretraining_seed(seed), "d": cfg.d,
        "n_points": cfg.n_points,
        "cont_mse": {"pretrained": pre, "finetuned": fin, "finetuned_conjugate": conj},
        "disc_mse": {"pretrained": pretrained.mse[DISC_TEST][1.0], "finetuned": finetuned.mse[DISC_TEST][1.0]},
        "bayes": {"ridge_cont": b[(Reference.RIDGE, cont)],
                  "mixture_pretrain_cont": b[(Reference.MIXTURE_PRETRAIN, cont)],
                  "dmmse_disc": b[(Reference.DMMSE, disc)],
                  "mixture_finetune_cont": b[(Reference.MIXTURE_FINETUNE, cont)],
                  "mixture_pretrain_disc": b[(Reference.MIXTURE_PRETRAIN, disc)],
                  "ridge_disc": b[(Reference.RIDGE, disc)]},
        "conjugate_scale": c_star,
        "implicit_alpha": {name: m.alpha_eff for name, m in e.models.items()},
        "distance_sweep": [{"s": r.s, "pretrained": r.models["pretrained"], "finetuned": r.models["finetuned"],
                            "ridge": r.references[Reference.RIDGE]} for r in e.distance_sweep],
        "seconds": seconds,
        # derived, for reading the result at a glance
        "forgetting_ratio": fin / pre,
        "recovered_fraction": (fin - conj) / gap if gap > 0 else None,
        "pretrained_conjugate_cont": pre_c,
        "recovered_fraction_net": ((fin - conj) - (pre - pre_c)) / gap if gap > 0 else None,
        "rotation_control": {name: {"cont": e.models[name].rotated[cont], "disc": e.models[name].rotated[disc]}
                             for name in ("pretrained", "finetuned")},
        "cont_mse_by_scale": {name: scale_numbers(e.models[name].mse[CONT_TEST])
                              for name in ("pretrained", "finetuned")},
        "bayes_cont_mse_by_scale": e.bayes_scaled_numbers(),
        "last_exemplar": last,
        "learned": dc.learned(
            exemplars=last["exemplars"], disc_last=last["disc"]["pretrained"], ridge_disc_last=last["disc"]["ridge"],
            disc=pretrained.mse[DISC_TEST][1.0], bayes_disc=b[(Reference.MIXTURE_PRETRAIN, disc)],
            cont=pre, bayes_cont=b[(Reference.MIXTURE_PRETRAIN, cont)], cont_last=last["cont"]["pretrained"],
            ridge_cont_last=last["cont"]["ridge"]),
        "decomposition": dc.decomposition(
            pretrained=pre, finetuned=fin, bayes_pretrained=pretrained.bayes_at_alpha_eff[1.0],
            bayes_finetuned=finetuned.bayes_at_alpha_eff[1.0], alpha_pretrained=pretrained.alpha_eff,
            alpha_finetuned=finetuned.alpha_eff,
            residual_pretrained=dc.fit_residual(pretrained.alpha_fit.alphas, pretrained.alpha_fit.distance),
            residual_finetuned=dc.fit_residual(finetuned.alpha_fit.alphas, finetuned.alpha_fit.distance),
            distance_pretrained=min(pretrained.alpha_fit.distance) / cfg.d,
            distance_finetuned=min(finetuned.alpha_fit.distance) / cfg.d,
            scale=c_star, conjugate=conj, bayes_finetuned_conjugate=finetuned.bayes_at_alpha_eff[c_star]),
    }


def _last_exemplar(e: Evaluation, c_star: float) -> dict:
    """Every model's and reference's error at n−1 exemplars (the curves' last point), on the test prompts."""
    models, curves = e.models, e.bayes.curves
    return {
        "exemplars": e.positions[-1],
        "cont": {"pretrained": models["pretrained"].curves[(Dist.CONT, 1.0)][-1],
                 "finetuned": models["finetuned"].curves[(Dist.CONT, 1.0)][-1],
                 "finetuned_conjugate": models["finetuned"].curves[(Dist.CONT, c_star)][-1],
                 "ridge": curves[(Reference.RIDGE, Dist.CONT)][-1],
                 "mixture_pretrain": curves[(Reference.MIXTURE_PRETRAIN, Dist.CONT)][-1]},
        "disc": {"pretrained": models["pretrained"].curves[(Dist.DISC, 1.0)][-1],
                 "finetuned": models["finetuned"].curves[(Dist.DISC, 1.0)][-1],
                 "ridge": curves[(Reference.RIDGE, Dist.DISC)][-1],
                 "dmmse": curves[(Reference.DMMSE, Dist.DISC)][-1],
                 "mixture_pretrain": curves[(Reference.MIXTURE_PRETRAIN, Dist.DISC)][-1]},
    }


def run_synthetic(cfg: SyntheticConfig, out: str | Path, *, preset: str = "custom", seed: int = 0,
                  device: str = "auto", show_progress: bool = True, stop_after: int | None = None,
                  pretrain_cache: str | Path | None = None, from_scratch: bool = False,
                  on_shipped: Callable[[dict], None] | None = None) -> dict:
    """The whole pipeline into ``out``; returns the summary. Finished stages are skipped on rerun.
    ``pretrain_cache``: a folder through which runs of the same pretraining share it (:mod:`conjugate.share`).
    When ``preset`` ships a pretrained checkpoint (:mod:`conjugate.synthetic.shipped`) and ``from_scratch`` is
    false, the run fine-tunes that model instead of pretraining (before the cache is consulted); a checkpoint
    that is damaged or made for other pretraining settings or another seed raises
    :class:`~conjugate.synthetic.shipped.ShippedError` before anything is written. ``on_shipped(record)`` is
    called before fine-tuning when the run's pretrained model is a shipped one (``record``: its
    ``summary["pretrained_from"]``)."""
    thread_policy.env_threads()  # a bad CONJUGATE_THREADS stops here, before the run folder is made
    folder = None if from_scratch else shipped.find(preset)
    if folder is not None and (Path(out) / ".stages" / "pretrain.done").exists():
        folder = None  # the run's pretraining finished before (shipped or not): kept
    if folder is not None:  # checked before the run folder is made
        info = shipped.check(folder, cfg.validate(), check_seed(seed))
    run, dev = start_run(cfg, out, seed, device, pretrain_cache, "synthetic run")
    with run:
        threads = thread_policy.apply(cfg.threads, dev.type)
        if not run.path("config.json").exists():
            run.write_config(cfg.to_dict(), seed, {"preset": preset, "device": str(dev), "threads": threads})
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        if folder is not None and not run.done("pretrain"):
            shipped.install(run, folder, info)
        if on_shipped is not None and run.done("pretrain"):
            origin = shipped.origin(run.stage_info("pretrain"))
            if origin["source"] == "shipped":
                on_shipped(origin)
        pre = train_model(cfg, run, seed, dev, "pretrain", None, show_progress, stop_after,
                          Path(pretrain_cache) if pretrain_cache is not None else None)
        fin = train_model(cfg, run, seed, dev, "finetune", pre, show_progress, stop_after)
        saved = run.outputs("evaluate", "summary.json", "metrics.json")
        if saved is not None:
            summary, metrics_json = saved
        else:
            t_eval = time.perf_counter()
            evaluation = evaluate_models(cfg, {"pretrained": pre, "finetuned": fin}, seed)
            run.mark_done("evaluate", {"seconds": time.perf_counter() - t_eval})
            stage_seconds = sum(read_json(run.path(".stages", f"{s}.done")).get("seconds", 0.0)
                                for s in ("pretrain", "finetune", "evaluate"))
            summary = summarise(cfg, preset, seed, evaluation, stage_seconds)
            summary["throughput"] = {s: {k: read_json(run.path(".stages", f"{s}.done")).get(k)
                                         for k in ("steps_per_s", "tokens_per_s")} for s in ("pretrain", "finetune")}
            marker = read_json(run.path(".stages", "pretrain.done"))
            summary["pretrain_reused"] = "reused_from" in marker
            summary["pretrained_from"] = shipped.origin(marker)
            write_json(run.path("metrics.json"), evaluation.to_json())
            metrics_json = read_json(run.path("metrics.json"))  # the figures read what a rerun reads
        plots.study_figures(run.path("figures"), metrics_json, summary, cfg)
        write_report(run, summary, cfg)
        if saved is None:  # last: a folder with summary.json is a finished run (sweeps skip it)
            write_json(run.path("summary.json"), summary)
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
    ]
    origin = s.get("pretrained_from") or {}
    if origin.get("source") == "shipped":
        lines[-2:-1] = [f"- Wall time: {s['seconds']:.0f} s (fine-tuning and evaluation).",
                        f"- Pretrained model: {shipped.describe(origin).removeprefix('pretrained model: ')}."]
    if s.get("pretrain_seed", s["seed"]) != s["seed"]:
        lines.insert(-1, f"- Pretraining seed {s['pretrain_seed']} (fine-tuning batches and test prompts: seed "
                         f"{s['seed']}).")
    if "learned" in s:  # summaries written before these blocks existed have neither
        lines += ["## Did the pretrained model learn the mixture?", "", *dc.learned_table(s["learned"]), ""]
    if "decomposition" in s:
        lines += ["## Forgetting: suppressed or erased?", "",
                  "Suppression: the part of the D_cont forgetting that the shift of the inferred prior (α_eff) "
                  "produces in the Bayes predictor; erasure: the rest.", "",
                  *dc.decomposition_lines(s["decomposition"]), ""]
    lines += [
        "![loss vs exemplars](figures/loss_vs_exemplars.png)", "",
        "![loss vs scale](figures/loss_vs_scale.png)", "",
        "![alpha_eff](figures/alpha_eff.png)", "",
        "![distance sweep](figures/distance_sweep.png)", "",
    ]
    return atomic_write_text(run.path("report.md"), "\n".join(lines))
