"""Reading the studies' input files strictly: UTF-8 or a one-line error naming the file, the byte and its offset.

Python's own message (``'utf-8' codec can't decode byte 0xff in position 470``) names no file, and a file read
line by line reports positions inside the decoder's buffer rather than the file. :func:`read_text` decodes the
whole file at once, so the offset is the file's, and raises the caller's error class (each study has its own
input error, which the command line prints as ``error: ...`` with exit code 2).
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from pathlib import Path


def not_utf8(path: str | Path, data: bytes, offset: int) -> str:
    """``<path>: not UTF-8 text (byte 0x.. at offset N)``."""
    return f"{path}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset})"


def read_text(path: str | Path, error: type[Exception] = ValueError, bom: bool = True) -> str:
    """The text of ``path`` decoded as UTF-8 (a leading byte-order mark dropped when ``bom``); ``error`` with
    :func:`not_utf8`'s message when it is not UTF-8. Line endings are left as they are."""
    data = Path(path).read_bytes()
    start = len(codecs.BOM_UTF8) if bom and data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(not_utf8(path, data, start + e.start)) from None


def jsonl_objects(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[dict, str]]:
    """Each non-blank line of a JSONL input file as a JSON object, with where it stands (``path:line``); a line
    that is not JSON or not an object raises ``error`` naming the file and line."""
    with io.StringIO(read_text(path, error), newline=None) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{where}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield row, where
