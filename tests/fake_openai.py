"""A real, scriptable OpenAI-compatible HTTP server on 127.0.0.1 for tests.

Usage::

    from fake_openai import FakeOpenAI

    def respond(prompt_or_messages, params):          # str for /completions, list of messages for chat
        return "I cannot help with that." if "bomb" in str(prompt_or_messages) else "Sure: step 1"

    with FakeOpenAI(respond, failures=[429, 500]) as server:
        backend = OpenAIBackend("fake-model", server.url)   # server.url == "http://127.0.0.1:<port>/v1"
        backend.generate(["..."], max_new_tokens=20)
        assert server.count == 3                             # two failures, then the answer

API
---
``FakeOpenAI(respond=None, *, failures=(), fail_first=0, fail_status=500, retry_after=None, delay=0.0,
honour_stop=True, supports_logprobs=True, logprob=None, models=("fake-model",), raw=None)``

- ``respond(prompt_or_messages, params) -> str``: the answer. ``params`` is the request's JSON body. Default:
  ``"fake answer\\nsecond line"``. If it raises, the server answers 500 with the error text.
- ``failures``: status codes for the first requests in arrival order (``[429, 500]``: request 0 gets 429,
  request 1 gets 500, later requests succeed). ``fail_first=N, fail_status=S`` is shorthand for ``[S] * N``.
  ``retry_after`` (seconds) is sent as a ``Retry-After`` header on those failures.
- ``delay``: seconds each request sleeps before answering (to observe concurrency).
- ``honour_stop``: cut answers at the request's ``stop`` strings, as real servers do (``False`` lets a test
  check the client enforces them itself). ``max_tokens`` truncates answers to that many tokens.
- Tokens, for ``max_tokens`` and log-probs, are ``re.findall(r"\\s*\\S+|\\s+", text)``: each word with its
  leading whitespace. ``logprob(token, text_before) -> float`` scores a token; default ``-len(token) / 10``.
  With ``echo=True`` and ``logprobs`` the prompt's tokens come back too (the first with log-prob ``None``), with
  ``text_offset`` like the OpenAI legacy API. ``supports_logprobs=False`` answers 400 to echo/logprobs requests,
  like chat-only hosted APIs.
- ``models``: ids listed by ``GET /v1/models``; any model name is accepted in requests.
- ``raw(path, body) -> object | bytes | None``: a broken server, for chosen requests. ``None`` answers as
  usual; any JSON value (``{"choices": [{"text": 123}]}``, ``[]``...) is sent as the 200 body instead; ``bytes``
  are sent as they are (malformed JSON: ``b'{"choices": [{"te'``). Called after ``failures``.

Recorded (thread-safe): ``requests`` (list of :class:`Request`: ``path``, ``body``, ``authorization`` header or
``None``, ``status`` sent), ``count`` (number of requests), ``max_in_flight`` (peak concurrent requests),
``auth_seen`` (whether any request carried an Authorization header). The server runs in a daemon thread, one
short-lived thread per request (HTTP/1.0), and shuts down at context exit.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_RE = re.compile(r"\s*\S+|\s+")


def tokens(text: str) -> list[str]:
    """The fake server's tokenisation: each word with its leading whitespace."""
    return TOKEN_RE.findall(text)


def default_logprob(token: str, text_before: str) -> float:
    return -len(token) / 10


def default_respond(prompt_or_messages: Any, params: dict) -> str:
    return "fake answer\nsecond line"


@dataclass
class Request:
    path: str
    body: dict | None
    authorization: str | None
    status: int = 0


class FakeOpenAI:
    """A context manager serving ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/models``."""

    def __init__(
        self,
        respond: Callable[[Any, dict], str] | None = None,
        *,
        failures: Sequence[int] = (),
        fail_first: int = 0,
        fail_status: int = 500,
        retry_after: float | None = None,
        delay: float = 0.0,
        honour_stop: bool = True,
        supports_logprobs: bool = True,
        logprob: Callable[[str, str], float] | None = None,
        models: Sequence[str] = ("fake-model",),
        raw: Callable[[str, dict | None], Any] | None = None,
    ):
        self.respond = respond or default_respond
        self.failures = list(failures) + [fail_status] * fail_first
        self.retry_after, self.delay = retry_after, delay
        self.honour_stop, self.supports_logprobs = honour_stop, supports_logprobs
        self.logprob = logprob or default_logprob
        self.models = list(models)
        self.raw = raw
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> FakeOpenAI:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeOpenAI as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def auth_seen(self) -> bool:
        with self._lock:
            return any(r.authorization for r in self.requests)

    # ----------------------------------------------------------------- answering
    def handle(self, method: str, path: str, body: dict | None, authorization: str | None) -> tuple[int, Any, dict]:
        """(status, JSON body (or raw bytes), extra headers) for one request; records it first."""
        record = Request(path, body, authorization)
        with self._lock:
            index = len(self.requests)
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            status, payload, headers = self._answer(index, method, path, body)
        finally:
            with self._lock:
                self._in_flight -= 1
        record.status = status
        return status, payload, headers

    def _answer(self, index: int, method: str, path: str, body: dict | None) -> tuple[int, Any, dict]:
        if index < len(self.failures):
            status = self.failures[index]
            headers = {"Retry-After": f"{self.retry_after:g}"} if self.retry_after is not None else {}
            return status, _error(f"scripted failure {status} for request {index}"), headers
        if self.raw is not None:
            broken = self.raw(path, body)
            if broken is not None:
                return 200, broken, {}
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}, {}
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            return 404, _error(f"no route {method} {path}"), {}
        if not isinstance(body, dict) or "model" not in body:
            return 400, _error("body must be a JSON object with a 'model' field"), {}
        try:
            if path == "/v1/completions":
                return 200, self._completion(body), {}
            return 200, self._chat(body), {}
        except _BadRequest as e:
            return 400, _error(str(e)), {}
        except Exception as e:  # a user respond() that fails: a server error, as a real server would give
            return 500, _error(f"{type(e).__name__}: {e}"), {}

    def _answer_text(self, query: Any, body: dict) -> tuple[str, str]:
        text = self.respond(query, body)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        finish = "stop"
        if self.honour_stop:
            cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
            text = text[: min(cuts)] if cuts else text
        limit = body.get("max_tokens")
        if isinstance(limit, int) and len(tokens(text)) > limit:
            text, finish = "".join(tokens(text)[:limit]), "length"
        return text, finish

    def _completion(self, body: dict) -> dict:
        prompts = body.get("prompt", "")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise _BadRequest("'prompt' must be a string or a list of strings")
        want_lp = body.get("logprobs") is not None or body.get("echo")
        if want_lp and not self.supports_logprobs:
            raise _BadRequest("echo and logprobs are not supported by this server")
        choices = []
        for i, prompt in enumerate(prompts):
            text, finish = self._answer_text(prompt, body)
            choice: dict[str, Any] = {"index": i, "text": text, "finish_reason": finish, "logprobs": None}
            if body.get("echo"):
                choice["text"] = prompt + text
            if body.get("logprobs") is not None:
                choice["logprobs"] = self._logprobs(prompt, text, bool(body.get("echo")))
            choices.append(choice)
        return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                "model": body["model"], "choices": choices, "usage": {}}

    def _logprobs(self, prompt: str, generated: str, echo: bool) -> dict:
        """OpenAI legacy log-probs; offsets count from the start of the prompt."""
        toks = (tokens(prompt) if echo else []) + tokens(generated)
        before = "" if echo else prompt
        offsets, lps = [], []
        for pos, tok in enumerate(toks):
            offsets.append(len(before))
            lps.append(None if echo and pos == 0 else self.logprob(tok, before))
            before += tok
        return {"tokens": toks, "token_logprobs": lps, "text_offset": offsets,
                "top_logprobs": [None if v is None else {t: v} for t, v in zip(toks, lps, strict=True)]}

    def _chat(self, body: dict) -> dict:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' must be a non-empty list")
        text, finish = self._answer_text(messages, body)
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": {},
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]}


class _BadRequest(ValueError):
    pass


def _error(message: str) -> dict:
    return {"error": {"message": message, "type": "fake_error"}}


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def _serve(self, method: str) -> None:
            body = None
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    body = None
            status, payload, headers = server.handle(method, self.path, body, self.headers.get("Authorization"))
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # silence per-request logging
            pass

    return Handler
