"""Rerunning a finished language-model study: every answer comes from the request cache, no model is loaded.

Runs the ICL-vs-IF study (and XNLI, both modes) on two tiny local models, then runs the same command again, and
prints JSON: seconds of each run, requests sent to a model, models loaded, and the first-run / rerun time ratio.
The scores of the two runs must be identical (checked).

    python benchmarks/rerun_cached.py [--prompts-per-cell 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts-per-cell", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rerun-cached-"))
    os.environ["CONJUGATE_CACHE"] = str(out / "cache")
    import torch

    torch.set_num_threads(1)
    from conjugate.lm.icl_vs_if import build_dataset, run_study, write_dataset
    from conjugate.lm.load import load_backend
    from conjugate.lm.tiny import write_tiny_model
    from conjugate.lm.xnli import run_study as xnli_study

    models = [str(write_tiny_model(out / "base", arch="gpt2", seed=0)),
              str(write_tiny_model(out / "tuned", arch="llama", seed=1))]
    data = write_dataset(build_dataset(langs="en,fr,nl", tasks="repeat-math,capitalize-fillblank",
                                       n=args.prompts_per_cell), out / "icl.jsonl")
    xdata = out / "xnli.jsonl"
    xdata.write_text("".join(json.dumps({"premise": f"The {w} is here ({i}).", "hypothesis": f"A {w} exists.",
                                         "label": i % 3, "lang": "en"}) + "\n"
                             for i, w in enumerate(["cup", "pen", "key", "map", "hat", "box"] * 4)))
    loaded: list[str] = []
    result: dict = {}

    def load(spec: str, **opts):
        loaded.append(spec)
        return load_backend(spec, **opts)

    for study, call in (("icl_vs_if", lambda: run_study(models, out / "icl", data=data, transforms=["leetspeak"],
                                                        show_progress=False, load=load)),
                        ("xnli", lambda: xnli_study(models, out / "xnli", data=xdata, mode="both", device="cpu",
                                                    dtype="float32", show_progress=False, load=load))):
        runs = []
        for _ in range(2):
            del loaded[:]
            t0 = time.perf_counter()
            s = call()
            runs.append({"seconds": round(time.perf_counter() - t0, 3), "models_loaded": len(loaded),
                         "sent": s.get("generated", s.get("computed")), "cached": s.get("cached", s.get("reused")),
                         "scores": s["accuracy"]})
        assert runs[0]["scores"] == runs[1]["scores"], "the rerun's scores differ"
        result[study] = {"first": {k: v for k, v in runs[0].items() if k != "scores"},
                         "rerun": {k: v for k, v in runs[1].items() if k != "scores"},
                         "first_over_rerun": round(runs[0]["seconds"] / runs[1]["seconds"], 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
