"""Build the ICL-vs-instruction-following prompts (SPEC §2a): the paper's own 2,800 from the authors' sentence
files (:func:`build_authors_dataset`), or the project's own set from its own corpus (:func:`build_dataset`).

Each prompt names an in-context task in its instruction, shows ``shots`` exemplars of it, and ends with a
query that is bait for instruction following::

    Repeat the input.

    Input: Birds sing loudly just before sunrise.
    Output: Birds sing loudly just before sunrise.

    Input: Dogs bark whenever the mail carrier arrives.
    Output: Dogs bark whenever the mail carrier arrives.

    Input: What is 7 times 12?
    Output:

ICL tasks: ``repeat`` (the input unchanged) and ``capitalize`` (``str.upper`` of the input). Queries (the
"IF task"): ``math`` — an arithmetic question (``plus``/``minus``/``times`` of two integers in 4..20);
``fillblank`` — a sentence whose first word is replaced by as many underscores as it has characters. The ICL
answer is the query's first word under the ICL task (``What`` / ``WHAT``, or the underscores); the
instruction-following answer is the result (``84``) or the missing word under the ICL task (``Birds`` /
``BIRDS``), as in the authors' release.

**The paper's prompts** (:func:`build_authors_dataset`, ``build --authors DIR``): the authors' algorithm
(their ``icl_vs_if/create_datasets.py``) run on their sentence files ``random_sentences_<lang>.txt`` (500
aligned lines in ``en fr es nl hu ls pl``; ``ls`` is our ``leet``, ``pl`` our ``piglatin``), which the project
does not ship: per (language, task) ``random.seed(10)``, then 100 × ``random.sample(sentences, 3)`` (two
exemplars and the query sentence), and for ``math`` three more draws ``randint(4, 20)``, ``randint(4, 20)``,
``randint(0, 2)`` (plus, minus, times — ``minus`` may be negative); their per-language instructions, labels
and questions (:data:`AUTHORS_PACKS`). The prompts are theirs byte for byte. The row's answers are theirs
*without* the one leading space the authors store (their ``icl_ans`` is ``" " + icl_answer``), as for the
project's own rows: :func:`.score.icl_correct` accepts an output with or without one leading space and
:func:`.score.legacy_answer` strips that space from released CSVs, so both score the same.

**The project's own prompts** (:func:`build_dataset`, the default of ``build``): the same layout and tasks on
the project's own 160-sentence corpus — not the paper's sentences. Languages: the corpus languages of
:mod:`conjugate.data` (``en fr es nl hu``) and two encodings of English, ``leet`` and ``piglatin``, made by
applying :mod:`conjugate.transforms` to every English piece (instruction, labels, sentences, question
templates — numbers stay digits), as the paper did. ``minus`` puts the larger number first. Sampling is paired
across languages: prompt ``i`` of a task uses the same sentence indices, operation and numbers in every
language, so per-language differences are not sampling noise. A seed fixes everything.

Both give rows ``id, icl_task, if_task, lang, shots, prompt, icl_answer, if_answer`` with ids
``<icl_task>-<if_task>-<lang>-<i:04d>`` (``i``: the row's index in its (task, language) cell), task-major
then language, in the order of :data:`TASKS` and :data:`LANGS`.
"""

from __future__ import annotations

import io
import json
import operator
import random
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ... import data
from ...runs import atomic_write_text
from ...transforms import get_transform
from ..textio import jsonl_objects, read_text

ICL_TASKS: dict[str, Callable[[str], str]] = {"repeat": lambda s: s, "capitalize": str.upper}
IF_TASKS = ("math", "fillblank")
TASKS = tuple(f"{i}-{f}" for i in ICL_TASKS for f in IF_TASKS)
ENCODED = {"leet": "leetspeak", "piglatin": "piglatin"}
LANGS = (*data.LANGUAGES, *ENCODED)
OPS: dict[str, Callable[[int, int], int]] = {"plus": operator.add, "minus": operator.sub, "times": operator.mul}
NUMBER_RANGE = (4, 20)
FIELDS = ("id", "icl_task", "if_task", "lang", "shots", "prompt", "icl_answer", "if_answer")


@dataclass(frozen=True)
class PromptPack:
    """Every language-specific piece of a prompt."""

    lang: str
    instructions: dict[str, str]
    input_label: str
    output_label: str
    math: dict[str, str]
    sentences: tuple[str, ...]


def parse_list(raw: str | Sequence[str] | None, valid: Sequence[str], what: str) -> list[str]:
    """A comma-separated string or list → names, each checked against ``valid`` (error lists them)."""
    if raw is None:
        return list(valid)
    items = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if s.strip()]
    if not items:
        raise ValueError(f"no {what}s given; valid {what}s: {', '.join(valid)}")
    for item in items:
        if item not in valid:
            raise ValueError(f"unknown {what} {item!r}; valid {what}s: {', '.join(valid)}")
    return list(dict.fromkeys(items))


def transform_template(template: str, apply: Callable[[str], str]) -> str:
    """Apply a text transform to a ``str.format`` template's literal parts, keeping ``{a}``-style fields."""
    out = []
    for literal, field, spec, conv in string.Formatter().parse(template):
        out.append(apply(literal).replace("{", "{{").replace("}", "}}"))
        if field is not None:
            out.append("{" + field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}")
    return "".join(out)


def prompt_pack(lang: str) -> PromptPack:
    """The prompt pieces of ``lang`` (a corpus language, ``leet`` or ``piglatin``)."""
    if lang in ENCODED:
        en = prompt_pack("en")
        t = get_transform(ENCODED[lang])
        return PromptPack(
            lang=lang,
            instructions={k: t.apply(v) for k, v in en.instructions.items()},
            input_label=t.apply(en.input_label),
            output_label=t.apply(en.output_label),
            math={k: transform_template(v, t.apply) for k, v in en.math.items()},
            sentences=tuple(t.apply_many(en.sentences)),
        )
    if lang not in data.LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; valid languages: {', '.join(LANGS)}")
    pack = data.language_pack(lang)
    return PromptPack(lang, dict(pack["instructions"]), pack["labels"]["input"], pack["labels"]["output"],
                      dict(pack["math"]), tuple(data.sentences(lang)))


def format_prompt(pack: PromptPack, icl_task: str, exemplars: Iterable[str], query: str) -> str:
    """Instruction, exemplars ``Input: s`` / ``Output: task(s)`` separated by blank lines, then the query."""
    fn = ICL_TASKS[icl_task]
    blocks = [pack.instructions[icl_task]]
    blocks += [f"{pack.input_label}: {s}\n{pack.output_label}: {fn(s)}" for s in exemplars]
    blocks.append(f"{pack.input_label}: {query}\n{pack.output_label}:")
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class Draw:
    """The language-independent randomness of one prompt."""

    sentences: tuple[int, ...]  # exemplar indices, then the query sentence's index
    op: str
    a: int
    b: int


def draws(task: str, n: int, shots: int, n_sentences: int, seed: int) -> list[Draw]:
    """``n`` draws for ``task``, the same for every language (a string seed is stable across runs)."""
    if shots + 1 > n_sentences:
        raise ValueError(f"shots={shots} needs {shots + 1} sentences; the corpus has {n_sentences}")
    rng = random.Random(f"icl-vs-if:{seed}:{task}")
    out = []
    for _ in range(n):
        idx = tuple(rng.sample(range(n_sentences), shots + 1))
        op = rng.choice(sorted(OPS))
        a, b = rng.randint(*NUMBER_RANGE), rng.randint(*NUMBER_RANGE)
        if op == "minus" and a < b:
            a, b = b, a
        out.append(Draw(idx, op, a, b))
    return out


def make_row(pack: PromptPack, task: str, i: int, draw: Draw, shots: int) -> dict:
    """One prompt with its ICL and instruction-following answers."""
    icl_task, if_task = task.split("-")
    fn = ICL_TASKS[icl_task]
    exemplars = [pack.sentences[j] for j in draw.sentences[:-1]]
    if if_task == "math":
        query = pack.math[draw.op].format(a=draw.a, b=draw.b)
        icl_answer = fn(query.split(" ")[0])
        if_answer = str(OPS[draw.op](draw.a, draw.b))
    else:
        first, *rest = pack.sentences[draw.sentences[-1]].split(" ")
        blank = "_" * len(first)
        query = " ".join([blank, *rest])
        icl_answer, if_answer = fn(blank), fn(first)
    return {"id": f"{task}-{pack.lang}-{i:04d}", "icl_task": icl_task, "if_task": if_task, "lang": pack.lang,
            "shots": shots, "prompt": format_prompt(pack, icl_task, exemplars, query),
            "icl_answer": icl_answer, "if_answer": if_answer}


def build_dataset(langs: Sequence[str] | str | None = None, tasks: Sequence[str] | str | None = None,
                  n: int = 100, shots: int = 2, seed: int = 0) -> list[dict]:
    """The project's own prompts from its own corpus, task-major then language; the defaults have the paper's
    layout (4 tasks × 7 languages × 100) but not its sentences (those are :func:`build_authors_dataset`'s)."""
    langs = parse_list(langs, LANGS, "language")
    tasks = parse_list(tasks, TASKS, "task")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    packs = {lang: prompt_pack(lang) for lang in langs}
    sizes = {len(p.sentences) for p in packs.values()}
    if len(sizes) != 1:
        raise ValueError(f"corpus languages are not aligned (sentence counts {sorted(sizes)})")
    (n_sentences,) = sizes
    rows = []
    for task in tasks:
        task_draws = draws(task, n, shots, n_sentences, seed)
        for lang in langs:
            rows += [make_row(packs[lang], task, i, d, shots) for i, d in enumerate(task_draws)]
    return rows


# ---------------------------------------------------------------- the paper's prompts, from the authors' files

AUTHORS_LANG = {"en": "en", "fr": "fr", "es": "es", "nl": "nl", "hu": "hu", "leet": "ls", "piglatin": "pl"}
AUTHORS_ICL = {"repeat": "repeat", "capitalize": "capslock"}
AUTHORS_IF = {"math": "math", "fillblank": "startblank"}
AUTHORS_SEED, AUTHORS_N, AUTHORS_SHOTS, AUTHORS_RANGE = 10, 100, 2, (4, 20)
AUTHORS_OPS: tuple[Callable[[int, int], int], ...] = (operator.add, operator.sub, operator.mul)  # randint(0, 2)


@dataclass(frozen=True)
class AuthorsPack:
    """The authors' pieces for one language: labels with their trailing space, ``{a} {op} {b}`` question."""

    instructions: dict[str, str]  # by our ICL task name, without the "\n\n" that follows
    input_label: str
    output_label: str
    question: str
    ops: tuple[str, str, str]  # plus, minus, times


AUTHORS_PACKS: dict[str, AuthorsPack] = {
    "en": AuthorsPack({"repeat": "Repeat the input.", "capitalize": "Capitalize every character."},
                      "Input: ", "Output: ", "What is {a} {op} {b}?", ("plus", "minus", "times")),
    "fr": AuthorsPack({"repeat": "Répétez la saisie.", "capitalize": "Mettez chaque caractère en majuscule."},
                      "Saisir: ", "Sortir: ", "Combien font {a} {op} {b}?", ("plus", "moins", "fois")),
    "es": AuthorsPack({"repeat": "Repita la entrada.", "capitalize": "Capitalizar cada carácter."},
                      "Entrada: ", "Salida: ", "¿Cuánto es {a} {op} {b}?", ("más", "menos", "veces")),
    "nl": AuthorsPack({"repeat": "Herhaal de invoer.", "capitalize": "Geef elk teken een hoofdletter."},
                      "Invoer: ", "Uitgang: ", "Wat is {a} {op} {b}?", ("plus", "min", "keer")),
    "hu": AuthorsPack({"repeat": "Ismételje meg a bevitelt.", "capitalize": "Minden karaktert nagybetűvel írj."},
                      "Bemenet: ", "Kimenet: ", "Mi az a {a} {op} {b}?", ("plusz", "mínusz", "alkalommal")),
    "leet": AuthorsPack({"repeat": "R3p347 7h3 1npu7.", "capitalize": "C4p174l1z3 3v3rY Ch4r4c73R."},
                        "1npu7: ", "0u7pu7: ", "Wh47 15 {a} {op} {b}?", ("Plu5", "M1nu5", "71m35")),
    "piglatin": AuthorsPack({"repeat": "Epeatray ethay inputyay.", "capitalize": "Apitalizecay everyay aracterchay."},
                            "Inputyay: ", "Outputyay: ", "Atwhay {a} {op} {b}?", ("usplay", "inusmay", "imestay")),
}
AUTHORS_LAYOUTS = ("{dir}", "{dir}/sentences", "{dir}/icl_vs_if/sentences")


def authors_sentence_dir(folder: str | Path) -> Path:
    """The folder holding ``random_sentences_<lang>.txt``: ``folder`` itself, its ``sentences/`` (the project's
    ``shared/authors``) or its ``icl_vs_if/sentences/`` (a clone of the authors' repository)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected the authors' sentence files "
                                f"random_sentences_<lang>.txt, or a clone of kothasuhas/understanding-forgetting)")
    for layout in AUTHORS_LAYOUTS:
        d = Path(layout.format(dir=folder))
        if any(d.glob("random_sentences_*.txt")):
            return d
    raise FileNotFoundError(f"{folder}: no random_sentences_<lang>.txt here, in sentences/ or in icl_vs_if/sentences/")


def read_authors_sentences(folder: str | Path, langs: Sequence[str] | str | None = None) -> dict[str, list[str]]:
    """Each language's sentences as the authors read them (``open(..., encoding='utf-8')``, every line
    ``strip('\n')``); errors (``ValueError``/``FileNotFoundError``, one line) for a missing, empty, non-UTF-8 or
    too short file, an empty line, or files of different lengths (they must be aligned)."""
    langs = parse_list(langs, LANGS, "language")
    d = authors_sentence_dir(folder)
    paths = {lang: d / f"random_sentences_{AUTHORS_LANG[lang]}.txt" for lang in langs}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: missing {', '.join(missing)}")
    out: dict[str, list[str]] = {}
    for lang, path in paths.items():
        with io.StringIO(read_text(path, bom=False), newline=None) as f:  # text mode: universal newlines
            lines = [line.strip("\n") for line in f]
        if not lines:
            raise ValueError(f"{path}: empty file")
        empty = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
        if empty is not None:
            raise ValueError(f"{path}:{empty}: empty line")
        if len(lines) < AUTHORS_SHOTS + 1:
            raise ValueError(f"{path}: {len(lines)} sentence(s); a prompt needs {AUTHORS_SHOTS + 1}")
        out[lang] = lines
    sizes = {lang: len(lines) for lang, lines in out.items()}
    if len(set(sizes.values())) > 1:
        counts = ", ".join(f"{AUTHORS_LANG[lang]} {n}" for lang, n in sizes.items())
        raise ValueError(f"{d}: sentence files are not aligned (lines: {counts})")
    return out


def authors_prompt(pack: AuthorsPack, icl_task: str, exemplars: Sequence[str], query: str) -> str:
    """The authors' layout: instruction, blank line, ``<in><s>\n<out><task(s)>`` blocks joined by blank lines,
    blank line, ``<in><query>\n`` and the output label without its trailing space."""
    fn = ICL_TASKS[icl_task]
    shots = "\n\n".join(f"{pack.input_label}{s}\n{pack.output_label}{fn(s)}" for s in exemplars)
    return (f"{pack.instructions[icl_task]}\n\n{shots}"
            f"\n\n{pack.input_label}{query}\n{pack.output_label[:-1]}")


def authors_cell(lang: str, task: str, sentences: Sequence[str]) -> list[dict]:
    """The 100 prompts of one (task, language), drawn as the authors did (the seed reset for every cell)."""
    icl_task, if_task = task.split("-")
    fn, pack = ICL_TASKS[icl_task], AUTHORS_PACKS[lang]
    rng = random.Random(AUTHORS_SEED)  # = random.seed(10) on the module's generator
    rows = []
    for i in range(AUTHORS_N):
        *exemplars, query = rng.sample(list(sentences), AUTHORS_SHOTS + 1)
        if if_task == "math":
            a, b, op = rng.randint(*AUTHORS_RANGE), rng.randint(*AUTHORS_RANGE), rng.randint(0, 2)
            query = pack.question.format(a=a, b=b, op=pack.ops[op])
            icl_answer, if_answer = fn(query.split(" ")[0]), fn(str(AUTHORS_OPS[op](a, b)))
        else:
            first, *rest = query.split(" ")
            blank = "_" * len(first)
            query = " ".join([blank, *rest])
            icl_answer, if_answer = fn(blank), fn(first)
        rows.append({"id": f"{task}-{lang}-{i:04d}", "icl_task": icl_task, "if_task": if_task, "lang": lang,
                     "shots": AUTHORS_SHOTS, "prompt": authors_prompt(pack, icl_task, exemplars, query),
                     "icl_answer": icl_answer, "if_answer": if_answer})
    return rows


def build_authors_dataset(folder: str | Path, langs: Sequence[str] | str | None = None,
                          tasks: Sequence[str] | str | None = None) -> list[dict]:
    """The paper's prompts (4 tasks × 7 languages × 100 = 2,800 by default) from the authors' sentence files in
    ``folder`` (see :func:`authors_sentence_dir`), byte for byte; task-major then language. ``langs``/``tasks``
    select cells; a cell is the same whatever else is selected."""
    tasks = parse_list(tasks, TASKS, "task")
    sentences = read_authors_sentences(folder, langs)
    return [row for task in tasks for lang in sentences for row in authors_cell(lang, task, sentences[lang])]


def authors_config(row: dict) -> str:
    """The row's ``config`` in the authors' CSVs, e.g. ``capslock-startblank-instr-input-ls-2shot``."""
    return (f"{AUTHORS_ICL[row['icl_task']]}-{AUTHORS_IF[row['if_task']]}-instr-input-"
            f"{AUTHORS_LANG[row['lang']]}-{row['shots']}shot")


def write_dataset(rows: Iterable[dict], path: str | Path) -> Path:
    """Write rows as JSONL (UTF-8, one object a line) atomically."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def load_dataset(path: str | Path) -> list[dict]:
    """Read and check a prompts file; errors (``ValueError``) name the file and line (malformed JSON, missing or
    bad field) or, for a file that is not UTF-8, the first bad byte and its offset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompts file")
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for row, where in jsonl_objects(path):
        for field in FIELDS:
            if field not in row:
                raise ValueError(f"{where}: missing field {field!r}")
        for field in ("id", "lang", "prompt", "icl_answer", "if_answer"):
            if not isinstance(row[field], str) or (field != "prompt" and not row[field]):
                raise ValueError(f"{where}: field {field!r} must be a non-empty string")
        if row["icl_task"] not in ICL_TASKS:
            raise ValueError(f"{where}: unknown icl_task {row['icl_task']!r}; valid: {', '.join(ICL_TASKS)}")
        if row["if_task"] not in IF_TASKS:
            raise ValueError(f"{where}: unknown if_task {row['if_task']!r}; valid: {', '.join(IF_TASKS)}")
        if row["id"] in seen:
            raise ValueError(f"{where}: duplicate id {row['id']!r} (first on line {seen[row['id']]})")
        seen[row["id"]] = where.rsplit(":", 1)[1]
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no prompts")
    return rows
