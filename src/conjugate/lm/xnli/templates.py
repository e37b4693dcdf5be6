"""Prompt templates and label words of the XNLI study, per language, as data (SPEC §2c).

Each entry of :data:`TEMPLATES`:

- ``prompt`` — a ``str.format`` template with ``{premise}`` and ``{hypothesis}``; the question phrase ("True,
  False or Neither?") and the "Question"/"Answer" words are in the language of the item;
- ``labels`` — the three label words, **indexed by the XNLI label id**: 0 entailment → "True", 1 neutral →
  "Neither", 2 contradiction → "False";
- ``sep`` — what goes between the prompt's final "Answer:" and a label word when it is scored as a continuation
  (a space; nothing for Chinese, which writes no spaces);
- ``name`` and ``source`` — ``"paper"``: verbatim from the authors' evaluation script
  (``code_xnli/xnli.py`` of kothasuhas/understanding-forgetting; note its "Ni"/"Weder" for *neither*, the
  missing Spanish "¿" and the French "?" without the usual space, kept so results are comparable);
  ``"project"``: worded for this project in the same pattern (single-word labels, the natural word for
  "unknown"/"none of them" where a bare "neither" is not a word on its own).

Within a language the label words are prefix-free under case folding (no word is the beginning of another), so
"the output starts with label word w" names at most one label. XNLI has 15 languages; the ones listed here are
those we could word with confidence (ar, hi, sw, th, ur, vi are left out rather than guessed).
"""

from __future__ import annotations

from typing import Any

LABEL_NAMES = ("entailment", "neutral", "contradiction")

TEMPLATES: dict[str, dict[str, Any]] = {
    "en": {"name": "English", "source": "paper",
           "prompt": "{premise}\nQuestion: {hypothesis} True, False or Neither?\nAnswer:",
           "labels": ("True", "Neither", "False"), "sep": " "},
    "fr": {"name": "French", "source": "paper",
           "prompt": "{premise}\nQuestion: {hypothesis} Vrai, Faux ou Ni?\nRéponse:",
           "labels": ("Vrai", "Ni", "Faux"), "sep": " "},
    "es": {"name": "Spanish", "source": "paper",
           "prompt": "{premise}\nPregunta: {hypothesis} Verdadero, Falso o Ni?\nRespuesta:",
           "labels": ("Verdadero", "Ni", "Falso"), "sep": " "},
    "de": {"name": "German", "source": "paper",
           "prompt": "{premise}\nFrage: {hypothesis} Wahr, Falsch oder Weder?\nAntwort:",
           "labels": ("Wahr", "Weder", "Falsch"), "sep": " "},
    "bg": {"name": "Bulgarian", "source": "project",
           "prompt": "{premise}\nВъпрос: {hypothesis} Вярно, Невярно или Неизвестно?\nОтговор:",
           "labels": ("Вярно", "Неизвестно", "Невярно"), "sep": " "},
    "el": {"name": "Greek", "source": "project",
           "prompt": "{premise}\nΕρώτηση: {hypothesis} Αληθές, Ψευδές ή Κανένα;\nΑπάντηση:",
           "labels": ("Αληθές", "Κανένα", "Ψευδές"), "sep": " "},
    "ru": {"name": "Russian", "source": "project",
           "prompt": "{premise}\nВопрос: {hypothesis} Верно, Неверно или Неизвестно?\nОтвет:",
           "labels": ("Верно", "Неизвестно", "Неверно"), "sep": " "},
    "tr": {"name": "Turkish", "source": "project",
           "prompt": "{premise}\nSoru: {hypothesis} Doğru, Yanlış ya da Hiçbiri?\nCevap:",
           "labels": ("Doğru", "Hiçbiri", "Yanlış"), "sep": " "},
    "zh": {"name": "Chinese", "source": "project",
           "prompt": "{premise}\n问题：{hypothesis} 正确、错误还是都不是？\n答案：",
           "labels": ("正确", "都不是", "错误"), "sep": ""},
}

LANGS = tuple(TEMPLATES)
PAPER_LANGS = ("en", "fr", "es", "de")


class XNLIInputError(ValueError):
    """Bad user input (a language, a data file, an option); the message names the file, line and field."""


def check_lang(lang: str) -> dict[str, Any]:
    """The template of ``lang``; :class:`XNLIInputError` listing the supported codes otherwise."""
    if lang not in TEMPLATES:
        raise XNLIInputError(f"unknown language {lang!r}; supported: {', '.join(LANGS)}")
    return TEMPLATES[lang]


def parse_langs(langs: str | list[str] | tuple[str, ...]) -> list[str]:
    """Language codes from ``"en,fr"`` or a list, each checked, no duplicates, order kept."""
    codes = [c.strip() for c in (langs.split(",") if isinstance(langs, str) else langs) if c.strip()]
    if not codes:
        raise XNLIInputError(f"no languages given; choose from {', '.join(LANGS)}")
    for c in codes:
        check_lang(c)
    if len(set(codes)) != len(codes):
        raise XNLIInputError(f"a language is listed twice: {','.join(codes)}")
    return codes


def make_prompt(lang: str, premise: str, hypothesis: str) -> str:
    """The zero-shot prompt of one item (no trailing space: the label's separator belongs to the answer)."""
    return check_lang(lang)["prompt"].format(premise=premise.strip(), hypothesis=hypothesis.strip())


def label_words(lang: str) -> tuple[str, str, str]:
    """The three label words of ``lang``, indexed by XNLI label id."""
    return tuple(check_lang(lang)["labels"])


def continuations(lang: str) -> tuple[str, str, str]:
    """The three continuations scored in log-likelihood mode (``" True"``, ``" Neither"``, ``" False"``)."""
    t = check_lang(lang)
    return tuple(t["sep"] + w for w in t["labels"])
