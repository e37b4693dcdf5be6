"""Copy a finished ``conjugate lm tune`` adapter into the package as a shipped tuned sibling.

Usage: python scripts/ship_adapter.py ADAPTER_DIR NAME

Copies ``adapter_model.safetensors``, ``adapter_config.json``, ``provenance.json`` and ``train_log.jsonl`` into
``src/conjugate/data/adapters/NAME/`` (atomically, file by file) and writes ``SHA256SUMS`` for them. NAME must be
a tuned sibling listed in ``conjugate.lm.catalog.SHIPPED``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

FILES = ("adapter_model.safetensors", "adapter_config.json", "provenance.json", "train_log.jsonl")


def main(src: str, name: str) -> None:
    from conjugate.lm.catalog import SHIPPED
    from conjugate.runs import atomic_copy, atomic_write_text, read_json, sha256_file

    if name not in SHIPPED:
        raise SystemExit(f"error: {name!r} is not a shipped sibling; known: {', '.join(SHIPPED)}")
    folder = Path(src)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing or not (folder / ".stages" / "tune.done").is_file():
        raise SystemExit(f"error: {folder} holds no finished tuning run (missing: {', '.join(missing) or 'tune.done'})")
    done = read_json(folder / ".stages" / "tune.done")
    if done.get("sha256") != sha256_file(folder / "adapter_model.safetensors"):
        raise SystemExit(f"error: {folder}/adapter_model.safetensors is not the adapter the run finished with")
    dest = ROOT / "src" / "conjugate" / "data" / "adapters" / SHIPPED[name].adapter
    for f in FILES:
        atomic_copy(folder / f, dest / f)
    atomic_write_text(dest / "SHA256SUMS", "".join(f"{sha256_file(dest / f)}  {f}\n" for f in FILES))
    print(f"shipped {folder} as {name} in {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
