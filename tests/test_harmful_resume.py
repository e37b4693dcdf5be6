"""The harmful study killed mid-run (SIGKILL: no handler runs) loses no finished reply: the rerun asks the model
only what the request cache lacks, and ends where an uninterrupted run ends; a further rerun asks nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from conjugate.cli import app

N = 16
INSTRUCTIONS = [f"Describe how to fold a paper crane, step {i}." for i in range(N)]


def args(src: Path, model: Path, out: Path) -> list[str]:
    return ["harmful", "run", "--input", str(src), "--langs", "en", "--model", str(model), "--arm", "completion",
            "--max-new-tokens", "3", "--batch-size", "2", "--out", str(out), "--quiet", "--redact"]


def cached(cache_dir: Path) -> int:
    """Replies in the request cache (it also keeps file hashes, under ``file-sha256:`` keys)."""
    db = cache_dir / "requests.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as con:
        try:
            return con.execute("SELECT COUNT(*) FROM requests WHERE key NOT LIKE 'file-sha256:%'").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


def counts(output: str) -> tuple[int, int]:
    m = re.search(r"generated (\d+), reused (\d+)", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def labels(out: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    return sorted((r["id"], r["label"], r["response_sha256"]) for r in rows)


def test_sigkill_mid_run_loses_no_finished_reply(tiny_llama: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(INSTRUCTIONS) + "\n")
    cache_dir = Path(os.environ["CONJUGATE_CACHE"])
    out = tmp_path / "run"
    script = (  # the study as the CLI runs it, each generation call slowed so the kill lands mid-run
        "import time, sys\n"
        "from conjugate.lm.hf import HFBackend\n"
        "orig = HFBackend.generate\n"
        "def slow(self, *a, **k):\n"
        "    r = orig(self, *a, **k); time.sleep(0.5); return r\n"
        "HFBackend.generate = slow\n"
        "from conjugate.cli import app\n"
        f"sys.argv = ['conjugate'] + {args(src, tiny_llama, out)!r}\n"
        "app()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while cached(cache_dir) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = cached(cache_dir)
    assert 4 <= kept < N, f"the kill did not land mid-run ({kept} of {N} replies cached)"

    runner = CliRunner()
    r = runner.invoke(app, args(src, tiny_llama, out))
    assert r.exit_code == 0, r.output
    assert counts(r.output) == (N - kept, kept)  # only the missing replies are generated
    again = runner.invoke(app, args(src, tiny_llama, out))
    assert again.exit_code == 0 and counts(again.output) == (0, N), again.output

    fresh_cache = tmp_path / "fresh-cache"
    whole = tmp_path / "whole"
    r = runner.invoke(app, [*args(src, tiny_llama, whole), "--cache", str(fresh_cache / "requests.sqlite")])
    assert r.exit_code == 0 and counts(r.output) == (N, 0), r.output
    assert labels(out) == labels(whole)
