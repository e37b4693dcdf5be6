"""The training loop every study shares (pretraining, fine-tuning, instruction tuning), with exact, resumable
checkpoints, and the safetensors checkpoints of its models.

Batches are sampled fresh on the training device at every step from a generator seeded by
``(seed, stage, step)``, and the learning rate is a pure function of the step, so a run resumed from a
checkpoint (model + optimiser state) continues bit-for-bit like an uninterrupted one. Ctrl-C finishes the
step in flight, writes a checkpoint and stops; a SIGKILL loses at most ``checkpoint_every`` steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file

from .runs import StateError, append_jsonl, atomic_write_bytes, atomic_write_text, read_jsonl

LossFn = Callable[[Callable[..., torch.Tensor], Any], torch.Tensor]  # (forward, batch) -> scalar loss


def mse_loss(forward: Callable[..., torch.Tensor], batch: Any) -> torch.Tensor:
    """The in-context regression loss (the default of :func:`train_stage`): mean squared error of
    ``forward(xs, ys)`` against ``ys`` over all positions, for a batch with ``xs`` and ``ys``."""
    return torch.mean((forward(batch.xs, batch.ys).float() - batch.ys) ** 2)


STAGE_IDS = {"pretrain": 1, "finetune": 2, "tune": 3}


class Interrupted(Exception):
    """Training stopped on SIGINT after writing a checkpoint."""


class Diverged(ValueError):
    """The training loss became NaN or infinite: the settings (usually the learning rate) do not train."""


@dataclass
class StageSpec:
    name: str
    steps: int
    batch: int
    lr: float
    warmup: int
    weight_decay: float = 0.0
    grad_clip: float = 1.0


def lr_at(step: int, spec: StageSpec) -> float:
    """Linear warm-up to ``spec.lr``, then cosine decay to 10% of it."""
    if spec.warmup and step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    span = max(1, spec.steps - spec.warmup)
    frac = min(1.0, (step - spec.warmup) / span)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def step_generator(seed: int, stage: str, step: int, device: torch.device | str) -> torch.Generator:
    """The generator for one step's batch: a function of ``(seed, stage, step)`` only."""
    state = np.random.SeedSequence([int(seed), STAGE_IDS.get(stage, 99), int(step)]).generate_state(1, np.uint64)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) & ((1 << 63) - 1))
    return g


# ---- checkpoints ---------------------------------------------------------------------------------------

def save_model(path: str | Path, model: torch.nn.Module, meta: dict | None = None) -> Path:
    """A model checkpoint (safetensors) carrying its config (``model.cfg.to_dict()``) and ``meta`` in the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"model_config": json.dumps(model.cfg.to_dict()), "meta": json.dumps(meta or {})}
    return _atomic_safetensors(path, tensors, header)


def tensor_digest(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> str:
    """sha256 of a checkpoint's content: its header fields (but ``sha256``) and every tensor's name, dtype,
    shape and bytes, in name order. Stored in the header, checked on every load."""
    h = hashlib.sha256(json.dumps({k: v for k, v in header.items() if k != "sha256"}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header of a checkpoint, verified against the digest its header carries (files written
    before checkpoints carried one are read as they are). Anything damaged raises :class:`StateError`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StateError(f"{path}: not a {what} checkpoint ({e})") from None
    if "sha256" in header and tensor_digest(tensors, header) != header["sha256"]:
        raise StateError(f"{path}: damaged {what} checkpoint (its content does not match the sha256 it was "
                         "written with); delete it, or the run folder, to train it again")
    return tensors, header


def load_checkpoint(path: str | Path, what: str,
                    build: Callable[[dict, dict], torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
    """Read a checkpoint written by :func:`save_model` (safetensors only: no pickle): ``build(model_config,
    meta)`` makes the empty model from the header, then the weights are loaded. A missing file raises
    ``FileNotFoundError``, anything else that is not such a checkpoint ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    tensors, header = _read_safetensors(path, what)
    try:
        meta = json.loads(header.get("meta", "{}"))
        model = build(json.loads(header["model_config"]), meta)
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise StateError(f"{path}: not a {what} checkpoint ({e})") from None
    return model, meta


def _atomic_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> Path:
    from safetensors.torch import save

    header = {**header, "sha256": tensor_digest(tensors, header)}
    return atomic_write_bytes(path, save(tensors, metadata=header))


def _resumable_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], bool]:
    """The model state a resume checkpoint keeps: all of it, or — when some parameters are frozen (an adapter on
    a large base) — only the trainable ones, which are all that training changes."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    state = model.state_dict()
    if all(p.requires_grad for p in model.parameters()):
        return state, False
    return {k: v for k, v in state.items() if k in trainable}, True


def _save_resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, elapsed: float) -> None:
    state, subset = _resumable_state(model)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for name, val in st.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(val).detach().cpu().contiguous()
    header = {"step": str(step), "elapsed": repr(elapsed), "param_groups": json.dumps(osd["param_groups"])}
    if subset:
        header["subset"] = "trainable"
    _atomic_safetensors(path, tensors, header)


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                      header: dict[str, str]) -> tuple[int, float]:
    """Load the optimiser state a resume checkpoint holds (``opt.<index>.<name>`` tensors and the header's
    ``param_groups``) and return its ``(step, elapsed)``; a mismatch raises KeyError/ValueError/RuntimeError."""
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(header["param_groups"])})
    return int(header["step"]), float(header["elapsed"])


def _load_resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[int, float]:
    tensors, header = _read_safetensors(path, "resume")
    try:
        saved = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        if header.get("subset") == "trainable":
            want, _ = _resumable_state(model)
            if set(saved) != set(want):
                raise ValueError("its trainable parameters are not this model's")
            model.load_state_dict(saved, strict=False)
        else:
            model.load_state_dict(saved)
        return restore_optimizer(opt, tensors, header)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise StateError(f"{path}: not a resume checkpoint of this model ({e}); delete it to restart the stage") \
            from None


@contextlib.contextmanager
def _sigint_flag() -> Iterator[dict]:
    """Within the block, the first Ctrl-C sets a flag (the loop checkpoints and stops); a second one raises."""
    flag = {"stop": False}
    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- the loop ------------------------------------------------------------------------------------------

def train_stage(
    model: torch.nn.Module,
    spec: StageSpec,
    sampler: Callable[[int, torch.Generator], Any],
    *,
    seed: int,
    workdir: str | Path,
    device: torch.device | str = "cpu",
    checkpoint_every: int = 1000,
    log_every: int = 50,
    compile_model: bool = False,
    amp_bf16: bool = False,
    show_progress: bool = True,
    stop_after: int | None = None,
    loss_fn: LossFn = mse_loss,
    tokens_per_example: int | None = None,
) -> dict:
    """Train ``model`` in place for ``spec.steps`` steps, resuming from ``workdir/<stage>.resume.safetensors``.

    ``sampler(batch, generator)`` draws one step's batch and ``loss_fn(forward, batch)`` scores it (default:
    the regression MSE; other studies pass their own, e.g. a masked cross-entropy). ``tokens_per_example``
    only feeds the throughput statistics (default: the regression prompt's ``2 * n_points`` tokens).
    ``stop_after`` (tests) simulates an interruption: stop after that many steps, checkpoint, raise
    :class:`Interrupted`. Returns throughput statistics of the steps run in this call.
    """
    workdir = Path(workdir)
    resume_path = workdir / "checkpoints" / f"{spec.name}.resume.safetensors"
    log_path = workdir / "train_log.jsonl"
    params = [p for p in model.parameters() if p.requires_grad]  # an adapter on a frozen base: the adapter only
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.999))
    start, elapsed = 0, 0.0
    if resume_path.exists():
        start, elapsed = _load_resume(resume_path, model, opt)
    # drop this stage's rows past the step we start from (logged just before a crash that lost the checkpoint)
    rows = list(read_jsonl(log_path))
    kept = [r for r in rows if r.get("stage") != spec.name or r.get("step", 0) <= start]
    if len(kept) != len(rows):
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in kept))  # never a moment without a log
    fwd = torch.compile(model) if compile_model else model
    device_type = torch.device(device).type
    autocast = (torch.autocast(device_type, dtype=torch.bfloat16) if amp_bf16
                else contextlib.nullcontext())
    model.train()
    t0, steps_run, rows, loss_acc, loss_n = time.perf_counter(), 0, [], 0.0, 0
    progress = Progress(TextColumn(f"[bold]{spec.name}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        disable=not show_progress, transient=False)
    with _sigint_flag() as flag, progress:
        task = progress.add_task(spec.name, total=spec.steps, completed=start, loss=float("nan"))
        step = start
        while step < spec.steps:
            lr = lr_at(step, spec)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = sampler(spec.batch, step_generator(seed, spec.name, step, device))
            with autocast:
                loss = loss_fn(fwd, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
            opt.step()
            step += 1
            steps_run += 1
            value = loss.item()
            if not math.isfinite(value):  # nothing of this step is checkpointed
                raise Diverged(f"{spec.name} diverged at step {step}/{spec.steps} (loss {value}); lower its "
                               f"learning rate ({spec.lr:g}) and use a new output folder")
            loss_acc += value
            loss_n += 1
            if step % log_every == 0 or step == spec.steps:
                now = elapsed + time.perf_counter() - t0
                rows.append({"stage": spec.name, "step": step, "loss": loss_acc / loss_n, "lr": lr,
                             "elapsed": round(now, 3)})
                if step == spec.steps:  # the stage's last row also records this call's throughput
                    secs = time.perf_counter() - t0
                    per_ex = tokens_per_example or 2 * model.cfg.n_points
                    rows[-1].update(steps_per_s=round(steps_run / secs, 3),
                                    tokens_per_s=round(steps_run * spec.batch * per_ex / secs, 1))
                progress.update(task, completed=step, loss=loss_acc / loss_n)
                loss_acc, loss_n = 0.0, 0
            interrupted = flag["stop"] or (stop_after is not None and steps_run >= stop_after)
            if step % checkpoint_every == 0 or interrupted or step == spec.steps:
                append_jsonl(log_path, rows)
                rows = []
                _save_resume(resume_path, model, opt, step, elapsed + time.perf_counter() - t0)
            if interrupted and step < spec.steps:
                raise Interrupted(f"{spec.name} stopped at step {step}/{spec.steps}; rerun to resume")
    seconds = time.perf_counter() - t0
    tokens = steps_run * spec.batch * (tokens_per_example or 2 * model.cfg.n_points)
    stats = {"stage": spec.name, "steps": steps_run, "seconds": seconds,
             "steps_per_s": steps_run / seconds if seconds else 0.0,
             "tokens_per_s": tokens / seconds if seconds else 0.0,
             "train_seconds_total": elapsed + seconds}
    model.eval()
    return stats


def finish_stage(model: torch.nn.Module, spec: StageSpec, workdir: str | Path, meta: dict) -> Path:
    """Write the stage's final model checkpoint and drop its resume state."""
    workdir = Path(workdir)
    path = save_model(workdir / "checkpoints" / f"{spec.name}.safetensors", model, meta)
    (workdir / "checkpoints" / f"{spec.name}.resume.safetensors").unlink(missing_ok=True)
    return path


__all__ = ["StageSpec", "train_stage", "finish_stage", "save_model", "load_checkpoint", "tensor_digest", "lr_at",
           "step_generator", "Interrupted", "Diverged", "mse_loss", "LossFn"]
