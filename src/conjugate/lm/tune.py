"""LoRA fine-tuning of a causal language model on prompt → answer pairs (``conjugate lm tune``), on a CPU.

The base model (any local spec: a folder, a GGUF file, a named real model) is frozen; ``peft`` adds low-rank
adapters to its attention projections, and only those train. The loss is the cross-entropy of the answer tokens
(and the end-of-text token after them) given the prompt; the output layer runs only at the positions that
predict an answer token — for a 262k-token vocabulary most of a step's work otherwise.

It runs on the training loop every study shares (:func:`conjugate.training.train_stage`): batches drawn from a
generator seeded by (seed, step), a learning rate that is a function of the step, resume checkpoints of the
adapter and its optimiser (the frozen base is never written), so a run killed at any point and rerun ends with
the same adapter, bit for bit, as one never interrupted. The output folder then holds the adapter in the ``peft``
format (``adapter_model.safetensors``, ``adapter_config.json``) and ``provenance.json`` (base fingerprint, data
sha256, config, git commit, versions, loss curve), so ``BASE+adapter:DIR`` loads it and checks its base.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..runs import RunDir, StateError, atomic_copy, environment, git_commit, read_jsonl, sha256_file, write_json
from ..training import StageSpec, train_stage
from .adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROVENANCE, Provenance, fingerprint

COMMAND = "lm tune"
STAGE = "tune"


@dataclass(frozen=True)
class TuneConfig:
    """What a tuning run depends on (recorded in ``config.json`` and the adapter's provenance)."""

    steps: int = 400
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_len: int = 160
    checkpoint_every: int = 25
    log_every: int = 10

    def validate(self) -> None:
        for name in ("steps", "batch", "rank", "alpha", "max_len", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.target_modules:
            raise ValueError("target_modules names no module")


@dataclass
class Encoded:
    """The tokenised training rows: ids of prompt + answer + end token, and where the answer starts."""

    ids: list[list[int]]
    answer_start: list[int]
    truncated: int = 0
    tokens: int = 0


def encode_rows(tokenizer: Any, rows: list[Any], max_len: int) -> Encoded:
    """Prompt ids (with the tokenizer's start token, as the studies send raw text) then answer ids and the end
    token; rows longer than ``max_len`` keep their answer and lose the prompt's oldest tokens."""
    ids, starts, cut = [], [], 0
    eos = tokenizer.eos_token_id
    for row in rows:
        prompt = tokenizer(row.prompt, add_special_tokens=True)["input_ids"]
        whole = tokenizer(row.prompt + row.answer, add_special_tokens=True)["input_ids"]
        if whole[: len(prompt)] == prompt and len(whole) > len(prompt):
            answer = whole[len(prompt):]
        else:
            answer = tokenizer(row.answer, add_special_tokens=False)["input_ids"]
        answer = [*answer, eos] if eos is not None else answer
        seq = prompt + answer
        if len(seq) > max_len:
            if len(answer) >= max_len:
                raise StateError(f"row {row.id}: its answer alone has {len(answer)} tokens, more than max_len "
                                 f"{max_len}")
            seq, cut = seq[-max_len:], cut + 1
        ids.append(seq)
        starts.append(len(seq) - len(answer))
    return Encoded(ids, starts, cut, sum(len(s) for s in ids))


def make_sampler(enc: Encoded, pad_id: int) -> Any:
    """``sampler(batch, generator)`` for :func:`train_stage`: rows drawn with replacement, right-padded."""

    def sample(batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(enc.ids), (batch,), generator=gen).tolist()
        width = max(len(enc.ids[i]) for i in idx)
        input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        target = torch.zeros((batch, width), dtype=torch.bool)  # token t is a loss target
        for r, i in enumerate(idx):
            seq = enc.ids[i]
            input_ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
            target[r, enc.answer_start[i]: len(seq)] = True
        return {"input_ids": input_ids, "attention_mask": mask, "target": target}

    return sample


def answer_loss(forward: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens; logits only at the positions that predict one."""
    target = batch["target"]
    predicts = target[:, 1:].any(0).nonzero()[:, 0]  # position p predicts token p + 1
    try:
        out = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=predicts)
        logits = out.logits.float()  # (batch, len(predicts), vocab)
    except TypeError:  # a model whose forward has no logits_to_keep: every position, then the ones needed
        out = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, predicts].float()
    labels = batch["input_ids"][:, predicts + 1]
    keep = target[:, predicts + 1]
    return torch.nn.functional.cross_entropy(logits[keep], labels[keep])


def tune(model_spec: str, data: str | Path, out: str | Path, config: TuneConfig | None = None, *, seed: int = 0,
         show_progress: bool = True, stop_after: int | None = None) -> Path:
    """Train a LoRA adapter of ``model_spec`` on the rows of ``data`` (a ``conjugate lm tune-data`` file) into
    ``out``; a folder holding an unfinished run of the same settings resumes, a finished one returns at once.
    Returns ``out`` (load it with ``<model_spec>+adapter:<out>``)."""
    from .hf import HFBackend
    from .tunedata import read_tune_data

    cfg = config or TuneConfig()
    cfg.validate()
    data = Path(data)
    rows = read_tune_data(data)
    if not rows:
        raise StateError(f"{data}: no training rows")
    data_sha = sha256_file(data)
    with RunDir(out, COMMAND) as run:
        record = {"model": model_spec, "data": str(data), "data_sha256": data_sha, "seed": seed, **asdict(cfg)}
        record["target_modules"] = list(cfg.target_modules)
        _check_same_run(run, record)
        if run.finished_checkpoint(STAGE, run.path(ADAPTER_WEIGHTS)) is not None:
            return run.root
        backend = HFBackend(model_spec, dtype="float32", device="cpu", chat=False)
        base_print = fingerprint(backend.source.model, backend.source.gguf)
        if backend.source.adapter is not None:
            raise StateError(f"{model_spec}: already carries an adapter; tune its base instead")
        run.write_config(record, seed, {"base_fingerprint": base_print})
        model = _with_lora(backend.model, cfg, seed)
        enc = encode_rows(backend.tokenizer, rows, cfg.max_len)
        spec = StageSpec(STAGE, cfg.steps, cfg.batch, cfg.lr, cfg.warmup, cfg.weight_decay, cfg.grad_clip)
        stats = train_stage(model, spec, make_sampler(enc, backend.tokenizer.pad_token_id), seed=seed,
                            workdir=run.root, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
                            show_progress=show_progress, stop_after=stop_after, loss_fn=answer_loss,
                            tokens_per_example=max(1, enc.tokens // len(enc.ids)))
        _write_adapter(model, run.root, model_spec)
        curve = [{"step": r["step"], "loss": r["loss"]} for r in read_jsonl(run.path("train_log.jsonl"))
                 if r.get("stage") == STAGE]
        prov = Provenance(base_spec=model_spec, base_fingerprint=base_print, data_sha256=data_sha,
                          config=record, commit=git_commit(), versions=environment(), loss_curve=curve)
        write_json(run.path(PROVENANCE), prov.to_json())
        run.mark_done(STAGE, {"rows": len(rows), "truncated_rows": enc.truncated,
                              "train_seconds": stats["train_seconds_total"]}, checkpoint=run.path(ADAPTER_WEIGHTS))
        (run.path("checkpoints") / f"{STAGE}.resume.safetensors").unlink(missing_ok=True)
    return Path(out)


def _check_same_run(run: RunDir, record: dict[str, Any]) -> None:
    """A folder that holds a run of other settings is refused (resuming it would mix two trainings)."""
    path = run.path("config.json")
    if not path.exists():
        return
    from ..runs import read_json

    before = read_json(path).get("config", {})
    diff = sorted(k for k in set(before) | set(record) if before.get(k) != record.get(k))
    if diff:
        raise StateError(f"{run.root} holds a tuning run with other settings ({', '.join(diff)}); use another "
                         "--out folder, or delete this one to start again")


def _with_lora(model: torch.nn.Module, cfg: TuneConfig, seed: int) -> torch.nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise StateError("tuning needs the 'peft' package: pip install 'conjugate-prompting[hf]'") from None
    torch.manual_seed(seed)  # LoRA's A matrices start random: fixed by the seed
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=list(cfg.target_modules),
                      bias="none", task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as e:
        raise StateError(f"LoRA: {e}") from None
    return peft_model


def _write_adapter(model: Any, out: Path, base_spec: str) -> None:
    """The adapter's two ``peft`` files, each moved into place atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.", dir=out))
    try:
        model.peft_config["default"].base_model_name_or_path = base_spec
        model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)  # LoRA only
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            atomic_copy(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
