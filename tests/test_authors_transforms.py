"""The ``:authors`` variants of Leetspeak and Pig Latin: agreement with the paper's own sentence files (read from
``../shared/authors`` beside the repository, never copied), their rules on fixed examples, their declared
(lossy) inverses, the unchanged classic transforms, and the registry's parsing of variants."""

from __future__ import annotations

import difflib
import re
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conjugate.transforms import Compose, TransformError, available, get_transform
from conjugate.transforms.leetspeak import AuthorsLeetspeak, Leetspeak
from conjugate.transforms.piglatin import AuthorsPigLatin, PigLatin

AUTHORS = Path(__file__).resolve().parents[2] / "shared" / "authors"
SENTENCES = AUTHORS / "sentences"
needs_authors = pytest.mark.skipif(not SENTENCES.is_dir(), reason=f"the authors' sentence files are not at "
                                   f"{SENTENCES} (clone kothasuhas/understanding-forgetting beside the repository)")
ROOT = Path(__file__).resolve().parents[1]
OWN_FILES = ["src/conjugate/transforms/leetspeak.py", "src/conjugate/transforms/piglatin.py",
             "src/conjugate/transforms/base.py", "scripts/authors_transforms.py", "tests/test_authors_transforms.py"]
ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def read_lines(lang: str) -> list[str]:
    return (SENTENCES / f"random_sentences_{lang}.txt").read_text(encoding="utf-8").split("\n")


def agreement(ours: list[str], theirs: list[str]) -> float:
    """As in scripts/authors_transforms.py: per line, the characters of SequenceMatcher's matching blocks, summed
    over lines, over the summed length of the longer line of each pair."""
    assert len(ours) == len(theirs)
    matched = sum(m.size for a, b in zip(ours, theirs, strict=True)
                  for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return matched / sum(max(len(a), len(b)) for a, b in zip(ours, theirs, strict=True))


# ---------------------------------------------------------------- the authors' files

@needs_authors
@pytest.mark.parametrize(("spec", "lang"), [("leetspeak:authors", "ls"), ("piglatin:authors", "pl")])
def test_authors_variants_reproduce_the_authors_files(spec: str, lang: str) -> None:
    en, theirs = read_lines("en"), read_lines(lang)
    assert len(en) == len(theirs) == 500
    ours = get_transform(spec).apply_many(en)
    assert agreement(ours, theirs) >= 0.99
    # the classic forms differ from the tools the authors used (case and b→8; hyphens, apostrophes, final y)
    assert agreement(get_transform(spec.split(":")[0]).apply_many(en), theirs) < 0.99


@needs_authors
def test_no_authors_sentence_in_these_files() -> None:
    lines = {s for lang in ("en", "ls", "pl") for s in read_lines(lang) if len(s) > 20}
    for rel in OWN_FILES:
        text = (ROOT / rel).read_text(encoding="utf-8")
        assert not [s for s in lines if s in text], rel


def test_agreement_metric() -> None:
    assert agreement(["abc", "xy"], ["abc", "xy"]) == 1.0
    assert agreement(["abcd"], ["abXd"]) == 0.75
    assert agreement(["ab"], ["abcd"]) == 0.5


# ---------------------------------------------------------------- fixed examples

@pytest.mark.parametrize(("spec", "text", "expected"), [
    ("leetspeak:authors", "The bird sat on a post, oddly.", "7h3 81rD 547 0N 4 P057, 0ddlY."),
    ("leetspeak:authors", "I'm here... ok? a-b-c, NASA", "1'M H3r3... 0k? 4-8-c, N454"),
    ("leetspeak:authors", "Café  über\nDog.cat", "C4fé  ü83R\nD0G.C47"),
    ("piglatin:authors", "cat tent that Mum egg easy", "atcay ent-tay at-thay Um-may eggyay easyay"),
    ("piglatin:authors", "quiz my TV Mr. can't won’t", "uizqay ymay TV Mr. antcay ontway"),
    ("piglatin:authors", "What WHAT well-known thigh-high, yes!",
     "Atwhay ATWHAY ellway-ownknay ighthay-igh-hay, esyay!"),
    ("piglatin:authors", "y 42 é'a", "y 42 é'ayay"),
])
def test_authors_known_outputs(spec: str, text: str, expected: str) -> None:
    assert get_transform(spec).apply(text) == expected


@pytest.mark.parametrize(("spec", "text", "expected"), [
    ("leetspeak", "Repeat the input.", "R3p347 7h3 1npu7."),
    ("leetspeak", "Café ÅSA bob", "C4fé Å54 b0b"),
    ("piglatin", "Repeat the input.", "Epeatray ethay inputyay."),
    ("piglatin", "What is WHAT, queen rhythm?", "Atwhay isyay ATWHAY, eenquay ythmrhay?"),
    ("piglatin", "that only can't", "atthay onlyyay ancay'tyay"),
    ("piglatin-marked", "the apple, What WHAT", "e-thay apple-ay, At-whay AT-WHAY"),
])
def test_classic_transforms_unchanged(spec: str, text: str, expected: str) -> None:
    assert get_transform(spec).apply(text) == expected


# ---------------------------------------------------------------- inverses, as declared

def test_exactness_flags_and_domains() -> None:
    leet, pig = get_transform("leetspeak:authors"), get_transform("piglatin:authors")
    assert not leet.exact and not pig.exact
    assert get_transform("leetspeak").exact and not get_transform("piglatin").exact
    assert leet.in_domain("The Cat") and not leet.in_domain("route 8") and not leet.in_domain("5 cats")
    assert "case" in leet.domain and "apostrophes" in pig.domain


@pytest.mark.parametrize(("spec", "encoded", "decoded"), [
    ("leetspeak:authors", "7h3 81rD 547 0N 4 P057, 0ddlY. 1 4M H3r3!", "The bird sat on a post, oddly. I am here!"),
    ("leetspeak:authors", "H1. 1'M 0K", "Hi. I'm ok"),
    ("piglatin:authors", "atcay ent-tay At-thay Um-may eggyay onlyay ATWHAY", "cat tent That Mum egg only WHAT"),
    ("piglatin:authors", "ellway-ownknay ighthay-igh-hay, TV antcay", "well-known thigh-high, TV cant"),
])
def test_authors_known_inverses(spec: str, encoded: str, decoded: str) -> None:
    assert get_transform(spec).invert(encoded) == decoded


@given(text=st.text(alphabet=string.ascii_letters + "2 69-',.!?\n’é", max_size=60))
@settings(max_examples=80, deadline=None)
def test_authors_leetspeak_round_trips_up_to_case(text: str) -> None:
    t = get_transform("leetspeak:authors")
    assert t.in_domain(text)
    out = t.apply(text)
    assert len(out) == len(text)
    assert t.invert(out).translate(ASCII_FOLD) == text.translate(ASCII_FOLD)


@given(text=st.text(alphabet=string.ascii_lowercase + " ", max_size=40))
@settings(max_examples=80, deadline=None)
def test_authors_piglatin_permutes_letters_and_keeps_layout(text: str) -> None:
    t = get_transform("piglatin:authors")
    out = t.apply(text)
    assert out.count(" ") == text.count(" ")
    for word, pig in zip(text.split(" "), out.split(" "), strict=True):
        if not re.search("[aeiou]|(?<=.)y", word):
            assert pig == word  # no vowel: unchanged
        elif word:
            letters = pig.replace("-", "")
            suffix = "ay" if letters.endswith("ay") and sorted(letters) == sorted(word + "ay") else "yay"
            assert sorted(letters) == sorted(word + suffix)
    back = t.invert(out)
    assert back.count(" ") == text.count(" ") and not re.search("[^a-z ]", back)


# ---------------------------------------------------------------- the registry

def test_get_transform_parses_variants() -> None:
    assert isinstance(get_transform("leetspeak"), Leetspeak) and get_transform("leetspeak").name == "leetspeak"
    assert isinstance(get_transform("leetspeak:authors"), AuthorsLeetspeak)
    assert isinstance(get_transform(" LeetSpeak:Authors "), AuthorsLeetspeak)
    assert type(get_transform("piglatin")) is PigLatin and type(get_transform("leetspeak")) is Leetspeak
    pig = get_transform("piglatin:authors")
    assert isinstance(pig, AuthorsPigLatin) and pig.name == "piglatin:authors"
    both = get_transform("leetspeak:authors+base64")
    assert isinstance(both, Compose) and both.name == "leetspeak:authors+base64" and not both.exact
    assert {"leetspeak", "leetspeak:authors", "piglatin", "piglatin:authors", "piglatin-marked"} <= set(available())


def test_unknown_variant_names_the_valid_ones() -> None:
    with pytest.raises(TransformError, match=r"unknown variant 'xyz' of transform 'leetspeak'; valid variants: "
                                             r"leetspeak, leetspeak:authors"):
        get_transform("leetspeak:xyz")
    with pytest.raises(TransformError, match="valid variants: piglatin, piglatin:authors"):
        get_transform("piglatin:")
    with pytest.raises(TransformError, match="takes no argument"):
        get_transform("piglatin-marked:authors")
    with pytest.raises(TransformError, match="takes no argument"):
        get_transform("rot13:authors")
    with pytest.raises(TransformError, match="needs an argument"):
        get_transform("translate")
