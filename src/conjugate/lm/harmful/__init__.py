"""Study 2b: does safety tuning hold across languages? Harmful-instruction refusals per prompt language.

:mod:`.data` reads the instructions and translations, :mod:`.judge` labels replies (refusal phrases or an LLM
judge), :mod:`.study` runs the pipeline and writes the run folder, :mod:`.report` computes rates, bootstrap
intervals, the table and the figure, :mod:`.agreement` exports replies for human labels and measures agreement,
:mod:`.evalsets` holds the held-out evaluation sets (``--eval-set``).
"""

from .agreement import agreement, cohen_kappa, confusion_matrix, export_labels, format_agreement
from .data import HarmfulInputError, Instruction, load_instructions, load_translated, sample_items
from .evalsets import EVAL_SETS, EvalSet, load_eval_set
from .judge import (
    LABELS,
    JudgeError,
    JudgeItem,
    LLMJudge,
    PhraseJudge,
    Verdict,
    get_judge,
    normalise,
    parse_judge_reply,
    phrase_languages,
)
from .report import bootstrap_ci, summarise
from .study import current_rows, run_study

__all__ = [
    "EVAL_SETS",
    "LABELS",
    "EvalSet",
    "HarmfulInputError",
    "Instruction",
    "JudgeError",
    "JudgeItem",
    "LLMJudge",
    "PhraseJudge",
    "Verdict",
    "agreement",
    "bootstrap_ci",
    "cohen_kappa",
    "confusion_matrix",
    "current_rows",
    "export_labels",
    "format_agreement",
    "get_judge",
    "load_eval_set",
    "load_instructions",
    "load_translated",
    "normalise",
    "parse_judge_reply",
    "phrase_languages",
    "run_study",
    "sample_items",
    "summarise",
]
