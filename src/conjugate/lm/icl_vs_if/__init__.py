"""ICL vs instruction following (SPEC §2a): does instruction tuning suppress in-context learning, and does a
prompt in another language or encoding bring it back?

- :mod:`.build` — the prompts (4 tasks × 7 languages × 100): the paper's, from the authors' sentence files, or
  the project's own from its own corpus, deterministic for a seed;
- :mod:`.score` — ICL-correct / instruction-following rules, and the authors' released CSV format;
- :mod:`.run` — generation with any :class:`~conjugate.lm.backend.Backend`, resumable, then scores, table
  and figure;
- :mod:`.report` — the Markdown table and the grouped-bar figure.
"""

from __future__ import annotations

from .build import LANGS, TASKS, build_authors_dataset, build_dataset, load_dataset, write_dataset
from .run import run_study, score_legacy
from .score import follows_instruction, icl_correct

__all__ = ["LANGS", "TASKS", "build_authors_dataset", "build_dataset", "follows_instruction", "icl_correct",
           "load_dataset", "run_study", "score_legacy", "write_dataset"]
