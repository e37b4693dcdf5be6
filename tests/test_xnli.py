"""XNLI study (SPEC §2c): templates, scoring rules, data loading (files, saved datasets, the hub call), the
resumable runner (scripted backends, tiny Hugging Face models, the fake OpenAI server) and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.lm.xnli import (
    LANGS,
    PAPER_LANGS,
    TEMPLATES,
    XNLIInputError,
    continuations,
    correct_generate,
    label_words,
    load_items,
    make_prompt,
    parse_label,
    run_study,
)
from conjugate.lm.xnli.score import argmax, correct_exact_rule

runner = CliRunner()

SENTENCES = {
    "en": [("A man plays a guitar on stage.", "A man is making music."),
           ("The children walk to school in the rain.", "The children stay at home."),
           ("She reads a book every evening.", "She likes novels."),
           ("The river flows through the old town.", "There is water in the town.")],
    "fr": [("Un homme joue de la guitare.", "Un homme fait de la musique."),
           ("Les enfants vont à l'école.", "Les enfants restent à la maison."),
           ("Elle lit un livre chaque soir.", "Elle aime les romans.")],
    "de": [("Der Hund schläft im Garten.", "Ein Tier ruht sich aus."),
           ("Es regnet seit Stunden.", "Die Sonne scheint.")],
}


def make_rows(langs=("en", "fr", "de"), repeat: int = 1) -> list[dict]:
    rows = []
    for lang in langs:
        pairs = SENTENCES[lang] * repeat
        for i, (p, h) in enumerate(pairs):
            rows.append({"premise": p if repeat == 1 else f"{p} ({i})", "hypothesis": h, "label": i % 3,
                         "lang": lang})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread (no spin contention)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def small(tmp_path) -> tuple[list[dict], Path]:
    rows = make_rows()
    return rows, write_jsonl(tmp_path / "xnli.jsonl", rows)


# ---------------------------------------------------------------- templates

def test_paper_templates_are_verbatim() -> None:
    assert make_prompt("en", "P.", "H.") == "P.\nQuestion: H. True, False or Neither?\nAnswer:"
    assert make_prompt("fr", "P.", "H.") == "P.\nQuestion: H. Vrai, Faux ou Ni?\nRéponse:"
    assert make_prompt("es", "P.", "H.") == "P.\nPregunta: H. Verdadero, Falso o Ni?\nRespuesta:"
    assert make_prompt("de", "P.", "H.") == "P.\nFrage: H. Wahr, Falsch oder Weder?\nAntwort:"
    assert label_words("en") == ("True", "Neither", "False")  # 0 entailment, 1 neutral, 2 contradiction
    assert label_words("fr") == ("Vrai", "Ni", "Faux") and label_words("es") == ("Verdadero", "Ni", "Falso")
    assert label_words("de") == ("Wahr", "Weder", "Falsch")
    assert continuations("en") == (" True", " Neither", " False")
    assert set(PAPER_LANGS) <= set(LANGS) and {TEMPLATES[c]["source"] for c in PAPER_LANGS} == {"paper"}


@pytest.mark.parametrize("lang", LANGS)
def test_every_template_is_well_formed(lang) -> None:
    t = TEMPLATES[lang]
    words = [w.casefold() for w in t["labels"]]
    assert len(set(words)) == 3
    assert not any(a != b and b.startswith(a) for a in words for b in words)  # prefix-free: one parse per output
    prompt = make_prompt(lang, "PREMISE", "HYPOTHESIS")
    first, question, answer = prompt.split("\n")
    assert first == "PREMISE" and "HYPOTHESIS" in question and not prompt.endswith((" ", "\n"))
    phrase = question.split("HYPOTHESIS", 1)[1]
    positions = [phrase.find(w) for w in (t["labels"][0], t["labels"][2], t["labels"][1])]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)  # "True, False or Neither"
    assert continuations(lang) == tuple(t["sep"] + w for w in t["labels"])
    assert parse_label(t["sep"] + t["labels"][1] + " extra", lang) == 1


def test_unknown_language() -> None:
    with pytest.raises(XNLIInputError, match="unknown language 'xx'"):
        make_prompt("xx", "p", "h")


# ---------------------------------------------------------------- scoring rules

@pytest.mark.parametrize(("output", "lang", "label", "ok"), [
    (" True", "en", 0, True),
    ("\n  true, because", "en", 0, True),  # stripped and case-insensitive
    (" Neither.", "en", 1, True),
    (" False", "en", 0, False),
    (" It is true", "en", 0, False),  # must start with the word
    ("", "en", 2, False),
    (" ni l'un ni l'autre", "fr", 1, True),
    (" FALSCH", "de", 2, True),
    ("正确。", "zh", 0, True),
])
def test_generate_rule(output, lang, label, ok) -> None:
    assert correct_generate(output, lang, label) is ok
    assert (parse_label(output, lang) == label) is ok


@pytest.mark.parametrize(("output", "ok"), [(" True", True), ("True", True), ("\nTrue", True), ("  True", False),
                                             (" true", False)])
def test_authors_exact_rule(output, ok) -> None:
    assert correct_exact_rule(output, "en", 0) is ok


def test_parse_label_none_and_argmax() -> None:
    assert parse_label(" def f(x):", "en") is None
    assert argmax([-3.0, -1.0, -2.0]) == 1 and argmax([-1.0, -1.0, -5.0]) == 0
    assert argmax([float("nan"), -9.0, -10.0]) == 1


# ---------------------------------------------------------------- data: local files

def test_jsonl_loading_limit_and_langs(small, tmp_path) -> None:
    rows, path = small
    items = load_items(path)
    assert [it["lang"] for it in items] == [r["lang"] for r in rows]
    assert [it["idx"] for it in items if it["lang"] == "fr"] == [0, 1, 2]
    assert items[0] == {"lang": "en", "idx": 0, "premise": rows[0]["premise"], "hypothesis": rows[0]["hypothesis"],
                        "label": 0}
    two = load_items(path, ["de", "en"], limit=2)
    assert [(it["lang"], it["idx"]) for it in two] == [("de", 0), ("de", 1), ("en", 0), ("en", 1)]
    named = write_jsonl(tmp_path / "named.jsonl", [{**rows[0], "label": "contradiction", "idx": 7}])
    assert load_items(named)[0]["label"] == 2 and load_items(named)[0]["idx"] == 7
    with pytest.raises(XNLIInputError, match="no items for language"):
        load_items(path, ["es"])


def test_tsv_canonical_and_original_xnli_layout(tmp_path) -> None:
    canonical = tmp_path / "a.tsv"
    canonical.write_text("premise\thypothesis\tlabel\tlang\nP one.\tH one.\t1\ten\nP two.\tH two.\t2\ten\n",
                         encoding="utf-8")
    assert [(it["label"], it["premise"]) for it in load_items(canonical)] == [(1, "P one."), (2, "P two.")]
    original = tmp_path / "xnli.dev.tsv"  # XNLI 1.0 columns, all languages in one file
    original.write_text("language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\n"
                        "ar\tneutral\t( x )\tجملة\tجملة أخرى\n"
                        "en\tentailment\t( x )\tA dog \"runs\".\tAn animal moves.\n"
                        "fr\tcontradiction\t( x )\tUn chien court.\tRien ne bouge.\n", encoding="utf-8")
    items = load_items(original, ["en", "fr"])  # ar has no template: skipped when not asked for
    assert [(it["lang"], it["label"], it["premise"]) for it in items] == [
        ("en", 0, 'A dog "runs".'), ("fr", 2, "Un chien court.")]
    with pytest.raises(XNLIInputError, match=r"xnli.dev.tsv:2: field lang: unknown language 'ar'"):
        load_items(original)


@pytest.mark.parametrize(("row", "line", "pattern"), [
    ({"premise": "p", "hypothesis": "h", "label": 5, "lang": "en"}, 3, "label 5 is not 0, 1 or 2"),
    ({"premise": "p", "hypothesis": "h", "label": -1, "lang": "en"}, 3, "label -1 is not 0, 1 or 2"),
    ({"premise": "p", "label": 1, "lang": "en"}, 3, "missing field.s. hypothesis"),
    ({"premise": "p", "hypothesis": "h", "label": 1, "lang": "xx"}, 3, "unknown language 'xx'"),
    ({"premise": " ", "hypothesis": "h", "label": 1, "lang": "en"}, 3, "field premise must be non-empty"),
    ({"premise": "p", "hypothesis": "h", "label": True, "lang": "en"}, 3, "label True"),
])
def test_bad_rows_name_file_and_line(small, tmp_path, row, line, pattern) -> None:
    rows, _ = small
    bad = write_jsonl(tmp_path / "bad.jsonl", [rows[0], rows[1], row])
    with pytest.raises(XNLIInputError, match=rf"bad.jsonl:{line}: .*{pattern}"):
        load_items(bad)


def test_malformed_and_duplicate_rows(small, tmp_path) -> None:
    rows, _ = small
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(XNLIInputError, match=r"bad.jsonl:2: malformed JSON"):
        load_items(bad)
    dup = write_jsonl(tmp_path / "dup.jsonl", [{**rows[0], "idx": 3}, {**rows[1], "idx": 3}])
    with pytest.raises(XNLIInputError, match=r"dup.jsonl:2: duplicate item en/3 \(first at .*dup.jsonl:1\)"):
        load_items(dup)
    (tmp_path / "x.csv").write_text("premise,hypothesis,label,lang\n")
    with pytest.raises(XNLIInputError, match="unknown data format .csv"):
        load_items(tmp_path / "x.csv")


# ---------------------------------------------------------------- data: datasets

def test_saved_dataset_with_lang_column(small, tmp_path) -> None:
    from datasets import Dataset

    rows, _ = small
    folder = tmp_path / "saved"
    Dataset.from_dict({k: [r[k] for r in rows] for k in ("premise", "hypothesis", "label", "lang")}).save_to_disk(
        str(folder))
    expected = load_items(write_jsonl(tmp_path / "same.jsonl", rows))
    assert load_items(folder) == expected  # detected as a saved dataset
    assert load_items(f"hf:{folder}") == expected  # or named explicitly
    assert load_items(f"hf:{folder}", ["fr"], limit=2) == [it for it in expected if it["lang"] == "fr"][:2]


def test_saved_hub_like_layouts(small, tmp_path) -> None:
    """Per-language parts, as the hub's configs are: a DatasetDict keyed by language, and one folder per
    language holding train/validation splits with XNLI's ClassLabel labels and no lang column."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rows, _ = small
    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})

    def part(lang):
        sub = [r for r in rows if r["lang"] == lang]
        return Dataset.from_dict({k: [r[k] for r in sub] for k in ("premise", "hypothesis", "label")},
                                 features=features)

    DatasetDict({lang: part(lang) for lang in ("en", "fr", "de")}).save_to_disk(str(tmp_path / "by_lang"))
    items = load_items(tmp_path / "by_lang", ["fr", "en"])
    assert [(it["lang"], it["idx"], it["label"]) for it in items] == [
        ("fr", 0, 0), ("fr", 1, 1), ("fr", 2, 2), ("en", 0, 0), ("en", 1, 1), ("en", 2, 2), ("en", 3, 0)]
    for lang in ("en", "de"):
        DatasetDict({"train": part("fr"), "validation": part(lang)}).save_to_disk(str(tmp_path / "hub" / lang))
    items = load_items(f"hf:{tmp_path / 'hub'}")
    assert [it["lang"] for it in items] == ["de", "de", "en", "en", "en", "en"]
    assert items[2]["premise"] == rows[0]["premise"]
    # a split without a lang column cannot say its language
    part("en").save_to_disk(str(tmp_path / "nolang"))
    with pytest.raises(XNLIInputError, match=r"missing column\(s\) lang.*one folder per language"):
        load_items(tmp_path / "nolang")


def test_saved_dataset_bad_label_names_the_row(small, tmp_path) -> None:
    from datasets import Dataset

    rows, _ = small
    rows = [*rows[:2], {**rows[2], "label": 7}]
    Dataset.from_dict({k: [r[k] for r in rows] for k in ("premise", "hypothesis", "label", "lang")}).save_to_disk(
        str(tmp_path / "bad"))
    with pytest.raises(XNLIInputError, match=r"bad row 2: label 7 is not 0, 1 or 2"):
        load_items(tmp_path / "bad")


def test_hub_loading_calls_datasets_per_language(small, monkeypatch) -> None:
    """``--data hf`` asks ``datasets`` for facebook/xnli, one config per language, validation split."""
    import datasets
    from datasets import Dataset

    rows, _ = small
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        sub = [r for r in rows if r["lang"] == config]
        return Dataset.from_dict({k: [r[k] for r in sub] for k in ("premise", "hypothesis", "label")})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    items = load_items("hf", ["en", "de"], limit=3)
    assert calls == [("facebook/xnli", "en", "validation"), ("facebook/xnli", "de", "validation")]
    assert [(it["lang"], it["idx"]) for it in items] == [("en", 0), ("en", 1), ("en", 2), ("de", 0), ("de", 1)]

    def failing(*a, **k):
        raise ConnectionError("no network\nmore")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(XNLIInputError, match=r"could not load facebook/xnli \(fr, validation\).*ConnectionError"):
        load_items("hf", ["fr"])


# ---------------------------------------------------------------- the runner, scripted backends

class Scripted:
    """A backend answering by rule: ``answer(item_prompt) -> label id or None`` for generation; for scoring,
    ``prefer(prompt) -> label id`` gets log-prob -1, the other labels -2 and -3."""

    def __init__(self, name, prompts_to_item, answer, prefer, fail_on_call: int = 0):
        self.name, self.items, self.answer, self.prefer = name, prompts_to_item, answer, prefer
        self.fail_on_call = fail_on_call
        self.calls: list[tuple[str, list]] = []

    def _tick(self, what, payload):
        self.calls.append((what, list(payload)))
        if self.fail_on_call and len(self.calls) == self.fail_on_call:
            raise RuntimeError("simulated crash")

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        self._tick("generate", prompts)
        assert tuple(stop) == () and max_new_tokens == 10
        out = []
        for p in prompts:
            it = self.items[p]
            a = self.answer(it)
            out.append(" def main():" if a is None else " " + label_words(it["lang"])[a] + "\nmore")
        return out

    def loglikelihood(self, pairs):
        self._tick("loglik", pairs)
        out = []
        for prompt, cont in pairs:
            it = self.items[prompt]
            k = continuations(it["lang"]).index(cont)
            want = self.prefer(it)
            out.append(-1.0 if k == want else -2.0 - (k != (want + 1) % 3))
        return out


class Loader:
    def __init__(self, backends):
        self.backends, self.loaded, self.options = backends, [], []

    def __call__(self, spec, **options):
        self.loaded.append(spec)
        self.options.append(options)
        return self.backends[spec]


def prompt_index(rows):
    return {make_prompt(r["lang"], r["premise"], r["hypothesis"]): r for r in rows}


def test_both_modes_accuracy_drop_and_agreement(small, tmp_path) -> None:
    rows, path = small
    idx = prompt_index(rows)
    # base: always right in both modes. code model: right in fr/de, wrong in English (answers code when
    # generating; its loglik prefers the next label), so the two modes disagree on every English item.
    base = Scripted("base", idx, answer=lambda it: it["label"], prefer=lambda it: it["label"])
    code = Scripted("code", idx, answer=lambda it: None if it["lang"] == "en" else it["label"],
                    prefer=lambda it: (it["label"] + 1) % 3 if it["lang"] == "en" else it["label"])
    load = Loader({"base": base, "code": code})
    out = tmp_path / "run"
    s = run_study(["base", "code"], out, data=path, mode="both", batch_size=2, show_progress=False, load=load)
    assert s["n"] == {"en": 4, "fr": 3, "de": 2} and s["modes"] == ["generate", "loglik"]
    for mode in ("generate", "loglik"):
        assert s["accuracy"][mode]["base"] == {"en": 1.0, "fr": 1.0, "de": 1.0}
        assert s["accuracy"][mode]["code"] == {"en": 0.0, "fr": 1.0, "de": 1.0}
        assert s["drop"][mode]["code"] == {"en": 1.0, "fr": 0.0, "de": 0.0}
    assert s["agreement"] == {"base": {"en": 1.0, "fr": 1.0, "de": 1.0}, "code": {"en": 0.0, "fr": 1.0, "de": 1.0}}
    assert s["valid_rate"]["code"]["en"] == 0.0 and s["computed"] == 2 * 2 * len(rows) and s["reused"] == 0
    assert math.isclose(s["stderr"]["generate"]["base"]["en"], 0.0)
    assert load.options[0] == {"show_progress": False, "device": "auto", "dtype": "auto", "batch_size": 2,
                               "chat": False}
    # batching: at most 2 items per call, longest prompts first; loglik sends the 3 continuations of each item
    gen_calls = [c for w, c in base.calls if w == "generate"]
    lengths = [len(p) for c in gen_calls for p in c]
    assert all(len(c) <= 2 for c in gen_calls) and lengths == sorted(lengths, reverse=True)
    for _, pairs in (c for c in base.calls if c[0] == "loglik"):
        assert len(pairs) % 3 == 0
        for k in range(0, len(pairs), 3):
            lang = idx[pairs[k][0]]["lang"]
            assert [c for _, c in pairs[k:k + 3]] == list(continuations(lang))
            assert len({p for p, _ in pairs[k:k + 3]}) == 1
    # files
    saved = json.loads((out / "summary.json").read_text())
    assert saved["accuracy"] == s["accuracy"] and saved["agreement"] == s["agreement"] and saved["n"] == s["n"]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 * 2 * len(rows)
    assert len({(p["model"], p["mode"], p["lang"], p["idx"]) for p in preds}) == len(preds)
    ll = next(p for p in preds if p["model"] == "code" and p["mode"] == "loglik" and p["lang"] == "en")
    assert ll["pred"] == (ll["label"] + 1) % 3 and ll["scores"][ll["pred"]] == max(ll["scores"]) and not ll["correct"]
    table = (out / "table.md").read_text()
    assert "| en | 4 | 100.0 ± 0.0 | 0.0 ± 0.0 | 100.0 |" in table
    assert "Largest drop for code (generate): **en** (100.0 points)." in table and "## Agreement" in table
    assert (out / "figures" / "xnli_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["models"] == ["base", "code"] and config["config"]["langs"] == ["en", "fr", "de"]
    assert config["config"]["templates"]["fr"]["labels"] == ["Vrai", "Ni", "Faux"]
    # a rerun computes nothing and loads no model; asking for one mode reuses it
    load2 = Loader({})
    s2 = run_study(["base", "code"], out, data=path, mode="both", show_progress=False, load=load2)
    assert load2.loaded == [] and s2["computed"] == 0 and s2["reused"] == 2 * 2 * len(rows)
    assert s2["accuracy"] == s["accuracy"]
    s3 = run_study(["base"], out, data=path, mode="loglik", show_progress=False, load=load2)
    assert s3["computed"] == 0 and "agreement" not in s3 and "drop" not in s3


def test_agreement_counts_partial_matches(small, tmp_path) -> None:
    rows, path = small
    idx = prompt_index(rows)
    # generation: label 0 for every item; loglik: the gold label. They agree exactly where gold == 0.
    backend = Scripted("m", idx, answer=lambda it: 0, prefer=lambda it: it["label"])
    s = run_study(["m"], tmp_path / "run", data=path, mode="both", show_progress=False, load=Loader({"m": backend}))
    for lang in ("en", "fr", "de"):
        golds = [r["label"] for r in rows if r["lang"] == lang]
        expected = sum(g == 0 for g in golds) / len(golds)
        assert s["agreement"]["m"][lang] == pytest.approx(expected)
        assert s["accuracy"]["generate"]["m"][lang] == pytest.approx(expected)
        assert s["accuracy"]["loglik"]["m"][lang] == 1.0


def test_changed_data_is_recomputed(small, tmp_path) -> None:
    rows, path = small
    out = tmp_path / "run"
    backend = Scripted("m", prompt_index(rows), answer=lambda it: it["label"], prefer=lambda it: it["label"])
    run_study(["m"], out, data=path, mode="loglik", show_progress=False, load=Loader({"m": backend}))
    rows[0]["hypothesis"] = "A woman is making music."
    write_jsonl(path, rows)
    backend = Scripted("m", prompt_index(rows), answer=lambda it: it["label"], prefer=lambda it: it["label"])
    s = run_study(["m"], out, data=path, mode="loglik", show_progress=False, load=Loader({"m": backend}))
    assert s["computed"] == 1 and len(backend.calls) == 1 and len(backend.calls[0][1]) == 3


def test_run_argument_errors(small, tmp_path) -> None:
    _, path = small
    with pytest.raises(XNLIInputError, match="listed twice"):
        run_study(["a", "a"], tmp_path, data=path, load=Loader({}))
    with pytest.raises(XNLIInputError, match="batch_size"):
        run_study(["a"], tmp_path, data=path, batch_size=0, load=Loader({}))
    with pytest.raises(XNLIInputError, match="unknown mode"):
        run_study(["a"], tmp_path, data=path, mode="sample", load=Loader({}))
    with pytest.raises(XNLIInputError, match="unknown language 'xx'"):
        run_study(["a"], tmp_path, data=path, langs="en,xx", load=Loader({}))


# ---------------------------------------------------------------- tiny Hugging Face models

class Crashing:
    """Wraps a real backend and raises on its ``fail_on``-th call."""

    def __init__(self, inner, fail_on: int):
        self.inner, self.fail_on, self.name, self.calls = inner, fail_on, inner.name, []

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        self.calls.append(list(prompts))
        if len(self.calls) == self.fail_on:
            raise RuntimeError("simulated crash")
        return self.inner.generate(prompts, max_new_tokens, stop)

    def loglikelihood(self, pairs):
        return self.inner.loglikelihood(pairs)


def test_resume_after_a_crash_generates_only_the_rest(tiny_gpt2, tmp_path) -> None:
    from conjugate.lm.hf import HFBackend

    rows = make_rows(("en", "fr"), repeat=2)  # 14 items
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    spec = str(tiny_gpt2)
    hf = HFBackend(spec, device="cpu", chat=False, batch_size=3)
    out = tmp_path / "run"
    crashing = Crashing(hf, fail_on=3)  # two batches of 3 finish, the third dies
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_study([spec], out, data=path, batch_size=3, show_progress=False, load=Loader({spec: crashing}))
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 6
    again = Crashing(hf, fail_on=0)
    s = run_study([spec], out, data=path, batch_size=3, show_progress=False, load=Loader({spec: again}))
    assert s["reused"] == 6 and s["computed"] == len(rows) - 6
    assert sum(len(c) for c in again.calls) == len(rows) - 6
    first = {p for c in crashing.calls[:2] for p in c}
    assert not first & {p for c in again.calls for p in c}
    # the resumed predictions equal an uninterrupted run's
    fresh = tmp_path / "fresh"
    run_study([spec], fresh, data=path, batch_size=3, show_progress=False, load=Loader({spec: hf}))

    def outputs(folder):
        return {(p["lang"], p["idx"]): p["output"] for p in map(json.loads, (folder / "predictions.jsonl").open())}

    assert outputs(out) == outputs(fresh) and len(outputs(out)) == len(rows)


def manual_loglik(model, tok, context: str, continuation: str) -> float:
    """Sum of log p(continuation tokens | context) straight from the model (no backend code)."""
    import torch

    ctx = tok(context)["input_ids"]
    whole = tok(context + continuation)["input_ids"]
    assert whole[:len(ctx)] == ctx
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return float(sum(lp[t - 1, whole[t]] for t in range(len(ctx), len(whole))))


def test_loglik_predictions_are_argmax_of_manual_loglikelihoods(tiny_gpt2, small, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows, path = small
    out = tmp_path / "run"
    s = run_study([str(tiny_gpt2)], out, data=path, mode="loglik", batch_size=4, device="cpu",
                  show_progress=False)
    preds = {(p["lang"], p["idx"]): p for p in map(json.loads, (out / "predictions.jsonl").open())}
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    correct = 0
    for it in load_items(path):
        prompt = make_prompt(it["lang"], it["premise"], it["hypothesis"])
        manual = [manual_loglik(model, tok, prompt, c) for c in continuations(it["lang"])]
        p = preds[(it["lang"], it["idx"])]
        assert p["scores"] == pytest.approx(manual, abs=1e-4)
        assert p["pred"] == max(range(3), key=lambda k: manual[k])
        correct += p["pred"] == it["label"]
    assert sum(s["accuracy"]["loglik"][str(tiny_gpt2)][lang] * s["n"][lang] for lang in s["n"]) == \
        pytest.approx(correct)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shared_context_scores_equal_pairwise_scores(arch, tiny_gpt2, tiny_llama) -> None:
    """The one-prompt-pass scorer gives the backend's own pairwise log-likelihoods (multi-token labels, mixed
    prompt lengths in a batch, BOS or not), and falls back to pairs for a context cut at the window limit."""
    from conjugate.lm.hf import HFBackend
    from conjugate.lm.xnli.choices import choice_logliks

    backend = HFBackend(str(tiny_gpt2 if arch == "gpt2" else tiny_llama), device="cpu", chat=False, batch_size=2)
    rows = make_rows(("en", "fr", "de"))
    contexts = [make_prompt(r["lang"], r["premise"], r["hypothesis"]) for r in rows]
    contexts.append(make_prompt("es", " ".join(["El perro corre en el parque."] * 60), "Hay un perro."))  # > 256
    choices = [continuations(r["lang"]) for r in rows] + [continuations("es")]
    assert any(len(backend.tokenizer(c, add_special_tokens=False)["input_ids"]) > 1 for cs in choices for c in cs)
    got = choice_logliks(backend, contexts, choices)
    want = backend.loglikelihood([(ctx, c) for ctx, cs in zip(contexts, choices, strict=True) for c in cs])
    assert [x for s in got for x in s] == pytest.approx(want, abs=1e-4)


def test_choice_scores_through_pairs_for_other_backends(small) -> None:
    from conjugate.lm.xnli.choices import choice_logliks

    rows, _ = small
    backend = Scripted("m", prompt_index(rows), answer=lambda it: 0, prefer=lambda it: it["label"])
    prompts = [make_prompt(r["lang"], r["premise"], r["hypothesis"]) for r in rows[:2]]
    got = choice_logliks(backend, prompts, [continuations(r["lang"]) for r in rows[:2]])
    assert got == [[-1.0, -2.0, -3.0], [-3.0, -1.0, -2.0]] and len(backend.calls) == 1


def test_cli_end_to_end_tiny_models(tiny_gpt2, tiny_llama, small, tmp_path) -> None:
    rows, path = small
    out = tmp_path / "run"
    args = ["xnli", "run", "--model", str(tiny_gpt2), "--model", str(tiny_llama), "--data", str(path),
            "--langs", "en,de", "--mode", "both", "--batch-size", "4", "--device", "cpu", "--out", str(out), "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    n = 4 + 2
    assert f"computed {2 * 2 * n}, reused 0" in r.stdout and "agreement %" in r.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["n"] == {"en": 4, "de": 2} and set(s["accuracy"]["generate"]) == {str(tiny_gpt2), str(tiny_llama)}
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for m in (str(tiny_gpt2), str(tiny_llama)):
        for lang in ("en", "de"):
            g = {p["idx"]: p["pred"] for p in preds if (p["model"], p["mode"], p["lang"]) == (m, "generate", lang)}
            ll = {p["idx"]: p["pred"] for p in preds if (p["model"], p["mode"], p["lang"]) == (m, "loglik", lang)}
            assert s["agreement"][m][lang] == pytest.approx(sum(g[i] == ll[i] for i in g) / len(g))
    gen = next(p for p in preds if p["mode"] == "generate")
    assert gen["max_new_tokens"] == 10 and isinstance(gen["output"], str)
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and f"computed 0, reused {2 * 2 * n}" in r.stdout


def test_fake_openai_server_both_modes(small, tmp_path) -> None:
    """A served model through the OpenAI-compatible backend; the server 'knows' the gold label from the
    premise, answers it, and gives its word the highest log-prob."""
    from fake_openai import FakeOpenAI

    rows, _ = small
    rows = [{**r, "premise": f"{r['premise']} gold{r['label']}"} for r in rows if r["lang"] != "de"]
    path = write_jsonl(tmp_path / "d.jsonl", rows)

    def gold(text: str) -> tuple[str, int]:
        first = text.split("\n", 1)[0]
        lang = "en" if "\nQuestion:" in text and "Vrai" not in text else "fr"
        return lang, int(first.rsplit("gold", 1)[1][0])

    def respond(prompt, params):
        lang, label = gold(prompt)
        return " " + label_words(lang)[label] + " because"

    def logprob(token, before):
        if "\nAnswer:" not in before and "\nRéponse:" not in before:
            return -0.5
        lang, label = gold(before)
        return -0.1 if token.strip() == label_words(lang)[label] else -3.0

    with FakeOpenAI(respond, logprob=logprob) as server:
        spec = f"openai:fake-model@{server.url}"
        s = run_study([spec], tmp_path / "run", data=path, mode="both", show_progress=False)
        gen = [q for q in server.requests if not q.body.get("echo")]
        assert len(gen) == len(rows) and all(q.body["max_tokens"] == 10 and "stop" not in q.body for q in gen)
        assert len(server.requests) == len(rows) * 4
    assert s["accuracy"]["generate"][spec] == {"en": 1.0, "fr": 1.0}
    assert s["accuracy"]["loglik"][spec] == {"en": 1.0, "fr": 1.0}
    assert s["agreement"][spec] == {"en": 1.0, "fr": 1.0}


# ---------------------------------------------------------------- command line: bad input and presets

@pytest.mark.parametrize(("extra", "pattern"), [
    (["--langs", "en,xx"], "unknown language 'xx'"),
    (["--mode", "sample"], "unknown mode 'sample'"),
    (["--data", "missing.jsonl"], "missing.jsonl: no such file"),
])
def test_cli_bad_options_exit_2(small, tmp_path, extra, pattern) -> None:
    _, path = small
    args = ["xnli", "run", "--model", "m", "--data", str(path), "--out", str(tmp_path / "o"), *extra]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and pattern in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("row", "pattern"), [
    ({"premise": "p", "hypothesis": "h", "label": 3, "lang": "en"}, r"bad.jsonl:2: label 3 is not 0, 1 or 2"),
    ({"premise": "p", "hypothesis": "h", "label": 1}, r"bad.jsonl:2: missing field\(s\) lang"),
    ({"premise": "p", "hypothesis": "h", "label": 1, "lang": "jp"}, r"bad.jsonl:2: field lang: unknown language 'jp'"),
])
def test_cli_bad_data_exit_2_with_file_and_line(small, tmp_path, row, pattern) -> None:
    import re

    rows, _ = small
    bad = write_jsonl(tmp_path / "bad.jsonl", [rows[0], row])
    r = runner.invoke(app, ["xnli", "run", "--model", "m", "--data", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and re.search(pattern, r.output) and "Traceback" not in r.output
    assert not (tmp_path / "o" / "predictions.jsonl").exists()


def test_cli_bad_batch_size_exit_2(small, tmp_path) -> None:
    _, path = small
    r = runner.invoke(app, ["xnli", "run", "--model", "m", "--data", str(path), "--out", str(tmp_path),
                            "--batch-size", "zero"])
    assert r.exit_code == 2 and "--batch-size" in r.output


def test_cli_preset_expands_to_the_paper_pair(small, tmp_path, monkeypatch) -> None:
    import conjugate.lm.load as load_mod

    rows, path = small
    idx = prompt_index(rows)
    loaded = []

    def fake_load_backend(spec, **options):
        loaded.append(spec)
        return Scripted(spec, idx, answer=lambda it: it["label"], prefer=lambda it: it["label"])

    monkeypatch.setattr(load_mod, "load_backend", fake_load_backend)
    r = runner.invoke(app, ["xnli", "run", "--model", "llama2-7b-codellama", "--data", str(path), "--mode",
                            "loglik", "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert loaded == ["meta-llama/Llama-2-7b-hf", "codellama/CodeLlama-7b-hf"]
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["models"] == loaded and s["drop"]["loglik"]["codellama/CodeLlama-7b-hf"]["en"] == 0.0


def test_cli_templates() -> None:
    r = runner.invoke(app, ["xnli", "templates", "--lang", "de"])
    assert r.exit_code == 0 and "Frage: <hypothesis> Wahr, Falsch oder Weder?" in r.stdout
    r = runner.invoke(app, ["xnli", "templates", "--lang", "xx"])
    assert r.exit_code == 2 and "unknown language 'xx'" in r.output
