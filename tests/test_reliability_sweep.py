"""Reliability of the local sweep engine: its worker processes never outlive the driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from test_sweep import sweep_args

WORKER_MARK = "spawn_main"  # multiprocessing's spawn command line: `python -c "from multiprocessing.spawn ..."`
START_TIMEOUT_S = 60.0  # the driver imports torch and spawns its workers; slow on a loaded machine
EXIT_TIMEOUT_S = 20.0


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_workers_exit_when_the_driver_is_killed(tmp_path: Path) -> None:
    """SIGKILL the sweep driver while both of its workers are inside a run: every process it started (the
    workers and multiprocessing's resource tracker) is gone within EXIT_TIMEOUT_S, the runs unfinished."""
    out = tmp_path / "s"
    # runs long enough (tens of seconds) to be killed in the middle; the fast settings otherwise
    args = ["pretrain_steps=100000" if a == "pretrain_steps=4" else a for a in sweep_args(out, grid=())]
    cmd = [sys.executable, "-m", "conjugate", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        runs = [out / "runs" / "seed-0", out / "runs" / "seed-1"]
        while time.monotonic() < deadline:
            assert driver.poll() is None, f"the sweep driver exited early:\n{driver.stderr.read().decode()}"
            with_run = all((r / "config.json").exists() for r in runs)  # both workers have started their run
            for p in psutil.Process(driver.pid).children(recursive=True):
                seen.setdefault(p.pid, p)
            workers = [p for p in seen.values() if WORKER_MARK in _cmdline(p) and "resource_tracker" not in
                       _cmdline(p)]
            if with_run and len(workers) == 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no two workers inside a run within {START_TIMEOUT_S:g} s: "
                                 f"{[_cmdline(p) for p in seen.values()]}")
        driver.kill()
        driver.wait(10)
        t0 = time.monotonic()
        while _alive(list(seen.values())) and time.monotonic() - t0 < EXIT_TIMEOUT_S:
            time.sleep(0.2)
        left = _alive(list(seen.values()))
        assert not left, (f"{len(left)} processes of the killed driver still alive after {EXIT_TIMEOUT_S:g} s: "
                          f"{[(p.pid, _cmdline(p)) for p in left]}")
        assert not any((r / "summary.json").exists() for r in runs)  # the runs stopped, to resume from checkpoints
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
        for p in _alive(list(seen.values())):
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(seen.values()), timeout=10)
