"""Exact resume of training and of the whole synthetic pipeline (``conjugate.training``, ``synthetic/study.py``).

A run that is interrupted — by ``stop_after`` in-process, by a real SIGINT (Ctrl-C) or by SIGKILL — and then
rerun must end with the same weights and the same numbers as a run that was never interrupted, and a rerun
of a finished run must not recompute anything.

Everything runs with one torch thread: results are bit-exact for a fixed thread count (not across thread
counts), and one thread is also the fastest setting on a shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from conjugate.config import ConfigError, resolve_synthetic
from conjugate.runs import read_json, read_jsonl
from conjugate.synthetic import study, tasks
from conjugate.synthetic.model import InContextRegressor, ModelConfig, load_model
from conjugate.training import (
    Interrupted,
    StageSpec,
    finish_stage,
    lr_at,
    save_model,
    step_generator,
    train_stage,
)

TIME_KEYS = {"seconds", "throughput", "wall_seconds_this_call"}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def numbers(summary: dict) -> dict:
    """A summary without its wall-clock fields."""
    return {k: v for k, v in summary.items() if k not in TIME_KEYS}


def resume_step(path: Path) -> int:
    """The step recorded in a resume checkpoint, read through one file descriptor: the training process may
    replace the file (atomically) at any moment, and safetensors' ``safe_open`` looks the path up twice."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return int(header["__metadata__"]["step"])


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- one training stage ------------------------------------------------------------------------------

W_DISC = tasks.discrete_tasks(4, 3, seed=1)
SPEC = StageSpec("pretrain", steps=30, batch=16, lr=3e-3, warmup=5, weight_decay=0.01, grad_clip=1.0)


def tiny_model(init_seed: int) -> InContextRegressor:
    torch.manual_seed(init_seed)
    return InContextRegressor(ModelConfig(d=3, n_points=6, width=16, layers=1, heads=2))


def sampler(batch: int, g: torch.Generator) -> tasks.Prompts:
    return tasks.sample_mixture(batch, 0.5, W_DISC, 6, 0.3, g)


def train(model, workdir, seed=5, stop_after=None):
    return train_stage(model, SPEC, sampler, seed=seed, workdir=workdir, checkpoint_every=7, log_every=5,
                       show_progress=False, stop_after=stop_after)


def test_interrupted_stage_resumes_to_identical_weights(tmp_path):
    ref = tiny_model(0)
    stats = train(ref, tmp_path / "ref")
    assert stats["steps"] == SPEC.steps

    resume = tmp_path / "run" / "checkpoints" / "pretrain.resume.safetensors"
    with pytest.raises(Interrupted, match="pretrain stopped at step 11/30"):
        train(tiny_model(0), tmp_path / "run", stop_after=11)
    assert resume_step(resume) == 11
    with pytest.raises(Interrupted, match="step 19/30"):  # a second interruption, from a fresh model object
        train(tiny_model(123), tmp_path / "run", stop_after=8)
    assert resume_step(resume) == 19
    model = tiny_model(456)  # its own initial weights must be replaced by the checkpoint's
    stats = train(model, tmp_path / "run")
    assert stats["steps"] == SPEC.steps - 19
    assert_same_tensors(model.state_dict(), ref.state_dict())

    # the sensitivity of that comparison: another seed gives other weights
    other = tiny_model(0)
    train(other, tmp_path / "other", seed=6)
    assert not torch.equal(other.read_in.weight, ref.read_in.weight)

    # the log has each step once; rows whose averaging window was not split by an interruption are identical
    ref_log, log = list(read_jsonl(tmp_path / "ref" / "train_log.jsonl")), list(read_jsonl(resume.parent.parent /
                                                                                          "train_log.jsonl"))
    assert [r["step"] for r in log] == [r["step"] for r in ref_log] == [5, 10, 15, 20, 25, 30]
    split = {min(r["step"] for r in ref_log if r["step"] > s) for s in (11, 19)}
    for a, b in zip(ref_log, log, strict=True):
        base = {"stage", "step", "loss", "lr", "elapsed"}
        # the stage's last row also records the throughput of the call that finished it
        extra = {"steps_per_s", "tokens_per_s"} if a["step"] == 30 else set()
        assert set(a) == set(b) == base | extra
        assert all(a[k] > 0 for k in extra)
        assert a["lr"] == b["lr"]
        if a["step"] not in split:
            assert a["loss"] == b["loss"]


def test_resume_after_the_last_step_trains_nothing(tmp_path):
    model = tiny_model(0)
    train(model, tmp_path)
    again = tiny_model(9)
    stats = train(again, tmp_path)  # resume file says step 30/30
    assert stats["steps"] == 0
    assert_same_tensors(again.state_dict(), model.state_dict())


def test_finish_stage_writes_a_loadable_checkpoint_and_drops_resume_state(tmp_path):
    model = tiny_model(0)
    train(model, tmp_path)
    path = finish_stage(model, SPEC, tmp_path, {"stage": "pretrain", "seed": 5})
    assert not (tmp_path / "checkpoints" / "pretrain.resume.safetensors").exists()
    loaded, meta = load_model(path)
    assert meta == {"stage": "pretrain", "seed": 5} and loaded.cfg == model.cfg
    assert_same_tensors(loaded.state_dict(), model.state_dict())
    save_model(tmp_path / "copy.safetensors", loaded)
    assert_same_tensors(load_file(str(tmp_path / "copy.safetensors")), load_file(str(path)))


def test_load_model_rejects_files_that_are_not_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a conjugate model checkpoint"):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(Interrupted):  # leaves a resume file: safetensors, but with no model_config
        train(tiny_model(0), tmp_path, stop_after=3)
    with pytest.raises(ValueError, match="not a conjugate model checkpoint"):
        load_model(tmp_path / "checkpoints" / "pretrain.resume.safetensors")


def test_learning_rate_schedule_and_step_generators():
    spec = StageSpec("x", steps=100, batch=1, lr=1.0, warmup=10)
    assert lr_at(0, spec) == pytest.approx(0.1) and lr_at(9, spec) == pytest.approx(1.0)
    assert lr_at(10, spec) == pytest.approx(1.0) and lr_at(100, spec) == pytest.approx(0.1)
    lrs = [lr_at(s, spec) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    draw = lambda *a: torch.randn(4, generator=step_generator(*a, "cpu"))  # noqa: E731
    assert torch.equal(draw(0, "pretrain", 7), draw(0, "pretrain", 7))
    assert not torch.equal(draw(0, "pretrain", 7), draw(0, "pretrain", 8))
    assert not torch.equal(draw(0, "pretrain", 7), draw(0, "finetune", 7))
    assert not torch.equal(draw(0, "pretrain", 7), draw(1, "pretrain", 7))


# ---- the whole pipeline, in-process --------------------------------------------------------------------

CFG = dict(pretrain_steps=40, finetune_steps=20, checkpoint_every=8, pretrain_warmup=5, eval_prompts=64,
           val_prompts=64, alpha_grid=11, distance_spreads=[0.0, 1.0], threads=1)


def run(out: Path, stop_after: int | None = None, **over) -> dict:
    cfg = resolve_synthetic("smoke", {**CFG, **over})
    return study.run_synthetic(cfg, out, preset="smoke", seed=3, device="cpu", show_progress=False,
                               stop_after=stop_after)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("reference")
    run(out)
    torch.set_num_threads(before)
    return out


def test_pipeline_interrupted_in_both_stages_matches_uninterrupted(tmp_path, reference):
    out = tmp_path / "run"
    ckpt = out / "checkpoints"
    with pytest.raises(Interrupted):
        run(out, stop_after=15)
    assert resume_step(ckpt / "pretrain.resume.safetensors") == 15 and not (out / "summary.json").exists()
    with pytest.raises(Interrupted):
        run(out, stop_after=15)
    assert resume_step(ckpt / "pretrain.resume.safetensors") == 30
    with pytest.raises(Interrupted):  # pretraining finishes (10 steps), fine-tuning stops after 15
        run(out, stop_after=15)
    assert (out / ".stages" / "pretrain.done").exists() and (ckpt / "pretrain.safetensors").exists()
    assert not (ckpt / "pretrain.resume.safetensors").exists()
    assert resume_step(ckpt / "finetune.resume.safetensors") == 15
    summary = run(out)

    assert numbers(summary) == numbers(read_json(reference / "summary.json"))
    assert read_json(out / "metrics.json") == read_json(reference / "metrics.json")
    for stage in ("pretrain", "finetune"):
        assert_same_tensors(load_file(str(ckpt / f"{stage}.safetensors")),
                            load_file(str(reference / "checkpoints" / f"{stage}.safetensors")))
    assert sorted(p.name for p in ckpt.iterdir()) == ["finetune.safetensors", "pretrain.safetensors"]
    key = lambda r: (r["stage"], r["step"], r["lr"])  # noqa: E731
    assert [key(r) for r in read_jsonl(out / "train_log.jsonl")] == \
        [key(r) for r in read_jsonl(reference / "train_log.jsonl")]


def test_rerun_of_a_finished_run_recomputes_nothing(reference, monkeypatch):
    watched = [reference / "train_log.jsonl", reference / "summary.json", reference / "metrics.json",
               *sorted((reference / "checkpoints").iterdir()), *sorted((reference / ".stages").iterdir())]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}

    def boom(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(study, "train_stage", boom)
    monkeypatch.setattr(study, "evaluate_models", boom)
    summary = run(reference)
    assert numbers(summary) == numbers(read_json(reference / "summary.json"))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before


def test_rerun_with_another_config_is_refused(reference):
    with pytest.raises(ConfigError, match="different config or seed"):
        run(reference, d=5)


# ---- real signals, through the command line ------------------------------------------------------------

# 14 checkpoints of pretraining after the first one: room for a signal to land inside training even when the
# test process is slow to notice the checkpoint on a loaded machine
CLI_SET = ["threads=1", "pretrain_steps=150", "finetune_steps=20", "checkpoint_every=10", "eval_prompts=64",
           "val_prompts=64", "alpha_grid=11", "distance_spreads=0,1"]
TOTAL_STEPS = {"pretrain": 150, "finetune": 20}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cli_cmd(out: Path) -> list[str]:
    sets = [a for s in CLI_SET for a in ("--set", s)]
    return [sys.executable, "-c", "from conjugate.cli import app; app()", "synthetic", "run", "--preset", "smoke",
            "--out", str(out), "--seed", "1", "--quiet", *sets]


def run_cli(out: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(cli_cmd(out), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def progress(out: Path) -> tuple[int, int] | None:
    """``(stage index, step)`` of the run's resume file, or None when there is none."""
    for idx, stage in enumerate(TOTAL_STEPS):
        path = out / "checkpoints" / f"{stage}.resume.safetensors"
        try:
            return idx, resume_step(path)
        except (FileNotFoundError, OSError, SafetensorError):  # absent, or gone between two looks
            continue
    return None


def start_and_wait_for_checkpoint(out: Path, past: tuple[int, int] | None = None) -> subprocess.Popen:
    """Start ``synthetic run`` and return once it has written a checkpoint later than ``past``."""
    proc = subprocess.Popen(cli_cmd(out), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (now := progress(out)) is None or (past is not None and now <= past):
        assert proc.poll() is None, f"the run ended before the checkpoint awaited: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    return proc


def interrupted_at(out: Path) -> tuple[int, int]:
    """Where a stopped run stands: exactly one resume file, strictly inside its stage, and no results yet."""
    found = [s for s in TOTAL_STEPS if (out / "checkpoints" / f"{s}.resume.safetensors").exists()]
    assert len(found) == 1, found
    at = progress(out)
    assert at is not None and 0 < at[1] < TOTAL_STEPS[found[0]], (found, at)
    assert not (out / "summary.json").exists()
    return at


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("cli_reference")
    run_cli(out)
    return read_json(out / "summary.json")


def test_sigint_then_sigkill_then_rerun_matches_uninterrupted(tmp_path, cli_reference):
    """Ctrl-C a fresh run (exit 130 after a checkpoint), kill -9 the resumed run once it has checkpointed
    further, rerun: the numbers equal those of a run that was never stopped. (One chain rather than two
    tests: each extra full run costs seconds of process start-up and plotting.)"""
    out = tmp_path / "run"
    proc = start_and_wait_for_checkpoint(out)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stderr, progress(out))
    assert "interrupted" in stderr and "rerun to resume" in stderr and "Traceback" not in stderr + stdout
    first = interrupted_at(out)

    proc = start_and_wait_for_checkpoint(out, past=first)
    proc.kill()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (stderr, progress(out))
    assert interrupted_at(out) > first

    run_cli(out)
    assert numbers(read_json(out / "summary.json")) == numbers(cli_reference)
    log = [(r["stage"], r["step"]) for r in read_jsonl(out / "train_log.jsonl")]
    assert len(log) == len(set(log))  # rows written after the last checkpoint were dropped on resume
