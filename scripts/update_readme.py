"""Regenerate the README's results blocks from finished runs (``make readme-figures``, ``make readme-sweep``).

Usage: python scripts/update_readme.py [--block NAME] [RUN_DIR ...]
       python scripts/update_readme.py --sweep SWEEP_DIR [--block NAME]

The first form copies the first run's main figures into docs/<preset>/ and rewrites the block between the
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers (NAME default ``quick-results``) with the runs' key
numbers, one row per run, and their learned-mixture ratios and forgetting decomposition. The second rewrites
the block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (NAME default ``sweep-quick``) from a
``conjugate sweep synthetic`` folder: one row per run (a sweep over seeds only) or the grid's figures, the
aggregate table (mean ± std over seeds, re-aggregated first) and the claims.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def row(s: dict) -> str:
    pct = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    return (f"| {s['seed']} | {s['cont_mse']['pretrained']:.4f} | {s['bayes']['mixture_pretrain_cont']:.4f} | "
            f"{s['cont_mse']['finetuned']:.4f} ({s['forgetting_ratio']:.2f}×) | "
            f"{s['cont_mse']['finetuned_conjugate']:.4f} (c={s['conjugate_scale']:g}) | "
            f"{pct(s['recovered_fraction'])} / {pct(s['recovered_fraction_net'])} | "
            f"{s['disc_mse']['pretrained']:.4f} → {s['disc_mse']['finetuned']:.4f} | "
            f"{s['implicit_alpha']['pretrained']:.2f} → {s['implicit_alpha']['finetuned']:.2f} | {s['seconds']:.0f} |")


def replace_block(start: str, end: str, lines: list[str], readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme}: markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    from conjugate.runs import atomic_write_text

    atomic_write_text(readme, head + "\n".join([start, *lines, end]) + tail)
    print(f"updated {readme}")


# the goal set for the synthetic study, all three in one run: forgetting, explained share, conjugate recovery
GOAL = {"forgetting_ratio": 1.25, "explained_share": 0.5, "recovered_fraction": 0.3}
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(values: list[float]) -> str:
    """Mean [95 % t-interval over seeds] (just the value for one seed; n/a for none)."""
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    m = sum(v) / len(v)
    if len(v) == 1:
        return f"{m:.2f}"
    sd = (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5
    h = T975.get(len(v) - 1, 1.96) * sd / len(v) ** 0.5
    return f"{m:.2f} [{m - h:.2f}, {m + h:.2f}]"


def decomposition_lines(points: dict[str, list[dict]], key: str | None) -> list[str]:
    """Per grid point: the forgetting split (suppression = the share the prior shift explains, erasure = the
    rest), conjugate recovery observed and predicted by Bayes(α_eff), the learned ratios, and the runs meeting
    the whole goal together; mean [95 % t-interval over seeds]."""
    head = (f"| {key or 'runs'} | n | forgetting × | suppression share | erasure share | recovery observed | "
            "recovery predicted by Bayes(α_eff) | fit residual pre → fine-tuned | learned: D_disc n−1 / ridge | "
            "D_cont / Bayes | all three goals |")
    lines = [head, "|" + "---|" * 11]
    for point, ss in points.items():
        dec = [s["decomposition"] for s in ss]
        share = [d["explained_share"] for d in dec]
        goal = sum(1 for s, d in zip(ss, dec, strict=True)
                   if s["forgetting_ratio"] >= GOAL["forgetting_ratio"]
                   and (d["explained_share"] or 0) >= GOAL["explained_share"]
                   and (s["recovered_fraction"] or 0) >= GOAL["recovered_fraction"])
        lines.append(
            f"| {point} | {len(ss)} | {mean_ci([s['forgetting_ratio'] for s in ss])} | {mean_ci(share)} | "
            f"{mean_ci([None if x is None else 1 - x for x in share])} | "
            f"{mean_ci([d['recovery']['observed_share'] for d in dec])} | "
            f"{mean_ci([d['recovery']['predicted_share'] for d in dec])} | "
            f"{mean_ci([d['fit_residual']['pretrained'] for d in dec])} → "
            f"{mean_ci([d['fit_residual']['finetuned'] for d in dec])} | "
            f"{mean_ci([s['learned']['disc_last_vs_ridge'] for s in ss])} | "
            f"{mean_ci([s['learned']['cont_vs_bayes'] for s in ss])} | {goal}/{len(ss)} |")
    lines += ["", "Mean [95 % t-interval over seeds]. Suppression share: the part of the D_cont forgetting that the "
                  "shift of the inferred prior explains (Bayes at the fine-tuned α_eff minus Bayes at the pretrained "
                  "α_eff, over the observed forgetting); erasure: the rest. Recovery: the share of the forgetting "
                  "that label scaling (c chosen on validation prompts) wins back, in the model and in Bayes(α_eff). "
                  "All three goals: forgetting ≥ 1.25×, suppression share ≥ 50 %, recovery ≥ 30 % in one run."]
    return lines


HEADER = ["| seed | pretrained D_cont | Bayes (α_pt) D_cont | fine-tuned D_cont | conjugate D_cont "
          "| recovered (gross / net) | D_disc pre → fine-tuned | α_eff pre → fine-tuned | seconds |",
          "|---|---|---|---|---|---|---|---|---|"]


def sweep_block(folder: str, readme: Path = ROOT / "README.md", block: str = "sweep-quick") -> None:
    """The README block ``<!-- block:start/end -->`` from a sweep folder (re-aggregated here, so it matches the
    runs): one row per run for a sweep over seeds only; for a grid, its figures (copied to docs/<block>/)."""
    from conjugate.aggregate import aggregate_sweep, claims_markdown

    root = Path(folder)
    result = aggregate_sweep(root)
    spec = json.loads((root / "sweep.json").read_text())
    runs = [root / "runs" / r["name"] for r in spec["runs"]]
    finished = [run for run in runs if (run / "summary.json").exists()]
    summaries = [json.loads((run / "summary.json").read_text()) for run in finished]
    if not summaries:
        raise SystemExit(f"{root}: no finished runs")
    table = (root / "aggregate.md").read_text().splitlines()
    first = next(i for i, line in enumerate(table) if line.startswith("| "))
    last = next(i for i in range(first, len(table)) if not table[i].startswith("|"))
    inv = spec["invocations"][-1] if spec.get("invocations") else {}
    command = " ".join([f"conjugate sweep {spec['study']} --preset {spec['preset']}",
                        f"--seeds {','.join(map(str, spec['seeds']))}",
                        *[f"--grid {k}={','.join(map(str, v))}" for k, v in spec["grid"].items()],
                        *[f"--set {k}={v}" for k, v in spec.get("overrides", {}).items()],
                        f"--out {folder}",
                        *([f"--max-parallel {inv['max_parallel']}", f"--cpus-per-run {inv['cpus_per_run']}"]
                          if inv else [])])
    commits = sorted({str(json.loads((run / "config.json").read_text()).get("environment", {}).get("git_commit"))
                      for run in finished})
    again = f"--sweep {folder}" + (f" --block {block}" if block != "sweep-quick" else "")
    lines = [f"Generated by `python scripts/update_readme.py {again}` from "
             f"`{command}` (commit {', '.join(f'`{c}`' for c in commits)}).", ""]
    if not spec["grid"]:
        lines += [*HEADER, *[row(s) for s in summaries], ""]
    key = next(iter(spec["grid"]), None)
    points: dict[str, list[dict]] = {}
    for run, summ in zip(finished, summaries, strict=True):
        cfg = json.loads((run / "config.json").read_text())["config"]
        points.setdefault(str(cfg[key]) if key else "all", []).append(summ)
    def order(k: str) -> tuple:
        try:
            return (0, float(k), "")
        except ValueError:
            return (1, 0.0, k)

    points = {k: points[k] for k in sorted(points, key=order)}
    if all("decomposition" in x for x in summaries):
        lines += ["How much of the forgetting is suppression and how much erasure:", "",
                  *decomposition_lines(points, key), ""]
    lines += ["Mean ± sample standard deviation over the seeds (`aggregate.md`):", "",
              *table[first:last], *claims_markdown(result)]
    for key in spec["grid"]:
        figure = root / "figures" / f"vs_{key}.png"
        if figure.exists():
            docs = readme.parent / "docs" / block
            docs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(figure, docs / figure.name)
            lines += ["", f"![{key}](docs/{block}/{figure.name})"]
    replace_block(f"<!-- {block}:start -->", f"<!-- {block}:end -->", lines, readme)


def learned_row(s: dict) -> str:
    """One run's learned-mixture ratios (✓ where met) and its forgetting decomposition."""
    learned, dec = s["learned"], s["decomposition"]
    ratio = lambda k: f"{learned[k]:.2f} {'✓' if learned['met'][k] else '✗'}"  # noqa: E731
    share = dec["explained_share"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    rec = dec["recovery"]
    alpha = dec["alpha_eff"]
    return (f"| {s['seed']} | {ratio('disc_last_vs_ridge')} | {ratio('disc_vs_bayes')} | {ratio('cont_vs_bayes')} | "
            f"{ratio('cont_last_vs_ridge')} | {alpha['pretrained']:.2f} → {alpha['finetuned']:.2f} | "
            f"{pct(share)} / {pct(None if share is None else 1 - share)} | "
            f"{pct(rec['observed_share'])} / {pct(rec['predicted_share'])} |")


LEARNED_HEADER = ["| seed | D_disc n−1 / ridge (≤ 0.3) | D_disc / Bayes (≤ 2) | D_cont / Bayes (≤ 1.15) | "
                  "D_cont n−1 / ridge (≤ 1.5) | α_eff pre → fine-tuned | suppression / erasure | "
                  "recovery observed / predicted by Bayes(α_eff) |", "|---|---|---|---|---|---|---|---|"]


def main(runs: list[str], block: str = "quick-results") -> None:
    runs = runs or ["runs/quick"]
    summaries = [json.loads((Path(r) / "summary.json").read_text()) for r in runs]
    preset = summaries[0]["preset"]
    docs = ROOT / "docs" / preset
    docs.mkdir(parents=True, exist_ok=True)
    for name in ("loss_vs_exemplars.png", "loss_vs_scale.png"):
        shutil.copyfile(Path(runs[0]) / "figures" / name, docs / name)
    cfg = json.loads((Path(runs[0]) / "config.json").read_text())
    commit = cfg["environment"].get("git_commit")
    again = " ".join(([f"--block {block}"] if block != "quick-results" else []) + runs)
    origin = summaries[0].get("pretrained_from", {})
    made = (f" Pretrained model: the shipped checkpoint of preset `{origin['preset']}` (sha256 "
            f"`{str(origin.get('sha256'))[:12]}`, {origin.get('steps')} steps); the seconds are fine-tuning and "
            "evaluation only." if origin.get("source") == "shipped" else "")
    lines = [
        f"Generated by `python scripts/update_readme.py {again}` from "
        f"`conjugate synthetic run --preset {preset}` (commit `{commit}`). D_cont / D_disc: squared error against "
        f"x·w divided by d, mean over 1…n−1 exemplars, {cfg['config']['eval_prompts']} held-out prompts each.{made}",
        "",
        *HEADER,
        *[row(s) for s in summaries],
        "",
    ]
    if all("learned" in s and "decomposition" in s for s in summaries):
        lines += ["Did the pretrained model learn the mixture (held-out test prompts; ✓ = criterion met), and how "
                  "much of the D_cont forgetting is suppression (the shift of the inferred prior explains it) and "
                  "how much erasure:", "", *LEARNED_HEADER, *[learned_row(s) for s in summaries], ""]
    lines += [f"![loss vs exemplars](docs/{preset}/loss_vs_exemplars.png)",
              f"![loss vs scale](docs/{preset}/loss_vs_scale.png)"]
    replace_block(f"<!-- {block}:start -->", f"<!-- {block}:end -->", lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sweep"]:
        args = sys.argv[2:]
        if len(args) == 3 and args[1] == "--block":
            sweep_block(args[0], block=args[2])
        elif len(args) == 1:
            sweep_block(args[0])
        else:
            raise SystemExit("usage: python scripts/update_readme.py --sweep SWEEP_DIR [--block NAME]")
    elif sys.argv[1:2] == ["--block"]:
        if len(sys.argv) < 4:
            raise SystemExit("usage: python scripts/update_readme.py --block NAME RUN_DIR ...")
        main(sys.argv[3:], block=sys.argv[2])
    else:
        main(sys.argv[1:])
