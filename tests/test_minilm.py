"""The offline miniature of the ICL-vs-IF study (``conjugate.minilm``): corpus, conjugate maps, model, pipeline.

The corpus must hold every configured language and both kinds of documents, must never show an evaluation
query (held-out sentence or arithmetic question) in training text, and every language's prompt must be exactly
the conjugate map of the English prompt, with answers mapping back. The pipeline must write every output with
the summary schema, skip finished stages on rerun, resume interrupted training exactly, and reject bad input
with exit code 2. Runs use one torch thread (bit-exact for a fixed thread count).
"""

from __future__ import annotations

import random
import re

import pytest
import torch
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.config import ConfigError, parse_overrides
from conjugate.lm.backend import Backend
from conjugate.lm.icl_vs_if.build import TASKS
from conjugate.minilm import corpus as C
from conjugate.minilm import study
from conjugate.minilm.config import MINILM_PRESETS, MiniLMConfig, resolve_minilm
from conjugate.minilm.model import BOS, CausalLM, CharLMBackend, CharTokenizer, LMConfig, load_lm
from conjugate.runs import read_json
from conjugate.training import Interrupted

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
LANGS = ["en", "leet", "piglatin", "vel", "zun"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def splits() -> C.Splits:
    return C.make_splits(160, 16, 32, 0.1, 0.15, seed=0)


def spec(langs=LANGS) -> C.CorpusSpec:
    return C.CorpusSpec(tuple(langs), p_icl=0.6, p_question_query=0.5, p_no_instruction=0.2, max_shots=2,
                        max_qa_shots=2)


# ---- corpus ----------------------------------------------------------------------------------------------

def test_pretraining_corpus_has_every_language_and_both_kinds(splits):
    rng = random.Random(1)
    docs = [C.pretrain_doc(rng, splits, spec()) for _ in range(600)]
    assert {d.lang for d in docs} == set(LANGS)
    for lang in LANGS:
        kinds = {d.kind for d in docs if d.lang == lang}
        assert kinds == {"icl", "qa"}, lang
    en = C.language("en").pack
    icl_math = [d for d in docs if d.lang == "en" and d.kind == "icl" and "What is" in d.text.rsplit("\n\n", 1)[-1]]
    assert icl_math, "in-context documents must include question-like queries"
    for d in icl_math:  # ... answered by the ICL rule, not by the number
        last = d.text.rsplit("\n\n", 1)[-1]
        query = last.split("\n")[0].split(": ", 1)[1]
        assert d.text[d.answer_start:] in (f" {query}", f" {query.upper()}")
    assert all(d.text[d.answer_start:].startswith(" ") for d in docs)
    assert any(d.text.startswith(en.instructions["repeat"]) for d in docs if d.lang == "en")
    tune = [C.tune_doc(rng, splits, spec()) for _ in range(200)]
    assert {(d.lang, d.kind) for d in tune} == {("en", "qa")}
    assert all(d.text.startswith(tuple(C.QA_INSTRUCTIONS.values())) for d in tune)


def test_splits_are_disjoint_and_cover_everything(splits):
    s = splits.sentences
    assert not (set(s["train"]) & set(s["val"]) or set(s["train"]) & set(s["test"]) or set(s["val"]) & set(s["test"]))
    assert len(s["train"]) + len(s["val"]) + len(s["test"]) == 160
    p = splits.problems
    assert len(set(p["train"]) | set(p["val"]) | set(p["test"])) == len(C.all_problems())
    assert not set(p["train"]) & (set(p["val"]) | set(p["test"]))
    assert splits == C.make_splits(160, 16, 32, 0.1, 0.15, seed=0)  # deterministic


def test_training_documents_never_contain_held_out_queries(splits):
    rng = random.Random(2)
    text = "\n".join(d.text for d in [C.pretrain_doc(rng, splits, spec()) for _ in range(3000)]
                     + [C.tune_doc(rng, splits, spec()) for _ in range(500)])
    for lang in LANGS:
        pack = C.language(lang).pack
        for j in (*splits.sentences["val"], *splits.sentences["test"]):
            tail = pack.sentences[j].split(" ", 1)[1]  # also catches the fill-in-the-blank form
            assert tail not in text, (lang, pack.sentences[j])
        for j in splits.sentences["train"][:20]:
            assert pack.sentences[j].split(" ", 1)[1] in text  # the check can find what is there
    eval_rows = C.eval_rows(LANGS, 10, 2, splits, "test", 0) + C.eval_rows(LANGS, 10, 2, splits, "val", 0)
    for row in eval_rows:
        query = row["prompt"].rsplit("\n\n", 1)[1].split("\n")[0].split(": ", 1)[1]
        assert f": {query}\n" not in text, row["id"]


def test_conjugate_prompts_map_english_prompts_and_their_answers_map_back(splits):
    rows = C.eval_rows(LANGS, 12, 2, splits, "test", 0)
    by_id = {r["id"]: r for r in rows}
    assert {r["lang"] for r in rows} == set(LANGS) and {f"{r['icl_task']}-{r['if_task']}" for r in rows} == set(TASKS)
    conj = C.conjugate_rows(rows)
    assert len(conj) == len(rows) - len(rows) // len(LANGS) and "en" not in {r["lang"] for r in conj}
    blank = lambda text: re.sub(r"_+", "_", text)  # noqa: E731
    for c in conj:
        native = by_id[c["id"].replace("conj-", "")]
        en = by_id[native["id"].replace(f"-{c['lang']}-", "-en-")]
        t = C.conjugate_map(c["lang"])
        assert c["prompt"] == t.apply(en["prompt"]) and c["icl_answer"] == en["icl_answer"]
        # the language's own prompt is the same text, except that a blank has the length of the word it hides
        # (and Pig Latin capitalises a one-letter word differently: s(upper(a)) = Ayay, upper(s(a)) = AYAY)
        if c["if_task"] == "math":
            assert c["prompt"].casefold() == native["prompt"].casefold(), c["id"]
            assert c["prompt"] == native["prompt"] or c["lang"] == "piglatin"
        else:
            assert blank(c["prompt"]).casefold() == blank(native["prompt"]).casefold(), c["id"]
        # the ICL answer in the language maps back to the English one, and IF answers survive the round trip
        assert t.invert(t.apply(en["icl_answer"])) == en["icl_answer"], c["id"]
        assert t.invert(native["icl_answer"]) == en["icl_answer"] or c["if_task"] == "fillblank"
        if c["lang"] != "piglatin":  # classic Pig Latin's inverse guesses (othay -> tho, not hot)
            assert t.invert(t.apply(en["if_answer"])).casefold() == en["if_answer"].casefold(), c["id"]
    assert all(r["icl_answer"] in ("What", "WHAT") or set(r["icl_answer"]) == {"_"}
               for r in rows if r["lang"] == "en")


def test_leet_answer_inverse_keeps_numbers_and_capitals():
    t = C.conjugate_map("leet")
    assert t.invert("WH47") == "WHAT" and t.invert("Wh47") == "What" and t.invert(" 84") == " 84"
    assert t.invert("7h3 4n5w3r 15 12") == "the answer 15 12"  # a lone digit run reads as a number
    assert t.invert(t.apply("Repeat the input.")) == "Repeat the input."
    assert t.invert(t.apply("The end")) == "the end"  # the one loss: a leading capital A E I O S T


def test_lexicon_is_one_to_one_deterministic_and_keeps_case():
    vocab = C.english_vocabulary()
    for name in C.MADE_UP:
        lex = C.lexicon(name)
        assert set(lex.table) == set(vocab)
        assert len(set(lex.table.values())) == len(vocab)
        assert not set(lex.table.values()) & set(vocab)  # pseudo-words never collide with English words
        assert all(re.fullmatch(r"[a-z]+", w) for w in lex.table.values())
        for text in ("What is 7 times 12?", "WHAT IS THIS", "____ sister bakes bread."):
            assert lex.in_domain(text) and lex.invert(lex.apply(text)) == text
        w = lex.apply("What")
        assert w[0].isupper() and w[1:].islower() and lex.apply("WHAT") == w.upper()
    before = dict(C.lexicon("vel").table)
    C.lexicon.cache_clear()
    assert C.lexicon("vel").table == before  # rebuilt from nothing but the vocabulary and the name
    assert C.lexicon("vel").table != C.lexicon("zun").table


def test_instruction_tuning_mask_covers_only_the_final_answer(splits):
    tok = study.build_tokenizer()
    doc = C.tune_doc(random.Random(0), splits, spec())
    batch = study.encode_docs([doc], tok, chunks=1, answer_only=True)
    tokens, mask = batch.chunks[0]
    assert tok.decode(tokens[0][mask[0]].tolist()) == doc.text[doc.answer_start:] + "\n"
    full = study.encode_docs([doc], tok, chunks=1, answer_only=False).chunks[0][1]
    assert int(full.sum()) == len(doc.text) + 1 and tokens[0, 0] == BOS


def test_baselines_and_answer_detection(splits):
    rows = C.eval_rows(["en", "vel"], 10, 2, splits, "val", 0)
    for r in rows:
        assert study.baseline_output(r, "answer_question") == " " + r["if_answer"]
        assert study.baseline_output(r, "copy_instruction") == " " + r["prompt"].split("\n")[0]
        last = study.baseline_output(r, "repeat_last_exemplar")
        assert f"Output: {last.strip()}\n\n" in r["prompt"] or f"Seni: {last.strip()}\n\n" in r["prompt"]
        assert study.answered(r, " 42" if r["if_task"] == "math" else " Word")
        assert not study.answered(r, " " + r["icl_answer"]) and not study.answered(r, " ___")
    # with paired draws, half the prompts of each ICL task are math and half blanks: a query-blind constant gets 50%
    for lang in ("en", "vel"):
        assert study.best_constant([r for r in rows if r["lang"] == lang]) == pytest.approx(0.5)
    assert study.best_constant([r for r in rows if r["if_task"] == "math" and r["lang"] == "en"]) == 1.0


# ---- model -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prev_char", [True, False])
def test_cached_batched_greedy_decoding_matches_full_recomputation(prev_char):
    torch.manual_seed(0)
    tok = CharTokenizer.from_texts(["abcdefgh \n:"])
    model = CausalLM(LMConfig(tok.vocab_size, width=32, layers=2, heads=4, max_len=64, prev_char=prev_char)).eval()
    for p in model.parameters():  # larger weights than the init, so that greedy paths differ between prompts
        torch.nn.init.normal_(p, std=0.3)
    prompts = ["abc", "hgfedcba: a", "b", "ab ab ab"]
    got = model.generate([tok.encode(p) for p in prompts], 9)
    assert len({tuple(o) for o in got}) > 1
    for p, out in zip(prompts, got, strict=True):
        ids = tok.encode(p)
        for _ in range(9):
            with torch.no_grad():
                ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
        assert out == ids[len(tok.encode(p)):], p
    backend = CharLMBackend(model, tok, batch_size=2)
    assert isinstance(backend, Backend)
    texts = backend.generate(prompts, 9, stop=("\n",))
    assert [len(t) <= 9 and "\n" not in t for t in texts] == [True] * 4
    lp = backend.loglikelihood([("ab", "c"), ("ab", "cd")])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([tok.encode("abcd")])), -1)[0]
    c, d = tok.index["c"], tok.index["d"]
    assert lp[0] == pytest.approx(float(logp[2, c]), abs=1e-5)
    assert lp[1] == pytest.approx(float(logp[2, c] + logp[3, d]), abs=1e-5)


# ---- config and CLI --------------------------------------------------------------------------------------

def test_config_validation():
    assert resolve_minilm("quick").split == "test"
    for bad in ({"languages": ["en", "fr"]}, {"languages": ["leet"]}, {"width": 30, "heads": 4},
                {"p_icl": 1.5}, {"split": "train"}, {"tune_lr": 0.0}):
        with pytest.raises(ConfigError):
            resolve_minilm("quick", bad)
    with pytest.raises(ConfigError, match="unknown --set key 'widht'"):
        parse_overrides(["widht=3"], MiniLMConfig)
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_minilm("paper")


def test_sweep_registry_knows_minilm():
    from conjugate.sweep import plan_sweep

    plan = plan_sweep("minilm", "smoke", "0,1", ["tune_steps=2,4"], ["languages=en,vel"])
    assert len(plan.runs()) == 4 and plan.overrides == {"languages": ["en", "vel"]}


@pytest.mark.parametrize("args, needle", [
    (["--set", "no_such_key=1"], "unknown --set key 'no_such_key'"),
    (["--set", "languages=en,klingon"], "unknown language 'klingon'"),
    (["--set", "width=abc"], "--set width=abc: expected int"),
    (["--preset", "huge"], "unknown preset 'huge'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    result = runner.invoke(app, ["minilm", "run", "--out", str(tmp_path / "r"), "--quiet", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "summary.json").exists()


# ---- the pipeline ----------------------------------------------------------------------------------------

def test_smoke_run_writes_every_output_with_the_summary_schema(tmp_path):
    out = tmp_path / "smoke"
    result = runner.invoke(app, ["minilm", "run", "--preset", "smoke", "--out", str(out), "--quiet", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "English drop" in result.output
    for name in ("config.json", "summary.json", "table.md", "train_log.jsonl", "outputs.jsonl", "prompts.jsonl",
                 "scores.csv", "corpus_samples.md", "checkpoints/pretrain.safetensors",
                 "checkpoints/tune.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "figures" / "icl_accuracy.png").read_bytes()[:8] == PNG
    s = read_json(out / "summary.json")
    langs = MINILM_PRESETS["smoke"]["languages"]
    assert s["languages"] == langs and s["seed"] == 3
    for key in ("pretrained", "tuned", "tuned_conjugate"):
        assert set(s["icl_accuracy"][key]) == set(langs)
        assert all(0.0 <= v <= 1.0 for v in s["icl_accuracy"][key].values())
    assert s["icl_accuracy"]["tuned_conjugate"]["en"] == s["icl_accuracy"]["tuned"]["en"]  # identity map
    assert set(s["if_rate"]) >= {"pretrained", "tuned"}
    assert set(s["baselines"]) == set(study.BASELINES)
    assert all(0.0 <= v <= 1.0 for b in s["baselines"].values() for v in b.values())
    assert s["english_drop"] == pytest.approx(s["icl_accuracy"]["pretrained"]["en"] - s["icl_accuracy"]["tuned"]["en"])
    assert isinstance(s["seconds"], float) and s["seconds"] > 0
    assert s["n_prompts_per_language"] == {lang: 4 * MINILM_PRESETS["smoke"]["eval_prompts"] for lang in langs}
    cfg = read_json(out / "config.json")
    assert cfg["config"] == resolve_minilm("smoke").to_dict() and cfg["seed"] == 3
    model, tok, meta = load_lm(out / "checkpoints" / "tune.safetensors")
    assert meta["stage"] == "tune" and tok.vocab_size == model.cfg.vocab
    assert "| en |" in (out / "table.md").read_text()


def tiny(**kw) -> MiniLMConfig:
    base = dict(width=16, layers=1, heads=2, pretrain_steps=6, pretrain_batch=4, pretrain_warmup=0, tune_steps=4,
                tune_batch=4, eval_prompts=1, val_prompts=1, qa_prompts=1, checkpoint_every=2,
                chunks=2, languages=["en", "piglatin"])
    return MiniLMConfig(**{**base, **kw}).validate()


def test_rerun_skips_finished_stages_and_interrupted_training_resumes_exactly(tmp_path):
    cfg = tiny()
    ref = study.run_minilm(cfg, tmp_path / "ref", seed=1, show_progress=False)
    # a rerun recomputes nothing: same summary, no new log rows or outputs
    log, outs = (tmp_path / "ref" / "train_log.jsonl").read_text(), (tmp_path / "ref" / "outputs.jsonl").read_text()
    again = study.run_minilm(cfg, tmp_path / "ref", seed=1, show_progress=False)
    assert again["icl_accuracy"] == ref["icl_accuracy"] and again["seconds"] == ref["seconds"]
    assert (tmp_path / "ref" / "train_log.jsonl").read_text() == log
    assert (tmp_path / "ref" / "outputs.jsonl").read_text() == outs
    # interrupted in pretraining, then in tuning: the resumed run ends with the same weights and numbers
    with pytest.raises(Interrupted):
        study.run_minilm(cfg, tmp_path / "cut", seed=1, show_progress=False, stop_after=3)
    assert not (tmp_path / "cut" / ".stages" / "pretrain.done").exists()
    with pytest.raises(Interrupted):  # pretraining resumes and finishes, tuning stops after 3 of 4 steps
        study.run_minilm(cfg, tmp_path / "cut", seed=1, show_progress=False, stop_after=3)
    assert (tmp_path / "cut" / ".stages" / "pretrain.done").exists()
    resumed = study.run_minilm(cfg, tmp_path / "cut", seed=1, show_progress=False)
    for stage in study.STAGES:
        a = load_lm(tmp_path / "ref" / "checkpoints" / f"{stage}.safetensors")[0].state_dict()
        b = load_lm(tmp_path / "cut" / "checkpoints" / f"{stage}.safetensors")[0].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), stage
    assert resumed["icl_accuracy"] == ref["icl_accuracy"]
    # too few new tokens for the longest answer is refused before any training
    with pytest.raises(ConfigError, match="max_new_tokens=3"):
        study.run_minilm(tiny(max_new_tokens=3), tmp_path / "short", seed=1, show_progress=False)
    assert not (tmp_path / "short" / "checkpoints").exists()
    # a different config in the same folder is refused
    with pytest.raises(ConfigError, match="different config"):
        study.run_minilm(tiny(tune_steps=5), tmp_path / "ref", seed=1, show_progress=False)
