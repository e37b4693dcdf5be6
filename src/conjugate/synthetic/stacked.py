"""Pretraining several seeds of the synthetic study in one process, as one batched computation.

One small model cannot fill a GPU (the paper preset runs at ~34 steps/s per seed on one), so a study of S seeds
spends most of its time in S pretrainings that each leave the device mostly idle. :func:`pretrain_seeds` builds
the S models exactly as a single run builds its own (``torch.manual_seed(seed)``, then the model), stacks their
parameters (``torch.func.stack_module_state``) and trains them together: one forward and backward per step,
``torch.vmap`` of ``torch.func.functional_call`` over the stacked parameters, on a batch made of every seed's
own batch (drawn from ``step_generator(seed, "pretrain", step, device)``: seed k sees exactly the batches a
single run of seed k sees). The rest of a step is what :func:`conjugate.training.train_stage` does, per seed:
the same learning-rate schedule (:func:`~conjugate.training.lr_at`), one AdamW with the same settings over the
stacked tensors (its update is element-wise, so it is S AdamWs), and gradient clipping of each seed's gradient
norm on its own (what ``clip_grad_norm_`` does, done by hand along the stacking axis).

At the end each seed's model is unstacked and published to the shared-pretraining cache (:mod:`conjugate.share`)
under the key a single run of that seed would look up, as the checkpoint :func:`~conjugate.training.finish_stage`
writes; ``conjugate synthetic run --pretrain-cache CACHE`` or ``conjugate sweep synthetic`` (whose cache is
``OUT/pretrained``) then fine-tune and evaluate each seed from it instead of pretraining. Seeds whose entry
exists are skipped. While it trains it holds the locks of all its entries (taken in name order), so a run that
needs one of them meanwhile waits and then takes it.

The stacked state is checkpointed (safetensors, atomically) every ``checkpoint_every`` steps to
``WORKDIR/checkpoints/stacked.resume.safetensors`` (default ``WORKDIR``: ``CACHE/.stacked-<hash>`` of the
pretraining settings, seeds and device type); rerunning the same call resumes and ends bit-for-bit like an
uninterrupted call. Ctrl-C finishes the step in flight, checkpoints and raises
:class:`~conjugate.training.Interrupted`. A seed whose loss becomes NaN stops all of them
(:class:`~conjugate.training.Diverged`).

Stacked and single-seed pretraining agree to float tolerance, not bit for bit: under ``vmap`` a linear layer is
one batched matrix product over the seeds instead of one product per seed, which sums in another order (forward
outputs differ in the last bit, ~3e-8), and training amplifies such differences, as it does any change of
summation order under Adam; the gradient-norm sums differ likewise. In float32 the parameters agree to ~1e-6
after 30 smoke-preset steps, but differ by up to ~7e-4 (abs) after 200 quick-preset steps; in float64 the same
comparison agrees to ~1e-11: the computation is the same. (On the CPU, torch has no ``vmap`` rule for its
attention kernel and runs it once per seed, which is exact but slower.) ``compile`` is not applied to the
stacked step; ``amp_bf16`` is, on CUDA, as in a single run.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import share
from ..config import SyntheticConfig, check_seed
from ..runs import StateError, append_jsonl, atomic_write_text, read_jsonl, sha256_file, write_json
from ..studyrun import pick_device
from ..training import (
    Diverged,
    Interrupted,
    StageSpec,
    _atomic_safetensors,
    _read_safetensors,
    _sigint_flag,
    lr_at,
    restore_optimizer,
    save_model,
    step_generator,
)
from . import tasks
from . import threads as thread_policy
from .model import InContextRegressor
from .study import _stage_spec, model_config

STAGE = "pretrain"
LOG_EVERY = 50
RESUME_NAME = "stacked.resume.safetensors"
CHECKPOINT_NAME = f"{STAGE}.safetensors"  # what a single run writes and what share.fetch copies
_NO_BATCH_RULE = "There is a performance drop because we have not yet implemented the batching rule"

Stacked = dict[str, torch.Tensor]  # parameter name -> (S, *shape)


# ---- identities ----------------------------------------------------------------------------------------

def pretraining_seeds(cfg: SyntheticConfig, seeds: list[int]) -> list[int]:
    """The distinct pretraining seeds of runs of ``seeds`` (``cfg.pretraining_seed``), sorted: the stack."""
    return sorted({cfg.pretraining_seed(check_seed(s, "seeds: each seed")) for s in seeds})


def entry_keys(cfg: SyntheticConfig, pseeds: list[int], device_type: str) -> dict[int, tuple[str, dict[str, Any]]]:
    """Each pretraining seed's cache entry name and identity, as a single run computes them."""
    fields = share.fields_before(cfg, cfg.NOT_PRETRAINING_KEY)
    return {s: share.entry_key(fields, s, device_type) for s in pseeds}


def stack_ident(cfg: SyntheticConfig, pseeds: list[int], device_type: str) -> tuple[str, dict[str, Any]]:
    """The identity of a stacked pretraining (settings, seeds, device type) and its 16-hex digest."""
    ident = {"fields": share.fields_before(cfg, cfg.NOT_PRETRAINING_KEY), "seeds": sorted(pseeds),
             "device": device_type}
    ident = json.loads(json.dumps(ident))  # as JSON stores it
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16], ident


def default_workdir(cache: Path, cfg: SyntheticConfig, pseeds: list[int], device_type: str) -> Path:
    return Path(cache) / f".stacked-{stack_ident(cfg, pseeds, device_type)[0]}"


# ---- models --------------------------------------------------------------------------------------------

def init_models(cfg: SyntheticConfig, pseeds: list[int], device: torch.device) -> list[InContextRegressor]:
    """One freshly initialised model per pretraining seed, exactly as a single run initialises its own."""
    models = []
    for seed in pseeds:
        torch.manual_seed(seed)
        models.append(InContextRegressor(model_config(cfg)).to(device))
    return models


def unstack(cfg: SyntheticConfig, params: Stacked, index: int) -> InContextRegressor:
    """Model ``index`` of the stack, as an ordinary (CPU) model."""
    model = InContextRegressor(model_config(cfg))
    model.load_state_dict({k: v[index].detach().cpu() for k, v in params.items()})
    return model


# ---- resume checkpoints --------------------------------------------------------------------------------

def _save_resume(path: Path, params: Stacked, opt: torch.optim.Optimizer, step: int, elapsed: float,
                 digest: str, pseeds: list[int]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in params.items()}
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for name, val in st.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(val).detach().cpu().contiguous()
    header = {"step": str(step), "elapsed": repr(elapsed), "param_groups": json.dumps(osd["param_groups"]),
              "stack": digest, "seeds": json.dumps(pseeds)}
    _atomic_safetensors(path, tensors, header)


def resume_seeds(path: Path) -> list[int]:
    """The pretraining seeds a stacked resume checkpoint holds."""
    _, header = _read_safetensors(path, "stacked resume")
    try:
        return [int(s) for s in json.loads(header["seeds"])]
    except (KeyError, TypeError, ValueError) as e:
        raise StateError(f"{path}: not a stacked resume checkpoint ({e}); delete it to restart") from None


def _load_resume(path: Path, params: Stacked, opt: torch.optim.Optimizer, digest: str) -> tuple[int, float]:
    tensors, header = _read_safetensors(path, "stacked resume")
    try:
        if header.get("stack") != digest:
            raise ValueError("it was written for other settings, seeds or device")
        saved = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        if set(saved) != set(params):
            raise ValueError("its parameters are not this model's")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(saved[k])  # shape mismatch raises RuntimeError
        return restore_optimizer(opt, tensors, header)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise StateError(f"{path}: not a resume checkpoint of this stacked pretraining ({e}); delete it to "
                         "restart") from None


# ---- one step ------------------------------------------------------------------------------------------

def clip_per_model(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` of each model of the stack on its own (axis 0 of every gradient):
    the total 2-norm of each model's gradients, every gradient scaled by ``min(1, max_norm / (norm + 1e-6))``
    of its model. Returns the (S,) norms before clipping."""
    s = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(s, -1), 2, dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, 2, dim=1)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(s, *([1] * (g.dim() - 1))).to(g.dtype))
    return total


def _train(cfg: SyntheticConfig, pseeds: list[int], dev: torch.device, workdir: Path, show_progress: bool,
           stop_after: int | None) -> tuple[Stacked, dict[str, Any]]:
    """Train (or resume) the stack of ``pseeds``; returns the stacked parameters and this call's statistics."""
    digest, _ = stack_ident(cfg, pseeds, dev.type)
    spec: StageSpec = _stage_spec(cfg, STAGE)
    n_models = len(pseeds)
    models = init_models(cfg, pseeds, dev)
    params, buffers = torch.func.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    base.train()
    del models
    opt = torch.optim.AdamW(list(params.values()), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.999))
    resume_path = workdir / "checkpoints" / RESUME_NAME
    log_path = workdir / "train_log.jsonl"
    start, elapsed = 0, 0.0
    if resume_path.exists():
        start, elapsed = _load_resume(resume_path, params, opt, digest)
    rows = list(read_jsonl(log_path))
    kept = [r for r in rows if r.get("step", 0) <= start]
    if len(kept) != len(rows):
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in kept))

    w_disc = tasks.discrete_tasks(cfg.n_tasks, cfg.d, cfg.task_seed)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        ps = [tasks.sample_mixture(spec.batch, cfg.alpha_pretrain, w_disc, cfg.n_points, cfg.sigma,
                                   step_generator(seed, STAGE, step, dev), device=dev) for seed in pseeds]
        return torch.stack([p.xs for p in ps]), torch.stack([p.ys for p in ps])

    def forward(p: Stacked, b: Stacked, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(base, (p, b), (xs, ys))

    stacked_forward = torch.vmap(forward)
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.amp_bf16 and dev.type == "cuda"
                else contextlib.nullcontext())
    grads_of = list(params.values())
    t0, steps_run, rows = time.perf_counter(), 0, []
    loss_acc, loss_n = [0.0] * n_models, 0
    progress = Progress(TextColumn(f"[bold]{STAGE} ×{n_models}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"),
                        TextColumn("mean loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        disable=not show_progress, transient=False)
    with _sigint_flag() as flag, progress, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NO_BATCH_RULE)  # CPU attention: run per seed, see above
        task = progress.add_task(STAGE, total=spec.steps, completed=start, loss=float("nan"))
        step = start
        while step < spec.steps:
            lr = lr_at(step, spec)
            for group in opt.param_groups:
                group["lr"] = lr
            xs, ys = batches(step)
            with autocast:
                pred = stacked_forward(params, buffers, xs, ys)
            losses = torch.mean((pred.float() - ys) ** 2, dim=(1, 2))  # each seed's mse_loss
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()  # seed k's parameters get the gradient of seed k's loss only
            if spec.grad_clip:
                clip_per_model([p.grad for p in grads_of], spec.grad_clip)
            opt.step()
            step += 1
            steps_run += 1
            values = losses.detach().tolist()
            bad = [s for s, v in zip(pseeds, values, strict=True) if not math.isfinite(v)]
            if bad:  # nothing of this step is checkpointed
                raise Diverged(f"stacked {STAGE} diverged at step {step}/{spec.steps} for seed(s) {bad} (losses "
                               f"{values}); lower its learning rate ({spec.lr:g}) and use a new cache folder")
            loss_acc = [a + v for a, v in zip(loss_acc, values, strict=True)]
            loss_n += 1
            if step % LOG_EVERY == 0 or step == spec.steps:
                now = elapsed + time.perf_counter() - t0
                mean = [a / loss_n for a in loss_acc]
                rows.append({"stage": STAGE, "step": step, "loss": dict(zip(map(str, pseeds), mean, strict=True)),
                             "lr": lr, "elapsed": round(now, 3)})
                progress.update(task, completed=step, loss=sum(mean) / n_models)
                loss_acc, loss_n = [0.0] * n_models, 0
            interrupted = flag["stop"] or (stop_after is not None and steps_run >= stop_after)
            if step % cfg.checkpoint_every == 0 or interrupted or step == spec.steps:
                append_jsonl(log_path, rows)
                rows = []
                _save_resume(resume_path, params, opt, step, elapsed + time.perf_counter() - t0, digest, pseeds)
            if interrupted and step < spec.steps:
                raise Interrupted(f"stacked {STAGE} of seeds {pseeds} stopped at step {step}/{spec.steps}; rerun "
                                  "to resume")
    seconds = time.perf_counter() - t0
    rate = steps_run / seconds if seconds else 0.0
    tokens = spec.batch * 2 * cfg.n_points
    stats = {"stage": STAGE, "steps": steps_run, "seconds": seconds, "steps_per_s": rate,
             "tokens_per_s": rate * tokens, "train_seconds_total": elapsed + seconds,
             "stacked": n_models, "stacked_seeds": pseeds, "steps_per_s_total": rate * n_models,
             "tokens_per_s_total": rate * tokens * n_models}
    return {k: v.detach() for k, v in params.items()}, stats


# ---- the whole call ------------------------------------------------------------------------------------

def pretrain_seeds(cfg: SyntheticConfig, seeds: list[int], cache: Path, device: str | torch.device = "auto",
                   show_progress: bool = True, stop_after: int | None = None,
                   workdir: Path | None = None) -> dict[str, Any]:
    """Pretrain the runs ``seeds`` of ``cfg`` as one stack and publish each to the share cache ``cache``.

    ``seeds`` are run seeds (``--seed``); each stands for ``cfg.pretraining_seed(seed)``, so with
    ``pretrain_seed`` set they are all one pretraining. Seeds whose entry exists are skipped; when all exist
    nothing is trained. ``stop_after`` (tests) simulates an interruption after that many steps. Returns what
    was done: ``trained`` and ``skipped`` pretraining seeds, ``entries`` (pretraining seed -> entry folder),
    ``workdir`` and the throughput statistics of the steps run in this call (``steps_per_s`` per seed,
    ``steps_per_s_total`` over all of them, ``stacked``: S)."""
    cfg.validate()
    if not seeds:
        raise ValueError("pretrain_seeds: no seeds")
    pseeds = pretraining_seeds(cfg, seeds)
    cache = Path(cache)
    share.check_cache_path(cache)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    thread_policy.apply(cfg.threads, dev.type)
    keys = entry_keys(cfg, pseeds, dev.type)
    workdir = Path(workdir) if workdir is not None else default_workdir(cache, cfg, pseeds, dev.type)
    resume_path = workdir / "checkpoints" / RESUME_NAME
    result: dict[str, Any] = {"seeds": list(seeds), "pretraining_seeds": pseeds, "device": str(dev),
                              "workdir": str(workdir),
                              "entries": {s: str(cache / keys[s][0]) for s in pseeds}}
    with share.locked_all(cache, [name for name, _ in keys.values()]):
        missing = [s for s in pseeds if share.verified_entry(cache, *keys[s], CHECKPOINT_NAME) is None]
        result["skipped"] = [s for s in pseeds if s not in missing]
        if not missing:
            resume_path.unlink(missing_ok=True)  # a finished stack whose last entry was published
            return {**result, "trained": [], "stacked": 0}
        stack = missing  # or, resuming, the stack that was started (it may hold a seed published meanwhile)
        if resume_path.exists():
            stack = resume_seeds(resume_path)
            if not set(missing) <= set(stack):
                raise StateError(f"{resume_path}: holds a stacked pretraining of seeds {stack}, which lacks "
                                 f"{sorted(set(missing) - set(stack))}; delete {workdir} to restart")
        params, stats = _train(cfg, stack, dev, workdir, show_progress, stop_after)
        for i, seed in enumerate(stack):
            if seed not in missing:  # trained because the stack holds it; its entry came meanwhile
                continue
            name, ident = keys[seed]
            ckpt = save_model(workdir / f"seed{seed}" / CHECKPOINT_NAME, unstack(cfg, params, i),
                              {"stage": STAGE, "seed": seed, "alpha": cfg.alpha_pretrain})
            share.publish(cache, name, ident, ckpt, {**stats, "sha256": sha256_file(ckpt)}, workdir)
            ckpt.unlink()
            ckpt.parent.rmdir()
        resume_path.unlink(missing_ok=True)
    result.update(trained=[s for s in stack if s in missing], **stats)
    write_json(workdir / "stacked.json", {**result, "config": cfg.to_dict()})
    return result


__all__ = ["pretrain_seeds", "pretraining_seeds", "entry_keys", "stack_ident", "default_workdir", "init_models",
           "unstack", "clip_per_model", "resume_seeds"]
