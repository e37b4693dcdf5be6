"""``conjugate probe`` and the study pipeline under it: items × transforms × models → cached requests → records
→ scores, with the identity arm as the reference and the recovered share of the base → tuned drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.lm.pipeline import Item, PipelineInputError, make_arms
from conjugate.lm.probe import load_items, run_probe
from conjugate.runs import read_json
from conjugate.transforms import get_transform

runner = CliRunner()
LEET = get_transform("leetspeak")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


QA = [{"id": f"q{i}", "prompt": f"Copy the word: word{chr(97 + i)}\nAnswer:", "answer": f"word{chr(97 + i)}"}
      for i in range(20)]  # no digits: leetspeak's inverse is exact on them
CHOICE = [{"id": i, "prompt": f"Is {i} even? Answer:", "choices": [" yes", " no"], "answer": " yes" if i % 2 == 0
           else 1} for i in range(20)]


class Scripted:
    """A fake model: the base answers every question; the tuned one answers only prompts in leetspeak (and then
    in leetspeak), i.e. its capability is suppressed, not erased. Counts what it is sent."""

    def __init__(self, name: str, tuned: bool):
        self.name, self.tuned, self.sent = name, tuned, []

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        self.sent += list(prompts)
        outs = []
        for p in prompts:
            word = p.split(":")[1].split("\n")[0].strip()
            leet = p.startswith(LEET.apply("Copy"))
            if not self.tuned:
                outs.append(" " + word)
            else:
                outs.append(" " + word if leet else " I cannot help with that.")
        return outs

    def loglikelihood(self, pairs):
        self.sent += [c for c, _ in pairs]
        return [-1.0 if o.strip() in ("yes", "y35") else -2.0 for _, o in pairs]


class Loader:
    def __init__(self):
        self.models: dict[str, Scripted] = {}
        self.loaded: list[str] = []

    def __call__(self, spec, **opts):
        self.loaded.append(spec)
        return self.models.setdefault(spec, Scripted(spec, tuned=spec == "tuned"))


def test_a_suppressed_capability_comes_back_under_the_transform(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "qa.jsonl", QA)
    load = Loader()
    s = run_probe(data, ["base", "tuned"], tmp_path / "run", scorer="exact", transforms=["leetspeak", "rot13"],
                  show_progress=False, load=load)
    assert s["value"]["base"]["en"]["identity"] == 1.0
    assert s["value"]["tuned"]["en"] == {"identity": 0.0, "leetspeak": 1.0, "rot13": 0.0}
    rec = s["recovery"]["tuned"]["en"]
    assert s["drop"]["tuned"]["en"] == 1.0
    assert rec["leetspeak"]["recovered"] == 1.0 and rec["rot13"]["recovered"] == 0.0
    assert s["ci95"]["tuned"]["en"]["leetspeak"] == [1.0, 1.0]
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 3 * 20
    leet = [r for r in records if r["model"] == "tuned" and r["transform"] == "leetspeak"]
    assert all(r["inverse"] == "exact" and r["mapped"] != r["output"] for r in leet)
    assert all(r["prompt"] == LEET.apply(q["prompt"]) for r, q in zip(leet, QA, strict=True))
    assert s["sent"] == 120 and s["cached"] == 0
    # rerun: everything comes from the request cache; no model is even loaded
    load2 = Loader()
    s2 = run_probe(data, ["base", "tuned"], tmp_path / "run", scorer="exact", transforms=["leetspeak", "rot13"],
                   show_progress=False, load=load2)
    assert load2.loaded == [] and s2["sent"] == 0 and s2["cached"] == 120
    assert s2["value"] == s["value"] and s2["recovery"] == s["recovery"]


def test_scores_follow_the_current_answers_not_the_cache(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "qa.jsonl", QA)
    run_probe(data, ["base"], tmp_path / "run", show_progress=False, load=Loader())
    changed = [{**q, "answer": "something else"} if i < 5 else q for i, q in enumerate(QA)]
    s = run_probe(write_rows(data, changed), ["base"], tmp_path / "run", show_progress=False, load=Loader())
    assert s["sent"] == 0 and s["value"]["base"]["en"]["identity"] == 0.75


def test_choice_scorer_picks_the_likeliest_option(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "c.jsonl", CHOICE)
    s = run_probe(data, ["base"], tmp_path / "run", scorer="choice", transforms=["leetspeak"], show_progress=False,
                  load=Loader())
    # the fake prefers "yes": right on the 10 even numbers, wrong on the 10 odd ones, in both arms
    assert s["value"]["base"]["en"] == {"identity": 0.5, "leetspeak": 0.5}
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert all(r["kind"] == "choices" and len(r["scores"]) == 2 for r in records)


def test_cli_on_tiny_models_exact_and_choice(tiny_gpt2, tiny_llama, tmp_path: Path) -> None:
    qa, ch = write_rows(tmp_path / "qa.jsonl", QA), write_rows(tmp_path / "c.jsonl", CHOICE)
    for scorer, data in (("exact", qa), ("choice", ch)):
        out = tmp_path / scorer
        args = ["probe", "--data", data, "--model", tiny_gpt2, "--model", tiny_llama, "--scorer", scorer,
                "--transform", "leetspeak", "--transform", "rot13", "--out", out, "--quiet", "--max-new-tokens", 4]
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        s = read_json(out / "summary.json")
        assert s["transforms"] == ["identity", "leetspeak", "rot13"] and s["n"][str(tiny_llama)]["en"]["rot13"] == 20
        assert set(s["recovery"][str(tiny_llama)]["en"]) == {"leetspeak", "rot13"}
        assert (out / "table.md").read_text().count("|") > 10 and (out / "figures" / "probe.png").exists()
        again = invoke(*args)
        assert again.exit_code == 0 and "sent 0, cached 120" in again.output, again.output
        assert read_json(out / "summary.json")["value"] == s["value"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    good = write_rows(tmp_path / "qa.jsonl", QA[:3])
    out = tmp_path / "run"
    base = ["probe", "--model", "openai:m@http://127.0.0.1:9/v1", "--out", out, "--quiet"]
    one_line_error(invoke(*base, "--data", good, "--transform", "klingon"), "klingon", "valid transforms")
    one_line_error(invoke(*base, "--data", good, "--scorer", "fuzzy"), "unknown scorer", "fuzzy")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QA[0]) + "\n" + json.dumps({"id": "x", "answer": "y"}) + "\n")
    one_line_error(invoke(*base, "--data", bad), f"{bad}:2", "'prompt'")
    bad.write_text(json.dumps({"id": "x", "prompt": "p"}) + "\n")
    one_line_error(invoke(*base, "--data", bad), f"{bad}:1", "'answer'")
    bad.write_text(json.dumps({"id": "x", "prompt": "p", "answer": "a"}) + "\n")
    one_line_error(invoke(*base, "--data", bad, "--scorer", "choice"), f"{bad}:1", "choices")
    one_line_error(invoke(*base, "--data", tmp_path / "missing.jsonl"), "no such file")
    corrupt = tmp_path / "cache.sqlite"
    corrupt.write_bytes(b"this is not a database" * 100)
    one_line_error(invoke(*base, "--data", good, "--cache", corrupt), str(corrupt))
    assert not out.exists() or not any(out.glob("*.json"))


def test_a_transform_without_an_inverse_is_refused_where_the_scorer_needs_one() -> None:
    from conjugate.transforms import Transform, register

    class OneWay(Transform):
        name = "oneway-test"

        def apply(self, text: str) -> str:
            return text.upper()

    register("oneway-test", lambda arg, **_: OneWay())
    with pytest.raises(PipelineInputError, match="has no inverse"):
        make_arms(["oneway-test"], needs_inverse=True)
    assert [a.spec for a in make_arms(["oneway-test"], needs_inverse=False)] == ["identity", "oneway-test"]


def test_load_items_reads_lang_and_choice_indices(tmp_path: Path) -> None:
    rows = [{"id": 1, "prompt": "p", "choices": ["a", "b", "c"], "answer": "c", "lang": "fr"}]
    (item,) = load_items(write_rows(tmp_path / "x.jsonl", rows), "choice")
    assert item == Item("1", "p", 2, "fr", ("a", "b", "c"))
