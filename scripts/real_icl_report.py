"""The README's real-model ICL-vs-IF tables, from two finished ``conjugate icl-vs-if run`` folders.

Usage: python scripts/real_icl_report.py LANGS_RUN TRANSFORMS_RUN [--readme README.md] [--block real-icl]

``LANGS_RUN``: the run over every language (identity arm), models in the order base, tuned sibling(s);
``TRANSFORMS_RUN``: the run on the English prompts with conjugate transforms (same models). Prints the markdown
and, with ``--readme``, rewrites the block between ``<!-- BLOCK:start -->`` and ``<!-- BLOCK:end -->``.
Every number comes from the runs' ``summary.json`` (accuracy, paired-bootstrap 95 % intervals, recovered
shares); nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "src"))


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}"


def ci(pair: list | None) -> str:
    if not pair or pair[0] is None:
        return ""
    return f" [{100 * pair[0]:.0f}, {100 * pair[1]:.0f}]"


def signed_ci(pair: list | None) -> str:
    if not pair or pair[0] is None:
        return ""
    return f" [{100 * pair[0]:+.0f}, {100 * pair[1]:+.0f}]"


def load(folder: Path) -> tuple[dict, dict]:
    summary = json.loads((folder / "summary.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    return summary, config


def accuracy_table(s: dict) -> list[str]:
    langs, cis = s["languages"], s["ci"]["ci95"]
    lines = ["| model | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
    for m in s["models"]:
        cells = [f"{pct(s['accuracy'][m][lang])}{ci(cis[m][lang]['identity'])}" for lang in langs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    n = sorted(set(s["n"].values()))
    lines.append("")
    lines.append(f"ICL accuracy, % [95 % bootstrap interval]; {'/'.join(map(str, n))} prompts per language "
                 "(4 tasks × 100).")
    return lines


def drop_table(s: dict) -> list[str]:
    langs = s["languages"]
    lines = ["| base → model | " + " | ".join(langs) + " | largest drop |", "|---|" + "---|" * (len(langs) + 1)]
    for m, base in s["pairs"].items():
        drops = s["drop"][m]
        worst = max(langs, key=lambda lang: drops[lang])
        cells = [f"{100 * drops[lang]:+.0f}{signed_ci(s['ci']['drop_ci95'][m][lang])}" for lang in langs]
        lines.append(f"| {base} → {m} | " + " | ".join(cells) + f" | {worst} |")
    lines.append("")
    lines.append("Drop of ICL accuracy, percentage points (base − model) [paired 95 % bootstrap interval over the "
                 "same prompts].")
    return lines


def recovery_table(t: dict) -> list[str]:
    c = t["conjugate"]
    base = c["models"][0]
    lines = ["| model | transform | accuracy as is | accuracy under transform | base as is | recovered share |",
             "|---|---|---|---|---|---|"]
    for m in c["models"][1:]:
        for lang in c["languages"]:
            for tr, rec in c["recovery"][m][lang].items():
                share = rec["recovered"]
                share_txt = "no drop" if share is None else f"{100 * share:.0f} %{ci(rec['recovered_ci95'])}"
                lines.append(f"| {m} | {tr} | {pct(rec['tuned_identity'])} | {pct(rec['tuned'])} | "
                             f"{pct(c['value'][base][lang]['identity'])} | {share_txt} |")
    n = sorted({v for per in c["n"].values() for lang in per.values() for v in lang.values()})
    lines.append("")
    lines.append(f"English prompts only ({'/'.join(map(str, n))} per transform). Recovered share = (accuracy "
                 "under transform − accuracy as is) / (base − model "
                 "as is), [paired 95 % bootstrap interval]; the model's output is mapped back through the "
                 "transform's inverse before scoring.")
    return lines


def block(langs_run: Path, transforms_run: Path) -> list[str]:
    s, cfg = load(langs_run)
    t, tcfg = load(transforms_run)
    lines = ["**ICL accuracy per language**", "", *accuracy_table(s), "", "**Drop from the base model**", "",
             *drop_table(s), "", "**Conjugate prompts on English: how much of the drop comes back**", "",
             *recovery_table(t), ""]
    lines.append(f"Generated {s['generated']:,} and read {s['cached']:,} answers from the request cache for the "
                 f"language run; {t['generated']:,} generated / {t['cached']:,} cached for the transform run. "
                 f"Greedy, {s['max_new_tokens']} new tokens, raw text (no chat template). Runs: "
                 f"`{langs_run.name}` ({len(cfg['config']['models'])} models), `{transforms_run.name}` "
                 f"(transforms {', '.join(x for x in tcfg['config']['transforms'] if x != 'identity')}).")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("langs_run", type=Path)
    ap.add_argument("transforms_run", type=Path)
    ap.add_argument("--readme", type=Path, default=None)
    ap.add_argument("--block", default="real-icl")
    args = ap.parse_args()
    for folder in (args.langs_run, args.transforms_run):
        if not (folder / "summary.json").is_file():
            raise SystemExit(f"error: {folder} holds no finished run (no summary.json)")
    lines = block(args.langs_run, args.transforms_run)
    print("\n".join(lines))
    if args.readme:
        from update_readme import replace_block

        replace_block(f"<!-- {args.block}:start -->", f"<!-- {args.block}:end -->", lines, args.readme)


if __name__ == "__main__":
    main()
