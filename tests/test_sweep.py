"""Sweeps: grid × seeds as ordinary run folders, resume, failures, bad input, aggregation, Ray."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conjugate.aggregate import describe, flatten_numbers
from conjugate.cli import app
from conjugate.config import ConfigError, SyntheticConfig
from conjugate.runs import write_json
from conjugate.sweep import merge_with_existing, parse_grid, parse_seeds, plan_sweep, run_name

runner = CliRunner()

# the whole pipeline in about two seconds per run: a one-layer model, a handful of steps, few prompts
FAST = ["pretrain_steps=4", "finetune_steps=2", "pretrain_warmup=0", "eval_prompts=32", "val_prompts=32",
        "alpha_grid=11", "width=16", "layers=1", "scales=1,2", "distance_spreads=0,1"]
POISONED = "alpha_pretrain-0.5_seed-1"  # a run that fails at run time (its folder holds another run)
INTERRUPTED = "alpha_pretrain-0.2_seed-1"


def sweep_args(out: Path, *extra: str, seeds: str = "0,1", grid: tuple[str, ...] = ("alpha_pretrain=0.2,0.5",),
               parallel: int = 2) -> list[str]:
    args = ["sweep", "synthetic", "--preset", "smoke", "--seeds", seeds, "--out", str(out),
            "--max-parallel", str(parallel)]
    for g in grid:
        args += ["--grid", g]
    for s in FAST:
        args += ["--set", s]
    return args + list(extra)


def summary(out: Path, name: str) -> dict:
    return json.loads((out / "runs" / name / "summary.json").read_text())


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A local sweep of 2 grid values × 2 seeds in which one run fails at run time."""
    out = tmp_path_factory.mktemp("sweep") / "s"
    poisoned = out / "runs" / POISONED
    poisoned.mkdir(parents=True)
    (poisoned / "config.json").write_text(json.dumps({"config": {"d": 99}, "seed": 1}))
    result = runner.invoke(app, sweep_args(out))
    return out, result


# ---- pure helpers -------------------------------------------------------------------------------------

def test_run_names_and_grid_parsing() -> None:
    assert run_name({"alpha_pretrain": 0.2, "d": 4}, 0) == "alpha_pretrain-0.2_d-4_seed-0"
    assert run_name({"scales": [1.0, 2.0], "compile": True}, 3) == "scales-1.0+2.0_compile-true_seed-3"
    assert run_name({}, 7) == "seed-7"
    grid = parse_grid(["d=4,8", "scales=1,2;1,3", "alpha-pretrain=0.1"], SyntheticConfig)
    assert grid == {"d": [4, 8], "scales": [[1.0, 2.0], [1.0, 3.0]], "alpha_pretrain": [0.1]}
    assert parse_seeds("0, 2,5-7") == [0, 2, 5, 6, 7]
    for bad in (["d=4,4.0"], ["d=4", "d=8"], ["d"], ["d=,"], ["nope=1"]):
        with pytest.raises(ConfigError):
            parse_grid(bad, SyntheticConfig)
    for bad in ("", "1,1", "-1", "a", "5-2"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_a_sweep_can_be_extended_with_seeds_and_values(tmp_path: Path) -> None:
    old = plan_sweep("synthetic", "smoke", "0,1", ["d=2,3"], ["width=16"])
    write_json(tmp_path / "sweep.json", old.spec())
    merged = merge_with_existing(plan_sweep("synthetic", "smoke", "1,2", ["d=4,3"], ["width=16"]), tmp_path)
    assert merged.seeds == [0, 1, 2] and merged.grid == {"d": [2, 3, 4]}
    assert len(merged.runs()) == 9 and {r["name"] for r in old.runs()} < {r["name"] for r in merged.runs()}
    with pytest.raises(ConfigError, match="overrides"):
        merge_with_existing(plan_sweep("synthetic", "smoke", "0", ["d=2"], ["width=32"]), tmp_path)


def test_flatten_and_describe() -> None:
    flat = flatten_numbers({"seed": 3, "a": {"b": 1, "c": None, "d": True, "e": "x", "f": float("nan")},
                            "g": [{"s": 0.5}], "h": 2.5})
    assert flat == {"a.b": 1.0, "g.0.s": 0.5, "h": 2.5}
    stats = describe([1.0, 2.0, 4.0])
    assert stats["mean"] == pytest.approx(7 / 3) and stats["n"] == 3
    assert stats["std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert (stats["min"], stats["max"]) == (1.0, 4.0)
    assert describe([5.0])["std"] is None


# ---- the local engine ----------------------------------------------------------------------------------

def test_local_sweep_runs_every_point_and_records_a_failure(finished_sweep) -> None:
    out, result = finished_sweep
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    names = [run_name({"alpha_pretrain": a}, s) for a in (0.2, 0.5) for s in (0, 1)]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(names)
    for name in names:
        if name == POISONED:
            continue
        run = out / "runs" / name
        # an ordinary run folder, exactly as `conjugate synthetic run` writes it
        for f in ("config.json", "summary.json", "metrics.json", "report.md", "checkpoints/finetune.safetensors"):
            assert (run / f).is_file(), f"{name}: {f} missing"
        cfg = json.loads((run / "config.json").read_text())
        alpha, seed = (0.2 if "0.2" in name else 0.5), int(name[-1])
        assert cfg["seed"] == seed and cfg["config"]["alpha_pretrain"] == alpha
        assert cfg["config"]["pretrain_steps"] == 4 and cfg["config"]["width"] == 16 and cfg["preset"] == "smoke"
        assert summary(out, name)["seed"] == seed
        assert not (run / "error.txt").exists()

    # the failed run: recorded, the others completed
    assert not (out / "runs" / POISONED / "summary.json").exists()
    error = (out / "runs" / POISONED / "error.txt").read_text()
    assert "different config" in error and "Traceback" in error
    failures = json.loads((out / "failures.json").read_text())
    assert [f["name"] for f in failures] == [POISONED]
    assert failures[0]["point"] == {"alpha_pretrain": 0.5} and failures[0]["seed"] == 1
    assert "different config" in failures[0]["error"]

    spec = json.loads((out / "sweep.json").read_text())
    assert spec["study"] == "synthetic" and spec["preset"] == "smoke" and spec["seeds"] == [0, 1]
    assert spec["grid"] == {"alpha_pretrain": [0.2, 0.5]} and spec["overrides"]["pretrain_steps"] == 4
    assert sorted(r["name"] for r in spec["runs"]) == sorted(names)
    assert spec["invocations"][-1]["engine"] == "local" and spec["invocations"][-1]["max_parallel"] == 2


def test_aggregate_matches_the_run_summaries(finished_sweep) -> None:
    out, _ = finished_sweep
    agg = json.loads((out / "aggregate.json").read_text())
    by_label = {p["label"]: p for p in agg["points"]}
    assert set(by_label) == {"alpha_pretrain=0.2", "alpha_pretrain=0.5"}
    full = by_label["alpha_pretrain=0.2"]
    vals = [summary(out, run_name({"alpha_pretrain": 0.2}, s))["cont_mse"]["finetuned"] for s in (0, 1)]
    stats = full["fields"]["cont_mse.finetuned"]
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(statistics.fmean(vals))
    assert stats["std"] == pytest.approx(statistics.stdev(vals))
    assert (stats["min"], stats["max"]) == (min(vals), max(vals))
    assert full["seeds"] == [0, 1] and full["missing"] == []
    half = by_label["alpha_pretrain=0.5"]
    assert half["missing"] == [POISONED] and half["fields"]["forgetting_ratio"]["n"] == 1
    assert half["fields"]["forgetting_ratio"]["std"] is None
    assert "seed" not in full["fields"] and "distance_sweep.0.finetuned" in full["fields"]

    md = (out / "aggregate.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| alpha_pretrain"))
    for col in ("cont_mse.pretrained", "cont_mse.finetuned_conjugate", "forgetting_ratio", "recovered_fraction",
                "implicit_alpha.pretrained", "implicit_alpha.finetuned"):
        assert col in header
    assert f"{stats['mean']:.4g} ± {stats['std']:.2g}" in md
    assert "1 (1 unfinished)" in md
    assert (out / "figures" / "vs_alpha_pretrain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_aggregate_counts_the_claims_over_seeds(finished_sweep) -> None:
    out, _ = finished_sweep
    agg = json.loads((out / "aggregate.json").read_text())
    point = next(p for p in agg["points"] if p["label"] == "alpha_pretrain=0.2")
    names = [run_name({"alpha_pretrain": 0.2}, s) for s in (0, 1)]
    forgetting = point["claims"]["forgetting"]
    ratios = [summary(out, n)["cont_mse"]["finetuned"] / summary(out, n)["cont_mse"]["pretrained"] for n in names]
    assert forgetting["values"] == {n: pytest.approx(r) for n, r in zip(names, ratios, strict=True)}
    assert (forgetting["met"], forgetting["n"]) == (sum(r >= 1.25 for r in ratios), 2)
    assert set(point["claims"]) >= {"learned_bayes", "forgetting", "disc_not_worse", "implicit_inference"}
    md = (out / "aggregate.md").read_text()
    assert f"| 0.2 | forgetting | ≥ 1.25 | {forgetting['met']}/2 |" in md


def test_readme_sweep_block_is_generated_from_the_runs(finished_sweep, tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_readme", Path(__file__).parent.parent / "scripts" /
                                                  "update_readme.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    src, _ = finished_sweep
    out = tmp_path / "s"
    shutil.copytree(src, out)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- alpha:start -->\nold\n<!-- alpha:end -->\nrest\n")
    script.sweep_block(str(out), readme, block="alpha")
    text = readme.read_text()
    assert text.startswith("intro\n<!-- alpha:start -->\nGenerated by") and text.endswith("end -->\nrest\n")
    assert "old" not in text and "--grid alpha_pretrain=0.2,0.5" in text and "--block alpha" in text
    agg = json.loads((out / "aggregate.json").read_text())
    point = next(p for p in agg["points"] if p["label"] == "alpha_pretrain=0.2")
    stats = point["fields"]["cont_mse.finetuned"]
    assert f"{stats['mean']:.4g} ± {stats['std']:.2g}" in text
    assert "| 0.2 | forgetting | ≥ 1.25 |" in text
    assert "![alpha_pretrain](docs/alpha/vs_alpha_pretrain.png)" in text
    assert (tmp_path / "docs" / "alpha" / "vs_alpha_pretrain.png").read_bytes()[:4] == b"\x89PNG"
    # a sweep over seeds only lists every run
    seeds_only = tmp_path / "seeds-only"
    shutil.copytree(out, seeds_only)
    spec = json.loads((seeds_only / "sweep.json").read_text())
    spec["grid"] = {}
    spec["runs"] = [r for r in spec["runs"] if r["point"] == {"alpha_pretrain": 0.2}]
    for r in spec["runs"]:
        r["point"] = {}
    (seeds_only / "sweep.json").write_text(json.dumps(spec))
    readme.write_text("<!-- sweep-quick:start -->\n<!-- sweep-quick:end -->\n")
    script.sweep_block(str(seeds_only), readme)
    text = readme.read_text()
    for r in spec["runs"]:
        assert f"| {summary(seeds_only, r['name'])['cont_mse']['pretrained']:.4f} |" in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        script.sweep_block(str(out), readme)


@pytest.mark.parametrize("share", [True, False])
def test_a_fine_tuning_grid_trains_each_pretraining_once(tmp_path: Path, share: bool) -> None:
    out = tmp_path / "s"
    extra = [] if share else ["--no-share-pretraining"]
    result = runner.invoke(app, sweep_args(out, *extra, seeds="0", grid=("finetune_lr=1e-5,1e-4",), parallel=2))
    assert result.exit_code == 0, result.output
    names = [run_name({"finetune_lr": v}, 0) for v in (1e-5, 1e-4)]
    markers = [json.loads((out / "runs" / n / ".stages" / "pretrain.done").read_text()) for n in names]
    reused = [("reused_from" in m) for m in markers]
    assert sorted(reused) == ([False, True] if share else [False, False])  # both ran at once: one waited
    assert [summary(out, n)["pretrain_reused"] for n in names] == reused
    assert (out / "pretrained").is_dir() == share
    assert summary(out, names[0])["cont_mse"]["pretrained"] == summary(out, names[1])["cont_mse"]["pretrained"]
    spec = json.loads((out / "sweep.json").read_text())
    assert spec["invocations"][-1]["share_pretraining"] is share


def test_synthetic_claims_thresholds() -> None:
    from conjugate.minilm.claims import minilm_claims
    from conjugate.synthetic.claims import synthetic_claims

    s = {"cont_mse": {"pretrained": 0.2, "finetuned": 0.3, "finetuned_conjugate": 0.26},
         "bayes": {"mixture_pretrain_cont": 0.18}, "disc_mse": {"pretrained": 0.05, "finetuned": 0.04},
         "last_exemplar": {"disc": {"pretrained": 0.01, "finetuned": 0.008}},
         "implicit_alpha": {"pretrained": 0.2, "finetuned": 0.39}}
    c = synthetic_claims(s)
    assert c["learned_bayes"]["value"] == pytest.approx(0.2 / 0.18) and c["learned_bayes"]["met"]  # ≤ 1.15
    assert not synthetic_claims({**s, "bayes": {"mixture_pretrain_cont": 0.15}})["learned_bayes"]["met"]
    assert c["forgetting"]["value"] == pytest.approx(1.5) and c["forgetting"]["met"]
    assert c["disc_not_worse"]["met"] and c["disc_not_worse"]["value"] == pytest.approx(-0.002)  # at n−1
    assert c["recovery"]["value"] == pytest.approx(0.4) and c["recovery"]["met"]
    assert c["implicit_inference"]["value"] == pytest.approx(0.19) and not c["implicit_inference"]["met"]
    assert not synthetic_claims({**s, "cont_mse": {**s["cont_mse"], "finetuned_conjugate": 0.28}})["recovery"]["met"]
    no_forgetting = synthetic_claims({**s, "cont_mse": {**s["cont_mse"], "finetuned": 0.19}})
    assert "recovery" not in no_forgetting and not no_forgetting["forgetting"]["met"]
    assert synthetic_claims({"seed": 0}) == {}
    m = minilm_claims({"drop_gap": -0.01, "icl_accuracy": {"tuned": {"en": 0.4, "leet": 0.5},
                                                           "tuned_conjugate": {"en": 0.4, "leet": 0.6, "vel": 0.3}}})
    assert not m["english_drop_largest"]["met"]
    assert m["conjugate_recovers"]["value"] == pytest.approx(0.05) and m["conjugate_recovers"]["met"]


def test_resume_runs_only_unfinished_runs(finished_sweep, tmp_path: Path) -> None:
    src, _ = finished_sweep
    out = tmp_path / "s"
    shutil.copytree(src, out)  # copy2: modification times kept
    shutil.rmtree(out / "runs" / POISONED)  # the cause of the failure is gone
    broken = out / "runs" / INTERRUPTED  # killed during evaluation: trained, but no summary yet
    (broken / "summary.json").unlink()
    (broken / ".stages" / "evaluate.done").unlink()
    untouched = [run_name({"alpha_pretrain": a}, 0) for a in (0.2, 0.5)]
    before = {n: mtimes(out / "runs" / n) for n in untouched}
    ckpt_before = mtimes(broken / "checkpoints")

    # one worker process: on two busy cores, one warm-up (importing torch) beats two in parallel
    result = runner.invoke(app, sweep_args(out, parallel=1))
    assert result.exit_code == 0, result.output
    assert "2 runs completed, 2 already finished, 0 failed" in result.output
    for n in untouched:
        assert mtimes(out / "runs" / n) == before[n], f"{n} was recomputed"
    assert mtimes(broken / "checkpoints") == ckpt_before  # resumed: training stages not redone
    assert summary(out, INTERRUPTED)["seed"] == 1 and summary(out, POISONED)["seed"] == 1
    assert not (out / "runs" / POISONED / "error.txt").exists()
    assert json.loads((out / "failures.json").read_text()) == []
    agg = json.loads((out / "aggregate.json").read_text())
    assert all(p["fields"]["cont_mse.finetuned"]["n"] == 2 and not p["missing"] for p in agg["points"])
    invocations = json.loads((out / "sweep.json").read_text())["invocations"]
    assert [i["max_parallel"] for i in invocations] == [2, 1]


def test_aggregate_command_runs_nothing(finished_sweep, tmp_path: Path) -> None:
    src, _ = finished_sweep
    out = tmp_path / "s"
    shutil.copytree(src, out)
    runs_before = mtimes(out / "runs")
    (out / "aggregate.json").unlink()
    (out / "aggregate.md").unlink()
    result = runner.invoke(app, ["sweep", "aggregate", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 grid points, 3 finished runs, 1 unfinished" in result.output
    assert json.loads((out / "aggregate.json").read_text()) == json.loads((src / "aggregate.json").read_text())
    assert (out / "aggregate.md").read_text() == (src / "aggregate.md").read_text()
    assert mtimes(out / "runs") == runs_before


# ---- bad input: exit 2, one clear line, nothing started -------------------------------------------------

@pytest.mark.parametrize(("extra", "grid", "seeds", "message"), [
    ([], ("nope=1,2",), "0", "unknown --grid key 'nope'"),
    ([], ("d=",), "0", "--grid d: empty value list"),
    ([], ("d=4,x",), "0", "--grid d=x: expected int"),
    ([], ("heads=2,3",), "0", "width (16) must be divisible by heads (3) (grid point heads=3)"),
    ([], ("alpha_pretrain=0.5,1.5",), "0", "alpha_pretrain must lie in [0, 1], got 1.5"),
    ([], ("alpha_pretrain=0.5",), "", "--seeds: empty list"),
    ([], ("alpha_pretrain=0.5",), "0,x", "--seeds: expected comma-separated integers"),
    (["--set", "alpha_pretrain=0.3"], ("alpha_pretrain=0.5",), "0", "given both in --set and in --grid"),
    (["--engine", "spark"], (), "0", "unknown engine 'spark'"),
    (["--max-parallel", "0"], (), "0", "--max-parallel must be >= 1"),
    (["--gpus-per-run", "2"], (), "0", "--gpus-per-run must lie in [0, 1]"),
    (["--preset", "huge"], (), "0", "unknown preset 'huge'"),
    (["--address", "127.0.0.1:1"], (), "0", "--address is for --engine ray"),
])
def test_bad_input_exits_2_before_anything_starts(tmp_path: Path, extra, grid, seeds, message) -> None:
    out = tmp_path / "s"
    result = runner.invoke(app, sweep_args(out, *extra, seeds=seeds, grid=grid))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_ray_address_that_does_not_answer(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = runner.invoke(app, sweep_args(out, "--engine", "ray", "--address", "127.0.0.1:1"))
    assert result.exit_code == 2, result.output
    try:
        import ray  # noqa: F401

        assert "Ray address 127.0.0.1:1 does not answer" in result.output
    except ImportError:
        assert "--engine ray needs Ray" in result.output
    assert not out.exists()


def test_a_folder_holding_another_sweep_is_refused(finished_sweep, tmp_path: Path) -> None:
    src, _ = finished_sweep
    out = tmp_path / "s"
    out.mkdir()
    shutil.copy2(src / "sweep.json", out / "sweep.json")
    result = runner.invoke(app, sweep_args(out, "--preset", "quick"))
    assert result.exit_code == 2 and "holds a different sweep (preset: 'smoke', now 'quick')" in result.output
    result = runner.invoke(app, sweep_args(out, grid=("d=4,8",)))
    assert result.exit_code == 2 and "grid keys ['alpha_pretrain'], now ['d']" in result.output
    assert not (out / "runs").exists()


def test_aggregate_of_a_folder_that_is_not_a_sweep(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sweep", "aggregate", str(tmp_path)])
    assert result.exit_code == 2 and "sweep.json: no such file" in result.output
    (tmp_path / "sweep.json").write_text("{not json")
    result = runner.invoke(app, ["sweep", "aggregate", str(tmp_path)])
    assert result.exit_code == 2 and "malformed sweep spec" in result.output


# ---- Ray ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ray_engine_on_a_local_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'conjugate-prompting[ray]'")
    out = tmp_path / "s"
    result = runner.invoke(app, sweep_args(out, "--engine", "ray", "--cpus-per-run", "1", grid=("d=2,3",),
                                           seeds="0"))
    assert result.exit_code == 0, result.output
    for d in (2, 3):
        s = summary(out, run_name({"d": d}, 0))
        assert s["d"] == d and s["seed"] == 0
    spec = json.loads((out / "sweep.json").read_text())
    assert spec["invocations"][-1]["engine"] == "ray"
    agg = json.loads((out / "aggregate.json").read_text())
    assert [p["fields"]["forgetting_ratio"]["n"] for p in agg["points"]] == [1, 1]
