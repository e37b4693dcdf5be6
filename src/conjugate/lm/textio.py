"""Reading the studies' input files strictly: UTF-8 or a one-line error naming the file, the byte and its offset.

Python's own message (``'utf-8' codec can't decode byte 0xff in position 470``) names no file, and a file read
line by line reports positions inside the decoder's buffer rather than the file. :func:`read_text` decodes the
whole file at once, so the offset is the file's, and raises the caller's error class (each study has its own
input error, which the command line prints as ``error: ...`` with exit code 2).
"""

from __future__ import annotations

import codecs
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
