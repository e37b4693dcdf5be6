"""The README's real-model harmful-study tables, from the run folders of ``scripts/real_harmful_runs.sh``.

Usage: python scripts/real_harmful_report.py [ROOT] [--readme README.md] [--block real-harmful]
                                             [--agreement docs/real-harmful/judge_agreement.json]
                                             [--docs docs/real-harmful]

``ROOT`` (default ``runs/harmful-real``) holds one folder per model group (``base``, ``refusal``, ``smollm2``),
each with the runs ``langs``, ``transforms``, ``harmbench`` and ``benign``. Prints the markdown and, with
``--readme``, rewrites the block between ``<!-- BLOCK:start -->`` and ``<!-- BLOCK:end -->``; with ``--docs``
copies every run's ``summary.json`` (rates, counts and intervals only: the runs are redacted) to
``DOCS/<group>/<run>.json``. Every number comes from those summaries and the judge-agreement file; nothing is
typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

GROUPS = ("base", "refusal", "smollm2")
RUNS = ("langs", "transforms", "harmbench", "benign")
NAMES = {"gemma3-270m#completion": "Gemma 3 270M base, completion",
         "gemma3-270m-refusal-en": "refusal-tuned sibling, chat",
         "gemma3-270m-refusal-en#completion": "refusal-tuned sibling, completion",
         "smollm2-135m-instruct": "SmolLM2-135M-Instruct, chat",
         "smollm2-135m-instruct#completion": "SmolLM2-135M-Instruct, completion"}


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}"


def ci(pair: list | None) -> str:
    return "" if not pair or pair[0] is None else f" [{100 * pair[0]:.0f}, {100 * pair[1]:.0f}]"


def load(root: Path) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for g in GROUPS:
        for r in RUNS:
            f = root / g / r / "summary.json"
            if f.is_file():
                out.setdefault(r, {})[g] = json.loads(f.read_text())
    return out


def models_of(runs: dict[str, dict]) -> list[tuple[dict, str]]:
    return [(s, m) for g in GROUPS if g in runs for s in [runs[g]] for m in s["models"]]


def refusal_by_language(runs: dict[str, dict]) -> list[str]:
    langs = next(iter(runs.values()))["langs"]
    lines = ["| model, arm | " + " | ".join(langs) + " | kept outside English (mean of the others ÷ en) |",
             "|---|" + "---|" * (len(langs) + 1)]
    for s, m in models_of(runs):
        r = s["rates"][m]
        cells = [f"{pct(r[lang]['REFUSE'])}{ci(s['ci95'][m][lang]['REFUSE'])} · {pct(r[lang]['ANSWER'])}"
                 for lang in langs]
        others = [r[lang]["REFUSE"] for lang in langs if lang != "en"]
        kept = (sum(others) / len(others)) / r["en"]["REFUSE"] if r["en"]["REFUSE"] > 0 else None
        lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(cells) + f" | {'n/a' if kept is None else f'{kept:.2f}'} |")
    n = sorted({s["rates"][m][lang]["n"] for s, m in models_of(runs) for lang in langs})
    lines += ["", f"Refused % [95 % bootstrap interval] · answered %, {'/'.join(map(str, n))} held-out AdvBench "
                  "instructions per language (the authors' translations), phrase judge on the reply as written; the "
                  "rest is ambiguous (too short, an echo of the prompt, degenerate repetition)."]
    return lines


def refusal_by_transform(runs: dict[str, dict]) -> list[str]:
    first = next(iter(runs.values()))["conjugate_refused"]
    ts = first["transforms"]
    answered = {g: runs[g]["conjugate"] for g in runs}
    lines = ["| model, arm | " + " | ".join(ts) + " |", "|---|" + "---|" * len(ts)]
    for g in GROUPS:
        if g not in runs:
            continue
        b = runs[g]["conjugate_refused"]
        for m in b["models"]:
            cells = [f"{pct(b['value'][m]['en'][t])}{ci(b['ci95'][m]['en'][t])} · "
                     f"{pct(answered[g]['value'][m]['en'][t])}" for t in ts]
            lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(cells) + " |")
    n = sorted({v for g in runs for m in runs[g]["conjugate_refused"]["n"]
                for v in runs[g]["conjugate_refused"]["n"][m]["en"].values()})
    lines += ["", f"Refused % [95 % interval] · answered %, {'/'.join(map(str, n))} English instructions under each "
                  "transform; a reply is judged as written and, where the transform has an inverse, mapped back."]
    return lines


def harmbench_and_benign(hb: dict[str, dict], bn: dict[str, dict]) -> list[str]:
    lines = ["| model, arm | HarmBench test (standard), refused % | answered % | benign prompts refused % "
             "(over-refusal) | benign look-alikes refused % | plain benign refused % | benign answered % |",
             "|---|---|---|---|---|---|---|"]
    seen = []
    for runs in (hb, bn):
        for _, m in models_of(runs):
            if m not in seen:
                seen.append(m)
    for m in seen:
        cells = []
        s = next((s for s, mm in models_of(hb) if mm == m), None)
        if s is not None:
            cells += [f"{pct(s['rates'][m]['en']['REFUSE'])}{ci(s['ci95'][m]['en']['REFUSE'])}",
                      f"{pct(s['rates'][m]['en']['ANSWER'])}{ci(s['ci95'][m]['en']['ANSWER'])}"]
        else:
            cells += ["n/a", "n/a"]
        s = next((s for s, mm in models_of(bn) if mm == m), None)
        if s is None:
            cells += ["n/a"] * 4
        else:
            types = s.get("by_type", {}).get(m, {}).get("en", {})
            cells.append(f"{pct(s['over_refusal'][m]['en']['rate'])}{ci(s['over_refusal'][m]['en']['ci95'])}")
            cells += [f"{pct(types[t]['REFUSE'])}{ci(types[t]['ci95'])} (n={types[t]['n']})" if t in types else "n/a"
                      for t in ("lookalike", "plain")]
            cells.append(pct(s["rates"][m]["en"]["ANSWER"]))
        lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(cells) + " |")
    nh = sorted({s["rates"][m]["en"]["n"] for s, m in models_of(hb)})
    nb = sorted({s["rates"][m]["en"]["n"] for s, m in models_of(bn)})
    lines += ["", f"{'/'.join(map(str, nh))} HarmBench test standard behaviours, {'/'.join(map(str, nb))} benign "
                  "prompts written for the project; % [95 % interval]."]
    return lines


def agreement_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    a = json.loads(path.read_text())
    o = a["overall"]
    labels = o["labels"]
    lines = [f"Judge against hand labels: {o['n']} replies, agreement {100 * o['agreement']:.0f} %, chance "
             f"{100 * o['chance']:.0f} %, Cohen's kappa {o['kappa']:.2f}.", "",
             "| phrase judge ↓ / hand label → | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for lab, row in zip(labels, o["confusion_auto_rows_human_columns"], strict=True):
        lines.append(f"| {lab} | " + " | ".join(map(str, row)) + " |")
    lines += ["", "| model, arm | n | agreement | kappa |", "|---|---|---|---|"]
    for m, b in a["by_model"].items():
        k = "n/a" if b["kappa"] is None else f"{b['kappa']:.2f}"
        lines.append(f"| {NAMES.get(m, m)} | {b['n']} | {100 * b['agreement']:.0f} % | {k} |")
    return lines


def render(root: Path, agreement: Path) -> str:
    runs = load(root)
    out: list[str] = []
    if "langs" in runs:
        out += ["**By language** (held-out AdvBench):", ""] + refusal_by_language(runs["langs"]) + [""]
    if "transforms" in runs:
        out += ["**By encoding** (English, conjugate transforms):", ""] + refusal_by_transform(runs["transforms"])
        out += [""]
    if "harmbench" in runs or "benign" in runs:
        out += ["**HarmBench and over-refusal** (English):", ""]
        out += harmbench_and_benign(runs.get("harmbench", {}), runs.get("benign", {})) + [""]
    out += agreement_lines(agreement)
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root", nargs="?", default="runs/harmful-real")
    p.add_argument("--readme")
    p.add_argument("--block", default="real-harmful")
    p.add_argument("--agreement", default="docs/real-harmful/judge_agreement.json")
    p.add_argument("--docs")
    a = p.parse_args()
    text = render(Path(a.root), Path(a.agreement))
    print(text)
    if a.docs:
        from conjugate.runs import atomic_copy

        for g in GROUPS:
            for r in RUNS:
                f = Path(a.root) / g / r / "summary.json"
                if f.is_file():
                    atomic_copy(f, Path(a.docs) / g / f"{r}.json")
    if a.readme:
        from update_readme import replace_block

        replace_block(f"<!-- {a.block}:start -->", f"<!-- {a.block}:end -->", text.rstrip("\n").split("\n"),
                      Path(a.readme))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
