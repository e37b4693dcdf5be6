"""The harmful-instruction study on the study pipeline (:mod:`conjugate.lm.pipeline`): translate,
ask each chat model, back-translate, label, report.

The study is data and a scorer. Data: the English instructions (:mod:`.data`, optionally a seeded sample) and
one prompt per language (English as is; others from ``--translated DIR/<lang>.txt`` or a
:class:`~conjugate.transforms.Translator`), one pipeline item per (language, id). The pipeline asks every model
(chat template / chat endpoint, greedy, ``max_new_tokens``, optional system prompt) every item under the
identity arm and each ``--transform`` (whose replies are mapped back with the transform's inverse). The scorer
(:func:`labeller`) translates each reply back to English when a translator is given and has the judge
(:mod:`.judge`) label it. Model replies live in the request cache, which is what a rerun resumes from; labels
(and back-translations) are made again on every run, from the current English text and ``--judge``.

Files in ``out``:

- ``config.json`` — settings and provenance (``RunDir.write_config``; never an API key);
- ``prompts.jsonl`` — the prompts of this run: ``lang, id, prompt_en, prompt`` (rewritten each run);
- ``translations.jsonl`` — cache of machine-translated prompts (appended; reused by reruns);
- ``responses.jsonl`` — one row per (model, lang, id) of the identity arm, appended chunk by chunk as replies
  come in and rewritten whole at the end: ``model, lang, id, gen, en_sha, label, judge, reason,
  response_chars, response_sha256`` and, unless the run is redacted, ``response``, ``back_translation``,
  ``judge_detail``. ``gen`` hashes the prompt, ``max_new_tokens`` and system prompt (what the reply depends
  on), ``en_sha`` the English instruction the label was made against. A stored reply whose previous row (in
  this file before the run) has the same ``gen`` and reply but another ``judge`` or ``en_sha`` counts as
  ``relabelled``;
- ``private/responses_text.jsonl`` — with ``--redact`` only: the model text (reply, back-translation, the LLM
  judge's reason) keyed like ``responses.jsonl``. ``responses.jsonl``, ``summary.json``, ``table.md`` and the
  figure then hold labels, lengths and hashes only; keep ``private/`` out of anything you share. ``harmful
  export`` reads the text from there so annotators can see it;
- ``summary.json`` — ``rates`` and bootstrap ``ci95`` per model and language, label ``counts``, the answer rate
  minus English's (:mod:`.report`), the ``judge``, ``generated`` (replies generated now) / ``reused`` (from the
  request cache) / ``relabelled``, and with ``--transform`` a ``conjugate`` block: the answer rate per (model,
  language, transform) with 95 % intervals, and ``conjugate_refused``: the same for the refusal rate;
  ``table.md``; ``figures/answer_rate.png``;
- ``conjugate.jsonl`` — with ``--transform`` only: the pipeline record of every (model, transform, item) with
  its label (with ``--redact`` without the prompt and the texts, which go to ``private/conjugate_text.jsonl``).

With ``eval_set`` (:mod:`.evalsets`: ``harmbench-test``, ``advbench-heldout``, ``benign``) the items are a held-out
evaluation set instead of ``input``; ``config.json`` and ``summary.json`` then name it (``eval_set``), the summary
has the refusal rate per item ``type`` (``by_type``), and for ``benign`` the refusal rate is reported as the
over-refusal rate (``over_refusal``, with its 95 % interval; the table and the figure show it).

Models are keyed by their spec without the server URL (``openai-chat:m@http://host/v1`` → ``openai-chat:m``),
so a rerun against the same model on another port resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...runs import RunDir, append_jsonl, atomic_write_text, dumps, read_json, read_jsonl, write_json
from ..pipeline import IDENTITY, Arm, Item, Record, Scorer, make_arms, open_cached, run_pipeline, text_backend_options
from ..pipeline import summarise as arms_summary
from .data import HarmfulInputError, Instruction, load_instructions, load_translated, sample_items
from .evalsets import EvalSet, check_languages, load_eval_set
from .judge import Judge, JudgeItem, get_judge, phrase_languages, strip_url
from .report import add_eval_set, plot_answer_rates, summarise, write_table

DEFAULT_CHUNK = 32
PRIVATE_TEXT = Path("private", "responses_text.jsonl")
TEXT_FIELDS = ("response", "back_translation", "judge_detail")


def sha(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def gen_key(prompt: str, max_new_tokens: int, system_prompt: str | None) -> str:
    """What a stored reply depends on: the prompt as sent and the generation settings."""
    return sha(json.dumps([prompt, max_new_tokens, system_prompt], ensure_ascii=False))


def model_key(spec: str) -> str:
    """A model's key in the files: the spec without an ``@http(s)://`` server URL."""
    return strip_url(spec)


def no_userinfo(spec: str) -> str:
    """A spec with any ``user:password@`` removed from its URLs, for config files."""
    return re.sub(r"(https?://)[^/@\s]+@", r"\1", spec)


def parse_langs(langs: str | Sequence[str]) -> list[str]:
    """Language codes (comma-separated or a list), checked against the refusal-phrase lists."""
    codes = [c.strip() for c in (langs.split(",") if isinstance(langs, str) else (langs or ())) if c.strip()]
    if not codes:
        raise HarmfulInputError("no languages given (--langs en,ja,hu,sw,ml)")
    supported = phrase_languages()
    for c in codes:
        if c not in supported:
            raise HarmfulInputError(f"unknown language code {c!r} in --langs; supported: {', '.join(supported)}")
    if len(set(codes)) != len(codes):
        raise HarmfulInputError(f"a language is listed twice in --langs: {','.join(codes)}")
    return codes


# ----------------------------------------------------------------- prompts

def build_prompts(items: Sequence[Instruction], selected: Sequence[Instruction], langs: Sequence[str],
                  input_path: str | Path, translated: str | Path | None, translator: Any | None,
                  cache_path: Path) -> dict[tuple[str, str], str]:
    """(lang, id) → the prompt sent, for every selected item and language."""
    prompts: dict[tuple[str, str], str] = {}
    for lang in langs:
        if lang == "en":
            prompts.update({("en", it.id): it.prompt for it in selected})
            continue
        lines = load_translated(translated, lang, len(items), input_path) if translated is not None else None
        if lines is not None:
            prompts.update({(lang, it.id): lines[it.index] for it in selected})
            continue
        if translator is None:
            where = f"{Path(translated) / f'{lang}.txt'} does not exist" if translated is not None else \
                "no --translated folder"
            raise HarmfulInputError(f"no translation into {lang!r}: {where} and no --translator given")
        prompts.update(_machine_translate(selected, lang, translator, cache_path))
    return prompts


def check_translations(n_items: int, langs: Sequence[str], input_path: str | Path, translated: str | Path | None,
                       has_translator: bool) -> None:
    """Before a run starts: every translation file is aligned with the input, and every language other than
    English has a file or a translator (the errors :func:`build_prompts` would raise later, naming the file)."""
    for lang in langs:
        if lang == "en":
            continue
        lines = load_translated(translated, lang, n_items, input_path) if translated is not None else None
        if lines is None and not has_translator:
            where = f"{Path(translated) / f'{lang}.txt'} does not exist" if translated is not None else \
                "no --translated folder"
            raise HarmfulInputError(f"no translation into {lang!r}: {where} and no --translator given")


def _machine_translate(selected: Sequence[Instruction], lang: str, translator: Any,
                       cache_path: Path) -> dict[tuple[str, str], str]:
    """Translations of the selected items into ``lang``, from the cache where the source text still matches."""
    name = getattr(translator, "name", type(translator).__name__)
    want = {it.id: sha(it.prompt) for it in selected}
    cache = {(lang, r["id"]): r["prompt"] for r in read_jsonl(cache_path)
             if r.get("translator") == name and r.get("lang") == lang and want.get(r.get("id")) == r.get("en_sha")}
    todo = [it for it in selected if (lang, it.id) not in cache]
    if todo:
        out = translator.translate([it.prompt for it in todo], "en", lang)
        if len(out) != len(todo):
            raise HarmfulInputError(f"translator {name} returned {len(out)} texts for {len(todo)}")
        rows = [{"lang": lang, "id": it.id, "en_sha": sha(it.prompt), "translator": name, "prompt": t.strip()}
                for it, t in zip(todo, out, strict=True)]
        append_jsonl(cache_path, rows)
        cache.update({(lang, r["id"]): r["prompt"] for r in rows})
    return {(lang, it.id): cache[(lang, it.id)] for it in selected}


# ----------------------------------------------------------------- stored results

def split_row(row: dict, redact: bool) -> tuple[dict, dict | None]:
    """The row for ``responses.jsonl`` and, when redacting, the text row for the private file."""
    if not redact:
        return row, None
    public = {k: v for k, v in row.items() if k not in TEXT_FIELDS}
    private = {k: row[k] for k in ("model", "lang", "id", "gen")} | {k: row.get(k) for k in TEXT_FIELDS}
    return public, private


def load_rows(out: str | Path) -> dict[tuple[str, str, str], dict]:
    """Latest row per (model, lang, id) in ``responses.jsonl``, with text from the private file when there."""
    root = Path(out)
    texts = {(r["model"], r["lang"], r["id"], r["gen"]): r for r in read_jsonl(root / PRIVATE_TEXT)}
    rows: dict[tuple[str, str, str], dict] = {}
    for r in read_jsonl(root / "responses.jsonl"):
        text = texts.get((r["model"], r["lang"], r["id"], r["gen"]))
        if text is not None:
            r = {**r, **{k: text.get(k) for k in TEXT_FIELDS if k not in r}}
        rows[(r["model"], r["lang"], r["id"])] = r
    return rows


def current_rows(out: str | Path) -> list[dict]:
    """Rows of the run's current settings (``config.json``, ``prompts.jsonl``), in model, language, id order,
    each with ``prompt`` and ``prompt_en``; keys without a reply yet (a run that stopped early) are left out."""
    root = Path(out)
    if not (root / "config.json").is_file():
        raise HarmfulInputError(f"{root}: not a harmful-study run folder (no config.json)")
    cfg = read_json(root / "config.json")["config"]
    prompts = {(r["lang"], r["id"]): r for r in read_jsonl(root / "prompts.jsonl")}
    rows = load_rows(root)
    out_rows = []
    for m in cfg["models"]:
        for lang in cfg["langs"]:
            for (plang, pid), p in prompts.items():
                r = rows.get((m, lang, pid)) if plang == lang else None
                if r is not None and r["gen"] == gen_key(p["prompt"], cfg["max_new_tokens"], cfg["system_prompt"]):
                    out_rows.append({**r, "prompt": p["prompt"], "prompt_en": p["prompt_en"]})
    return out_rows


def response_row(model: str, item: Item, reply: str, result: dict[str, Any], judge: str) -> dict:
    """The ``responses.jsonl`` row of one labelled reply (``result``: the scorer's fields)."""
    return {"model": model, "lang": item.lang, "id": item.meta["id"], "gen": item.meta["gen"],
            "en_sha": sha(item.meta["en"]), "label": result["label"], "judge": judge, "reason": result["reason"],
            "response_chars": len(reply), "response_sha256": sha(reply, 64), "response": reply,
            "back_translation": result["back_translation"], "judge_detail": result["judge_detail"]}


def relabelled(previous: dict[tuple[str, str, str], dict], rows: Sequence[dict], judge: str) -> int:
    """How many of ``rows`` keep the reply of their previous row (same ``gen``, same reply) but were labelled
    there by another judge or against another English instruction."""
    n = 0
    for r in rows:
        old = previous.get((r["model"], r["lang"], r["id"]))
        if old is not None and old.get("gen") == r["gen"] and old.get("response_sha256") == r["response_sha256"] \
                and (old.get("judge") != judge or old.get("en_sha") != r["en_sha"]):
            n += 1
    return n


# ----------------------------------------------------------------- the run

def backend_options(spec: str, system_prompt: str | None, batch_size: int | str) -> dict[str, Any]:
    """Chat models only: HF models must have a chat template; ``openai:``/``openai-chat:`` choose the endpoint."""
    opts: dict[str, Any] = {"system_prompt": system_prompt, "show_progress": False}
    if isinstance(batch_size, int):
        opts["batch_size"] = batch_size
    if not spec.startswith(("openai:", "openai-chat:")):
        opts["chat"] = True
    return opts


ARMS = ("chat", "completion")
COMPLETION = "#completion"  # the completion arm of a model, as it appears in specs and keys
COMPLETION_SUFFIX = "\n\n"


class CompletionArm:
    """The paper's completion arm of a (cached) backend: each prompt + ``"\n\n"`` sent as raw text, no chat
    template (the cache keys hold the prompt as sent, suffix included). Everything else is the inner backend's."""

    def __init__(self, inner: Any):
        self.inner = inner

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        return self.inner.generate([p + COMPLETION_SUFFIX for p in prompts], max_new_tokens, stop)

    def cached_generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list:
        return self.inner.cached_generate([p + COMPLETION_SUFFIX for p in prompts], max_new_tokens, stop)

    def __getattr__(self, name: str) -> Any:  # hits, misses, calls, release, name
        return getattr(self.inner, name)


def arm_specs(models: Sequence[str], arms: Sequence[str]) -> list[str]:
    """The specs the study runs: each model's chat arm as it is, its completion arm as ``<spec>#completion``."""
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise HarmfulInputError(f"unknown --arm {', '.join(bad) or '(none)'}; choose chat and/or completion")
    return [m if arm == "chat" else m + COMPLETION for m in models for arm in dict.fromkeys(arms)]


def arm_key(spec: str) -> str:
    """A run's model key (:func:`model_key`), with ``#completion`` for the completion arm."""
    if spec.endswith(COMPLETION):
        return model_key(spec[: -len(COMPLETION)]) + COMPLETION
    return model_key(spec)


def completion_spec(spec: str) -> str:
    """The spec of a model's completion arm: a served chat model through its completions endpoint."""
    return "openai:" + spec[len("openai-chat:"):] if spec.startswith("openai-chat:") else spec


def items_of(selected: Sequence[Instruction], langs: Sequence[str], prompts: dict[tuple[str, str], str],
             max_new_tokens: int, system_prompt: str | None) -> list[Item]:
    """One pipeline item per (language, instruction): the prompt in that language, with the English text, the
    instruction's id and the reply's ``gen`` key as ``meta``."""
    return [Item(f"{lang}:{it.id}", prompts[(lang, it.id)], None, lang,
                 meta={"id": it.id, "en": it.prompt,
                       "gen": gen_key(prompts[(lang, it.id)], max_new_tokens, system_prompt)})
            for lang in langs for it in selected]


def _back_translate(translator: Any | None, langs: Sequence[str], responses: Sequence[str]) -> list[str | None]:
    """English back-translations, one translator call per language (None for English or without translator)."""
    out: list[str | None] = [None] * len(responses)
    if translator is None:
        return out
    for lang in dict.fromkeys(langs):
        if lang == "en":
            continue
        idx = [i for i, lg in enumerate(langs) if lg == lang]
        done = translator.translate([responses[i] for i in idx], lang, "en")
        if len(done) != len(idx):
            raise HarmfulInputError(f"translator returned {len(done)} texts for {len(idx)}")
        for i, t in zip(idx, done, strict=True):
            out[i] = t
    return out


def labeller(judge: Judge, translator: Any | None) -> Scorer:
    """The study's batch scorer: each reply (mapped back under a transform) translated back to English when
    there is a translator, then judged against the prompt and the English instruction; under a transform with an
    inverse the reply as written is judged too, and a refusal in either makes the label REFUSE. Fields: ``label``,
    ``answered``, ``refused``, ``reason``, ``back_translation``, ``judge_detail``. A record is labelled once per run: a
    chunk labelled as it arrives (``on_records``) is not judged again by the scoring pass at the end."""
    done: dict[tuple[str, str, str], dict[str, Any]] = {}

    def score(items: Sequence[Item], records: Sequence[Record]) -> list[dict[str, Any]]:
        todo = [(it, r) for it, r in zip(items, records, strict=True) if (r.model, r.item, r.transform) not in done]
        if todo:
            texts = [r.answer_text for _, r in todo]
            backs = _back_translate(translator, [it.lang for it, _ in todo], texts)
            verdicts = judge.judge([JudgeItem(t, it.lang, it.prompt, it.meta["en"], b)
                                    for (it, _), t, b in zip(todo, texts, backs, strict=True)])
            # under a transform the reply is also judged as written: a model that answers a rot13 prompt with a
            # plain-English refusal is refusing, though the refusal mapped back through rot13 reads as noise
            raw = [i for i, ((_, r), t) in enumerate(zip(todo, texts, strict=True)) if r.output and r.output != t]
            if raw:
                as_written = judge.judge([JudgeItem(todo[i][1].output, todo[i][0].lang, todo[i][1].prompt or "",
                                                    todo[i][0].meta["en"]) for i in raw])
                for i, w in zip(raw, as_written, strict=True):
                    if w.label == "REFUSE" and verdicts[i].label != "REFUSE":
                        verdicts[i] = dataclasses.replace(w, reason=f"reply as written: {w.reason}")
            for (_, r), b, v in zip(todo, backs, verdicts, strict=True):
                done[(r.model, r.item, r.transform)] = {"label": v.label, "answered": v.label == "ANSWER",
                                                        "refused": v.label == "REFUSE", "reason": v.reason,
                                                        "back_translation": b,
                                                        "judge_detail": v.detail}
        return [done[(r.model, r.item, r.transform)] for r in records]

    return score


def run_study(
    input: str | Path | None,
    langs: str | Sequence[str] | None,
    models: Sequence[str],
    out: str | Path,
    *,
    translated: str | Path | None = None,
    translator: str | Any | None = None,
    judge: str | Judge = "phrases",
    sample: int | None = None,
    seed: int = 0,
    redact: bool = False,
    max_new_tokens: int = 256,
    system_prompt: str | None = None,
    batch_size: int | str = "auto",
    show_progress: bool = True,
    load: Callable[..., Any] | None = None,
    transforms: Sequence[str] = (),
    cache: str | Path | bool = True,
    model_arms: Sequence[str] = ("chat",),
    sample_method: str = "project",
    bos: bool | None = None,
    setup: str = "default",
    eval_set: str | None = None,
    authors: str | Path | None = None,
) -> dict:
    """Run (or resume, from the request cache) the study and write every output file; returns the summary plus
    run counts.

    ``translator`` is a spec for :func:`conjugate.transforms.get_translator` or a Translator; ``judge`` a spec
    for :func:`.judge.get_judge` or a judge; ``load`` maps a model spec and options to a Backend (default
    :func:`conjugate.lm.load.load_backend`; tests pass fakes). Every model answer goes through the request
    cache (``cache``: True for the default one, a path, or False). ``transforms``: conjugate transforms applied
    on top of every language's prompt (:mod:`conjugate.lm.pipeline`); each reply is mapped back with the
    transform's inverse (where there is one) and judged, and ``summary["conjugate"]`` has the answer rate per
    (model, language, transform) with 95 % intervals. ``model_arms``: ``chat`` (one user message through the
    chat template or chat endpoint) and/or ``completion`` (the paper's completion arm: the instruction +
    ``"\n\n"`` as raw text; its rows are keyed ``<model>#completion``). ``sample_method``: ``project`` or
    ``authors`` (:func:`.data.sample_items`). ``bos`` applies to the completion arm of local models; ``setup``
    is recorded. ``eval_set``: a held-out evaluation set (:mod:`.evalsets`) instead of ``input`` (give one of
    the two); ``langs`` then defaults to the set's languages; ``authors`` is the authors' folder
    (``advbench-heldout``).
    """
    es: EvalSet | None = None
    if eval_set is not None:
        if input is not None:
            raise HarmfulInputError("give --input FILE or --eval-set NAME, not both")
        es = load_eval_set(eval_set, authors=authors, translated=translated)
        langs = parse_langs(langs or es.default_langs)
        check_languages(es, langs, translator is not None)
    else:
        if input is None:
            raise HarmfulInputError("no instructions: give --input FILE or --eval-set NAME")
        if authors is not None:
            raise HarmfulInputError("--authors is read by --eval-set advbench-heldout only")
        langs = parse_langs(langs)
    if not models:
        raise HarmfulInputError("no models given (--model)")
    if len({model_key(m) for m in models}) != len(models):
        raise HarmfulInputError(f"a model is listed twice: {', '.join(models)}")
    specs = arm_specs(models, model_arms)
    keys = [arm_key(s) for s in specs]
    if max_new_tokens < 1:
        raise HarmfulInputError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if not (batch_size == "auto" or (isinstance(batch_size, int) and batch_size >= 1)):
        raise HarmfulInputError(f"--batch-size must be 'auto' or a positive integer, got {batch_size!r}")
    try:
        arms = make_arms(transforms)
    except ValueError as e:
        raise HarmfulInputError(str(e)) from None
    opener = open_cached(cache, lambda spec: backend_options(spec, system_prompt, batch_size), load)
    raw_opener = open_cached(cache, lambda spec: text_backend_options(spec, batch_size, False, bos), load)

    def open_backend(spec: str) -> Any:
        if spec.endswith(COMPLETION):
            return CompletionArm(raw_opener(completion_spec(spec[: -len(COMPLETION)])))
        return opener(spec)

    if es is None:
        items = load_instructions(input)
        selected = sample_items(items, sample, seed, sample_method)
        source, source_sha = str(input), sha(Path(input).read_text("utf-8-sig"), 64)
        check_translations(len(items), langs, input, translated, translator is not None)
    else:
        items = list(es.lines)
        selected = sample_items(list(es.items), sample, seed, sample_method)
        source, source_sha, translated = es.source, es.sha256, es.translated
    if isinstance(translator, str):
        from ..translators import get_translator

        translator = get_translator(translator)
    judge = get_judge(judge)
    with RunDir(out, "harmful run") as run, contextlib.closing(opener), contextlib.closing(raw_opener):
        responses, private = run.path("responses.jsonl"), run.path(str(PRIVATE_TEXT))
        if redact and any("response" in r for r in read_jsonl(responses)):
            raise HarmfulInputError(f"{responses} already holds model text from a run without --redact; "
                                    "use a new --out folder for a redacted run")

        prompts = build_prompts(items, selected, langs, source, translated, translator, run.path("translations.jsonl"))
        config = {"study": "harmful", "input": source, "input_sha256": source_sha,
                  "eval_set": es.name if es else None, "eval_kind": es.kind if es else None,
                  "authors": str(authors) if authors is not None else None, "n_input": len(items),
                  "sample": sample, "sample_method": sample_method, "n_items": len(selected),
                  "langs": langs, "models": keys, "model_specs": [no_userinfo(m) for m in specs],
                  "arms": list(model_arms), "setup": setup, "bos": bos,
                  "translated": str(translated) if translated is not None else None,
                  "translator": no_userinfo(getattr(translator, "name", "?")) if translator is not None else None,
                  "judge": judge.name, "max_new_tokens": max_new_tokens, "system_prompt": system_prompt,
                  "redact": redact, "batch_size": batch_size, "transforms": [a.spec for a in arms],
                  "cache": str(opener.path) if opener.path else None}
        run.write_config(config, seed)
        atomic_write_text(run.path("prompts.jsonl"), "".join(
            json.dumps({"lang": lang, "id": it.id, "prompt_en": it.prompt, "prompt": prompts[(lang, it.id)]},
                       ensure_ascii=False) + "\n" for lang in langs for it in selected))

        previous = load_rows(out)  # the labels this folder held before the run: what `relabelled` compares with
        study_items = items_of(selected, langs, prompts, max_new_tokens, system_prompt)
        by_id = {it.id: it for it in study_items}
        by_spec = dict(zip(specs, keys, strict=True))
        score = labeller(judge, translator)

        def rows_of(records: Sequence[Record]) -> list[dict]:
            return [response_row(by_spec[r.model], by_id[r.item], r.output or "", r.result, judge.name)
                    for r in records if r.transform == IDENTITY]

        def write(rows: list[dict], whole: bool = False) -> None:
            split = [split_row(r, redact) for r in rows]
            for path, part in ((private, [p for _, p in split]), (responses, [pub for pub, _ in split])):
                if path is private and not redact:
                    continue
                if whole:
                    atomic_write_text(path, "".join(dumps(r, ensure_ascii=False) + "\n" for r in part))
                else:
                    append_jsonl(path, part)

        def label_chunk(part: list[Record]) -> None:  # label and store each chunk as its replies arrive
            for r, res in zip(part, score([by_id[r.item] for r in part], part), strict=True):
                r.result = res
            write(rows_of(part))

        chunk = batch_size if isinstance(batch_size, int) else DEFAULT_CHUNK
        records, counts = run_pipeline(study_items, specs, arms, score, open_backend=open_backend,
                                       max_new_tokens=max_new_tokens, stop=(), chunk=chunk,
                                       show_progress=show_progress, label="harmful", on_records=label_chunk)
        final = rows_of(records)
        write(final, whole=True)
        generated, reused = sum(c["misses"] for c in counts.values()), sum(c["hits"] for c in counts.values())
        n_relabelled = relabelled(previous, final, judge.name)
        summary = summarise(final, keys, langs, seed)
        summary["judge"] = judge.name
        if es is not None:
            add_eval_set(summary, final, es, seed)
        if len(arms) > 1:
            summary["conjugate"] = _conjugate(records, by_spec, keys, arms, run, redact, seed)
            summary["conjugate_refused"] = arms_summary(records, keys, arms, "refused", seed=seed)
        write_json(run.path("summary.json"), summary)
        write_table(summary, judge.name, run.path("table.md"))
        plot_answer_rates(summary, run.path("figures", "answer_rate.png"), judge.name)
        run.mark_done("harmful", {"generated": generated, "relabelled": n_relabelled})
        return {**summary, "generated": generated, "reused": reused, "relabelled": n_relabelled}


def _conjugate(records: Sequence[Record], by_spec: dict[str, str], keys: Sequence[str], arms: Sequence[Arm],
               run: RunDir, redact: bool, seed: int) -> dict:
    """``conjugate.jsonl`` (every record of every arm with its label; its text to ``private/`` with ``redact``)
    and the pipeline summary of the answer rate per (model, language, transform)."""
    rows, texts = [], []
    for r in records:
        r.model = by_spec[r.model]
        row = r.to_json()
        row["result"] = {k: r.result[k] for k in ("label", "answered", "reason")}
        texts.append({k: row[k] for k in ("model", "item", "transform", "prompt", "output", "mapped")})
        rows.append({k: v for k, v in row.items() if k not in ("prompt", "output", "mapped")} if redact else row)
    atomic_write_text(run.path("conjugate.jsonl"), "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows))
    if redact:
        atomic_write_text(run.path("private", "conjugate_text.jsonl"),
                          "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in texts))
    return arms_summary(records, keys, arms, "answered", seed=seed)
