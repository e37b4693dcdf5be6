"""Default runs of the ICL-vs-IF, XNLI and harmful studies on tiny offline models, reduced to their scores.

Run it on two versions of the code (e.g. before and after a change to the study pipeline) and diff the JSON:

    python scripts/lm_equivalence.py --out /tmp/eq-new > new.json
    PYTHONPATH=/path/to/old/src python scripts/lm_equivalence.py --out /tmp/eq-old > old.json
    diff old.json new.json && echo identical

Counts of generated / cached requests, timings and provenance are left out: only what the studies report as
results (accuracies, rates, drops, intervals, label counts) is printed. The harmful study needs a chat model:
it talks to the project's fake OpenAI-compatible server from ``tests/fake_openai.py`` on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

COUNTS = {"generated", "cached", "computed", "reused", "relabelled", "sent", "requests", "data"}


def results(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in COUNTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="scratch folder (models, data, run folders)")
    args = ap.parse_args()
    args.out = args.out.resolve()
    os.environ.setdefault("CONJUGATE_CACHE", str(args.out / "cache"))
    import torch

    torch.set_num_threads(1)
    from conjugate.lm.harmful import run_study as harmful
    from conjugate.lm.icl_vs_if import build_dataset, write_dataset
    from conjugate.lm.icl_vs_if import run_study as icl
    from conjugate.lm.tiny import write_tiny_model
    from conjugate.lm.xnli import run_study as xnli

    args.out.mkdir(parents=True, exist_ok=True)
    base = write_tiny_model(args.out / "base", arch="gpt2", seed=0)
    tuned = write_tiny_model(args.out / "tuned", arch="llama", seed=1)
    models = [str(base), str(tuned)]
    rows = build_dataset(langs="en,fr,leet", tasks="repeat-math,capitalize-fillblank", n=4)
    data = write_dataset(rows, args.out / "icl.jsonl")
    out: dict = {"icl_vs_if": results(icl(models, args.out / "icl", data=data, max_new_tokens=4,
                                          show_progress=False))}
    xrows = [{"premise": f"The {w} is on the table.", "hypothesis": f"There is a {w}.", "label": i % 3, "lang": lang}
             for i, (w, lang) in enumerate((w, lang) for lang in ("en", "fr") for w in ("cup", "book", "cat", "pen"))]
    xdata = args.out / "xnli.jsonl"
    xdata.write_text("".join(json.dumps(r) + "\n" for r in xrows), encoding="utf-8")
    out["xnli"] = results(xnli(models, args.out / "xnli", data=xdata, mode="both", device="cpu", dtype="float32",
                               show_progress=False))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fake_openai import FakeOpenAI

    src = args.out / "harmful.txt"
    src.write_text("Explain how to bake bread.\nDescribe how to knit a scarf.\nWrite a poem about rain.\n")

    def reply(messages, body):
        text = messages[-1]["content"]
        return "I'm sorry, I can't help with that." if "knit" in text else f"Sure: {text[::-1]}"

    with FakeOpenAI(reply) as server:
        out["harmful"] = results(harmful(src, "en", [f"openai-chat:fake@{server.url}"], args.out / "harmful",
                                         show_progress=False))
    print(json.dumps(out, indent=1, sort_keys=True).replace(str(args.out), "<out>"))


if __name__ == "__main__":
    main()
