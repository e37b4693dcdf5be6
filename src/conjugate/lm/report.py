"""Formatting shared by the language-model studies' tables."""

from __future__ import annotations

import math
from pathlib import Path


def pct(x: float | None) -> str:
    """A rate as percent with one decimal; ``–`` for a missing or NaN value."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def short_name(spec: str) -> str:
    """A model's label: a local folder's last component, otherwise the spec itself."""
    return Path(spec).name if Path(spec).expanduser().is_dir() else spec
