"""LoRA adapters on top of a base model: the ``BASE+adapter:DIR`` spec, and the provenance that ties an adapter to
the exact base it was trained on.

An adapter folder (written by ``conjugate lm tune``) holds ``adapter_model.safetensors`` and
``adapter_config.json`` (the ``peft`` format) and ``provenance.json``: the base model's spec and fingerprint,
the training data's sha256, the tuning config, the git commit, versions and the loss curve. Loading
``BASE+adapter:DIR`` checks that ``BASE`` has the fingerprint the adapter was trained on — an adapter applied to
another base computes something nobody trained — then merges the adapter into the base weights (generation then
costs what the base costs).

A base's fingerprint is the sha256 of its GGUF file, or of the names and sha256 of a local folder's weight files
(``hub:<id>@<commit>`` for a hub model).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend import BackendError

log = logging.getLogger(__name__)

ADAPTER_MARK = "+adapter:"
PROVENANCE = "provenance.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def split_adapter(spec: str) -> tuple[str, Path | None]:
    """``"BASE+adapter:DIR"`` → ``("BASE", Path(DIR))``; a spec without an adapter → ``(spec, None)``. The
    folder must hold an adapter (its safetensors weights and config)."""
    base, mark, folder = spec.rpartition(ADAPTER_MARK)
    if not mark:
        return spec, None
    if not base.strip():
        raise BackendError(f"model spec {spec!r} names no base model before {ADAPTER_MARK}")
    path = Path(folder.strip()).expanduser()
    if not path.is_dir():
        raise BackendError(f"adapter folder {path} does not exist (in model spec {spec!r})")
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if not (path / name).is_file():
            raise BackendError(f"adapter folder {path} lacks {name}: not a LoRA adapter (conjugate lm tune writes "
                               "one)")
    return base.strip(), path.resolve()


@dataclass(frozen=True)
class Provenance:
    """Where an adapter came from (``provenance.json``)."""

    base_spec: str
    base_fingerprint: str
    data_sha256: str
    config: dict[str, Any]
    commit: str | None
    versions: dict[str, Any]
    loss_curve: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"base": {"spec": self.base_spec, "fingerprint": self.base_fingerprint},
                "data": {"sha256": self.data_sha256}, "config": self.config, "commit": self.commit,
                "versions": self.versions, "loss_curve": self.loss_curve}


def read_provenance(folder: Path) -> Provenance | None:
    """The adapter's provenance, ``None`` when it has none; :class:`BackendError` when it is unreadable."""
    path = folder / PROVENANCE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Provenance(base_spec=str(raw["base"]["spec"]), base_fingerprint=str(raw["base"]["fingerprint"]),
                          data_sha256=str(raw["data"]["sha256"]), config=dict(raw.get("config") or {}),
                          commit=raw.get("commit"), versions=dict(raw.get("versions") or {}),
                          loss_curve=list(raw.get("loss_curve") or []))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackendError(f"{path}: not a readable adapter provenance ({type(e).__name__}: {e})") from None


def fingerprint(model: str, gguf: Path | None) -> str:
    """The fingerprint of a base (see the module docstring); ``model`` is a local folder or a hub id."""
    from .fileid import file_sha256, hub_snapshot

    if gguf is not None:
        return file_sha256(gguf)
    folder = Path(model)
    if folder.is_dir():
        h = hashlib.sha256()
        weights = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in (".safetensors", ".bin"))
        for f in weights:
            h.update(f"{f.name}:{file_sha256(f)}\n".encode())
        return h.hexdigest()
    commit, _ = hub_snapshot(model, None)
    return f"hub:{model}@{commit}"


def check_base(folder: Path, base_print: str, base_spec: str) -> Provenance | None:
    """:class:`BackendError` when the adapter in ``folder`` was trained on another base than ``base_spec``."""
    prov = read_provenance(folder)
    if prov is None:
        log.warning("adapter %s has no %s: its base model cannot be checked", folder, PROVENANCE)
        return None
    if prov.base_fingerprint != base_print:
        raise BackendError(f"adapter {folder} was trained on base {prov.base_spec} (fingerprint "
                           f"{prov.base_fingerprint[:16]}…), not on {base_spec} ({base_print[:16]}…); load it on "
                           "its own base")
    return prov


def apply_adapter(model: Any, folder: Path) -> Any:
    """``model`` with the LoRA adapter in ``folder`` merged into its weights (``peft``; safetensors only)."""
    try:
        from peft import PeftModel
    except ImportError:
        raise BackendError("adapters need the 'peft' package: pip install 'conjugate-prompting[hf]'") from None
    try:
        wrapped = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BackendError(f"adapter {folder} does not fit this base model: {text}") from None
    merged = wrapped.merge_and_unload()
    merged.eval()
    return merged


def adapter_files(folder: Path) -> list[Path]:
    """The files of an adapter folder that change its answers."""
    return [folder / n for n in (ADAPTER_WEIGHTS, ADAPTER_CONFIG) if (folder / n).is_file()]
