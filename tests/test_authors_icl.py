"""The paper's ICL-vs-IF prompts built from the authors' sentence files (``build --authors``), checked byte for
byte against an independent re-statement of the authors' algorithm; the fill-in-the-blank IF rate on missing
words of ≥ 3 characters; released CSVs scored per (tuned, base) pair; bad authors folders."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.lm.icl_vs_if import build_authors_dataset, build_dataset, load_dataset, run_study, score_legacy
from conjugate.lm.icl_vs_if.build import FIELDS, authors_config
from conjugate.lm.icl_vs_if.report import table_markdown
from conjugate.lm.icl_vs_if.score import aggregate, legacy_answer, score_row

runner = CliRunner()
AUTHORS = Path(__file__).resolve().parents[2] / "shared" / "authors"
SENTENCES = AUTHORS / "sentences"
needs_authors = pytest.mark.skipif(not SENTENCES.is_dir(), reason=f"the authors' sentence files are not in {AUTHORS}")
# sha256 over every row of build_authors_dataset(AUTHORS), in its order: prompt, icl_answer, if_answer, each
# followed by a unit separator, a record separator after each row (see prompts_sha256)
AUTHORS_SHA256 = "e03fb7deb7308ea31237497bc9a7d7f8532b586dada9c4eed78bd37807a4272e"


# ---------------------------------------------------------------- an independent statement of the authors' script

REF_TASKS = (("capslock", "math"), ("repeat", "math"), ("capslock", "startblank"), ("repeat", "startblank"))
# lang: repeat instruction, capslock instruction, input label, output label, question, (plus, minus, times)
REF_PIECES = {
    "en": ("Repeat the input.", "Capitalize every character.", "Input: ", "Output: ", "What is {} {} {}?",
           ("plus", "minus", "times")),
    "fr": ("Répétez la saisie.", "Mettez chaque caractère en majuscule.", "Saisir: ", "Sortir: ",
           "Combien font {} {} {}?", ("plus", "moins", "fois")),
    "es": ("Repita la entrada.", "Capitalizar cada carácter.", "Entrada: ", "Salida: ", "¿Cuánto es {} {} {}?",
           ("más", "menos", "veces")),
    "nl": ("Herhaal de invoer.", "Geef elk teken een hoofdletter.", "Invoer: ", "Uitgang: ", "Wat is {} {} {}?",
           ("plus", "min", "keer")),
    "hu": ("Ismételje meg a bevitelt.", "Minden karaktert nagybetűvel írj.", "Bemenet: ", "Kimenet: ",
           "Mi az a {} {} {}?", ("plusz", "mínusz", "alkalommal")),
    "ls": ("R3p347 7h3 1npu7.", "C4p174l1z3 3v3rY Ch4r4c73R.", "1npu7: ", "0u7pu7: ", "Wh47 15 {} {} {}?",
           ("Plu5", "M1nu5", "71m35")),
    "pl": ("Epeatray ethay inputyay.", "Apitalizecay everyay aracterchay.", "Inputyay: ", "Outputyay: ",
           "Atwhay {} {} {}?", ("usplay", "inusmay", "imestay")),
}


def reference(folder: Path) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(config, index) → (prompt, icl_ans, if_ans) as the authors' script stores them (answers with a space)."""
    state = random.getstate()
    records = {}
    try:
        for lang, (rep, caps, inp, outp, question, ops) in REF_PIECES.items():
            with open(folder / f"random_sentences_{lang}.txt", encoding="utf-8") as f:
                sentences = [line.strip("\n") for line in f.readlines()]
            for icl, ift in REF_TASKS:
                task = str.upper if icl == "capslock" else (lambda x: x)
                instruction = caps if icl == "capslock" else rep
                random.seed(10)
                for i in range(100):
                    ex1, ex2, q = random.sample(sentences, 3)
                    if ift == "math":
                        x, y, op = random.randint(4, 20), random.randint(4, 20), random.randint(0, 2)
                        q = question.format(x, ops[op], y)
                        icl_ans, if_ans = q.split(" ")[0], str([x + y, x - y, x * y][op])
                    else:
                        words = q.split(" ")
                        if_ans = words[0]
                        words[0] = "_" * len(if_ans)
                        q, icl_ans = " ".join(words), words[0]
                    prompt = instruction + "\n\n"
                    prompt += "\n\n".join(inp + e + "\n" + outp + task(e) for e in (ex1, ex2))
                    prompt += "\n\n" + inp + q + "\n" + outp[:-1]
                    records[(f"{icl}-{ift}-instr-input-{lang}-2shot", i)] = (prompt, " " + task(icl_ans),
                                                                             " " + task(if_ans))
    finally:
        random.setstate(state)
    return records


REF_ICL = {"repeat": "repeat", "capitalize": "capslock"}
REF_IF = {"math": "math", "fillblank": "startblank"}
REF_LANG = {"en": "en", "fr": "fr", "es": "es", "nl": "nl", "hu": "hu", "leet": "ls", "piglatin": "pl"}


def ref_key(row: dict) -> tuple[str, int]:
    config = f"{REF_ICL[row['icl_task']]}-{REF_IF[row['if_task']]}-instr-input-{REF_LANG[row['lang']]}-2shot"
    return config, int(row["id"].rsplit("-", 1)[1])


def prompts_sha256(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['prompt']}\x1f{r['icl_answer']}\x1f{r['if_answer']}\x1f\x1e".encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def authors_rows() -> list[dict]:
    if not SENTENCES.is_dir():
        pytest.skip(f"the authors' sentence files are not in {AUTHORS}")
    return build_authors_dataset(AUTHORS)


# ---------------------------------------------------------------- the paper's prompts

@needs_authors
def test_authors_prompts_are_the_papers_byte_for_byte(authors_rows) -> None:
    ref = reference(SENTENCES)
    assert len(authors_rows) == len(ref) == 2800
    assert all(tuple(r) == FIELDS and r["shots"] == 2 for r in authors_rows)
    assert len({r["id"] for r in authors_rows}) == 2800
    cells = Counter((r["icl_task"], r["if_task"], r["lang"]) for r in authors_rows)
    assert len(cells) == 28 and set(cells.values()) == {100}
    assert {ref_key(r) for r in authors_rows} == set(ref)
    for r in authors_rows:
        prompt, icl_ans, if_ans = ref[ref_key(r)]
        assert r["prompt"] == prompt, r["id"]
        # the authors store one leading space; the row does not, and legacy_answer maps one onto the other
        assert (" " + r["icl_answer"], " " + r["if_answer"]) == (icl_ans, if_ans), r["id"]
        assert (legacy_answer(icl_ans), legacy_answer(if_ans)) == (r["icl_answer"], r["if_answer"])
        assert authors_config(r) == ref_key(r)[0]
    # a few landmarks of the layout
    by_id = {r["id"]: r for r in authors_rows}
    assert by_id["capitalize-math-es-0000"]["icl_answer"] == "¿CUÁNTO"
    assert by_id["repeat-math-piglatin-0000"]["icl_answer"] == "Atwhay"
    assert by_id["capitalize-math-leet-0000"]["icl_answer"] == "WH47"
    assert any(r["if_answer"].startswith("-") for r in authors_rows)  # the authors' minus can go negative
    assert by_id["repeat-math-fr-0000"]["prompt"].startswith("Répétez la saisie.\n\nSaisir: ")
    assert by_id["repeat-math-fr-0000"]["prompt"].endswith("\nSortir:")


@needs_authors
def test_authors_prompts_sha256(authors_rows) -> None:
    digest = prompts_sha256(authors_rows)
    print(f"sha256 of the authors' 2,800 prompts and answers: {digest}")
    assert digest == AUTHORS_SHA256


@needs_authors
def test_short_missing_words(authors_rows) -> None:
    """Both fill-in-the-blank cells of a language draw the same queries (the seed is reset per cell), so the
    authors' count of short missing words is even; the project's own set has 263."""
    fill = [r for r in authors_rows if r["if_task"] == "fillblank"]
    assert len(fill) == 1400
    assert sum(len(r["icl_answer"]) < 3 for r in fill) == 440
    own = [r for r in build_dataset() if r["if_task"] == "fillblank"]
    assert len(own) == 1400 and sum(len(r["icl_answer"]) < 3 for r in own) == 263


@needs_authors
def test_cells_and_layouts(authors_rows, tmp_path) -> None:
    cell = build_authors_dataset(SENTENCES, langs="hu", tasks="capitalize-fillblank")
    assert cell == [r for r in authors_rows if r["id"].startswith("capitalize-fillblank-hu-")]
    repo = tmp_path / "understanding-forgetting"
    (repo / "icl_vs_if").mkdir(parents=True)
    (repo / "icl_vs_if" / "sentences").symlink_to(SENTENCES, target_is_directory=True)  # a link, not a copy
    assert build_authors_dataset(repo, langs="en,piglatin", tasks="repeat-math") == [
        r for r in authors_rows if r["id"].startswith(("repeat-math-en-", "repeat-math-piglatin-"))]


@needs_authors
def test_cli_build_authors(authors_rows, tmp_path) -> None:
    out = tmp_path / "paper.jsonl"
    r = runner.invoke(app, ["icl-vs-if", "build", "--authors", str(AUTHORS), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote 2800 prompts from the authors' sentences in {AUTHORS}" in r.stdout
    assert load_dataset(out) == authors_rows
    r = runner.invoke(app, ["icl-vs-if", "build", "--authors", str(AUTHORS), "--out", str(out), "--seed", "3"])
    assert r.exit_code == 2 and "--seed: not with --authors" in r.stderr
    r = runner.invoke(app, ["icl-vs-if", "build", "--out", str(tmp_path / "own.jsonl")])
    assert r.exit_code == 0 and "from the project's own corpus" in r.stdout
    assert load_dataset(tmp_path / "own.jsonl") == build_dataset()


@needs_authors
def test_released_format_scores_like_the_rows(authors_rows, tmp_path) -> None:
    """The authors' rows in their CSV format (answers with the space) and the project's rows score alike."""
    kinds = [lambda r: " " + r["icl_answer"], lambda r: " " + r["if_answer"] + ".", lambda r: r["icl_answer"],
             lambda r: " no idea", lambda r: " \\_" + r["icl_answer"][1:]]
    outputs = {r["id"]: kinds[i % len(kinds)](r) for i, r in enumerate(authors_rows)}
    path = tmp_path / "model.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "prompt", "icl_ans", "if_ans", "config", "model_outputs"])
        for i, r in enumerate(authors_rows):
            w.writerow([i, r["prompt"], " " + r["icl_answer"], " " + r["if_answer"], authors_config(r),
                        outputs[r["id"]]])
    legacy = score_legacy([path])
    direct = aggregate([score_row(r, outputs[r["id"]], "model") for r in authors_rows], ["model"])
    for key in ("accuracy", "if_rate", "if_rate_fillblank_3plus", "n_fillblank_3plus", "accuracy_by_task"):
        assert legacy[key] == direct[key], key
    assert sum(direct["n_fillblank_3plus"].values()) == 1400 - 440


# ---------------------------------------------------------------- bad authors folders

def fake_folder(root: Path, lines: dict[str, str]) -> Path:
    """Made-up sentence files (not the authors')."""
    root.mkdir(parents=True, exist_ok=True)
    for lang, text in lines.items():
        (root / f"random_sentences_{lang}.txt").write_text(text, encoding="utf-8")
    return root


LS = ("en", "fr", "es", "nl", "hu", "ls", "pl")
GOOD = "One cat sat.\nTwo dogs ran far.\nA bird sang.\nThe sun rose early."


def test_bad_authors_folders(tmp_path) -> None:
    def fails(folder: Path, message: str) -> None:
        r = runner.invoke(app, ["icl-vs-if", "build", "--authors", str(folder), "--out", str(tmp_path / "o.jsonl")])
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert not (tmp_path / "o.jsonl").exists()

    fails(tmp_path / "nowhere", "nowhere: no such folder")
    (tmp_path / "bare").mkdir()
    fails(tmp_path / "bare", "bare: no random_sentences_<lang>.txt here")
    d = fake_folder(tmp_path / "six", {lang: GOOD for lang in LS[:-1]})
    fails(d, "six: missing random_sentences_pl.txt")
    d = fake_folder(tmp_path / "empty" / "sentences", {**dict.fromkeys(LS, GOOD), "hu": ""})
    fails(tmp_path / "empty", "random_sentences_hu.txt: empty file")
    d = fake_folder(tmp_path / "short", {**dict.fromkeys(LS, GOOD), "es": GOOD + "\nOne more line."})
    fails(d, "short: sentence files are not aligned (lines: en 4, fr 4, es 5, nl 4, hu 4, ls 4, pl 4)")
    d = fake_folder(tmp_path / "hole", {**dict.fromkeys(LS, GOOD), "nl": "A.\n\nB.\nC."})
    fails(d, "random_sentences_nl.txt:2: empty line")
    d = fake_folder(tmp_path / "tiny", dict.fromkeys(LS, "A b.\nC d."))
    fails(d, "random_sentences_en.txt: 2 sentence(s); a prompt needs 3")
    d = fake_folder(tmp_path / "bytes", dict.fromkeys(LS, GOOD))
    (d / "random_sentences_fr.txt").write_bytes(b"Caf\xe9 noir.\nB c.\nD e.\nF g.")
    fails(d, "random_sentences_fr.txt: not UTF-8 text (byte 0xe9 at offset 3)")
    # a made-up folder that is complete builds: 4 lines, CRLF endings read as the authors' text mode does
    d = fake_folder(tmp_path / "ok", {**dict.fromkeys(LS, GOOD), "en": GOOD.replace("\n", "\r\n")})
    rows = build_authors_dataset(d)
    assert len(rows) == 2800 and not any("\r" in r["prompt"] for r in rows)
    answers = {lang: [(r["id"].replace(lang, "*"), r["if_answer"]) for r in rows if r["lang"] == lang]
               for lang in ("en", "fr")}
    assert answers["en"] == answers["fr"]  # the same sentences and the same draws in every language


# ---------------------------------------------------------------- fill-in-the-blank IF rate on longer words

def scored(model: str, lang: str, blank: str, follow: bool, i: int) -> dict:
    row = {"id": f"repeat-fillblank-{lang}-{i:04d}", "icl_task": "repeat", "if_task": "fillblank", "lang": lang,
           "icl_answer": blank, "if_answer": "x" * len(blank)}
    return score_row(row, " " + row["if_answer"] if follow else " nothing", model)


def test_if_rate_on_missing_words_of_three_or_more() -> None:
    rows = [scored("m", "en", "_", True, 0), scored("m", "en", "__", True, 1), scored("m", "en", "___", True, 2),
            scored("m", "en", "____", False, 3), scored("m", "fr", "__", True, 0)]
    s = aggregate(rows, ["m"])
    assert s["if_rate"]["m"] == {"en": 0.75, "fr": 1.0}
    assert s["if_rate_fillblank_3plus"]["m"]["en"] == 0.5 and s["n_fillblank_3plus"] == {"en": 2, "fr": 0}
    assert s["if_rate_fillblank_3plus"]["m"]["fr"] != s["if_rate_fillblank_3plus"]["m"]["fr"]  # NaN: none
    table = table_markdown(s)
    assert "## Instruction-following rate, fill-in-the-blank with a missing word of ≥ 3 characters (%)" in table
    assert "| en | 2 | 50.0 |" in table and "| fr | 0 | – |" in table


@needs_authors
def test_run_reports_the_longer_word_rate(authors_rows, tmp_path) -> None:
    class Follower:  # always answers the instruction
        def __init__(self, rows):
            self.by_prompt = {r["prompt"]: r for r in rows}

        def generate(self, prompts, max_new_tokens, stop=("\n",)):
            return [" " + self.by_prompt[p]["if_answer"] for p in prompts]

    rows = [r for r in authors_rows if r["lang"] in ("en", "hu")]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    s = run_study(["m"], tmp_path / "run", data=path, limit=10, show_progress=False, cache=False,
                  load=lambda spec, **_: Follower(rows))
    assert s["if_rate_fillblank_3plus"]["m"] == {"en": 1.0, "hu": 1.0}
    assert set(s["n_fillblank_3plus"]) == {"en", "hu"} and all(0 < n <= 20 for n in s["n_fillblank_3plus"].values())
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["n_fillblank_3plus"] == s["n_fillblank_3plus"]
    assert "missing word of ≥ 3 characters" in (tmp_path / "run" / "table.md").read_text()


# ---------------------------------------------------------------- released CSVs, each tuned model with its own base

def legacy_csv(path: Path, outputs: list[str]) -> Path:
    """Four English math prompts (ICL answer ' What', IF answer ' 84') with the given outputs."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "prompt", "icl_ans", "if_ans", "config", "model_outputs"])
        for i, out in enumerate(outputs):
            w.writerow([i, "Repeat the input.\n\nInput: x\nOutput:", " What", " 84", "repeat-math-instr-input-en-2shot",
                        out])
    return path


ICL, IF = " What is 7 times 12?", " 84"


@pytest.fixture()
def paper_models(tmp_path) -> list[Path]:
    d = tmp_path / "csv"
    d.mkdir()
    return [legacy_csv(d / "llama.csv", [ICL, ICL, ICL, IF]),  # 75 %
            legacy_csv(d / "alpaca.csv", [ICL, IF, IF, IF]),  # 25 %
            legacy_csv(d / "vicuna.csv", [ICL, ICL, IF, IF]),  # 50 %
            legacy_csv(d / "opt-1.3b.csv", [ICL, ICL, ICL, ICL]),  # 100 %
            legacy_csv(d / "opt-iml-max-1.3b.csv", [ICL, ICL, ICL, IF])]  # 75 %


def test_legacy_pairs(paper_models, tmp_path) -> None:
    pairs = [("alpaca", "llama"), ("vicuna", "llama"), ("opt-iml-max-1.3b", "opt-1.3b")]
    s = score_legacy(paper_models, tmp_path / "out", pairs=pairs)
    assert s["pairs"] == {"alpaca": "llama", "vicuna": "llama", "opt-iml-max-1.3b": "opt-1.3b"}
    assert s["drop"] == {"alpaca": {"en": 0.5}, "vicuna": {"en": 0.25}, "opt-iml-max-1.3b": {"en": 0.25}}
    table = (tmp_path / "out" / "table.md").read_text()
    assert "Each tuned model against its own base: llama → alpaca, llama → vicuna, opt-1.3b → opt-iml-max-1.3b" in table
    assert "| language | n | base: llama | tuned: alpaca | drop (alpaca) | tuned: vicuna | drop (vicuna) | " \
           "base: opt-1.3b | tuned: opt-iml-max-1.3b | drop (opt-iml-max-1.3b) |" in table
    assert "| en | 4 | 75.0 | 25.0 | 50.0 | 50.0 | 25.0 | 100.0 | 75.0 | 25.0 |" in table
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["drop"] == s["drop"] and saved["pairs"] == s["pairs"]
    # by path as given, and a model in no pair gets no drop
    s = score_legacy(paper_models, pairs=[(str(paper_models[1]), str(paper_models[0]))])
    assert s["drop"] == {"alpaca": {"en": 0.5}}
    # the default is unchanged: every file against the first
    s = score_legacy(paper_models)
    assert s["pairs"] == dict.fromkeys(["alpaca", "vicuna", "opt-1.3b", "opt-iml-max-1.3b"], "llama")
    assert s["drop"]["opt-1.3b"] == {"en": -0.25} and s["drop"]["alpaca"] == {"en": 0.5}
    assert "The first model is the base model" in table_markdown(s)


def test_legacy_pairs_cli_and_errors(paper_models, tmp_path) -> None:
    args = ["icl-vs-if", "score", *(a for p in paper_models for a in ("--legacy-csv", str(p)))]
    r = runner.invoke(app, [*args, "--pair", "alpaca=llama", "--pair", "opt-iml-max-1.3b=opt-1.3b"])
    assert r.exit_code == 0, r.output
    assert "drop (points) | llama -> alpaca: en  50.0" in r.stdout
    assert "drop (points) | opt-1.3b -> opt-iml-max-1.3b: en  25.0" in r.stdout and "-> vicuna" not in r.stdout
    for pair, message in [("alpaca", "--pair 'alpaca': expected TUNED=BASE"),
                          ("alpaca=llama2", "pair alpaca=llama2: no model 'llama2'; models: llama, alpaca"),
                          ("llama=llama", "a model cannot be its own base")]:
        r = runner.invoke(app, [*args, "--pair", pair])
        assert r.exit_code == 2 and message in r.stderr, (pair, r.stderr)
    r = runner.invoke(app, [*args, "--pair", "alpaca=llama", "--pair", "alpaca=vicuna"])
    assert r.exit_code == 2 and "pair alpaca=vicuna: alpaca already has the base llama" in r.stderr
