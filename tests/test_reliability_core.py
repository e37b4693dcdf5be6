"""Reliability of run folders, checkpoints and training state: the failures a fault campaign found.

Each test reproduces one failure as a user met it (torn JSONL tails, folders clobbered by another command or
a second copy of a run, checkpoints used without being verified, tracebacks for bad state or a full disk) and
checks the one mechanism that now prevents it. Runs use the smoke preset and one torch thread.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.commands.common import run_or_exit
from conjugate.runs import RunDir, StateError, append_jsonl, read_json, read_jsonl, write_json
from conjugate.synthetic.model import load_model

runner = CliRunner()
SMOKE = ("--preset", "smoke", "--quiet", "--set", "threads=1")


def invoke(*args: object):
    before = torch.get_num_threads()
    result = runner.invoke(app, [str(a) for a in args])
    torch.set_num_threads(before)
    return result


def one_line_error(result, *fragments: str) -> str:
    """Exit 2, one ``error:`` line on stderr containing every fragment, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def smoke_run(out: Path, *extra: str, seed: int = 0):
    return invoke("synthetic", "run", *SMOKE, "--out", out, "--seed", seed, *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished smoke run (read-only use: tests copy it before damaging anything)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = smoke_run(out)
    assert result.exit_code == 0, result.output
    return out


def copy_run(src: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


# ---- 1. torn last lines ---------------------------------------------------------------------------------

def test_torn_last_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "outputs.jsonl"
    append_jsonl(path, [{"i": 0}, {"i": 1}])
    with open(path, "ab") as f:
        f.write(b'{"i": 2, "out')  # a crash (or a full disk) mid-row
    assert [r["i"] for r in read_jsonl(path)] == [0, 1]  # first resume: the fragment is skipped
    append_jsonl(path, [{"i": 2}])
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2]  # second resume: no "malformed JSON"
    append_jsonl(path, [{"i": 3}])
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2, 3]
    assert path.read_bytes().count(b"\n") == 4


def test_a_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}')  # written by hand, no final newline
    assert [r["i"] for r in read_jsonl(path)] == [0, 1]
    append_jsonl(path, [{"i": 2}])
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2]


def test_a_file_that_is_only_a_fragment_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"i": ')
    assert list(read_jsonl(path)) == []
    append_jsonl(path, [{"i": 0}])
    assert path.read_text() == '{"i": 0}\n'


# ---- 3, 4. who owns a run folder, and who is using it -----------------------------------------------------

def test_another_command_refuses_a_finished_synthetic_run(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    before = {p: p.read_bytes() for p in (run / "config.json", run / "summary.json")}
    result = invoke("synthetic", "theory", "--out", run, "--preset", "smoke", "--alpha", "0.5")
    one_line_error(result, "conjugate synthetic run", "choose another output folder")
    assert {p: p.read_bytes() for p in before} == before
    with pytest.raises(StateError, match="conjugate synthetic run"):
        RunDir(run, "icl-vs-if run")


def test_a_folder_made_before_folders_recorded_their_command_is_recognised(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    (run / ".stages" / "run.json").unlink()
    with pytest.raises(StateError, match="synthetic run"):
        RunDir(run, "xnli run")
    assert smoke_run(run).exit_code == 0  # the same command resumes it and records itself
    assert read_json(run / ".stages" / "run.json") == {"command": "synthetic run"}


HOLD = """
import sys, time
from conjugate.runs import RunDir
run = RunDir(sys.argv[1], "synthetic run")
open(sys.argv[2], "w").close()
time.sleep(60)
"""


def test_a_second_process_refuses_a_folder_in_use(tmp_path: Path) -> None:
    out, ready = tmp_path / "run", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(ready)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        result = smoke_run(out, "--set", "finetune_steps=60")
        one_line_error(result, "in use by another run", f"pid {holder.pid}")
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert smoke_run(out).exit_code == 0  # the lock went with the process that held it


def test_a_second_sweep_into_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    out, ready = tmp_path / "sweep", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD.replace('"synthetic run"', '"sweep synthetic"'), str(out),
                               str(ready)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        result = invoke("sweep", "synthetic", "--preset", "smoke", "--seeds", "0", "--out", out)
        one_line_error(result, "in use by another run", f"pid {holder.pid}")
        assert not (out / "sweep.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_the_same_process_may_reopen_a_folder_it_holds(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run", "synthetic run") as a:
        with RunDir(tmp_path / "run", "synthetic run") as b:
            assert b.root == a.root
    # released: another process can take it now
    code = "import sys; from conjugate.runs import RunDir; RunDir(sys.argv[1], 'synthetic run')"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], check=True)


# ---- 5, 6. checkpoints are verified before use ------------------------------------------------------------

def flip_bytes(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) - 4 * n  # in the tensor data, past the header
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_finished_checkpoint_are_refused(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    flip_bytes(run / "checkpoints" / "finetune.safetensors")
    result = smoke_run(run)
    one_line_error(result, "finetune.safetensors", "sha256")
    with pytest.raises(StateError, match="damaged"):  # the file checks itself too, wherever it is loaded
        load_model(run / "checkpoints" / "finetune.safetensors")


def test_flipped_bytes_in_a_resume_checkpoint_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    from conjugate.config import resolve_synthetic
    from conjugate.synthetic.study import run_synthetic
    from conjugate.training import Interrupted

    cfg = resolve_synthetic("smoke", {"threads": 1})
    with pytest.raises(Interrupted):
        run_synthetic(cfg, out, preset="smoke", seed=0, show_progress=False, stop_after=60)
    flip_bytes(out / "checkpoints" / "pretrain.resume.safetensors")
    one_line_error(smoke_run(out), "pretrain.resume.safetensors", "damaged")


def test_a_checkpoint_swapped_into_a_cache_entry_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert smoke_run(tmp_path / "a", "--pretrain-cache", cache).exit_code == 0
    assert smoke_run(tmp_path / "b", "--pretrain-cache", cache, seed=1).exit_code == 0
    (e0,) = cache.glob("seed0-*/pretrain.safetensors")
    (e1,) = cache.glob("seed1-*/pretrain.safetensors")
    e0.write_bytes(e1.read_bytes())  # a valid checkpoint, but another seed's
    result = smoke_run(tmp_path / "c", "--pretrain-cache", cache)
    one_line_error(result, str(e0), "sha256 differs")
    assert not (tmp_path / "c" / ".stages" / "pretrain.done").exists()


def test_a_truncated_cache_entry_is_refused_and_the_run_recovers_once_it_is_gone(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert smoke_run(tmp_path / "a", "--pretrain-cache", cache).exit_code == 0
    (entry_ckpt,) = cache.glob("seed0-*/pretrain.safetensors")
    entry_ckpt.write_bytes(entry_ckpt.read_bytes()[:1000])
    run = tmp_path / "b"
    one_line_error(smoke_run(run, "--pretrain-cache", cache), "delete")
    assert not (run / ".stages" / "pretrain.done").exists()  # verify, then copy, then mark
    assert not (run / "checkpoints" / "pretrain.safetensors").exists()
    import shutil

    shutil.rmtree(entry_ckpt.parent)  # the way out the message gives
    assert smoke_run(run, "--pretrain-cache", cache).exit_code == 0
    assert read_json(run / "summary.json")["cont_mse"] == read_json(tmp_path / "a" / "summary.json")["cont_mse"]


def test_stage_markers_and_cache_entries_record_checkpoint_hashes(tmp_path: Path) -> None:
    from conjugate.runs import sha256_file

    cache = tmp_path / "cache"
    assert smoke_run(tmp_path / "a", "--pretrain-cache", cache).exit_code == 0
    run = tmp_path / "a"
    for stage in ("pretrain", "finetune"):
        assert read_json(run / ".stages" / f"{stage}.done")["sha256"] == \
            sha256_file(run / "checkpoints" / f"{stage}.safetensors")
    (meta,) = cache.glob("seed0-*/meta.json")
    assert read_json(meta)["sha256"] == sha256_file(meta.parent / "pretrain.safetensors")
    # copies are ordinary files, not private temporary ones
    assert smoke_run(tmp_path / "b", "--pretrain-cache", cache).exit_code == 0
    for p in (meta.parent / "pretrain.safetensors", tmp_path / "b" / "checkpoints" / "pretrain.safetensors"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~_umask(), oct(p.stat().st_mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- 7. --out that cannot be written ----------------------------------------------------------------------

OUT_COMMANDS = [
    ("synthetic", "run", *SMOKE),
    ("synthetic", "theory", "--preset", "smoke", "--alpha", "0.5"),
    ("minilm", "run", "--preset", "smoke", "--quiet"),
]


def test_out_at_an_existing_file(finished: Path, tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    commands = all_commands(tmp_path, finished)
    assert len(commands) == 8
    for args in commands.values():
        one_line_error(invoke(*args, "--out", target), str(target), "not a folder")
    assert target.read_text() == "keep me"


def lm_commands(tmp_path: Path) -> dict[str, list[object]]:
    """The three language-model studies on tiny inputs; each refuses a bad --out before any model call."""
    from conjugate.lm.icl_vs_if import build_dataset, write_dataset

    icl = write_dataset(build_dataset(langs="en", tasks="repeat-math", n=2), tmp_path / "icl.jsonl")
    xnli = tmp_path / "xnli.jsonl"
    xnli.write_text(json.dumps({"premise": "A cat sleeps.", "hypothesis": "An animal rests.", "label": 0,
                                "lang": "en"}) + "\n")
    harmful = tmp_path / "in.txt"
    harmful.write_text("Explain how to bake bread at home.\n")
    model = "openai:fake-model@http://127.0.0.1:9/v1"  # never reached
    return {"icl-vs-if": ["icl-vs-if", "run", "--model", model, "--data", icl, "--quiet"],
            "xnli": ["xnli", "run", "--model", model, "--data", xnli, "--quiet"],
            "harmful": ["harmful", "run", "--input", harmful, "--langs", "en", "--model", model, "--quiet"]}


@pytest.mark.parametrize("study", ["icl-vs-if", "xnli", "harmful"])
def test_lm_studies_refuse_a_synthetic_run_as_out(finished: Path, tmp_path: Path, study: str) -> None:
    run = copy_run(finished, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    one_line_error(invoke(*lm_commands(tmp_path)[study], "--out", run), "conjugate synthetic run",
                   f"conjugate {study} run")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def all_commands(tmp_path: Path, finished: Path) -> dict[str, list[object]]:
    """Every command that writes a run folder, on tiny inputs (add ``--out``)."""
    return {" ".join(c[:2]): list(c) for c in OUT_COMMANDS} | {
        "synthetic eval": ["synthetic", "eval", "--checkpoint", finished / "checkpoints" / "finetune.safetensors",
                           "--scales", "1,2"],
        "sweep synthetic": ["sweep", "synthetic", "--preset", "smoke", "--seeds", "0", "--set", "threads=1"],
        **lm_commands(tmp_path)}


def test_every_command_on_a_read_only_filesystem_gives_one_line(finished: Path, tmp_path: Path, monkeypatch) -> None:
    ro = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **kw):
        if str(self).startswith(str(ro)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **kw)

    commands = all_commands(tmp_path, finished)
    assert len(commands) == 8
    monkeypatch.setattr(Path, "mkdir", mkdir)
    for name, args in commands.items():
        result = invoke(*args, "--out", ro / name.replace(" ", "-"))
        one_line_error(result, str(ro), "Read-only file system")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_disk_that_refuses_writes_gives_one_line(tmp_path: Path, monkeypatch, code: int) -> None:
    import conjugate.runs as runs

    real = runs.atomic_write_bytes

    def refuse(path, data):
        if Path(path).name == "summary.json":
            raise OSError(code, os.strerror(code), str(path))
        return real(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", refuse)
    out = tmp_path / "run"
    one_line_error(smoke_run(out), "summary.json", os.strerror(code))
    monkeypatch.undo()
    assert smoke_run(out).exit_code == 0  # the rerun finishes from the trained checkpoints


# ---- 8. damaged state files -------------------------------------------------------------------------------

def test_a_truncated_config_is_refused_with_the_way_out(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[: len(text) // 2])
    one_line_error(smoke_run(run), "config.json", "damaged", "delete the folder")


@pytest.mark.parametrize("name", ["summary.json", "metrics.json"])
def test_a_damaged_or_deleted_derived_file_is_recomputed(finished: Path, tmp_path: Path, name: str) -> None:
    run = copy_run(finished, tmp_path / "run")
    expected = read_json(run / "summary.json")["cont_mse"]
    (run / name).write_text('{"cont_mse": {')
    assert smoke_run(run).exit_code == 0
    assert read_json(run / "summary.json")["cont_mse"] == expected
    (run / name).unlink()
    assert smoke_run(run).exit_code == 0
    assert read_json(run / "summary.json")["cont_mse"] == expected


def test_a_garbage_line_in_the_training_log_names_the_file_and_line(tmp_path: Path) -> None:
    from conjugate.config import resolve_synthetic
    from conjugate.synthetic.study import run_synthetic
    from conjugate.training import Interrupted

    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_synthetic(resolve_synthetic("smoke", {"threads": 1}), out, preset="smoke", seed=0, show_progress=False,
                      stop_after=60)
    with open(out / "train_log.jsonl", "a") as f:
        f.write("garbage\n{}\n")
    n = len((out / "train_log.jsonl").read_text().splitlines())
    one_line_error(smoke_run(out), f"train_log.jsonl:{n - 1}", "malformed JSON")


def test_a_header_flipped_checkpoint_is_refused(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    ckpt = run / "checkpoints" / "pretrain.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[8:16] = b"\xff" * 8  # inside the JSON header
    ckpt.write_bytes(bytes(data))
    one_line_error(smoke_run(run), "pretrain.safetensors")


# ---- 9. seeds out of range ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_a_seed_out_of_range_is_refused_before_anything_is_written(tmp_path: Path, seed: str) -> None:
    out = tmp_path / "run"
    one_line_error(invoke("synthetic", "run", *SMOKE, "--out", out, "--seed", seed), "--seed")
    assert not out.exists()


# ---- 13. divergence and strict JSON --------------------------------------------------------------------------

def test_a_diverged_run_says_so_and_writes_no_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    one_line_error(smoke_run(out, "--set", "pretrain_lr=1e6"), "diverged", "learning rate")
    assert not (out / "summary.json").exists()


def test_json_files_are_strict(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [float("inf"), 1.5], "z": torch.tensor([float("nan")])})
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": [None, 1.5], "z": [None]}
    append_jsonl(tmp_path / "a.jsonl", [{"x": float("-inf")}])
    assert json.loads((tmp_path / "a.jsonl").read_text()) == {"x": None}


# ---- 14. the training log, Ctrl-C between stages -----------------------------------------------------------

def test_rows_logged_before_a_lost_checkpoint_are_not_duplicated(tmp_path: Path) -> None:
    from conjugate.config import resolve_synthetic
    from conjugate.synthetic.study import run_synthetic
    from conjugate.training import Interrupted

    cfg = resolve_synthetic("smoke", {"threads": 1})
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_synthetic(cfg, out, preset="smoke", seed=0, show_progress=False, stop_after=60)
    # a SIGKILL after the log append but before the checkpoint write: rows past the checkpoint's step
    append_jsonl(out / "train_log.jsonl", [{"stage": "pretrain", "step": 100, "loss": 1.0, "lr": 1e-3}])
    run_synthetic(cfg, out, preset="smoke", seed=0, show_progress=False)
    # ... and a SIGKILL after the final checkpoint replaced the resume state but before the stage was marked
    (out / ".stages" / "finetune.done").unlink()
    (out / ".stages" / "evaluate.done").unlink()
    run_synthetic(cfg, out, preset="smoke", seed=0, show_progress=False)
    steps = [(r["stage"], r["step"]) for r in read_jsonl(out / "train_log.jsonl")]
    assert len(steps) == len(set(steps)), steps
    assert steps == sorted(steps, key=lambda s: (s[0] != "pretrain", s[1]))


def test_ctrl_c_between_stages_does_not_claim_to_be_in_evaluation(capsys) -> None:
    import typer

    def interrupted() -> dict:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as e:
        run_or_exit(interrupted)
    assert e.value.exit_code == 130
    err = capsys.readouterr().err
    assert "rerun" in err and "evaluation" not in err


# ---- 15. secrets never reach a file ----------------------------------------------------------------------

def test_api_keys_are_masked_in_everything_written(tmp_path: Path, monkeypatch) -> None:
    import conjugate.runs as runs
    from conjugate.runs import atomic_write_text, register_secret

    monkeypatch.setattr(runs, "_SECRETS", set())
    key, other = "sk-test-0123456789abcdef", "passed-as-an-option-123"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    register_secret(other)
    write_json(tmp_path / "a.json", {"response": f"echo {key} and {other}"})
    append_jsonl(tmp_path / "a.jsonl", [{"response": f"the key is {key}"}])
    atomic_write_text(tmp_path / "a.md", f"| {key} |")
    for p in tmp_path.iterdir():
        text = p.read_text()
        assert key not in text and other not in text and "<redacted>" in text, (p, text)
    # end to end: a server that echoes the key as model text
    from fake_openai import FakeOpenAI

    src = tmp_path / "in.txt"
    src.write_text("Explain how to bake bread at home.\n")
    with FakeOpenAI(lambda messages, body: f"Sure. Your key is {key}.") as server:
        result = invoke("harmful", "run", "--input", src, "--langs", "en", "--model",
                        f"openai-chat:echo@{server.url}", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".md")]
    assert any("<redacted>" in p.read_text() for p in written)
    assert not [p for p in written if key in p.read_text()]
    monkeypatch.setenv("OPENAI_API_KEY", "short")  # short values would mask ordinary words
    write_json(tmp_path / "b.json", {"text": "a short answer"})
    assert "short" in (tmp_path / "b.json").read_text()
