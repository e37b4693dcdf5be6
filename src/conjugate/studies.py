"""The study registry: how to resolve, run and summarise each study that sweeps can run (the training
studies, and the language-model studies through :mod:`conjugate.lm.sweeps`).

Read by :mod:`conjugate.sweep` (to plan and execute runs), :mod:`conjugate.aggregate` (each study's table fields,
figure panels and claims) and the ``conjugate sweep`` commands (one per study).
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from .config import ConfigError


class Study(NamedTuple):
    """How to resolve, run and summarise one study. Targets are ``"module:attribute"`` strings, imported only
    when needed, so the CLI stays fast and worker processes import what they run."""

    resolve: str  # (preset, overrides: dict) -> config, raising ConfigError on bad values
    run: str  # (cfg, out, *, preset, seed, device, show_progress) -> summary dict; writes out/summary.json
    config: str  # the config dataclass, whose fields are the valid --set / --grid keys
    key_fields: tuple[str, ...] = ()  # summary fields (dotted, fnmatch patterns) in the aggregate table
    figure_panels: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (title, fields) per panel of each figure
    claims: str = ""  # (summary) -> {name: {value, target, met}}: the study's claims, counted over seeds
    shares_pretraining: bool = False  # run() takes pretrain_cache: runs of one pretraining share it


STUDIES: dict[str, Study] = {
    "synthetic": Study(
        "conjugate.config:resolve_synthetic", "conjugate.synthetic.study:run_synthetic",
        "conjugate.config:SyntheticConfig",
        key_fields=("cont_mse.pretrained", "cont_mse.finetuned", "cont_mse.finetuned_conjugate", "forgetting_ratio",
                    "recovered_fraction", "implicit_alpha.*", "decomposition.explained_share",
                    "learned.disc_last_vs_ridge", "learned.disc_vs_bayes", "learned.cont_vs_bayes",
                    "learned.cont_last_vs_ridge"),
        figure_panels=(("D_cont error", ("cont_mse.pretrained", "cont_mse.finetuned", "cont_mse.finetuned_conjugate")),
                       ("forgetting ratio (fine-tuned / pretrained)", ("forgetting_ratio",)),
                       ("recovered share of the gap", ("recovered_fraction", "recovered_fraction_net"))),
        claims="conjugate.synthetic.claims:synthetic_claims", shares_pretraining=True),
    "minilm": Study(
        "conjugate.minilm.config:resolve_minilm", "conjugate.minilm.study:run_minilm",
        "conjugate.minilm.config:MiniLMConfig",
        key_fields=("english_drop", "other_drop_mean", "drop_gap", "icl_accuracy.pretrained.*", "icl_accuracy.tuned.*",
                    "icl_accuracy.tuned_conjugate.*"),
        figure_panels=(("ICL accuracy drop after tuning", ("english_drop", "other_drop_mean")),
                       ("English drop − mean other drop", ("drop_gap",))),
        claims="conjugate.minilm.claims:minilm_claims", shares_pretraining=True),
    **{name: Study(f"conjugate.lm.sweeps:resolve_{fn}", f"conjugate.lm.sweeps:run_{fn}", f"conjugate.lm.sweeps:{cls}",
                   key_fields=("headline.*",),
                   figure_panels=(("model as is and under the transform", ("headline.identity", "headline.transformed",
                                                                            "headline.base")),
                                  ("recovered share of the base → tuned drop", ("headline.recovered",))))
       for name, fn, cls in (("icl-vs-if", "icl", "IclRun"), ("xnli", "xnli", "XnliRun"),
                             ("harmful", "harmful", "HarmfulRun"), ("probe", "probe", "ProbeRun"))},
}


def load_target(target: str) -> Any:
    """``"pkg.module:attr"`` -> the attribute."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; valid studies: {', '.join(STUDIES)}")
    return STUDIES[name]


__all__ = ["Study", "STUDIES", "get_study", "load_target"]
