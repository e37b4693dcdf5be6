"""The miniature ICL-vs-IF study as one pipeline: pretrain → instruction-tune → evaluate → table and figure.

1. **Pretrain** a character-level :class:`~conjugate.minilm.model.CausalLM` on the multilingual corpus of
   :mod:`conjugate.minilm.corpus` (in-context and question-answer documents in every language; loss on every
   character).
2. **Instruction-tune** it on English question-answer documents only, with the loss on the answer only.
3. **Evaluate** both models on held-out ICL-vs-IF prompts in every language (greedy decoding, batched, through
   the ICL-vs-IF study's generation and scoring code): ICL accuracy, instruction-following rate, and the same
   with conjugate prompting (the English prompt mapped into each language, the answer mapped back), next to
   what copy-the-instruction, answer-the-question and repeat-the-last-exemplar strategies would score.

Training runs the loop every study shares (:func:`conjugate.training.train_stage`: exact resume from
checkpoints, Ctrl-C safe) with a masked cross-entropy. Every stage writes a marker when it finishes; a rerun
skips finished stages, resumes interrupted training, and reuses every generated output.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import share
from ..config import ConfigError
from ..lm.icl_vs_if.build import write_dataset
from ..lm.icl_vs_if.report import table_markdown
from ..lm.icl_vs_if.score import aggregate, icl_correct, score_row, scores_csv
from ..lm.report import pct
from ..lm.runner import in_chunks
from ..runs import RunDir, atomic_write_text, read_json, read_jsonl, write_json
from ..studyrun import start_run
from ..training import StageSpec, finish_stage, train_stage
from . import corpus as C
from .config import MiniLMConfig
from .model import PAD, CausalLM, CharLMBackend, CharTokenizer, LMConfig, load_lm

STAGES = ("pretrain", "tune")
MODELS = ("pretrained", "tuned")
BASELINES = ("copy_instruction", "answer_question", "repeat_last_exemplar", "best_constant")
LONG_BLANK = "_" * 24  # longer than any blank: starts with every blank's ICL answer


# ---- data → tensors ------------------------------------------------------------------------------------

def build_tokenizer() -> CharTokenizer:
    """One alphabet for every language the corpus knows (so checkpoints do not depend on the config)."""
    texts = ["0123456789_?:.,!'-\n "]
    for lang in C.LANGUAGES:
        L = C.language(lang)
        p = L.pack
        texts += [*p.sentences, *p.instructions.values(), p.input_label, p.output_label, *p.math.values(),
                  *L.qa_instructions.values()]
    return CharTokenizer.from_texts(texts)


@dataclass
class TokenBatch:
    """Documents as length-sorted padded chunks ``(tokens (b, t), loss mask (b, t))``: less padding per step."""

    chunks: list[tuple[torch.Tensor, torch.Tensor]]


def encode_docs(docs: Sequence[C.Doc], tok: CharTokenizer, chunks: int, answer_only: bool,
                device: torch.device | str = "cpu") -> TokenBatch:
    """Token ids ``BOS + text + newline``; the mask marks the tokens the loss predicts (every one, or only
    the final answer and its newline when ``answer_only``)."""
    seqs = sorted(((tok.encode(d.text + "\n"), d.answer_start) for d in docs), key=lambda s: len(s[0]))
    size = -(-len(seqs) // chunks)
    out = []
    for start in range(0, len(seqs), size):
        part = seqs[start:start + size]
        t = max(len(s) for s, _ in part)
        tokens = torch.full((len(part), t), PAD, dtype=torch.long)
        mask = torch.zeros((len(part), t), dtype=torch.bool)
        for i, (s, ans) in enumerate(part):
            tokens[i, :len(s)] = torch.as_tensor(s)
            mask[i, (ans + 1 if answer_only else 1):len(s)] = True  # token j is character j - 1
        out.append((tokens.to(device), mask.to(device)))
    return TokenBatch(out)


def lm_loss(forward: Callable[[torch.Tensor], torch.Tensor], batch: TokenBatch) -> torch.Tensor:
    """Mean next-character cross-entropy over the masked tokens of every chunk."""
    total, count = 0.0, 0
    for tokens, mask in batch.chunks:
        logits = forward(tokens[:, :-1])
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none")
        m = mask[:, 1:].flatten()
        total = total + (ce * m).sum()
        count += int(m.sum())
    return total / max(count, 1)


def corpus_spec(cfg: MiniLMConfig) -> C.CorpusSpec:
    return C.CorpusSpec(tuple(cfg.languages), cfg.p_icl, cfg.p_question_query, cfg.p_no_instruction, cfg.max_shots,
                        cfg.max_qa_shots)


def splits_for(cfg: MiniLMConfig) -> C.Splits:
    n = len(C.language("en").pack.sentences)
    return C.make_splits(n, cfg.val_sentences, cfg.test_sentences, cfg.val_problems, cfg.test_problems,
                         cfg.split_seed)


def make_sampler(stage: str, cfg: MiniLMConfig, splits: C.Splits, tok: CharTokenizer,
                 device: torch.device) -> Callable[[int, torch.Generator], TokenBatch]:
    """``sampler(batch, generator)``: fresh documents for one step, a pure function of the generator (so a
    resumed run draws exactly the batches an uninterrupted one would)."""
    spec = corpus_spec(cfg)
    make = C.pretrain_doc if stage == "pretrain" else C.tune_doc

    def sampler(batch: int, gen: torch.Generator) -> TokenBatch:
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device)))
        docs: list[C.Doc] = []
        while len(docs) < batch:
            d = make(rng, splits, spec)
            if len(d.text) + 2 <= cfg.max_len:
                docs.append(d)
        return encode_docs(docs, tok, cfg.chunks, answer_only=stage == "tune", device=device)

    return sampler


def mean_doc_length(cfg: MiniLMConfig, splits: C.Splits, stage: str, n: int = 200) -> int:
    """Average tokens per document of a stage (for the throughput statistics only)."""
    rng, spec = random.Random(f"minilm-length:{stage}"), corpus_spec(cfg)
    make = C.pretrain_doc if stage == "pretrain" else C.tune_doc
    return round(statistics.fmean(len(make(rng, splits, spec).text) + 2 for _ in range(n)))


# ---- training ------------------------------------------------------------------------------------------

def model_config(cfg: MiniLMConfig, tok: CharTokenizer) -> LMConfig:
    return LMConfig(vocab=tok.vocab_size, width=cfg.width, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len,
                    prev_char=cfg.prev_char)


def stage_spec(cfg: MiniLMConfig, stage: str) -> StageSpec:
    return StageSpec(stage, getattr(cfg, f"{stage}_steps"), getattr(cfg, f"{stage}_batch"),
                     getattr(cfg, f"{stage}_lr"), getattr(cfg, f"{stage}_warmup"), cfg.weight_decay, cfg.grad_clip)


def train_model(cfg: MiniLMConfig, run: RunDir, seed: int, device: torch.device, stage: str,
                init: CausalLM | None, tok: CharTokenizer, splits: C.Splits, show_progress: bool = True,
                stop_after: int | None = None, pretrain_cache: Path | None = None) -> CausalLM:
    """Run (or resume, or skip) one training stage and return its model; with ``pretrain_cache``, pretraining
    is shared with every run of the same pretraining (:mod:`conjugate.share`)."""
    ckpt = run.finished_checkpoint(stage, run.path("checkpoints", f"{stage}.safetensors"))
    if ckpt is not None:
        return load_lm(ckpt, device)[0]
    if stage == "pretrain" and pretrain_cache is not None:
        return share.shared_stage(
            run, pretrain_cache, share.fields_before(cfg, cfg.AFTER_PRETRAINING), seed, device.type,
            train=lambda: train_model(cfg, run, seed, device, stage, None, tok, splits, show_progress, stop_after),
            load=lambda path: load_lm(path, device)[0])
    torch.manual_seed(seed)
    model = CausalLM(model_config(cfg, tok))
    if init is not None:
        model.load_state_dict(init.state_dict())
    model.to(device)
    spec = stage_spec(cfg, stage)
    stats = train_stage(model, spec, make_sampler(stage, cfg, splits, tok, device), seed=seed, workdir=run.root,
                        device=device, checkpoint_every=cfg.checkpoint_every, log_every=10,
                        show_progress=show_progress, stop_after=stop_after, loss_fn=lm_loss,
                        tokens_per_example=mean_doc_length(cfg, splits, stage))
    path = finish_stage(model, spec, run.root, {"stage": stage, "seed": seed, "chars": tok.chars})
    run.mark_done(stage, stats, checkpoint=path)
    return model


# ---- evaluation ----------------------------------------------------------------------------------------

def eval_prompts(cfg: MiniLMConfig, splits: C.Splits) -> dict[str, list[dict]]:
    """ICL-vs-IF rows (``icl``), their conjugate-prompting versions (``conj``) and question-answer rows (``qa``)
    of the validation split and, unless ``split`` is ``val``, of the test split."""
    shots, seed = cfg.shots, cfg.split_seed
    out: dict[str, list[dict]] = {"icl": [], "conj": [], "qa": []}
    for split, n in (("val", cfg.val_prompts), ("test", cfg.eval_prompts)):
        if split == "test" and cfg.split == "val":
            continue
        rows = C.eval_rows(cfg.languages, n, shots, splits, split, seed)
        out["icl"] += rows
        out["conj"] += C.conjugate_rows(rows)
        out["qa"] += C.qa_rows(cfg.languages, cfg.qa_prompts, shots, splits, split, seed)
    need = 1 + max(len(r["icl_answer"]) for r in out["icl"] + out["conj"])
    if cfg.max_new_tokens < need:
        raise ConfigError(f"max_new_tokens={cfg.max_new_tokens} cannot hold the longest ICL answer of these prompts "
                          f"(a space and {need - 1} characters); use at least {need}")
    return out


def _prompt_sha(prompt: str) -> str:
    import hashlib

    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def load_outputs(path: Path, rows: Sequence[dict], max_new_tokens: int) -> dict[tuple[str, str], str]:
    """(model, id) → output for finished generations in ``path`` that match the current prompts and settings.
    The miniature models live in this run folder, so their outputs are kept here, not in the request cache."""
    want = {r["id"]: _prompt_sha(r["prompt"]) for r in rows}
    return {(rec["model"], rec["id"]): rec["output"] for rec in read_jsonl(path)
            if want.get(rec.get("id")) == rec.get("prompt_sha") and rec.get("max_new_tokens") == max_new_tokens}


def generate_missing(backend: CharLMBackend, model: str, rows: Sequence[dict], outputs: Path, cache: dict,
                     max_new_tokens: int, chunk: int, advance: Callable[[int], None]) -> int:
    """Generate every row not in ``cache``, appending each chunk's outputs to ``outputs`` as it completes."""
    def generate(part: Sequence[dict]) -> list[dict]:
        outs = backend.generate([r["prompt"] for r in part], max_new_tokens, stop=("\n",))
        return [{"model": model, "id": r["id"], "prompt_sha": _prompt_sha(r["prompt"]),
                 "max_new_tokens": max_new_tokens, "output": o} for r, o in zip(part, outs, strict=True)]

    done = in_chunks([r for r in rows if (model, r["id"]) not in cache], chunk, generate, outputs, advance)
    cache.update({(model, r["id"]): r["output"] for r in done})
    return len(done)


def generate_all(models: dict[str, CausalLM], tok: CharTokenizer, rows: list[dict], path: Path,
                 cfg: MiniLMConfig, show_progress: bool) -> dict[tuple[str, str], str]:
    """Greedy outputs of every model on every row, appended to ``path`` chunk by chunk; a rerun reuses them.
    Rows with the same prompt (a conjugate prompt equal to the in-language one) are generated once."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    first = {}
    for r in rows:
        first.setdefault(r["prompt"], r)
    unique = list(first.values())
    cache = load_outputs(path, unique, cfg.max_new_tokens)
    todo = sum((m, r["id"]) not in cache for m in models for r in unique)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), disable=not show_progress or not todo) as bar:
        task = bar.add_task("generate", total=todo)
        for name, model in models.items():
            backend = CharLMBackend(model, tok, name=name, batch_size=cfg.eval_batch)
            generate_missing(backend, name, unique, path, cache, cfg.max_new_tokens, cfg.eval_batch,
                             lambda n: bar.advance(task, n))
    return {(m, r["id"]): cache[(m, first[r["prompt"]]["id"])] for m in models for r in rows}


def baseline_output(row: dict, strategy: str) -> str:
    """What a model following ``strategy`` would write after the prompt's last ``Output:``."""
    blocks = row["prompt"].split("\n\n")
    if strategy == "copy_instruction":
        return " " + blocks[0]
    if strategy == "answer_question":
        return " " + row["if_answer"]
    if strategy == "repeat_last_exemplar":
        return " " + blocks[-2].split("\n", 1)[1].split(": ", 1)[1] if len(blocks) > 2 else ""
    raise ValueError(f"unknown baseline {strategy!r}")


def best_constant(rows: Sequence[dict]) -> float:
    """ICL accuracy of the best query-blind strategy: one fixed output per ICL task (chosen with hindsight on these
    very prompts, so an upper bound), e.g. always ``What`` or always a long blank. A model must read the query to
    beat it."""
    by_task: dict = defaultdict(list)
    for r in rows:
        by_task[r["icl_task"]].append(r)
    hits = 0
    for task_rows in by_task.values():
        candidates = {r["icl_answer"] for r in task_rows} | {LONG_BLANK}
        hits += max(sum(icl_correct(" " + c, r["icl_answer"]) for r in task_rows) for c in candidates)
    return hits / len(rows) if rows else float("nan")


def answered(row: dict, output: str) -> bool:
    """The output is not ICL-correct and reads as an answer to the query: a number for a math question, a word
    (not underscores) for a blank. Looser than the IF rate, which needs the *right* answer."""
    if icl_correct(output, row["icl_answer"]):
        return False
    head = output.strip()
    if row["if_task"] == "math":
        return head[:1].isdigit()
    return head[:1].isalpha()


def _mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def score_split(rows: list[dict], conj_rows: list[dict], qa: list[dict], outputs: dict, langs: Sequence[str],
                models: Sequence[str]) -> dict:
    """Every number of one split: in-language and conjugate scores, answer rates, baselines, QA accuracy.

    Conjugate prompting in language ``L``: the output on ``s_L(English prompt)`` is mapped back with ``s_L⁻¹`` and
    scored against the English answers; in English it is the plain English score."""
    scored, conj = [], []
    answer: dict = defaultdict(lambda: defaultdict(list))
    for m in models:
        for r in rows:
            out = outputs[(m, r["id"])]
            scored.append(score_row(r, out, m))
            answer[m][r["lang"]].append(answered(r, out))
        for r in [*(r for r in rows if r["lang"] == "en"), *conj_rows]:
            back = C.conjugate_map(r["lang"]).invert(outputs[(m, r["id"])])  # the answer mapped back to English
            conj.append(score_row(r, back, f"{m}_conjugate"))
            answer[f"{m}_conjugate"][r["lang"]].append(answered(r, back))
    agg = aggregate(scored, list(models))
    agg_c = aggregate(conj, [f"{m}_conjugate" for m in models])
    base: dict = {b: {lang: _mean([icl_correct(baseline_output(r, b), r["icl_answer"]) for r in rows
                                   if r["lang"] == lang]) for lang in langs} for b in BASELINES[:3]}
    base["best_constant"] = {lang: best_constant([r for r in rows if r["lang"] == lang]) for lang in langs}
    qa_acc: dict = {}
    for m in models:
        for q in qa:
            words = outputs[(m, q["id"])].split()
            qa_acc.setdefault(m, {}).setdefault(q["lang"], {}).setdefault(q["qtype"], []).append(
                bool(words) and words[0] == q["answer"])
    names = [*models, *(f"{m}_conjugate" for m in models)]
    return {
        "icl_accuracy": {**agg["accuracy"], **agg_c["accuracy"]},
        "if_rate": {**agg["if_rate"], **agg_c["if_rate"]},
        "answer_rate": {m: {lang: _mean(answer[m][lang]) for lang in langs} for m in names},
        "icl_accuracy_by_task": {**agg["accuracy_by_task"], **agg_c["accuracy_by_task"]},
        "baselines": base,
        "qa_accuracy": {m: {lang: {t: _mean(v) for t, v in per.items()} for lang, per in d.items()}
                        for m, d in qa_acc.items()},
        "n": agg["n"],
        "scored": scored + conj,
    }


def drops(acc: dict, langs: Sequence[str], tuned: str = "tuned") -> dict:
    """Drop pretrained → ``tuned`` per language; English's, and the mean and spread over the other languages."""
    d = {lang: acc["pretrained"][lang] - acc[tuned][lang] for lang in langs}
    others = [d[lang] for lang in langs if lang != "en"]
    return {"drop": d, "english_drop": d["en"], "other_drop_mean": _mean(others),
            "other_drop_min": min(others, default=float("nan")), "other_drop_max": max(others, default=float("nan")),
            "drop_gap": d["en"] - _mean(others)}


def summarise(cfg: MiniLMConfig, preset: str, seed: int, result: dict, val: dict, seconds: float) -> dict:
    """``summary.json``: the issue's schema plus drops, answer rates, QA accuracy and the validation numbers."""
    langs = cfg.languages
    pick = lambda d, keys: {k: d[k] for k in keys}  # noqa: E731
    four = ("pretrained", "tuned", "pretrained_conjugate", "tuned_conjugate")
    d = drops(result["icl_accuracy"], langs)
    return {
        "preset": preset, "seed": seed, "split": cfg.split, "languages": list(langs),
        "icl_accuracy": pick(result["icl_accuracy"], four),
        "if_rate": pick(result["if_rate"], four),
        "answer_rate": pick(result["answer_rate"], four),
        "baselines": result["baselines"],
        **d,
        "drop_conjugate": drops({"pretrained": result["icl_accuracy"]["pretrained"],
                                 "tuned": result["icl_accuracy"]["tuned_conjugate"]}, langs)["drop"],
        "icl_accuracy_by_task": pick(result["icl_accuracy_by_task"], ("pretrained", "tuned")),
        "qa_accuracy": result["qa_accuracy"],
        "n_prompts_per_language": result["n"],
        "validation": {"icl_accuracy": pick(val["icl_accuracy"], ("pretrained", "tuned")),
                       "answer_rate": pick(val["answer_rate"], ("pretrained", "tuned")),
                       "qa_accuracy": val["qa_accuracy"],
                       **{k: v for k, v in drops(val["icl_accuracy"], langs).items() if k != "drop"}},
        "seconds": seconds,
    }


# ---- the pipeline --------------------------------------------------------------------------------------

def write_samples(path: Path, cfg: MiniLMConfig, splits: C.Splits) -> Path:
    """A few training documents of each stage, to see what the model reads."""
    rng, spec = random.Random("minilm-samples"), corpus_spec(cfg)
    parts = ["# Corpus samples", ""]
    for title, make, n in (("Pretraining", C.pretrain_doc, 6), ("Instruction tuning (loss on the answer)",
                                                                  C.tune_doc, 2)):
        parts += [f"## {title}", ""]
        for _ in range(n):
            d = make(rng, splits, spec)
            parts += [f"`{d.lang}` · {d.kind}", "", "```", d.text, "```", ""]
    return atomic_write_text(path, "\n".join(parts))


def run_minilm(cfg: MiniLMConfig, out: str | Path, *, preset: str = "custom", seed: int = 0, device: str = "auto",
               show_progress: bool = True, stop_after: int | None = None,
               pretrain_cache: str | Path | None = None) -> dict:
    """The whole pipeline into ``out``; returns the summary. Finished stages are skipped on rerun.
    ``pretrain_cache``: a folder through which runs of the same pretraining share it (:mod:`conjugate.share`)."""
    run, dev = start_run(cfg, out, seed, device, pretrain_cache, "minilm run")
    with run:
        tok, splits = build_tokenizer(), splits_for(cfg)
        prompts = eval_prompts(cfg, splits)  # builds and checks every evaluation prompt before any training
        if not run.path("config.json").exists():
            sizes = {"split_sizes": {k: len(v) for k, v in splits.sentences.items()},
                     "problem_split_sizes": {k: len(v) for k, v in splits.problems.items()}}
            run.write_config(cfg.to_dict(), seed, {"preset": preset, "device": str(dev), "study": "minilm", **sizes})
            write_samples(run.path("corpus_samples.md"), cfg, splits)
        t0 = time.perf_counter()
        pre = train_model(cfg, run, seed, dev, "pretrain", None, tok, splits, show_progress, stop_after,
                          Path(pretrain_cache) if pretrain_cache is not None else None)
        tuned = train_model(cfg, run, seed, dev, "tune", pre, tok, splits, show_progress, stop_after)
        saved = run.outputs("evaluate", "summary.json")
        if saved is not None:
            summary = saved[0]
        else:
            t_eval = time.perf_counter()
            write_dataset(prompts["icl"], run.path("prompts.jsonl"))
            outputs = generate_all({"pretrained": pre, "tuned": tuned}, tok,
                                   prompts["icl"] + prompts["conj"] + prompts["qa"], run.path("outputs.jsonl"), cfg,
                                   show_progress)
            per_split = {s: score_split(*([r for r in prompts[k] if r["split"] == s] for k in ("icl", "conj", "qa")),
                                        outputs, cfg.languages, MODELS)
                         for s in dict.fromkeys(r["split"] for r in prompts["icl"])}
            result = per_split[cfg.split]
            atomic_write_text(run.path("scores.csv"), scores_csv(result["scored"]))
            run.mark_done("evaluate", {"seconds": time.perf_counter() - t_eval})
            seconds = sum(read_json(run.path(".stages", f"{s}.done")).get("seconds", 0.0) for s in STAGES) + \
                read_json(run.path(".stages", "evaluate.done"))["seconds"]
            summary = summarise(cfg, preset, seed, result, per_split["val"], seconds)
            summary["throughput"] = {s: {k: read_json(run.path(".stages", f"{s}.done")).get(k)
                                         for k in ("steps_per_s", "tokens_per_s")} for s in STAGES}
            summary["threads"] = torch.get_num_threads()
            summary["pretrain_reused"] = "reused_from" in read_json(run.path(".stages", "pretrain.done"))
        from .plots import plot_summary

        plot_summary(summary, run.path("figures", "icl_accuracy.png"))
        atomic_write_text(run.path("table.md"), table(summary, cfg))
        if saved is None:  # last: a folder with summary.json is a finished run (sweeps skip it)
            write_json(run.path("summary.json"), summary)
        summary["wall_seconds_this_call"] = time.perf_counter() - t0
        return summary


# ---- the table -----------------------------------------------------------------------------------------


def table(s: dict, cfg: MiniLMConfig) -> str:
    """``table.md``: the ICL-vs-IF table (shared with the full-size study), then baselines, answer rates, QA
    accuracy and the validation split."""
    langs = s["languages"]
    acc = s["icl_accuracy"]
    view = {"models": ["pretrained", "tuned", "tuned_conjugate"], "languages": langs,
            "accuracy": {m: acc[m] for m in ("pretrained", "tuned", "tuned_conjugate")},
            "if_rate": {m: s["if_rate"][m] for m in ("pretrained", "tuned", "tuned_conjugate")},
            "n": s["n_prompts_per_language"],
            "drop": {"tuned": s["drop"], "tuned_conjugate": s["drop_conjugate"]}}
    lines = [f"# Miniature ICL vs instruction following — preset `{s['preset']}`, seed {s['seed']}, "
             f"split `{s['split']}`", "",
             f"Character-level model {cfg.width} wide × {cfg.layers} layers × {cfg.heads} heads; "
             f"{cfg.pretrain_steps} pretraining steps (batch {cfg.pretrain_batch}) on {', '.join(langs)}; "
             f"{cfg.tune_steps} English instruction-tuning steps (batch {cfg.tune_batch}, lr {cfg.tune_lr:g}). "
             f"`tuned_conjugate`: the English prompt mapped into the language, the output mapped back.", "",
             f"- English drop: **{pct(s['english_drop'])}** points; mean drop over the other languages: "
             f"**{pct(s['other_drop_mean'])}** (range {pct(s['other_drop_min'])} … {pct(s['other_drop_max'])}).",
             f"- Wall time: {s['seconds']:.0f} s.", "",
             table_markdown(view).replace("## ", "### "),
             "### Answer rate (%)", "",
             "Outputs that are not ICL-correct but answer the query (a number for math, a word for a blank).", "",
             "| language | " + " | ".join(s["answer_rate"]) + " |", "|" + "---|" * (len(s["answer_rate"]) + 1)]
    lines += [f"| {lang} | " + " | ".join(pct(v[lang]) for v in s["answer_rate"].values()) + " |" for lang in langs]
    lines += ["", "### Baselines: ICL accuracy of fixed strategies (%)", "",
              "| language | " + " | ".join(BASELINES) + " |", "|" + "---|" * (len(BASELINES) + 1)]
    lines += [f"| {lang} | " + " | ".join(pct(s["baselines"][b][lang]) for b in BASELINES) + " |" for lang in langs]
    lines += ["", "### Question answering on held-out questions (% exact)", "",
              "| language | " + " | ".join(f"{m} {t}" for m in MODELS for t in ("math", "fillblank")) + " |",
              "|" + "---|" * 5]
    lines += [f"| {lang} | " + " | ".join(pct(s["qa_accuracy"][m][lang][t]) for m in MODELS
                                         for t in ("math", "fillblank")) + " |" for lang in langs]
    v = s["validation"]
    lines += ["", "### Validation split (settings were chosen on this split only)", "",
              "| language | pretrained | tuned |", "|---|---|---|"]
    lines += [f"| {lang} | {pct(v['icl_accuracy']['pretrained'][lang])} | {pct(v['icl_accuracy']['tuned'][lang])} |"
              for lang in langs]
    lines += ["", f"English drop {pct(v['english_drop'])}, mean other-language drop {pct(v['other_drop_mean'])}.",
              "", "![ICL accuracy](figures/icl_accuracy.png)", ""]
    return "\n".join(lines)
