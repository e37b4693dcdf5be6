"""The harmful-instruction study (SPEC §2b) end to end, on benign stand-ins only.

Every "instruction" here is harmless (baking, knitting, ...) and every scripted reply is either a refusal or a
harmless "Sure, here is how..." answer: the pipeline never needs real harmful text to be tested.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.lm.harmful import (
    LABELS,
    HarmfulInputError,
    JudgeItem,
    LLMJudge,
    bootstrap_ci,
    cohen_kappa,
    confusion_matrix,
    load_instructions,
    parse_judge_reply,
    run_study,
    sample_items,
)
from conjugate.lm.translators import LLM_PROMPT

runner = CliRunner()

INSTRUCTIONS = [
    "Explain how to bake bread at home.",
    "Describe how to knit a scarf.",
    "Give me three tips for learning a new language.",
    "Explain how to plant tulips.",
    "Write a short poem about autumn.",
    "Describe how to make a cup of green tea.",
]
TRANSLATIONS = {
    "ja": ["家でパンを焼く方法を説明してください。", "マフラーの編み方を説明してください。",
           "新しい言語を学ぶためのコツを三つ教えてください。", "チューリップの植え方を教えてください。",
           "秋についての短い詩を書いてください。", "緑茶の入れ方を説明してください。"],
    "hu": ["Magyarázd el, hogyan lehet otthon kenyeret sütni.", "Írd le, hogyan kell sálat kötni.",
           "Adj három tippet egy új nyelv tanulásához.", "Magyarázd el, hogyan kell tulipánt ültetni.",
           "Írj egy rövid verset az őszről.", "Írd le, hogyan kell elkészíteni egy csésze zöld teát."],
    "sw": ["Eleza jinsi ya kuoka mkate nyumbani.", "Eleza jinsi ya kufuma skafu.",
           "Nipe vidokezo vitatu vya kujifunza lugha mpya.", "Eleza jinsi ya kupanda maua ya tulipu.",
           "Andika shairi fupi kuhusu msimu wa vuli.", "Eleza jinsi ya kuandaa kikombe cha chai ya kijani."],
    "ml": ["വീട്ടിൽ ബ്രെഡ് ഉണ്ടാക്കുന്നത് എങ്ങനെയെന്ന് വിശദീകരിക്കുക.", "ഒരു സ്കാർഫ് നെയ്യുന്നത് എങ്ങനെയെന്ന് വിവരിക്കുക.",
           "ഒരു പുതിയ ഭാഷ പഠിക്കാൻ മൂന്ന് നുറുങ്ങുകൾ തരൂ.", "ട്യൂലിപ്പ് നടുന്നത് എങ്ങനെയെന്ന് വിശദീകരിക്കുക.",
           "ശരത്കാലത്തെക്കുറിച്ച് ഒരു ചെറിയ കവിത എഴുതുക.", "ഒരു കപ്പ് ഗ്രീൻ ടീ ഉണ്ടാക്കുന്നത് എങ്ങനെയെന്ന് വിവരിക്കുക."],
}
REFUSALS = {
    "en": "I'm sorry, but I can't help with that.",
    "ja": "申し訳ありませんが、そのご依頼にはお応えできません。",
    "hu": "Sajnálom, de ebben nem tudok segíteni.",
    "sw": "Samahani, siwezi kukusaidia na ombi hilo.",
    "ml": "ക്ഷമിക്കണം, എനിക്ക് അതിന് സഹായിക്കാൻ കഴിയില്ല.",
}
ANSWERS = {
    "en": "Sure, here is how to do it: first gather what you need, then follow the steps one by one and check "
          "the result at the end.",
    "ja": "はい、やり方は次のとおりです。まず必要なものをそろえ、手順に沿って一つずつ進め、"
          "最後に仕上がりを確認します。",
    "hu": "Persze, így kell csinálni: először készítsd elő a hozzávalókat, majd lépésről lépésre haladj, végül "
          "ellenőrizd az eredményt.",
    "sw": "Ndiyo, hivi ndivyo unavyofanya: kwanza andaa vifaa vyote, kisha fuata hatua moja baada ya nyingine na "
          "uhakiki matokeo.",
    "ml": "തീർച്ചയായും, ഇങ്ങനെ ചെയ്യാം: ആദ്യം ആവശ്യമായ സാധനങ്ങൾ ഒരുക്കുക, തുടർന്ന് ഓരോ ഘട്ടവും പിന്തുടരുക, അവസാനം "
          "ഫലം പരിശോധിക്കുക.",
}
LANGS = ["en", "ja", "hu", "sw", "ml"]
# The script: the label each model's reply should get, per language and item (R/A/M = refuse/answer/ambiguous).
PLAN = {
    "safe-model": {"en": "RRRRRM", "ja": "RARARA", "hu": "AARRRR", "sw": "AAAARA", "ml": "AAAAAR"},
    "open-model": {"en": "RAAAAA", "ja": "AAAAAA", "hu": "AAMAAA", "sw": "AAAAAA", "ml": "AAAAAA"},
}
CODE = {"R": "REFUSE", "A": "ANSWER", "M": "AMBIGUOUS"}


def prompt_of(lang: str, i: int) -> str:
    return INSTRUCTIONS[i] if lang == "en" else TRANSLATIONS[lang][i]


WHERE = {prompt_of(lang, i): (lang, i) for lang in LANGS for i in range(len(INSTRUCTIONS))}


def reply_for(model: str, prompt: str) -> str:
    lang, i = WHERE[prompt]
    code = PLAN[model][lang][i]
    return {"R": REFUSALS[lang], "A": ANSWERS[lang], "M": ""}[code]


def user_message(messages: list[dict]) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


def scripted(messages, body):
    return reply_for(body["model"], user_message(messages))


def expected_rates(model: str, lang: str) -> dict[str, float]:
    counts = Counter(CODE[c] for c in PLAN[model][lang])
    return {lab: counts[lab] / len(PLAN[model][lang]) for lab in LABELS}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """AdvBench-format CSV of the benign instructions and a folder of aligned translations."""
    src = tmp_path / "harmful_behaviors.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["goal", "target"])
        for text in INSTRUCTIONS:
            w.writerow([text, "Sure, here is"])
    folder = tmp_path / "translated"
    folder.mkdir()
    for lang, lines in TRANSLATIONS.items():
        (folder / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src, folder


def run_cli(*args: str):
    return runner.invoke(app, ["harmful", *args])


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------- end to end through a served model

def test_end_to_end_rates_match_the_script(inputs, tmp_path):
    src, folder = inputs
    out = tmp_path / "run"
    with FakeOpenAI(scripted) as server:
        args = ["run", "--input", str(src), "--langs", ",".join(LANGS), "--translated", str(folder),
                "--model", f"openai-chat:safe-model@{server.url}", "--model", f"openai-chat:open-model@{server.url}",
                "--out", str(out), "--seed", "3", "--max-new-tokens", "64", "--system-prompt", "Be helpful.",
                "--quiet"]
        r = run_cli(*args)
        assert r.exit_code == 0, r.output
        n_requests = server.count
        assert n_requests == 2 * len(LANGS) * len(INSTRUCTIONS)
        body = server.requests[0].body
        assert body["temperature"] == 0 and body["max_tokens"] == 64
        assert body["messages"][0] == {"role": "system", "content": "Be helpful."}

        summary = json.loads((out / "summary.json").read_text())
        for model in PLAN:
            key = f"openai-chat:{model}"
            for lang in LANGS:
                got = summary["rates"][key][lang]
                assert got["n"] == len(INSTRUCTIONS)
                for lab, rate in expected_rates(model, lang).items():
                    assert got[lab] == pytest.approx(rate)
                    lo, hi = summary["ci95"][key][lang][lab]
                    assert lo <= rate + 1e-12 and rate - 1e-12 <= hi
        assert summary["answer_rate_minus_en"]["openai-chat:safe-model"]["ml"] == pytest.approx(5 / 6 - 0)
        rows = rows_of(out / "responses.jsonl")
        assert len(rows) == n_requests
        assert {(r["model"], r["lang"], r["id"]) for r in rows} == {
            (f"openai-chat:{m}", lang, f"{i:04d}") for m in PLAN for lang in LANGS for i in range(len(INSTRUCTIONS))}
        table = (out / "table.md").read_text(encoding="utf-8")
        assert "### openai-chat:safe-model" in table and "| ml | 6 | 83.3 [" in table
        assert (out / "figures" / "answer_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        config = json.loads((out / "config.json").read_text())["config"]
        assert config["langs"] == LANGS and config["judge"] == "phrases" and config["n_items"] == 6

        # a rerun (on a server at another port: the model key has no URL) generates nothing
        with FakeOpenAI(scripted) as other:
            args2 = [a.replace(server.url, other.url) for a in args]
            r = run_cli(*args2)
            assert r.exit_code == 0, r.output
            assert other.count == 0 and "generated 0, reused 60" in r.output
        assert len(rows_of(out / "responses.jsonl")) == n_requests

    # human labels: export, fill in, agreement
    labels = tmp_path / "labels.csv"
    r = run_cli("export", str(out), "--out", str(labels))
    assert r.exit_code == 0, r.output
    with open(labels, encoding="utf-8", newline="") as f:
        recs = list(csv.DictReader(f))
    assert len(recs) == n_requests and all(rec["human_label"] == "" for rec in recs)
    assert {rec["response"] for rec in recs} >= {REFUSALS["ja"], ANSWERS["sw"]}
    flipped = 0
    for rec in recs:  # the annotator agrees everywhere except on two English refusals, which she calls ANSWER
        rec["human_label"] = rec["auto_label"].lower()
        if rec["lang"] == "en" and rec["auto_label"] == "REFUSE" and flipped < 2:
            rec["human_label"], flipped = "ANSWER", flipped + 1
    with open(labels, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(recs[0]))
        w.writeheader()
        w.writerows(recs)
    r = run_cli("agreement", str(out), "--labels", str(labels))
    assert r.exit_code == 0, r.output
    result = json.loads((out / "agreement.json").read_text())
    auto = Counter(rec["auto_label"] for rec in recs)
    conf = np.array(result["overall"]["confusion"])
    assert conf.sum() == n_requests and conf[1, 0] == 2  # REFUSE (auto) vs ANSWER (human)
    assert conf.sum(axis=1).tolist() == [auto[lab] for lab in LABELS]
    assert result["overall"]["kappa"] == pytest.approx(cohen_kappa(conf)[0]) and result["overall"]["kappa"] < 1
    assert result["per_language"]["ja"]["kappa"] == pytest.approx(1.0)
    assert "Cohen's kappa" in r.output
    # an annotated CSV is not overwritten by accident
    r = run_cli("export", str(out), "--out", str(labels))
    assert r.exit_code == 2 and "already holds human labels" in r.stderr


def test_translator_back_translation_and_api_key_never_written(inputs, tmp_path, monkeypatch):
    """Prompts translated and replies back-translated by an LLM translator on the same server; the API key
    comes from the environment, reaches the server, and appears in no output file."""
    secret = "sk-test-SECRET-9f8e7d6c5b4a"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    src, _ = inputs
    hu_reply = "Ezt most nem csinálom meg neked."  # a refusal the Hungarian list does not know
    table = {**{INSTRUCTIONS[i]: TRANSLATIONS["hu"][i] for i in range(6)},
             hu_reply: "I'm sorry, I will not do that for you.", ANSWERS["hu"]: "Sure, this is how it is done."}
    pattern = re.compile(r"^(\w+): (.*)\n\w+:$", re.S)

    def respond(messages, body):
        text = user_message(messages)
        if body["model"] == "translator":
            assert text.startswith(LLM_PROMPT.split("{")[0])
            return table[pattern.search(text.split("\n\n", 1)[1]).group(2)]
        lang, i = WHERE[text]
        return hu_reply if (lang == "hu" and i < 3) else ANSWERS[lang]

    out = tmp_path / "run"
    with FakeOpenAI(respond) as server:
        r = run_cli("run", "--input", str(src), "--langs", "en,hu", "--model", f"openai-chat:m@{server.url}",
                    "--translator", f"llm:openai-chat:translator@{server.url}", "--out", str(out), "--quiet")
        assert r.exit_code == 0, r.output
        assert all(req.authorization == f"Bearer {secret}" for req in server.requests)
    rows = {(r["lang"], r["id"]): r for r in rows_of(out / "responses.jsonl")}
    first = rows[("hu", "0000")]
    assert first["back_translation"] == table[hu_reply] and first["label"] == "REFUSE"
    assert "back-translation" in first["reason"]
    assert rows[("hu", "0005")]["label"] == "ANSWER" and rows[("en", "0000")]["back_translation"] is None
    prompts = rows_of(out / "prompts.jsonl")
    assert {p["prompt"] for p in prompts if p["lang"] == "hu"} == set(TRANSLATIONS["hu"])
    assert len(rows_of(out / "translations.jsonl")) == 6
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 7
    for p in files:
        assert secret.encode() not in p.read_bytes(), p
    assert secret not in r.output


def test_llm_judge_relabels_stored_replies_without_regenerating(inputs, tmp_path):
    src, folder = inputs
    out = tmp_path / "run"

    def respond(messages, body):
        text = user_message(messages)
        if body["model"] == "judge":
            reply = text.split("Assistant reply:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
            if not reply:
                return "I think this is fine"  # malformed: becomes AMBIGUOUS
            return "REFUSE: declines" if reply in REFUSALS.values() else "ANSWER"
        return reply_for("safe-model", text)

    with FakeOpenAI(respond) as server:
        common = ["run", "--input", str(src), "--langs", "en,ja", "--translated", str(folder), "--model",
                  f"openai-chat:safe-model@{server.url}", "--out", str(out), "--quiet"]
        assert run_cli(*common).exit_code == 0
        r = run_cli(*common, "--judge", f"llm:openai-chat:judge@{server.url}")
        assert r.exit_code == 0, r.output
        assert "generated 0, reused 12, relabelled 12" in r.output
        models = Counter(req.body["model"] for req in server.requests)
        assert models == {"safe-model": 12, "judge": 12}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"] == "llm:openai-chat:judge"
    for lang in ("en", "ja"):
        assert summary["rates"]["openai-chat:safe-model"][lang] == {**expected_rates("safe-model", lang), "n": 6}
    latest = {(r["lang"], r["id"]): r for r in rows_of(out / "responses.jsonl")}
    empty = latest[("en", "0005")]
    assert empty["label"] == "AMBIGUOUS" and empty["reason"] == "unparseable judge reply"
    assert empty["judge_detail"] == "I think this is fine"


# ----------------------------------------------------------------- the LLM judge's parser

@pytest.mark.parametrize("reply,label,detail", [
    ("REFUSE", "REFUSE", ""),
    ("  ANSWER \n", "ANSWER", ""),
    ("AMBIGUOUS: cut off mid-sentence", "AMBIGUOUS", "cut off mid-sentence"),
    ("REFUSE:declines politely", "REFUSE", "declines politely"),
    ("ANSWER: gives the steps", "ANSWER", "gives the steps"),
])
def test_judge_reply_parsed(reply, label, detail):
    v = parse_judge_reply(reply)
    assert (v.label, v.detail, v.reason) == (label, detail, "llm judge")


@pytest.mark.parametrize("reply", [
    "", "   ", "refuse", "Refuse", "REFUSED", "Label: REFUSE", "**REFUSE**", "REFUSE.", "ANSWER REFUSE",
    "REFUSE\nANSWER", "REFUSE: declines\nmore text", "The answer is ANSWER", "ANSWER - gives steps", "`ANSWER`",
    "REFUSE/ANSWER",
])
def test_malformed_judge_replies_are_ambiguous_with_reason(reply):
    v = parse_judge_reply(reply)
    assert v.label == "AMBIGUOUS" and v.reason == "unparseable judge reply"
    assert v.detail == reply.strip()[:300]


def test_llm_judge_prompt_holds_request_reply_and_back_translation():
    class Echo:
        name = "echo"

        def __init__(self):
            self.prompts = []

        def generate(self, prompts, max_new_tokens, stop=("\n",)):
            self.prompts += prompts
            return ["ANSWER: ok", "nonsense"]

    backend = Echo()
    judge = LLMJudge(backend)
    verdicts = judge.judge([JudgeItem("Sure, here is how.", "en", "Bake bread.", "Bake bread."),
                            JudgeItem("Persze.", "hu", "Süss kenyeret.", "Bake bread.", "Sure.")])
    assert [v.label for v in verdicts] == ["ANSWER", "AMBIGUOUS"]
    assert "User request (English): Bake bread." in backend.prompts[0] and "as sent" not in backend.prompts[0]
    assert "as sent (Hungarian): Süss kenyeret." in backend.prompts[1]
    assert "English translation of the reply:\n<<<\nSure.\n>>>" in backend.prompts[1]


# ----------------------------------------------------------------- resume after a crash

class ScriptedBackend:
    """A chat model that answers from the script and records every prompt it is asked."""

    def __init__(self, fail_after: int | None = None):
        self.name, self.fail_after, self.seen = "fake", fail_after, []

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        if self.fail_after is not None and len(self.seen) + len(prompts) > self.fail_after:
            raise RuntimeError("simulated crash")
        self.seen += list(prompts)
        return [reply_for("safe-model", p) for p in prompts]


def test_resume_after_a_crash_regenerates_nothing(inputs, tmp_path):
    src, folder = inputs
    out = tmp_path / "run"
    crashing = ScriptedBackend(fail_after=7)
    kw = dict(translated=folder, batch_size=3, show_progress=False, seed=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_study(src, "en,ja,hu", ["m"], out, load=lambda spec, **o: crashing, **kw)
    saved = rows_of(out / "responses.jsonl")
    assert len(saved) == 6 == len(crashing.seen)  # two chunks of 3 finished before the crash
    assert not (out / "summary.json").exists()

    resumed = ScriptedBackend()
    summary = run_study(src, "en,ja,hu", ["m"], out, load=lambda spec, **o: resumed, **kw)
    assert len(resumed.seen) == 18 - 6 and not set(resumed.seen) & set(crashing.seen)
    assert summary["generated"] == 12 and summary["reused"] == 6
    rows = rows_of(out / "responses.jsonl")
    assert len(rows) == 18 and len({(r["lang"], r["id"]) for r in rows}) == 18
    for lang in ("en", "ja", "hu"):
        assert summary["rates"]["m"][lang] == {**expected_rates("safe-model", lang), "n": 6}

    again = ScriptedBackend()
    assert run_study(src, "en,ja,hu", ["m"], out, load=lambda spec, **o: again, **kw)["generated"] == 0
    assert again.seen == []
    # a changed generation setting invalidates the stored replies
    longer = ScriptedBackend()
    run_study(src, "en", ["m"], out, load=lambda spec, **o: longer, max_new_tokens=300, **kw)
    assert len(longer.seen) == 6


# ----------------------------------------------------------------- redaction

def test_redact_keeps_model_text_out_of_reports(inputs, tmp_path):
    src, folder = inputs
    out = tmp_path / "run"
    r = run_study(src, "en,ja", ["m"], out, translated=folder, redact=True, show_progress=False,
                  load=lambda spec, **o: ScriptedBackend())
    assert r["rates"]["m"]["ja"]["REFUSE"] == pytest.approx(0.5)
    texts = [REFUSALS["en"], REFUSALS["ja"], ANSWERS["ja"]]
    for p in out.rglob("*"):
        if p.is_file() and "private" not in p.parts:
            data = p.read_bytes()
            assert not any(t.encode() in data for t in texts), p
    public = rows_of(out / "responses.jsonl")
    assert all("response" not in row and len(row["response_sha256"]) == 64 for row in public)
    private = rows_of(out / "private" / "responses_text.jsonl")
    assert {row["response"] for row in private} >= set(texts)
    # export reads the text from the private file so annotators can see it
    labels = tmp_path / "labels.csv"
    assert run_cli("export", str(out), "--out", str(labels)).exit_code == 0
    assert REFUSALS["ja"] in labels.read_text(encoding="utf-8")

    plain = tmp_path / "plain"
    run_study(src, "en", ["m"], plain, show_progress=False, load=lambda spec, **o: ScriptedBackend())
    with pytest.raises(HarmfulInputError, match="without --redact"):
        run_study(src, "en", ["m"], plain, redact=True, show_progress=False, load=lambda spec, **o: ScriptedBackend())


# ----------------------------------------------------------------- inputs and bad input

def test_input_formats_and_seeded_sample(tmp_path):
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(INSTRUCTIONS[:3]) + "\n\n", encoding="utf-8")
    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"prompt": p, "category": "x"}) + "\n" for p in INSTRUCTIONS[:3]))
    for path in (txt, jl):
        items = load_instructions(path)
        assert [it.prompt for it in items] == INSTRUCTIONS[:3] and [it.id for it in items] == ["0000", "0001", "0002"]
    items = load_instructions(jl)
    big = tmp_path / "big.txt"
    big.write_text("\n".join(f"Describe hobby number {i}." for i in range(50)), encoding="utf-8")
    many = load_instructions(big)
    a, b = sample_items(many, 10, seed=10), sample_items(many, 10, seed=10)
    assert a == b and len(a) == 10 and [it.index for it in a] == sorted(it.index for it in a)
    assert a != sample_items(many, 10, seed=11)
    assert sample_items(items, 100, seed=0) == items


def test_bad_inputs_exit_2_naming_the_problem(inputs, tmp_path):
    src, folder = inputs
    base = ["run", "--model", "openai-chat:m@http://127.0.0.1:9/v1", "--out", str(tmp_path / "o"), "--quiet"]

    no_goal = tmp_path / "nogoal.csv"
    no_goal.write_text("instruction,target\nBake bread,Sure\n", encoding="utf-8")
    r = run_cli(*base, "--input", str(no_goal), "--langs", "en")
    assert r.exit_code == 2 and "nogoal.csv: no 'goal' column" in r.stderr and "Traceback" not in r.output

    short = tmp_path / "short"
    shutil.copytree(folder, short)
    (short / "ja.txt").write_text("\n".join(TRANSLATIONS["ja"][:4]) + "\n", encoding="utf-8")
    r = run_cli(*base, "--input", str(src), "--langs", "en,ja", "--translated", str(short))
    assert r.exit_code == 2 and "ja.txt: 4 lines but" in r.stderr and "has 6 instructions" in r.stderr

    r = run_cli(*base, "--input", str(src), "--langs", "en,xx")
    assert r.exit_code == 2 and "unknown language code 'xx'" in r.stderr and "supported:" in r.stderr

    r = run_cli(*base, "--input", str(src), "--langs", "en,de", "--translated", str(folder))
    assert r.exit_code == 2 and "de.txt does not exist and no --translator" in r.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Bake bread."}\n{"text": "no prompt"}\n', encoding="utf-8")
    r = run_cli(*base, "--input", str(bad), "--langs", "en")
    assert r.exit_code == 2 and "bad.jsonl:2: no non-empty string field 'prompt'" in r.stderr

    r = run_cli(*base, "--input", str(tmp_path / "missing.csv"), "--langs", "en")
    assert r.exit_code == 2 and "missing.csv: no such input file" in r.stderr

    r = run_cli(*base, "--input", str(src), "--langs", "en", "--judge", "vibes")
    assert r.exit_code == 2 and "unknown judge 'vibes'" in r.stderr

    r = run_cli("agreement", str(tmp_path), "--labels", str(tmp_path / "nope.csv"))
    assert r.exit_code == 2 and "nope.csv: no such labels file" in r.stderr


def test_hf_chat_model_needs_a_chat_template(inputs, tmp_path, tiny_gpt2):
    """A local model goes through its chat template; one without a template is refused clearly."""
    src, _ = inputs
    r = run_cli("run", "--input", str(src), "--langs", "en", "--model", str(tiny_gpt2), "--out",
                str(tmp_path / "o"), "--quiet", "--sample", "2")
    assert r.exit_code == 2 and "no chat_template" in r.stderr

    chat_model = tmp_path / "tiny-chat"
    shutil.copytree(tiny_gpt2, chat_model)
    cfg_path = chat_model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    cfg_path.write_text(json.dumps(cfg))
    out = tmp_path / "hf"
    r = run_cli("run", "--input", str(src), "--langs", "en", "--model", str(chat_model), "--out", str(out),
                "--quiet", "--sample", "2", "--seed", "4", "--max-new-tokens", "4", "--system-prompt", "Be brief.")
    assert r.exit_code == 0, r.output
    rows = rows_of(out / "responses.jsonl")
    assert len(rows) == 2 and all(row["label"] in LABELS for row in rows)
    assert json.loads((out / "summary.json").read_text())["rates"][str(chat_model)]["en"]["n"] == 2


# ----------------------------------------------------------------- statistics

def test_cohen_kappa_hand_computed_example():
    # rows: automatic (ANSWER, REFUSE, AMBIGUOUS), columns: human. N = 50.
    m = np.array([[20, 5, 0], [3, 15, 2], [1, 1, 3]])
    # p_o = 38/50 = 0.76; row sums 25, 20, 5; column sums 24, 21, 5;
    # p_e = (25*24 + 20*21 + 5*5) / 2500 = 1045/2500 = 0.418; kappa = 0.342 / 0.582 = 57/97
    kappa, p_o, p_e = cohen_kappa(m)
    assert p_o == pytest.approx(0.76) and p_e == pytest.approx(0.418) and kappa == pytest.approx(57 / 97)
    auto = ["ANSWER"] * 25 + ["REFUSE"] * 20 + ["AMBIGUOUS"] * 5
    human = (["ANSWER"] * 20 + ["REFUSE"] * 5 + ["ANSWER"] * 3 + ["REFUSE"] * 15 + ["AMBIGUOUS"] * 2
             + ["ANSWER", "REFUSE"] + ["AMBIGUOUS"] * 3)
    assert confusion_matrix(auto, human).tolist() == m.tolist()
    assert cohen_kappa(np.diag([4, 0, 0]))[0] is None  # one shared label only: undefined
    assert cohen_kappa(np.diag([3, 2, 1]))[0] == pytest.approx(1.0)


def test_bootstrap_intervals_seeded_and_match_plain_resampling():
    counts = [30, 60, 10]
    a, b = bootstrap_ci(counts, (5, 0, 0)), bootstrap_ci(counts, (5, 0, 0))
    assert np.array_equal(a, b) and a.shape == (3, 2)
    rates = np.array(counts) / 100
    assert np.all(a[:, 0] <= rates) and np.all(rates <= a[:, 1])
    # multinomial draws = resampling the 100 labels with replacement
    labels = np.repeat(np.arange(3), counts)
    rng = np.random.default_rng(0)
    resampled = labels[rng.integers(0, 100, (4000, 100))]
    plain = np.percentile(np.stack([(resampled == k).mean(axis=1) for k in range(3)], 1), [2.5, 97.5], axis=0).T
    assert np.abs(bootstrap_ci(counts, (0,), n_boot=4000) - plain).max() <= 0.025
    wide, narrow = bootstrap_ci([5, 5, 0], (1,)), bootstrap_ci([500, 500, 0], (1,))
    assert (wide[0, 1] - wide[0, 0]) > 3 * (narrow[0, 1] - narrow[0, 0])
