"""The synthetic study's evaluation as typed results, and the JSON it is written as.

:func:`conjugate.synthetic.study.evaluate_models` returns an :class:`Evaluation`: per model a
:class:`ModelEval` (errors keyed by :class:`PromptSet` and label scale ``c``, the rotation control, error curves,
the α_eff fit), the Bayes references (:class:`BayesEval`) and the distance sweep (:class:`DistanceRow`).
:meth:`Evaluation.to_json` is ``metrics.json``: ``numbers`` (the same numbers keyed by strings such as
``"cont_test"`` and ``"1.0"``, as README documents them), ``positions``, ``curves``, ``bayes_curves`` and
``alpha_fit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class Dist(StrEnum):
    """The task distribution a prompt's weight vector is drawn from."""

    CONT = "cont"  # D_cont: w ~ N(0, I_d)
    DISC = "disc"  # D_disc: one of the K discrete tasks


class Split(StrEnum):
    TEST = "test"
    VAL = "val"  # validation prompts: only the conjugate scale c* is chosen on them


class PromptSet(NamedTuple):
    """One set of held-out prompts: a distribution and a split (``key``: ``"cont_test"``...)."""

    dist: Dist
    split: Split

    @property
    def key(self) -> str:
        return f"{self.dist}_{self.split}"


CONT_TEST, CONT_VAL = PromptSet(Dist.CONT, Split.TEST), PromptSet(Dist.CONT, Split.VAL)
DISC_TEST, DISC_VAL = PromptSet(Dist.DISC, Split.TEST), PromptSet(Dist.DISC, Split.VAL)


class Reference(StrEnum):
    """The exact Bayes predictors the models are compared with."""

    RIDGE = "ridge"  # the posterior mean under D_cont
    DMMSE = "dmmse"  # ... under D_disc
    MIXTURE_PRETRAIN = "mixture_pretrain"  # ... under the pretraining mixture (α pretrain)
    MIXTURE_FINETUNE = "mixture_finetune"  # ... under the fine-tuning mixture (α fine-tune)


class Prior(StrEnum):
    """A mixture prior whose Bayes predictor is evaluated on the conjugate prompts."""

    PRETRAIN = "pretrain"
    FINETUNE = "finetune"


ByScale = dict[float, float]  # label scale c -> error


def scale_numbers(errors: ByScale) -> dict[str, float]:
    """``{1.0: e}`` -> ``{"1.0": e}``: the scales as JSON keys."""
    return {str(c): v for c, v in errors.items()}


@dataclass(frozen=True)
class AlphaFit:
    """The α_eff fit: the distance between the model's predictions and mixture-Bayes at each α of the grid."""

    alphas: list[float]
    distance: list[float]


@dataclass(frozen=True)
class ModelEval:
    """One model's numbers."""

    mse: dict[PromptSet, ByScale]  # error with labels × c, every prompt set and scale
    rotated: dict[Dist, float]  # the rotation control: test prompts with randomly rotated inputs, c = 1
    curves: dict[tuple[Dist, float], list[float]]  # test-prompt error per number of exemplars, per (dist, c)
    alpha_eff: float  # the mixture prior that best explains the predictions
    alpha_fit: AlphaFit
    bayes_at_alpha_eff: ByScale  # mixture-Bayes with α_eff on D_cont test prompts with labels × c

    def mse_numbers(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dist in Dist:
            for split in Split:
                ps = PromptSet(dist, split)
                if ps in self.mse:
                    out[ps.key] = scale_numbers(self.mse[ps])
            out[f"{dist}_rotated"] = self.rotated[dist]
        return out


@dataclass(frozen=True)
class BayesEval:
    """The Bayes references on the same test prompts."""

    mse: dict[tuple[Reference, Dist], float]
    curves: dict[tuple[Reference, Dist], list[float]]
    p_disc_pretrain: dict[Dist, list[float]]  # posterior probability of D_disc under α pretrain, per position
    scaled: dict[Prior, ByScale]  # mixture-Bayes on D_cont test prompts with labels × c


@dataclass(frozen=True)
class DistanceRow:
    """Prompts whose tasks are ``w_k + δ``, ``δ ~ N(0, s² I)``: each model's and reference's error."""

    s: float
    models: dict[str, float]
    references: dict[Reference, float]  # ridge and the two mixtures

    def numbers(self) -> dict[str, float]:
        return {"s": self.s, **self.models, **{str(ref): v for ref, v in self.references.items()}}


@dataclass(frozen=True)
class Evaluation:
    """Everything the report shows (:func:`conjugate.synthetic.study.evaluate_models`)."""

    positions: list[int]  # numbers of exemplars a curve has a value for
    models: dict[str, ModelEval]
    bayes: BayesEval
    distance_sweep: list[DistanceRow]

    def bayes_scaled_numbers(self) -> dict[str, dict[str, float]]:
        """The Bayes predictors' errors on the conjugate prompts: each prior's, then each model's α_eff's."""
        out = {str(prior): scale_numbers(v) for prior, v in self.bayes.scaled.items()}
        out.update({f"alpha_eff_{name}": scale_numbers(m.bayes_at_alpha_eff) for name, m in self.models.items()})
        return out

    def numbers(self) -> dict[str, Any]:
        """``metrics.json``'s ``numbers``."""
        return {
            "mse": {name: m.mse_numbers() for name, m in self.models.items()},
            "bayes": {f"{ref}_{dist}": v for (ref, dist), v in self.bayes.mse.items()},
            "bayes_scaled": self.bayes_scaled_numbers(),
            "alpha_eff": {name: m.alpha_eff for name, m in self.models.items()},
            "distance_sweep": [row.numbers() for row in self.distance_sweep],
        }

    def to_json(self) -> dict[str, Any]:
        """``metrics.json``."""
        bayes_curves: dict[str, list[float]] = {}
        for dist in Dist:
            for ref in Reference:
                if (ref, dist) in self.bayes.curves:
                    bayes_curves[f"{ref}/{dist}"] = self.bayes.curves[(ref, dist)]
            if dist in self.bayes.p_disc_pretrain:
                bayes_curves[f"p_disc_pretrain/{dist}"] = self.bayes.p_disc_pretrain[dist]
        return {
            "numbers": self.numbers(),
            "positions": self.positions,
            "curves": {f"{name}/{dist}/c={c}": curve for name, m in self.models.items()
                       for (dist, c), curve in m.curves.items()},
            "bayes_curves": bayes_curves,
            "alpha_fit": {name: {"alphas": m.alpha_fit.alphas, "distance": m.alpha_fit.distance}
                          for name, m in self.models.items()},
        }


__all__ = ["AlphaFit", "BayesEval", "ByScale", "CONT_TEST", "CONT_VAL", "DISC_TEST", "DISC_VAL", "Dist",
           "DistanceRow", "Evaluation", "ModelEval", "Prior", "PromptSet", "Reference", "Split", "scale_numbers"]
