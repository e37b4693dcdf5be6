"""The language-model studies as sweepable studies: a config dataclass per study (its fields are the ``--set`` /
``--grid`` keys), ``resolve`` and ``run`` in the form :mod:`conjugate.sweep` calls.

One run compares ``base`` (optional) with ``model`` under one conjugate ``transform`` (optional; the identity arm
always runs), so a grid such as ``--grid model=A,B --grid transform=leetspeak,base64`` is four runs, each an
ordinary run folder of its study. Each run's ``summary.json`` gets a flat ``headline`` block that the sweep
aggregates over seeds and grid points: the model's metric as is (``identity``) and under the transform
(``transformed``), the base model's (``base``), the drop and the recovered share — averaged over the run's
language cells.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError

PRESETS = ("default", "quick")  # one setting each; "quick" is accepted so that `conjugate sweep`'s default works


@dataclass
class _LMRun:
    model: str = ""
    base: str = ""
    transform: str = ""
    max_new_tokens: int = 0  # 0: the study's default
    batch_size: int = 0  # 0: auto
    cache: bool = True

    def validate(self) -> _LMRun:
        if not self.model:
            raise ConfigError("--set model=<spec> (or --grid model=A,B) is required")
        if self.max_new_tokens < 0 or self.batch_size < 0:
            raise ConfigError("max_new_tokens and batch_size must be >= 0 (0: the study's default)")
        return self

    def models(self) -> list[str]:
        return [self.base, self.model] if self.base else [self.model]

    def transforms(self) -> list[str]:
        return [self.transform] if self.transform else []

    def size(self) -> int | str:
        return self.batch_size or "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ProbeRun(_LMRun):
    data: str = ""
    scorer: str = "exact"
    chat: bool = False


@dataclass
class IclRun(_LMRun):
    data: str = ""  # empty: the default prompt set
    limit: int = 0
    chat: bool = False


@dataclass
class XnliRun(_LMRun):
    data: str = "hf"
    langs: str = ""
    mode: str = "generate"
    limit: int = 0
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class HarmfulRun(_LMRun):
    input: str = ""
    langs: str = "en"
    translated: str = ""
    judge: str = "phrases"
    sample: int = 0
    system_prompt: str = ""
    eval_set: str = ""  # a held-out evaluation set instead of input (harmbench-test, advbench-heldout, benign)
    authors: str = ""  # the authors' files, for eval_set=advbench-heldout
    arms: str = "chat"  # comma-separated: chat, completion
    redact: bool = False


def _resolve(cls: type, preset: str, overrides: dict | None) -> Any:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for a language-model study; valid: {', '.join(PRESETS)}")
    return cls(**(overrides or {})).validate()


def resolve_probe(preset: str, overrides: dict | None = None) -> ProbeRun:
    cfg = _resolve(ProbeRun, preset, overrides)
    if not cfg.data:
        raise ConfigError("--set data=<probe JSONL> is required")
    return cfg


def resolve_icl(preset: str, overrides: dict | None = None) -> IclRun:
    return _resolve(IclRun, preset, overrides)


def resolve_xnli(preset: str, overrides: dict | None = None) -> XnliRun:
    return _resolve(XnliRun, preset, overrides)


def resolve_harmful(preset: str, overrides: dict | None = None) -> HarmfulRun:
    cfg = _resolve(HarmfulRun, preset, overrides)
    if bool(cfg.input) == bool(cfg.eval_set):
        raise ConfigError("give one of --set input=<instructions file> or --set eval_set=<name> "
                          "(harmbench-test, advbench-heldout, benign)")
    from .harmful.evalsets import EVAL_SETS

    if cfg.eval_set and cfg.eval_set not in EVAL_SETS:
        raise ConfigError(f"unknown eval_set {cfg.eval_set!r}; valid: {', '.join(EVAL_SETS)}")
    bad = [a for a in cfg.arms.split(",") if a.strip() not in ("chat", "completion")]
    if bad or not cfg.arms.strip():
        raise ConfigError(f"arms must be chat and/or completion, comma-separated; got {cfg.arms!r}")
    return cfg


# ---- runs ----------------------------------------------------------------------------------------------------

def run_probe(cfg: ProbeRun, out: str | Path, *, preset: str = "default", seed: int = 0, device: str = "auto",
              show_progress: bool = True) -> dict:
    from .probe import run_probe as probe

    s = probe(cfg.data, cfg.models(), out, scorer=cfg.scorer, transforms=cfg.transforms(),
              max_new_tokens=cfg.max_new_tokens or 32, batch_size=cfg.size(), chat=cfg.chat, cache=cfg.cache,
              seed=seed, show_progress=show_progress)
    return _with_headline(out, s, s, cfg)


def run_icl(cfg: IclRun, out: str | Path, *, preset: str = "default", seed: int = 0, device: str = "auto",
            show_progress: bool = True) -> dict:
    from .icl_vs_if import run_study

    s = run_study(cfg.models(), out, data=cfg.data or None, limit=cfg.limit or None, batch_size=cfg.size(),
                  max_new_tokens=cfg.max_new_tokens or 10, seed=seed, chat=cfg.chat, show_progress=show_progress,
                  transforms=cfg.transforms(), cache=cfg.cache)
    return _with_headline(out, s, s.get("conjugate") or _as_block(s["accuracy"], cfg.models()), cfg)


def run_xnli(cfg: XnliRun, out: str | Path, *, preset: str = "default", seed: int = 0, device: str = "auto",
             show_progress: bool = True) -> dict:
    from .xnli import run_study

    s = run_study(cfg.models(), out, data=cfg.data, langs=cfg.langs or None, limit=cfg.limit or None,
                  mode=cfg.mode, batch_size=cfg.size(), max_new_tokens=cfg.max_new_tokens or 10,
                  device=cfg.device if cfg.device != "auto" else device, dtype=cfg.dtype,
                  show_progress=show_progress, transforms=cfg.transforms(), cache=cfg.cache)
    mode = cfg.mode if cfg.mode != "both" else "generate"
    block = s.get("conjugate", {}).get(mode) or _as_block(s["accuracy"][mode], cfg.models())
    return _with_headline(out, s, block, cfg)


def run_harmful(cfg: HarmfulRun, out: str | Path, *, preset: str = "default", seed: int = 0, device: str = "auto",
                show_progress: bool = True) -> dict:
    from .harmful import run_study

    s = run_study(cfg.input or None, cfg.langs, cfg.models(), out, translated=cfg.translated or None,
                  judge=cfg.judge, sample=cfg.sample or None, seed=seed, max_new_tokens=cfg.max_new_tokens or 256,
                  system_prompt=cfg.system_prompt or None, batch_size=cfg.size(), show_progress=show_progress,
                  transforms=cfg.transforms(), cache=cfg.cache, eval_set=cfg.eval_set or None,
                  authors=cfg.authors or None, model_arms=[a.strip() for a in cfg.arms.split(",")],
                  redact=cfg.redact)
    answered = {m: {lang: r["ANSWER"] for lang, r in per.items()} for m, per in s["rates"].items()}
    return _with_headline(out, s, s.get("conjugate") or _as_block(answered, s["models"]), cfg)


def _as_block(values: dict[str, dict[str, float]], models: list[str]) -> dict:
    """A study's own per-model, per-language numbers in the form of a pipeline summary with the identity arm only
    (a run without a transform)."""
    langs = list(next(iter(values.values())))
    block: dict = {"models": list(models), "languages": langs, "transforms": ["identity"],
                   "value": {m: {lang: {"identity": values[m][lang]} for lang in langs} for m in models}}
    if len(models) > 1:
        block["drop"] = {m: {lang: values[models[0]][lang] - values[m][lang] for lang in langs} for m in models[1:]}
    return block


def headline(block: dict, cfg: _LMRun) -> dict[str, float | None]:
    """The flat numbers a sweep aggregates, from a pipeline summary block."""
    model = block["models"][-1]
    t = block["transforms"][-1]
    langs = block["languages"]

    def mean(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None and not math.isnan(v)]
        return sum(vals) / len(vals) if vals else None

    out = {"identity": mean([block["value"][model][lang]["identity"] for lang in langs]),
           "transformed": mean([block["value"][model][lang][t] for lang in langs])}
    if cfg.base and "drop" in block:
        out["base"] = mean([block["value"][block["models"][0]][lang]["identity"] for lang in langs])
        out["drop"] = mean([block["drop"][model][lang] for lang in langs])
        if t != "identity":
            out["recovered"] = mean([block["recovery"][model][lang][t]["recovered"] for lang in langs])
    return out


def _with_headline(out: str | Path, summary: dict, block: dict, cfg: _LMRun) -> dict:
    """Add the ``headline`` block to the run's ``summary.json`` (rewritten atomically) and return the summary."""
    from ..runs import read_json, write_json

    path = Path(out) / "summary.json"
    stored = read_json(path)
    stored["headline"] = summary["headline"] = headline(block, cfg)
    write_json(path, stored)
    return summary
