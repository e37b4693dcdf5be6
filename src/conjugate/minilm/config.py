"""The miniature's settings: one dataclass, named presets, and validation with one-line errors.

``--set key=value`` parsing is the project's own (:func:`conjugate.config.parse_overrides`), so the CLI, the sweep
registry and the synthetic study share one syntax and one error style.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields

from ..config import ConfigError
from .corpus import LANGUAGES

SPLITS = ("val", "test")


@dataclass
class MiniLMConfig:
    """Every setting of the miniature ICL-vs-IF study. Defaults are the ``quick`` preset."""

    # corpus
    languages: list[str] = field(default_factory=lambda: ["en", "leet", "piglatin", "vel"])
    split_seed: int = 0  # held-out sentences / problems and evaluation prompts: fixed across run seeds
    val_sentences: int = 16
    test_sentences: int = 32
    val_problems: float = 0.1  # fraction of the arithmetic problems held out for validation
    test_problems: float = 0.15
    p_icl: float = 0.6  # share of in-context documents in pretraining (the rest: question-answer)
    p_question_query: float = 0.5  # share of in-context documents whose query is a question or a blank
    p_no_instruction: float = 0.2  # share of pretraining documents without an instruction line
    max_shots: int = 2  # in-context documents show 1..max_shots exemplars
    max_qa_shots: int = 2  # question-answer documents show 0..max_qa_shots answered exemplars
    # model
    width: int = 64
    layers: int = 3
    heads: int = 4
    max_len: int = 512
    prev_char: bool = True  # feed each position the previous character's embedding too (see model.CausalLM)
    # pretraining (loss on every character) and instruction tuning (loss on the answer only)
    pretrain_steps: int = 1200
    pretrain_batch: int = 16
    pretrain_lr: float = 3e-3
    pretrain_warmup: int = 50
    tune_steps: int = 150  # chosen on validation: see the README (English answer rate first above 50%)
    tune_batch: int = 16
    tune_lr: float = 3e-4  # a tenth of the pretraining rate
    tune_warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    chunks: int = 4  # each batch is length-sorted and run in this many padded chunks (less padding)
    # evaluation
    split: str = "test"  # the split reported in icl_accuracy: "val" while choosing settings, "test" for results
    eval_prompts: int = 100  # prompts per ICL-vs-IF task (4) and language, on the reported split
    val_prompts: int = 50  # per task and language on the validation split (always evaluated)
    qa_prompts: int = 50  # held-out question-answer prompts per question type and language
    shots: int = 2  # exemplars in evaluation prompts (the paper's 2)
    max_new_tokens: int = 16  # characters; the longest ICL answer (a Pig Latin blank) has 13 and a space
    eval_batch: int = 64
    # execution
    checkpoint_every: int = 200
    threads: int = 0  # 0: torch's default

    # fields pretraining never reads (the key of shared pretraining is every other field: conjugate.share)
    AFTER_PRETRAINING: typing.ClassVar[frozenset[str]] = frozenset({
        "tune_steps", "tune_batch", "tune_lr", "tune_warmup", "split", "eval_prompts", "val_prompts", "qa_prompts",
        "shots", "max_new_tokens", "eval_batch", "checkpoint_every", "threads"})

    def validate(self) -> MiniLMConfig:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name} must be finite, got {v}")
        if not self.languages:
            raise ConfigError("languages: empty list")
        for lang in self.languages:
            if lang not in LANGUAGES:
                raise ConfigError(f"languages: unknown language {lang!r}; valid: {', '.join(LANGUAGES)}")
        if len(set(self.languages)) != len(self.languages):
            raise ConfigError(f"languages: a language is listed twice: {self.languages}")
        if "en" not in self.languages:
            raise ConfigError("languages must include en (instruction tuning is in English)")
        for name in ("val_sentences", "test_sentences", "max_shots", "width", "layers", "heads", "max_len",
                     "pretrain_batch", "tune_batch", "chunks", "eval_prompts", "val_prompts", "qa_prompts",
                     "max_new_tokens", "eval_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_qa_shots", "shots", "pretrain_steps", "tune_steps", "pretrain_warmup", "tune_warmup",
                     "threads", "split_seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("p_icl", "p_question_query", "p_no_instruction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("val_problems", "test_problems"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ConfigError(f"{name} must lie in (0, 0.5), got {getattr(self, name)}")
        for name in ("pretrain_lr", "tune_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0")
        if self.width % self.heads:
            raise ConfigError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.val_sentences + self.test_sentences > 140:
            raise ConfigError(f"val_sentences + test_sentences must leave >= 20 of the 160 sentences for training, "
                              f"got {self.val_sentences} + {self.test_sentences}")
        for name in ("val_sentences", "test_sentences"):
            if getattr(self, name) < self.shots + 1:
                raise ConfigError(f"{name} ({getattr(self, name)}) must be >= shots + 1 ({self.shots + 1})")
        if self.max_len < 128:
            raise ConfigError(f"max_len must be >= 128 (evaluation prompts are long), got {self.max_len}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


MINILM_PRESETS: dict[str, dict] = {
    # the whole pipeline in seconds, for tests (the model learns little)
    "smoke": dict(width=32, layers=1, heads=2, pretrain_steps=8, pretrain_batch=8, pretrain_warmup=2,
                  tune_steps=4, tune_batch=8, eval_prompts=3, val_prompts=2, qa_prompts=2, checkpoint_every=4,
                  chunks=2, languages=["en", "leet", "vel"]),
    # the study on a 2-core CPU in under 10 minutes
    "quick": {},
}


def resolve_minilm(preset: str, overrides: dict | None = None) -> MiniLMConfig:
    """The config of ``preset`` with ``overrides`` applied, validated (raises :class:`ConfigError`)."""
    if preset not in MINILM_PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(MINILM_PRESETS)}")
    return MiniLMConfig(**{**MINILM_PRESETS[preset], **(overrides or {})}).validate()
