"""The project's multilingual corpus and language packs: alignment, completeness, plausibility checks."""

from __future__ import annotations

import string
import unicodedata
from importlib import resources

import pytest

from conjugate import data

LANGS = data.LANGUAGES
FOREIGN = [lang for lang in LANGS if lang != "en"]
# Letters (or, for Dutch, spellings) each language's text must use somewhere: a missing accent means a careless
# transcription.
EXPECTED_CHARS = {"fr": list("éèàçêôœ"), "es": list("ñáéíóú"), "nl": ["ij", "oe", "'s"], "hu": list("őűáéíóöüú")}


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    return {lang: data.sentences(lang) for lang in LANGS}


def test_files_are_aligned_and_large_enough(corpus) -> None:
    counts = {lang: len(lines) for lang, lines in corpus.items()}
    assert len(set(counts.values())) == 1, counts
    assert counts["en"] >= 150


def test_no_empty_padded_or_untranslated_lines(corpus) -> None:
    for lang in corpus:
        raw = (resources.files("conjugate") / "data" / "icl" / "sentences" / f"{lang}.txt").read_text("utf-8")
        assert raw.endswith("\n") and "\r" not in raw and "\t" not in raw
        for i, line in enumerate(raw.splitlines(), 1):
            assert line.strip(), f"{lang}.txt:{i} is empty"
            assert line == line.strip() and "  " not in line, f"{lang}.txt:{i} has stray spaces"
            assert unicodedata.is_normalized("NFC", line), f"{lang}.txt:{i} is not NFC"
            assert line[-1] in ".!?", f"{lang}.txt:{i} does not end a sentence"
    for lang in FOREIGN:
        same = [i for i, (en, tr) in enumerate(zip(corpus["en"], corpus[lang], strict=True), 1) if en == tr]
        assert not same, f"{lang}.txt lines identical to English: {same}"
        assert len(set(corpus[lang])) == len(corpus[lang]), f"{lang}.txt has duplicate lines"


def test_english_sentences_are_short_varied_and_plain(corpus) -> None:
    en = corpus["en"]
    assert len(set(en)) == len(en)
    for i, s in enumerate(en, 1):
        words = s.split()
        assert 5 <= len(words) <= 12, f"en.txt:{i}: {len(words)} words"
        assert s[0].isupper() and s[-1] == "."
        # no digits (they would collide with leetspeak) and no quotes/apostrophes (Pig Latin splits on them)
        assert not set(s) & set(string.digits + "'\"`“”‘’"), f"en.txt:{i}: {s!r}"
    first = [s.split()[0] for s in en]
    assert len(set(first)) >= 0.9 * len(first)


def test_each_language_uses_its_own_letters(corpus) -> None:
    for lang, chars in EXPECTED_CHARS.items():
        text = "".join(corpus[lang])
        missing = [c for c in chars if c not in text]
        assert not missing, f"{lang}: never uses {missing}"
    hu = "".join(corpus["hu"])
    assert not set(hu) & set("õûôÕÛÔ"), "Hungarian long vowels must be ő/ű, not õ/û/ô"
    assert {c for c in "".join(corpus["en"]) if not c.isascii()} <= {"é"}  # café


def test_translations_have_plausible_lengths(corpus) -> None:
    for lang in FOREIGN:
        for i, (en, tr) in enumerate(zip(corpus["en"], corpus[lang], strict=True), 1):
            ratio = len(tr) / len(en)
            assert 0.45 < ratio < 2.2, f"{lang}.txt:{i} length ratio {ratio:.2f}: {tr!r}"


def test_language_packs() -> None:
    first_words = {}
    for lang in LANGS:
        pack = data.language_pack(lang)
        assert pack["code"] == lang and pack["name"]
        assert set(pack["instructions"]) == {"repeat", "capitalize"}
        assert all(v.strip() and v[-1] == "." for v in pack["instructions"].values())
        assert set(pack["labels"]) == {"input", "output"} and pack["labels"]["input"] != pack["labels"]["output"]
        assert set(pack["math"]) == {"plus", "minus", "times"}
        qs = {op: t.format(a=7, b=12) for op, t in pack["math"].items()}
        assert all("7" in q and "12" in q and q.endswith("?") for q in qs.values())
        assert len({q.split(" ")[0] for q in qs.values()}) == 1, f"{lang}: math questions start differently"
        first_words[lang] = qs["times"].split(" ")[0]
        if lang != "en":
            en = data.language_pack("en")
            assert pack["instructions"] != en["instructions"] and pack["labels"] != en["labels"]
    assert first_words["en"] == "What" and len(set(first_words.values())) == len(LANGS)


def test_loader_errors_and_copies() -> None:
    with pytest.raises(ValueError, match="unknown language 'xx'; valid languages: en, fr, es, nl, hu"):
        data.sentences("xx")
    with pytest.raises(ValueError, match="valid languages"):
        data.language_pack("de")
    s = data.sentences("en")
    s.append("mutated")
    assert data.sentences("en")[-1] != "mutated"
    p = data.language_pack("fr")
    p["labels"]["input"] = "x"
    assert data.language_pack("fr")["labels"]["input"] == "Entrée"
