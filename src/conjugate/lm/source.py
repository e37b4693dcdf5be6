"""Where a Hugging Face spec's weights come from: a local folder, a hub id, a GGUF file (its cached conversion),
a named real model, or any of these plus a LoRA adapter (``BASE+adapter:DIR``). :func:`resolve_source` reads
and hashes files, never loads a model; :mod:`conjugate.lm.load` and :class:`conjugate.lm.hf.HFBackend` use it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .backend import BackendError
from .presets import PRESETS, expand


@dataclass(frozen=True)
class HFSource:
    """Where a Hugging Face spec's weights come from: ``model`` (a local folder or a hub id; the GGUF file for a
    GGUF spec), ``gguf`` (the checked GGUF file, or ``None``) and ``adapter`` (a LoRA adapter folder, or ``None``)."""

    spec: str
    model: str
    gguf: Path | None = None
    adapter: Path | None = None
    chat_template: str | None = None  # a named sibling's own prompt format, used instead of the tokenizer's


def resolve_source(spec: str) -> HFSource:
    """:class:`HFSource` of a Hugging Face spec (see the module docstring); :class:`BackendError` with the reason
    for anything that cannot be loaded. Reads and hashes files; never loads a model."""
    from . import catalog
    from .adapters import split_adapter
    from .gguf import gguf_path

    given = spec.strip()
    base, adapter = split_adapter(given.removeprefix("hf:"))
    if catalog.is_model_name(base):
        inner = resolve_source(catalog.spec_of(base))
        if adapter is not None and inner.adapter is not None:
            raise BackendError(f"{given}: {base} already carries an adapter; put a second one on its base instead")
        return HFSource(given, inner.model, inner.gguf, adapter or inner.adapter, catalog.chat_template_of(base))
    gguf = gguf_path(base)
    if gguf is not None:
        return HFSource(given, str(gguf), gguf, adapter)
    return HFSource(given, resolve_hf_spec(base), None, adapter)


def resolve_hf_spec(spec: str) -> str:
    """A local model folder (as a path string) or a hub id for a Hugging Face spec (``hf:`` prefix and presets'
    ``<name>:base`` / ``<name>:tuned`` resolved); :class:`BackendError` for a pair, a file, a missing folder."""
    spec = spec.strip().removeprefix("hf:")
    if spec in PRESETS:
        p = PRESETS[spec]
        raise BackendError(f"{spec!r} is a preset pair ({p['base']} → {p['tuned']}); "
                           f"use {spec}:base or {spec}:tuned, or expand it with resolve_models")
    try:
        (spec,) = expand(spec)
    except ValueError as e:
        raise BackendError(str(e)) from None
    path = Path(spec).expanduser()
    if path.exists() and not path.is_dir():
        raise BackendError(f"model path {spec} is a file, not a model folder (a GGUF file ends in .gguf or is "
                           "named gguf:PATH)")
    if not path.exists() and looks_like_path(spec):
        raise BackendError(f"model path {spec} does not exist")
    return str(path) if path.exists() else spec


def looks_like_path(spec: str) -> bool:
    """A spec written as a filesystem path rather than a hub id (``org/name``)."""
    return (spec.startswith((".", "/", "~")) or "\\" in spec or spec.endswith("/") or spec.count("/") > 1
            or os.path.isabs(spec))


