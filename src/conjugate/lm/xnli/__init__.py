"""XNLI across languages (SPEC §2c): does code fine-tuning suppress natural-language reasoning, and does a
prompt in another language bring it back?

The paper compares Llama-2-7B with CodeLlama-7B on the XNLI validation set (2,490 items per language) in
English, French, Spanish and German with a zero-shot prompt ``<premise>\\nQuestion: <hypothesis> True, False or
Neither?\\nAnswer:`` (translated per language) and finds that code fine-tuning costs the most accuracy in English.

- :mod:`.templates` — the per-language prompts and label words, as data;
- :mod:`.data` — items from the hub (``facebook/xnli``), a ``save_to_disk`` folder, or a JSONL/TSV file;
- :mod:`.score` — generate-mode and loglik-mode scoring, agreement, the summary;
- :mod:`.run` — the resumable runner over any :class:`~conjugate.lm.backend.Backend`;
- :mod:`.report` — the Markdown table and the figure.
"""

from __future__ import annotations

from .data import load_items
from .run import resolve_modes, run_study
from .score import MODES, correct_generate, parse_label
from .templates import LANGS, PAPER_LANGS, TEMPLATES, XNLIInputError, continuations, label_words, make_prompt

__all__ = ["LANGS", "MODES", "PAPER_LANGS", "TEMPLATES", "XNLIInputError", "continuations", "correct_generate",
           "label_words", "load_items", "make_prompt", "parse_label", "resolve_modes", "run_study"]
