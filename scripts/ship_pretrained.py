"""Ship the pretraining of a finished ``conjugate synthetic run`` as its preset's pretrained checkpoint.

Usage: python scripts/ship_pretrained.py RUN_DIR PRESET

Copies ``RUN_DIR/checkpoints/pretrain.safetensors`` (verified against ``RUN_DIR/.stages/pretrain.done``) and the
pretraining rows of ``RUN_DIR/train_log.jsonl`` into ``src/conjugate/data/pretrained/PRESET/`` (or
``$CONJUGATE_PRETRAINED_DIR/PRESET/`` when that is set), atomically file by file, then writes ``pretrain.json``
(what the model is and how it was made) and ``SHA256SUMS``. The run must be of PRESET with the preset's
pretraining settings, and must have trained its pretraining itself (not taken it from a cache or a shipped
checkpoint): make it with ``conjugate synthetic run --preset PRESET --seed 0 --from-scratch --out RUN_DIR``.
See :mod:`conjugate.synthetic.shipped`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def main(run_dir: str, preset: str) -> None:
    from conjugate.synthetic.shipped import ship

    try:
        dest = ship(run_dir, preset)
    except ValueError as e:  # ShippedError, or damaged run state (StateError)
        raise SystemExit(f"error: {e}") from None
    print(f"shipped the pretraining of {run_dir} as preset {preset} in {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
