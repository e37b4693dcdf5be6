"""Log-likelihoods of several continuations of one context, computing the shared context once.

Loglik mode scores three continuations (``" True"``, ``" Neither"``, ``" False"``) after the same long prompt.
Sent as three ``(context, continuation)`` pairs, the prompt is run three times. For a local Hugging Face model
(:class:`~conjugate.lm.hf.HFBackend`) :func:`choice_logliks` instead runs each prompt once, keeps its key/value
cache, and scores the continuations against that cache: the first token of every continuation is read from the
prompt's last logits, and only when some continuation has more tokens does a second, short forward pass run on
the cache repeated once per continuation. That is about a third of the work of the pairwise route and the same
numbers (same tokenisation: :meth:`HFBackend.encode_pair`; equal up to float rounding, checked in the tests).

Prompts are batched by length (longest first), left-padded with explicit position ids, as generation does; on a
CUDA out-of-memory error the batch is halved. Any other backend (an OpenAI-compatible server), and any item
whose context tokenises differently per continuation (a context cut at the window limit), goes through
``backend.loglikelihood`` pairs.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any


def choice_logliks(backend: Any, contexts: Sequence[str], choices: Sequence[Sequence[str]]) -> list[list[float]]:
    """``log p(choice | context)`` summed over the choice's tokens, for every choice of every context."""
    if len(contexts) != len(choices):
        raise ValueError(f"{len(contexts)} contexts but {len(choices)} choice lists")
    out: list[list[float] | None] = [None] * len(contexts)
    fast: list[tuple[int, list[int], list[list[int]]]] = []
    if _is_local_hf(backend):
        for i, (ctx, conts) in enumerate(zip(contexts, choices, strict=True)):
            encoded = [backend.encode_pair(ctx, c) for c in conts]
            prefixes = [ids[: len(ids) - n] for ids, n in encoded]
            if prefixes and all(p == prefixes[0] for p in prefixes) and prefixes[0]:
                fast.append((i, prefixes[0], [ids[len(ids) - n:] for ids, n in encoded]))
    for (i, _, _), scores in zip(fast, _score_shared(backend, [(p, t) for _, p, t in fast]), strict=True):
        out[i] = scores
    slow = [i for i, v in enumerate(out) if v is None]
    if slow:
        pairs = [(contexts[i], c) for i in slow for c in choices[i]]
        flat = backend.loglikelihood(pairs)
        if len(flat) != len(pairs):
            raise RuntimeError(f"{backend.name}: backend returned {len(flat)} scores for {len(pairs)} pairs")
        pos = 0
        for i in slow:
            out[i] = [float(x) for x in flat[pos:pos + len(choices[i])]]
            pos += len(choices[i])
    return out  # type: ignore[return-value]


def _is_local_hf(backend: Any) -> bool:
    from ..hf import HFBackend

    return isinstance(backend, HFBackend)


def _score_shared(backend: Any, items: list[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
    """Scores of (prefix ids, continuation ids per choice) items, in order; batched, longest prefix first."""
    import torch

    if not items:
        return []
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    results: list[list[float] | None] = [None] * len(items)
    size, pos = backend.batch_size, 0
    while pos < len(order):
        idx = order[pos:pos + size]
        try:
            scores = _score_batch(backend, [items[i] for i in idx])
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            torch.cuda.empty_cache()
            size //= 2
            continue
        for i, s in zip(idx, scores, strict=True):
            results[i] = s
        pos += len(idx)
    return results  # type: ignore[return-value]


def _score_batch(backend: Any, batch: list[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
    import torch

    with torch.inference_mode():
        return _score_batch_inner(backend, batch, torch)


def _score_batch_inner(backend: Any, batch: list, torch: Any) -> list[list[float]]:
    model, dev = backend.model, backend.device
    pad = backend.tokenizer.pad_token_id
    n_rows, k = len(batch), len(batch[0][1])
    if any(len(tails) != k for _, tails in batch):
        raise ValueError("every context needs the same number of choices in one batch")
    width = max(len(p) for p, _ in batch)
    ids = torch.full((n_rows, width), pad, dtype=torch.long)
    mask = torch.zeros((n_rows, width), dtype=torch.long)
    for r, (prefix, _) in enumerate(batch):
        ids[r, width - len(prefix):] = torch.tensor(prefix, dtype=torch.long)
        mask[r, width - len(prefix):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
    first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # (rows, vocab)
    scores = [[float(first_lp[r, tails[j][0]]) for j in range(k)] for r, (_, tails) in enumerate(batch)]
    longest = max(len(t) for _, tails in batch for t in tails)
    if longest == 1:
        return scores
    # the rest of every continuation: one forward on the prompt cache, repeated once per choice
    steps = longest - 1
    tail_ids = torch.full((n_rows * k, steps), pad, dtype=torch.long)
    tail_mask = torch.zeros((n_rows * k, steps), dtype=torch.long)
    for r, (_, tails) in enumerate(batch):
        for j, t in enumerate(tails):
            if len(t) > 1:
                tail_ids[r * k + j, : len(t) - 1] = torch.tensor(t[:-1], dtype=torch.long)
                tail_mask[r * k + j, : len(t) - 1] = 1
    cache = first.get("cache", None) or first.get("past_key_values", None)  # the name changed in transformers 5
    if cache is None:
        raise RuntimeError(f"{backend.name}: the model returned no key/value cache")
    cache.batch_repeat_interleave(k)
    full_mask = torch.cat([mask.repeat_interleave(k, dim=0), tail_mask.to(dev)], dim=1)
    start = mask.sum(-1).repeat_interleave(k)[:, None]
    tail_pos = start + torch.arange(steps, device=dev)[None, :]
    cache_arg = "cache" if _accepts(model, "cache") else "past_key_values"
    second = model(input_ids=tail_ids.to(dev), attention_mask=full_mask, position_ids=tail_pos,
                   use_cache=False, **{cache_arg: cache})
    lp = torch.log_softmax(second.logits.float(), dim=-1)  # (rows*k, steps, vocab)
    for r, (_, tails) in enumerate(batch):
        for j, t in enumerate(tails):
            if len(t) > 1:
                row = r * k + j
                targets = torch.tensor(t[1:], dtype=torch.long, device=dev)
                scores[r][j] += float(lp[row, torch.arange(len(t) - 1, device=dev), targets].sum())
    return scores


def _accepts(model: Any, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
