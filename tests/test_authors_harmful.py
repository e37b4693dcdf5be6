"""The authors' harmful-instruction selection, reproduced exactly (``--sample-method authors``).

Their notebooks read each language's file (lines stripped), call ``random.seed(10)``, ``random.shuffle`` the
lines and keep the first 100. Their files are read from ``shared/authors/`` beside the repository (never copied
into it); the test skips when that folder is absent.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conjugate.lm.harmful.data import HarmfulInputError, Instruction, load_instructions, sample_items

AUTHORS = Path(__file__).resolve().parents[2] / "shared" / "authors" / "harmful_instructions"
LANGS = ("en", "ja", "hu", "sw", "ml")


def authors_selection(path: Path) -> list[str]:
    """The authors' procedure, restated."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    random.seed(10)
    random.shuffle(lines)
    return lines[:100]


@pytest.mark.skipif(not AUTHORS.is_dir(), reason=f"the authors' files are not at {AUTHORS}")
def test_the_authors_selection_in_all_five_languages() -> None:
    items = load_instructions(AUTHORS / "harmful_instructions_en.txt")
    assert len(items) == 520
    picked = sample_items(items, 100, 10, "authors")
    for lang in LANGS:
        path = AUTHORS / f"harmful_instructions_{lang}.txt"
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        assert [lines[it.index] for it in picked] == authors_selection(path), lang
    project = {it.index for it in sample_items(items, 100, 10, "project")}
    assert len(project & {it.index for it in picked}) < 100  # the project's own draw is a different sample


def test_sample_methods_are_checked() -> None:
    rows = [Instruction(f"{i:04d}", i, f"instruction {i}") for i in range(10)]
    assert [r.index for r in sample_items(rows, 3, 10, "authors")] == sample_order(10, 3)
    assert len(sample_items(rows, None, 0, "authors")) == 10
    with pytest.raises(HarmfulInputError, match="sample-method"):
        sample_items(rows, 3, 0, "bogus")


def sample_order(n: int, k: int) -> list[int]:
    order = list(range(n))
    random.seed(10)
    random.shuffle(order)
    return order[:k]
