"""Run folders: atomic writes, provenance (config, seed, versions, git commit), stage markers, resume.

Every study writes into one folder. A file is written to a temporary name and renamed into place, so a
crash never leaves a half-written file that looks complete. A stage that finished writes
``.stages/<name>.done``; a rerun skips it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SECRET_HINTS = ("key", "token", "secret", "password")
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_figure(fig: Any, path: str | Path, dpi: int = 110, **savefig: Any) -> Path:
    """Save a matplotlib figure as a PNG, atomically, and close it (``savefig``: e.g. ``bbox_inches="tight"``)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, **savefig)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows to a JSONL file and flush them to disk (a crash loses at most the rows in flight)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path, *, missing_ok: bool = True) -> Iterator[dict]:
    """Rows of a JSONL file. A torn last line (a crash mid-write) is skipped; any other bad line raises
    ``ValueError`` naming the file and line."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) and not line.endswith("\n"):
                return  # torn final line from an interrupted append
            raise ValueError(f"{path}:{i}: malformed JSON ({e.msg})") from None


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current git commit of the source tree (``+dirty`` when it has uncommitted changes), or None."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded next to every result."""
    from . import __version__

    env: dict[str, Any] = {
        "conjugate": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }
    for mod in ("torch", "numpy", "transformers"):
        m = sys.modules.get(mod)
        if m is not None:
            env[mod] = getattr(m, "__version__", None)
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return env


def _looks_secret(name: Any) -> bool:
    """A field name with a word ending in a hint (``api_key``, ``OPENAI_API_KEY``, ``authToken``,
    ``client_secret``); plain counts such as ``max_new_tokens`` or ``n_tokens`` are not secrets."""
    words = re.split(r"[^a-z0-9]+", str(name).lower())
    return any(w.endswith(h) for w in words for h in (*SECRET_HINTS, "secrets", "passwords"))


def scrub(obj: Any) -> Any:
    """A copy of a config with any secret-looking field removed, for files and logs."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if _looks_secret(k) and v else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


class RunDir:
    """A run folder with stage markers. ``RunDir(out).done("pretrain")`` tells whether a stage finished."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def done(self, stage: str) -> bool:
        return self.path(".stages", f"{stage}.done").exists()

    def mark_done(self, stage: str, info: dict | None = None) -> None:
        write_json(self.path(".stages", f"{stage}.done"), info or {})

    def write_config(self, config: dict, seed: int, extra: dict | None = None) -> Path:
        return write_json(self.path("config.json"),
                          {"config": scrub(config), "seed": seed, "environment": environment(), **(extra or {})})
