"""Run folders: atomic writes, provenance (config, seed, versions, git commit), stage markers, resume.

Every study writes into one folder. A file is written to a temporary name and renamed into place, so a
crash never leaves a half-written file that looks complete. A stage that finished writes
``.stages/<name>.done`` (with the sha256 of the checkpoint it produced, checked before the checkpoint is used
again); a rerun skips it. A run folder records which command made it (``.stages/run.json``) and is locked while
a run uses it, so another command or a second copy of the same run refuses it instead of writing into it.

Everything written as text is strict JSON (no bare ``NaN``) and has the values of secret-looking environment
variables (``OPENAI_API_KEY`` ...) masked, even where a server echoed one back as model text. Damaged state
raises :class:`StateError`, one line naming the file and the way out.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
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
_SECRETS: set[str] = set()  # values registered by the code that received them (an API key passed as an option)
MIN_SECRET_LEN = 8  # shorter values would mask ordinary words


class StateError(ValueError):
    """A file of a run or cache is damaged, or belongs to another run: the message names the file and the way
    out, and the CLI prints it as one line (exit 2)."""


def register_secret(value: str | None) -> None:
    """Mask ``value`` in everything this process writes from now on (an API key given other than by env)."""
    if value and len(value) >= MIN_SECRET_LEN:
        _SECRETS.add(value)


def _secrets() -> list[str]:
    env = {v for k, v in os.environ.items() if _looks_secret(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(env | _SECRETS, key=len, reverse=True)


def mask_secrets(text: str) -> str:
    """``text`` with every secret value (registered, or of a secret-looking environment variable) masked."""
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, "<redacted>")
    return text


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


def atomic_copy(src: str | Path, dest: str | Path) -> Path:
    """Copy a file into place atomically (a temporary copy beside ``dest``, then a rename), mode 0644."""
    import shutil

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    """Write text atomically, with secrets masked."""
    return atomic_write_bytes(path, mask_secrets(text).encode("utf-8"))


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON: a non-finite float (NaN, ±inf) becomes ``null``; arrays and tensors become lists."""
    return json.dumps(_strict(obj), allow_nan=False, default=_json_default, **kw)


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a damaged file raises :class:`StateError` naming it (a missing one
    ``FileNotFoundError``)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise StateError(f"{path}: damaged JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise StateError(f"{path}: damaged file (not UTF-8 at byte {e.start})") from None


def _strict(o: Any) -> Any:
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_strict(v) for v in o]
    if hasattr(o, "tolist") and not isinstance(o, str | bytes):
        return _strict(o.tolist())
    return o


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows to a JSONL file and flush them to disk (a crash loses at most the rows in flight). A last
    line without its newline is mended first, so the new rows never join onto it: a complete row gets its
    newline, a torn one (a crash mid-write; :func:`read_jsonl` skips it) is cut off."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(mask_secrets(dumps(row, ensure_ascii=False)) + "\n" for row in rows)
    with open(path, "a+b") as f:
        _drop_torn_tail(f)
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _drop_torn_tail(f: Any) -> None:
    """Mend the unterminated last line of a file opened with ``a+b``: end a complete JSON line with a newline,
    truncate a torn one back to the previous newline."""
    size = pos = f.seek(0, os.SEEK_END)
    while pos > 0:
        step = min(4096, pos)
        f.seek(pos - step)
        nl = f.read(step).rfind(b"\n")
        if nl >= 0:
            pos = pos - step + nl + 1
            break
        pos -= step
    if pos == size:
        return
    f.seek(pos)
    if _parse_line(f.read(size - pos)) is not None:
        f.write(b"\n")
    else:
        f.truncate(pos)


def _parse_line(raw: bytes) -> dict | None:
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) else None


def read_jsonl(path: str | Path, *, missing_ok: bool = True) -> Iterator[dict]:
    """Rows of a JSONL file. A torn last line (a crash mid-write: no newline, not valid JSON) is skipped; any
    other bad line raises :class:`StateError` (a ``ValueError``) naming the file and line."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    tail = lines.pop()  # after the last newline: b"", a row without its newline, or a torn row
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise StateError(f"{path}:{i}: damaged line (not UTF-8 at byte {e.start}); delete that line "
                             "to go on (a rerun recomputes what it held)") from None
        except json.JSONDecodeError as e:
            raise StateError(f"{path}:{i}: malformed JSON ({e.msg}); delete that line to go on (a rerun "
                             "recomputes what it held)") from None
        if not isinstance(row, dict):
            raise StateError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}; delete that line")
        yield row
    last = _parse_line(tail) if tail.strip() else None
    if last is not None:
        yield last  # a torn one is skipped; the next append_jsonl cuts it off


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


_HELD: dict[Path, list] = {}  # run folders this process holds: resolved path -> [lock file, users]


class RunDir:
    """A run folder with stage markers. ``RunDir(out, "synthetic run").done("pretrain")`` tells whether a stage
    finished.

    ``command`` names what makes the folder: a folder made by another command is refused, and one with no
    record yet gets this one. Opening a folder locks it (``.lock``, ``fcntl.flock``) until :meth:`close` or the
    end of a ``with`` block, so a second process refuses it, naming the process that holds it; within one
    process the lock is shared. Bad input raises :class:`StateError`: an ``out`` that is a file, a folder of
    another command, a folder in use.
    """

    def __init__(self, root: str | Path, command: str | None = None):
        self.root = Path(root)
        self.command = command
        if self.root.exists() and not self.root.is_dir():
            raise StateError(f"{self.root}: exists and is not a folder; choose another output folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self._key: Path | None = None
        if command is not None:
            self._check_owner(command)  # before anything is created in a folder that is not ours
            self._lock()
            try:
                self._check_owner(command)  # again, now that no other run can be writing it
                marker = self.path(".stages", "run.json")
                if not marker.exists():
                    write_json(marker, {"command": command})
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lock(self) -> None:
        key = self.root.resolve()
        held = _HELD.get(key)
        if held is None:
            f = open(self.root / ".lock", "a+")  # noqa: SIM115 - kept open while the folder is held
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                who = f.read().strip() or "unknown"
                f.close()
                raise StateError(f"{self.root}: in use by another run ({who}); wait for it to finish or choose "
                                 "another output folder") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {platform.node()}\n")
            f.flush()
            held = _HELD[key] = [f, 0]
        held[1] += 1
        self._key = key

    def close(self) -> None:
        """Release the folder's lock (once every holder in this process has closed it)."""
        if self._key is None:
            return
        held = _HELD[self._key]
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self._key]
            held[0].close()  # closing the file releases the flock
        self._key = None

    def _check_owner(self, command: str) -> None:
        marker = self.path(".stages", "run.json")
        if marker.exists():
            made_by = read_json(marker).get("command")
        elif self.path("config.json").exists():
            made_by = _legacy_command(read_json(self.path("config.json")))
        else:
            made_by = None
        if made_by is not None and made_by != command:
            raise StateError(f"{self.root} holds a `conjugate {made_by}` run; `conjugate {command}` will not write "
                             "into it: choose another output folder")

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def done(self, stage: str) -> bool:
        return self.path(".stages", f"{stage}.done").exists()

    def stage_info(self, stage: str) -> dict:
        """What the stage recorded when it finished (``.stages/<stage>.done``)."""
        return read_json(self.path(".stages", f"{stage}.done"))

    def mark_done(self, stage: str, info: dict | None = None, checkpoint: str | Path | None = None) -> None:
        """Mark ``stage`` finished, recording ``info`` and the sha256 of the ``checkpoint`` it produced."""
        info = dict(info or {})
        if checkpoint is not None:
            info["sha256"] = sha256_file(checkpoint)
        write_json(self.path(".stages", f"{stage}.done"), info)

    def finished_checkpoint(self, stage: str, checkpoint: str | Path) -> Path | None:
        """``checkpoint`` when ``stage`` finished and the file is the one it wrote (sha256 as recorded); None
        when the stage has to run. A file that differs from the record raises :class:`StateError`."""
        checkpoint = Path(checkpoint)
        if not (self.done(stage) and checkpoint.exists()):
            return None
        recorded = self.stage_info(stage).get("sha256")
        if recorded is not None and sha256_file(checkpoint) != recorded:
            raise StateError(f"{checkpoint}: not the checkpoint the {stage} stage wrote (sha256 differs: damaged "
                             f"or replaced); delete it and {self.path('.stages', stage + '.done')} to retrain "
                             "the stage")
        return checkpoint

    def outputs(self, stage: str, *names: str) -> list[Any] | None:
        """The JSON files ``names`` that the finished ``stage`` wrote, or None when the stage has to run
        (it did not finish, or a file is missing or damaged: they are derived, so the stage recomputes them)."""
        if not self.done(stage):
            return None
        try:
            return [read_json(self.path(n)) for n in names]
        except (FileNotFoundError, StateError):
            return None

    def write_config(self, config: dict, seed: int, extra: dict | None = None) -> Path:
        return write_json(self.path("config.json"),
                          {"config": scrub(config), "seed": seed, "environment": environment(), **(extra or {})})


def _legacy_command(config: dict) -> str | None:
    """Which command made a run folder written before folders recorded it, read off its ``config.json``."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    study = inner.get("study") or config.get("study")
    if study in ("icl_vs_if", "xnli", "harmful"):
        return "icl-vs-if score" if "legacy_csv" in inner else f"{study.replace('_', '-')} run"
    if study == "minilm":
        return "minilm run"
    if config.get("kind") == "theory":
        return "synthetic theory"
    if "checkpoint" in config:
        return "synthetic eval"
    return "synthetic run" if "preset" in config else None
