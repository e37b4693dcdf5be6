"""Model backends: HF (tiny models built here), OpenAI-compatible (against a real local fake server), load_backend,
presets and the ``conjugate models`` CLI."""

from __future__ import annotations

import logging
import socket
import sys
import time

import pytest
import torch
from fake_openai import FakeOpenAI, tokens
from typer.testing import CliRunner

from conjugate.cli import app
from conjugate.lm.backend import Backend, BackendError
from conjugate.lm.hf import HFBackend, cut_at_stop
from conjugate.lm.load import load_backend
from conjugate.lm.openai_compat import OpenAIBackend, continuation_start
from conjugate.lm.presets import PRESETS, resolve_models

PROMPTS = [
    "The cat",
    "What is 7 times 12? Answer:",
    "Le",
    "Input: the weather is nice today\nOutput: THE WEATHER IS NICE TODAY\n\nInput: the dog\nOutput:",
    "A macska a szőnyegen ül. De kat zit op de mat.",
    "",
]


@pytest.fixture(params=["gpt2", "llama"])
def tiny_dir(request, tiny_gpt2, tiny_llama):
    return {"gpt2": tiny_gpt2, "llama": tiny_llama}[request.param]


# --------------------------------------------------------------------------- HF backend
def test_tiny_model_loads_through_load_backend(tiny_dir):
    backend = load_backend(str(tiny_dir), batch_size=4, max_concurrency=3)  # an OpenAI-only option is dropped
    assert isinstance(backend, HFBackend) and isinstance(backend, Backend)
    expected = ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)
    assert (backend.device, backend.dtype) == expected and backend.batch_size == 4
    assert backend.tokenizer.pad_token_id is not None and backend.chat is False
    out = backend.generate(["The cat"], max_new_tokens=5, stop=())
    assert len(out) == 1 and isinstance(out[0], str) and out[0]


def test_batched_generation_equals_one_at_a_time(tiny_dir):
    backend = HFBackend(str(tiny_dir), device="cpu", batch_size=3)
    batched = backend.generate(PROMPTS, max_new_tokens=8, stop=())
    single = [backend.generate([p], max_new_tokens=8, stop=())[0] for p in PROMPTS]
    assert batched == single
    assert len(set(batched)) > 1  # different prompts, different answers: order is actually being checked
    # a batch of one reversed list gives the reversed answers (input order kept whatever the sort did)
    assert backend.generate(PROMPTS[::-1], max_new_tokens=8, stop=()) == batched[::-1]


def test_stop_string_cuts_and_ends_generation_early(tiny_gpt2):
    backend = HFBackend(str(tiny_gpt2), device="cpu", batch_size=8)
    prompts = PROMPTS[:3]
    full = backend.generate(prompts, max_new_tokens=30, stop=())
    # per row, an early character that row certainly contains (not a half-decoded byte)
    stops = tuple(dict.fromkeys(next(c for c in t[1:] if c != "\ufffd") for t in full))
    widths = []
    original = backend.model.generate

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        widths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    backend.model.generate = recording
    cut = backend.generate(prompts, max_new_tokens=30, stop=stops)
    assert cut == [cut_at_stop(t, stops)[0] for t in full]
    assert all(len(c) < len(t) for c, t in zip(cut, full, strict=True))
    assert widths == [widths[0]] and widths[0] < 30  # every row hit a stop, so generation ended early


def test_default_stop_is_newline(tiny_gpt2):
    """Bias the newline logit until the greedy answer contains a newline mid-way; the default stop cuts there."""
    backend = HFBackend(str(tiny_gpt2), device="cpu")
    newline = backend.tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert len(newline) == 1
    bias = torch.zeros(backend.model.config.vocab_size)
    handle = backend.model.lm_head.register_forward_hook(lambda mod, inp, out: out + bias)
    try:
        for b in torch.arange(0.5, 20.0, 0.5):
            bias[newline[0]] = b
            raw = backend.generate(["The cat"], max_new_tokens=20, stop=())[0]
            if "\n" in raw[1:]:
                break
        else:
            pytest.fail("no bias made the tiny model produce a newline")
        stopped = backend.generate(["The cat"], max_new_tokens=20)[0]
    finally:
        handle.remove()
    assert stopped == raw[: raw.index("\n")] and stopped and "\n" not in stopped


def manual_loglik(backend: HFBackend, context: str, continuation: str) -> float:
    tok, model = backend.tokenizer, backend.model
    ids = tok(context + continuation)["input_ids"]
    n_ctx = len(tok(context)["input_ids"])
    if n_ctx == 0:
        ids, n_ctx = [tok.eos_token_id, *ids], 1
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(n_ctx, len(ids)))


def test_loglikelihood_matches_manual_computation(tiny_dir):
    backend = HFBackend(str(tiny_dir), device="cpu", batch_size=2)
    pairs = [("The cat", " sat on the mat."), ("What is 7 times 12? Answer:", " 84"),
             ("Le chat est assis sur le tapis. Le", " chien"), ("Input: the dog\nOutput:", " THE DOG")]
    got = backend.loglikelihood(pairs)
    expected = [manual_loglik(backend, c, x) for c, x in pairs]
    assert got == pytest.approx(expected, abs=1e-4)
    assert all(v < 0 for v in got)
    # one at a time gives the same numbers, in the same order
    assert [backend.loglikelihood([p])[0] for p in pairs] == pytest.approx(got, abs=1e-4)
    # trailing context whitespace moves onto the continuation
    assert backend.loglikelihood([("Answer: ", "True")]) == pytest.approx(
        [manual_loglik(backend, "Answer:", " True")], abs=1e-4)


def test_loglikelihood_empty_context_conditions_on_start_token(tiny_gpt2):
    backend = HFBackend(str(tiny_gpt2), device="cpu")
    assert backend.loglikelihood([("", "Hello")]) == pytest.approx([manual_loglik(backend, "", "Hello")], abs=1e-4)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_chat_template_applied_for_chat_tokenizers(tiny_gpt2, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(tmp_path)
    AutoModelForCausalLM.from_pretrained(tiny_gpt2).save_pretrained(tmp_path, safe_serialization=True)

    chat = HFBackend(str(tmp_path), device="cpu", system_prompt="Be brief.")
    assert chat.chat is True
    formatted = chat.format_prompt("What is 7 times 12?")
    assert formatted == "<|system|>Be brief.\n<|user|>What is 7 times 12?\n<|assistant|>"
    raw = HFBackend(str(tmp_path), device="cpu", chat=False)
    assert raw.format_prompt("hi") == "hi"
    assert chat.generate(["What is 7 times 12?"], 6, stop=()) == raw.generate([formatted], 6, stop=())
    with pytest.raises(BackendError, match="no chat_template"):
        HFBackend(str(tiny_gpt2), device="cpu", chat=True)


def test_cuda_oom_halves_batch_size(tiny_gpt2, monkeypatch):
    backend = HFBackend(str(tiny_gpt2), device="cpu", batch_size=8)
    expected = backend.generate(PROMPTS, 4, stop=())
    real = backend._generate_batch
    seen = []

    def flaky(batch, *args):
        seen.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(batch, *args)

    monkeypatch.setattr(backend, "_generate_batch", flaky)
    assert backend.generate(PROMPTS, 4, stop=()) == expected
    assert backend.batch_size == 2 and seen[:3] == [6, 4, 2]

    def always_oom(batch, *args):
        raise torch.cuda.OutOfMemoryError("simulated")

    monkeypatch.setattr(backend, "_generate_batch", always_oom)
    with pytest.raises(BackendError, match="out of GPU memory even at batch size 1"):
        backend.generate(PROMPTS, 4)


def test_bad_options_and_missing_transformers(tiny_gpt2, monkeypatch):
    with pytest.raises(BackendError, match="batch_size"):
        HFBackend(str(tiny_gpt2), device="cpu", batch_size=0)
    with pytest.raises(BackendError, match="dtype"):
        HFBackend(str(tiny_gpt2), device="cpu", dtype="float8")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendError, match=r"pip install 'conjugate-prompting\[hf\]'"):
        HFBackend(str(tiny_gpt2), device="cpu")


# --------------------------------------------------------------------------- load_backend and presets
@pytest.mark.parametrize("spec", ["./no/such/model", "/definitely/not/here", "~/nope-model-dir/x", "a/b/c"])
def test_missing_model_path_is_a_clear_error(spec):
    with pytest.raises(BackendError, match=f"model path {spec} does not exist"):
        load_backend(spec)


def test_openai_specs_parse():
    b = load_backend("openai:meta-llama/Llama-3-8B@http://127.0.0.1:8000/v1", batch_size=8)
    assert isinstance(b, OpenAIBackend) and b.model == "meta-llama/Llama-3-8B"
    assert b.base_url == "http://127.0.0.1:8000/v1" and b.chat is False
    c = load_backend("openai-chat:org/model@1@https://example.org/v1/")
    assert c.chat is True and c.model == "org/model@1" and c.base_url == "https://example.org/v1"
    with pytest.raises(BackendError, match="no server URL"):
        load_backend("openai:model-without-url")
    with pytest.raises(BackendError, match="unknown backend option"):
        load_backend("openai:m@http://127.0.0.1:1/v1", flavour="x")


def test_presets_and_resolve_models():
    assert resolve_models(["llama7b-alpaca"]) == ["huggyllama/llama-7b", "chavinlo/alpaca-native"]
    assert resolve_models("llama7b-alpaca,llama7b-vicuna") == [
        "huggyllama/llama-7b", "chavinlo/alpaca-native", "lmsys/vicuna-7b-v1.3"]
    assert resolve_models(["opt1.3b-iml:tuned", "./my/model"]) == ["facebook/opt-iml-max-1.3b", "./my/model"]
    assert PRESETS["llama2-7b-codellama"]["tuned"] == "codellama/CodeLlama-7b-hf"
    assert all({"base", "tuned", "study", "notes"} <= set(p) for p in PRESETS.values())
    with pytest.raises(ValueError, match="unknown role"):
        resolve_models(["llama7b-alpaca:chat"])
    with pytest.raises(BackendError, match="preset pair"):
        load_backend("llama7b-alpaca")


# --------------------------------------------------------------------------- OpenAI-compatible backend
def fast(url: str, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_base", 0.01)
    return OpenAIBackend("fake-model", url, **kw)


def test_openai_completions_and_chat():
    def respond(query, params):
        if isinstance(query, list):
            return "chat:" + query[-1]["content"]
        return "completion:" + query[::-1] + "\nmore"

    with FakeOpenAI(respond) as server:
        out = fast(server.url).generate(["abc", "xyz"], max_new_tokens=10)
        assert out == ["completion:cba", "completion:zyx"]
        body = server.requests[0].body
        assert server.requests[0].path == "/v1/completions"
        assert body["max_tokens"] == 10 and body["temperature"] == 0 and body["stop"] == ["\n"]

        chat = fast(server.url, chat=True, system_prompt="Be brief.")
        assert chat.generate(["hello"], max_new_tokens=5) == ["chat:hello"]
        req = server.requests[-1]
        assert req.path == "/v1/chat/completions"
        assert req.body["messages"] == [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "hello"}]


def test_openai_stop_enforced_client_side():
    with FakeOpenAI(lambda q, p: "first. second\nthird", honour_stop=False) as server:
        backend = fast(server.url)
        assert backend.generate(["x"], 50) == ["first. second"]
        assert backend.generate(["x"], 50, stop=(".", "\n")) == ["first"]
        assert backend.generate(["x"], 50, stop=()) == ["first. second\nthird"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_openai_retries_then_succeeds(status):
    with FakeOpenAI(lambda q, p: "ok", failures=[status, status]) as server:
        assert fast(server.url).generate(["x"], 5) == ["ok"]
        assert server.count == 3
        assert [r.status for r in server.requests] == [status, status, 200]


def test_openai_honours_retry_after():
    with FakeOpenAI(lambda q, p: "ok", failures=[429], retry_after=0.4) as server:
        start = time.perf_counter()
        assert fast(server.url).generate(["x"], 5) == ["ok"]
        assert time.perf_counter() - start >= 0.4 and server.count == 2


def test_openai_gives_up_after_max_retries():
    with FakeOpenAI(fail_first=10, fail_status=500) as server:
        with pytest.raises(BackendError, match=r"fake-model: HTTP 500 .* after 3 attempts"):
            fast(server.url, max_retries=2).generate(["x"], 5)
        assert server.count == 3


def test_openai_no_retry_on_400():
    with FakeOpenAI(failures=[400]) as server:
        with pytest.raises(BackendError, match="fake-model: HTTP 400") as err:
            fast(server.url).generate(["x"], 5)
        assert server.count == 1 and "scripted failure" in str(err.value)


def test_openai_connection_error_is_retried_then_clear(monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(BackendError, match=r"fake-model: request to .* failed after 2 attempts: Connect"):
        fast(f"http://127.0.0.1:{port}/v1", max_retries=1, timeout=2).generate(["x"], 5)


def test_openai_api_key_sent_but_never_shown(monkeypatch, caplog):
    secret = "sk-test-very-secret-123"
    monkeypatch.setenv("CONJ_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(lambda q, p: "ok", failures=[429, 401]) as server:
        backend = fast(server.url, api_key_env="CONJ_TEST_KEY")
        with pytest.raises(BackendError) as err:
            backend.generate(["x"], 5)
        assert server.requests[0].authorization == f"Bearer {secret}" and server.auth_seen
        for text in (repr(backend), str(backend), str(err.value), repr(err.value), caplog.text):
            assert secret not in text
    monkeypatch.delenv("CONJ_TEST_KEY")
    with FakeOpenAI(lambda q, p: "ok") as server:
        fast(server.url, api_key_env="CONJ_TEST_KEY").generate(["x"], 5)
        assert server.requests[0].authorization == "Bearer EMPTY"


def test_openai_concurrency_is_bounded_and_order_kept():
    prompts = [f"p{i}" for i in range(8)]
    with FakeOpenAI(lambda q, p: q.upper(), delay=0.1) as server:
        out = fast(server.url, max_concurrency=3).generate(prompts, 5)
        assert out == [p.upper() for p in prompts]
        assert server.max_in_flight == 3  # parallel, but never more than the bound
    with FakeOpenAI(lambda q, p: q, delay=0.02) as server:
        fast(server.url, max_concurrency=1).generate(prompts, 5)
        assert server.max_in_flight == 1


def test_openai_loglikelihood_from_echoed_logprobs():
    with FakeOpenAI(logprob=lambda tok, before: -float(len(tok))) as server:
        backend = fast(server.url)
        pairs = [("The cat sat", " on the mat"), ("Answer: ", "True"), ("So Answ", "er now")]
        got = backend.loglikelihood(pairs)
        # clean boundary: the continuation's own tokens; trailing space moves to the continuation;
        # a token straddling the boundary (" Answer") counts as continuation
        assert got == [-sum(len(t) for t in tokens(" on the mat")), -len(" True"), -len(" Answer") - len(" now")]
        body = server.requests[0].body
        assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1


def test_openai_loglikelihood_unsupported_is_clear():
    with FakeOpenAI(supports_logprobs=False) as server:
        with pytest.raises(BackendError, match="HTTP 400.*echo and logprobs are not supported"):
            fast(server.url).loglikelihood([("a", " b")])


def test_continuation_start_offsets():
    # tokens "The"(0) " cat"(3) " sat"(7); context "The cat" → continuation starts at token 2
    assert continuation_start([0, 3, 7], 7, 11) == 2
    # context "The ca" → " cat" straddles and belongs to the continuation
    assert continuation_start([0, 3, 7], 6, 11) == 1


# --------------------------------------------------------------------------- CLI
def test_cli_models_tiny_presets_and_generate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "tiny-llama"
    res = runner.invoke(app, ["models", "tiny", "--arch", "llama", "--out", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    backend = load_backend(str(out))
    assert backend.model.config.model_type == "llama"

    res = runner.invoke(app, ["models", "generate", str(out), "The cat", "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    assert res.stdout.rstrip("\n") == backend.generate(["The cat"], 4)[0]

    res = runner.invoke(app, ["models", "tiny", "--arch", "bert", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown architecture 'bert'" in res.output
    res = runner.invoke(app, ["models", "generate", "./missing/model", "hi"])
    assert res.exit_code == 2 and "model path ./missing/model does not exist" in res.output
    res = runner.invoke(app, ["models", "presets"])
    assert res.exit_code == 0 and "llama7b-alpaca" in res.output and "opt1.3b-iml" in res.output
