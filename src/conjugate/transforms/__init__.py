"""Conjugate transforms: invertible (or honestly lossy) rewrites of a prompt that keep its task.

    >>> from conjugate.transforms import get_transform
    >>> t = get_transform("leetspeak+base64")
    >>> t.invert(t.apply("hello world"))
    'hello world'

Families: ``leetspeak``, ``piglatin`` (classic, lossy inverse), ``piglatin-marked`` (exact), ``leetspeak:authors``
and ``piglatin:authors`` (the tools behind the paper's sentence files, lossy inverses), ``rot13``,
``base64``, ``reverse``, and ``translate:<lang>[@<translator>]`` (see :mod:`conjugate.transforms.translate`;
the model-backed translators, ``hf:`` and ``llm:``, are :mod:`conjugate.lm.translators`).
"""

from __future__ import annotations

from . import ciphers, leetspeak, piglatin, translate  # noqa: F401  (each registers its transforms)
from .base import Compose, NotInvertibleError, Transform, TransformError, available, get_transform, register
from .translate import (
    TableTranslator,
    TranslateTransform,
    TranslationError,
    Translator,
    get_translator,
    register_translator,
)

__all__ = [
    "Compose",
    "NotInvertibleError",
    "TableTranslator",
    "Transform",
    "TransformError",
    "TranslateTransform",
    "TranslationError",
    "Translator",
    "available",
    "get_transform",
    "get_translator",
    "register",
    "register_translator",
]
