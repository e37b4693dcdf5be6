"""Character-level encodings with exact inverses: ROT13, Base64 (of the UTF-8 bytes) and reversal.

- ``rot13`` rotates the 26 ASCII letters by 13 places (its own inverse); everything else passes through.
- ``base64`` encodes the text's UTF-8 bytes with the standard alphabet and padding. Exact for every string
  that has a UTF-8 encoding (all but those holding lone surrogate code points); inverting text that is not
  valid Base64, or whose bytes are not UTF-8, raises a :class:`TransformError`.
- ``reverse`` reverses the order of the code points (its own inverse).
"""

from __future__ import annotations

import base64
import binascii
import codecs

from .base import Transform, TransformError, register


class Rot13(Transform):
    """``"Hello"`` → ``"Uryyb"``."""

    name = "rot13"
    exact = True
    domain = "any text"

    def apply(self, text: str) -> str:
        return codecs.encode(text, "rot13")

    def invert(self, text: str) -> str:
        return codecs.encode(text, "rot13")


class Base64(Transform):
    """``"Hi"`` → ``"SGk="``."""

    name = "base64"
    exact = True
    domain = "any text with a UTF-8 encoding (no lone surrogates)"

    def apply(self, text: str) -> str:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TransformError(f"base64: text has no UTF-8 encoding ({e.reason} at position {e.start})") from None
        return base64.b64encode(data).decode("ascii")

    def invert(self, text: str) -> str:
        try:
            data = base64.b64decode(text.strip().encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise TransformError(f"base64: not valid Base64: {text[:40]!r}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise TransformError("base64: the decoded bytes are not UTF-8 text") from None

    def in_domain(self, text: str) -> bool:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


class Reverse(Transform):
    """``"abc"`` → ``"cba"``."""

    name = "reverse"
    exact = True
    domain = "any text"

    def apply(self, text: str) -> str:
        return text[::-1]

    def invert(self, text: str) -> str:
        return text[::-1]


register("rot13", lambda arg, **_: Rot13())
register("base64", lambda arg, **_: Base64())
register("reverse", lambda arg, **_: Reverse())

__all__ = ["Base64", "Reverse", "Rot13"]
