"""Translation as a conjugate transform, through pluggable :class:`Translator` backends.

A translator maps a batch of texts from one language to another: ``translate(texts, src, tgt) -> list[str]``,
languages as ISO 639-1 codes (``en``, ``fr``, ``hu``, ...). Backends are chosen with :func:`get_translator`:

- ``table:DIR`` — :class:`TableTranslator`, here: pre-translated text, one ``<lang>.txt`` per language aligned
  line by line (``table`` alone: the project's own corpus in ``conjugate/data/icl/sentences``). Exact lookups,
  no model; a line missing from the table is an error naming it.
- ``hf:<model id or path>`` and ``llm:<backend spec>`` — translation by a model (a Hugging Face seq2seq model,
  or any language-model backend with a translation prompt): :mod:`conjugate.lm.translators`, which registers
  them (:func:`register_translator`) when imported, so that this package depends on no model code.

Texts are translated line by line (blank lines and the whitespace around each line are kept; repeated lines
are translated once), so a multi-line prompt keeps its layout. The ``translate:<lang>`` transform wraps a
translator: apply = translate from English (or ``src``) into ``<lang>``, invert = translate back. Translation
is lossy, so ``exact`` is False.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .base import Transform, TransformError, register

LANGUAGE_NAMES = {
    "en": "English", "fr": "French", "es": "Spanish", "nl": "Dutch", "hu": "Hungarian", "de": "German",
    "it": "Italian", "pt": "Portuguese", "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ru": "Russian",
    "sw": "Swahili", "ml": "Malayalam", "ar": "Arabic", "hi": "Hindi", "pl": "Polish", "tr": "Turkish",
}


class TranslationError(TransformError):
    """A text could not be translated; the message names the text, languages and translator."""


@runtime_checkable
class Translator(Protocol):
    """What the translate transform (and the harmful-content study) needs."""

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        """``texts`` translated from ``src`` into ``tgt``, same order and length."""
        ...


def language_name(code: str) -> str:
    """``"fr"`` → ``"French"``; unknown codes come back unchanged."""
    return LANGUAGE_NAMES.get(code, code)


def by_lines(texts: Sequence[str], translate_lines: Callable[[list[str]], list[str]]) -> list[str]:
    """Translate every distinct non-blank line of ``texts`` with one call, then rebuild each text.

    Each line's surrounding whitespace and the blank lines stay as they were.
    """
    split = [t.split("\n") for t in texts]
    unique = list(dict.fromkeys(line.strip() for lines in split for line in lines if line.strip()))
    done = translate_lines(unique) if unique else []
    if len(done) != len(unique):
        raise TranslationError(f"translator returned {len(done)} lines for {len(unique)}")
    table = dict(zip(unique, done, strict=True))
    out = []
    for lines in split:
        rebuilt = []
        for line in lines:
            core = line.strip()
            if not core:
                rebuilt.append(line)
                continue
            start = line.index(core)
            rebuilt.append(line[:start] + table[core] + line[start + len(core):])
        out.append("\n".join(rebuilt))
    return out


class TableTranslator:
    """Lookups in aligned pre-translated text: line ``i`` of every language is the same sentence."""

    def __init__(self, table: Mapping[str, Sequence[str]], where: str = "table"):
        if not table:
            raise TranslationError(f"{where}: no languages")
        counts = {lang: len(lines) for lang, lines in table.items()}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{lang}: {n}" for lang, n in counts.items())
            raise TranslationError(f"{where}: languages are not aligned, line counts differ ({detail})")
        self.name = f"table:{where}"
        self.where = where
        self.lines = {lang: [line.strip() for line in lines] for lang, lines in table.items()}
        self.index: dict[str, dict[str, int]] = {}
        for lang, lines in self.lines.items():
            idx: dict[str, int] = {}
            for i, line in enumerate(lines):
                if line:
                    idx.setdefault(line, i)
            self.index[lang] = idx

    @classmethod
    def from_dir(cls, directory: str | Path) -> TableTranslator:
        """Read ``<lang>.txt`` files (UTF-8, one sentence a line) from ``directory``."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TranslationError(f"translation table {directory}: not a folder")
        files = sorted(directory.glob("*.txt"))
        if not files:
            raise TranslationError(f"translation table {directory}: no <lang>.txt files")
        table = {f.stem: f.read_text(encoding="utf-8").splitlines() for f in files}
        counts = {f.name: len(table[f.stem]) for f in files}
        if len(set(counts.values())) > 1:
            first = files[0].name
            bad = [f"{name} has {n}" for name, n in counts.items() if n != counts[first]]
            raise TranslationError(f"translation table {directory}: files are not aligned: {first} has "
                                   f"{counts[first]} lines but {', '.join(bad)}")
        return cls(table, where=str(directory))

    @classmethod
    def builtin(cls) -> TableTranslator:
        """The project's own multilingual corpus (``conjugate.data``)."""
        from .. import data

        return cls({lang: data.sentences(lang) for lang in data.LANGUAGES}, where="built-in corpus")

    @property
    def languages(self) -> list[str]:
        return sorted(self.lines)

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        for lang in (src, tgt):
            if lang not in self.lines:
                raise TranslationError(f"{self.name}: no language {lang!r}; it has {', '.join(self.languages)}")
        if src == tgt:
            return list(texts)

        def lookup(lines: list[str]) -> list[str]:
            out = []
            for line in lines:
                i = self.index[src].get(line)
                if i is None:
                    raise TranslationError(f"{self.name}: no {src}→{tgt} translation of {line[:60]!r}")
                out.append(self.lines[tgt][i])
            return out

        return by_lines(texts, lookup)


TranslatorFactory = Callable[..., Translator]  # (the spec after "<kind>:", **options) -> a translator
_TRANSLATORS: dict[str, tuple[TranslatorFactory, str]] = {}


def register_translator(kind: str, factory: TranslatorFactory, usage: str) -> None:
    """Make ``<kind>:<rest>`` a translator spec of :func:`get_translator` (and of ``translate:<lang>@<spec>``):
    ``factory(rest, **options)`` builds the translator. :mod:`conjugate.lm.translators` registers the
    model-backed kinds, ``hf`` and ``llm``, when it is imported."""
    _TRANSLATORS[kind] = (factory, usage)


def translator_specs() -> tuple[str, ...]:
    """Every translator spec :func:`get_translator` knows now, as usage strings."""
    return ("table", "table:<dir>", *(usage for _, usage in _TRANSLATORS.values()))


def get_translator(spec: str, **options: Any) -> Translator:
    """``table`` | ``table:DIR`` | a registered kind (:func:`register_translator`: ``hf:<model>`` and
    ``llm:<backend spec>`` once :mod:`conjugate.lm.translators` is imported) → a translator.

    ``options`` go to the backend's constructor (e.g. ``batch_size`` for ``hf:``, ``max_new_tokens``).
    """
    kind, sep, rest = spec.strip().partition(":")
    if kind == "table":
        return TableTranslator.builtin() if not rest or rest == "builtin" else TableTranslator.from_dir(rest)
    if kind in _TRANSLATORS and rest:
        return _TRANSLATORS[kind][0](rest, **options)
    hint = "" if _TRANSLATORS else " (hf: and llm: need conjugate.lm.translators imported)"
    raise TranslationError(f"unknown translator {spec!r}; use one of {', '.join(translator_specs())}{hint}")


class TranslateTransform(Transform):
    """Translate from ``src`` into ``tgt``; the inverse translates back (lossy)."""

    exact = False
    domain = "text the translator can translate; the inverse is a back-translation, not an exact inverse"

    def __init__(self, tgt: str, translator: Translator | None = None, src: str = "en"):
        self.tgt, self.src = tgt, src
        self.translator = translator if translator is not None else TableTranslator.builtin()
        self.name = f"translate:{tgt}"

    def apply(self, text: str) -> str:
        return self.apply_many([text])[0]

    def invert(self, text: str) -> str:
        return self.invert_many([text])[0]

    def apply_many(self, texts: Sequence[str]) -> list[str]:
        return self.translator.translate(list(texts), self.src, self.tgt)

    def invert_many(self, texts: Sequence[str]) -> list[str]:
        return self.translator.translate(list(texts), self.tgt, self.src)


def _make(arg: str | None, translator: Translator | None = None, src: str = "en", **_: Any) -> TranslateTransform:
    """``translate:<lang>`` or ``translate:<lang>@<translator spec>``."""
    tgt, _, tspec = (arg or "").partition("@")
    if tspec:
        translator = get_translator(tspec)
    return TranslateTransform(tgt.strip(), translator, src=src)


register("translate", _make, usage="translate:<lang>[@<translator>]", needs_arg=True)
