"""Human labels: export a run's replies for annotation, and measure agreement with the automatic judge.

``export_labels(run, csv)`` writes one row per reply: ``id, model, lang, prompt, prompt_en, response,
back_translation, auto_label, human_label`` (empty). Annotators fill ``human_label`` with ANSWER, REFUSE or
AMBIGUOUS (any case; blank = not labelled yet). ``agreement(csv, run)`` compares those with the run's current
automatic labels (so relabelling a run with another ``--judge`` and running ``agreement`` again compares that
judge) and reports Cohen's kappa and the 3×3 confusion matrix (rows: automatic label, columns: human label),
overall and per language; it writes ``agreement.json`` into the run folder.

Cohen's kappa: with ``N`` labelled items, ``p_o`` = the share where the two labels agree and ``p_e`` =
``Σ_k (row_k / N)(col_k / N)`` = the agreement expected by chance from each rater's label frequencies,
``κ = (p_o − p_e) / (1 − p_e)``. When ``p_e = 1`` (both raters used one and the same label throughout) kappa is
undefined and reported as ``null``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...runs import atomic_write_text, write_json
from ..textio import read_text
from .data import HarmfulInputError
from .judge import LABELS
from .study import current_rows

EXPORT_COLUMNS = ("id", "model", "lang", "prompt", "prompt_en", "response", "back_translation", "auto_label",
                  "human_label")


def confusion_matrix(auto: Sequence[str], human: Sequence[str], labels: Sequence[str] = LABELS) -> np.ndarray:
    """Counts, rows = automatic label, columns = human label, in ``labels`` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(m, ([index[a] for a in auto], [index[h] for h in human]), 1)
    return m


def cohen_kappa(matrix: np.ndarray) -> tuple[float | None, float, float]:
    """(kappa, observed agreement, chance agreement) of a square confusion matrix; kappa None if undefined."""
    m = np.asarray(matrix, dtype=float)
    n = m.sum()
    if n == 0:
        return None, float("nan"), float("nan")
    p_o = np.trace(m) / n
    p_e = float((m.sum(axis=1) / n) @ (m.sum(axis=0) / n))
    kappa = None if np.isclose(p_e, 1.0) else float((p_o - p_e) / (1 - p_e))
    return kappa, float(p_o), p_e


def export_labels(run_dir: str | Path, out_csv: str | Path, force: bool = False) -> int:
    """Write the annotation CSV for every reply of the run; returns the number of rows.

    Refuses to overwrite a CSV that already has human labels unless ``force``.
    """
    out_csv = Path(out_csv)
    if out_csv.exists() and not force and any(read_human_labels(out_csv).values()):
        raise HarmfulInputError(f"{out_csv} already holds human labels; pass --force to overwrite it")
    rows = current_rows(run_dir)
    if not rows:
        raise HarmfulInputError(f"{run_dir}: no replies to export (run `conjugate harmful run` first)")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "auto_label": r["label"], "human_label": "", "response": r.get("response") or "",
                    "back_translation": r.get("back_translation") or ""})
    atomic_write_text(out_csv, buf.getvalue())
    return len(rows)


def read_human_labels(path: str | Path) -> dict[tuple[str, str, str], str]:
    """(model, lang, id) → human label ('' when blank); errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise HarmfulInputError(f"{path}: no such labels file")
    with io.StringIO(read_text(path, HarmfulInputError), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("id", "model", "lang", "human_label") if c not in (reader.fieldnames or [])]
        if missing:
            raise HarmfulInputError(f"{path}: missing column(s) {', '.join(missing)}; "
                                    "write it with `conjugate harmful export`")
        out = {}
        for rec in reader:
            label = (rec["human_label"] or "").strip().upper()
            if label and label not in LABELS:
                raise HarmfulInputError(f"{path}:{reader.line_num}: human_label {rec['human_label']!r} is not one of "
                                        f"{', '.join(LABELS)} (or blank)")
            key = ((rec["model"] or "").strip(), (rec["lang"] or "").strip(), (rec["id"] or "").strip().zfill(4))
            if key in out:
                raise HarmfulInputError(f"{path}:{reader.line_num}: duplicate row for {'/'.join(key)}")
            out[key] = label
    return out


def _block(auto: Sequence[str], human: Sequence[str]) -> dict:
    m = confusion_matrix(auto, human)
    kappa, p_o, p_e = cohen_kappa(m)
    return {"n": int(m.sum()), "kappa": kappa, "observed_agreement": p_o, "chance_agreement": p_e,
            "confusion": m.tolist()}


def agreement(labels_csv: str | Path, run_dir: str | Path) -> dict:
    """Kappa and confusion matrices between the run's automatic labels and the human labels; writes
    ``agreement.json`` into ``run_dir`` and returns the same dict."""
    human = read_human_labels(labels_csv)
    auto = {(r["model"], r["lang"], r["id"]): r for r in current_rows(run_dir)}
    unknown = [k for k, v in human.items() if v and k not in auto]
    if unknown:
        raise HarmfulInputError(f"{labels_csv}: row {'/'.join(unknown[0])} is not a reply of the run in {run_dir}")
    pairs = [(auto[k]["label"], v, k[1]) for k, v in sorted(human.items()) if v]
    if not pairs:
        raise HarmfulInputError(f"{labels_csv}: no human labels filled in yet (column human_label)")
    judges = sorted({auto[k]["judge"] for k, v in human.items() if v})
    result = {"labels": list(LABELS), "rows": "automatic label", "columns": "human label", "judge": judges,
              "unlabelled": sum(1 for v in human.values() if not v),
              "overall": _block([a for a, _, _ in pairs], [h for _, h, _ in pairs]),
              "per_language": {}}
    for lang in dict.fromkeys(lang for _, _, lang in pairs):
        sub = [(a, h) for a, h, lg in pairs if lg == lang]
        result["per_language"][lang] = _block([a for a, _ in sub], [h for _, h in sub])
    write_json(Path(run_dir) / "agreement.json", result)
    return result


def format_agreement(result: dict) -> str:
    """The printed report: kappa, agreement, the confusion matrix, per-language kappa."""
    o = result["overall"]
    kappa = "undefined" if o["kappa"] is None else f"{o['kappa']:.3f}"
    lines = [f"judge: {', '.join(result['judge'])}; {o['n']} human labels ({result['unlabelled']} rows unlabelled)",
             f"Cohen's kappa {kappa}; observed agreement {o['observed_agreement']:.3f}, "
             f"chance {o['chance_agreement']:.3f}", "",
             "confusion (rows: automatic, columns: human)",
             " " * 10 + "".join(f"{lab:>10}" for lab in LABELS)]
    for lab, row in zip(LABELS, o["confusion"], strict=True):
        lines.append(f"{lab:>10}" + "".join(f"{v:>10}" for v in row))
    lines.append("")
    for lang, b in result["per_language"].items():
        k = "undefined" if b["kappa"] is None else f"{b['kappa']:.3f}"
        lines.append(f"{lang}: n={b['n']}, kappa {k}, agreement {b['observed_agreement']:.3f}")
    return "\n".join(lines)
