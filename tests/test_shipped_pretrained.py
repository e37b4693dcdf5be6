"""A preset's shipped pretrained checkpoint: a run of the preset fine-tunes it instead of pretraining, after
checking that it is intact and made with the run's pretraining settings and seed; ``--from-scratch`` pretrains.

The shipped location is a temporary folder (``CONJUGATE_PRETRAINED_DIR``) holding the ``smoke`` pretraining of
one run, shipped with :func:`conjugate.synthetic.shipped.ship`. Runs change only settings read after pretraining
(fewer fine-tuning steps and evaluation prompts) and use one torch thread, so they take seconds and a
pretraining is bit-for-bit repeatable.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conjugate import share
from conjugate.cli import app
from conjugate.config import resolve_synthetic
from conjugate.runs import read_json, read_jsonl, write_json
from conjugate.synthetic import shipped
from conjugate.synthetic.model import load_model
from conjugate.synthetic.shipped import ShippedError
from conjugate.synthetic.study import run_synthetic

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
AFTER = dict(finetune_steps=5, eval_prompts=32, val_prompts=32, alpha_grid=11, scales=[1.0, 2.0],
             distance_spreads=[0.0, 1.0], threads=1)  # only settings read after pretraining
CLI_AFTER = ["--set", "finetune_steps=5", "--set", "eval_prompts=32", "--set", "val_prompts=32", "--set",
             "alpha_grid=11", "--set", "scales=1,2", "--set", "distance_spreads=0,1", "--set", "threads=1"]


def cfg(**over):
    return resolve_synthetic("smoke", {**AFTER, **over})


def run(out: Path, seed: int = 0, over: dict | None = None, **kw) -> dict:
    """A smoke run of ``cfg(**over)`` into ``out`` (``kw``: more arguments of ``run_synthetic``)."""
    return run_synthetic(cfg(**(over or {})), out, preset="smoke", seed=seed, device="cpu", show_progress=False,
                         **kw)


def marker(out: Path) -> dict:
    return read_json(out / ".stages" / "pretrain.done")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path, "cpu")[0].state_dict()


def pretrain_rows(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "train_log.jsonl") if r.get("stage") == "pretrain"]


@pytest.fixture(scope="module")
def producer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished smoke run that trained its own pretraining."""
    out = tmp_path_factory.mktemp("producer") / "run"
    run(out)
    return out


@pytest.fixture(scope="module")
def shipped_root(producer: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrained")
    assert shipped.ship(producer, "smoke", root) == root / "smoke"
    return root


@pytest.fixture
def ships(shipped_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped location is ``shipped_root``; returns the smoke folder."""
    monkeypatch.setenv(shipped.ENV, str(shipped_root))
    return shipped_root / "smoke"


@pytest.fixture
def own_copy(shipped_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped location for this test alone (to damage); returns its smoke folder."""
    root = tmp_path / "pretrained"
    shutil.copytree(shipped_root, root)
    monkeypatch.setenv(shipped.ENV, str(root))
    return root / "smoke"


@pytest.fixture(scope="module")
def consumer(shipped_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[dict]]:
    """A run of the preset, differing from the producer only in fine-tuning, with the checkpoint shipped:
    its folder, summary and what ``on_shipped`` received."""
    out = tmp_path_factory.mktemp("consumer") / "run"
    seen: list[dict] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(shipped.ENV, str(shipped_root))
        summary = run(out, over={"finetune_steps": 7}, on_shipped=seen.append)
    return out, summary, seen


# ---- what ship writes ----------------------------------------------------------------------------------

def test_ship_writes_the_model_its_record_and_sums(producer: Path, shipped_root: Path) -> None:
    folder = shipped_root / "smoke"
    assert sorted(p.name for p in folder.iterdir()) == ["SHA256SUMS", "model.safetensors", "pretrain.json",
                                                         "train_log.jsonl"]
    ckpt = producer / "checkpoints" / "pretrain.safetensors"
    assert (folder / "model.safetensors").read_bytes() == ckpt.read_bytes()
    info = read_json(folder / "pretrain.json")
    c = cfg()
    assert info["preset"] == "smoke" and info["seed"] == 0 and info["steps"] == 150
    assert info["fields"] == share.fields_before(c, c.NOT_PRETRAINING_KEY)
    assert "pretrain_seed" not in info["fields"]  # stands in the record as the seed pretraining used
    assert info["fields"]["pretrain_steps"] == 150 and "finetune_steps" not in info["fields"]
    assert info["sha256"] == marker(producer)["sha256"]
    assert info["seconds"] > 0 and info["steps_per_s"] > 0 and info["device"] == "cpu"
    assert info["environment"]["torch"] and "git_commit" in info and info["threads"]["torch_threads"] == 1
    assert info["made_by"].startswith("conjugate synthetic run --preset smoke --seed 0 --device cpu --from-scratch")
    assert "--set finetune_steps=5" in info["made_by"]
    rows = list(read_jsonl(folder / "train_log.jsonl"))
    assert rows and all(r["stage"] == "pretrain" for r in rows) and rows == pretrain_rows(producer)
    sums = dict(reversed(line.split("  ")) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"model.safetensors", "pretrain.json", "train_log.jsonl"}
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_find_reads_the_override_and_ignores_a_preset_without_one(ships: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert shipped.find("smoke") == ships
    assert shipped.find("quick") is None
    monkeypatch.setenv(shipped.ENV, str(tmp_path / "nowhere"))
    assert shipped.find("smoke") is None
    monkeypatch.delenv(shipped.ENV)
    assert shipped.root() == Path(shipped.__file__).resolve().parent.parent / "data" / "pretrained"


# ---- a run that uses it --------------------------------------------------------------------------------

def test_a_run_of_the_preset_fine_tunes_the_shipped_model(consumer, producer: Path, shipped_root: Path) -> None:
    out, summary, seen = consumer
    folder = shipped_root / "smoke"
    m = marker(out)
    assert m["reused_from"] == "shipped:smoke" and m["seconds"] == 0.0 and m["steps"] == 150
    assert m["shipped_sha256"] == m["sha256"] == read_json(folder / "pretrain.json")["sha256"]
    assert m["producer_seconds"] == read_json(folder / "pretrain.json")["seconds"]
    assert pretrain_rows(out) == []  # nothing pretrained here
    assert not (out / "checkpoints" / "pretrain.resume.safetensors").exists()
    mine, theirs = weights(out / "checkpoints" / "pretrain.safetensors"), weights(folder / "model.safetensors")
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    record = {"source": "shipped", "preset": "smoke", "sha256": m["sha256"], "steps": 150,
              "seconds": m["producer_seconds"]}
    assert summary["pretrained_from"] == read_json(out / "summary.json")["pretrained_from"] == record
    assert summary["pretrain_reused"] is True
    assert seen == [record]
    before = read_json(producer / "summary.json")
    assert before["pretrained_from"] == {"source": "trained"} and before["pretrain_reused"] is False
    assert summary["cont_mse"]["pretrained"] == before["cont_mse"]["pretrained"]  # the same pretrained model
    assert summary["cont_mse"]["finetuned"] != before["cont_mse"]["finetuned"]  # fine-tuned for 7 steps, not 5
    report = (out / "report.md").read_text()
    assert f"- Pretrained model: shipped checkpoint of preset smoke (sha256 {m['sha256'][:12]}, 150 steps" in report
    assert "(fine-tuning and evaluation)" in report and "Pretraining seed" not in report
    assert "Pretrained model:" not in (producer / "report.md").read_text()


def test_from_scratch_pretrains_and_a_rerun_keeps_that_pretraining(ships: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run(out, from_scratch=True, on_shipped=pytest.fail)
    assert "reused_from" not in marker(out) and len(pretrain_rows(out)) > 0
    assert summary["pretrained_from"] == {"source": "trained"} and not summary["pretrain_reused"]
    mine, theirs = weights(out / "checkpoints" / "pretrain.safetensors"), weights(ships / "model.safetensors")
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)  # what the preset trains, bit for bit (one thread)
    before = marker(out)
    again = run(out, on_shipped=pytest.fail)  # without --from-scratch: the finished pretraining is kept
    assert marker(out) == before and again["pretrained_from"] == {"source": "trained"}


def test_the_shipped_model_wins_over_a_pretrain_cache(ships: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    summary = run(tmp_path / "run", pretrain_cache=cache)
    assert summary["pretrained_from"]["source"] == "shipped" and marker(tmp_path / "run")["reused_from"] == \
        "shipped:smoke"
    assert not cache.exists() or not any(p.is_dir() for p in cache.iterdir())  # nothing trained or published


def test_an_interrupted_pretraining_is_replaced_by_the_shipped_model(ships: Path, tmp_path: Path) -> None:
    from conjugate.training import Interrupted

    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run(out, from_scratch=True, stop_after=10)
    assert (out / "checkpoints" / "pretrain.resume.safetensors").exists()
    summary = run(out)
    assert summary["pretrained_from"]["source"] == "shipped"
    assert not (out / "checkpoints" / "pretrain.resume.safetensors").exists()


# ---- refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["model.safetensors", "train_log.jsonl", "pretrain.json"])
def test_a_damaged_file_is_refused_before_anything_is_written(own_copy: Path, tmp_path: Path, name: str) -> None:
    path = own_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    out = tmp_path / "run"
    with pytest.raises(ShippedError) as e:
        run(out)
    msg = str(e.value)
    assert str(path) in msg and "damaged" in msg and "reinstall" in msg and "--from-scratch" in msg
    assert "\n" not in msg
    assert not out.exists()  # nothing trained, nothing written
    assert run(out, from_scratch=True)["pretrained_from"] == {"source": "trained"}  # the way out works


def test_missing_sums_or_a_missing_file_is_refused(own_copy: Path, tmp_path: Path) -> None:
    (own_copy / "train_log.jsonl").unlink()
    with pytest.raises(ShippedError, match="train_log.jsonl: a file of the shipped pretrained checkpoint is missing"):
        run(tmp_path / "a")
    (own_copy / "SHA256SUMS").unlink()
    with pytest.raises(ShippedError, match="SHA256SUMS: missing"):
        run(tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("over, seed, fragments", [
    ({"pretrain_steps": 100}, 0, ["pretrain_steps: shipped 150, this run 100"]),
    ({"pretrain_lr": 5e-4, "width": 16}, 0, ["pretrain_lr: shipped 0.001, this run 0.0005", "width: shipped 32, "
                                                                                                "this run 16"]),
    ({}, 1, ["seed: shipped 0, this run 1"]),
])
def test_other_pretraining_settings_or_seed_are_refused(ships: Path, tmp_path: Path, over: dict, seed: int,
                                                        fragments: list[str]) -> None:
    out = tmp_path / "run"
    with pytest.raises(ShippedError) as e:
        run(out, seed=seed, over=over)
    msg = str(e.value)
    assert all(f in msg for f in fragments), msg
    assert "--from-scratch" in msg and "\n" not in msg
    assert msg.count(", this run ") == len(fragments)  # only the differing fields are listed
    assert not out.exists()


def test_a_seed_refusal_names_pretrain_seed_as_a_way_out(ships: Path, tmp_path: Path) -> None:
    with pytest.raises(ShippedError, match="--set pretrain_seed=0 to fine-tune and evaluate this seed"):
        run(tmp_path / "run", seed=1)


def test_another_seed_fine_tunes_the_shipped_model_with_pretrain_seed(ships: Path, consumer, tmp_path: Path) -> None:
    """Seed 3 with pretrain_seed 0 takes the shipped pretraining (seed 0) and fine-tunes and evaluates with seed 3:
    same pretrained model as the seed-0 consumer, other fine-tuning batches and test prompts."""
    out = tmp_path / "run"
    summary = run(out, seed=3, over={"finetune_steps": 7, "pretrain_seed": 0})
    assert summary["seed"] == 3 and summary["pretrain_seed"] == 0
    assert summary["pretrained_from"]["source"] == "shipped"
    assert (out / "checkpoints" / "pretrain.safetensors").read_bytes() == (ships / "model.safetensors").read_bytes()
    base_out, base, _ = consumer
    assert base["pretrain_seed"] == 0
    fin, base_fin = weights(out / "checkpoints" / "finetune.safetensors"), weights(
        base_out / "checkpoints" / "finetune.safetensors")
    assert any(not torch.equal(fin[k], base_fin[k]) for k in fin)  # other fine-tuning batches
    assert summary["cont_mse"]["pretrained"] != base["cont_mse"]["pretrained"]  # other test prompts
    assert "- Pretraining seed 0 (fine-tuning batches and test prompts: seed 3)." in (out / "report.md").read_text()


def test_check_returns_the_record(ships: Path) -> None:
    info = shipped.check(ships, cfg(finetune_steps=99, alpha_finetune=0.5), 0)
    assert info == read_json(ships / "pretrain.json")


# ---- ship's refusals -----------------------------------------------------------------------------------

def test_ship_refuses_a_pretraining_reused_from_elsewhere(consumer, tmp_path: Path) -> None:
    with pytest.raises(ShippedError, match="reused from shipped:smoke, not trained there"):
        shipped.ship(consumer[0], "smoke", tmp_path)
    assert not (tmp_path / "smoke").exists()


def test_ship_refuses_what_no_run_of_the_preset_would_use(producer: Path, tmp_path: Path) -> None:
    bad = tmp_path / "run"
    shutil.copytree(producer, bad, ignore=shutil.ignore_patterns(".lock"))
    conf = read_json(bad / "config.json")
    with pytest.raises(ShippedError, match="a run of preset smoke, not quick"):
        shipped.ship(bad, "quick", tmp_path / "dest")
    write_json(bad / "config.json", {**conf, "config": {**conf["config"], "pretrain_steps": 20}})
    with pytest.raises(ShippedError, match="pretrain_steps: preset 150, this run 20"):
        shipped.ship(bad, "smoke", tmp_path / "dest")
    write_json(bad / "config.json", conf)
    ckpt = bad / "checkpoints" / "pretrain.safetensors"
    ckpt.write_bytes(ckpt.read_bytes() + b"x")
    with pytest.raises(ShippedError, match="not the checkpoint the pretrain stage recorded"):
        shipped.ship(bad, "smoke", tmp_path / "dest")
    (bad / ".stages" / "pretrain.done").unlink()
    with pytest.raises(ShippedError, match="holds no finished pretraining"):
        shipped.ship(bad, "smoke", tmp_path / "dest")
    with pytest.raises(ShippedError, match="unknown preset 'nope'"):
        shipped.ship(producer, "nope", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_the_script_ships_into_the_override(producer: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", shipped.ENV: str(tmp_path)}
    script = str(ROOT / "scripts" / "ship_pretrained.py")
    done = subprocess.run([sys.executable, script, str(producer), "smoke"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "smoke" / "model.safetensors").read_bytes() == \
        (producer / "checkpoints" / "pretrain.safetensors").read_bytes()
    bad = subprocess.run([sys.executable, script, str(tmp_path / "none"), "smoke"], env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    usage = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True)
    assert usage.returncode == 1 and "Usage: python scripts/ship_pretrained.py RUN_DIR PRESET" in usage.stderr


# ---- the command line ----------------------------------------------------------------------------------

def invoke(*args: str):
    before = torch.get_num_threads()
    result = runner.invoke(app, ["synthetic", "run", "--preset", "smoke", "--quiet", *map(str, args), *CLI_AFTER])
    torch.set_num_threads(before)
    return result


def test_cli_says_it_fine_tunes_the_shipped_model(ships: Path, tmp_path: Path) -> None:
    result = invoke("--out", tmp_path / "run")
    assert result.exit_code == 0, (result.output, result.exception)
    sha = read_json(ships / "pretrain.json")["sha256"]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("pretrained model: ")]
    assert lines == [f"pretrained model: shipped checkpoint of preset smoke (sha256 {sha[:12]}, 150 steps, "
                     f"{read_json(ships / 'pretrain.json')['seconds'] / 60:.1f} min to make); fine-tuning and "
                     "evaluating from it (--from-scratch retrains)"]
    assert "throughput (pretraining)" not in result.stderr  # this run pretrained nothing


def test_cli_refuses_other_pretraining_settings_in_one_line(ships: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("--out", out, "--set", "pretrain_steps=20")
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "pretrain_steps: shipped 150, this run 20" in lines[0] and "--from-scratch" in lines[0]
    assert not out.exists()
    result = invoke("--out", out, "--set", "pretrain_steps=20", "--from-scratch")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "pretrained model: shipped" not in result.stderr
    assert read_json(out / "summary.json")["pretrained_from"] == {"source": "trained"}
