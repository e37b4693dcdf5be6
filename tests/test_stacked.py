"""Stacked pretraining of several seeds (conjugate.synthetic.stacked): the same models as separate runs, exact
resume, published to the share cache where a run takes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conjugate import share
from conjugate.cli import app
from conjugate.config import resolve_synthetic
from conjugate.runs import RunDir, read_json
from conjugate.synthetic.model import load_model
from conjugate.synthetic.stacked import RESUME_NAME, clip_per_model, pretrain_seeds
from conjugate.synthetic.study import run_synthetic, train_model
from conjugate.training import Interrupted

runner = CliRunner()
FAST = dict(pretrain_steps=30, finetune_steps=5, pretrain_warmup=5, eval_prompts=32, val_prompts=32,
            alpha_grid=11, width=16, layers=1, scales=[1.0, 2.0], distance_spreads=[0.0, 1.0], threads=1)
OPTS = dict(device="cpu", show_progress=False)


def cfg(**over):
    return resolve_synthetic("smoke", {**FAST, **over})


def entry_state(result: dict, seed: int) -> dict[str, torch.Tensor]:
    return load_model(Path(result["entries"][seed]) / "pretrain.safetensors", "cpu")[0].state_dict()


def test_stacked_matches_separate_single_seed_pretraining(tmp_path: Path) -> None:
    c = cfg(grad_clip=0.05, weight_decay=0.01)  # clipping active at every step: per-seed clipping is exercised
    result = pretrain_seeds(c, [2, 0, 1], tmp_path / "cache", **OPTS)
    assert result["trained"] == result["pretraining_seeds"] == [0, 1, 2] and result["skipped"] == []
    for seed in (0, 1, 2):
        with RunDir(tmp_path / f"single{seed}", "synthetic run") as run:
            single = train_model(c, run, seed, torch.device("cpu"), "pretrain", None, show_progress=False)
        stacked, ref = entry_state(result, seed), single.state_dict()
        assert stacked.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(stacked[k], ref[k], rtol=1e-4, atol=1e-5)
        meta = read_json(Path(result["entries"][seed]) / "meta.json")
        assert meta["stats"]["stacked"] == 3 and meta["stats"]["steps"] == 30 and meta["stats"]["stage"] == "pretrain"
        assert meta["stats"]["steps_per_s_total"] == pytest.approx(3 * meta["stats"]["steps_per_s"])
        assert meta["producer"] == result["workdir"]
    seeds_differ = entry_state(result, 0)["read_in.weight"] - entry_state(result, 1)["read_in.weight"]
    assert seeds_differ.abs().max() > 1e-3


def test_in_float64_stacked_and_single_agree_to_rounding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 differences are the batched products' rounding, amplified by training: in float64 the same
    150 steps agree to ~1e-11 (a logic difference, e.g. in clipping or the optimiser, would show at once)."""
    from conjugate.synthetic import tasks

    sample = tasks.sample_mixture
    monkeypatch.setattr(tasks, "sample_mixture", lambda *a, **k: sample(*a, **{**k, "dtype": torch.float64}))
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        c = cfg(pretrain_steps=150, grad_clip=0.1)
        result = pretrain_seeds(c, [0, 1], tmp_path / "cache", **OPTS)
        for seed in (0, 1):
            with RunDir(tmp_path / f"single{seed}", "synthetic run") as run:
                ref = train_model(c, run, seed, torch.device("cpu"), "pretrain", None, show_progress=False)
            got = entry_state(result, seed)
            for k, v in ref.state_dict().items():
                assert got[k].dtype == torch.float64
                torch.testing.assert_close(got[k], v, rtol=0, atol=1e-9)
    finally:
        torch.set_default_dtype(before)


def test_clipping_is_per_model() -> None:
    g = [torch.tensor([[3.0, 4.0], [0.3, 0.4]]), torch.tensor([[0.0], [0.0]])]  # norms 5 and 0.5
    ref = [t.clone() for t in g]
    norms = clip_per_model(g, 1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))
    for i in range(2):
        single = [r[i].clone().requires_grad_() for r in ref]
        for p in single:
            p.grad = p.detach().clone()
        torch.nn.utils.clip_grad_norm_(single, 1.0)
        for p, t in zip(single, g, strict=True):
            torch.testing.assert_close(p.grad, t[i])


def test_resume_after_an_interruption_ends_like_an_uninterrupted_call(tmp_path: Path) -> None:
    c = cfg(checkpoint_every=7)
    whole = pretrain_seeds(c, [0, 1], tmp_path / "whole", **OPTS)
    cache = tmp_path / "cache"
    with pytest.raises(Interrupted, match="stopped at step 12/30"):
        pretrain_seeds(c, [0, 1], cache, stop_after=12, **OPTS)
    assert not any(p.is_dir() and not p.name.startswith(".") for p in cache.iterdir())  # nothing published
    resume = cache / Path(whole["workdir"]).name / "checkpoints" / RESUME_NAME
    assert resume.exists()  # the default workdir is a function of settings, seeds and device only
    with pytest.raises(Interrupted, match="stopped at step 15/30"):  # stopped again, from the step-12 checkpoint
        pretrain_seeds(c, [0, 1], cache, stop_after=3, **OPTS)
    rest = pretrain_seeds(c, [1, 0], cache, **OPTS)
    assert rest["steps"] == 15 and rest["trained"] == [0, 1] and not resume.exists()
    for seed in (0, 1):
        a, b = entry_state(whole, seed), entry_state(rest, seed)
        assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line)["step"] for line in (Path(rest["workdir"]) / "train_log.jsonl").read_text().splitlines()]
    assert log == [30]  # LOG_EVERY 50: only the last step, once, though three calls trained


def test_runs_take_the_stacked_entries_and_stacking_skips_existing_ones(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = run_synthetic(cfg(), tmp_path / "run0", seed=0, pretrain_cache=cache, **OPTS)
    assert not first["pretrain_reused"]
    result = pretrain_seeds(cfg(), [0, 1], cache, **OPTS)
    assert result["skipped"] == [0] and result["trained"] == [1] and result["stacked"] == 1
    again = pretrain_seeds(cfg(), [0, 1], cache, **OPTS)
    assert again["trained"] == [] and again["skipped"] == [0, 1]
    # a run of seed 1 with other fine-tuning settings takes the stacked entry instead of pretraining
    summary = run_synthetic(cfg(finetune_steps=7), tmp_path / "run1", seed=1, pretrain_cache=cache, **OPTS)
    assert summary["pretrain_reused"]
    marker = read_json(tmp_path / "run1" / ".stages" / "pretrain.done")
    name, _ = share.entry_key(share.fields_before(cfg(), cfg().NOT_PRETRAINING_KEY), 1, "cpu")
    assert marker["reused_from"] == str(cache / name) and marker["stacked"] == 1
    assert marker["producer"] == result["workdir"] and marker["seconds"] == 0.0
    got = load_model(tmp_path / "run1" / "checkpoints" / "pretrain.safetensors", "cpu")[0].state_dict()
    want = entry_state(result, 1)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_pretrain_seed_makes_every_seed_one_pretraining(tmp_path: Path) -> None:
    result = pretrain_seeds(cfg(pretrain_seed=5, pretrain_steps=3), [0, 1, 2], tmp_path / "cache", **OPTS)
    assert result["pretraining_seeds"] == result["trained"] == [5] and result["stacked"] == 1


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(("args", "words"), [
    (["--seeds", "3-1"], "--seeds"),
    (["--seeds", "0,x"], "--seeds"),
    (["--seeds", "0,0"], "repeated"),
    (["--seeds", "0-1", "--preset", "nope"], "unknown preset"),
    (["--seeds", "0-1", "--set", "width=0"], "width"),
    (["--seeds", "0-1", "--device", "tpu"], "device"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    result = runner.invoke(app, ["synthetic", "pretrain-seeds", "--cache", str(tmp_path / "c"), "--quiet", *args])
    assert words in one_line_error(result)


def test_cli_pretrains_and_then_skips(tmp_path: Path) -> None:
    args = ["synthetic", "pretrain-seeds", "--preset", "smoke", "--seeds", "0-1", "--cache", str(tmp_path / "c"),
            "--device", "cpu", "--quiet", "--set", "pretrain_steps=4", "--set", "width=16", "--set", "layers=1",
            "--set", "threads=1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, (first.output, first.exception)
    assert first.stdout.count(": pretrained: ") == 2 and "steps/s per seed × 2 seeds" in first.stderr
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and second.stdout.count("already in the cache") == 2
