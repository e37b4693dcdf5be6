"""GGUF model files, and the conversion cache that makes loading one take seconds.

``transformers`` reads a GGUF file (``from_pretrained(folder, gguf_file=NAME)``, with the ``gguf`` package) and
dequantizes it to full precision; for Gemma 3 270M that takes about 45 s on one CPU core, and the same each time.
:func:`converted_folder` does it once and keeps the result, a plain Hugging Face folder (fp32 safetensors,
config, tokenizer), in ``$CONJUGATE_CACHE/gguf/<sha256 of the GGUF file>-tf<transformers version>/``; the next
load of the same file with the same ``transformers`` reads that folder in about 3 s.

An entry is written into a temporary folder and renamed into place (a crash leaves no half entry), and it
records the sha256 of every file it holds (``conversion.json``). Each use checks those hashes; a damaged entry
is reported, removed and converted again — it is derived data, rebuilt from the GGUF file, never used damaged.

A GGUF file is checked before anything reads it: it must exist, be a file, start with the ``GGUF`` magic and
hold every tensor its header lists (a truncated download fails with one line, not deep in a parser). The header
check runs before a conversion; a file whose sha256 matches a cached conversion was whole when it was converted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import atomic_write_text, sha256_file
from .backend import BackendError
from .fileid import cache_root

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
GGUF_PREFIX = "gguf:"
CONVERSION_FILE = "conversion.json"
CONVERSION_FORMAT = 1


def conversion_dir() -> Path:
    return cache_root() / "gguf"


def gguf_in_folder(folder: Path) -> Path | None:
    """The one ``.gguf`` file of a folder that holds no Hugging Face ``config.json``; ``None`` otherwise. A folder
    with several GGUF files is an error (which one was meant?)."""
    if not folder.is_dir() or (folder / "config.json").exists():
        return None
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix == ".gguf")
    if len(files) > 1:
        raise BackendError(f"{folder} holds {len(files)} GGUF files ({', '.join(f.name for f in files)}); "
                           "name one: gguf:<folder>/<file>.gguf")
    return files[0] if files else None


def gguf_path(spec: str) -> Path | None:
    """The GGUF file a spec names — ``gguf:PATH`` (a file, or a folder holding one), a path ending in ``.gguf``,
    or a folder holding exactly one ``.gguf`` file and no ``config.json`` — checked by :func:`check_gguf`;
    ``None`` when the spec is not a GGUF spec."""
    explicit = spec.startswith(GGUF_PREFIX)
    raw = spec[len(GGUF_PREFIX):] if explicit else spec
    path = Path(raw).expanduser()
    if path.is_dir():
        found = gguf_in_folder(path)
        if found is None:
            if explicit:
                raise BackendError(f"{spec}: the folder {path} holds no .gguf file")
            return None
        path = found
    elif not explicit and path.suffix != ".gguf":
        return None
    check_gguf(path)
    return path.resolve()


def check_gguf(path: Path, *, deep: bool = False) -> None:
    """One-line :class:`BackendError` unless ``path`` is a GGUF file: it exists and starts with the magic bytes;
    ``deep`` also reads its header and checks that the file holds every tensor listed there (some seconds for a
    large file: done before a conversion, not when a cached conversion of the same sha256 exists)."""
    if not path.exists():
        raise BackendError(f"GGUF file {path} does not exist")
    if not path.is_file():
        raise BackendError(f"GGUF path {path} is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise BackendError(f"GGUF file {path}: cannot read it ({e.strerror})") from None
    if magic != GGUF_MAGIC:
        raise BackendError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    if not deep:
        return
    end = _tensor_data_end(path)
    size = path.stat().st_size
    if end > size:
        raise BackendError(f"{path}: truncated GGUF file ({size:,} bytes; its tensors need {end:,}); "
                           "download or assemble it again")


def _tensor_data_end(path: Path) -> int:
    """The byte offset just past the last tensor the file's header lists (via the ``gguf`` package's reader)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise BackendError("GGUF models need the 'gguf' package: pip install 'conjugate-prompting[hf]'") from None
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BackendError(f"{path}: damaged or truncated GGUF file ({text}); download or assemble it again") \
            from None
    if not reader.tensors:
        return 0
    return max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)


@dataclass(frozen=True)
class Conversion:
    """What one conversion-cache entry holds: the GGUF file it came from, the ``transformers`` that made it,
    and the sha256 of every file in it."""

    gguf_sha256: str
    gguf_name: str
    transformers: str
    files: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({"format": CONVERSION_FORMAT, "gguf_sha256": self.gguf_sha256, "gguf_name": self.gguf_name,
                           "transformers": self.transformers, "files": self.files}, indent=1, sort_keys=True)


def transformers_version() -> str:
    from .backend import require_transformers

    return str(require_transformers().__version__)


def entry_dir(gguf_sha256: str, tf_version: str | None = None) -> Path:
    return conversion_dir() / f"{gguf_sha256[:24]}-tf{tf_version or transformers_version()}"


def converted_folder(path: str | Path, *, sha256: str | None = None) -> Path:
    """A Hugging Face folder with the GGUF file's weights in fp32 and its tokenizer: the cached one when it is
    there and intact, else converted now (and cached). ``sha256``: the file's hash when the caller already has
    it."""
    path = Path(path)
    check_gguf(path)
    digest = sha256 or sha256_file(path)
    tf = transformers_version()
    target = entry_dir(digest, tf)
    if target.exists():
        problem = verify_entry(target, digest, tf)
        if problem is None:
            return target
        log.warning("conversion cache entry %s is damaged (%s); converting %s again", target, problem, path.name)
        shutil.rmtree(target, ignore_errors=True)
    check_gguf(path, deep=True)
    return _convert(path, digest, tf, target)


def verify_entry(folder: Path, gguf_sha256: str, tf_version: str) -> str | None:
    """``None`` when the entry in ``folder`` is whole and made from that file by that ``transformers``, else what
    is wrong with it."""
    try:
        meta = json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{CONVERSION_FILE} unreadable ({e.__class__.__name__})"
    if not isinstance(meta, dict) or meta.get("gguf_sha256") != gguf_sha256 or meta.get("transformers") != tf_version:
        return f"{CONVERSION_FILE} describes another file or transformers version"
    files = meta.get("files")
    if not isinstance(files, dict) or "config.json" not in files:
        return f"{CONVERSION_FILE} lists no files"
    from .fileid import file_sha256  # remembered per (path, size, mtime) within this process

    for name, want in files.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if file_sha256(f) != want:
            return f"{name} does not match its recorded sha256"
    return None


def _convert(path: Path, digest: str, tf: str, target: Path) -> Path:
    from .backend import require_transformers

    transformers = require_transformers()
    import torch

    log.info("converting %s to a cached fp32 copy (once per file and transformers version)", path.name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                  **_dtype_kw(transformers, torch.float32))
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BackendError(f"could not load GGUF file {path}: {text}") from None
    _drop_quantizer(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        atomic_write_text(tmp / CONVERSION_FILE, Conversion(digest, path.name, tf, files).to_json())
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same conversion first: use theirs when it is whole
            if verify_entry(target, digest, tf) is not None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _drop_quantizer(model: Any) -> None:
    """The dequantized model still says it came from a GGUF file, which makes ``save_pretrained`` refuse it: it
    is an ordinary fp32 model now."""
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False


def _dtype_kw(transformers: Any, dtype: Any) -> dict[str, Any]:
    major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


def cached_entries() -> list[tuple[Path, dict[str, Any]]]:
    """(folder, conversion.json contents) of every conversion-cache entry, for listing."""
    root = conversion_dir()
    out = []
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                try:
                    meta = json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    meta = {}
                out.append((folder, meta if isinstance(meta, dict) else {}))
    return out
