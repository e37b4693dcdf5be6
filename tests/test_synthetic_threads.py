"""Thread settings of a synthetic run: chosen deliberately (one thread on the CPU unless told otherwise),
overridable by the config or ``CONJUGATE_THREADS``, recorded in ``config.json``; the CLI sets OpenMP's passive
wait policy before torch loads (a fresh process shows it), and the benchmark rejects bad options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.config import ConfigError, resolve_synthetic
from conjugate.runs import read_json
from conjugate.synthetic import threads
from conjugate.synthetic.study import run_synthetic

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(pretrain_steps=4, finetune_steps=2, pretrain_warmup=0, eval_prompts=16, val_prompts=16, alpha_grid=5,
            width=16, layers=1, scales=[1.0, 2.0], distance_spreads=[0.0])


def test_the_choice_and_its_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    assert threads.choose(0, "cpu")[:2] == (1, "auto")
    assert threads.choose(0, "cuda")[:2] == (None, "auto")  # torch's own count beside a GPU
    assert threads.choose(3, "cpu")[:2] == (3, "config")
    monkeypatch.setenv(threads.ENV_THREADS, "2")
    assert threads.choose(0, "cpu")[:2] == (2, "environment")
    assert threads.choose(0, "cuda")[:2] == (2, "environment")
    assert threads.choose(4, "cpu")[:2] == (4, "config")  # the config wins
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(threads.ENV_THREADS, bad)
        with pytest.raises(ConfigError, match=threads.ENV_THREADS):
            threads.choose(0, "cpu")
    monkeypatch.setenv(threads.ENV_THREADS, " ")
    assert threads.env_threads() is None


def test_apply_sets_torch_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    torch.set_num_threads(2)
    rec = threads.apply(0, "cpu")
    assert torch.get_num_threads() == 1
    assert rec["torch_threads"] == 1 and rec["interop"] == torch.get_num_interop_threads()
    assert rec["source"] == "auto" and "small" in rec["reason"]
    assert set(rec) == {"torch_threads", "interop", "omp_wait_policy", "omp_wait_policy_source", "source", "reason"}


def test_config_json_records_the_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    torch.set_num_threads(2)
    run_synthetic(resolve_synthetic("smoke", TINY), tmp_path / "auto", preset="smoke", show_progress=False)
    cfg = read_json(tmp_path / "auto" / "config.json")
    assert cfg["threads"]["torch_threads"] == 1 and cfg["threads"]["source"] == "auto"
    assert cfg["environment"]["torch_threads"] == 1
    assert cfg["threads"]["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY")
    monkeypatch.setenv(threads.ENV_THREADS, "2")
    run_synthetic(resolve_synthetic("smoke", TINY), tmp_path / "env", preset="smoke", show_progress=False)
    rec = read_json(tmp_path / "env" / "config.json")["threads"]
    assert (rec["torch_threads"], rec["source"]) == (2, "environment")
    run_synthetic(resolve_synthetic("smoke", {**TINY, "threads": 1}), tmp_path / "cfg", preset="smoke",
                  show_progress=False)
    rec = read_json(tmp_path / "cfg" / "config.json")["threads"]
    assert (rec["torch_threads"], rec["source"]) == (1, "config")


def test_a_bad_environment_value_stops_before_the_run_folder_exists(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.ENV_THREADS, "many")
    result = CliRunner().invoke(app, ["synthetic", "run", "--preset", "smoke", "--out", str(tmp_path / "r"),
                                      "--quiet"])
    assert result.exit_code == 2 and f"{threads.ENV_THREADS} must be a positive integer" in result.stderr
    assert not (tmp_path / "r").exists()


def test_the_run_command_prepares_openmp_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(threads, "prepare_openmp", lambda: calls.append(1))
    result = CliRunner().invoke(app, ["synthetic", "run", "--preset", "smoke", "--out", str(tmp_path / "r"),
                                      "--set", "d=abc"])
    assert result.exit_code == 2 and calls == [1]


def _fresh(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip()


def test_prepare_openmp_acts_only_before_torch_and_keeps_a_given_policy() -> None:
    code = ("from conjugate.synthetic import threads\n{pre}\n"
            "print(threads.prepare_openmp(), threads.record('auto', '')['omp_wait_policy_source'])")
    assert _fresh(code.format(pre="")) == "PASSIVE conjugate"
    assert _fresh(code.format(pre=""), OMP_WAIT_POLICY="ACTIVE") == "ACTIVE environment"
    assert _fresh(code.format(pre="import torch")) == "None None"  # too late to take effect: left alone


def test_the_benchmark_rejects_bad_options() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "threads.py"), "--variants", "nope"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: unknown variant")


def test_a_cli_run_in_a_fresh_process_records_the_passive_policy_and_one_thread(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}")]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", threads.ENV_THREADS)}
    subprocess.run([sys.executable, "-c", "from conjugate.cli import app; app()", "synthetic", "run", "--preset",
                    "smoke", "--out", str(out), "--quiet", *sets], env=env, capture_output=True, text=True,
                   timeout=300, check=True)
    rec = read_json(out / "config.json")["threads"]
    assert (rec["omp_wait_policy"], rec["omp_wait_policy_source"]) == ("PASSIVE", "conjugate")
    assert (rec["torch_threads"], rec["source"]) == (1, "auto")


def test_the_benchmark_measures_a_child_that_ran_out_of_time(tmp_path: Path) -> None:
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("threads_bench", ROOT / "benchmarks" / "threads.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (tmp_path / "started").write_text("100.0")
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "train_log.jsonl").write_text(json.dumps({"step": 10, "elapsed": 4.0}) + "\n")
    # no timed row yet after 40 s of training: fewer than (10 warm-up + 10) steps in 40 s
    assert bench.partial(tmp_path, 140.0) == {"steps_per_s_below": 0.5, "seconds": 40.0, "partial": True}
    (tmp_path / "timed").mkdir()
    rows = [{"step": 10, "elapsed": 5.0}, {"step": 20, "elapsed": 8.0}]
    (tmp_path / "timed" / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert bench.partial(tmp_path, 140.0) == {"steps": 20, "seconds": 8.0, "steps_per_s": 2.5, "partial": True}
    assert bench.partial(tmp_path / "nothing", 1.0) == {}
