"""The project's own data files, read from the installed package.

``icl/sentences/<lang>.txt``: short everyday sentences written for this project, one per line, aligned line by
line across English, French, Spanish, Dutch and Hungarian (line ``i`` is the same sentence in every language).
``icl/lang/<lang>.json``: per-language prompt pieces for the ICL-vs-instruction-following study (the two task
instructions, the ``Input``/``Output`` labels, and the arithmetic question templates).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

LANGUAGES = ("en", "fr", "es", "nl", "hu")


def _check(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; valid languages: {', '.join(LANGUAGES)}")


def _file(*parts: str) -> Any:
    return resources.files(__name__).joinpath("icl", *parts)


@cache
def _sentences(lang: str) -> tuple[str, ...]:
    text = _file("sentences", f"{lang}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines())


def sentences(lang: str) -> list[str]:
    """The corpus sentences in ``lang`` (aligned with every other language)."""
    _check(lang)
    return list(_sentences(lang))


@cache
def _pack(lang: str) -> str:
    return _file("lang", f"{lang}.json").read_text(encoding="utf-8")


def language_pack(lang: str) -> dict[str, Any]:
    """Prompt pieces for ``lang``: ``instructions`` {repeat, capitalize}, ``labels`` {input, output},
    ``math`` {plus, minus, times} templates with ``{a}``/``{b}``, ``name``, ``code``."""
    _check(lang)
    return json.loads(_pack(lang))


__all__ = ["LANGUAGES", "language_pack", "sentences"]
