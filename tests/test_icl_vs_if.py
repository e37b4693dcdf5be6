"""ICL vs instruction following: prompt building, scoring rules, the resumable runner (fake backends, a tiny
Hugging Face model, the fake OpenAI server), the released-CSV scorer, and the command line."""

from __future__ import annotations

import csv
import json
import operator
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conjugate import data
from conjugate.cli import app
from conjugate.lm.icl_vs_if import LANGS, TASKS, build_dataset, load_dataset, run_study, score_legacy, write_dataset
from conjugate.lm.icl_vs_if.build import FIELDS
from conjugate.lm.icl_vs_if.score import follows_instruction, icl_correct
from conjugate.transforms import get_transform

runner = CliRunner()


@pytest.fixture(scope="module")
def default_rows() -> list[dict]:
    return build_dataset()


# ---------------------------------------------------------------- building

def test_defaults_reproduce_the_paper_layout(default_rows) -> None:
    assert len(default_rows) == 4 * 7 * 100
    assert set(TASKS) == {"repeat-math", "repeat-fillblank", "capitalize-math", "capitalize-fillblank"}
    assert set(LANGS) == {"en", "fr", "es", "nl", "hu", "leet", "piglatin"}
    groups = Counter((r["icl_task"], r["if_task"], r["lang"]) for r in default_rows)
    assert len(groups) == 28 and set(groups.values()) == {100}
    assert all(tuple(r) == FIELDS and r["shots"] == 2 for r in default_rows)
    assert len({r["id"] for r in default_rows}) == len(default_rows)
    assert build_dataset() == default_rows
    other = build_dataset(seed=1)
    assert sum(a["prompt"] != b["prompt"] for a, b in zip(default_rows, other, strict=True)) > 2000


def test_prompt_format(default_rows) -> None:
    for r in default_rows:
        if r["lang"] in ("leet", "piglatin"):
            continue
        pack = data.language_pack(r["lang"])
        inp, out = pack["labels"]["input"], pack["labels"]["output"]
        blocks = r["prompt"].split("\n\n")
        assert len(blocks) == 1 + r["shots"] + 1
        assert blocks[0] == pack["instructions"][r["icl_task"]]
        for block in blocks[1:-1]:
            x, y = block.split("\n")
            assert x.startswith(f"{inp}: ") and y.startswith(f"{out}: ")
            sentence = x[len(inp) + 2:]
            assert sentence in data.sentences(r["lang"])
            assert y[len(out) + 2:] == (sentence.upper() if r["icl_task"] == "capitalize" else sentence)
        query, last = blocks[-1].split("\n")
        assert query.startswith(f"{inp}: ") and last == f"{out}:"


def test_answers_are_right(default_rows) -> None:
    ops = {"plus": operator.add, "minus": operator.sub, "times": operator.mul}
    en = data.sentences("en")
    for r in (r for r in default_rows if r["lang"] == "en"):
        query = r["prompt"].rsplit("\nInput: ", 1)[1].removesuffix("\nOutput:")
        cap = r["icl_task"] == "capitalize"
        if r["if_task"] == "math":
            a, op, b = re.fullmatch(r"What is (\d+) (\w+) (\d+)\?", query).groups()
            assert r["icl_answer"] == ("WHAT" if cap else "What")
            assert r["if_answer"] == str(ops[op](int(a), int(b))) and int(r["if_answer"]) >= 0
            assert 4 <= int(a) <= 20 and 4 <= int(b) <= 20
        else:
            blank, rest = query.split(" ", 1)
            assert set(blank) == {"_"} and r["icl_answer"] == blank
            sentence = next(s for s in en if s.endswith(" " + rest) and len(s.split(" ", 1)[0]) == len(blank))
            first = sentence.split(" ", 1)[0]
            assert r["if_answer"] == (first.upper() if cap else first)


def test_languages_are_paired(default_rows) -> None:
    """Prompt i of a task uses the same sentences and numbers in every language."""
    by_key = {(r["icl_task"], r["if_task"], r["id"].rsplit("-", 1)[1], r["lang"]): r for r in default_rows}
    for (icl, ift, i, lang), r in by_key.items():
        en = by_key[(icl, ift, i, "en")]
        if ift == "math":
            assert r["if_answer"] == en["if_answer"]
        elif lang in data.LANGUAGES:
            idx = [data.sentences(lang).index(b.split("\n")[0].split(": ", 1)[1])
                   for b in r["prompt"].split("\n\n")[1:-1]]
            idx_en = [data.sentences("en").index(b.split("\n")[0].split(": ", 1)[1])
                      for b in en["prompt"].split("\n\n")[1:-1]]
            assert idx == idx_en


def test_leet_and_piglatin_prompts_are_transformed_english(default_rows) -> None:
    by_id = {r["id"]: r for r in default_rows}
    leet, pig = get_transform("leetspeak"), get_transform("piglatin")
    for r in default_rows:
        if r["lang"] != "en":
            continue
        lr = by_id[r["id"].replace("-en-", "-leet-")]
        assert lr["prompt"] == leet.apply(r["prompt"]) and lr["icl_answer"] == leet.apply(r["icl_answer"])
        if r["icl_task"] == "repeat":  # (upper() and Pig Latin disagree on one-letter words like "A")
            pr = by_id[r["id"].replace("-en-", "-piglatin-")]
            if r["if_task"] == "math":
                assert pr["prompt"] == pig.apply(r["prompt"]) and pr["if_answer"] == r["if_answer"]
            else:  # the blank is as long as the Pig Latin word it hides
                filled = pr["prompt"].replace(pr["icl_answer"], pr["if_answer"])
                assert filled == pig.apply(r["prompt"].replace(r["icl_answer"], r["if_answer"]))
                assert pr["if_answer"] == pig.apply(r["if_answer"]) and set(pr["icl_answer"]) == {"_"}
    assert by_id["repeat-math-piglatin-0000"]["icl_answer"] == "Atwhay"
    assert by_id["capitalize-math-leet-0000"]["icl_answer"] == "WH47"


def test_build_errors() -> None:
    with pytest.raises(ValueError, match="unknown language 'xx'; valid languages: en, fr, es, nl, hu, leet, piglatin"):
        build_dataset(langs="en,xx")
    with pytest.raises(ValueError, match="unknown task 'repeat-poem'; valid tasks: repeat-math"):
        build_dataset(tasks=["repeat-poem"])
    with pytest.raises(ValueError, match="n must be >= 1"):
        build_dataset(n=0)
    with pytest.raises(ValueError, match="shots=500 needs 501 sentences"):
        build_dataset(shots=500)
    rows = build_dataset(langs="hu", tasks="capitalize-fillblank", n=3, shots=4)
    assert len(rows) == 3 and all(r["prompt"].count("\n\n") == 5 for r in rows)


def test_load_dataset_round_trip_and_errors(tmp_path) -> None:
    rows = build_dataset(langs="en", tasks="repeat-math", n=3)
    path = write_dataset(rows, tmp_path / "d.jsonl")
    assert load_dataset(path) == rows
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], "", "{oops"]) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:3: malformed JSON"):
        load_dataset(bad)
    row = json.loads(lines[1])
    del row["if_answer"]
    bad.write_text(lines[0] + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field 'if_answer'"):
        load_dataset(bad)
    bad.write_text(lines[0] + "\n" + json.dumps({**json.loads(lines[1]), "icl_task": "sing"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: unknown icl_task 'sing'; valid: repeat, capitalize"):
        load_dataset(bad)
    bad.write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: duplicate id .* \(first on line 1\)"):
        load_dataset(bad)


# ---------------------------------------------------------------- scoring rules

@pytest.mark.parametrize(("output", "answer", "ok"), [
    (" What is 7 times 12?", "What", True),
    ("What is", "What", True),
    ("  What", "What", False),  # only one optional leading space, as in the paper
    ("\nWhat", "What", False),
    (" what is", "What", False),
    (" \\_\\_ sister bakes", "__", True),  # Markdown-escaped underscores are normalised
    (" ___", "__", True),  # prefix match, as in the paper
    ("", "What", False),
])
def test_icl_correct(output: str, answer: str, ok: bool) -> None:
    assert icl_correct(output, answer) is ok


@pytest.mark.parametrize(("output", "icl", "if_", "ok"), [
    (" 84", "What", "84", True),
    (" The answer is 84.", "What", "84", True),
    (" 840", "What", "84", False),
    (" What is 84?", "What", "84", False),  # ICL-correct outputs never count as instruction following
    (" my", "__", "MY", True),  # case-insensitive
    (" mystery", "__", "MY", False),
    (" Élő", "_", "élő", True),
])
def test_follows_instruction(output: str, icl: str, if_: str, ok: bool) -> None:
    assert follows_instruction(output, icl, if_) is ok


# ---------------------------------------------------------------- the runner, with fake backends

class ScriptedBackend:
    """Answers like a base model (does the ICL task) or a tuned one (answers the bait), per language."""

    def __init__(self, name: str, rows: list[dict], follow_in: set[str] = frozenset(), fail_on_call: int = 0):
        self.name = name
        self.by_prompt = {r["prompt"]: r for r in rows}
        self.follow_in, self.fail_on_call = follow_in, fail_on_call
        self.calls: list[list[str]] = []

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        self.calls.append(list(prompts))
        if self.fail_on_call and len(self.calls) == self.fail_on_call:
            raise RuntimeError("simulated crash")
        out = []
        for p in prompts:
            r = self.by_prompt[p]
            if r["lang"] in self.follow_in:
                out.append(f" The answer is {r['if_answer']}.")
            else:
                ans = r["icl_answer"].replace("_", "\\_") if r["lang"] == "fr" else r["icl_answer"]
                out.append(" " + ans + " and more")
        return out

    def loglikelihood(self, pairs):
        raise NotImplementedError


class Loader:
    def __init__(self, backends: dict[str, ScriptedBackend]):
        self.backends, self.loaded, self.options = backends, [], []

    def __call__(self, spec, **options):
        self.loaded.append(spec)
        self.options.append(options)
        return self.backends[spec]


@pytest.fixture()
def small(tmp_path) -> tuple[list[dict], Path]:
    rows = build_dataset(langs="en,fr,hu,leet", tasks="repeat-math,capitalize-fillblank", n=6)
    return rows, write_dataset(rows, tmp_path / "data.jsonl")


def test_run_scores_and_reports(small, tmp_path) -> None:
    rows, path = small
    base = ScriptedBackend("base", rows)
    tuned = ScriptedBackend("tuned", rows, follow_in={"en"})
    load = Loader({"base": base, "tuned": tuned})
    out = tmp_path / "run"
    s = run_study(["base", "tuned"], out, data=path, batch_size=5, show_progress=False, load=load)
    assert s["accuracy"]["base"] == dict.fromkeys(["en", "fr", "hu", "leet"], 1.0)
    assert s["accuracy"]["tuned"] == {"en": 0.0, "fr": 1.0, "hu": 1.0, "leet": 1.0}
    assert s["if_rate"]["tuned"]["en"] == 1.0 and s["if_rate"]["base"]["en"] == 0.0
    assert s["drop"]["tuned"]["en"] == 1.0 and s["n"] == dict.fromkeys(["en", "fr", "hu", "leet"], 12)
    assert s["generated"] == 2 * len(rows) and s["cached"] == 0
    assert load.options[0] == {"show_progress": False, "batch_size": 5, "chat": False}
    saved = json.loads((out / "summary.json").read_text())
    assert saved["accuracy"] == s["accuracy"] and saved["generated"] == s["generated"]
    assert "Largest drop for tuned: **en** (100.0 points)" in (out / "table.md").read_text()
    assert (out / "figures" / "icl_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "scores.csv", newline="") as f:
        scores = list(csv.DictReader(f))
    assert len(scores) == 2 * len(rows) and {r["icl_correct"] for r in scores} == {"0", "1"}
    outputs = [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]
    assert len(outputs) == 2 * len(rows) and {o["model"] for o in outputs} == {"base", "tuned"}
    assert json.loads((out / "config.json").read_text())["config"]["models"] == ["base", "tuned"]
    # batched, longest prompts first, at most batch_size per call
    lengths = [len(p) for call in base.calls for p in call]
    assert all(len(call) <= 5 for call in base.calls) and lengths == sorted(lengths, reverse=True)
    # a rerun generates nothing and loads no model
    load2 = Loader({})
    s2 = run_study(["base", "tuned"], out, data=path, batch_size=5, show_progress=False, load=load2)
    assert s2["generated"] == 0 and s2["cached"] == 2 * len(rows) and load2.loaded == []
    assert s2["accuracy"] == s["accuracy"]


def test_crash_loses_at_most_the_chunk_in_flight(small, tmp_path) -> None:
    rows, path = small
    out = tmp_path / "run"
    crashing = ScriptedBackend("base", rows, fail_on_call=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_study(["base"], out, data=path, batch_size=4, show_progress=False, load=Loader({"base": crashing}))
    assert len((out / "outputs.jsonl").read_text().splitlines()) == 2 * 4
    fresh = ScriptedBackend("base", rows)
    s = run_study(["base"], out, data=path, batch_size=4, show_progress=False, load=Loader({"base": fresh}))
    assert s["cached"] == 8 and s["generated"] == len(rows) - 8
    assert sum(len(c) for c in fresh.calls) == len(rows) - 8


def test_changed_prompts_and_limit(small, tmp_path) -> None:
    rows, path = small
    out = tmp_path / "run"
    backend = ScriptedBackend("base", rows)
    s = run_study(["base"], out, data=path, limit=2, show_progress=False, load=Loader({"base": backend}))
    assert s["n"] == dict.fromkeys(["en", "fr", "hu", "leet"], 4) and s["generated"] == 16
    rows[0]["prompt"] += " "
    write_dataset(rows, path)
    backend = ScriptedBackend("base", rows)
    s = run_study(["base"], out, data=path, limit=2, show_progress=False, load=Loader({"base": backend}))
    assert s["generated"] == 1 and backend.calls == [[rows[0]["prompt"]]]
    s = run_study(["base"], out, data=path, limit=2, max_new_tokens=5, show_progress=False,
                  load=Loader({"base": ScriptedBackend("base", rows)}))
    assert s["generated"] == 16  # other decoding settings: nothing reusable


def test_run_argument_errors(small, tmp_path) -> None:
    _, path = small
    with pytest.raises(ValueError, match="listed twice"):
        run_study(["a", "a"], tmp_path, data=path, load=Loader({}))
    with pytest.raises(ValueError, match="batch_size"):
        run_study(["a"], tmp_path, data=path, batch_size=0, load=Loader({}))


# ---------------------------------------------------------------- end to end on real backends

def test_end_to_end_tiny_hf_models(tiny_gpt2, tiny_llama, tmp_path) -> None:
    from conjugate.lm.hf import HFBackend

    rows = build_dataset(langs="en,piglatin", tasks="repeat-math", n=2)
    path = write_dataset(rows, tmp_path / "d.jsonl")
    out = tmp_path / "run"
    s = run_study([str(tiny_gpt2), str(tiny_llama)], out, data=path, max_new_tokens=4, show_progress=False)
    assert s["generated"] == 8 and set(s["accuracy"]) == {str(tiny_gpt2), str(tiny_llama)}
    assert all(0.0 <= v <= 1.0 for m in s["accuracy"].values() for v in m.values())
    outputs = {(o["model"], o["id"]): o["output"] for o in map(json.loads, (out / "outputs.jsonl").open())}
    direct = HFBackend(str(tiny_gpt2), device="cpu", chat=False).generate([r["prompt"] for r in rows], 4)
    assert [outputs[(str(tiny_gpt2), r["id"])] for r in rows] == direct
    r = runner.invoke(app, ["icl-vs-if", "run", "--model", str(tiny_gpt2), "--model", str(tiny_llama),
                            "--data", str(path), "--out", str(out), "--max-new-tokens", "4", "--quiet"])
    assert r.exit_code == 0 and "generated 0, reused 8" in r.stdout


def test_end_to_end_fake_openai_server(tmp_path) -> None:
    from fake_openai import FakeOpenAI

    def echo_query(prompt, params):  # a perfect in-context learner for the repeat task
        return " " + prompt.split("\n")[-2].split(": ", 1)[1] + "\nmore"

    rows = build_dataset(langs="en,nl", tasks="repeat-math,repeat-fillblank", n=3)
    path = write_dataset(rows, tmp_path / "d.jsonl")
    with FakeOpenAI(echo_query) as server:
        spec = f"openai:fake-model@{server.url}"
        s = run_study([spec], tmp_path / "run", data=path, show_progress=False)
        assert server.count == len(rows)
        assert all(req.body["max_tokens"] == 10 for req in server.requests)
    assert s["accuracy"][spec] == {"en": 1.0, "nl": 1.0} and s["generated"] == len(rows)


# ---------------------------------------------------------------- released CSV format

def write_legacy(path: Path, records: list[tuple[str, str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "prompt", "icl_ans", "if_ans", "config", "model_outputs"])
        for i, (config, icl, if_, output) in enumerate(records):
            w.writerow([i, "Repeat the input.\n\nInput: x\nOutput:", icl, if_, config, output])
    return path


def test_legacy_csv_scoring(tmp_path) -> None:
    en, ls, fr = ("repeat-math-instr-input-en-2shot", "capslock-startblank-instr-input-ls-2shot",
                  "repeat-math-instr-input-fr-2shot")
    base = write_legacy(tmp_path / "llama.csv", [
        (en, " What", " 84", " What is 7 times 12?"), (en, " What", " 84", "What"), (en, " What", " 84", " 84"),
        (ls, " ___", " MY", " \\_\\_\\_ 51573R"), (ls, " ___", " MY", " MY"),
        (fr, " Qu", " 84", " Combien font"),  # the released French quirk: ' Qu' stands for ' Combien'
    ])
    tuned = write_legacy(tmp_path / "alpaca.csv", [
        (en, " What", " 84", " 84"), (en, " What", " 84", ""), (en, " What", " 84", " The answer is 84"),
        (ls, " ___", " MY", " ___"), (ls, " ___", " MY", " my"), (fr, " Qu", " 84", " 84"),
    ])
    s = score_legacy([base, tuned], tmp_path / "out")
    assert s["models"] == ["llama", "alpaca"] and s["languages"] == ["en", "leet", "fr"]
    assert s["accuracy"]["llama"] == {"en": 2 / 3, "leet": 0.5, "fr": 1.0}
    assert s["accuracy"]["alpaca"] == {"en": 0.0, "leet": 0.5, "fr": 0.0}
    assert s["if_rate"]["alpaca"] == {"en": 2 / 3, "leet": 0.5, "fr": 1.0}
    assert s["accuracy_by_task"]["llama"]["capitalize-fillblank"] == {"leet": 0.5}
    assert (tmp_path / "out" / "table.md").exists() and (tmp_path / "out" / "figures" / "icl_accuracy.png").exists()
    r = runner.invoke(app, ["icl-vs-if", "score", "--legacy-csv", str(base)])
    assert r.exit_code == 0 and "llama" in r.stdout


def test_legacy_csv_errors(tmp_path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("prompt,icl_ans\nfoo,bar\n")
    r = runner.invoke(app, ["icl-vs-if", "score", "--legacy-csv", str(p)])
    assert r.exit_code == 2 and "missing column(s) if_ans, config, model_outputs" in r.stderr
    write_legacy(p, [("repeat-math-instr-input-en-2shot", " What", " 1", ""), ("poem-x", " A", " B", "")])
    with pytest.raises(ValueError, match=r"x.csv:\d+: config 'poem-x' is not"):
        score_legacy([p])


# ---------------------------------------------------------------- command line

def test_cli_build_and_errors(tmp_path) -> None:
    out = tmp_path / "d.jsonl"
    r = runner.invoke(app, ["icl-vs-if", "build", "--out", str(out), "--langs", "en,leet", "--tasks",
                            "repeat-math", "--n", "4", "--seed", "3"])
    assert r.exit_code == 0 and len(load_dataset(out)) == 8
    assert load_dataset(out) == build_dataset(langs="en,leet", tasks="repeat-math", n=4, seed=3)
    r = runner.invoke(app, ["icl-vs-if", "build", "--out", str(out), "--langs", "en,klingon"])
    assert r.exit_code == 2 and "unknown language 'klingon'; valid languages: en, fr" in r.stderr
    r = runner.invoke(app, ["icl-vs-if", "run", "--model", str(tmp_path / "nope"), "--data", str(out),
                            "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "does not exist" in r.stderr and "Traceback" not in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(out.read_text().splitlines()[0] + "\nnot json\n")
    r = runner.invoke(app, ["icl-vs-if", "run", "--model", "x", "--data", str(bad), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "bad.jsonl:2: malformed JSON" in r.stderr
    r = runner.invoke(app, ["icl-vs-if", "run", "--model", "x", "--batch-size", "many", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--batch-size" in r.output
