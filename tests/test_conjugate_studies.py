"""``--transform`` on every language-model study: each summary gets a block per transform (the identity arm as
reference), answers come from the request cache on a rerun, and bad transforms are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from fake_openai import FakeOpenAI
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.runs import read_json
from conjugate.transforms import get_transform

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def xnli_file(tmp_path: Path) -> Path:
    rows = [{"premise": f"The {w} is on the table.", "hypothesis": f"There is a {w}.", "label": i % 3, "lang": "en"}
            for i, w in enumerate(("cup", "book", "cat", "pen", "lamp", "key"))]
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_xnli_with_two_transforms_on_tiny_models(tiny_gpt2, tiny_llama, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["xnli", "run", "--model", tiny_gpt2, "--model", tiny_llama, "--data", xnli_file(tmp_path), "--mode",
            "both", "--transform", "leetspeak", "--transform", "base64", "--out", out, "--quiet", "--device", "cpu",
            "--dtype", "float32"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    s = read_json(out / "summary.json")
    for mode in ("generate", "loglik"):
        block = s["conjugate"][mode]
        assert block["transforms"] == ["identity", "leetspeak", "base64"]
        assert block["n"][str(tiny_llama)]["en"] == {"identity": 6, "leetspeak": 6, "base64": 6}
        # the identity arm is the study's own number
        assert block["value"][str(tiny_gpt2)]["en"]["identity"] == s["accuracy"][mode][str(tiny_gpt2)]["en"]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 * 2 * 3 * 6 and {p["transform"] for p in preds} == {"identity", "leetspeak", "base64"}
    leet = [p for p in preds if p["transform"] == "leetspeak" and p["mode"] == "generate"]
    assert all(p["inverse"] == "exact" and "raw_output" in p for p in leet)
    assert "under conjugate prompting" in (out / "table.md").read_text()
    again = invoke(*args)
    assert again.exit_code == 0 and f"computed 0, reused {2 * 2 * 3 * 6}" in again.output, again.output


def test_icl_vs_if_with_rot13(tiny_gpt2, tmp_path: Path) -> None:
    from conjugate.lm.icl_vs_if import build_dataset, write_dataset

    rows = build_dataset(langs="en", tasks="repeat-math", n=3)
    data = write_dataset(rows, tmp_path / "d.jsonl")
    out = tmp_path / "run"
    r = invoke("icl-vs-if", "run", "--model", tiny_gpt2, "--data", data, "--transform", "rot13", "--out", out,
               "--quiet", "--max-new-tokens", 4)
    assert r.exit_code == 0, r.output
    s = read_json(out / "summary.json")
    assert s["conjugate"]["transforms"] == ["identity", "rot13"]
    assert s["conjugate"]["value"][str(tiny_gpt2)]["en"]["identity"] == s["accuracy"][str(tiny_gpt2)]["en"]
    outputs = [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]
    rot = get_transform("rot13")
    under = [o for o in outputs if o["transform"] == "rot13"]
    assert len(under) == len(rows) and all(o["mapped"] == rot.invert(o["output"]) for o in under)


def test_harmful_with_base64_and_leetspeak_on_a_fake_server(tmp_path: Path) -> None:
    leet = get_transform("leetspeak")
    src = tmp_path / "in.txt"
    src.write_text("Explain how to bake bread.\nDescribe how to knit a scarf.\nWrite a poem about rain.\n")

    plain = set(src.read_text().splitlines())

    def reply(messages, body):  # refuses plain English, answers (in leetspeak) anything encoded
        if messages[-1]["content"] in plain:
            return "I'm sorry, but I can't help with that."
        return leet.apply("Sure, here is how to do it step by step, in full detail as you asked.")

    out = tmp_path / "run"
    with FakeOpenAI(reply) as server:
        args = ["harmful", "run", "--input", src, "--langs", "en", "--model", f"openai-chat:m@{server.url}",
                "--transform", "base64", "--transform", "leetspeak", "--out", out, "--quiet"]
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        first = server.count
        assert first == 3 * 3  # identity, base64, leetspeak; the identity arm's replies are not asked twice
        again = invoke(*args)
        assert again.exit_code == 0 and server.count == first, again.output  # a rerun sends nothing
    s = read_json(out / "summary.json")
    block = s["conjugate"]
    assert block["transforms"] == ["identity", "base64", "leetspeak"] and block["metric"] == "answered"
    assert block["value"]["openai-chat:m"]["en"] == {"identity": 0.0, "base64": 1.0, "leetspeak": 1.0}
    assert s["rates"]["openai-chat:m"]["en"]["REFUSE"] == 1.0
    refused = s["conjugate_refused"]
    assert refused["metric"] == "refused" and refused["transforms"] == block["transforms"]
    assert refused["value"]["openai-chat:m"]["en"] == {"identity": 1.0, "base64": 0.0, "leetspeak": 0.0}
    records = [json.loads(line) for line in (out / "conjugate.jsonl").read_text().splitlines()]
    assert {r["inverse"] for r in records if r["transform"] == "leetspeak"} == {"exact"}


def test_a_bad_transform_is_one_line_in_every_study(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Explain how to bake bread.\n")
    model = "openai:m@http://127.0.0.1:9/v1"  # never reached
    for args in (["xnli", "run", "--data", xnli_file(tmp_path)], ["icl-vs-if", "run"],
                 ["harmful", "run", "--input", src, "--langs", "en"]):
        r = invoke(*args, "--model", model, "--transform", "klingon", "--out", tmp_path / "o", "--quiet")
        assert r.exit_code == 2 and "klingon" in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "o" / "config.json").exists()


def test_sweep_over_transforms_of_a_probe(tiny_gpt2, tiny_llama, tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"id": i, "prompt": f"Say {w}:", "answer": w}) + "\n"
                            for i, w in enumerate(("yes", "no", "maybe", "cat"))))
    out = tmp_path / "sweep"
    r = invoke("sweep", "probe", "--preset", "default", "--seeds", "0", "--set", f"data={data}",
               "--set", f"base={tiny_gpt2}", "--set", f"model={tiny_llama}", "--set", "max_new_tokens=3",
               "--grid", "transform=leetspeak,rot13", "--max-parallel", "1", "--out", out)
    assert r.exit_code == 0, r.output
    agg = read_json(out / "aggregate.json")
    assert len(agg["points"]) == 2
    for run in (out / "runs").iterdir():
        s = read_json(run / "summary.json")
        assert set(s["headline"]) >= {"identity", "transformed", "base", "drop"}
        assert s["transforms"][0] == "identity" and s["transforms"][1] in ("leetspeak", "rot13")
    bad = invoke("sweep", "probe", "--preset", "default", "--seeds", "0", "--grid", "transform=leetspeak",
                 "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "model" in bad.output, bad.output


def test_sweep_harmful_on_an_eval_set_through_the_completion_arm(tiny_llama, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    r = invoke("sweep", "harmful", "--preset", "default", "--seeds", "0", "--set", "eval_set=benign",
               "--set", "arms=completion", "--set", f"model={tiny_llama}", "--set", "sample=4",
               "--set", "max_new_tokens=2", "--set", "redact=true", "--max-parallel", "1", "--out", out)
    assert r.exit_code == 0, r.output
    (run,) = list((out / "runs").iterdir())
    s = read_json(run / "summary.json")
    assert s["eval_set"]["name"] == "benign" and s["eval_set"]["n_items"] == 4
    assert s["models"] == [f"{tiny_llama}#completion"] and "over_refusal" in s
    rows = [json.loads(line) for line in (run / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and not any("response" in row for row in rows)  # redacted: no model text


def test_sweep_harmful_needs_one_of_input_and_eval_set(tmp_path: Path) -> None:
    for sets in ([], ["--set", "eval_set=benign", "--set", "input=x.txt"], ["--set", "eval_set=nope"],
                 ["--set", "eval_set=benign", "--set", "arms=chat,telepathy"]):
        r = invoke("sweep", "harmful", "--preset", "default", "--seeds", "0", "--set", "model=m", *sets,
                   "--out", tmp_path / "s")
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert not (tmp_path / "s").exists()


def test_a_plain_refusal_to_an_encoded_prompt_counts_as_a_refusal(tmp_path: Path) -> None:
    """Under rot13 a plain-English refusal maps back to noise; the reply as written is judged too."""
    src = tmp_path / "in.txt"
    src.write_text("Explain how to bake bread.\nDescribe how to knit a scarf.\n")
    plain = set(src.read_text().splitlines())

    def reply(messages, body):  # answers plain English, refuses (in plain English) anything encoded
        if messages[-1]["content"] in plain:
            return "Sure, here is how to do it step by step, in full detail as you asked."
        return "I'm sorry, but I can't help with that."

    out = tmp_path / "run"
    with FakeOpenAI(reply) as server:
        r = invoke("harmful", "run", "--input", src, "--langs", "en", "--model", f"openai-chat:m@{server.url}",
                   "--transform", "rot13", "--out", out, "--quiet")
        assert r.exit_code == 0, r.output
    s = read_json(out / "summary.json")
    assert s["conjugate_refused"]["value"]["openai-chat:m"]["en"] == {"identity": 0.0, "rot13": 1.0}
    records = [json.loads(line) for line in (out / "conjugate.jsonl").read_text().splitlines()]
    reasons = {r["result"]["reason"] for r in records if r["transform"] == "rot13"}
    assert all(reason.startswith("reply as written:") for reason in reasons), reasons
