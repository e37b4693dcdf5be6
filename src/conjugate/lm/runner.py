"""What every language-model study does around its backend calls: a progress bar, work in resumable chunks, and
freeing a model before the next one loads. (The finished requests of a failed call are kept by the request cache,
:class:`conjugate.lm.cache.CachedBackend`.)

Kept free of ``torch`` and ``transformers`` imports so that studies against a served model stay light.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..runs import append_jsonl


class ProgressBar:
    """A transient Rich progress bar on stderr (``describe``, ``advance``, ``close``); nothing when disabled or
    when there is nothing to do."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.bar = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task(label, total=total)
            self.bar.start()

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=text)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def in_chunks(items: Sequence[dict], chunk: int, compute: Callable[[Sequence[dict]], list[dict]],
              path: Path, advance: Callable[[int], None] = lambda n: None) -> list[dict]:
    """Compute rows for ``items`` ``chunk`` at a time, longest ``prompt`` first (each batch pads little and an
    out-of-memory error shows at once), appending each chunk's rows to the JSONL file ``path`` as soon as it is
    done, so an interrupted run loses at most the chunk in flight. Returns every row computed."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    todo = sorted(items, key=lambda it: -len(it["prompt"]))
    rows: list[dict] = []
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        new = compute(part)
        append_jsonl(path, new)
        rows.extend(new)
        advance(len(part))
    return rows


def release(backend: Any) -> None:
    """Close a served model's connections and give a local model's memory back before the next one loads.
    The caller drops its own reference to ``backend`` afterwards."""
    close = getattr(backend, "release", None) or getattr(backend, "close", None)  # a cached backend releases its model
    if callable(close):
        close()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
