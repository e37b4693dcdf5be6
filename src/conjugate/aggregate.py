"""Aggregate a sweep: statistics over seeds for every grid point, a Markdown table and error-bar figures.

Reads only ``DIR/sweep.json`` and the ``summary.json`` of each finished run, so it can be rerun at any time
(``conjugate sweep aggregate DIR``), also while a sweep is still going. Writes ``DIR/aggregate.json``,
``DIR/aggregate.md`` and ``DIR/figures/vs_<grid key>.png``.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .config import ConfigError
from .runs import atomic_write_text, read_json, write_figure, write_json
from .studies import STUDIES, load_target

SKIP_FIELDS = {"seed"}  # numeric, but an identifier, not a result


def flatten_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number in a nested dict/list, keyed by its dotted path (``cont_mse.finetuned``,
    ``distance_sweep.0.s``). Booleans, strings and None are left out."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        items = ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, list):
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        if isinstance(obj, int | float) and not isinstance(obj, bool) and math.isfinite(obj) and prefix:
            out[prefix] = float(obj)
        return out
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else k
        if key not in SKIP_FIELDS:
            out.update(flatten_numbers(v, key))
    return out


def describe(values: list[float]) -> dict[str, float | int | None]:
    """mean, sample standard deviation (n − 1; None for a single value), min, max, n."""
    n = len(values)
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else None,
            "min": min(values), "max": max(values), "n": n}


def point_label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in point.items()) or "(no grid)"


def _short(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(_short(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def load_sweep(folder: Path) -> dict[str, Any]:
    path = folder / "sweep.json"
    if not path.exists():
        raise ConfigError(f"{path}: no such file (not a sweep folder)")
    try:
        spec = read_json(path)
        _ = spec["study"], spec["grid"], spec["runs"], [(r["name"], r["point"], r["seed"]) for r in spec["runs"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: malformed sweep spec ({type(e).__name__}: {e})") from None
    return spec


def aggregate_sweep(folder: str | Path) -> dict[str, Any]:
    """Compute and write ``aggregate.json``, ``aggregate.md`` and the figures of the sweep in ``folder``."""
    folder = Path(folder)
    spec = load_sweep(folder)
    study = STUDIES.get(spec["study"])
    points: list[dict[str, Any]] = []
    keys = list(spec["grid"])
    combos = [dict(zip(keys, c, strict=True)) for c in itertools.product(*(spec["grid"][k] for k in keys))]
    check = None
    if study and study.claims:
        check = load_target(study.claims)
    for point in combos:
        runs = [r for r in spec["runs"] if r["point"] == point]
        flat, finished, missing, summaries = [], [], [], []
        for r in runs:
            path = folder / "runs" / r["name"] / "summary.json"
            if not path.exists():
                missing.append(r["name"])
                continue
            try:
                summaries.append(read_json(path))
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path}: unreadable summary ({e})") from None
            flat.append(flatten_numbers(summaries[-1]))
            finished.append(r["name"])
        fields: dict[str, list[float]] = {}
        for f in flat:
            for k, v in f.items():
                fields.setdefault(k, []).append(v)
        points.append({"point": point, "label": point_label(point), "runs": finished, "missing": missing,
                       "seeds": [r["seed"] for r in runs if r["name"] in finished],
                       "fields": {k: describe(v) for k, v in fields.items()},
                       "claims": count_claims(check, finished, summaries) if check else {}})
    result = {"study": spec["study"], "preset": spec.get("preset"), "overrides": spec.get("overrides", {}),
              "grid": spec["grid"], "seeds": spec.get("seeds"), "points": points}
    write_json(folder / "aggregate.json", result)
    key_patterns = study.key_fields if study else ()
    atomic_write_text(folder / "aggregate.md", markdown(result, key_patterns))
    figures(folder / "figures", result, study.figure_panels if study else ())
    return result


def count_claims(check: Any, names: list[str], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per claim: its target, how many of the runs that have its numbers meet it, and each run's value."""
    out: dict[str, Any] = {}
    for name, summary in zip(names, summaries, strict=True):
        for claim, c in check(summary).items():
            entry = out.setdefault(claim, {"target": c["target"], "met": 0, "n": 0, "values": {}})
            entry["met"] += bool(c["met"])
            entry["n"] += 1
            entry["values"][name] = c["value"]
    return out


def key_fields(result: dict[str, Any], patterns: tuple[str, ...]) -> list[str]:
    """The fields matching ``patterns`` in pattern order; without patterns, every top-level number."""
    available: list[str] = []
    for p in result["points"]:
        available += [k for k in p["fields"] if k not in available]
    if not patterns:
        return [k for k in available if "." not in k]
    out: list[str] = []
    for pat in patterns:
        out += [k for k in available if fnmatch.fnmatchcase(k, pat) and k not in out]
    return out


def _cell(stats: dict[str, Any] | None, n_runs: int) -> str:
    if stats is None:
        return "–"
    cell = f"{stats['mean']:.4g}" + (f" ± {stats['std']:.2g}" if stats["std"] is not None else "")
    return cell + (f" (n={stats['n']})" if stats["n"] != n_runs else "")


def markdown(result: dict[str, Any], patterns: tuple[str, ...]) -> str:
    """A table: one row per grid point, mean ± std over seeds of the key fields."""
    fields = key_fields(result, patterns)
    keys = list(result["grid"])
    over = ", ".join(f"{k}={v}" for k, v in result.get("overrides", {}).items())
    lines = [f"# Sweep: study `{result['study']}`, preset `{result['preset']}`", "",
             f"Seeds {result['seeds']}; grid {json.dumps(result['grid'])}" + (f"; --set {over}" if over else "") + ".",
             "Cells: mean ± sample standard deviation over seeds (n shown when a run lacks the field).", "",
             "| " + " | ".join(keys + ["runs"] + fields) + " |", "|" + "---|" * (len(keys) + 1 + len(fields))]
    for p in result["points"]:
        n = len(p["runs"])
        runs = f"{n}" + (f" ({len(p['missing'])} unfinished)" if p["missing"] else "")
        lines.append("| " + " | ".join([_short(p["point"][k]) for k in keys] + [runs]
                                       + [_cell(p["fields"].get(f), n) for f in fields]) + " |")
    lines += claims_markdown(result)
    if keys:
        lines += ["", *[f"![{k}](figures/vs_{k}.png)" for k in keys]]
    return "\n".join(lines) + "\n"


def claims_markdown(result: dict[str, Any]) -> list[str]:
    """A second table: per grid point and claim, runs meeting it out of the runs that have its numbers, and
    the values run by run (empty when the study defines no claims)."""
    rows = [(p, name, c) for p in result["points"] for name, c in p.get("claims", {}).items()]
    if not rows:
        return []
    keys = list(result["grid"])
    lines = ["", "Claims: runs meeting each claim / runs with its numbers, and the value run by run.", "",
             "| " + " | ".join(keys + ["claim", "target", "met", "values"]) + " |",
             "|" + "---|" * (len(keys) + 4)]
    for p, name, c in rows:
        values = ", ".join(f"{v:.3g}" for v in c["values"].values())
        lines.append("| " + " | ".join([_short(p["point"][k]) for k in keys]
                                       + [name, c["target"], f"{c['met']}/{c['n']}", values]) + " |")
    return lines


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def figures(folder: Path, result: dict[str, Any], panels: tuple[tuple[str, tuple[str, ...]], ...]) -> list[Path]:
    """For each grid key, one figure: a panel per group of fields, mean ± std against the key's values,
    one line per combination of the other keys' values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result["grid"]
    if not grid:
        return []
    panels = panels or tuple((f, (f,)) for f in key_fields(result, ()))
    by_point = {json.dumps(p["point"], sort_keys=True): p for p in result["points"]}
    written = []
    for key, values in grid.items():
        others = [k for k in grid if k != key]
        rest = [dict(zip(others, c, strict=True)) for c in itertools.product(*(grid[k] for k in others))]
        xs = values if _numeric(values) else list(range(len(values)))
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False, layout="constrained")
        span = (max(xs) - min(xs)) or 1.0
        for ax, (title, fields) in zip(axes[0], panels, strict=True):
            lines = list(itertools.product(fields, rest))
            for i, (field, other) in enumerate(lines):
                dodge = (i - (len(lines) - 1) / 2) * 0.012 * span  # keep overlapping error bars apart
                pts = [(x + dodge, by_point[json.dumps({**other, key: v}, sort_keys=True)]["fields"].get(field))
                       for x, v in zip(xs, values, strict=True)]
                pts = [(x, s) for x, s in pts if s is not None]
                if not pts:
                    continue
                label = field + (f" ({point_label(other)})" if other else "")
                ax.errorbar([x for x, _ in pts], [s["mean"] for _, s in pts], yerr=[s["std"] or 0.0 for _, s in pts],
                            marker="o", capsize=3, label=label)
            ax.set(title=title, xlabel=key, ylabel="mean ± std over seeds")
            ax.ticklabel_format(axis="y", useOffset=False)
            if not _numeric(values):
                ax.set_xticks(xs, [_short(v) for v in values])
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        written.append(write_figure(fig, folder / f"vs_{key}.png", 110, bbox_inches="tight"))
    return written


__all__ = ["aggregate_sweep", "flatten_numbers", "describe", "load_sweep", "markdown", "figures"]
