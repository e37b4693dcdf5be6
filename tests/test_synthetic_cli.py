"""``conjugate synthetic run | theory | eval`` end to end, through Typer's test runner.

Bad input must give exit code 2 and a one-line error naming the problem, with no traceback and no results
written. A smoke run must write every file of the issue's contract, and the same seed must give the same
numbers. Runs use one torch thread (bit-exact for a fixed thread count, and fastest on a shared machine).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.config import resolve_synthetic
from conjugate.runs import read_json, read_jsonl
from conjugate.synthetic.model import InContextRegressor, ModelConfig, load_model
from conjugate.training import save_model

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
TIME_KEYS = {"seconds", "throughput"}
FIGURES = {"loss_vs_exemplars.png", "loss_vs_scale.png", "alpha_eff.png", "distance_sweep.png"}


def invoke(*args: str):
    before = torch.get_num_threads()
    result = runner.invoke(app, [str(a) for a in args])
    torch.set_num_threads(before)
    return result


def smoke_run(out: Path):
    return invoke("synthetic", "run", "--preset", "smoke", "--out", out, "--quiet", "--seed", "0",
                  "--set", "threads=1")


def assert_clean_usage_error(result, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in result.output


def finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    result = smoke_run(out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"report: {out / 'report.md'}" in result.stdout
    assert "learned (pretrained vs Bayes): disc_last_vs_ridge" in result.stderr  # the criteria and the split
    assert "explains" in result.stderr and "predicted by Bayes(α_eff)" in result.stderr.replace("\n", " ")
    return out


# ---- run -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragments", [
    (["--preset", "nope"], ["unknown preset 'nope'", "smoke"]),
    (["--set", "nope=1"], ["unknown --set key 'nope'"]),
    (["--set", "d=abc"], ["--set d=abc: expected int"]),
    (["--set", "sigma=-1"], ["sigma must be > 0", "-1"]),
    (["--set", "scales=0,1"], ["scales must be a non-empty list of values > 0", "[0.0, 1.0]"]),
    (["--set", "d"], ["--set expects key=value"]),
    (["--device", "tpu"], ["unknown device 'tpu'"]),
])
def test_run_rejects_bad_input_without_writing_anything(tmp_path, args, fragments):
    out = tmp_path / "run"
    result = invoke("synthetic", "run", "--out", out, "--quiet", *(["--preset", "smoke"] if "--preset" not in args
                                                                  else []), *args)
    assert_clean_usage_error(result, *fragments)
    assert not (out / "summary.json").exists()
    assert not out.exists()  # the check happens before the run folder is created


def test_run_into_a_folder_of_another_config_is_refused(smoke):
    before = (smoke / "summary.json").read_bytes()
    result = invoke("synthetic", "run", "--preset", "smoke", "--out", smoke, "--quiet", "--set", "threads=1",
                    "--set", "d=5")
    assert_clean_usage_error(result, "different config or seed", str(smoke))
    assert (smoke / "summary.json").read_bytes() == before


def test_smoke_run_writes_the_contract(smoke):
    cfg = resolve_synthetic("smoke", {"threads": 1})

    conf = read_json(smoke / "config.json")
    assert conf["seed"] == 0 and conf["preset"] == "smoke" and conf["config"] == cfg.to_dict()
    env = conf["environment"]
    assert "git_commit" in env
    for key in ("python", "torch", "numpy", "conjugate"):
        assert env[key], key

    s = read_json(smoke / "summary.json")
    required = {"preset", "seed", "d", "n_points", "cont_mse", "disc_mse", "bayes", "conjugate_scale",
                "implicit_alpha", "distance_sweep", "seconds", "learned", "decomposition", "last_exemplar"}
    assert required <= set(s)
    assert (s["preset"], s["seed"], s["d"], s["n_points"]) == ("smoke", 0, cfg.d, cfg.n_points)
    assert set(s["cont_mse"]) == {"pretrained", "finetuned", "finetuned_conjugate"}
    assert set(s["disc_mse"]) == {"pretrained", "finetuned"}
    assert {"ridge_cont", "mixture_pretrain_cont", "dmmse_disc"} <= set(s["bayes"])
    assert set(s["implicit_alpha"]) == {"pretrained", "finetuned"}
    assert [set(r) for r in s["distance_sweep"]] == [{"s", "pretrained", "finetuned", "ridge"}] * len(
        cfg.distance_spreads)
    assert [r["s"] for r in s["distance_sweep"]] == cfg.distance_spreads
    numbers = [*s["cont_mse"].values(), *s["disc_mse"].values(), *s["bayes"].values(),
               *(v for r in s["distance_sweep"] for k, v in r.items() if k != "s")]
    assert all(finite(v) and v >= 0 for v in numbers)
    assert s["conjugate_scale"] in cfg.scales
    assert all(0.0 <= a <= 1.0 for a in s["implicit_alpha"].values())
    assert finite(s["seconds"]) and s["seconds"] > 0
    # exact Bayes references are far better than chance on their own distribution
    assert s["bayes"]["ridge_cont"] < 1.0 and s["bayes"]["dmmse_disc"] < s["bayes"]["ridge_cont"]
    # the conjugate number is the fine-tuned model's D_cont error at the chosen scale
    assert s["cont_mse"]["finetuned_conjugate"] == s["cont_mse_by_scale"]["finetuned"][str(s["conjugate_scale"])]

    metrics = read_json(smoke / "metrics.json")
    assert metrics["positions"] == list(range(cfg.n_points)) and metrics["curves"] and metrics["bayes_curves"]

    assert {p.name for p in (smoke / "figures").iterdir()} == FIGURES
    for p in (smoke / "figures").iterdir():
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 1000
    report = (smoke / "report.md").read_text()
    assert "preset `smoke`" in report and all(f"figures/{f}" in report for f in FIGURES)
    assert "## Did the pretrained model learn the mixture?" in report
    assert "## Forgetting: suppressed or erased?" in report

    log = list(read_jsonl(smoke / "train_log.jsonl"))
    assert log and all({"step", "loss", "lr", "elapsed"} <= set(r) for r in log)
    assert all(finite(r["loss"]) and r["lr"] > 0 and r["elapsed"] >= 0 for r in log)
    assert max(r["step"] for r in log if r["stage"] == "pretrain") == cfg.pretrain_steps
    assert max(r["step"] for r in log if r["stage"] == "finetune") == cfg.finetune_steps

    ckpts = sorted(p.name for p in (smoke / "checkpoints").iterdir())
    assert ckpts == ["finetune.safetensors", "pretrain.safetensors"]
    model, meta = load_model(smoke / "checkpoints" / "finetune.safetensors")
    assert model.cfg.d == cfg.d and meta["stage"] == "finetune"


def test_same_seed_gives_the_same_numbers(smoke, tmp_path):
    result = smoke_run(tmp_path / "again")
    assert result.exit_code == 0, result.output
    a, b = read_json(smoke / "summary.json"), read_json(tmp_path / "again" / "summary.json")
    assert {k: v for k, v in a.items() if k not in TIME_KEYS} == {k: v for k, v in b.items() if k not in TIME_KEYS}


# ---- theory --------------------------------------------------------------------------------------------

def test_theory_writes_json_and_figure(tmp_path):
    out = tmp_path / "theory"
    result = invoke("synthetic", "theory", "--out", out, "--preset", "smoke", "--alpha", "0", "--alpha", "0.5",
                    "--alpha", "1", "--set", "eval_prompts=128")
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'theory.json'}" in result.stdout
    th = read_json(out / "theory.json")
    assert set(th["alphas"]) == {"0.0", "0.5", "1.0"}
    assert (out / "figures" / "theory.png").read_bytes()[:8] == PNG
    assert read_json(out / "config.json")["config"]["eval_prompts"] == 128
    a0, a1 = th["alphas"]["0.0"], th["alphas"]["1.0"]
    # the α limits are ridge and dMMSE, and each prior is best on its own distribution
    assert a0["cont_mse"] == th["ridge_cont"] and a1["disc_mse"] == th["dmmse_disc"]
    assert set(a0["p_disc_cont"]) == {0.0} and set(a1["p_disc_disc"]) == {1.0}
    assert a0["cont_mse"] < a1["cont_mse"] and a1["disc_mse"] < a0["disc_mse"]
    assert set(a0["cont_by_scale"]) == {str(c) for c in resolve_synthetic("smoke").scales}


@pytest.mark.parametrize("args, fragment", [
    (["--alpha", "1.5"], "--alpha values must lie in [0, 1]"),
    (["--set", "sigma=-1"], "sigma must be > 0"),
    (["--preset", "nope"], "unknown preset 'nope'"),
])
def test_theory_rejects_bad_input(tmp_path, args, fragment):
    result = invoke("synthetic", "theory", "--out", tmp_path / "t", *args)
    assert_clean_usage_error(result, fragment)
    assert not (tmp_path / "t" / "theory.json").exists()


# ---- eval ----------------------------------------------------------------------------------------------

def test_eval_of_a_run_checkpoint(smoke, tmp_path):
    out = tmp_path / "eval"
    result = invoke("synthetic", "eval", "--checkpoint", smoke / "checkpoints" / "finetune.safetensors",
                    "--out", out, "--scales", "1,2", "--set", "eval_prompts=64")
    assert result.exit_code == 0, result.output
    ev = read_json(out / "eval.json")
    assert set(ev["mse"]) == {"1.0", "2.0"}
    assert all(set(row) == {"cont", "disc"} and all(finite(v) for v in row.values()) for row in ev["mse"].values())
    assert ev["checkpoint_meta"]["stage"] == "finetune"
    # task settings come from the run's config.json, the override on top
    cfg = read_json(out / "config.json")["config"]
    run_cfg = read_json(smoke / "config.json")["config"]
    assert cfg == {**run_cfg, "eval_prompts": 64}


def test_eval_refuses_a_config_whose_d_differs_from_the_checkpoint(smoke, tmp_path):
    result = invoke("synthetic", "eval", "--checkpoint", smoke / "checkpoints" / "finetune.safetensors",
                    "--out", tmp_path / "e", "--set", "d=7")
    d = read_json(smoke / "config.json")["config"]["d"]
    assert d != 7
    assert_clean_usage_error(result, f"the model has d={d}", "d=7")
    assert not (tmp_path / "e" / "eval.json").exists()


@pytest.fixture
def loose_checkpoint(tmp_path) -> Path:
    """A checkpoint with d = 3 outside any run folder (so the preset supplies the task settings)."""
    path = tmp_path / "models" / "m" / "ckpt.safetensors"
    save_model(path, InContextRegressor(ModelConfig(d=3, n_points=12, width=16, layers=1, heads=2)))
    return path


def test_eval_of_a_loose_checkpoint_uses_the_preset(loose_checkpoint, tmp_path):
    out = tmp_path / "e"
    result = invoke("synthetic", "eval", "--checkpoint", loose_checkpoint, "--out", out, "--preset", "smoke",
                    "--set", "d=3", "--set", "eval_prompts=32", "--scales", "1")
    assert result.exit_code == 0, result.output
    assert set(read_json(out / "eval.json")["mse"]) == {"1.0"}


@pytest.mark.parametrize("args, fragments", [
    (["--set", "d=5"], ["d=3", "d=5"]),
    (["--set", "d=3", "--set", "n_points=20"], ["at most 12 points", "n_points=20"]),
    (["--set", "d=3", "--scales", "0,1"], ["scales must be > 0"]),
    (["--set", "d=3", "--scales", "one"], ["--scales: expected comma-separated numbers"]),
    (["--set", "d=abc"], ["--set d=abc: expected int"]),
])
def test_eval_rejects_bad_input(loose_checkpoint, tmp_path, args, fragments):
    result = invoke("synthetic", "eval", "--checkpoint", loose_checkpoint, "--out", tmp_path / "e", "--preset",
                    "smoke", *args)
    assert_clean_usage_error(result, *fragments)
    assert not (tmp_path / "e").exists()


def test_eval_rejects_missing_and_corrupt_checkpoints(tmp_path):
    result = invoke("synthetic", "eval", "--checkpoint", tmp_path / "none.safetensors", "--out", tmp_path / "e")
    assert_clean_usage_error(result, "does not exist")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    result = invoke("synthetic", "eval", "--checkpoint", junk, "--out", tmp_path / "e")
    assert_clean_usage_error(result, str(junk), "not a conjugate model checkpoint")
    assert not (tmp_path / "e").exists()
