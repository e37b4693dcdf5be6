"""Turn a model spec string into a :class:`~conjugate.lm.backend.Backend`.

Specs:

- a local folder (``./models/tiny``, ``/data/llama``) or a hub id (``facebook/opt-1.3b``; ``hf:`` prefix optional)
  → :class:`~conjugate.lm.hf.HFBackend`;
- ``openai:<model>@<base-url>`` (completions) or ``openai-chat:<model>@<base-url>`` (chat completions), e.g.
  ``openai:meta-llama/Llama-3-8B@http://127.0.0.1:8000/v1``; without ``@<base-url>`` the ``OPENAI_BASE_URL``
  environment variable is used → :class:`~conjugate.lm.openai_compat.OpenAIBackend`;
- ``<preset>:base`` / ``<preset>:tuned`` from :mod:`conjugate.lm.presets` (a bare preset name is a pair: expand
  it with :func:`~conjugate.lm.presets.resolve_models` first);
- a GGUF file: ``gguf:PATH`` (the file, or a folder holding one), a path ending in ``.gguf``, or a folder with
  one ``.gguf`` file and no ``config.json`` → :class:`~conjugate.lm.hf.HFBackend` on its cached fp32 conversion
  (:mod:`conjugate.lm.gguf`);
- a real model by name (``gemma3-270m``, ``smollm2-135m-instruct``, ``gemma3-270m-tuned-en``; see
  :mod:`conjugate.lm.catalog` and ``conjugate models list``);
- ``BASE+adapter:DIR``: any of the local specs above plus a LoRA adapter folder (:mod:`conjugate.lm.adapters`).

Keyword arguments go to the backend's constructor. Options meant only for the other kind of backend (say
``batch_size`` for a served model) are dropped, so a study can pass one set of options for any spec; a name
neither backend knows is an error.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from .backend import Backend, BackendError
from .source import HFSource, looks_like_path, resolve_hf_spec, resolve_source

__all__ = ["load_backend", "parse_openai_spec", "HFSource", "resolve_source", "resolve_hf_spec", "looks_like_path"]

OPENAI_PREFIXES = {"openai:": False, "openai-chat:": True}


def load_backend(spec: str, **kwargs: Any) -> Backend:
    """The backend for ``spec`` (see the module docstring); :class:`BackendError` with the reason otherwise."""
    spec = spec.strip()
    if not spec:
        raise BackendError("empty model spec")
    for prefix, chat in OPENAI_PREFIXES.items():
        if spec.startswith(prefix):
            model, base_url = parse_openai_spec(spec[len(prefix):], spec)
            from .openai_compat import OpenAIBackend

            kwargs.setdefault("chat", chat)
            return OpenAIBackend(model, base_url, **_accepted(OpenAIBackend, kwargs, spec))
    from .hf import HFBackend

    resolve_source(spec)  # a bad spec fails here, before transformers is imported
    return HFBackend(spec.removeprefix("hf:"), **_accepted(HFBackend, kwargs, spec))


def parse_openai_spec(rest: str, spec: str) -> tuple[str, str]:
    """``<model>@<url>`` → (model, url); the URL is the part after the last ``@http``."""
    at = max(rest.rfind("@http://"), rest.rfind("@https://"))
    if at >= 0:
        model, base_url = rest[:at], rest[at + 1:]
    else:
        model, base_url = rest, os.environ.get("OPENAI_BASE_URL", "")
        if not base_url:
            raise BackendError(f"model spec {spec!r} has no server URL: write <model>@http://host:port/v1 "
                               "or set OPENAI_BASE_URL")
    if not model:
        raise BackendError(f"model spec {spec!r} names no model: expected openai:<model>@<base-url>")
    return model, base_url


def _accepted(cls: type, kwargs: dict[str, Any], spec: str) -> dict[str, Any]:
    """``kwargs`` that ``cls`` takes; those only the other backend takes are dropped; unknown names fail."""
    from .hf import HFBackend
    from .openai_compat import OpenAIBackend

    def params(c: type) -> set[str]:
        return set(inspect.signature(c.__init__).parameters) - {"self", "path_or_id", "model", "base_url"}

    mine = params(cls)
    known = params(HFBackend) | params(OpenAIBackend)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise BackendError(f"{spec}: unknown backend option(s) {', '.join(unknown)}")
    return {k: v for k, v in kwargs.items() if k in mine}
