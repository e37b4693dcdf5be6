"""Conjugate transforms: known outputs, exact round trips on their declared domains (property-based, Unicode
included), composition, the registry, translators (table, Hugging Face seq2seq, LLM through a fake Backend and
through the fake OpenAI server), and the ``conjugate transform`` command."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conjugate import data
from conjugate.cli import app
from conjugate.lm.translators import LLMTranslator, lang_kwargs
from conjugate.transforms import (
    Compose,
    NotInvertibleError,
    TableTranslator,
    Transform,
    TransformError,
    TranslationError,
    available,
    get_transform,
    get_translator,
)
from conjugate.transforms.leetspeak import OUTSIDE
from conjugate.transforms.piglatin import WORD, case_style
from conjugate.transforms.translate import by_lines

EXACT = ["leetspeak", "piglatin-marked", "rot13", "base64", "reverse"]

# Text mixing arbitrary Unicode with plenty of ASCII words, spaces, hyphens and punctuation.
ascii_text = st.text(alphabet=string.ascii_letters + string.digits + " -',.!?\n", max_size=60)
any_text = st.one_of(st.text(max_size=60), ascii_text, st.lists(st.one_of(st.text(max_size=5), ascii_text),
                                                                 max_size=4).map("".join))


def to_leet_domain(s: str) -> str:
    return "".join(c for c in s if c not in OUTSIDE)


def to_marked_domain(s: str) -> str:
    return WORD.sub(lambda m: m.group().lower() if case_style(m.group()) == "mixed" else m.group(), s)


def to_domain(name: str, s: str) -> str:
    if name == "leetspeak":
        return to_leet_domain(s)
    if name == "piglatin-marked":
        return to_marked_domain(s)
    return s


# ---------------------------------------------------------------- known outputs

@pytest.mark.parametrize(("spec", "text", "expected"), [
    ("leetspeak", "Repeat the input.", "R3p347 7h3 1npu7."),
    ("leetspeak", "What is 7 times 12?", "Wh47 15 7 71m35 12?"),
    ("leetspeak", "Café ÅSA", "C4fé Å54"),
    ("piglatin", "Repeat the input.", "Epeatray ethay inputyay."),
    ("piglatin", "What is WHAT, queen rhythm?", "Atwhay isyay ATWHAY, eenquay ythmrhay?"),
    ("piglatin", "Input: apple", "Inputyay: appleyay"),
    ("piglatin-marked", "the apple, What WHAT", "e-thay apple-ay, At-whay AT-WHAY"),
    ("piglatin-marked", "well-known I", "ell-way-own-knay I-ay"),
    ("rot13", "Hello, World! é", "Uryyb, Jbeyq! é"),
    ("base64", "Hi", "SGk="),
    ("base64", "héllo ő", "aMOpbGxvIMWR"),
    ("reverse", "abc d", "d cba"),
    ("leetspeak+base64", "tea", "NzM0"),
])
def test_known_outputs(spec: str, text: str, expected: str) -> None:
    assert get_transform(spec).apply(text) == expected


@pytest.mark.parametrize(("spec", "encoded", "decoded"), [
    ("leetspeak", "7h3 c47", "the cat"),
    ("piglatin", "Atwhay ethay ellohay", "What the hello"),
    ("piglatin", "Inputyay ATWHAY", "Input WHAT"),
    ("piglatin-marked", "E-thay een-quay AT-WHAY", "The queen WHAT"),
    ("base64", "aMOpbGxvIMWR", "héllo ő"),
])
def test_known_inverses(spec: str, encoded: str, decoded: str) -> None:
    assert get_transform(spec).invert(encoded) == decoded


def test_exactness_flags_and_domains() -> None:
    assert {n: get_transform(n).exact for n in EXACT} == dict.fromkeys(EXACT, True)
    assert not get_transform("piglatin").exact
    leet = get_transform("leetspeak")
    assert leet.in_domain("the cat") and not leet.in_domain("The cat") and not leet.in_domain("route 66 5")
    assert leet.invert(leet.apply("The 5 cats")) != "The 5 cats"  # outside the domain: honestly lossy
    marked = get_transform("piglatin-marked")
    assert marked.in_domain("Hello WORLD and i") and not marked.in_domain("hEllo")
    assert not get_transform("base64").in_domain("\ud800")


# ---------------------------------------------------------------- property-based round trips

@pytest.mark.parametrize("name", EXACT)
@given(text=any_text)
@settings(max_examples=150, deadline=None)
def test_exact_transforms_round_trip(name: str, text: str) -> None:
    t = get_transform(name)
    text = to_domain(name, text)
    assert t.in_domain(text)
    assert t.invert(t.apply(text)) == text


@given(text=any_text, specs=st.lists(st.sampled_from(EXACT), min_size=2, max_size=3))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
def test_compositions_round_trip(text: str, specs: list[str]) -> None:
    t = get_transform("+".join(specs))
    assert isinstance(t, Compose) and t.exact and t.name == "+".join(specs)
    text = to_domain(specs[0], text)
    assume(t.in_domain(text))
    encoded = t.apply(text)
    assert t.invert(encoded) == text
    assert t.apply_many([text, text]) == [encoded, encoded]


@given(text=st.text(alphabet=string.ascii_lowercase + " ", max_size=40))
@settings(max_examples=60, deadline=None)
def test_classic_piglatin_permutes_letters_and_keeps_layout(text: str) -> None:
    out = get_transform("piglatin").apply(text)
    assert out.count(" ") == text.count(" ")
    for word, pig in zip(text.split(" "), out.split(" "), strict=True):
        if word:
            suffix = "yay" if pig.endswith("yay") and sorted(pig) == sorted(word + "yay") else "ay"
            assert pig.endswith(suffix) and sorted(pig) == sorted(word + suffix)


def test_plus_operator_and_nested_compose() -> None:
    t = get_transform("rot13") + get_transform("base64") + get_transform("reverse")
    assert t.name == "rot13+base64+reverse" and len(t.parts) == 3
    assert t.invert(t.apply("Grüße, 世界")) == "Grüße, 世界"


def test_registry_errors_list_valid_names() -> None:
    assert {"leetspeak", "piglatin", "rot13", "base64"} <= set(available())
    with pytest.raises(TransformError, match="unknown transform 'nope'.*leetspeak"):
        get_transform("leetspeak+nope")
    with pytest.raises(TransformError, match="needs an argument"):
        get_transform("translate")
    with pytest.raises(TransformError, match="takes no argument"):
        get_transform("rot13:x")
    with pytest.raises(TransformError, match="empty transform"):
        get_transform("rot13+")


def test_invert_errors_are_clear() -> None:
    class Hash(Transform):
        name = "hash"

        def apply(self, text: str) -> str:
            return str(len(text))

    with pytest.raises(NotInvertibleError, match="'hash' has no inverse"):
        Hash().invert("3")
    with pytest.raises(TransformError, match="not valid Base64"):
        get_transform("base64").invert("not base64!!")
    with pytest.raises(TransformError, match="not marked Pig Latin at character 0"):
        get_transform("piglatin-marked").invert("hello world")


# ---------------------------------------------------------------- translators

def write_table(tmp_path, rows: dict[str, list[str]]):
    for lang, lines in rows.items():
        (tmp_path / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_table_translator_lines_blank_lines_and_errors(tmp_path) -> None:
    d = write_table(tmp_path, {"en": ["Good morning.", "Thank you."], "fr": ["Bonjour.", "Merci."]})
    tr = TableTranslator.from_dir(d)
    assert tr.translate(["Thank you.", "  Good morning.\n\nThank you. "], "en", "fr") == \
        ["Merci.", "  Bonjour.\n\nMerci. "]
    assert tr.translate(["Merci."], "fr", "en") == ["Thank you."]
    with pytest.raises(TranslationError, match="no en→fr translation of 'Unknown'"):
        tr.translate(["Unknown"], "en", "fr")
    with pytest.raises(TranslationError, match="no language 'de'; it has en, fr"):
        tr.translate(["Merci."], "de", "en")
    (d / "es.txt").write_text("Buenos días.\n", encoding="utf-8")
    with pytest.raises(TranslationError, match="en.txt has 2 lines but es.txt has 1"):
        TableTranslator.from_dir(d)


def test_builtin_table_and_translate_transform(tmp_path) -> None:
    en, hu = data.sentences("en"), data.sentences("hu")
    t = get_transform("translate:hu")
    assert not t.exact
    assert t.apply_many(en[:3]) == hu[:3]
    assert t.invert(hu[5]) == en[5]
    d = write_table(tmp_path, {"en": ["Yes."], "nl": ["Ja."]})
    t2 = get_transform(f"translate:nl@table:{d}+rot13")
    assert t2.apply("Yes.") == "Wn." and t2.invert("Wn.") == "Yes."
    t3 = get_transform("translate:en", translator=TableTranslator.from_dir(d), src="nl")
    assert t3.apply("Ja.") == "Yes."


def test_get_translator_specs(tmp_path) -> None:
    assert isinstance(get_translator("table"), TableTranslator)
    assert get_translator("hf:Helsinki-NLP/opus-mt-{src}-{tgt}").model_id("en", "hu") == "Helsinki-NLP/opus-mt-en-hu"
    assert isinstance(get_translator("llm:openai:m@http://127.0.0.1:1/v1"), LLMTranslator)
    with pytest.raises(TranslationError, match="unknown translator 'deepl:x'.*table:<dir>"):
        get_translator("deepl:x")
    with pytest.raises(TranslationError, match="not a folder"):
        get_translator(f"table:{tmp_path / 'missing'}")


def test_by_lines_translates_each_distinct_line_once() -> None:
    calls: list[list[str]] = []

    def fake(lines: list[str]) -> list[str]:
        calls.append(lines)
        return [line.upper() for line in lines]

    assert by_lines(["a\nb", "b", "\n a \n"], fake) == ["A\nB", "B", "\n A \n"]
    assert calls == [["a", "b"]]


class RecordingBackend:
    """A fake Backend: answers each prompt with a canned reply, and records the prompts."""

    name = "recording"

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        self.prompts += list(prompts)
        return [self.reply(p) for p in prompts]

    def loglikelihood(self, pairs):
        return [0.0] * len(pairs)


def test_llm_translator_with_fake_backend() -> None:
    backend = RecordingBackend(lambda p: "  " + p.rsplit("English: ", 1)[1].split("\n")[0][::-1] + " ")
    tr = LLMTranslator(backend)
    assert tr.translate(["abc\n\ndef"], "en", "hu") == ["cba\n\nfed"]
    assert "from English" not in backend.prompts[0] and "English text into Hungarian" in backend.prompts[0]
    assert backend.prompts[0].endswith("English: abc\nHungarian:")
    assert tr.translate(["same"], "en", "en") == ["same"] and len(backend.prompts) == 2


def test_llm_translator_through_fake_openai_server() -> None:
    from fake_openai import FakeOpenAI

    def respond(prompt, params):
        return " Bonjour le monde\nextra" if "French" in str(prompt) else " ?"

    with FakeOpenAI(respond) as server:
        tr = get_translator(f"llm:openai:fake-model@{server.url}")
        assert tr.translate(["Hello world", "Hello world"], "en", "fr") == ["Bonjour le monde"] * 2
        assert server.count == 1  # the repeated line is translated once
        t = get_transform("translate:fr", translator=tr)
        assert t.apply("Hello world") == "Bonjour le monde"


def tiny_seq2seq(path, extra_tokens=()):
    """A tiny random BART with a byte-level BPE tokenizer, saved with safetensors."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", *extra_tokens]
    tok.train_from_iterator(data.sentences("en")[:40] + data.sentences("fr")[:40],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>",
                                   additional_special_tokens=list(extra_tokens))
    cfg = BartConfig(vocab_size=tok.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                     max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                     decoder_start_token_id=2, forced_eos_token_id=2)
    import torch

    torch.manual_seed(0)
    BartForConditionalGeneration(cfg).save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return fast


def test_hf_translator_on_tiny_seq2seq_model(tmp_path) -> None:
    tiny_seq2seq(tmp_path)
    tr = get_translator(f"hf:{tmp_path}", batch_size=2, max_new_tokens=6, device="cpu")
    texts = ["Birds sing loudly.", "A longer sentence about the weather today.\n\nOk.", "Birds sing loudly."]
    out = tr.translate(texts, "en", "fr")
    assert len(out) == 3 and out[0] == out[2] and out[1].count("\n") == 2
    assert tr.translate(texts, "en", "fr") == out  # greedy: deterministic
    with pytest.raises(TranslationError, match="could not load translation model"):
        get_translator(f"hf:{tmp_path / 'nothing'}").translate(["x"], "en", "fr")


def test_lang_kwargs_for_nllb_style_vocabularies(tmp_path) -> None:
    fast = tiny_seq2seq(tmp_path, extra_tokens=("eng_Latn", "fra_Latn"))
    assert lang_kwargs(fast, "en", "fr") == {"forced_bos_token_id": fast.convert_tokens_to_ids("fra_Latn")}
    assert lang_kwargs(fast, "en", "hu") == {}  # no hun_Latn token: a fixed-pair model


# ---------------------------------------------------------------- command line

def test_cli_transform() -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["transform", "--kind", "leetspeak", "Repeat the input."])
    assert r.exit_code == 0 and r.stdout.strip() == "R3p347 7h3 1npu7."
    r = runner.invoke(app, ["transform", "--kind", "rot13+base64", "--inverse", "-"], input="VXJ5eWI=\n")
    assert r.exit_code == 0 and r.stdout == "Hello\n"
    r = runner.invoke(app, ["transform", "--kind", "translate:fr", data.sentences("en")[7]])
    assert r.exit_code == 0 and r.stdout.strip() == data.sentences("fr")[7]


def test_cli_transform_errors() -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["transform", "--kind", "klingon", "hi"])
    assert r.exit_code == 2
    assert "unknown transform 'klingon'" in r.stderr and "leetspeak" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["transform", "--kind", "base64", "--inverse", "%%%"])
    assert r.exit_code == 2 and "not valid Base64" in r.stderr
