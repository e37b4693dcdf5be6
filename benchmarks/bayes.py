"""Bayes references for every prefix: the vectorised ``conjugate.synthetic.bayes`` vs a plain NumPy loop.

The vectorised code computes ridge, dMMSE, the log-likelihood ratio and the mixture posterior for every
prefix of every prompt at once (cumulative sums + batched Cholesky, float64). The reference is the
straightforward implementation: for each prompt and each prefix length k, solve the ridge system, weight the
K tasks with a stable log-sum-exp, and get ``log L_cont`` from ``slogdet`` of the k × k covariance
``X Xᵀ + σ² I``. The loop is timed on a subset of prompts and extrapolated per prompt; both are compared in
float64 on that subset.

    python benchmarks/bayes.py --json
"""

from __future__ import annotations

import argparse
import inspect
import math
import statistics
import time

import numpy as np
import torch
from common import emit, fail, machine_info, rounded

from conjugate.synthetic import bayes, tasks


def loop_reference(xs: np.ndarray, ys: np.ndarray, w_disc: np.ndarray, sigma: float, alpha: float) -> dict:
    """Per prompt, per prefix: ridge, dMMSE, log L_disc - log L_cont, P(disc) and the mixture prediction."""
    b, n, d = xs.shape
    k_tasks = w_disc.shape[0]
    s2 = sigma**2
    prior_logit = math.log(alpha) - math.log1p(-alpha)
    out = {name: np.zeros((b, n)) for name in ("ridge", "dmmse", "llr", "p_disc", "mixture")}
    eye = np.eye(d)
    for i in range(b):
        x, y = xs[i], ys[i]
        for k in range(n):
            xk, yk, xq = x[:k], y[:k], x[k]
            # ridge: w = (XᵀX + σ² I)⁻¹ Xᵀy, predict at x_{k}
            w_ridge = np.linalg.solve(xk.T @ xk + s2 * eye, xk.T @ yk)
            ridge_pred = float(xq @ w_ridge)
            # dMMSE: posterior over the K tasks, log-space weights, stable log-sum-exp
            sq = ((yk[None, :] - w_disc @ xk.T) ** 2).sum(axis=1)  # (K,)
            logw = -sq / (2 * s2)
            top = logw.max()
            e = np.exp(logw - top)
            dmmse_pred = float((e / e.sum()) @ (w_disc @ xq))
            log_disc = top + math.log(e.sum()) - math.log(k_tasks) - 0.5 * k * math.log(2 * math.pi * s2)
            # D_cont marginal likelihood: y ~ N(0, X Xᵀ + σ² I)
            if k == 0:
                log_cont = 0.0
            else:
                cov = xk @ xk.T + s2 * np.eye(k)
                sign, logdet = np.linalg.slogdet(cov)
                assert sign > 0
                log_cont = -0.5 * (k * math.log(2 * math.pi) + logdet + float(yk @ np.linalg.solve(cov, yk)))
            llr = log_disc - log_cont
            z = prior_logit + llr
            p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            out["ridge"][i, k], out["dmmse"][i, k], out["llr"][i, k] = ridge_pred, dmmse_pred, llr
            out["p_disc"][i, k] = p
            out["mixture"][i, k] = p * dmmse_pred + (1 - p) * ridge_pred
    return out


def vectorised(xs: torch.Tensor, ys: torch.Tensor, w_disc: torch.Tensor, sigma: float, alpha: float,
               chunk: int | None = None) -> dict:
    """The project's code path: :func:`bayes.batched_terms` (its default chunk unless given), then the mixture."""
    kw = {} if chunk is None else {"chunk": chunk}
    t = bayes.batched_terms(xs, ys, w_disc, sigma, **kw)
    return {"ridge": t.ridge, "dmmse": t.dmmse, "llr": t.llr, "p_disc": t.p_disc(alpha), "mixture": t.mixture(alpha)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one line of JSON")
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--tasks", type=int, default=64, help="K, the size of the discrete task set")
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--alpha", type=float, default=0.2, help="prior weight of D_disc (also the prompts' mixture)")
    ap.add_argument("--loop-prompts", type=int, default=500, help="prompts the NumPy loop runs on, in --repeats parts")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each vectorised variant (median)")
    ap.add_argument("--chunk", type=int, default=256, help="the smaller chunk also timed (proposed default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for the vectorised code (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0 < args.alpha < 1 or args.sigma <= 0 or not args.repeats <= args.loop_prompts <= args.prompts:
        fail("need 0 < --alpha < 1, --sigma > 0 and --repeats <= --loop-prompts <= --prompts")

    w_disc = tasks.discrete_tasks(args.tasks, args.d, seed=1, dtype=torch.float64)
    p = tasks.sample_mixture(args.prompts, args.alpha, w_disc, args.points, args.sigma,
                             tasks.make_generator(args.seed), dtype=torch.float64)
    xs_np, ys_np, w_np = p.xs.numpy(), p.ys.numpy(), w_disc.numpy()
    m = args.loop_prompts
    default_chunk = inspect.signature(bayes.batched_terms).parameters["chunk"].default

    vectorised(p.xs[:64], p.ys[:64], w_disc, args.sigma, args.alpha)  # warm-up
    loop_reference(xs_np[:2], ys_np[:2], w_np, args.sigma, args.alpha)
    # Interleave: each repeat times both vectorised variants on all prompts and the loop on its share of the
    # subset, so that the machine's load hits all alike; speedups are medians of per-repeat ratios.
    bounds = np.linspace(0, m, args.repeats + 1).astype(int)
    times: dict[str, list[float]] = {"default": [], "chunk": [], "loop_per_prompt": []}
    refs, outs = [], {}
    for r in range(args.repeats):
        for name, chunk in (("default", None), ("chunk", args.chunk)):
            t0 = time.perf_counter()
            outs[name] = vectorised(p.xs, p.ys, w_disc, args.sigma, args.alpha, chunk)
            times[name].append(time.perf_counter() - t0)
        lo, hi = bounds[r], bounds[r + 1]
        t0 = time.perf_counter()
        refs.append(loop_reference(xs_np[lo:hi], ys_np[lo:hi], w_np, args.sigma, args.alpha))
        times["loop_per_prompt"].append((time.perf_counter() - t0) / (hi - lo))
    ref = {k: np.concatenate([r[k] for r in refs]) for k in refs[0]}

    def speedup(name: str) -> float:
        return statistics.median(lp * args.prompts / v for lp, v in zip(times["loop_per_prompt"], times[name],
                                                                         strict=True))

    def diffs(name: str) -> dict[str, float]:
        return {k: float(np.abs(outs[name][k][:m].numpy() - ref[k]).max()) for k in ref}

    d_default, d_chunk = diffs("default"), diffs("chunk")
    max_diff = max(d_default.values())
    per_prompt = statistics.median(times["loop_per_prompt"])
    result = {
        "speedup": rounded(speedup("default")),
        "max_abs_diff": max_diff,
        "vectorised_seconds": rounded(statistics.median(times["default"])),
        "loop_seconds_per_prompt": rounded(per_prompt),
        "loop_seconds_extrapolated": rounded(per_prompt * args.prompts),
        "loop_prompts": m,
        "default_chunk": default_chunk,
        "max_abs_diff_by_output": d_default,
        "max_abs_value_by_output": {k: rounded(float(np.abs(v).max())) for k, v in ref.items()},
        f"chunk{args.chunk}": {"speedup": rounded(speedup("chunk")), "max_abs_diff": max(d_chunk.values()),
                               "vectorised_seconds": rounded(statistics.median(times["chunk"])),
                               "ratio_vs_default_chunk": rounded(statistics.median(
                                   a / b for a, b in zip(times["default"], times["chunk"], strict=True)))},
        "runs_seconds": {k: [rounded(t) for t in v] for k, v in times.items()},
        "targets": {"speedup_min": 20, "max_abs_diff_max": 1e-8,
                    "met": speedup("default") >= 20 and max_diff <= 1e-8},
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "threads": torch.get_num_threads(),
        "machine": machine_info(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
