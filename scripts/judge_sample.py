"""Measure the harmful study's automatic judge on real replies: draw a stratified sample to label by hand, then
compare.

  python scripts/judge_sample.py sample RUN [RUN ...] --n 100 --seed 0 --out SAMPLE.csv
  python scripts/judge_sample.py score SAMPLE.csv --labels docs/real-harmful/human_labels.csv \
      --out docs/real-harmful/judge_agreement.json

``sample`` gathers every judged reply of the given ``conjugate harmful run`` folders (the identity arm from
``responses.jsonl``, transform arms from ``conjugate.jsonl``; the text from ``private/`` when the runs are
redacted), splits them into strata by (model arm, prompt kind: language or transform, automatic label) and draws
``n`` of them: at least one per stratum while there is room, the rest in proportion to stratum size (seeded). The
CSV has a ``key`` per reply, the prompt, the reply (and the reply mapped back, under a transform), the automatic
label and an empty ``human_label`` to fill with ANSWER, REFUSE or AMBIGUOUS. The CSV holds model text: keep it
in ``runs/`` (ignored by git).

``score`` reads the filled CSV (with ``--runs``, the automatic labels are those of the runs as they are now),
writes ``--labels`` with ``key, model, kind, auto_label, human_label`` only (no
text, safe to commit) and ``--out`` with Cohen's kappa and the confusion matrix (rows: automatic, columns: human)
overall and per model arm and per kind, plus the share of replies each label got from each rater.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from conjugate.lm.harmful.agreement import cohen_kappa, confusion_matrix  # noqa: E402
from conjugate.lm.harmful.judge import LABELS  # noqa: E402
from conjugate.runs import atomic_write_text, write_json  # noqa: E402

COLUMNS = ("key", "model", "kind", "auto_label", "prompt", "response", "mapped", "human_label")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.is_file() else []


def gather(run: Path) -> list[dict]:
    """Every judged reply of one run folder, with its text."""
    prompts = {(r["lang"], r["id"]): r["prompt"] for r in _jsonl(run / "prompts.jsonl")}
    texts = {(t["model"], t["lang"], t["id"]): t for t in _jsonl(run / "private" / "responses_text.jsonl")}
    out = []
    for r in _jsonl(run / "responses.jsonl"):
        text = r.get("response", texts.get((r["model"], r["lang"], r["id"]), {}).get("response"))
        out.append({"key": f"{run.name}|{r['model']}|{r['lang']}|identity|{r['id']}", "model": r["model"],
                    "kind": r["lang"], "auto_label": r["label"], "prompt": prompts.get((r["lang"], r["id"]), ""),
                    "response": text or "", "mapped": ""})
    ctexts = {(t["model"], t["item"], t["transform"]): t for t in _jsonl(run / "private" / "conjugate_text.jsonl")}
    for r in _jsonl(run / "conjugate.jsonl"):
        if r["transform"] == "identity":
            continue  # the identity arm is in responses.jsonl
        t = ctexts.get((r["model"], r["item"], r["transform"]), r)
        out.append({"key": f"{run.name}|{r['model']}|{r['item']}|{r['transform']}", "model": r["model"],
                    "kind": r["transform"], "auto_label": r["result"]["label"], "prompt": t.get("prompt", ""),
                    "response": t.get("output", ""), "mapped": t.get("mapped", "")})
    return out


def stratified(rows: list[dict], n: int, seed: int) -> list[dict]:
    strata: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        strata[(r["model"], r["kind"], r["auto_label"])].append(r)
    rng = random.Random(seed)
    names = sorted(strata)
    take = dict.fromkeys(names, 0)
    order = names[:]
    rng.shuffle(order)
    for s in order[:n]:  # one per stratum while there is room
        take[s] = 1
    left = n - sum(take.values())
    total = sum(len(v) for v in strata.values())
    while left > 0:  # the rest in proportion to size (largest remainder, capped by the stratum's size)
        want = {s: len(strata[s]) * n / total - take[s] for s in names if take[s] < len(strata[s])}
        if not want:
            break
        best = max(want, key=lambda s: (want[s], s))
        take[best] += 1
        left -= 1
    picked = [r for s in names for r in rng.sample(strata[s], take[s])]
    rng.shuffle(picked)
    return picked


def sample(args: argparse.Namespace) -> None:
    rows = [r for run in args.runs for r in gather(Path(run))]
    picked = stratified(rows, args.n, args.seed)
    f = io.StringIO()
    w = csv.DictWriter(f, fieldnames=COLUMNS)
    w.writeheader()
    for r in picked:
        w.writerow({**r, "human_label": ""})
    atomic_write_text(args.out, f.getvalue())
    print(f"{len(picked)} of {len(rows)} replies in {len(set((r['model'], r['kind'], r['auto_label']) for r in rows))}"
          f" strata → {args.out}")


def _block(auto: list[str], human: list[str]) -> dict:
    m = confusion_matrix(auto, human)
    kappa, p_o, p_e = cohen_kappa(m)
    return {"n": len(auto), "agreement": p_o, "chance": p_e, "kappa": kappa, "labels": list(LABELS),
            "confusion_auto_rows_human_columns": m.tolist(),
            "auto_counts": dict(Counter(auto)), "human_counts": dict(Counter(human))}


def score(args: argparse.Namespace) -> None:
    with open(args.sample, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows, 2):
        lab = (r.get("human_label") or "").strip().upper()
        if lab not in LABELS:
            raise SystemExit(f"{args.sample}:{i}: human_label {r.get('human_label')!r} is not one of "
                             f"{', '.join(LABELS)}")
        r["human_label"] = lab
    if args.runs:  # judge with the runs' current labels (a run relabels its stored replies on every rerun)
        current = {g["key"]: g["auto_label"] for run in args.runs for g in gather(Path(run))}
        missing = [r["key"] for r in rows if r["key"] not in current]
        if missing:
            raise SystemExit(f"{args.sample}: {len(missing)} keys are not in the runs given, e.g. {missing[0]}")
        for r in rows:
            r["auto_label"] = current[r["key"]]
    f2 = io.StringIO()
    w = csv.DictWriter(f2, fieldnames=("key", "model", "kind", "auto_label", "human_label"), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(args.labels, f2.getvalue())
    result = {"overall": _block([r["auto_label"] for r in rows], [r["human_label"] for r in rows]),
              "by_model": {}, "by_kind": {}}
    for field, name in (("model", "by_model"), ("kind", "by_kind")):
        for v in sorted({r[field] for r in rows}):
            sub = [r for r in rows if r[field] == v]
            result[name][v] = _block([r["auto_label"] for r in sub], [r["human_label"] for r in sub])
    write_json(args.out, result)
    o = result["overall"]
    print(f"{o['n']} labelled replies: agreement {o['agreement']:.2f}, chance {o['chance']:.2f}, "
          f"Cohen's kappa {o['kappa'] if o['kappa'] is None else round(o['kappa'], 3)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("sample")
    a.add_argument("runs", nargs="+")
    a.add_argument("--n", type=int, default=100)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", required=True)
    b = sub.add_parser("score")
    b.add_argument("sample")
    b.add_argument("--labels", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--runs", nargs="*", default=[], help="take the automatic labels from these runs as they are now")
    args = p.parse_args()
    sample(args) if args.cmd == "sample" else score(args)


if __name__ == "__main__":
    main()
