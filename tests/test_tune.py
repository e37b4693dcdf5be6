"""LoRA tuning (``conjugate lm tune``) and ``BASE+adapter:DIR`` specs, on a tiny random Llama: the adapter trains,
resumes bit for bit after a stop or a SIGKILL, loads on its base only, and bad input is one line, exit 2."""

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
from safetensors.torch import load_file
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.lm.adapters import split_adapter
from conjugate.lm.backend import BackendError
from conjugate.lm.tune import TuneConfig, tune
from conjugate.training import Interrupted

pytest.importorskip("peft")

SMALL = TuneConfig(steps=12, batch=4, lr=5e-3, warmup=2, rank=4, alpha=8, max_len=48, checkpoint_every=3,
                   log_every=3)


def _rows(path: Path, n: int = 24) -> Path:
    rows = [{"id": f"r{i}", "prompt": f"Q: add {i} and {i + 1}\nA:", "answer": f" {2 * i + 1}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rows(tmp_path_factory.mktemp("tune-data") / "rows.jsonl")


@pytest.fixture(scope="module")
def reference(tiny_llama: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted tuning run."""
    return tune(str(tiny_llama), data, tmp_path_factory.mktemp("ref") / "adapter", SMALL, seed=3,
                show_progress=False)


def test_tuning_writes_adapter_provenance_and_lowers_the_loss(reference: Path, tiny_llama: Path, data: Path):
    prov = json.loads((reference / "provenance.json").read_text())
    assert prov["base"]["spec"] == str(tiny_llama)
    assert len(prov["base"]["fingerprint"]) == 64
    assert prov["data"]["sha256"] == __import__("hashlib").sha256(data.read_bytes()).hexdigest()
    assert prov["config"]["steps"] == SMALL.steps and prov["config"]["seed"] == 3
    curve = prov["loss_curve"]
    assert [r["step"] for r in curve] == [3, 6, 9, 12]
    assert curve[-1]["loss"] < curve[0]["loss"]
    tensors = _adapter(reference)
    assert tensors and all("lora" in k for k in tensors)
    assert not (reference / "checkpoints" / "tune.resume.safetensors").exists()


def test_stopped_run_resumes_to_the_same_adapter(reference: Path, tiny_llama: Path, data: Path, tmp_path: Path):
    out = tmp_path / "adapter"
    with pytest.raises(Interrupted):
        tune(str(tiny_llama), data, out, SMALL, seed=3, show_progress=False, stop_after=5)
    assert not (out / "adapter_model.safetensors").exists()
    tune(str(tiny_llama), data, out, SMALL, seed=3, show_progress=False)
    assert _same(_adapter(out), _adapter(reference))
    steps = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9, 12]


def test_sigkilled_run_resumes_to_the_same_adapter(reference: Path, tiny_llama: Path, data: Path, tmp_path: Path):
    out = tmp_path / "adapter"
    script = (
        "import time, conjugate.training as t\n"
        "orig = t._save_resume\n"
        "def slow(*a, **k):\n"
        "    orig(*a, **k); time.sleep(0.4)\n"
        "t._save_resume = slow\n"
        "from conjugate.lm.tune import TuneConfig, tune\n"
        f"cfg = TuneConfig(**{SMALL.__dict__!r})\n"
        f"tune({str(tiny_llama)!r}, {str(data)!r}, {str(out)!r}, cfg, seed=3, show_progress=False)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    resume = out / "checkpoints" / "tune.resume.safetensors"
    deadline = time.time() + 120
    while not resume.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert resume.exists(), "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter_model.safetensors").exists()
    tune(str(tiny_llama), data, out, SMALL, seed=3, show_progress=False)
    assert _same(_adapter(out), _adapter(reference))


def test_adapter_loads_on_its_base_and_changes_outputs(reference: Path, tiny_llama: Path):
    from conjugate.lm.load import load_backend

    base = load_backend(str(tiny_llama), device="cpu")
    tuned = load_backend(f"{tiny_llama}+adapter:{reference}", device="cpu")
    prompts = [f"Q: add {i} and {i + 1}\nA:" for i in range(4)]
    a = base.loglikelihood([(p, " 3") for p in prompts])
    b = tuned.loglikelihood([(p, " 3") for p in prompts])
    assert a != b
    assert tuned.name == f"{tiny_llama}+adapter:{reference}"


def test_adapter_on_another_base_is_refused(reference: Path, tmp_path: Path):
    from conjugate.lm.load import load_backend
    from conjugate.lm.tiny import write_tiny_model

    other = write_tiny_model(tmp_path / "other", arch="llama", seed=1)
    with pytest.raises(BackendError, match="was trained on base"):
        load_backend(f"{other}+adapter:{reference}", device="cpu")
    result = CliRunner().invoke(app, ["models", "generate", f"{other}+adapter:{reference}", "hi"])
    assert result.exit_code == 2
    assert "was trained on base" in result.output and "Traceback" not in result.output


def test_identity_includes_the_adapter(reference: Path, tiny_llama: Path):
    from conjugate.lm.cache import backend_identity

    plain = backend_identity(str(tiny_llama), {})
    with_adapter = backend_identity(f"{tiny_llama}+adapter:{reference}", {})
    assert "adapter" not in plain
    assert set(with_adapter["adapter"]) == {"adapter_model.safetensors", "adapter_config.json"}
    assert with_adapter["files"] == plain["files"]


def test_finished_run_returns_at_once_and_other_settings_are_refused(reference: Path, tiny_llama: Path, data: Path):
    before = (reference / "adapter_model.safetensors").stat().st_mtime_ns
    tune(str(tiny_llama), data, reference, SMALL, seed=3, show_progress=False)
    assert (reference / "adapter_model.safetensors").stat().st_mtime_ns == before
    from conjugate.runs import StateError

    with pytest.raises(StateError, match="other settings"):
        tune(str(tiny_llama), data, reference, SMALL, seed=4, show_progress=False)


def test_split_adapter_errors(tmp_path: Path):
    assert split_adapter("gemma3-270m") == ("gemma3-270m", None)
    with pytest.raises(BackendError, match="does not exist"):
        split_adapter(f"base+adapter:{tmp_path / 'nope'}")
    with pytest.raises(BackendError, match="lacks adapter_model.safetensors"):
        split_adapter(f"base+adapter:{tmp_path}")
    with pytest.raises(BackendError, match="names no base"):
        split_adapter(f"+adapter:{tmp_path}")


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "Q: x\\nA:"}', "lacks 'answer'"),
    ("not json", "malformed JSON"),
])
def test_cli_bad_data_is_one_line(tiny_llama: Path, tmp_path: Path, line: str, message: str):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "answer": "b"}\n' + line + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["lm", "tune", "--model", str(tiny_llama), "--data", str(bad), "--out",
                                      str(tmp_path / "out"), "--steps", "2", "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"{bad}:2:" in result.output and message in result.output
    assert "Traceback" not in result.output


def test_cli_missing_model_is_one_line(data: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["lm", "tune", "--model", str(tmp_path / "none.gguf"), "--data", str(data),
                                      "--out", str(tmp_path / "out"), "--steps", "2", "--quiet"])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_cli_tune_data_writes_rows(tmp_path: Path):
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["lm", "tune-data", "--kind", "instructions", "--out", str(out), "--n", "40"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 40 and all(r["prompt"] and r["answer"] for r in rows)
    bad = CliRunner().invoke(app, ["lm", "tune-data", "--kind", "poems", "--out", str(out)])
    assert bad.exit_code == 2 and "valid kinds" in bad.output
