"""Inputs of the harmful-instruction study: the English instructions, a seeded sample, and their translations.

Input formats (chosen by the file's extension):

- ``.csv`` — AdvBench's ``harmful_behaviors.csv``: a header with a ``goal`` column (``target`` and others are
  ignored); one instruction per row;
- ``.jsonl`` — one JSON object per line with a string field ``prompt``;
- anything else — UTF-8 text, one instruction per non-blank line.

Item ``i`` (0-based, in file order: the i-th CSV row, JSONL record or non-blank text line) gets the id
``f"{i:04d}"``. Pre-translated instructions live in ``DIR/<lang>.txt``: line ``i`` is the translation of item
``i``, one line per item of the full input (before sampling), so the files stay valid for any sample.
Every error names the file (and line or column) and is a :class:`HarmfulInputError`.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..textio import read_text


class HarmfulInputError(ValueError):
    """Bad input for the study; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Instruction:
    id: str
    index: int
    prompt: str


def load_instructions(path: str | Path) -> list[Instruction]:
    """The English instructions of ``path`` (CSV with ``goal``, JSONL with ``prompt``, or plain text)."""
    path = Path(path)
    if not path.is_file():
        raise HarmfulInputError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    text = read_text(path, HarmfulInputError)
    if suffix == ".csv":
        prompts = _read_csv(path, text)
    elif suffix == ".jsonl":
        prompts = _read_jsonl(path, text)
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise HarmfulInputError(f"{path}: no instructions")
    return [Instruction(f"{i:04d}", i, p) for i, p in enumerate(prompts)]


def _read_csv(path: Path, text: str) -> list[str]:
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        if "goal" not in fields:
            raise HarmfulInputError(f"{path}: no 'goal' column (columns: {', '.join(fields) or 'none'}); "
                                    "expected AdvBench's harmful_behaviors.csv with columns goal,target")
        reader.fieldnames = fields
        out = []
        for rec in reader:
            goal = (rec.get("goal") or "").strip()
            if not goal:
                raise HarmfulInputError(f"{path}:{reader.line_num}: empty 'goal'")
            out.append(goal)
    return out


def _read_jsonl(path: Path, text: str) -> list[str]:
    out = []
    for lineno, line in enumerate(io.StringIO(text, newline=None), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise HarmfulInputError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        prompt = rec.get("prompt") if isinstance(rec, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise HarmfulInputError(f"{path}:{lineno}: no non-empty string field 'prompt'")
        out.append(prompt.strip())
    return out


SAMPLE_METHODS = ("project", "authors")


def sample_items(items: list[Instruction], n: int | None, seed: int, method: str = "project") -> list[Instruction]:
    """``n`` items drawn without replacement with ``seed`` (all items when ``n`` is None or ≥ their count).

    ``project``: a NumPy draw, in input order. ``authors``: the authors' selection — Python's
    ``random.seed(seed)``, ``random.shuffle`` of the lines, the first ``n``, in shuffled order (the paper:
    seed 10, n = 100; a shuffle depends only on the number of lines, so aligned files in every language give the
    same instructions). The same (input, n, seed, method) always gives the same sample."""
    if method not in SAMPLE_METHODS:
        raise HarmfulInputError(f"unknown --sample-method {method!r}; choose {' or '.join(SAMPLE_METHODS)}")
    if n is not None and n < 1:
        raise HarmfulInputError(f"--sample must be >= 1, got {n}")
    if method == "authors":
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        return [items[i] for i in order[:n]]
    if n is None or n >= len(items):
        return list(items)
    picked = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    return [items[i] for i in sorted(picked.tolist())]


def load_translated(directory: str | Path, lang: str, n_items: int, input_path: str | Path) -> list[str] | None:
    """Lines of ``directory/<lang>.txt`` — or of the authors' ``harmful_instructions_<lang>.txt`` — (one per input
    item), or None when neither file exists."""
    if not Path(directory).is_dir():
        raise HarmfulInputError(f"{directory}: translations folder does not exist")
    path = Path(directory) / f"{lang}.txt"
    if not path.is_file():
        path = Path(directory) / f"harmful_instructions_{lang}.txt"
    if not path.is_file():
        return None
    lines = read_text(path, HarmfulInputError).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise HarmfulInputError(f"{path}: empty file ({input_path} has {n_items} instructions to align with)")
    if len(lines) != n_items:
        raise HarmfulInputError(f"{path}: {len(lines)} lines but {input_path} has {n_items} instructions; "
                                "translation files must be aligned line by line with the input")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise HarmfulInputError(f"{path}:{lineno}: empty line (every instruction needs a translation)")
    return [line.strip() for line in lines]
