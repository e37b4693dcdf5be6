"""How closely the project's Leetspeak and Pig Latin reproduce the paper's own sentence files.

Usage: python scripts/authors_transforms.py [AUTHORS_DIR] [--top N]

AUTHORS_DIR (default ``../shared/authors`` beside the repository) holds ``sentences/random_sentences_{en,ls,pl}.txt``
from the authors' repository (kothasuhas/understanding-forgetting): 500 aligned lines, ``ls`` made with the
lingojam.com English-to-Leetspeak tool and ``pl`` with the charactercalculator.com Pig Latin translator. The files
are only read, never copied.

For each transform (``leetspeak`` and ``piglatin`` as they are, and the ``:authors`` variants) it prints

- the character agreement of ``apply(en)`` with the authors' file: for each line, the characters in the matching
  blocks of :class:`difflib.SequenceMatcher` (``autojunk=False``) between our line and theirs, summed over lines
  and divided by the sum over lines of the longer line's length — 1.0 only when every line is identical, and a
  character counts once at most;
- how many lines are identical;
- the most common remaining differences, as ``ours → theirs`` fragments;
- the same agreement for ``invert`` of the authors' file against the English, as is and ignoring case
  (the inverses are best effort: both variants lose information).
"""

from __future__ import annotations

import argparse
import collections
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from conjugate.transforms import get_transform  # noqa: E402

FILES = {"leetspeak": "ls", "piglatin": "pl"}


def read_lines(folder: Path, lang: str) -> list[str]:
    return (folder / "sentences" / f"random_sentences_{lang}.txt").read_text(encoding="utf-8").split("\n")


def agreement(ours: list[str], theirs: list[str]) -> float:
    """Matched characters (SequenceMatcher matching blocks, per line) over the sum of the longer lines' lengths."""
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} lines against {len(theirs)}")
    matched = total = 0
    for a, b in zip(ours, theirs, strict=True):
        matched += sum(m.size for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
        total += max(len(a), len(b))
    return matched / total if total else 1.0


def differences(ours: list[str], theirs: list[str]) -> collections.Counter[tuple[str, str]]:
    """(our fragment, their fragment) for every non-matching opcode, counted over all lines."""
    out: collections.Counter[tuple[str, str]] = collections.Counter()
    for a, b in zip(ours, theirs, strict=True):
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if tag != "equal":
                out[(a[i1:i2], b[j1:j2])] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("authors", nargs="?", type=Path, default=ROOT.parent / "shared" / "authors")
    ap.add_argument("--top", type=int, default=12, help="how many of the most common differences to show")
    args = ap.parse_args(argv)
    if not (args.authors / "sentences").is_dir():
        print(f"no authors' sentences under {args.authors}: clone kothasuhas/understanding-forgetting and pass "
              "its icl_vs_if folder's parent layout (sentences/random_sentences_*.txt)", file=sys.stderr)
        return 2
    en = read_lines(args.authors, "en")
    for family, lang in FILES.items():
        theirs = read_lines(args.authors, lang)
        for spec in (family, f"{family}:authors"):
            t = get_transform(spec)
            ours = t.apply_many(en)
            same = sum(a == b for a, b in zip(ours, theirs, strict=True))
            print(f"{spec:18} vs random_sentences_{lang}.txt: character agreement {agreement(ours, theirs):.4f}, "
                  f"identical lines {same}/{len(en)}")
            for (a, b), n in differences(ours, theirs).most_common(args.top):
                print(f"    {n:5d}  {a!r} → {b!r}")
            back = t.invert_many(theirs)
            print(f"{'':18} invert(their file) vs English: agreement {agreement(back, en):.4f}, ignoring case "
                  f"{agreement([s.lower() for s in back], [s.lower() for s in en]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
