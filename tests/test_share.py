"""Shared pretraining: runs that differ only after pretraining train it once, and get the same numbers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conjugate import share
from conjugate.cli import app
from conjugate.config import ConfigError, resolve_synthetic
from conjugate.runs import read_json
from conjugate.synthetic.model import load_model
from conjugate.synthetic.study import run_synthetic

runner = CliRunner()
FAST = dict(pretrain_steps=30, finetune_steps=5, pretrain_warmup=0, eval_prompts=32, val_prompts=32,
            alpha_grid=11, width=16, layers=1, scales=[1.0, 2.0], distance_spreads=[0.0, 1.0], threads=1)
TIME_KEYS = {"seconds", "throughput", "pretrain_reused", "wall_seconds_this_call"}


def cfg(**over):
    return resolve_synthetic("smoke", {**FAST, **over})


def synthetic_key(c, seed: int, device: str) -> tuple[str, dict]:
    return share.entry_key(share.fields_before(c, c.NOT_PRETRAINING_KEY), c.pretraining_seed(seed), device)


def marker(run: Path) -> dict:
    return read_json(run / ".stages" / "pretrain.done")


def numbers(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIME_KEYS}


def three_runs(tmp_path: Path, run, first, second, seed: int) -> tuple[dict, dict, dict]:
    """``first`` and ``second`` through one cache (``second`` differs after pretraining), ``second`` afresh."""
    cache = tmp_path / "pretrained"
    opts = dict(seed=seed, device="cpu", show_progress=False)
    a = run(first, tmp_path / "a", pretrain_cache=cache, **opts)
    b = run(second, tmp_path / "b", pretrain_cache=cache, **opts)
    fresh = run(second, tmp_path / "fresh", **opts)
    assert not a["pretrain_reused"] and b["pretrain_reused"] and not fresh["pretrain_reused"]
    assert marker(tmp_path / "b")["producer"] == str(tmp_path / "a")
    return a, b, fresh


def test_second_run_reuses_pretraining_and_matches_a_fresh_run(tmp_path: Path) -> None:
    cache = tmp_path / "pretrained"
    a, b, fresh = three_runs(tmp_path, run_synthetic, cfg(), cfg(finetune_steps=9), seed=3)
    assert "reused_from" not in marker(tmp_path / "a")
    mb = marker(tmp_path / "b")
    assert mb["seconds"] == 0.0 and mb["producer"] == str(tmp_path / "a") and mb["steps"] == 30
    assert numbers(b) == numbers(fresh)  # reuse gives exactly what training afresh gives (same threads)
    assert a["cont_mse"]["pretrained"] == b["cont_mse"]["pretrained"]
    assert a["cont_mse"]["finetuned"] != b["cont_mse"]["finetuned"]
    sa = load_model(tmp_path / "a" / "checkpoints" / "pretrain.safetensors", "cpu")[0].state_dict()
    sb = load_model(tmp_path / "b" / "checkpoints" / "pretrain.safetensors", "cpu")[0].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    entries = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert len(entries) == 1 and entries[0].startswith("seed3-")
    meta = read_json(cache / entries[0] / "meta.json")
    assert meta["ident"]["fields"]["pretrain_steps"] == 30 and meta["ident"]["seed"] == 3
    assert meta["stats"]["steps"] == 30 and meta["producer"] == str(tmp_path / "a")


def test_an_interrupted_run_takes_the_entry_another_run_published(tmp_path: Path) -> None:
    from conjugate.training import Interrupted

    cache = tmp_path / "pretrained"
    with pytest.raises(Interrupted):
        run_synthetic(cfg(), tmp_path / "a", seed=2, device="cpu", show_progress=False, pretrain_cache=cache,
                      stop_after=10)
    assert (tmp_path / "a" / "checkpoints" / "pretrain.resume.safetensors").exists()
    assert not any(p.is_dir() for p in cache.iterdir())  # nothing published by an interrupted pretraining
    b = run_synthetic(cfg(finetune_steps=9), tmp_path / "b", seed=2, device="cpu", show_progress=False,
                      pretrain_cache=cache)
    a = run_synthetic(cfg(), tmp_path / "a", seed=2, device="cpu", show_progress=False, pretrain_cache=cache)
    assert not b["pretrain_reused"] and a["pretrain_reused"]
    assert not (tmp_path / "a" / "checkpoints" / "pretrain.resume.safetensors").exists()
    assert a["cont_mse"]["pretrained"] == b["cont_mse"]["pretrained"]


def test_a_different_pretraining_or_seed_is_not_reused(tmp_path: Path) -> None:
    cache = tmp_path / "pretrained"
    run_synthetic(cfg(), tmp_path / "a", seed=0, device="cpu", show_progress=False, pretrain_cache=cache)
    run_synthetic(cfg(pretrain_lr=5e-4), tmp_path / "b", seed=0, device="cpu", show_progress=False,
                  pretrain_cache=cache)
    run_synthetic(cfg(), tmp_path / "c", seed=1, device="cpu", show_progress=False, pretrain_cache=cache)
    assert all("reused_from" not in marker(tmp_path / r) for r in "abc")
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 3
    key = synthetic_key(cfg(), 0, "cpu")
    assert key == synthetic_key(cfg(finetune_steps=99, alpha_finetune=0.5, scales=[1.0, 3.0]), 0, "cpu")
    assert key != synthetic_key(cfg(), 0, "cuda")


def test_pretrain_seed_shares_one_pretraining_between_seeds(tmp_path: Path) -> None:
    """Seeds 1 and 2 with pretrain_seed 0 fine-tune and evaluate from seed 0's pretraining (one cache entry);
    pretrain_seed 2 at seed 0 pretrains exactly as seed 2 does."""
    cache = tmp_path / "pretrained"
    opts = dict(device="cpu", show_progress=False, pretrain_cache=cache)
    a = run_synthetic(cfg(), tmp_path / "a", seed=0, **opts)
    b = run_synthetic(cfg(pretrain_seed=0), tmp_path / "b", seed=1, **opts)
    c = run_synthetic(cfg(pretrain_seed=0), tmp_path / "c", seed=2, **opts)
    assert not a["pretrain_reused"] and b["pretrain_reused"] and c["pretrain_reused"]
    assert [s["pretrain_seed"] for s in (a, b, c)] == [0, 0, 0] and [s["seed"] for s in (a, b, c)] == [0, 1, 2]
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
    assert synthetic_key(cfg(), 0, "cpu") == synthetic_key(cfg(pretrain_seed=0), 7, "cpu")
    assert b["cont_mse"]["pretrained"] != c["cont_mse"]["pretrained"]  # other test prompts, same model
    d = run_synthetic(cfg(pretrain_seed=2), tmp_path / "d", seed=0, device="cpu", show_progress=False)
    e = run_synthetic(cfg(), tmp_path / "e", seed=2, device="cpu", show_progress=False)
    sd = load_model(tmp_path / "d" / "checkpoints" / "pretrain.safetensors", "cpu")[0].state_dict()
    se = load_model(tmp_path / "e" / "checkpoints" / "pretrain.safetensors", "cpu")[0].state_dict()
    assert all(torch.equal(sd[k], se[k]) for k in sd)
    assert d["pretrain_seed"] == e["pretrain_seed"] == 2 and d["seed"] == 0
    with pytest.raises(ConfigError, match="pretrain_seed"):
        cfg(pretrain_seed=-1)


def test_every_field_outside_the_after_pretraining_list_is_in_the_key() -> None:
    import dataclasses

    from conjugate.config import SyntheticConfig
    from conjugate.minilm.config import MiniLMConfig

    for config in (SyntheticConfig, MiniLMConfig):
        names = {f.name for f in dataclasses.fields(config)}
        assert config.AFTER_PRETRAINING <= names  # no typo hides a field
        assert set(share.fields_before(config(), config.AFTER_PRETRAINING)) == names - config.AFTER_PRETRAINING
    assert {"d", "alpha_pretrain", "pretrain_steps", "width", "grad_clip", "weight_decay", "task_seed"} <= \
        set(share.fields_before(cfg(), SyntheticConfig.AFTER_PRETRAINING))
    assert {"languages", "split_seed", "p_icl", "max_shots", "chunks", "pretrain_lr", "max_len"} <= \
        set(share.fields_before(MiniLMConfig(), MiniLMConfig.AFTER_PRETRAINING))
    with pytest.raises(ValueError, match="not fields"):
        share.fields_before(cfg(), frozenset({"bogus"}))


def test_an_entry_made_for_another_config_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "pretrained"
    run_synthetic(cfg(), tmp_path / "a", seed=0, device="cpu", show_progress=False, pretrain_cache=cache)
    name, _ = synthetic_key(cfg(), 0, "cpu")
    meta_path = cache / name / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["ident"]["fields"]["pretrain_lr"] = 0.5
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="made for another config"):
        run_synthetic(cfg(finetune_steps=9), tmp_path / "b", seed=0, device="cpu", show_progress=False,
                      pretrain_cache=cache)


def test_minilm_runs_share_pretraining_and_match_a_fresh_run(tmp_path: Path) -> None:
    from conjugate.minilm.config import resolve_minilm
    from conjugate.minilm.study import run_minilm

    _, b, fresh = three_runs(tmp_path, run_minilm, resolve_minilm("smoke", {"threads": 1}),
                             resolve_minilm("smoke", {"threads": 1, "tune_steps": 6}), seed=1)
    skip = TIME_KEYS | {"threads"}
    assert {k: v for k, v in b.items() if k not in skip} == {k: v for k, v in fresh.items() if k not in skip}


def test_lock_makes_a_second_run_wait(tmp_path: Path) -> None:
    order: list[str] = []
    inside = threading.Event()

    def holder():
        with share.locked(tmp_path, "x"):
            inside.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(5)
    with share.locked(tmp_path, "x"):
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]


def test_cli_pretrain_cache_that_is_a_file(tmp_path: Path) -> None:
    bad = tmp_path / "cache"
    bad.write_text("not a folder")
    result = runner.invoke(app, ["synthetic", "run", "--preset", "smoke", "--out", str(tmp_path / "r"),
                                 "--pretrain-cache", str(bad), "--quiet", "--set", "pretrain_steps=5"])
    assert result.exit_code == 2
    assert "is not a folder" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()
