"""Run folders (``conjugate.runs``): atomic writes, JSONL, provenance, secret scrubbing, stage markers."""

from __future__ import annotations

import json

import pytest

from conjugate.runs import (
    RunDir,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_text,
    environment,
    read_json,
    read_jsonl,
    scrub,
    write_json,
)


def test_atomic_writes_leave_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")  # overwrite
    write_json(tmp_path / "sub" / "b.json", {"x": [1, 2]})
    atomic_write_bytes(tmp_path / "c.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert read_json(tmp_path / "sub" / "b.json") == {"x": [1, 2]}
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert names == ["a.txt", "c.bin", "sub", "sub/b.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]  # fails inside the write
    assert target.read_text() == "old"
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json(target, {"x": object()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_write_json_serialises_arrays_and_paths(tmp_path):
    import numpy as np

    write_json(tmp_path / "x.json", {"a": np.arange(3), "p": tmp_path})
    assert read_json(tmp_path / "x.json") == {"a": [0, 1, 2], "p": str(tmp_path)}


def test_jsonl_append_and_read(tmp_path):
    path = tmp_path / "log.jsonl"
    assert list(read_jsonl(path)) == []  # missing file: nothing
    with pytest.raises(FileNotFoundError):
        list(read_jsonl(path, missing_ok=False))
    append_jsonl(path, [{"i": 1}, {"i": 2}])
    append_jsonl(path, [{"i": 3, "s": "é"}])
    assert list(read_jsonl(path)) == [{"i": 1}, {"i": 2}, {"i": 3, "s": "é"}]


def test_read_jsonl_skips_a_torn_final_line(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"i": 1}, {"i": 2}])
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"i": 3, "tru')  # a crash mid-append
    assert list(read_jsonl(path)) == [{"i": 1}, {"i": 2}]


def test_read_jsonl_names_file_and_line_of_a_malformed_middle_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"i": 1}\n\n{"i": 2\n{"i": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}:3: malformed JSON"):
        list(read_jsonl(path))
    # a malformed *complete* last line (it ends with a newline) is not a torn write: it raises too
    path.write_text('{"i": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}:2:"):
        list(read_jsonl(path))


def test_scrub_redacts_key_like_fields_recursively():
    cfg = {"model": "m", "api_key": "sk-123", "OPENAI_API_KEY": "sk-456", "auth_token": "t",
           "nested": {"client_secret": "s", "password": "p", "ok": 1},
           "servers": [{"token": "x", "url": "http://h"}], "empty_key": "", "n_tasks": 8, "hfToken": "hf_1",
           "max_new_tokens": 10, "n_tokens": 5, "tokenizer": "t.json", "keys_sorted": True}
    out = scrub(cfg)
    # counts and names that merely contain a hint are kept: they are settings, not credentials
    for k in ("model", "n_tasks", "max_new_tokens", "n_tokens", "tokenizer", "keys_sorted"):
        assert out[k] == cfg[k], k
    for k in ("api_key", "OPENAI_API_KEY", "auth_token", "hfToken"):
        assert out[k] == "<redacted>"
    assert out["nested"] == {"client_secret": "<redacted>", "password": "<redacted>", "ok": 1}
    assert out["servers"] == [{"token": "<redacted>", "url": "http://h"}]
    assert out["empty_key"] == ""  # nothing to hide
    assert cfg["api_key"] == "sk-123"  # the input is not modified
    assert "sk-" not in json.dumps(out) and "hf_1" not in json.dumps(out)


def test_run_dir_stage_markers_and_config(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.done("train")
    run.mark_done("train", {"seconds": 1.5})
    assert run.done("train") and not run.done("eval")
    assert read_json(run.path(".stages", "train.done")) == {"seconds": 1.5}
    run.write_config({"d": 4, "api_key": "secret-value"}, seed=7, extra={"preset": "smoke"})
    cfg = read_json(run.path("config.json"))
    assert cfg["seed"] == 7 and cfg["preset"] == "smoke" and cfg["config"]["d"] == 4
    assert "secret-value" not in run.path("config.json").read_text()
    env = cfg["environment"]
    assert {"conjugate", "python", "platform", "git_commit"} <= set(env)


def test_environment_records_versions():
    import torch

    env = environment()
    assert env["torch"] == torch.__version__
    assert env["python"].count(".") == 2
    assert "git_commit" in env
