"""Reliability of the language-model studies under bad input, changed data and broken servers: every failure is
one ``error: ...`` line and exit code 2 at the command line, and a rerun scores from the current data."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from test_harmful import INSTRUCTIONS, TRANSLATIONS, scripted
from test_xnli import Loader, Scripted, make_rows, prompt_index, write_jsonl
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.lm.backend import BackendError
from conjugate.lm.load import load_backend
from conjugate.lm.openai_compat import OpenAIBackend

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(r, pattern: str) -> None:
    """Exit 2, one ``error:`` line matching ``pattern``, no traceback."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.output
    assert re.search(pattern, errors[0]), errors[0]


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------- 1. scores come from the current data

def test_xnli_rerun_after_label_change_rescores_stored_outputs(tmp_path) -> None:
    from conjugate.lm.xnli import run_study

    rows = make_rows()
    path = write_jsonl(tmp_path / "xnli.jsonl", rows)
    out = tmp_path / "run"
    backend = Scripted("m", prompt_index(rows), answer=lambda it: it["label"], prefer=lambda it: it["label"])
    first = run_study(["m"], out, data=path, mode="both", show_progress=False, load=Loader({"m": backend}))
    assert all(a == 1.0 for mode in ("generate", "loglik") for a in first["accuracy"][mode]["m"].values())

    for r in rows:  # new gold labels, same prompts: the stored outputs stay valid, their scores do not
        r["label"] = (r["label"] + 1) % 3
    write_jsonl(path, rows)
    again = Scripted("m", prompt_index(rows), answer=lambda it: it["label"], prefer=lambda it: it["label"])
    s = run_study(["m"], out, data=path, mode="both", show_progress=False, load=Loader({"m": again}))
    assert s["computed"] == 0 and again.calls == []
    for mode in ("generate", "loglik"):
        assert all(a == 0.0 for a in s["accuracy"][mode]["m"].values()), s["accuracy"][mode]
    assert all(a == 0.0 for a in s["accuracy_exact_rule"]["m"].values())
    assert all(a == 1.0 for a in s["valid_rate"]["m"].values())  # the outputs still start with a label word


def test_icl_vs_if_rerun_after_answer_change_rescores_stored_outputs(tmp_path) -> None:
    from test_icl_vs_if import Loader as ICLLoader
    from test_icl_vs_if import ScriptedBackend

    from conjugate.lm.icl_vs_if import build_dataset, run_study, write_dataset

    rows = build_dataset(langs="en,fr", tasks="repeat-math", n=3)
    path = write_dataset(rows, tmp_path / "data.jsonl")
    out = tmp_path / "run"
    first = run_study(["base"], out, data=path, show_progress=False,
                      load=ICLLoader({"base": ScriptedBackend("base", rows)}))
    assert all(a == 1.0 for a in first["accuracy"]["base"].values())
    changed = [{**r, "icl_answer": "Nope"} for r in rows]  # same prompts, other answers
    write_dataset(changed, path)
    again = ScriptedBackend("base", rows)
    s = run_study(["base"], out, data=path, show_progress=False, load=ICLLoader({"base": again}))
    assert s["generated"] == 0 and again.calls == []
    assert all(a == 0.0 for a in s["accuracy"]["base"].values())


class EchoEnglish:
    """A chat model that answers every prompt with the same English text."""

    name = "echo"

    def __init__(self, text: str):
        self.text, self.seen = text, []

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        self.seen += list(prompts)
        return [self.text] * len(prompts)


def test_harmful_rerun_after_english_change_relabels_stored_replies(tmp_path) -> None:
    """The phrase judge reads the English instruction too (a reply that restates it is AMBIGUOUS): a changed
    English text with an unchanged translation keeps the Japanese reply but must relabel it."""
    from conjugate.lm.harmful import run_study

    old = "Explain in detail how to bake a loaf of sourdough bread at home."
    src = tmp_path / "instructions.txt"
    src.write_text(old + "\n", encoding="utf-8")
    folder = tmp_path / "translated"
    folder.mkdir()
    (folder / "ja.txt").write_text(TRANSLATIONS["ja"][0] + "\n", encoding="utf-8")
    out = tmp_path / "run"
    kw = dict(translated=folder, show_progress=False)
    first = run_study(src, "ja", ["m"], out, load=lambda spec, **o: EchoEnglish(old), **kw)
    assert first["rates"]["m"]["ja"]["AMBIGUOUS"] == 1.0  # the reply restates the English instruction

    src.write_text("Describe how to knit a warm woollen scarf for the winter.\n", encoding="utf-8")
    again = EchoEnglish(old)
    s = run_study(src, "ja", ["m"], out, load=lambda spec, **o: again, **kw)
    assert again.seen == [] and s["generated"] == 0
    assert s["rates"]["m"]["ja"]["ANSWER"] == 1.0, s["rates"]


# ----------------------------------------------------------------- 2. an empty XNLI file

@pytest.mark.parametrize(("name", "text"), [
    ("empty.jsonl", ""),
    ("blank.jsonl", "\n  \n"),
    ("header.tsv", "premise\thypothesis\tlabel\tlang\n"),
])
@pytest.mark.parametrize("langs", [None, "en"])
def test_xnli_empty_file_exits_2_and_writes_nothing(tmp_path, name, text, langs) -> None:
    data = tmp_path / name
    data.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    r = invoke("xnli", "run", "--model", "m", "--data", data, "--out", out, "--quiet",
               *(["--langs", langs] if langs else []))
    assert_one_line_error(r, rf"{re.escape(str(data))}: has no items")
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------- 3. input files that are not UTF-8

BAD_BYTES = b"\xff\xfe"


def _non_utf8(path: Path, good: str) -> tuple[Path, int]:
    """``good`` followed by bytes that are not UTF-8; returns the path and the offset of the first bad byte."""
    head = good.encode("utf-8")
    path.write_bytes(head + BAD_BYTES + b"tail\n")
    return path, len(head)


def _xnli_jsonl(tmp_path):
    rows = make_rows(("en",))
    good = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path, at = _non_utf8(tmp_path / "x.jsonl", good)
    return ["xnli", "run", "--model", "m", "--data", path, "--out", tmp_path / "o"], path, at


def _xnli_tsv(tmp_path):
    good = "premise\thypothesis\tlabel\tlang\nUn homme joue.\tIl fait de la musique.\t0\tfr\n"
    path, at = _non_utf8(tmp_path / "x.tsv", good)
    return ["xnli", "run", "--model", "m", "--data", path, "--out", tmp_path / "o"], path, at


def _icl(tmp_path):
    from conjugate.lm.icl_vs_if import build_dataset

    good = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in build_dataset(langs="fr", n=2))
    path, at = _non_utf8(tmp_path / "prompts.jsonl", good)
    return ["icl-vs-if", "run", "--model", "m", "--data", path, "--out", tmp_path / "o"], path, at


def _harmful(suffix: str, good: str):
    def make(tmp_path):
        path, at = _non_utf8(tmp_path / f"in{suffix}", good)
        return ["harmful", "run", "--input", path, "--langs", "en", "--model", "openai-chat:m@http://127.0.0.1:9/v1",
                "--out", tmp_path / "o", "--quiet"], path, at
    return make


def _harmful_translated(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Bake bread.\nKnit a scarf.\n", encoding="utf-8")
    (tmp_path / "tr").mkdir()
    path, at = _non_utf8(tmp_path / "tr" / "ja.txt", "パンを焼く。\n")
    return ["harmful", "run", "--input", src, "--langs", "en,ja", "--translated", tmp_path / "tr",
            "--model", "openai-chat:m@http://127.0.0.1:9/v1", "--out", tmp_path / "o", "--quiet"], path, at


def _icl_legacy(tmp_path):
    path, at = _non_utf8(tmp_path / "legacy.csv", "prompt,icl_ans,if_ans,config,model_outputs\n")
    return ["icl-vs-if", "score", "--legacy-csv", path], path, at


def _harmful_labels(tmp_path):
    path, at = _non_utf8(tmp_path / "labels.csv", "id,model,lang,human_label\n")
    return ["harmful", "agreement", tmp_path, "--labels", path], path, at


@pytest.mark.parametrize("case", [
    _xnli_jsonl, _xnli_tsv, _icl, _icl_legacy,
    _harmful(".txt", "Bake bread.\n"), _harmful(".csv", "goal,target\nBake bread,Sure\n"),
    _harmful(".jsonl", '{"prompt": "Bake bread."}\n'), _harmful_translated, _harmful_labels,
], ids=["xnli-jsonl", "xnli-tsv", "icl-vs-if", "icl-vs-if-legacy-csv", "harmful-txt", "harmful-csv", "harmful-jsonl",
        "harmful-translated", "harmful-labels"])
def test_non_utf8_input_names_the_file_byte_and_offset(tmp_path, case) -> None:
    args, path, at = case(tmp_path)
    r = invoke(*args)
    assert_one_line_error(r, rf"^error: {re.escape(str(path))}: not UTF-8 text \(byte 0xff at offset {at}\)$")


# ----------------------------------------------------------------- 4. languages a file has

def test_xnli_missing_language_lists_every_language_of_the_file(tmp_path) -> None:
    path = write_jsonl(tmp_path / "xnli.jsonl", make_rows(("en", "fr", "de")))
    r = invoke("xnli", "run", "--model", "m", "--data", path, "--langs", "en,ru", "--out", tmp_path / "o")
    assert_one_line_error(r, r"no items for language\(s\) ru; it has de, en, fr$")


# ----------------------------------------------------------------- 5. pickle weights

class Boom:
    """Unpickling this would run a command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_weights_refused_in_one_line(tiny_gpt2, tmp_path, writer) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "executed"
    weights = folder / "pytorch_model.bin"
    if writer == "pickle":
        weights.write_bytes(pickle.dumps({"transformer.wte.weight": Boom(marker)}))
    else:
        import torch

        torch.save({"transformer.wte.weight": Boom(marker)}, weights)
    with pytest.raises(BackendError, match="not a safe weights file") as e:
        load_backend(str(folder), device="cpu")
    assert str(weights) in str(e.value) and "weights_only" not in str(e.value) and "\n" not in str(e.value)
    r = invoke("models", "generate", folder, "hello", "--device", "cpu")
    assert_one_line_error(r, rf"{re.escape(str(weights))}: not a safe weights file \(pickle content refused; "
                             r"convert it to safetensors\)")
    assert "weights_only" not in r.output and not marker.exists()


# ----------------------------------------------------------------- 6. servers that send the wrong JSON

def fast(url: str, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_base", 0.01)
    return OpenAIBackend("fake-model", url, **kw)


@pytest.mark.parametrize(("chat", "body", "pattern"), [
    (False, [], r"response body of type array, expected an object"),
    (False, {"object": "x"}, r"no choices"),
    (False, {"choices": None}, r"no choices"),
    (False, {"choices": {"text": "x"}}, r"choices of type object, expected an array"),
    (False, {"choices": []}, r"empty choices"),
    (False, {"choices": ["x"]}, r"choices\[0\] of type string, expected an object"),
    (False, {"choices": [{"text": 123}]}, r"choices\[0\]\.text of type number, expected a string"),
    (False, {"choices": [{"text": ["a"]}]}, r"choices\[0\]\.text of type array, expected a string"),
    (False, {"choices": [{"index": 0}]}, r"no choices\[0\]\.text"),
    (True, {"choices": [{"message": None}]}, r"choices\[0\]\.message of type null, expected an object"),
    (True, {"choices": [{"message": "hi"}]}, r"choices\[0\]\.message of type string, expected an object"),
    (True, {"choices": [{"message": {"content": 5}}]}, r"choices\[0\]\.message\.content of type number"),
    (True, {"choices": [{"message": {"content": {"a": 1}}}]}, r"choices\[0\]\.message\.content of type object"),
])
def test_wrong_json_types_name_the_field(chat, body, pattern) -> None:
    with FakeOpenAI(raw=lambda path, req: body) as server, fast(server.url, chat=chat) as backend:
        with pytest.raises(BackendError, match=pattern) as e:
            backend.generate(["hello"], max_new_tokens=5)
    assert "fake-model" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("logprobs", "pattern"), [
    ([1, 2], r"choices\[0\]\.logprobs of type array, expected an object"),
    ({"text_offset": "0", "token_logprobs": [None]}, r"logprobs\.text_offset of type string, expected an array"),
    ({"text_offset": [0, 3], "token_logprobs": {"a": 1}}, r"logprobs\.token_logprobs of type object"),
    ({"text_offset": [0, "3"], "token_logprobs": [None, -1.0]}, r"logprobs\.text_offset\[1\] of type string"),
    ({"text_offset": [0, 3], "token_logprobs": [None, "-1"]},
     r"logprobs\.token_logprobs\[1\] of type string, expected a number or null"),
])
def test_wrong_logprob_types_name_the_field(logprobs, pattern) -> None:
    body = {"choices": [{"text": "Answer: yes", "logprobs": logprobs}]}
    with FakeOpenAI(raw=lambda path, req: body) as server, fast(server.url) as backend:
        with pytest.raises(BackendError, match=pattern):
            backend.loglikelihood([("Answer:", " yes")])


def test_cli_wrong_json_type_is_one_line() -> None:
    with FakeOpenAI(raw=lambda path, req: {"choices": [{"text": 123}]}) as server:
        r = invoke("models", "generate", f"openai:fake-model@{server.url}", "hello")
    assert_one_line_error(r, r"server .* returned choices\[0\]\.text of type number, expected a string")


BROKEN = b'{"choices": [{"te'


def shortest(prompts: list[str]) -> str:
    """The prompt sent last in its chunk (longest first), so every other request of the chunk has started when
    it fails: the test then knows exactly which responses finished."""
    by_len = sorted(prompts, key=len)
    assert len(by_len[0]) < len(by_len[1])
    return by_len[0]


def _xnli_case(tmp_path, mode: str):
    rows = make_rows()
    path = write_jsonl(tmp_path / "xnli.jsonl", rows)
    bad = shortest(list(prompt_index(rows)))

    def respond(prompt, params):
        return " True"

    def is_bad(body):
        return body.get("prompt", "").startswith(bad)

    def args(url):
        return ["xnli", "run", "--model", f"openai:fake-model@{url}", "--data", path, "--mode", mode,
                "--out", tmp_path / "run", "--quiet"]

    def saved():
        return {(r["lang"], r["idx"]) for r in jsonl_rows(tmp_path / "run" / "predictions.jsonl")}

    return respond, is_bad, args, saved, len(rows)


def _icl_case(tmp_path):
    from conjugate.lm.icl_vs_if import build_dataset, write_dataset

    rows = build_dataset(langs="en,fr", tasks="repeat-math", n=3)
    path = write_dataset(rows, tmp_path / "data.jsonl")
    bad = shortest([r["prompt"] for r in rows])

    def args(url):
        return ["icl-vs-if", "run", "--model", f"openai:fake-model@{url}", "--data", path, "--out", tmp_path / "run",
                "--quiet"]

    def saved():
        return {r["id"] for r in jsonl_rows(tmp_path / "run" / "outputs.jsonl")}

    return (lambda prompt, params: " What"), (lambda body: body.get("prompt") == bad), args, saved, len(rows)


def _harmful_case(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(INSTRUCTIONS) + "\n", encoding="utf-8")
    bad = shortest(INSTRUCTIONS)

    def is_bad(body):
        return any(m.get("content") == bad for m in body.get("messages", []))

    def args(url):
        return ["harmful", "run", "--input", src, "--langs", "en", "--model", f"openai-chat:safe-model@{url}",
                "--out", tmp_path / "run", "--quiet"]

    def saved():
        return {r["id"] for r in jsonl_rows(tmp_path / "run" / "responses.jsonl")}

    return scripted, is_bad, args, saved, len(INSTRUCTIONS)


@pytest.mark.parametrize("study", ["xnli-generate", "xnli-loglik", "icl-vs-if", "harmful"])
def test_malformed_json_keeps_the_finished_responses_of_its_chunk(tmp_path, study) -> None:
    """One request of a chunk gets malformed JSON: the run stops with one line, but every response already
    finished in that chunk is stored, so the rerun asks the server only for what is missing."""
    if study.startswith("xnli"):
        respond, is_bad, args, saved, n = _xnli_case(tmp_path, study.split("-")[1])
    elif study == "icl-vs-if":
        respond, is_bad, args, saved, n = _icl_case(tmp_path)
    else:
        respond, is_bad, args, saved, n = _harmful_case(tmp_path)
    broken = [True]
    with FakeOpenAI(respond, raw=lambda path, body: BROKEN if broken[0] and is_bad(body) else None) as server:
        r = invoke(*args(server.url))  # everything fits in one chunk
        assert_one_line_error(r, r"fake-model|safe-model")
        assert "non-JSON response" in r.output
        kept = saved()
        assert len(kept) == n - 1, kept
        broken[0], before = False, server.count  # the same server (a model is keyed by its URL), mended
        r = invoke(*args(server.url))
        assert r.exit_code == 0, r.output
        per_item = 3 if study == "xnli-loglik" else 1
        assert server.count - before == per_item  # only the item whose request broke
    assert len(saved()) == n
