"""Log-likelihoods of the label continuations of several contexts, through :meth:`Backend.choices`.

Loglik mode scores three continuations (``" True"``, ``" Neither"``, ``" False"``) after the same long prompt.
:meth:`~conjugate.lm.backend.Backend.choices` is where a backend shares that prompt: a local Hugging Face model
runs it once and scores the continuations against its key/value cache (same numbers as pairwise scoring, up to
float rounding), a served model sends the pairs, and :class:`~conjugate.lm.cache.CachedBackend` answers from
its cache. A backend without ``choices`` (a test double, an adapter written before it existed) is sent every
pair in one :meth:`~conjugate.lm.backend.Backend.loglikelihood` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def choice_logliks(backend: Any, contexts: Sequence[str], choices: Sequence[Sequence[str]]) -> list[list[float]]:
    """``log p(choice | context)`` summed over the choice's tokens, for every choice of every context."""
    if len(contexts) != len(choices):
        raise ValueError(f"{len(contexts)} contexts but {len(choices)} choice lists")
    score = getattr(backend, "choices", None)
    if callable(score):
        out = []
        for ctx, opts in zip(contexts, choices, strict=True):
            got = [float(x) for x in score(ctx, list(opts))]
            if len(got) != len(opts):
                raise RuntimeError(f"{backend.name}: backend returned {len(got)} scores for {len(opts)} choices")
            out.append(got)
        return out
    pairs = [(ctx, c) for ctx, opts in zip(contexts, choices, strict=True) for c in opts]
    flat = backend.loglikelihood(pairs) if pairs else []
    if len(flat) != len(pairs):
        raise RuntimeError(f"{backend.name}: backend returned {len(flat)} scores for {len(pairs)} pairs")
    out, pos = [], 0
    for opts in choices:
        out.append([float(x) for x in flat[pos:pos + len(opts)]])
        pos += len(opts)
    return out
