"""Leetspeak: six letters become look-alike digits (a→4, e→3, i→1, o→0, s→5, t→7, either case).

The map is many-to-one, so the inverse is honest only on a domain: a text that already contains one of the
digits ``0 1 3 4 5 7`` would have them turned into letters, and an upper-case ``A E I O S T`` comes back lower
case. On texts with neither, ``invert(apply(t)) == t`` exactly (``exact`` is True on that declared domain).
Every other character, Unicode included, passes through unchanged.
"""

from __future__ import annotations

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


def _make(arg: str | None, **_: Any) -> Leetspeak:
    return Leetspeak()


register("leetspeak", _make)
