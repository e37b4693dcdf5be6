"""One request cache for every backend: answers keyed by what they depend on, in one SQLite file.

:class:`CachedBackend` wraps any :class:`~conjugate.lm.backend.Backend` (given as a function that loads it) and
answers each request it has answered before from a :class:`RequestCache`; the model is loaded only on the first
miss, so a fully cached rerun never loads it. A request's key (:func:`request_key`) is the sha256 of the
canonical JSON of the backend's identity (:func:`backend_identity`: model, weights, dtype, chat settings...,
computed without loading the model), the kind of request (``generate``, ``loglikelihood``, ``choices``), its
payload and its settings. Options that do not change answers (``batch_size``, the server's URL, the API key) are
not part of the identity, so a rerun with another batch size or against the same model on another port hits.

``CachedBackend.choices_many`` (also on the Hugging Face and OpenAI backends) is an optional batched form of
``choices``, outside the Backend protocol, with the same cache entries: a local model batches the contexts and
a served one keeps every request in flight, where one ``choices`` call per context cannot.

When the inner backend fails, the requests that finished are kept: an error that carries ``replay`` (see
:mod:`conjugate.lm.openai_compat`) is replayed request by request and the finished answers are stored before the
error propagates, so a rerun repeats no finished request.

The file (default :func:`default_cache_path`, ``$CONJUGATE_CACHE/requests.sqlite``) is SQLite in WAL mode with
one table ``requests(key TEXT PRIMARY KEY, value TEXT)``, values JSON. Writes are short ``INSERT OR REPLACE``
transactions committed before :meth:`RequestCache.put_many` returns, and a busy timeout lets several processes
(a sweep's runs) share one file. Text is stored with secrets masked (:func:`conjugate.runs.mask_secrets`). A
file that is not a request cache raises :class:`~conjugate.runs.StateError` naming it. No ``torch`` import here:
served-model studies stay light.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..runs import StateError, mask_secrets
from .backend import Backend, BackendError
from .fileid import cache_root, file_sha256
from .fileid import has_chat_template as _has_chat_template
from .fileid import hub_snapshot as _hub_snapshot

log = logging.getLogger(__name__)

CACHE_FILE = "requests.sqlite"
BUSY_TIMEOUT_S = 60.0
APPLICATION_ID = 0x636A7263  # "cjrc" in the SQLite header: this file is a conjugate request cache
SCHEMA_VERSION = 1
IDENTITY_VERSION = 1  # bump when a backend changes what it answers for the same identity
MAX_VARIABLES = 500  # keys per SELECT (SQLite's limit on bound parameters is 999 in old builds)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
MODEL_FILE_SUFFIXES = (*WEIGHT_SUFFIXES, ".json", ".txt", ".model", ".jinja", ".tiktoken")
# options that change how answers are computed, not what they are
HF_NEUTRAL = frozenset({"batch_size", "show_progress", "safetensors_only"})
OPENAI_NEUTRAL = frozenset({"api_key_env", "timeout", "max_concurrency", "max_retries", "backoff_base",
                            "backoff_cap", "show_progress"})



def default_cache_path() -> Path:
    """``$CONJUGATE_CACHE/requests.sqlite``; ``CONJUGATE_CACHE`` defaults to ``~/.cache/conjugate``."""
    return cache_root() / CACHE_FILE


# ---------------------------------------------------------------------------------------------- the file
class RequestCache:
    """A key → JSON value store in one SQLite file, safe for several processes at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise StateError(f"{self.path}: is a folder, not a request cache; choose a file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # one connection, used from any thread, one statement at a time
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StateError(f"{self.path}: cannot open the request cache ({e})") from None
        try:
            self._retry_busy(self._setup)
        except StateError:
            self.close()
            raise
        except sqlite3.Error as e:
            self.close()
            raise self._error(e) from None

    def __repr__(self) -> str:
        return f"RequestCache({str(self.path)!r})"

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, e: sqlite3.Error) -> StateError:
        text = str(e)
        if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return StateError(f"{self.path}: request cache locked by another process for over "
                              f"{BUSY_TIMEOUT_S:g}s ({text}); retry when it is done")
        if isinstance(e, sqlite3.OperationalError) and "unable to open" in text:
            return StateError(f"{self.path}: cannot open the request cache ({text})")
        return StateError(f"{self.path}: not a request cache ({text}); delete it to start an empty one")

    def _retry_busy(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, retried while another process holds a lock SQLite does not wait for (a journal-mode switch
        or a schema read during another's first write can report busy without the busy handler)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not ("locked" in str(e) or "busy" in str(e)) or time.monotonic() > deadline:
                    raise
                self._rollback()
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _setup(self) -> None:
        db = self._conn()
        app_id = db.execute("PRAGMA application_id").fetchone()[0]  # reads the header: garbage fails here
        if app_id not in (0, APPLICATION_ID):
            raise StateError(f"{self.path}: not a request cache (SQLite application id {app_id:#x}, not "
                             f"{APPLICATION_ID:#x}); delete it to start an empty one")
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                db.execute("CREATE TABLE requests (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif tables != {"requests"}:
                raise StateError(f"{self.path}: not a request cache (tables {', '.join(sorted(tables))}, expected "
                                 "only 'requests'); delete it to start an empty one")
            else:
                columns = [(name, kind.upper(), pk) for _, name, kind, _, _, pk in
                           db.execute("PRAGMA table_info(requests)")]
                if columns != [("key", "TEXT", 1), ("value", "TEXT", 0)]:
                    raise StateError(f"{self.path}: not a request cache (table 'requests' has columns "
                                     f"{', '.join(c[0] for c in columns)}, expected key, value); delete it to "
                                     "start an empty one")
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory: still correct, just slower
            log.info("%s: journal mode %s (WAL unavailable)", self.path, mode)
        # WAL + NORMAL: a committed put_many survives the process being killed; a power cut may lose the last
        # commits but never damages the file (FULL would fsync every commit: slow per item on network disks)
        db.execute("PRAGMA synchronous = NORMAL")

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateError(f"{self.path}: request cache already closed")
        return self._db

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored value of every key that has one (absent keys are left out)."""
        with self._lock:
            return self._get_many(keys)

    def _get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        db = self._conn()
        unique = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        for start in range(0, len(unique), MAX_VARIABLES):
            part = unique[start:start + MAX_VARIABLES]
            query = f"SELECT key, value FROM requests WHERE key IN ({', '.join('?' * len(part))})"
            try:
                rows = self._retry_busy(lambda q=query, p=part: db.execute(q, p).fetchall())
            except sqlite3.Error as e:
                raise self._error(e) from None
            for key, value in rows:
                try:
                    found[key] = json.loads(value)
                except (TypeError, ValueError):  # a damaged entry is a miss; the next answer replaces it
                    log.warning("%s: damaged entry %s ignored", self.path, key)
        return found

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store every item in one transaction, committed (and synced) before returning; text is masked."""
        if not items:
            return
        rows = [(str(k), json.dumps(_masked(v), ensure_ascii=False)) for k, v in items.items()]
        with self._lock:
            self._put_rows(rows)

    def _put_rows(self, rows: list[tuple[str, str]]) -> None:
        db = self._conn()

        def write() -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO requests (key, value) VALUES (?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

        try:
            self._retry_busy(write)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _masked(value: Any) -> Any:
    """``value`` with secrets masked in its text (strings, also inside lists and dicts)."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


def _canonical(obj: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serialisable in a request key: {type(o).__name__}")

    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=default)


def request_key(identity: Mapping[str, Any], kind: str, payload: Any, params: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON (sorted keys, no ASCII escaping, no spaces) of
    ``[identity, kind, payload, params]``."""
    return hashlib.sha256(_canonical([dict(identity), kind, payload, dict(params)]).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- the backend
class CachedBackend:
    """A :class:`~conjugate.lm.backend.Backend` answering from ``cache`` what it answered before.

    ``load`` makes the inner backend, called on the first miss only. ``identity`` is what answers depend on
    (:func:`backend_identity`). ``cache=None`` (``--no-cache``) sends every request through, still counting.
    Counters: ``hits`` (requests answered from the cache), ``misses`` (requests sent to the model), ``calls``
    (calls made to the inner backend). Within one call a repeated request is sent once (and counted a hit).
    With a cache, returned text is what the cache holds (secrets masked), the same on the first run and reruns.
    """

    def __init__(self, load: Callable[[], Backend], identity: Mapping[str, Any], cache: RequestCache | None,
                 name: str | None = None):
        self._load = load
        self.identity: dict[str, Any] = dict(identity)
        self.cache = cache
        self.name: str = name if name is not None else str(self.identity.get("model", "model"))
        self.hits = self.misses = self.calls = 0
        self._inner: Backend | None = None

    def __repr__(self) -> str:
        return f"CachedBackend({self.name!r}, cache={self.cache!r}, loaded={self.loaded})"

    @property
    def loaded(self) -> bool:
        """Whether the inner backend has been loaded (and not released since)."""
        return self._inner is not None

    @property
    def inner(self) -> Backend:
        """The inner backend, loaded now if it was not yet."""
        if self._inner is None:
            self._inner = self._load()
        return self._inner

    # ----------------------------------------------------------------- Backend
    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> list[str]:
        """Greedy continuations; every miss goes to one ``inner.generate`` call (keeping its batching)."""
        stop = tuple(stop)
        params = {"max_new_tokens": max_new_tokens, "stop": list(stop)}
        items = list(prompts)
        return self._answer("generate", items, items, params,
                            lambda todo: self.inner.generate(todo, max_new_tokens, stop),
                            lambda p: self.inner.generate([p], max_new_tokens, stop)[0])

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """``log p(continuation | context)`` per pair; every miss goes to one ``inner.loglikelihood`` call."""
        items = [(str(c), str(x)) for c, x in pairs]
        return self._answer("loglikelihood", items, [[c, x] for c, x in items], {},
                            lambda todo: self.inner.loglikelihood(todo),
                            lambda pair: self.inner.loglikelihood([pair])[0])

    def choices(self, context: str, options: Sequence[str]) -> list[float]:
        """``log p(option | context)`` per option, cached as one entry per (context, options)."""
        options = [str(o) for o in options]
        if not options:
            return []
        item = (context, tuple(options))
        (scores,) = self._answer("choices", [item], [[context, options]], {},
                                 lambda todo: [self._inner_choices(c, list(o)) for c, o in todo],
                                 lambda it: self._inner_choices(it[0], list(it[1])))
        return scores

    def choices_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """:meth:`choices` of every (context, options) item (the same cache entries), the misses in one inner
        call: ``inner.choices_many`` where the inner backend has it (a local model batches the contexts, a
        served one keeps all requests in flight), else ``inner.choices`` per item. An optional batched form,
        not part of the Backend protocol."""
        todo = [(str(c), tuple(str(o) for o in opts)) for c, opts in items]
        return self._answer("choices", todo, [[c, list(o)] for c, o in todo], {}, self._inner_choices_many,
                            lambda it: self._inner_choices(it[0], list(it[1])))

    def _inner_choices_many(self, items: list[tuple[str, tuple[str, ...]]]) -> list[list[float]]:
        many = getattr(self.inner, "choices_many", None)
        if not callable(many):
            return [self._inner_choices(c, list(o)) for c, o in items]
        out = [[float(x) for x in s] for s in many([(c, list(o)) for c, o in items])]
        if len(out) != len(items) or any(len(s) != len(o) for s, (_, o) in zip(out, items, strict=False)):
            raise BackendError(f"{self.name}: backend returned scores that do not match the options asked")
        return out

    def _inner_choices(self, context: str, options: list[str]) -> list[float]:
        inner = self.inner
        score = getattr(inner, "choices", None)
        out = score(context, options) if callable(score) else inner.loglikelihood([(context, o) for o in options])
        out = [float(x) for x in out]
        if len(out) != len(options):
            raise BackendError(f"{self.name}: backend returned {len(out)} scores for {len(options)} options")
        return out

    def _answer(self, kind: str, items: list, payloads: list, params: dict, run: Callable[[list], list],
                one: Callable[[Any], Any]) -> list:
        """Answers for ``items`` (their key payloads ``payloads``): cached ones from the cache, the rest from
        ``run(missing items)`` (one inner call), stored before they are returned."""
        if not items:
            return []
        if self.cache is None:
            self.misses += len(items)
            return self._call(run, items)
        keys = [request_key(self.identity, kind, p, params) for p in payloads]
        found = self.cache.get_many(keys)
        todo: dict[str, Any] = {}  # key -> item, each missing request once
        for key, item in zip(keys, items, strict=True):
            if key not in found and key not in todo:
                todo[key] = item
        self.misses += len(todo)
        self.hits += len(items) - len(todo)
        if todo:
            try:
                outs = self._call(run, list(todo.values()))
            except Exception as e:
                self._keep_finished(e, todo, one)
                raise
            if len(outs) != len(todo):
                raise BackendError(f"{self.name}: backend returned {len(outs)} answers for {len(todo)} requests")
            new = {key: _masked(_plain(out)) for key, out in zip(todo, outs, strict=True)}
            self.cache.put_many(new)
            found.update(new)
        return [found[key] for key in keys]

    def _call(self, run: Callable[[list], list], items: list) -> list:
        if self._inner is None:  # loading is not a call: a failed load counts none
            self._inner = self._load()
        self.calls += 1
        return list(run(items))

    def _keep_finished(self, error: BaseException, todo: dict[str, Any], one: Callable[[Any], Any]) -> None:
        """Store the answers of the requests that finished before ``error`` (see the module docstring)."""
        replay = getattr(error, "replay", None)
        if not callable(replay) or self.cache is None:
            return
        kept: dict[str, Any] = {}
        try:
            with replay():
                for key, item in todo.items():
                    try:
                        kept[key] = _masked(_plain(one(item)))
                    except Exception:  # noqa: BLE001 - this request had not finished: a rerun sends it
                        continue
            if kept:
                self.cache.put_many(kept)
        except Exception as e:  # noqa: BLE001 - never hide the original error behind a salvage problem
            log.warning("%s: could not keep the finished requests of a failed call: %s", self.name, e)

    def cached_generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ("\n",)
                        ) -> list[str | None]:
        """What the cache holds for these generations (None where it holds nothing); sends nothing, counts
        nothing. The pipeline uses it to write out what finished in a chunk whose call failed."""
        params = {"max_new_tokens": max_new_tokens, "stop": list(tuple(stop))}
        return self._peek("generate", list(prompts), params)

    def cached_choices(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float] | None]:
        """What the cache holds for these (context, options) items (None where nothing); sends nothing."""
        return self._peek("choices", [[str(c), [str(o) for o in opts]] for c, opts in items], {})

    def _peek(self, kind: str, payloads: list, params: dict) -> list:
        if self.cache is None:
            return [None] * len(payloads)
        keys = [request_key(self.identity, kind, p, params) for p in payloads]
        found = self.cache.get_many(keys)
        return [found.get(k) for k in keys]

    # ----------------------------------------------------------------- lifetime
    def release(self) -> None:
        """Close and drop the inner backend (if loaded) and give its memory back; a later miss loads it again."""
        inner, self._inner = self._inner, None
        if inner is None:
            return
        close = getattr(inner, "close", None)
        if callable(close):
            close()
        del inner
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    close = release  # what :func:`conjugate.lm.runner.release` calls


def _plain(value: Any) -> Any:
    """A JSON-ready answer: a float for a number (numpy / torch scalars too), lists for sequences."""
    if isinstance(value, str | int | float) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------- identity
def backend_identity(spec: str, options: Mapping[str, Any], hashes: RequestCache | None = None) -> dict[str, Any]:
    """What the answers of ``load_backend(spec, **options)`` depend on, computed without loading the model.

    - every backend: ``kind`` (``hf``, ``openai``, ``openai-chat``), ``model``, ``v`` (:data:`IDENTITY_VERSION`),
      and every constructor option that can change answers, with its default when not given (a new option is
      included automatically; the known neutral ones, :data:`HF_NEUTRAL` / :data:`OPENAI_NEUTRAL`, are not);
    - a local Hugging Face folder: its absolute path, the sha256 of its weight, config and tokenizer files
      (``files``; hashes are remembered by (path, size, mtime), in memory and in ``hashes`` when given), the
      dtype and device type resolved as :class:`~conjugate.lm.hf.HFBackend` resolves them, and ``chat`` (its
      ``None`` resolved from the folder's chat template);
    - a hub id: the id, ``revision`` and the ``commit`` it resolves to in the local Hugging Face cache (``None``
      before the first download);
    - a served model: the model name, ``chat``, ``system_prompt``, ``temperature``; never the server URL or the
      API key.

    Options only the other kind of backend takes are dropped, as are unknown ones (:func:`load_backend`
    refuses those when it loads the model). Only a Hugging Face spec imports ``torch`` (to resolve the device).
    """
    from .load import OPENAI_PREFIXES, parse_openai_spec

    spec = spec.strip()
    if not spec:
        raise BackendError("empty model spec")
    options = dict(options)
    for prefix, chat in OPENAI_PREFIXES.items():
        if spec.startswith(prefix):
            model, _ = parse_openai_spec(spec[len(prefix):], spec)  # the URL is checked, never recorded
            from .openai_compat import OpenAIBackend

            options.setdefault("chat", chat)
            ident = {"v": IDENTITY_VERSION, "kind": prefix[:-1], "model": model}
            ident.update(_answer_options(OpenAIBackend, options, OPENAI_NEUTRAL))
            return ident
    return _hf_identity(spec, options, hashes)


def _constructor_params(cls: type) -> dict[str, inspect.Parameter]:
    skip = {"self", "path_or_id", "model", "base_url"}
    return {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
            if k not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _answer_options(cls: type, options: dict[str, Any], neutral: frozenset[str]) -> dict[str, Any]:
    """The answer-changing constructor options of ``cls``, defaults filled in (other names are dropped)."""
    out = {}
    for name, param in _constructor_params(cls).items():
        if name in neutral:
            continue
        value = options.get(name, param.default)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)  # temperature=0 and temperature=0.0 are one setting
        out[name] = None if value is inspect.Parameter.empty else value
    return out


def _hf_identity(spec: str, options: dict[str, Any], hashes: RequestCache | None) -> dict[str, Any]:
    from .hf import HFBackend, pick_device, pick_dtype
    from .source import resolve_source

    source = resolve_source(spec)
    spec = source.model
    path = Path(spec)
    ident: dict[str, Any] = {"v": IDENTITY_VERSION, "kind": "hf"}
    ident.update(_answer_options(HFBackend, options, HF_NEUTRAL))
    device = pick_device(str(ident.get("device", "auto")))
    ident["device"] = device.split(":")[0]
    ident["dtype"] = str(pick_dtype(ident.get("dtype", "auto"), device)).removeprefix("torch.")
    if source.chat_template is not None:  # the prompt format a named sibling carries is part of what it answers
        ident["chat_template"] = hashlib.sha256(source.chat_template.encode("utf-8")).hexdigest()
        if ident.get("chat") is None:
            ident["chat"] = True
    if source.adapter is not None:
        ident["adapter"] = {f.name: file_sha256(f, hashes) for f in _adapter_files(source.adapter)}
    if source.gguf is not None:  # the answers depend on the file's bytes and on the transformers that converts it
        from .gguf import transformers_version

        ident["model"] = f"gguf:{source.gguf.name}"
        ident["files"] = {source.gguf.name: file_sha256(source.gguf, hashes)}
        ident["transformers"] = transformers_version()
        if ident.get("chat") is None:
            ident["chat"] = _gguf_has_chat_template(source.gguf)
        return ident
    if path.exists():
        folder = path.resolve()
        ident["model"] = str(folder)
        ident["files"] = {f.name: file_sha256(f, hashes) for f in _model_files(folder)}
    else:
        ident["model"] = spec
        ident["commit"], folder = _hub_snapshot(spec, ident.get("revision"))
    if ident.get("chat") is None and folder is not None:
        ident["chat"] = _has_chat_template(folder)
    return ident


def _adapter_files(folder: Path) -> list[Path]:
    from .adapters import adapter_files

    return adapter_files(folder)


def _gguf_has_chat_template(path: Path) -> bool:
    """Whether a GGUF file's metadata carries a chat template (``tokenizer.chat_template``), read from its cached
    conversion when there is one, else from the file's header."""
    from .gguf import cached_entries

    for folder, meta in cached_entries():
        if meta.get("gguf_name") == path.name and meta.get("gguf_sha256") == file_sha256(path):
            return _has_chat_template(folder)
    try:
        from gguf import GGUFReader

        return "tokenizer.chat_template" in GGUFReader(str(path)).fields
    except Exception:  # noqa: BLE001 - a file the reader cannot parse fails later, when it is loaded
        return False


def _model_files(folder: Path) -> Iterator[Path]:
    """The files of a model folder that can change its answers (weights, config, tokenizer), in name order."""
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if f.is_file() and f.name.endswith(MODEL_FILE_SUFFIXES) and not f.name.startswith("."):
            yield f
