"""The language-model study pipeline: items × transforms × models → requests → cache → records → scores.

A study is data: a list of :class:`Item` (an id, the prompt, the gold answer, the language cell, and for a
multiple-choice item its options) and a scorer. The pipeline does the rest, the same way for every study:

1. **arms**: the identity arm (the reference) plus one arm per conjugate transform ``s`` (any spec
   ``conjugate transform`` accepts, composed with ``+``). An arm sends ``s(prompt)`` — and, for a choice item,
   ``s(option)`` for each option — on top of whatever language the item is in;
2. **requests**: one per (model, arm, item), sent through :class:`~conjugate.lm.cache.CachedBackend`, so every
   answer is stored in the request cache as it arrives and a rerun sends only what is missing (the cache is the
   one resume mechanism; a model whose requests are all cached is never loaded). Prompts go in chunks, longest
   first, so a chunk pads little and an out-of-memory error shows at once;
3. **records** (:class:`Record`): the prompt as sent, the raw output and, where the arm's transform has an
   inverse, the mapped-back output ``s⁻¹(output)``, with which inverse it was (``exact``, ``lossy`` or ``none``);
4. **scores**: the scorer reads the mapped-back output (the raw one where there is no inverse, and the record says
   so) and the item's current gold answer — scores are never cached, so a corrected answer file counts at once;
5. **summary** (:func:`summarise`): the metric per (model, language, transform) with a bootstrap 95 % interval,
   and per transform the tuned models' value next to the identity arm and the share of the base → tuned drop it
   recovers, with a paired bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..transforms import NotInvertibleError, Transform, TransformError, get_transform
from .runner import ProgressBar

IDENTITY = "identity"
N_BOOT = 2000
DEFAULT_CHUNK = 32


class PipelineInputError(ValueError):
    """Bad input to a pipeline run (an unknown transform, a transform without the inverse a scorer needs...)."""


@dataclass(frozen=True)
class Item:
    """One question of a study. ``answer`` is the gold answer the scorer compares with (for a choice item: the
    index of the right option); ``lang`` is the item's language cell; ``choices`` makes it a multiple-choice
    item, scored by the log-likelihood of each option after the prompt."""

    id: str
    prompt: str
    answer: Any = None
    lang: str = "en"
    choices: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "choices" if self.choices else "generate"


@dataclass(frozen=True)
class Arm:
    """A conjugate transform applied to every prompt (``transform`` None: the identity arm)."""

    spec: str
    transform: Transform | None = None

    @property
    def inverse(self) -> str:
        """``none`` (identity: the output is used as it is), ``exact`` or ``lossy`` (best effort)."""
        if self.transform is None:
            return "none"
        return "exact" if self.transform.exact else "lossy"

    @property
    def invertible(self) -> bool:
        if self.transform is None:
            return True
        try:
            self.transform.invert("")
        except NotInvertibleError:
            return False
        except TransformError:
            pass  # an empty text it could not have produced: it does have an inverse
        return True

    def apply(self, texts: Sequence[str]) -> list[str]:
        return list(texts) if self.transform is None else self.transform.apply_many(texts)

    def map_back(self, output: str) -> str | None:
        """``s⁻¹(output)``; the output itself for the identity arm; None where it cannot be inverted."""
        if self.transform is None:
            return output
        try:
            return self.transform.invert(output)
        except TransformError:
            return None


def make_arms(specs: Sequence[str], needs_inverse: bool = False, **options: Any) -> list[Arm]:
    """The identity arm, then one arm per transform spec (in order, each once). ``needs_inverse``: the scorer
    compares answers in the original language, so a transform without any inverse is refused."""
    arms = [Arm(IDENTITY)]
    for spec in dict.fromkeys(s.strip() for s in specs):
        if spec in ("", IDENTITY):
            continue
        try:
            arm = Arm(spec, get_transform(spec, **options))
        except TransformError as e:
            raise PipelineInputError(f"--transform {spec}: {e}") from None
        if needs_inverse and not arm.invertible:
            raise PipelineInputError(f"--transform {spec} has no inverse, and this scorer compares the answer "
                                     "in the prompt's own language; use a transform with an inverse")
        arms.append(arm)
    return arms


@dataclass
class Record:
    """What one model answered to one item under one arm, and how it scored."""

    model: str
    item: str
    lang: str
    transform: str
    kind: str
    prompt: str
    output: str | None = None  # generate: the raw output
    scores: list[float] | None = None  # choices: log p(option | prompt) per option
    mapped: str | None = None  # generate: s⁻¹(output) (the output itself for the identity arm)
    inverse: str = "none"  # none | exact | lossy | failed (the output could not be mapped back: scored raw)
    result: dict[str, Any] = field(default_factory=dict)  # the scorer's fields, e.g. {"correct": True}

    @property
    def answer_text(self) -> str:
        """The text a scorer reads: the mapped-back output, else the raw one."""
        return self.mapped if self.mapped is not None else (self.output or "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Scorer = Callable[[Sequence[Item], Sequence[Record]], list[dict[str, Any]]]  # one result per record, batched


def per_record(score: Callable[[Item, Record], dict[str, Any]]) -> Scorer:
    """A batch :data:`Scorer` from a function that scores one record against its item."""
    return lambda items, records: [score(it, r) for it, r in zip(items, records, strict=True)]


def generated(model: str, item: Item, arm: Arm, prompt: str, output: str) -> Record:
    """The record of a generation: the raw output and its mapped-back form."""
    mapped = arm.map_back(output)
    return Record(model, item.id, item.lang, arm.spec, "generate", prompt, output=output, mapped=mapped,
                  inverse=arm.inverse if mapped is not None else "failed")


def run_requests(backend: Any, model: str, items: Sequence[Item], arms: Sequence[Arm], *, max_new_tokens: int,
                 stop: Sequence[str], chunk: int = DEFAULT_CHUNK, advance: Callable[[int], None] = lambda n: None,
                 on_records: Callable[[list[Record]], None] | None = None) -> list[Record]:
    """Every (arm, item) request of one model through ``backend`` (a cached backend: answers already stored are
    not sent again), in chunks of ``chunk``, longest prompt first; ``on_records`` sees each chunk's records as
    it completes (a study that writes its outputs as they come). Returns the records, unscored, in arm × item
    order."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    records: dict[tuple[int, int], Record] = {}
    for a, arm in enumerate(arms):
        prompts = arm.apply([it.prompt for it in items])
        gen = sorted((i for i, it in enumerate(items) if it.kind == "generate"), key=lambda i: -len(prompts[i]))
        for start in range(0, len(gen), chunk):
            part = gen[start:start + chunk]
            try:
                outs = backend.generate([prompts[i] for i in part], max_new_tokens, stop=tuple(stop))
            except Exception:
                _write_finished(backend, model, items, arm, prompts, part, max_new_tokens, stop, on_records)
                raise
            if len(outs) != len(part):
                raise RuntimeError(f"{model}: backend returned {len(outs)} outputs for {len(part)} prompts")
            for i, out in zip(part, outs, strict=True):
                records[(a, i)] = generated(model, items[i], arm, prompts[i], out or "")
            if on_records is not None:
                on_records([records[(a, i)] for i in part])
            advance(len(part))
        many = getattr(backend, "choices_many", None)
        cho = sorted((i for i, it in enumerate(items) if it.kind == "choices"), key=lambda i: -len(prompts[i]))
        for start in range(0, len(cho), chunk):
            part = cho[start:start + chunk]
            asks = [(prompts[i], arm.apply(list(items[i].choices))) for i in part]
            try:
                got = many(asks) if callable(many) else [backend.choices(c, o) for c, o in asks]
            except Exception:
                _write_finished_choices(backend, model, items, arm, part, asks, on_records)
                raise
            for i, (context, options), scores in zip(part, asks, got, strict=True):
                if len(scores) != len(options):
                    raise RuntimeError(f"{model}: backend returned {len(scores)} scores for {len(options)} options")
                records[(a, i)] = Record(model, items[i].id, items[i].lang, arm.spec, "choices", context,
                                         scores=[float(x) for x in scores], inverse="none")
            if on_records is not None:
                on_records([records[(a, i)] for i in part])
            advance(len(part))
    return [records[(a, i)] for a in range(len(arms)) for i in range(len(items))]


def _write_finished(backend: Any, model: str, items: Sequence[Item], arm: Arm, prompts: Sequence[str],
                    part: Sequence[int], max_new_tokens: int, stop: Sequence[str],
                    on_records: Callable[[list[Record]], None] | None) -> None:
    """After a chunk's call failed: hand ``on_records`` the requests of the chunk that finished all the same
    (the cached backend stored them), so a study's output file has them too. Sends nothing."""
    peek = getattr(backend, "cached_generate", None)
    if on_records is None or not callable(peek):
        return
    got = peek([prompts[i] for i in part], max_new_tokens, tuple(stop))
    done = [generated(model, items[i], arm, prompts[i], out) for i, out in zip(part, got, strict=True)
            if out is not None]
    if done:
        on_records(done)


def _write_finished_choices(backend: Any, model: str, items: Sequence[Item], arm: Arm, part: Sequence[int],
                            asks: Sequence[tuple[str, list[str]]],
                            on_records: Callable[[list[Record]], None] | None) -> None:
    """:func:`_write_finished` for a chunk of choice items."""
    peek = getattr(backend, "cached_choices", None)
    if on_records is None or not callable(peek):
        return
    done = [Record(model, items[i].id, items[i].lang, arm.spec, "choices", context, scores=scores, inverse="none")
            for i, (context, _), scores in zip(part, asks, peek(asks), strict=True) if scores is not None]
    if done:
        on_records(done)


def score_records(records: Sequence[Record], items: Sequence[Item], scorer: Scorer) -> list[Record]:
    """Score every record against its item's current gold answer, in one batch (in place; returns ``records``)."""
    by_id = {it.id: it for it in items}
    results = scorer([by_id[r.item] for r in records], records)
    if len(results) != len(records):
        raise RuntimeError(f"the scorer returned {len(results)} results for {len(records)} records")
    for r, res in zip(records, results, strict=True):
        r.result = res
    return list(records)


def run_pipeline(items: Sequence[Item], models: Sequence[str], arms: Sequence[Arm], scorer: Scorer, *,
                 open_backend: Callable[[str], Any], max_new_tokens: int, stop: Sequence[str] = ("\n",),
                 chunk: int = DEFAULT_CHUNK, show_progress: bool = True, label: str = "pipeline",
                 on_records: Callable[[list[Record]], None] | None = None
                 ) -> tuple[list[Record], dict[str, dict[str, int]]]:
    """Items × arms × models → scored records, plus per model the cache counts (``hits``, ``misses``,
    ``calls``). ``open_backend(model)`` returns a cached backend (one per model, released after it)."""
    from .runner import release

    total = len(models) * len(arms) * len(items)
    bar = ProgressBar(show_progress, total, label)
    records: list[Record] = []
    counts: dict[str, dict[str, int]] = {}
    try:
        for model in models:
            backend = open_backend(model)
            bar.describe(model)
            try:
                records += run_requests(backend, model, items, arms, max_new_tokens=max_new_tokens, stop=stop,
                                        chunk=chunk, advance=bar.advance, on_records=on_records)
            finally:
                counts[model] = {k: int(getattr(backend, k, 0)) for k in ("hits", "misses", "calls")}
                release(backend)
                del backend
    finally:
        bar.close()
    return score_records(records, items, scorer), counts


# ---- the summary -----------------------------------------------------------------------------------------

def _ci(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> list[float | None]:
    """Percentile bootstrap 95 % interval of the mean of ``values`` (items resampled with replacement)."""
    if values.size == 0:
        return [None, None]
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [float(lo), float(hi)]


def summarise(records: Sequence[Record], models: Sequence[str], arms: Sequence[Arm], metric: str, *,
              seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """``value[model][lang][transform]`` (the mean of the scorer's ``metric`` field) with ``ci95`` and ``n``;
    with a base and tuned models (``models[0]`` is the base) ``drop[model][lang]`` = base − tuned on the
    identity arm with ``drop_ci95`` (paired bootstrap: the same items for both models), and per non-identity
    transform ``recovery[model][lang][transform]``: the tuned model's value,
    its value on the identity arm, the share of the drop the transform recovers, ``(tuned_T − tuned_id) /
    (base_id − tuned_id)``, and a paired bootstrap 95 % interval of that share (None when there is no drop)."""
    langs = list(dict.fromkeys(r.lang for r in records))
    transforms = [a.spec for a in arms]
    cell: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in records:
        v = r.result.get(metric)
        cell.setdefault((r.model, r.lang, r.transform), {})[r.item] = float(v) if v is not None else math.nan
    out: dict[str, Any] = {"metric": metric, "models": list(models), "languages": langs, "transforms": transforms,
                           "value": {}, "ci95": {}, "n": {},
                           "bootstrap": {"resamples": n_boot, "seed": seed, "method": "percentile, items resampled"}}
    for mi, m in enumerate(models):
        for li, lang in enumerate(langs):
            for ti, t in enumerate(transforms):
                vals = np.array(list(cell.get((m, lang, t), {}).values()), dtype=float)
                vals = vals[~np.isnan(vals)]
                rng = np.random.default_rng([seed, mi, li, ti])
                out["value"].setdefault(m, {}).setdefault(lang, {})[t] = float(vals.mean()) if vals.size else None
                out["ci95"].setdefault(m, {}).setdefault(lang, {})[t] = _ci(vals, rng, n_boot)
                out["n"].setdefault(m, {}).setdefault(lang, {})[t] = int(vals.size)
    if len(models) > 1:
        base = models[0]
        out["drop"], out["recovery"] = {}, {}
        for mi, m in enumerate(models[1:], 1):
            for li, lang in enumerate(langs):
                b, tid = cell.get((base, lang, IDENTITY), {}), cell.get((m, lang, IDENTITY), {})
                ids = sorted(set(b) & set(tid))
                bv, iv = np.array([b[i] for i in ids]), np.array([tid[i] for i in ids])
                drop = float(np.nanmean(bv) - np.nanmean(iv)) if ids else None
                out["drop"].setdefault(m, {})[lang] = drop
                paired = bv - iv
                out.setdefault("drop_ci95", {}).setdefault(m, {})[lang] = _ci(
                    paired[~np.isnan(paired)], np.random.default_rng([seed, mi, li, 2]), n_boot)
                for ti, t in enumerate(transforms[1:], 1):
                    tt = cell.get((m, lang, t), {})
                    common = [i for i in ids if i in tt]
                    tv = np.array([tt[i] for i in common])
                    value = float(np.nanmean(tv)) if common else None
                    share, ci = None, [None, None]
                    if drop is not None and drop > 0 and common:
                        sel = [ids.index(i) for i in common]
                        share = (value - float(np.nanmean(iv[sel]))) / drop
                        ci = _paired_share_ci(bv[sel], iv[sel], tv, np.random.default_rng([seed, mi, li, ti, 1]),
                                              n_boot)
                    out["recovery"].setdefault(m, {}).setdefault(lang, {})[t] = {
                        "tuned": value, "tuned_identity": out["value"][m][lang][IDENTITY], "recovered": share,
                        "recovered_ci95": ci}
    return out


def _paired_share_ci(base: np.ndarray, tuned: np.ndarray, transformed: np.ndarray, rng: np.random.Generator,
                     n_boot: int) -> list[float | None]:
    """Bootstrap interval of ``(mean(transformed) − mean(tuned)) / (mean(base) − mean(tuned))``, resampling items
    (the same items for all three); resamples with no drop are left out."""
    n = base.size
    idx = rng.integers(0, n, size=(n_boot, n))
    b, t, x = np.nanmean(base[idx], axis=1), np.nanmean(tuned[idx], axis=1), np.nanmean(transformed[idx], axis=1)
    ok = (b - t) > 0
    if not ok.any():
        return [None, None]
    shares = (x[ok] - t[ok]) / (b[ok] - t[ok])
    lo, hi = np.percentile(shares, [2.5, 97.5])
    return [float(lo), float(hi)]


# ---- models behind the request cache ----------------------------------------------------------------------

def text_backend_options(spec: str, batch_size: int | str, chat: bool, bos: bool | None = None) -> dict[str, Any]:
    """Backend options of a study that sends raw text prompts: raw unless ``chat`` (``openai-chat:`` specs are
    chat models by definition), the batch size when fixed, ``bos`` (local models) when set."""
    opts: dict[str, Any] = {"show_progress": False}
    if isinstance(batch_size, int):
        opts["batch_size"] = batch_size
    if not spec.startswith("openai-chat:"):
        opts["chat"] = chat
    if bos is not None:
        opts["bos"] = bos
    return opts


@dataclass
class Opener:
    """Opens each model spec as a :class:`~conjugate.lm.cache.CachedBackend` on one request cache (``path``;
    None: no cache, every request is sent). ``options(spec)`` gives the backend options of a spec; ``load``
    builds the backend (default :func:`~conjugate.lm.load.load_backend`), only on the first cache miss."""

    path: Any
    options: Callable[[str], dict[str, Any]]
    load: Callable[..., Any] | None = None
    cache: Any = None

    def __post_init__(self) -> None:
        from .cache import RequestCache

        if self.load is None:
            from .load import load_backend

            self.load = load_backend
        self.cache = RequestCache(self.path) if self.path is not None else None

    def __call__(self, spec: str) -> Any:
        from .cache import CachedBackend, backend_identity

        opts = self.options(spec)
        load = self.load
        identity = backend_identity(spec, opts, hashes=self.cache)  # weight hashes remembered in the cache file
        return CachedBackend(lambda: load(spec, **opts), identity, self.cache, name=spec)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def open_cached(cache: Any, options: Callable[[str], dict[str, Any]], load: Callable[..., Any] | None = None
                ) -> Opener:
    """An :class:`Opener` for ``cache``: True for the default request cache (``$CONJUGATE_CACHE/requests.sqlite``),
    a path, or False / None for none."""
    from pathlib import Path

    from .cache import default_cache_path

    path = default_cache_path() if cache is True else (Path(cache) if cache not in (None, False) else None)
    return Opener(path, options, load)
