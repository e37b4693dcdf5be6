"""``--setup paper``: the authors' decoding on every study, with the BOS setting recorded and in the cache key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.runs import read_json

runner = CliRunner()
AUTHORS = Path(__file__).resolve().parents[2] / "shared" / "authors"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.skipif(not (AUTHORS / "sentences").is_dir(), reason=f"the authors' files are not at {AUTHORS}")
def test_icl_vs_if_paper_setup_on_the_authors_prompts(tiny_llama, tmp_path: Path) -> None:
    from conjugate.lm.hf import HFBackend

    out = tmp_path / "run"
    r = invoke("icl-vs-if", "run", "--model", tiny_llama, "--authors", AUTHORS, "--setup", "paper", "--limit", 1,
               "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    cfg = read_json(out / "config.json")["config"]
    assert cfg["setup"] == "paper" and cfg["bos"] is False and cfg["max_new_tokens"] == 10 and not cfg["chat"]
    assert cfg["data"].startswith("authors:") and cfg["n_prompts"] == 28  # 4 tasks × 7 languages, 1 each
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    outputs = {o["id"]: o["output"] for o in map(json.loads, (out / "outputs.jsonl").open())}
    plain = HFBackend(str(tiny_llama), device="cpu", chat=False, bos=False)
    assert plain.encode_prompts([rows[0]["prompt"]])[0][0] != plain.tokenizer.bos_token_id  # really no BOS
    assert [outputs[r["id"]] for r in rows[:4]] == plain.generate([r["prompt"] for r in rows[:4]], 10)
    # with the tokenizer's BOS the requests are different ones (the setting is in the cache key)
    r2 = invoke("icl-vs-if", "run", "--model", tiny_llama, "--authors", AUTHORS, "--limit", 1, "--bos",
                "--out", tmp_path / "bos", "--quiet")
    assert r2.exit_code == 0 and "generated 28, reused 0" in r2.output, r2.output


def test_paper_setup_refuses_what_contradicts_it(tmp_path: Path) -> None:
    model = "openai:m@http://127.0.0.1:9/v1"
    r = invoke("icl-vs-if", "run", "--model", model, "--setup", "paper", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "--authors" in r.output
    r = invoke("icl-vs-if", "run", "--model", model, "--setup", "paper", "--bos", "--data", tmp_path / "x.jsonl",
               "--out", tmp_path / "b")
    assert r.exit_code == 2 and "conflicts with --setup paper" in r.output
    r = invoke("xnli", "run", "--model", model, "--setup", "paper", "--mode", "loglik", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "conflicts with --setup paper" in r.output
    r = invoke("xnli", "run", "--model", model, "--setup", "fancy", "--out", tmp_path / "d")
    assert r.exit_code == 2 and "unknown --setup" in r.output


def test_xnli_paper_setup_records_no_bos(tiny_llama, tmp_path: Path) -> None:
    data = tmp_path / "x.jsonl"
    data.write_text("".join(json.dumps({"premise": f"The {w} is here.", "hypothesis": f"A {w} exists.",
                                        "label": i % 3, "lang": "en"}) + "\n" for i, w in enumerate(("cup", "pen"))))
    out = tmp_path / "run"
    r = invoke("xnli", "run", "--model", tiny_llama, "--data", data, "--setup", "paper", "--out", out, "--quiet",
               "--device", "cpu")
    assert r.exit_code == 0, r.output
    cfg = read_json(out / "config.json")["config"]
    assert cfg["setup"] == "paper" and cfg["bos"] is False and cfg["mode"] == "generate"


def test_harmful_paper_setup_runs_both_arms_on_the_authors_selection(tmp_path: Path) -> None:
    from fake_openai import FakeOpenAI

    from conjugate.lm.harmful.data import load_instructions, sample_items

    src = tmp_path / "in.txt"
    src.write_text("".join(f"Explain how to do task number {w}.\n" for w in ("one", "two", "three", "four")))
    seen: list = []

    def reply(prompt_or_messages, params):
        seen.append(prompt_or_messages)
        if isinstance(prompt_or_messages, str):  # the completion arm: raw text
            return "Step 1: first, gather everything you need for the task and then begin."
        return "I'm sorry, but I can't help with that."

    out = tmp_path / "run"
    with FakeOpenAI(reply) as server:
        r = invoke("harmful", "run", "--input", src, "--langs", "en", "--model", f"openai-chat:m@{server.url}",
                   "--setup", "paper", "--out", out, "--quiet")
        assert r.exit_code == 0, r.output
        assert all(req.body.get("max_tokens") == 512 for req in server.requests)
    completions = [p for p in seen if isinstance(p, str)]
    assert len(completions) == 4 and all(p.endswith("\n\n") for p in completions)
    cfg = read_json(out / "config.json")
    assert cfg["config"]["sample_method"] == "authors" and cfg["seed"] == 10 and cfg["config"]["arms"] == [
        "chat", "completion"]
    s = read_json(out / "summary.json")
    assert s["rates"]["openai-chat:m"]["en"]["REFUSE"] == 1.0
    assert s["rates"]["openai-chat:m#completion"]["en"]["ANSWER"] == 1.0
    prompts = [json.loads(line)["prompt_en"] for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert prompts == [it.prompt for it in sample_items(load_instructions(src), 100, 10, "authors")]
    bad = invoke("harmful", "run", "--input", src, "--langs", "en", "--model", "openai-chat:m@http://127.0.0.1:9/v1",
                 "--setup", "paper", "--seed", "3", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "conflicts with --setup paper" in bad.output
