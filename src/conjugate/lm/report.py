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


def _interval(ci: list | tuple, scale: float = 100.0, fmt: str = "{:.1f}") -> str:
    return "" if not ci or ci[0] is None else f" [{fmt.format(scale * ci[0])}, {fmt.format(scale * ci[1])}]"


def conjugate_table(s: dict, title: str = "Conjugate prompting") -> str:
    """Markdown for a pipeline summary (:func:`conjugate.lm.pipeline.summarise`): the metric per model, language
    and transform with bootstrap 95 % intervals, then per tuned model and transform the recovered share of the
    base → tuned drop."""
    what = "answer rate" if s["metric"] == "answered" else "accuracy"
    ts = s["transforms"]
    lines = [f"## {title}: {what} (%) per transform, bootstrap 95 % intervals", "",
             "| model | language | " + " | ".join(ts) + " |", "|---|---|" + "---|" * len(ts)]
    for m in s["models"]:
        for lang in s["languages"]:
            cells = [f"{pct(s['value'][m][lang][t])}{_interval(s['ci95'][m][lang][t])}" for t in ts]
            lines.append(f"| {short_name(m)} | {lang} | " + " | ".join(cells) + " |")
    if s.get("recovery") and len(ts) > 1:
        lines += ["", f"Recovered share of the base → tuned drop (base: {short_name(s['models'][0])}): "
                      "(tuned under the transform − tuned as is) / (base − tuned as is).", "",
                  "| tuned model | language | drop | transform | tuned, as is | tuned, transformed | recovered |",
                  "|---|---|---|---|---|---|---|"]
        for m, per in s["recovery"].items():
            for lang, arms in per.items():
                for t, r in arms.items():
                    share = "–" if r["recovered"] is None else \
                        f"{100 * r['recovered']:.0f}%{_interval(r['recovered_ci95'], fmt='{:.0f}')}"
                    lines.append(f"| {short_name(m)} | {lang} | {pct(s['drop'][m][lang])} | {t} | "
                                 f"{pct(r['tuned_identity'])} | {pct(r['tuned'])} | {share} |")
    return "\n".join(lines) + "\n"


def conjugate_lines(s: dict) -> list[str]:
    """One console line per (model, language): the metric under each transform."""
    return [f"{s['metric']} % | {m} | {lang}: " + "  ".join(
        f"{t} {pct(v)}" for t, v in s["value"][m][lang].items()) for m in s["models"] for lang in s["languages"]]
