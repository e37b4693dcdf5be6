"""Where the project's caches live, and what a model's files are: their sha256 (remembered, so a large file is
hashed once), the hub commit a hub id resolves to locally, and whether a tokenizer folder ships a chat template.
Read-only helpers with no dependency on the rest of the package, used by the request cache (a backend's
identity), adapters (a base's fingerprint), GGUF conversions and the catalog of real models."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

from ..runs import sha256_file

CACHE_ENV = "CONJUGATE_CACHE"
FILE_HASH_PREFIX = "file-sha256:"  # keys of weight-file hashes, stored beside the requests
_FILE_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, for this process


def cache_root() -> Path:
    """``$CONJUGATE_CACHE`` (default ``~/.cache/conjugate``): the request cache, converted and assembled models."""
    return Path(os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "conjugate")).expanduser()


class HashStore(Protocol):
    """Where hashes persist between processes (the request cache file)."""

    def get_many(self, keys: list[str]) -> dict[str, Any]: ...

    def put_many(self, values: dict[str, Any]) -> None: ...


def file_sha256(path: str | Path, hashes: HashStore | None = None) -> str:
    """sha256 of a file, remembered by (resolved path, size, mtime) in this process and in ``hashes``."""
    path = Path(path).resolve()
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo in _FILE_HASHES:
        return _FILE_HASHES[memo]
    key = FILE_HASH_PREFIX + json.dumps(list(memo), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashes.get_many([key]).get(key) if hashes is not None else None
    if not isinstance(digest, str):
        digest = sha256_file(path)
        if hashes is not None:
            hashes.put_many({key: digest})
    _FILE_HASHES[memo] = digest
    return digest


def hub_snapshot(repo_id: str, revision: str | None) -> tuple[str | None, Path | None]:
    """The commit ``revision`` (default ``main``) of a hub model resolves to in the local Hugging Face cache,
    and its snapshot folder; ``(None, None)`` when it was never downloaded. Reads files only."""
    rev = revision or "main"
    try:
        from huggingface_hub import constants

        root = Path(constants.HF_HUB_CACHE)
    except (ImportError, AttributeError):
        return (rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None), None
    repo = root / ("models--" + repo_id.replace("/", "--"))
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        commit: str | None = rev
    else:
        ref = repo / "refs" / rev
        commit = ref.read_text().strip() if ref.is_file() else None
    snapshot = repo / "snapshots" / commit if commit else None
    return commit, (snapshot if snapshot is not None and snapshot.is_dir() else None)


def has_chat_template(folder: Path) -> bool:
    """Whether the tokenizer in ``folder`` ships a chat template (what ``chat=None`` turns into)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))
