"""XNLI scoring throughput: ``loglik`` mode (one forward pass over the three label continuations) vs ``generate``
mode (greedy decoding of up to 10 tokens, the paper's metric), per item; and, for reference, the plain pairwise
route (``Backend.loglikelihood`` on three ``(prompt, " True")``-style pairs per item, the prompt run three times)
that loglik mode avoids on local models (:mod:`conjugate.lm.xnli.choices`).

Both run through the study's own code path — :func:`conjugate.lm.xnli.run.predict_missing` over the Hugging Face
backend, appending each batch's predictions to a JSONL file, exactly as ``conjugate xnli run`` does — on the same
items and the same randomly initialised tiny model (:func:`conjugate.lm.tiny.write_tiny_model`, built here, no
download). Items are XNLI-format pairs made from the project's own sentences in English, French and Spanish with
the study's prompt templates. Generation runs all ``max_new_tokens`` steps (the study uses no stop string).

Passes over the items alternate between the modes (order reversed every repeat) so that load from other
processes hits both alike; the speedup is the median of the per-repeat ratios. The model is loaded once,
outside the timings.

    python benchmarks/xnli_modes.py --json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from common import Contestant, emit, interleaved, machine_info, paired_ratio, per_second, rounded


def make_items(n: int, langs: tuple[str, ...] = ("en", "fr", "es")) -> list[dict]:
    """``n`` XNLI-format items per the study's templates, premises and hypotheses from the project corpus."""
    from conjugate import data
    from conjugate.lm.xnli import make_prompt
    from conjugate.lm.xnli.run import MAX_NEW_TOKENS, MODES, row_sha

    items = []
    for k in range(n):
        lang = langs[k % len(langs)]
        sents = data.sentences(lang)
        premise = " ".join(sents[(3 * k + j) % len(sents)] for j in range(2))
        hypothesis = sents[(7 * k + 1) % len(sents)]
        prompt = make_prompt(lang, premise, hypothesis)
        items.append({"lang": lang, "idx": k, "premise": premise, "hypothesis": hypothesis, "label": k % 3,
                      "prompt": prompt, "sha": {m: row_sha(m, prompt, lang, MAX_NEW_TOKENS) for m in MODES}})
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--items", type=int, default=96, help="items per pass")
    ap.add_argument("--batch-size", type=int, default=32, help="items per backend call (as --batch-size N)")
    ap.add_argument("--arch", default="gpt2", choices=("gpt2", "llama"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared CPU)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from conjugate.lm.hf import HFBackend
    from conjugate.lm.pipeline import make_arms, run_requests
    from conjugate.lm.tiny import write_tiny_model
    from conjugate.lm.xnli import continuations
    from conjugate.lm.xnli.run import MAX_NEW_TOKENS, STOP, items_of, prediction_row

    items = make_items(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_tiny_model(Path(tmp) / "tiny", arch=args.arch, seed=0)
        backend = HFBackend(str(folder), device=args.device, chat=False, batch_size=args.batch_size)
        params = sum(p.numel() for p in backend.model.parameters())
        last: dict[str, dict] = {}

        def one_pass(mode: str) -> None:  # the study pipeline's path, without the request cache
            its = items_of(items, [mode])
            recs = run_requests(backend, "tiny", its, make_arms([]), max_new_tokens=MAX_NEW_TOKENS, stop=STOP,
                                chunk=args.batch_size)
            last[mode] = {(it.meta["lang"], it.meta["idx"]): prediction_row(r, it, MAX_NEW_TOKENS)
                          for it, r in zip(its, recs, strict=True)}

        def pairwise() -> None:  # the plain Backend route: three (prompt, label) pairs per item
            pairs = [(it["prompt"], c) for it in items for c in continuations(it["lang"])]
            for start in range(0, len(pairs), 3 * args.batch_size):
                backend.loglikelihood(pairs[start:start + 3 * args.batch_size])

        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        times = interleaved({"generate": Contestant(lambda: one_pass("generate")),
                             "loglik": Contestant(lambda: one_pass("loglik")),
                             "loglik_pairwise": Contestant(pairwise)},
                            repeats=args.repeats, warmup=1, sync=sync)
    gen_preds = {k: r["pred"] for k, r in last["generate"].items()}
    agree = statistics.mean(gen_preds[k] == r["pred"] for k, r in last["loglik"].items())
    emit({
        "benchmark": "xnli_modes",
        "generate_items_per_s": rounded(args.items * per_second(times["generate"])),
        "loglik_items_per_s": rounded(args.items * per_second(times["loglik"])),
        "speedup": rounded(paired_ratio(times["generate"], times["loglik"])),
        "target_speedup": 3.0,
        "loglik_pairwise_items_per_s": rounded(args.items * per_second(times["loglik_pairwise"])),
        "shared_prompt_speedup_over_pairwise": rounded(paired_ratio(times["loglik_pairwise"], times["loglik"])),
        "generate_s_per_pass": [rounded(t) for t in times["generate"]],
        "loglik_s_per_pass": [rounded(t) for t in times["loglik"]],
        "items": args.items, "batch_size": args.batch_size, "max_new_tokens": MAX_NEW_TOKENS,
        "model": {"arch": args.arch, "parameters": params, "source": "conjugate.lm.tiny (random weights)"},
        "agreement_random_model": rounded(agree),
        "device": args.device,
        "machine": machine_info(args.device),
    }, args.json)


if __name__ == "__main__":
    main()
