"""The miniature's synthetic multilingual corpus, its held-out splits and its conjugate maps.

Every language is a deterministic rewrite of the project's English pieces (:mod:`conjugate.data`: sentences,
instructions, ``Input``/``Output`` labels, math templates), so an ``L`` prompt is exactly ``s_L`` of the English
prompt and an ``L`` answer maps back with ``s_L⁻¹``:

- ``en`` — English itself;
- ``leet`` and ``piglatin`` — :mod:`conjugate.transforms` applied piece by piece, as the ICL-vs-IF study does
  (:func:`conjugate.lm.icl_vs_if.build.prompt_pack`);
- made-up languages (``vel``, ``zun``) — a word-for-word lexicon (a stand-in for translation) from every English
  word to a pronounceable pseudo-word, generated deterministically from the word itself (:class:`Lexicon`).

Two kinds of documents, both in the ICL-vs-IF prompt format (instruction, exemplars ``Input: x`` /
``Output: y`` separated by blank lines, then the query and its answer):

- **in-context documents** — an ICL task (``repeat`` or ``capitalize``) shown by exemplars; the query is a plain
  sentence or, as bait, a math question or a fill-in-the-blank sentence, always answered by the ICL rule;
- **question-answer documents** — a math question (answered with the number) or a fill-in-the-blank sentence
  (answered with the missing word), after an instruction and zero or more answered exemplars.

Sentences and arithmetic problems are split once (``split_seed``) into train / val / test. Training documents
use only training sentences and problems, so no evaluation query ever appears in training text. Evaluation
prompts are built by the ICL-vs-IF study's own :func:`~conjugate.lm.icl_vs_if.build.make_row` from held-out
sentences and problems.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from ..lm.icl_vs_if.build import ICL_TASKS, OPS, TASKS, Draw, PromptPack, make_row, prompt_pack, transform_template
from ..transforms import Transform, get_transform
from ..transforms.piglatin import case_style

QA_INSTRUCTIONS = {"math": "Answer the question.", "fillblank": "Fill in the blank."}
QUERY_KINDS = ("sentence", "math", "fillblank")
NUMBERS = range(4, 21)  # the ICL-vs-IF study's NUMBER_RANGE, inclusive
WORD = re.compile(r"[^\W\d_]+")  # a run of letters (Unicode), e.g. "café"


# ---- conjugate maps ------------------------------------------------------------------------------------

class Identity(Transform):
    """English: the prompt as it is."""

    name = "identity"
    exact = True

    def apply(self, text: str) -> str:
        return text

    def invert(self, text: str) -> str:
        return text


class AnswerLeet(Transform):
    """Leetspeak whose inverse suits answers: a run of digits alone is a number and stays a number (``84``), and a
    word written in capitals comes back in capitals (``WH47`` → ``WHAT``). Plain
    :class:`~conjugate.transforms.leetspeak.Leetspeak` would give ``8a`` and ``WHat``."""

    name = "leetspeak-answers"
    exact = False
    domain = "words without a capital A E I O S T at the start (a Capitalised 'The' comes back as 'the')"

    def __init__(self) -> None:
        self.leet = get_transform("leetspeak")

    def apply(self, text: str) -> str:
        return self.leet.apply(text)

    def invert(self, text: str) -> str:
        def word(m: re.Match) -> str:
            tok = m.group()
            if tok.isdigit():
                return tok
            plain = self.leet.invert(tok)
            letters = [c for c in tok if c.isalpha()]
            return plain.upper() if letters and all(c.isupper() for c in letters) else plain

        return re.sub(r"[A-Za-z0-9]+", word, text)


@dataclass(frozen=True)
class Phonology:
    """The sounds a made-up language builds its pseudo-words from."""

    onsets: str
    vowels: str
    codas: str


MADE_UP: dict[str, Phonology] = {
    "vel": Phonology(onsets="bdfgklmnprstvz", vowels="aeiou", codas="lnrs"),
    "zun": Phonology(onsets="bghjkmpwxz", vowels="aouy", codas="kmx"),
}


class Lexicon(Transform):
    """Word-for-word "translation" into a made-up language: each English word (case-folded) has one pseudo-word,
    which takes the word's case (``What`` → ``Dazu``, ``WHAT`` → ``DAZU``). Non-words (spaces, punctuation,
    digits, underscores) pass through. Exact on texts made of vocabulary words in lower, Title or UPPER case."""

    exact = True
    domain = "texts whose words are in the lexicon, each lower case, Capitalised or ALL CAPS"

    def __init__(self, name: str, table: dict[str, str]):
        self.name = name
        self.table = dict(table)
        self.inverse = {v: k for k, v in table.items()}
        if len(self.inverse) != len(self.table):
            raise ValueError(f"lexicon {name!r} is not one-to-one")

    @staticmethod
    def _map(word: str, table: dict[str, str]) -> str:
        out = table.get(word.lower())
        if out is None:
            return word
        style = case_style(word)
        if style == "upper":
            return out.upper()
        return out.capitalize() if style == "title" else out

    def apply(self, text: str) -> str:
        return WORD.sub(lambda m: self._map(m.group(), self.table), text)

    def invert(self, text: str) -> str:
        return WORD.sub(lambda m: self._map(m.group(), self.inverse), text)

    def in_domain(self, text: str) -> bool:
        return all(m.group().lower() in self.table and case_style(m.group()) != "mixed" for m in WORD.finditer(text))


def english_vocabulary() -> list[str]:
    """Every (case-folded) word of the English pieces the corpus uses, sorted."""
    en = prompt_pack("en")
    texts = [*en.sentences, *en.instructions.values(), en.input_label, en.output_label, *en.math.values(),
             *QA_INSTRUCTIONS.values()]
    return sorted({m.group().lower() for t in texts for m in WORD.finditer(t)})


def pseudo_word(english: str, phon: Phonology, rng: random.Random) -> str:
    """A pronounceable word of about the English word's length: (onset) vowel (coda) syllables. A one-letter
    word gets a one-letter word (a vowel), so capitals map to capitals whether it reads as ``A`` or ``a``."""
    if len(english) == 1:
        return rng.choice(phon.vowels)
    syllables = max(1, min(4, round(len(english) / 2.6) + rng.choice((0, 0, 1))))
    parts = []
    for _ in range(syllables):
        parts.append(rng.choice(phon.onsets) + rng.choice(phon.vowels))
        if rng.random() < 0.25:
            parts.append(rng.choice(phon.codas))
    return "".join(parts)


@cache
def lexicon(name: str) -> Lexicon:
    """The lexicon of made-up language ``name``: a function of the English vocabulary and the name only."""
    if name not in MADE_UP:
        raise ValueError(f"unknown made-up language {name!r}; valid: {', '.join(MADE_UP)}")
    vocab = english_vocabulary()
    taken = set(vocab)  # never produce a real (corpus) English word: answers map back unambiguously
    table: dict[str, str] = {}
    for word in vocab:
        rng = random.Random(f"minilm-lexicon:{name}:{word}")
        while (pw := pseudo_word(word, MADE_UP[name], rng)) in taken:
            pass
        taken.add(pw)
        table[word] = pw
    return Lexicon(name, table)


LANGUAGES = ("en", "leet", "piglatin", *MADE_UP)


def conjugate_map(lang: str) -> Transform:
    """``s_L``: English text → language ``lang``, with the inverse used to map answers back."""
    if lang == "en":
        return Identity()
    if lang == "leet":
        return AnswerLeet()
    if lang == "piglatin":
        return get_transform("piglatin")
    if lang in MADE_UP:
        return lexicon(lang)
    raise ValueError(f"unknown language {lang!r}; valid languages: {', '.join(LANGUAGES)}")


@dataclass(frozen=True)
class Language:
    """A language's prompt pieces: the ICL-vs-IF :class:`PromptPack` plus the question-answer instructions."""

    code: str
    pack: PromptPack
    qa_instructions: dict[str, str]


@cache
def language(lang: str) -> Language:
    """The pieces of ``lang``, each ``s_L`` of the English piece (numbers stay digits)."""
    t = conjugate_map(lang)
    if lang in ("en", "leet", "piglatin"):
        pack = prompt_pack(lang)  # the ICL-vs-IF study's own packs
    else:
        en = prompt_pack("en")
        pack = PromptPack(lang=lang, instructions={k: t.apply(v) for k, v in en.instructions.items()},
                          input_label=t.apply(en.input_label), output_label=t.apply(en.output_label),
                          math={k: transform_template(v, t.apply) for k, v in en.math.items()},
                          sentences=tuple(t.apply(s) for s in en.sentences))
    return Language(lang, pack, {k: t.apply(v) for k, v in QA_INSTRUCTIONS.items()})


# ---- splits --------------------------------------------------------------------------------------------

Problem = tuple[str, int, int]  # (op, a, b), a >= b for minus


def all_problems() -> list[Problem]:
    """Every arithmetic question the ICL-vs-IF templates can ask (numbers 4..20, the larger first for minus)."""
    return [(op, a, b) for op in sorted(OPS) for a in NUMBERS for b in NUMBERS if op != "minus" or a >= b]


@dataclass(frozen=True)
class Splits:
    """Sentence indices and arithmetic problems of each split (``train``, ``val``, ``test``), disjoint."""

    sentences: dict[str, tuple[int, ...]]
    problems: dict[str, tuple[Problem, ...]]


def make_splits(n_sentences: int, val_sentences: int, test_sentences: int, val_problems: float,
                test_problems: float, seed: int) -> Splits:
    """Shuffle once with ``seed`` and cut: the first ``test`` items are test, the next ``val`` validation."""
    if val_sentences + test_sentences + 4 > n_sentences:
        raise ValueError(f"{val_sentences} validation + {test_sentences} test sentences leave too few of "
                         f"{n_sentences} for training")
    rng = random.Random(f"minilm-splits:{seed}")
    idx = list(range(n_sentences))
    rng.shuffle(idx)
    probs = all_problems()
    rng.shuffle(probs)
    n_test, n_val = round(test_problems * len(probs)), round(val_problems * len(probs))
    cut_s = {"test": idx[:test_sentences], "val": idx[test_sentences:test_sentences + val_sentences],
             "train": idx[test_sentences + val_sentences:]}
    cut_p = {"test": probs[:n_test], "val": probs[n_test:n_test + n_val], "train": probs[n_test + n_val:]}
    return Splits({k: tuple(sorted(v)) for k, v in cut_s.items()}, {k: tuple(sorted(v)) for k, v in cut_p.items()})


# ---- documents -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Doc:
    """A training document; ``answer_start`` is where its final answer (after the last ``Output:``) begins."""

    text: str
    answer_start: int
    kind: str  # icl | qa
    lang: str


@dataclass(frozen=True)
class CorpusSpec:
    """How documents are drawn (see :class:`~conjugate.minilm.config.MiniLMConfig` for the meaning of each)."""

    languages: tuple[str, ...]
    p_icl: float
    p_question_query: float
    p_no_instruction: float
    max_shots: int
    max_qa_shots: int


def math_question(lang: Language, prob: Problem) -> tuple[str, str]:
    op, a, b = prob
    return lang.pack.math[op].format(a=a, b=b), str(OPS[op](a, b))


def blank_question(lang: Language, sentence_index: int) -> tuple[str, str]:
    """(sentence with its first word replaced by as many underscores, the missing word)."""
    first, *rest = lang.pack.sentences[sentence_index].split(" ")
    return " ".join(["_" * len(first), *rest]), first


def _assemble(instruction: str | None, lang: Language, pairs: Sequence[tuple[str, str]], kind: str) -> Doc:
    """``instruction`` (optional), then ``Input: q`` / ``Output: a`` blocks; the last answer is the target."""
    p = lang.pack
    blocks = [instruction] if instruction else []
    blocks += [f"{p.input_label}: {q}\n{p.output_label}: {a}" for q, a in pairs[:-1]]
    head = "\n\n".join([*blocks, f"{p.input_label}: {pairs[-1][0]}\n{p.output_label}:"])
    return Doc(f"{head} {pairs[-1][1]}", len(head), kind, lang.code)


def icl_doc(rng: random.Random, lang: Language, sentences: Sequence[int], problems: Sequence[Problem],
            spec: CorpusSpec, instruction: bool = True) -> Doc:
    """Exemplars of repeat or capitalize; the query is a sentence, a math question or a blanked sentence."""
    task = rng.choice(sorted(ICL_TASKS))
    fn = ICL_TASKS[task]
    shots = rng.randint(1, spec.max_shots)
    picked = rng.sample(list(sentences), shots + 1)
    pairs = [(lang.pack.sentences[j], fn(lang.pack.sentences[j])) for j in picked[:-1]]
    kind = rng.choice(QUERY_KINDS[1:]) if rng.random() < spec.p_question_query else "sentence"
    if kind == "math":
        query = math_question(lang, rng.choice(problems))[0]
    elif kind == "fillblank":
        query = blank_question(lang, picked[-1])[0]
    else:
        query = lang.pack.sentences[picked[-1]]
    return _assemble(lang.pack.instructions[task] if instruction else None, lang, [*pairs, (query, fn(query))],
                     "icl")


def qa_doc(rng: random.Random, lang: Language, sentences: Sequence[int], problems: Sequence[Problem],
           spec: CorpusSpec, instruction: bool = True) -> Doc:
    """Answered math questions or fill-in-the-blank sentences (the instruction-following kind of text)."""
    qtype = rng.choice(("math", "fillblank"))
    shots = rng.randint(0, spec.max_qa_shots)
    if qtype == "math":
        pairs = [math_question(lang, rng.choice(problems)) for _ in range(shots + 1)]
    else:
        pairs = [blank_question(lang, j) for j in rng.sample(list(sentences), shots + 1)]
    return _assemble(lang.qa_instructions[qtype] if instruction else None, lang, pairs, "qa")


def pretrain_doc(rng: random.Random, splits: Splits, spec: CorpusSpec) -> Doc:
    """One pretraining document: a random language, ICL (``p_icl``) or question-answer, training split only."""
    lang = language(rng.choice(spec.languages))
    make = icl_doc if rng.random() < spec.p_icl else qa_doc
    return make(rng, lang, splits.sentences["train"], splits.problems["train"], spec,
                instruction=rng.random() >= spec.p_no_instruction)


def tune_doc(rng: random.Random, splits: Splits, spec: CorpusSpec) -> Doc:
    """One instruction-tuning document: English question-answer data (training split), with its instruction."""
    return qa_doc(rng, language("en"), splits.sentences["train"], splits.problems["train"], spec)


# ---- evaluation prompts ----------------------------------------------------------------------------------

def eval_draws(task: str, n: int, shots: int, splits: Splits, split: str, seed: int) -> list[Draw]:
    """``n`` draws for an ICL-vs-IF task from one held-out split, the same for every language."""
    rng = random.Random(f"minilm-eval:{seed}:{split}:{task}")
    pool = list(splits.sentences[split])
    if shots + 1 > len(pool):
        raise ValueError(f"shots={shots} needs {shots + 1} {split} sentences; the split has {len(pool)}")
    out = []
    for _ in range(n):
        op, a, b = rng.choice(splits.problems[split])
        out.append(Draw(tuple(rng.sample(pool, shots + 1)), op, a, b))
    return out


def eval_rows(langs: Sequence[str], n: int, shots: int, splits: Splits, split: str, seed: int) -> list[dict]:
    """ICL-vs-IF prompts (rows of :func:`~conjugate.lm.icl_vs_if.build.make_row`) for every task × language,
    paired across languages; ids carry the split (``val:repeat-math-en-0003``)."""
    rows = []
    for task in TASKS:
        draws = eval_draws(task, n, shots, splits, split, seed)
        for lang in langs:
            pack = language(lang).pack
            for i, d in enumerate(draws):
                row = make_row(pack, task, i, d, shots)
                rows.append({**row, "id": f"{split}:{row['id']}", "split": split})
    return rows


def conjugate_rows(rows: Sequence[dict]) -> list[dict]:
    """Conjugate prompting of the English rows: for every other language ``L`` of ``rows``, each English prompt
    mapped whole by ``s_L`` (``lang`` is ``L``; answers stay English: the output is to be mapped back with
    ``s_L⁻¹``). For math queries this is exactly the ``L`` prompt; for a blank it differs in one detail, the
    number of underscores (the English word's length, where the ``L`` prompt blanks the ``L`` word)."""
    langs = list(dict.fromkeys(r["lang"] for r in rows if r["lang"] != "en"))
    out = []
    for lang in langs:
        t = conjugate_map(lang)
        for r in rows:
            if r["lang"] == "en":
                out.append({**r, "id": r["id"].replace("-en-", f"-{lang}-", 1).replace(":", ":conj-", 1),
                            "lang": lang, "prompt": t.apply(r["prompt"])})
    return out


def qa_rows(langs: Sequence[str], n: int, shots: int, splits: Splits, split: str, seed: int) -> list[dict]:
    """Held-out question-answer prompts (with instruction and ``shots`` answered exemplars) per type × language:
    does a model answer questions, before and after tuning?"""
    rows = []
    for qtype in ("math", "fillblank"):
        rng = random.Random(f"minilm-qa:{seed}:{split}:{qtype}")
        items = []
        for _ in range(n):
            if qtype == "math":
                items.append([rng.choice(splits.problems[split]) for _ in range(shots + 1)])
            else:
                items.append(rng.sample(list(splits.sentences[split]), shots + 1))
        for lang in langs:
            L = language(lang)
            for i, item in enumerate(items):
                pairs = [math_question(L, j) if qtype == "math" else blank_question(L, j) for j in item]
                doc = _assemble(L.qa_instructions[qtype], L, pairs, "qa")
                rows.append({"id": f"{split}:qa-{qtype}-{lang}-{i:04d}", "split": split, "qtype": qtype,
                             "lang": lang, "prompt": doc.text[:doc.answer_start], "answer": pairs[-1][1]})
    return rows
