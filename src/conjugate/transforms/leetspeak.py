"""Leetspeak: six letters become look-alike digits (a→4, e→3, i→1, o→0, s→5, t→7, either case).

The map is many-to-one, so the inverse is honest only on a domain: a text that already contains one of the
digits ``0 1 3 4 5 7`` would have them turned into letters, and an upper-case ``A E I O S T`` comes back lower
case. On texts with neither, ``invert(apply(t)) == t`` exactly (``exact`` is True on that declared domain).
Every other character, Unicode included, passes through unchanged.

``leetspeak:authors`` reproduces the lingojam.com English-to-Leetspeak tool the paper's authors used for their
Leetspeak sentences (see :class:`AuthorsLeetspeak`); it adds ``b``→``8`` and its own capitalisation, so its
inverse is lossy.
"""

from __future__ import annotations

import re
from typing import Any

from .base import Transform, register

LETTERS = "aeiost"
DIGITS = "431057"
ENCODE = str.maketrans(LETTERS + LETTERS.upper(), DIGITS * 2)
DECODE = str.maketrans(DIGITS, LETTERS)
OUTSIDE = frozenset(DIGITS + LETTERS.upper())


class Leetspeak(Transform):
    """``"Repeat the input."`` → ``"R3p347 7h3 1npu7."``."""

    name = "leetspeak"
    exact = True
    domain = "text without the digits 0 1 3 4 5 7 and without the capitals A E I O S T"

    def apply(self, text: str) -> str:
        return text.translate(ENCODE)

    def invert(self, text: str) -> str:
        return text.translate(DECODE)

    def in_domain(self, text: str) -> bool:
        return OUTSIDE.isdisjoint(text)


AUTHORS_LETTERS = "abeiost"
AUTHORS_DIGITS = "4831057"
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
AUTHORS_ENCODE = str.maketrans(AUTHORS_LETTERS, AUTHORS_DIGITS)
AUTHORS_DECODE = str.maketrans(AUTHORS_DIGITS, AUTHORS_LETTERS)
AUTHORS_OUTSIDE = frozenset(AUTHORS_DIGITS)
RUN = re.compile(r"[^\s.]+")  # a run of characters between whitespace and full stops
SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n)[^A-Za-z\s]*([a-z])")
LONE_I = re.compile(r"(?<![A-Za-z])i(?![A-Za-z])")


def _upper_ascii(ch: str) -> str:
    return ch.upper() if "a" <= ch <= "z" else ch


class AuthorsLeetspeak(Transform):
    """The Leetspeak of the paper's sentence files (lingojam.com English-to-Leetspeak), rule by rule:

    1. ASCII letters are lower-cased;
    2. seven letters become digits: a→4, b→8, e→3, i→1, o→0, s→5, t→7;
    3. in each run of characters between whitespace and full stops (``.``), the first and the last character is
       upper-cased (a no-op on digits and punctuation, so ``dog,`` keeps a lower-case ``g`` while ``dog.`` gives
       ``D0G.``); a one-character run is upper-cased.

    ``"The bird sat on a post, oddly."`` → ``"7h3 81rD 547 0N 4 P057, 0ddlY."``. Case changes touch ASCII letters
    only; every other character (digits, punctuation, ``’``, ``…``, accented letters) passes through unchanged.

    The case of the input is lost, so ``exact`` is False. :meth:`invert` is best effort: digits 0 1 3 4 5 7 8 go
    back to letters, the text is lower-cased, and the first letter of the text, of each line and after ``. ! ?``
    plus whitespace is capitalised, as is a lone ``i``. On texts without those digits (:meth:`in_domain`) the
    inverse gives back the text up to the case of ASCII letters.
    """

    name = "leetspeak:authors"
    exact = False
    domain = ("any text; the inverse restores it up to ASCII letter case when it has none of the digits "
              "0 1 3 4 5 7 8 (case is lost: letters are lower-cased, then the first and last character of each "
              "run between whitespace and full stops is upper-cased)")

    def apply(self, text: str) -> str:
        low = text.translate(ASCII_LOWER).translate(AUTHORS_ENCODE)
        return RUN.sub(lambda m: self._edges(m.group()), low)

    @staticmethod
    def _edges(run: str) -> str:
        if len(run) == 1:
            return _upper_ascii(run)
        return _upper_ascii(run[0]) + run[1:-1] + _upper_ascii(run[-1])

    def invert(self, text: str) -> str:
        plain = text.translate(ASCII_LOWER).translate(AUTHORS_DECODE)
        plain = LONE_I.sub("I", plain)
        return SENTENCE_START.sub(lambda m: m.group()[:-1] + m.group(1).upper(), plain)

    def in_domain(self, text: str) -> bool:
        return AUTHORS_OUTSIDE.isdisjoint(text)


def _make(arg: str | None, **_: Any) -> Transform:
    return AuthorsLeetspeak() if arg == "authors" else Leetspeak()


register("leetspeak", _make, variants=("authors",))
