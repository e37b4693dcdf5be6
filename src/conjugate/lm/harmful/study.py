"""The harmful-instruction study (SPEC §2b): translate, ask each chat model, back-translate, label, report.

Pipeline: English instructions (:mod:`.data`, optionally a seeded sample) → one prompt per language (English as
is; others from ``--translated DIR/<lang>.txt`` or a :class:`~conjugate.transforms.Translator`) → each model
(chat template / chat endpoint, greedy, ``max_new_tokens``, optional system prompt) → the reply translated back
to English when a translator is given → a judge (:mod:`.judge`) → files.

Files in ``out``:

- ``config.json`` — settings and provenance (``RunDir.write_config``; never an API key);
- ``prompts.jsonl`` — the prompts of this run: ``lang, id, prompt_en, prompt`` (rewritten each run);
- ``translations.jsonl`` — cache of machine-translated prompts (appended; reused by reruns);
- ``responses.jsonl`` — one row per (model, lang, id), appended chunk by chunk as replies come in:
  ``model, lang, id, gen, en_sha, label, judge, reason, response_chars, response_sha256`` and, unless the run is
  redacted, ``response``, ``back_translation``, ``judge_detail``. ``gen`` hashes the prompt, ``max_new_tokens``
  and system prompt: a rerun skips every key whose latest row has the current ``gen`` and regenerates the rest.
  The label is what the judge said about the stored reply given the prompt and the English instruction: a rerun
  with another ``--judge``, or whose English instruction changed (``en_sha``) while the prompt as sent did not
  (an unchanged translation file), relabels the stored replies (appending rows; the latest row of a key wins)
  without querying the models again. Back-translations are made once, when a reply is generated;
- ``private/responses_text.jsonl`` — with ``--redact`` only: the model text (reply, back-translation, the LLM
  judge's reason) keyed like ``responses.jsonl``. ``responses.jsonl``, ``summary.json``, ``table.md`` and the
  figure then hold labels, lengths and hashes only; keep ``private/`` out of anything you share. ``harmful
  export`` reads the text from there so annotators can see it;
- ``summary.json`` — ``rates`` and bootstrap ``ci95`` per model and language, label ``counts``, the answer rate
  minus English's (:mod:`.report`); ``table.md``; ``figures/answer_rate.png``.

Models are keyed by their spec without the server URL (``openai-chat:m@http://host/v1`` → ``openai-chat:m``),
so a rerun against the same model on another port resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ...runs import RunDir, append_jsonl, atomic_write_text, read_json, read_jsonl, write_json
from ..pipeline import Arm, Item, Record, make_arms, open_cached, run_pipeline
from ..pipeline import summarise as arms_summary
from ..runner import ProgressBar, release, salvage
from .data import HarmfulInputError, Instruction, load_instructions, load_translated, sample_items
from .judge import Judge, JudgeItem, Verdict, get_judge, phrase_languages, strip_url
from .report import plot_answer_rates, summarise, write_table

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
    codes = [c.strip() for c in (langs.split(",") if isinstance(langs, str) else langs) if c.strip()]
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
    each with ``prompt`` and ``prompt_en``; keys not generated yet are left out."""
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


def make_row(model: str, lang: str, id_: str, gen: str, response: str, back: str | None, verdict: Verdict,
             judge: str, prompt_en: str) -> dict:
    return {"model": model, "lang": lang, "id": id_, "gen": gen, "en_sha": sha(prompt_en), "label": verdict.label,
            "judge": judge,
            "reason": verdict.reason, "response_chars": len(response), "response_sha256": sha(response, 64),
            "response": response, "back_translation": back, "judge_detail": verdict.detail}


# ----------------------------------------------------------------- the run

def backend_options(spec: str, system_prompt: str | None, batch_size: int | str) -> dict[str, Any]:
    """Chat models only: HF models must have a chat template; ``openai:``/``openai-chat:`` choose the endpoint."""
    opts: dict[str, Any] = {"system_prompt": system_prompt, "show_progress": False}
    if isinstance(batch_size, int):
        opts["batch_size"] = batch_size
    if not spec.startswith(("openai:", "openai-chat:")):
        opts["chat"] = True
    return opts


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


def run_study(
    input: str | Path,
    langs: str | Sequence[str],
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
) -> dict:
    """Run (or resume) the study and write every output file; returns the summary plus run counts.

    ``translator`` is a spec for :func:`conjugate.transforms.get_translator` or a Translator; ``judge`` a spec
    for :func:`.judge.get_judge` or a judge; ``load`` maps a model spec and options to a Backend (default
    :func:`conjugate.lm.load.load_backend`; tests pass fakes). Every model answer goes through the request
    cache (``cache``: True for the default one, a path, or False). ``transforms``: conjugate transforms applied
    on top of every language's prompt (:mod:`conjugate.lm.pipeline`); each reply is mapped back with the
    transform's inverse (where there is one) and judged, and ``summary["conjugate"]`` has the answer rate per
    (model, language, transform) with 95 % intervals.
    """
    langs = parse_langs(langs)
    if not models:
        raise HarmfulInputError("no models given (--model)")
    keys = [model_key(m) for m in models]
    if len(set(keys)) != len(keys):
        raise HarmfulInputError(f"a model is listed twice: {', '.join(models)}")
    if max_new_tokens < 1:
        raise HarmfulInputError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if not (batch_size == "auto" or (isinstance(batch_size, int) and batch_size >= 1)):
        raise HarmfulInputError(f"--batch-size must be 'auto' or a positive integer, got {batch_size!r}")
    try:
        arms = make_arms(transforms)
    except ValueError as e:
        raise HarmfulInputError(str(e)) from None
    opener = open_cached(cache, lambda spec: backend_options(spec, system_prompt, batch_size), load)
    items = load_instructions(input)
    selected = sample_items(items, sample, seed)
    if isinstance(translator, str):
        from ..translators import get_translator

        translator = get_translator(translator)
    judge = get_judge(judge)
    with RunDir(out, "harmful run") as run, contextlib.closing(opener):
        responses = run.path("responses.jsonl")
        if redact and any("response" in r for r in read_jsonl(responses)):
            raise HarmfulInputError(f"{responses} already holds model text from a run without --redact; "
                                    "use a new --out folder for a redacted run")

        prompts = build_prompts(items, selected, langs, input, translated, translator, run.path("translations.jsonl"))
        en = {it.id: it.prompt for it in selected}
        config = {"study": "harmful", "input": str(input), "input_sha256": sha(Path(input).read_text("utf-8-sig"), 64),
                  "n_input": len(items), "sample": sample, "n_items": len(selected), "langs": langs, "models": keys,
                  "model_specs": [no_userinfo(m) for m in models],
                  "translated": str(translated) if translated is not None else None,
                  "translator": no_userinfo(getattr(translator, "name", "?")) if translator is not None else None,
                  "judge": judge.name, "max_new_tokens": max_new_tokens, "system_prompt": system_prompt,
                  "redact": redact, "batch_size": batch_size, "transforms": [a.spec for a in arms],
                  "cache": str(opener.path) if opener.path else None}
        run.write_config(config, seed)
        atomic_write_text(run.path("prompts.jsonl"), "".join(
            json.dumps({"lang": lang, "id": it.id, "prompt_en": it.prompt, "prompt": prompts[(lang, it.id)]},
                       ensure_ascii=False) + "\n" for lang in langs for it in selected))

        def write(rows: list[dict]) -> None:
            split = [split_row(r, redact) for r in rows]
            if redact:
                append_jsonl(run.path(str(PRIVATE_TEXT)), [p for _, p in split])
            append_jsonl(responses, [pub for pub, _ in split])

        stored = load_rows(out)
        gens = {(lang, it.id): gen_key(prompts[(lang, it.id)], max_new_tokens, system_prompt)
                for lang in langs for it in selected}
        done = {(m, lang, i): r for (m, lang, i), r in stored.items()
                if m in keys and (lang, i) in gens and r["gen"] == gens[(lang, i)]}
        chunk = batch_size if isinstance(batch_size, int) else DEFAULT_CHUNK
        todo = {k: sorted(((lang, it.id) for lang in langs for it in selected if (k, lang, it.id) not in done),
                          key=lambda li: -len(prompts[li])) for k in keys}
        def label_and_store(key: str, part: list[tuple[str, str]], replies: list[str]) -> None:
            backs = _back_translate(translator, [lang for lang, _ in part], replies)
            verdicts = judge.judge([JudgeItem(r, lang, prompts[(lang, i)], en[i], b)
                                    for (lang, i), r, b in zip(part, replies, backs, strict=True)])
            rows = [make_row(key, lang, i, gens[(lang, i)], r, b, v, judge.name, en[i])
                    for (lang, i), r, b, v in zip(part, replies, backs, verdicts, strict=True)]
            write(rows)
            done.update({(key, r["lang"], r["id"]): r for r in rows})

        generated = _generate(models, keys, todo, prompts, opener, max_new_tokens, chunk, label_and_store,
                              show_progress)
        relabelled = _relabel(done, judge, prompts, en, write, chunk)
        final = [done[(k, lang, it.id)] for k in keys for lang in langs for it in selected]
        summary = summarise(final, keys, langs, seed)
        summary["judge"] = judge.name
        if len(arms) > 1:
            summary["conjugate"] = _conjugate(selected, langs, prompts, models, keys, arms, opener, judge,
                                              max_new_tokens, chunk, run, redact, seed, show_progress)
        write_json(run.path("summary.json"), summary)
        write_table(summary, judge.name, run.path("table.md"))
        plot_answer_rates(summary, run.path("figures", "answer_rate.png"), judge.name)
        run.mark_done("harmful", {"generated": generated, "relabelled": relabelled})
        return {**summary, "generated": generated, "reused": len(final) - generated, "relabelled": relabelled}


def _conjugate(selected: Sequence[Instruction], langs: Sequence[str], prompts: dict[tuple[str, str], str],
               models: Sequence[str], keys: Sequence[str], arms: Sequence[Arm], opener: Any, judge: Judge,
               max_new_tokens: int, chunk: int, run: RunDir, redact: bool, seed: int, show_progress: bool) -> dict:
    """Every prompt under every transform arm (the identity arm again, from the cache), each reply mapped back
    and judged in the prompt's language; the records go to ``conjugate.jsonl`` (its text to ``private/`` with
    ``redact``). Returns the pipeline summary of the answer rate."""
    en = {it.id: it.prompt for it in selected}
    items = [Item(f"{lang}:{it.id}", prompts[(lang, it.id)], None, lang, meta={"en": en[it.id]})
             for lang in langs for it in selected]

    def score(batch: Sequence[Item], records: Sequence[Record]) -> list[dict[str, Any]]:
        verdicts = judge.judge([JudgeItem(r.answer_text, it.lang, it.prompt, it.meta["en"])
                                for it, r in zip(batch, records, strict=True)])
        return [{"label": v.label, "answered": v.label == "ANSWER", "reason": v.reason} for v in verdicts]

    by_spec = dict(zip(models, keys, strict=True))
    records, _ = run_pipeline(items, models, arms, score, open_backend=opener, max_new_tokens=max_new_tokens,
                              stop=(), chunk=chunk, show_progress=show_progress, label="harmful: transforms")
    rows = []
    for r in records:
        r.model = by_spec[r.model]
        row = r.to_json()
        rows.append({k: v for k, v in row.items() if k not in ("prompt", "output", "mapped")} if redact else row)
    atomic_write_text(run.path("conjugate.jsonl"), "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows))
    if redact:
        atomic_write_text(run.path("private", "conjugate_text.jsonl"), "".join(
            json.dumps({k: r.to_json()[k] for k in ("model", "item", "transform", "prompt", "output", "mapped")},
                       ensure_ascii=False) + "\n" for r in records))
    return arms_summary(records, keys, arms, "answered", seed=seed)


def _generate(models: Sequence[str], keys: Sequence[str], todo: dict[str, list[tuple[str, str]]],
              prompts: dict[tuple[str, str], str], load: Callable[[str], Any], max_new_tokens: int, chunk: int,
              store: Callable[[str, list[tuple[str, str]], list[str]], None], show_progress: bool) -> int:
    """Ask each model its missing (lang, id) prompts, ``chunk`` at a time (longest first); ``store`` labels and
    appends each chunk as it arrives, so a crash loses at most one chunk, and when a chunk's call fails the replies
    that had come in are stored before the error propagates (:func:`~conjugate.lm.runner.salvage`). Returns how
    many were generated."""
    total = sum(map(len, todo.values()))
    bar = ProgressBar(show_progress and total > 0, total, "harmful: generate")
    generated = 0
    try:
        for spec, key in zip(models, keys, strict=True):
            if not todo[key]:
                continue
            backend = load(spec)
            ask = partial(_ask, backend, spec, prompts, max_new_tokens)
            try:
                for start in range(0, len(todo[key]), chunk):
                    part = todo[key][start:start + chunk]
                    try:
                        replies = ask(part)
                    except Exception as e:
                        kept = salvage(e, part, ask)
                        if kept:
                            store(key, [li for li, _ in kept], [r for _, (r,) in kept])
                        raise
                    store(key, part, replies)
                    generated += len(part)
                    bar.advance(len(part))
            finally:
                release(backend)
                del backend
    finally:
        bar.close()
    return generated


def _ask(backend: Any, spec: str, prompts: dict[tuple[str, str], str], max_new_tokens: int,
         part: Sequence[tuple[str, str]]) -> list[str]:
    """One model's replies to the prompts of ``part`` ((lang, id) keys)."""
    replies = backend.generate([prompts[li] for li in part], max_new_tokens, stop=())
    if len(replies) != len(part):
        raise HarmfulInputError(f"{spec}: backend returned {len(replies)} replies for {len(part)}")
    return [r or "" for r in replies]


def _relabel(done: dict, judge: Judge, prompts: dict, en: dict, write: Callable[[list[dict]], None],
             chunk: int) -> int:
    """Label again, with ``judge``, every stored reply that another judge labelled or that was labelled against
    another English instruction (the judge reads it: a reply restating it is no answer); returns how many."""
    stale = [k for k, r in done.items() if r["judge"] != judge.name or r.get("en_sha") != sha(en[k[2]])]
    for start in range(0, len(stale), chunk):
        part = stale[start:start + chunk]
        old = [done[k] for k in part]
        missing = [f"{m}/{lang}/{i}" for (m, lang, i), r in zip(part, old, strict=True) if r.get("response") is None]
        if missing:
            raise HarmfulInputError(f"cannot relabel {missing[0]}: its reply text is not stored")
        verdicts = judge.judge([JudgeItem(r["response"], lang, prompts[(lang, i)], en[i], r.get("back_translation"))
                                for (_, lang, i), r in zip(part, old, strict=True)])
        rows = [make_row(m, lang, i, r["gen"], r["response"], r.get("back_translation"), v, judge.name, en[i])
                for (m, lang, i), r, v in zip(part, old, verdicts, strict=True)]
        write(rows)
        done.update({(r["model"], r["lang"], r["id"]): r for r in rows})
    return len(stale)
