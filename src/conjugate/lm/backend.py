"""One small interface for every language model the studies query.

A backend turns batches of prompts into greedy continuations, scores continuations by log-likelihood, and
scores several options after one shared context (:meth:`Backend.choices`). Implementations:
:mod:`conjugate.lm.hf` (Hugging Face ``transformers``) and :mod:`conjugate.lm.openai_compat` (any
OpenAI-compatible server, e.g. vLLM); :class:`conjugate.lm.cache.CachedBackend` puts a request cache in front
of either. :func:`~conjugate.lm.load.load_backend` resolves a model spec string.

Kept free of ``torch``: the text helpers both backends share live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


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

    def choices(self, context: str, options: Sequence[str]) -> list[float]:
        """``log p(option | context)`` for each option, in order: the same numbers as
        ``loglikelihood([(context, o) for o in options])``, computed sharing the context where the backend can."""
        ...


class BackendError(RuntimeError):
    """A model could not be loaded or queried; the message says which and why."""


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def split_context(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of the context onto the continuation (``"A: "+"x"`` → ``"A:"+" x"``).

    BPE tokenizers attach a space to the following word, so this keeps the continuation's first token whole.
    """
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


def require_transformers() -> Any:
    """Import ``transformers`` or explain how to install it."""
    try:
        import transformers
    except ImportError:
        raise BackendError(
            "Hugging Face models need the 'transformers' package: pip install 'conjugate-prompting[hf]'"
        ) from None
    return transformers
