"""One small interface for every language model the studies query.

A backend turns batches of prompts into greedy continuations and scores continuations by log-likelihood.
Implementations: :mod:`conjugate.lm.hf` (Hugging Face ``transformers``) and :mod:`conjugate.lm.openai_compat`
(any OpenAI-compatible server, e.g. vLLM). :func:`load_backend` resolves a model spec string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """What a study needs from a model."""

    name: str

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> list[str]:
        """Greedy continuations of ``prompts`` (same order), cut at the first stop string."""
        ...

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """``log p(continuation | context)`` summed over the continuation's tokens, for each pair."""
        ...


class BackendError(RuntimeError):
    """A model could not be loaded or queried; the message says which and why."""
