"""Pig Latin, word by word: a word's leading consonants move to its end followed by ``ay``; a word that starts
with a vowel gets ``yay``. Words are runs of ASCII letters; everything else (spaces, punctuation, digits,
accented letters) stays where it is. ``qu`` moves as one cluster (``queen`` → ``eenquay``) and ``y`` is a
consonant only as a word's first letter. Capitalisation follows the word: ``What`` → ``Atwhay``,
``WHAT`` → ``ATWHAY``.

Three variants:

- ``piglatin`` — the classic, readable form used for prompts (as in the paper: ``Epeatray ethay inputyay``).
  It cannot be inverted exactly: ``ethay`` may come from ``the`` or ``het``, ``ellowyay`` from ``yellow`` or
  ``ellow``. :meth:`PigLatin.invert` guesses — it moves the longest common English onset (``str``, ``th``,
  ``wh``, ``c``...) found before ``ay`` back to the front, so ``ethay`` → ``the`` but ``epeatray`` → ``trepea``
  — and ``exact`` is False.
- ``piglatin-marked`` — a hyphen marks where the moved cluster starts: ``the`` → ``e-thay``, ``apple`` →
  ``apple-ay``, ``What`` → ``At-whay``. The inverse reads the cluster back from the marker, so it is exact on
  every text whose letter runs are each lower case, Capitalised or ALL CAPS (a mixed-case run such as ``hEllo``
  encodes like ``Hello``; that is the only loss). Hyphens already in the text are fine (``well-known`` →
  ``ell-way-own-knay``).
- ``piglatin:authors`` — the Pig Latin of the paper's sentence files (the charactercalculator.com translator):
  apostrophes inside words are dropped, ``u`` after ``q`` is a vowel, a vowel-initial word ending in ``y`` gets
  only ``ay``, a hyphen separates a doubled letter at the join, and words without a vowel stay as they are
  (see :class:`AuthorsPigLatin`). Lossy inverse, ``exact`` False.
"""

from __future__ import annotations

import re
from typing import Any

from .base import Transform, TransformError, register

WORD = re.compile(r"[A-Za-z]+")
TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z]+")
VOWELS = "aeiou"
# English word-initial consonant clusters: the classic inverse moves the longest one it finds back to the front.
ONSETS = frozenset("b c d f g h j k l m n p q r s t v w x y z bl br ch cl cr dr dw fl fr gl gr kn kl pl pr ph qu "
                   "sc sh sk sl sm sn sp st sw th tr tw wh wr sch scr shr sph spl spr squ str thr".split())


def split_word(word: str) -> tuple[str, str]:
    """(leading consonant cluster, rest). A word with no vowel has an empty cluster."""
    low = word.lower()
    for i, ch in enumerate(low):
        if ch == "u" and i > 0 and low[i - 1] == "q":
            continue
        if ch in VOWELS or (ch == "y" and i > 0):
            return word[:i], word[i:]
    return "", word


def case_style(word: str) -> str:
    """``upper`` (two or more letters, all capitals), ``title``, ``lower`` or ``mixed``."""
    if len(word) > 1 and word.isupper():
        return "upper"
    if word[0].isupper() and word[1:] == word[1:].lower():
        return "title"
    return "lower" if word.islower() else "mixed"


def _restyle(text: str, style: str) -> str:
    if style == "upper":
        return text.upper()
    if style == "title":
        return text.lower().capitalize()
    return text.lower() if style == "lower" else text


class PigLatin(Transform):
    """Classic Pig Latin (lossy inverse)."""

    name = "piglatin"
    exact = False
    domain = "any text (the inverse is a best-effort guess)"

    def apply(self, text: str) -> str:
        return WORD.sub(lambda m: self._word(m.group()), text)

    @staticmethod
    def _word(word: str) -> str:
        cluster, stem = split_word(word)
        style = case_style(word)
        out = stem + cluster + ("ay" if cluster else "yay")
        return out if style == "mixed" else _restyle(out, style)

    def invert(self, text: str) -> str:
        return WORD.sub(lambda m: self._unword(m.group()), text)

    @staticmethod
    def _unword(word: str) -> str:
        style = case_style(word)
        low = word.lower()
        if low.endswith("yay") and len(low) > 3:
            plain = low[:-3]
        elif low.endswith("ay") and len(low) > 2:
            body = low[:-2]
            cut = next((k for k in (3, 2, 1) if len(body) > k and body[-k:] in ONSETS), 0)
            plain = body[len(body) - cut:] + body[:len(body) - cut]
        else:
            plain = low
        return _restyle(plain, "lower" if style == "mixed" else style)


class MarkedPigLatin(Transform):
    """Pig Latin with a hyphen before the moved cluster; exact on lower/Capitalised/ALL-CAPS words."""

    name = "piglatin-marked"
    exact = True
    domain = "text whose ASCII-letter runs are each lower case, Capitalised or ALL CAPS"

    def apply(self, text: str) -> str:
        return WORD.sub(lambda m: self._word(m.group()), text)

    @staticmethod
    def _word(word: str) -> str:
        cluster, stem = split_word(word)
        style = case_style(word)
        if style == "mixed":
            return f"{stem}-{cluster}ay"
        if style == "title":
            return f"{stem.lower().capitalize()}-{cluster.lower()}ay"
        return _restyle(f"{stem}-{cluster}ay", style)

    def invert(self, text: str) -> str:
        tokens = [m.group() for m in TOKEN.finditer(text)]
        out: list[str] = []
        i = pos = 0
        while i < len(tokens):
            tok = tokens[i]
            if not tok[0].isascii() or not tok[0].isalpha():
                out.append(tok)
                pos += len(tok)
                i += 1
                continue
            if i + 2 >= len(tokens) or tokens[i + 1] != "-" or not tokens[i + 2].lower().endswith("ay"):
                snippet = "".join(tokens[i:i + 3])[:40]
                raise TransformError(f"not marked Pig Latin at character {pos}: expected <stem>-<cluster>ay, "
                                     f"got {snippet!r}")
            stem, suffix = tok, tokens[i + 2]
            out.append(self._unword(stem, suffix))
            pos += len(stem) + 1 + len(suffix)
            i += 3
        return "".join(out)

    @staticmethod
    def _unword(stem: str, suffix: str) -> str:
        word = suffix[:-2] + stem
        whole = stem + suffix
        if whole.isupper() and len(word) > 1:
            return word
        rest = stem[1:] + suffix
        if stem[0].isupper() and rest == rest.lower():
            return word.lower().capitalize()
        return word

    def in_domain(self, text: str) -> bool:
        return all(case_style(m.group()) != "mixed" for m in WORD.finditer(text))


# Words as the authors' translator sees them: ASCII letter runs joined by apostrophes (' or ’), which it drops.
AUTHORS_WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")
APOSTROPHES = re.compile(r"['\u2019]")
# Clusters the best-effort inverse may move back: as for the classic form, but ``u`` is a vowel here.
AUTHORS_ONSETS = (ONSETS - {"qu", "squ"}) | {"sq"}


def split_authors(word: str) -> tuple[str, str] | None:
    """(leading consonants, rest) with ``u`` always a vowel and ``y`` a vowel except as the first letter; None
    when the word has no vowel."""
    low = word.lower()
    for i, ch in enumerate(low):
        if ch in VOWELS or (ch == "y" and i > 0):
            return word[:i], word[i:]
    return None


class AuthorsPigLatin(Transform):
    """The Pig Latin of the paper's sentence files (charactercalculator.com), rule by rule:

    1. a word is a run of ASCII letters, possibly joined by apostrophes (``'`` or ``’``); the apostrophes are
       dropped (``can't`` → ``cant`` → ``antcay``);
    2. the leading consonants move to the end followed by ``ay``; ``u`` is always a vowel, so ``qu`` does not move
       together (``quiz`` → ``uizqay``), and ``y`` is a consonant only as the first letter (``my`` → ``ymay``);
    3. when the remaining stem ends with the letter the moved cluster starts with, a hyphen separates them
       (``cat`` → ``atcay`` but ``tent`` → ``ent-tay``, ``that`` → ``at-thay``, ``Mum`` → ``Um-may``);
    4. a word starting with a vowel gets ``yay`` — only ``ay`` when it ends in ``y`` (``egg`` → ``eggyay``,
       ``easy`` → ``easyay``);
    5. a word without a vowel stays as it is (``TV``, ``Mr``, ``hmm``);
    6. capitalisation follows the word as in the classic form (``That`` → ``At-thay``, ``WHAT`` → ``ATWHAY``).

    Everything else (spaces, punctuation, digits, accented letters, existing hyphens) stays where it is.

    Not invertible exactly (``anyay`` is ``an`` or ``any``; apostrophes are gone), so ``exact`` is False.
    :meth:`invert` guesses: a hyphen whose right side is ``<cluster>ay`` with the cluster starting with the left
    side's last letter is a marked join; otherwise it moves the longest common English onset found before ``ay``
    back to the front (never one starting with the stem's last letter, which would have been hyphenated), keeps
    the ``y`` of ``…lyay`` (adverbs in ``-ly``), and drops ``yay`` from other vowel-initial words.
    """

    name = "piglatin:authors"
    exact = False
    domain = "any text (apostrophes inside words are dropped; the inverse is a best-effort guess)"

    def apply(self, text: str) -> str:
        return AUTHORS_WORD.sub(lambda m: self._word(APOSTROPHES.sub("", m.group())), text)

    @staticmethod
    def _word(word: str) -> str:
        split = split_authors(word)
        if split is None:
            return word
        cluster, stem = split
        if not cluster:
            out = stem + ("ay" if stem[-1] in "yY" else "yay")
        elif stem[-1].lower() == cluster[0].lower():
            out = f"{stem}-{cluster}ay"
        else:
            out = stem + cluster + "ay"
        style = case_style(word)
        return out if style == "mixed" else _restyle(out, style)

    def invert(self, text: str) -> str:
        tokens = [m.group() for m in TOKEN.finditer(text)]
        out: list[str] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if WORD.fullmatch(tok) and i + 2 < len(tokens) and tokens[i + 1] == "-" and self._joins(tok, tokens[i + 2]):
                style = case_style(tok + tokens[i + 2])
                plain = tokens[i + 2][:-2].lower() + tok.lower()
                out.append(_restyle(plain, "lower" if style == "mixed" else style))
                i += 3
            else:
                out.append(self._unword(tok) if WORD.fullmatch(tok) else tok)
                i += 1
        return "".join(out)

    @staticmethod
    def _joins(stem: str, suffix: str) -> bool:
        """Whether ``<stem>-<suffix>`` is a marked join: ``suffix`` is ``<consonants>ay`` starting with the stem's
        last letter."""
        cluster = suffix[:-2]
        return (suffix[-2:].lower() == "ay" and bool(cluster) and stem[-1].lower() == cluster[0].lower()
                and split_authors(cluster + "a") == (cluster, "a"))

    @staticmethod
    def _unword(word: str) -> str:
        style = case_style(word)
        low = word.lower()
        if low.endswith("yay") and len(low) > 3:
            body = low[:-3]
            keep_y = re.search(r"[^aeiouyl]l$|..ll$", body) is not None  # -ly adverbs: only → onlyay
            plain = body + "y" if keep_y else body
        elif low.endswith("ay") and len(low) > 2:
            body = low[:-2]
            cut = next((k for k in (3, 2, 1) if len(body) > k and body[-k:] in AUTHORS_ONSETS
                        and body[-k] != body[-k - 1]), 0)
            plain = body[len(body) - cut:] + body[:len(body) - cut]
        else:
            plain = low
        return _restyle(plain, "lower" if style == "mixed" else style)


def _classic(arg: str | None, **_: Any) -> Transform:
    return AuthorsPigLatin() if arg == "authors" else PigLatin()


def _marked(arg: str | None, **_: Any) -> MarkedPigLatin:
    return MarkedPigLatin()


register("piglatin", _classic, variants=("authors",))
register("piglatin-marked", _marked)
