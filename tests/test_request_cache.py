"""The request cache (conjugate.lm.cache) and Backend.choices: keys, the SQLite file, CachedBackend over the tiny
local models and the fake OpenAI server, identities, concurrency, damage and salvage of a failed batch."""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from conjugate.lm.backend import Backend, BackendError
from conjugate.lm.cache import (
    CachedBackend,
    RequestCache,
    backend_identity,
    default_cache_path,
    request_key,
)
from conjugate.runs import StateError

PROMPTS = ["The cat sat on the", "What is 7 times 12?", "Le chat est assis sur", "Input: the weather is"]
PAIRS = [("The cat sat on the", " mat."), ("Answer:", " True"), ("Question: a man is", " performing music."),
         ("El perro corre en el", " parque.")]
CONTEXT = "Premise: a man is playing a guitar on stage.\nQuestion: a man is performing music. True, False or Neither?" \
          "\nAnswer:"
OPTIONS = [" True", " False", " Neither", " the", " is", " performing music."]


class Counting:
    """A fake inner backend that records every call."""

    name = "counting"

    def __init__(self):
        self.calls: list[tuple[str, list]] = []

    def generate(self, prompts, max_new_tokens, stop=("\n",)):
        self.calls.append(("generate", list(prompts)))
        return [f"{p[::-1]}|{max_new_tokens}" for p in prompts]

    def loglikelihood(self, pairs):
        self.calls.append(("loglikelihood", list(pairs)))
        return [-len(c) - len(x) / 10 for c, x in pairs]

    def choices(self, context, options):
        self.calls.append(("choices", [context, list(options)]))
        return [-len(o) / 10 for o in options]


def never_load():
    raise AssertionError("the model was loaded although every request was cached")


def opened() -> RequestCache:
    return RequestCache(default_cache_path())


# ---------------------------------------------------------------- keys and the file

def test_default_cache_path_follows_conjugate_cache(tmp_path, monkeypatch) -> None:
    assert default_cache_path() == Path(os.environ["CONJUGATE_CACHE"]) / "requests.sqlite"
    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path / "c"))
    assert default_cache_path() == tmp_path / "c" / "requests.sqlite"
    monkeypatch.delenv("CONJUGATE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "conjugate" / "requests.sqlite"


def test_request_key_is_sha256_of_canonical_json() -> None:
    ident = {"model": "m", "kind": "hf", "files": {"b": "2", "a": "1"}}
    key = request_key(ident, "generate", "héllo", {"stop": ["\n"], "max_new_tokens": 5})
    text = json.dumps([ident, "generate", "héllo", {"max_new_tokens": 5, "stop": ["\n"]}], sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    assert key == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert key == request_key(dict(reversed(ident.items())), "generate", "héllo", {"max_new_tokens": 5,
                                                                                  "stop": ("\n",)})
    others = {request_key(ident, "loglikelihood", "héllo", {"stop": ["\n"], "max_new_tokens": 5}),
              request_key(ident, "generate", "hello", {"stop": ["\n"], "max_new_tokens": 5}),
              request_key(ident, "generate", "héllo", {"stop": ["\n"], "max_new_tokens": 6}),
              request_key({**ident, "model": "n"}, "generate", "héllo", {"stop": ["\n"], "max_new_tokens": 5})}
    assert key not in others and len(others) == 4


def test_cache_round_trip_persists_and_masks_secrets(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    path = tmp_path / "deep" / "er" / "c.sqlite"
    with RequestCache(path) as c:
        c.put_many({"a": "text with sk-very-secret-value inside", "b": -1.25, "c": [-math.inf, 0.5], "d": "ü→"})
        c.put_many({"b": -2.5})  # replaced
        assert c.get_many(["a", "b", "missing"]) == {"a": "text with <redacted> inside", "b": -2.5}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with RequestCache(path) as again:
        got = again.get_many(["a", "b", "c", "d"])
        assert got == {"a": "text with <redacted> inside", "b": -2.5, "c": [-math.inf, 0.5], "d": "ü→"}
        assert len(again) == 4
    assert b"sk-very-secret-value" not in path.read_bytes()
    many = [f"k{i}" for i in range(1200)]  # more keys than one SELECT binds
    with RequestCache(path) as c:
        c.put_many({k: i for i, k in enumerate(many)})
        assert c.get_many(many) == {k: i for i, k in enumerate(many)}


def test_garbage_file_is_a_state_error_naming_it(tmp_path) -> None:
    path = tmp_path / "requests.sqlite"
    path.write_bytes(os.urandom(64) + b"definitely not sqlite" * 200)
    with pytest.raises(StateError, match=r"requests\.sqlite: not a request cache \(.*\); delete it to start an "
                                         r"empty one"):
        RequestCache(path)


def test_wrong_schema_is_a_state_error(tmp_path) -> None:
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match=r"other\.sqlite: not a request cache \(tables notes"):
        RequestCache(other)
    cols = tmp_path / "cols.sqlite"
    db = sqlite3.connect(cols)
    db.execute("CREATE TABLE requests (key TEXT PRIMARY KEY, value BLOB, extra INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match=r"cols\.sqlite: not a request cache \(table 'requests' has columns"):
        RequestCache(cols)
    with pytest.raises(StateError, match="is a folder"):
        RequestCache(tmp_path)


def _writer(path: str, tag: str, n: int, start) -> None:
    """One process of the concurrency test: ``n`` short transactions, reads in between."""
    start.wait(timeout=120)  # both open the new file and write at the same moment
    c = RequestCache(path)
    for i in range(n):
        c.put_many({f"{tag}-{i}": i, f"shared-{i}": tag})
        if i % 40 == 0:
            got = c.get_many([f"{tag}-{j}" for j in range(i + 1)])
            assert len(got) == i + 1, (tag, i, len(got))
    c.close()


def test_two_processes_writing_one_file_lose_nothing(tmp_path) -> None:
    path = str(tmp_path / "shared" / "requests.sqlite")
    ctx = multiprocessing.get_context("spawn")
    n = 300
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, tag, n, start)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    with RequestCache(path) as c:
        got = c.get_many([f"{t}-{i}" for t in "ab" for i in range(n)] + [f"shared-{i}" for i in range(n)])
        assert len(got) == 3 * n and all(got[f"{t}-{i}"] == i for t in "ab" for i in range(n))
        assert {got[f"shared-{i}"] for i in range(n)} <= {"a", "b"}


# ---------------------------------------------------------------- CachedBackend, counting, laziness

def test_hits_misses_calls_and_lazy_load() -> None:
    inner, loads = Counting(), []
    ident = {"kind": "fake", "model": "counting"}

    def load():
        loads.append(1)
        return inner

    cb = CachedBackend(load, ident, opened(), name="fake")
    assert isinstance(cb, Backend) and cb.name == "fake" and not cb.loaded and cb.identity == ident
    assert cb.generate([], 5) == [] and cb.loglikelihood([]) == [] and cb.choices("x", []) == [] and not loads
    first = cb.generate(["ab", "cd", "ab"], 5)
    assert first == ["ba|5", "dc|5", "ba|5"] and (cb.hits, cb.misses, cb.calls) == (1, 2, 1)
    assert inner.calls == [("generate", ["ab", "cd"])] and loads == [1]
    assert cb.generate(["cd", "ef", "ab"], 5) == ["dc|5", "fe|5", "ba|5"]
    assert (cb.hits, cb.misses, cb.calls) == (3, 3, 2) and inner.calls[-1] == ("generate", ["ef"])
    assert cb.generate(["ab"], 6) == ["ba|6"] and cb.generate(["ab"], 5, stop=()) == ["ba|5"]  # other params
    assert cb.misses == 5
    assert cb.loglikelihood(PAIRS[:2]) == inner.loglikelihood(PAIRS[:2])
    assert cb.choices("ctx", [" a", " bb"]) == [-0.2, -0.3] and cb.choices("ctx", [" a", " bb"]) == [-0.2, -0.3]
    assert cb.choices("ctx", [" bb", " a"]) == [-0.3, -0.2]  # another entry: options are ordered
    before = len(inner.calls)
    # a second backend on the same file: every answer cached, the model never loaded
    again = CachedBackend(never_load, ident, opened())
    assert again.generate(["ab", "cd", "ef"], 5) == ["ba|5", "dc|5", "fe|5"]
    assert again.loglikelihood(PAIRS[:2]) == cb.loglikelihood(PAIRS[:2])
    assert again.choices("ctx", [" a", " bb"]) == [-0.2, -0.3]
    assert (again.hits, again.misses, again.calls) == (6, 0, 0) and not again.loaded
    assert len(inner.calls) == before
    # another identity shares nothing
    other = CachedBackend(lambda: Counting(), {**ident, "model": "other"}, opened())
    other.generate(["ab"], 5)
    assert (other.hits, other.misses) == (0, 1)


def test_no_cache_passes_everything_through_and_counts() -> None:
    inner = Counting()
    cb = CachedBackend(lambda: inner, {"kind": "fake"}, None)
    assert cb.generate(["ab", "ab"], 3) == ["ba|3", "ba|3"] and cb.generate(["ab"], 3) == ["ba|3"]
    assert cb.choices("c", ["x"]) == [-0.1]
    assert (cb.hits, cb.misses, cb.calls) == (0, 4, 3) and len(inner.calls) == 3


def test_choices_of_an_inner_backend_without_choices_go_through_loglikelihood() -> None:
    class Old:
        name = "old"

        def __init__(self):
            self.calls = 0

        def loglikelihood(self, pairs):
            self.calls += 1
            return [-float(len(x)) for _, x in pairs]

    old = Old()
    cb = CachedBackend(lambda: old, {"kind": "old"}, opened())
    assert cb.choices("c", ["a", "bbb"]) == [-1.0, -3.0] and old.calls == 1


def test_release_frees_the_inner_backend_and_a_miss_loads_it_again() -> None:
    loads, closed = [], []

    class Closing(Counting):
        def close(self):
            closed.append(1)

    def load():
        loads.append(1)
        return Closing()

    cb = CachedBackend(load, {"kind": "fake"}, opened())
    cb.release()  # nothing loaded: nothing to do
    cb.generate(["x"], 2)
    cb.release()
    assert closed == [1] and not cb.loaded
    cb.generate(["x"], 2)  # cached: still not loaded
    assert loads == [1]
    cb.generate(["y"], 2)
    assert loads == [1, 1] and cb.loaded
    cb.close()
    assert closed == [1, 1]


# ---------------------------------------------------------------- a local model

def hf(spec, **options):
    from conjugate.lm.load import load_backend

    return load_backend(str(spec), **options)


def test_hf_cached_equals_uncached(tiny_gpt2) -> None:
    spec, opts = str(tiny_gpt2), {"device": "cpu", "chat": False, "batch_size": 3}
    plain = hf(spec, **opts)
    want_gen = plain.generate(PROMPTS, 8)
    want_ll = plain.loglikelihood(PAIRS)
    want_ch = plain.choices(CONTEXT, OPTIONS)
    ident = backend_identity(spec, opts)
    first = CachedBackend(lambda: hf(spec, **opts), ident, opened(), name=spec)
    assert first.generate(PROMPTS, 8) == want_gen
    assert first.loglikelihood(PAIRS) == want_ll
    assert first.choices(CONTEXT, OPTIONS) == want_ch
    assert (first.hits, first.misses, first.calls) == (0, len(PROMPTS) + len(PAIRS) + 1, 3)
    again = CachedBackend(never_load, backend_identity(spec, {**opts, "batch_size": 7, "show_progress": True}),
                          opened(), name=spec)
    assert again.generate(PROMPTS, 8) == want_gen
    assert again.loglikelihood(PAIRS) == want_ll
    assert again.choices(CONTEXT, OPTIONS) == want_ch
    assert again.calls == 0 and again.misses == 0 and not again.loaded


def forward_counter(backend):
    calls = []
    backend.model.register_forward_hook(lambda module, args, output: calls.append(1))
    return calls


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_hf_choices_equal_summed_loglikelihoods_and_are_batched(arch, tiny_gpt2, tiny_llama) -> None:
    folder = tiny_gpt2 if arch == "gpt2" else tiny_llama
    backend = hf(folder, device="cpu", chat=False, batch_size=2)
    n_tokens = [len(backend.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in OPTIONS]
    assert max(n_tokens) > 1 and min(n_tokens) == 1  # one-token and several-token options together
    forwards = forward_counter(backend)
    got = backend.choices(CONTEXT, OPTIONS)
    assert len(forwards) == 2  # the context once, then every option's tail in one batch (not one per option)
    want = backend.loglikelihood([(CONTEXT, o) for o in OPTIONS])
    assert got == pytest.approx(want, abs=1e-4)
    forwards.clear()
    assert backend.choices(CONTEXT, [" True", " False"]) == pytest.approx(want[:2], abs=1e-4)
    assert len(forwards) <= 2
    # an empty context, and one cut at the window limit (tokenised per option: scored as pairs)
    long_ctx = " ".join(["El perro corre en el parque."] * 80) + "\nAnswer:"
    for ctx in ("", long_ctx):
        got = backend.choices(ctx, OPTIONS[:3])
        assert got == pytest.approx(backend.loglikelihood([(ctx, o) for o in OPTIONS[:3]]), abs=1e-4)
    assert backend.choices(CONTEXT, []) == []


def test_hf_choices_many_batches_contexts_and_shares_cache_entries(tiny_llama) -> None:
    spec, opts = str(tiny_llama), {"device": "cpu", "chat": False, "batch_size": 2}
    backend = hf(spec, **opts)
    long_ctx = " ".join(["El perro corre en el parque."] * 80) + "\nAnswer:"
    items = [(CONTEXT, OPTIONS[:3]), ("Answer:", OPTIONS[:3]), ("Question: a man is", OPTIONS[3:]),
             ("The cat sat on the", OPTIONS[:3]), (long_ctx, OPTIONS[:2]), ("x", []), ("Ok.", [" the", " is"])]
    one_by_one = [backend.choices(c, o) for c, o in items]
    forwards = forward_counter(backend)
    many = backend.choices_many(items)
    assert len(forwards) <= 6  # 4 three-option contexts: 2 batches of 2 (2 passes each); 1 pass for the rest
    assert [len(s) for s in many] == [len(o) for _, o in items]
    assert [x for s in many for x in s] == pytest.approx([x for s in one_by_one for x in s], abs=1e-4)
    cb = CachedBackend(lambda: hf(spec, **opts), backend_identity(spec, opts), opened())
    assert [x for s in cb.choices_many(items) for x in s] == pytest.approx([x for s in many for x in s], abs=1e-4)
    assert cb.calls == 1 and cb.misses == len(items)
    assert [cb.choices(c, o) for c, o in items] == cb.choices_many(items) and cb.calls == 1


def test_xnli_choice_logliks_goes_through_backend_choices(tiny_gpt2) -> None:
    from conjugate.lm.xnli.choices import choice_logliks

    spec, opts = str(tiny_gpt2), {"device": "cpu", "chat": False}
    cb = CachedBackend(lambda: hf(spec, **opts), backend_identity(spec, opts), opened())
    contexts, options = [CONTEXT, "Answer:"], [[" True", " False", " Neither"]] * 2
    got = choice_logliks(cb, contexts, options)
    assert cb.calls == 2 and cb.misses == 2
    want = cb.inner.loglikelihood([(c, o) for c, os_ in zip(contexts, options, strict=True) for o in os_])
    assert [x for s in got for x in s] == pytest.approx(want, abs=1e-4)
    assert choice_logliks(cb, contexts, options) == got and cb.calls == 2 and cb.hits == 2


# ---------------------------------------------------------------- identities

def copy_model(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_identity_follows_weights_dtype_and_chat_not_batch_size(tiny_gpt2, tmp_path) -> None:
    folder = copy_model(tiny_gpt2, tmp_path / "model")
    base = backend_identity(str(folder), {"device": "cpu"})
    assert base["kind"] == "hf" and base["model"] == str(folder.resolve())
    assert base["dtype"] == "float32" and base["device"] == "cpu" and base["chat"] is False
    assert "model.safetensors" in base["files"] and "tokenizer.json" in base["files"]
    assert backend_identity(str(folder), {"device": "cpu", "batch_size": 2}) == base
    assert backend_identity(str(folder), {"device": "cpu", "batch_size": 64, "show_progress": True}) == base
    assert backend_identity(f"hf:{folder}", {"device": "cpu", "dtype": "fp32", "chat": False}) == base
    assert backend_identity(str(folder), {"device": "cpu", "dtype": "bfloat16"}) != base
    assert backend_identity(str(folder), {"device": "cpu", "chat": True}) != base
    assert backend_identity(str(folder), {"device": "cpu", "system_prompt": "Be brief."}) != base
    from conjugate.lm.hf import pick_device, pick_dtype

    auto = backend_identity(str(folder), {})
    device = pick_device("auto")
    assert auto["device"] == device.split(":")[0] and auto["dtype"] == str(pick_dtype("auto", device))[6:]
    # other weights (same size, new bytes): another identity, computed without loading the (now broken) model
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    changed = backend_identity(str(folder), {"device": "cpu"})
    assert changed != base and changed["files"]["model.safetensors"] != base["files"]["model.safetensors"]
    assert {k: v for k, v in changed["files"].items() if k != "model.safetensors"} == \
        {k: v for k, v in base["files"].items() if k != "model.safetensors"}


def test_file_hashes_are_remembered_in_the_cache_file(tiny_gpt2, tmp_path, monkeypatch) -> None:
    folder = copy_model(tiny_gpt2, tmp_path / "model")
    with opened() as c:
        first = backend_identity(str(folder), {"device": "cpu"}, hashes=c)
    from conjugate.lm import fileid

    monkeypatch.setattr(fileid, "_FILE_HASHES", {})  # a new process: nothing in memory

    def no_hashing(path):
        raise AssertionError(f"rehashed {path}")

    monkeypatch.setattr(fileid, "sha256_file", no_hashing)
    with opened() as c:
        assert backend_identity(str(folder), {"device": "cpu"}, hashes=c) == first
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    with opened() as c, pytest.raises(AssertionError, match="rehashed .*config.json"):
        backend_identity(str(folder), {"device": "cpu"}, hashes=c)


def test_served_identity_ignores_url_and_key(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-an-identity")
    a = backend_identity("openai:m@http://127.0.0.1:8000/v1", {"batch_size": 4, "max_concurrency": 2})
    b = backend_identity("openai:m@http://10.0.0.7:9999/v1", {"timeout": 5, "api_key_env": "OTHER"})
    assert a == b == {"v": 1, "kind": "openai", "model": "m", "chat": False, "system_prompt": None,
                      "temperature": 0.0}
    assert backend_identity("openai:m@http://h:1/v1", {"temperature": 0}) == a
    assert "sk-never" not in json.dumps(a) and "127.0.0.1" not in json.dumps(a)
    assert backend_identity("openai-chat:m@http://h:1/v1", {}) != a
    assert backend_identity("openai:m@http://h:1/v1", {"chat": True}) != a
    assert backend_identity("openai:m@http://h:1/v1", {"system_prompt": "Be brief."}) != a
    assert backend_identity("openai:n@http://h:1/v1", {}) != a
    with pytest.raises(BackendError, match="no server URL"):
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        backend_identity("openai:m", {})


# ---------------------------------------------------------------- a served model

def served(spec, **options):
    from conjugate.lm.load import load_backend

    return load_backend(spec, **options)


def test_served_cached_equals_uncached_and_another_port_hits() -> None:
    from fake_openai import FakeOpenAI

    def respond(prompt, params):
        return f" echo {len(str(prompt))}\nrest"

    with FakeOpenAI(respond) as one:
        spec = f"openai:fake-model@{one.url}"
        plain = served(spec)
        want = (plain.generate(PROMPTS, 5), plain.loglikelihood(PAIRS), plain.choices(CONTEXT, OPTIONS[:3]))
        assert want[2] == plain.loglikelihood([(CONTEXT, o) for o in OPTIONS[:3]])
        cb = CachedBackend(lambda: served(spec), backend_identity(spec, {}), opened(), name=spec)
        got = (cb.generate(PROMPTS, 5), cb.loglikelihood(PAIRS), cb.choices(CONTEXT, OPTIONS[:3]))
        assert got == want and cb.calls == 3
        items = [(CONTEXT, OPTIONS[:3]), ("Answer:", OPTIONS[3:])]
        want_many = plain.choices_many(items)
        assert want_many == [plain.choices(c, o) for c, o in items]
        sent = one.count
        assert cb.choices_many(items) == want_many
        assert one.count == sent + 3 and cb.calls == 4  # the cached item is not sent again
        want = (*want, want_many)
    with FakeOpenAI(respond) as two:
        assert two.url != one.url
        spec2 = f"openai:fake-model@{two.url}"
        again = CachedBackend(lambda: served(spec2), backend_identity(spec2, {"batch_size": 2}), opened())
        got = (again.generate(PROMPTS, 5), again.loglikelihood(PAIRS), again.choices(CONTEXT, OPTIONS[:3]),
               again.choices_many(items))
        assert got == want and two.count == 0 and again.calls == 0 and not again.loaded


def test_a_failure_mid_batch_keeps_the_finished_responses() -> None:
    from fake_openai import FakeOpenAI

    broken = {"on": True}

    def respond(prompt, params):
        if broken["on"] and "boom" in str(prompt):
            time.sleep(0.3)  # the others finish first (requests not started when it fails are cancelled)
            raise RuntimeError("the server fell over")
        return f" ok {prompt[:3]}"

    prompts = ["alpha one", "beta two", "boom three", "gamma four", "delta five"]
    with FakeOpenAI(respond) as server:
        spec = f"openai:fake-model@{server.url}"
        opts = {"max_retries": 0, "max_concurrency": 8}
        cb = CachedBackend(lambda: served(spec, **opts), backend_identity(spec, opts), opened())
        with pytest.raises(BackendError, match="HTTP 500"):
            cb.generate(prompts, 4)
        assert server.count == len(prompts)
        broken["on"] = False
        rerun = CachedBackend(lambda: served(spec, **opts), backend_identity(spec, opts), opened())
        out = rerun.generate(prompts, 4)
        assert server.count == len(prompts) + 1 and server.requests[-1].body["prompt"] == "boom three"
        assert out == [f" ok {p[:3]}" for p in prompts] and (rerun.hits, rerun.misses) == (4, 1)
        # loglikelihood pairs too
        broken["on"] = True
        pairs = [("ctx a", " x"), ("boom ctx", " y"), ("ctx c", " z")]
        with pytest.raises(BackendError):
            rerun.loglikelihood(pairs)
        broken["on"] = False
        sent = server.count
        third = CachedBackend(never_load, backend_identity(spec, opts), opened())
        with pytest.raises(AssertionError):  # one pair is missing: the model has to load for it
            third.loglikelihood(pairs)
        assert third.misses == 1 and third.hits == 2
        assert len(rerun.loglikelihood(pairs)) == 3 and server.count == sent + 1
        # choices: an item is kept when all its options finished
        broken["on"] = True
        items = [("ctx one", [" a", " b"]), ("boom two", [" a", " b"]), ("ctx three", [" c"])]
        with pytest.raises(BackendError):
            rerun.choices_many(items)
        broken["on"] = False
        sent = server.count
        assert [len(s) for s in rerun.choices_many(items)] == [2, 2, 1] and server.count == sent + 2
