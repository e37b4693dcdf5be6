"""A :class:`~conjugate.lm.backend.Backend` over any OpenAI-compatible HTTP server (vLLM, hosted APIs).

``/v1/completions`` for raw prompts (base models), ``/v1/chat/completions`` for chat models (``chat=True``).
One request per prompt, at most ``max_concurrency`` in flight (a thread pool plus a semaphore shared by all
calls on this backend). Requests that fail with 429, 5xx, a timeout or a connection error are retried with
exponential backoff and a little jitter, waiting at least as long as a ``Retry-After`` header asks; any other
4xx fails at once with a :class:`BackendError` naming the model and status.

The API key is read from an environment variable at construction (``EMPTY`` when unset: local servers need
none). It is sent only as the ``Authorization`` header and never appears in ``repr``, logs or error messages.

Log-likelihoods use the completions endpoint with ``echo=True, logprobs=1``: the server returns a log-prob for
every prompt token, and the continuation's tokens are found from their character offsets. ``max_tokens=1`` is
sent (as lm-evaluation-harness does) because several servers reject 0; the one generated token is ignored.
:meth:`OpenAIBackend.choices` is those pairs. No ``torch`` import: served-model studies stay light.

Every response is checked before it is read: a body that is not JSON, or a field of the wrong JSON type (a
number where text belongs, ``message: null``, no ``choices``...), is a :class:`BackendError` naming the field,
e.g. ``server http://host/v1 returned choices[0].text of type number, expected a string``.

When one request of a batch fails, the requests of that batch that had finished are not lost: the error carries
``replay``, a context manager during which this backend answers exactly those requests from memory, without
sending anything, and raises for the others. The request cache (:class:`conjugate.lm.cache.CachedBackend`) uses it to
store the finished requests before the error propagates, so a rerun does not ask for them again.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from typing import Any

from .backend import BackendError, cut_at_stop, split_context
from .runner import ProgressBar

log = logging.getLogger(__name__)

MAX_STOP_SEQUENCES = 4  # the OpenAI API's limit; the rest are enforced client-side
MAX_RETRY_AFTER_S = 120.0
JSON_TYPES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array",
              dict: "object"}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (``number``, ``array``, ``null``...)."""
    return JSON_TYPES.get(type(value), type(value).__name__)


class Unfinished(BackendError):
    """Asked, while replaying a failed batch, for a request that had not finished."""


def _require_httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise BackendError("OpenAI-compatible servers need the 'httpx' package: "
                           "pip install 'conjugate-prompting[openai]'") from None
    return httpx


class OpenAIBackend:
    """Greedy completions and log-likelihoods from ``model`` served at ``base_url`` (e.g. ``http://host:8000/v1``)."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        chat: bool = False,
        timeout: float = 60,
        max_concurrency: int = 8,
        max_retries: int = 5,
        system_prompt: str | None = None,
        temperature: float = 0,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        show_progress: bool = False,
    ):
        if max_concurrency < 1:
            raise BackendError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise BackendError(f"max_retries must be >= 0, got {max_retries}")
        httpx = _require_httpx()
        self.name = model
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.chat = chat
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.show_progress = show_progress
        self._api_key = os.environ.get(api_key_env) or "EMPTY"
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._replay: dict | None = None  # finished results of a failed batch, while they are being salvaged
        self._httpx = httpx
        self._client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=max_concurrency))

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, chat={self.chat})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- Backend
    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> list[str]:
        """Greedy continuations in input order; stop strings go to the server and are enforced here too."""
        if max_new_tokens < 0:
            raise BackendError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if max_new_tokens == 0:
            return [""] * len(prompts)
        stop = [s for s in stop if s]
        return self._map(lambda p: cut_at_stop(self._complete(p, max_new_tokens, stop), stop)[0], prompts, "generate",
                         (max_new_tokens, tuple(stop)))

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """``log p(continuation | context)`` per pair from the server's echoed prompt log-probs."""
        return self._map(lambda pair: self._score(*pair), [tuple(p) for p in pairs], "loglikelihood")

    def choices(self, context: str, options: Sequence[str]) -> list[float]:
        """``log p(option | context)`` per option: one echo request per option (a server shares no context)."""
        return self.loglikelihood([(context, o) for o in options])

    def choices_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """:meth:`choices` of every (context, options) item, all their requests in flight together (an optional
        batched form, not part of the Backend protocol)."""
        flat = self.loglikelihood([(context, o) for context, options in items for o in options])
        out, pos = [], 0
        for _, options in items:
            out.append(flat[pos:pos + len(options)])
            pos += len(options)
        return out

    # ----------------------------------------------------------------- requests
    def _complete(self, prompt: str, max_new_tokens: int, stop: list[str]) -> str:
        payload: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens, "temperature": self.temperature}
        if stop:
            payload["stop"] = stop[:MAX_STOP_SEQUENCES]
        if self.chat:
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            payload["messages"] = [*messages, {"role": "user", "content": prompt}]
            choice = self._first_choice(self._post("chat/completions", payload))
            message = self._field(choice, "message", "choices[0].message", dict, "an object")
            content = message.get("content")
            if content is None:  # no text (a refusal or tool call in the API's other fields): an empty reply
                return ""
            return self._check(content, "choices[0].message.content", str, "a string")
        payload["prompt"] = prompt
        return self._field(self._first_choice(self._post("completions", payload)), "text", "choices[0].text", str,
                           "a string")

    def _score(self, context: str, continuation: str) -> float:
        context, continuation = split_context(context, continuation)
        text = context + continuation
        payload = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0, "echo": True,
                   "logprobs": 1}
        choice = self._first_choice(self._post("completions", payload))
        lp = choice.get("logprobs")
        lp = {} if lp is None else self._check(lp, "choices[0].logprobs", dict, "an object")
        offsets, token_lps = lp.get("text_offset"), lp.get("token_logprobs")
        if offsets is not None:
            self._check(offsets, "choices[0].logprobs.text_offset", list, "an array")
            for i, v in enumerate(offsets):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise self._bad(f"choices[0].logprobs.text_offset[{i}]", v, "an integer")
        if token_lps is not None:
            self._check(token_lps, "choices[0].logprobs.token_logprobs", list, "an array")
            for i, v in enumerate(token_lps):
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise self._bad(f"choices[0].logprobs.token_logprobs[{i}]", v, "a number or null")
        if not offsets or not token_lps or len(offsets) != len(token_lps):
            raise BackendError(f"{self.model}: the server at {self.base_url} returned no prompt log-probs; "
                               "log-likelihood needs /v1/completions with echo=True and logprobs (vLLM supports it)")
        start = continuation_start(offsets, len(context), len(text))
        picked = [v for off, v in zip(offsets[start:], token_lps[start:], strict=True) if off < len(text)]
        if not picked or any(v is None for v in picked):
            raise BackendError(f"{self.model}: no log-prob for the continuation {continuation!r} "
                               "(an empty context cannot be scored by echo)")
        return float(sum(picked))

    def _first_choice(self, body: Any) -> dict:
        self._check(body, "the response body", dict, "an object")
        choices = body.get("choices")
        if choices is None:
            raise BackendError(f"{self.model}: malformed response from {self.base_url} (no choices)")
        self._check(choices, "choices", list, "an array")
        if not choices:
            raise BackendError(f"{self.model}: server {self.base_url} returned an empty choices list")
        return self._check(choices[0], "choices[0]", dict, "an object")

    # ----------------------------------------------------------------- response shape
    def _bad(self, field: str, value: Any, expected: str) -> BackendError:
        return BackendError(f"{self.model}: server {self.base_url} returned {field} of type {json_type(value)}, "
                            f"expected {expected}")

    def _check(self, value: Any, field: str, kind: type, expected: str) -> Any:
        """``value`` when it is a ``kind`` (a bool is never a number); a BackendError naming ``field`` otherwise."""
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self._bad(field, value, expected)
        return value

    def _field(self, obj: dict, key: str, field: str, kind: type, expected: str) -> Any:
        """``obj[key]``, checked by :meth:`_check`; a BackendError when it is missing."""
        if key not in obj:
            raise BackendError(f"{self.model}: server {self.base_url} returned no {field}")
        return self._check(obj[key], field, kind, expected)

    def _post(self, path: str, payload: dict) -> dict:
        """POST with retries on 429/5xx/transport errors; a clear BackendError otherwise."""
        url = f"{self.base_url}/{path}"
        headers = {"Authorization": f"Bearer {self._api_key}"}
        httpx = self._httpx
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                with self._slots:
                    response = self._client.post(url, json=payload, headers=headers)
            except httpx.TransportError as e:
                if last:
                    raise BackendError(self._hide(f"{self.model}: request to {url} failed after "
                                                  f"{attempt + 1} attempts: {type(e).__name__}: {e}")) from None
                self._sleep(attempt, None, f"{type(e).__name__}")
                continue
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    raise BackendError(f"{self.model}: non-JSON response from {url}") from None
            if (status == 429 or status >= 500) and not last:
                self._sleep(attempt, response.headers.get("retry-after"), f"HTTP {status}")
                continue
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise BackendError(self._hide(f"{self.model}: HTTP {status} from {url}{tries}: {_detail(response)}"))
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: str | None, why: str) -> None:
        delay = min(self.backoff_cap, self.backoff_base * 2**attempt) * (1 + 0.1 * random.random())
        try:
            delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S)) if retry_after else delay
        except ValueError:  # an HTTP date: fall back to our own backoff
            pass
        log.info("%s: %s; retry %d/%d in %.2fs", self.model, why, attempt + 1, self.max_retries, delay)
        time.sleep(delay)

    def _hide(self, message: str) -> str:
        """Remove the API key from a message, should a server or library ever echo it."""
        key = self._api_key
        return message.replace(key, "***") if len(key) >= 4 and key != "EMPTY" else message

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], what: str, tag: tuple = ()) -> list:
        """``fn`` over ``items`` with bounded concurrency, results in input order; the first error cancels the
        requests not started yet, waits for those in flight, and carries ``replay`` (see the module docstring)
        when any finished. ``what`` and ``tag`` (the call's settings) and the item identify a request."""
        if not items:
            return []
        if self._replay is not None:
            return [self._replayed((what, tag, item)) for item in items]
        finished: dict = {}

        def run(item: Any) -> Any:
            result = fn(item)
            finished[(what, tag, item)] = result
            return result

        results: list = [None] * len(items)
        bar = ProgressBar(self.show_progress, len(items), f"{self.model}: {what}")
        try:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
                futures = {pool.submit(run, item): i for i, item in enumerate(items)}
                try:
                    pending = set(futures)
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                        for f in done:
                            results[futures[f]] = f.result()  # re-raises the worker's error
                        bar.advance(len(done))
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
                finally:
                    bar.close()
        except Exception as e:  # the pool has waited for the requests in flight: ``finished`` is complete
            if finished:
                try:
                    e.replay = partial(self._replaying, dict(finished))  # type: ignore[attr-defined]
                except AttributeError:  # an exception type without attributes: nothing to salvage
                    pass
            raise
        return results

    @contextmanager
    def _replaying(self, finished: dict) -> Iterator[None]:
        """While active, every call is answered from ``finished`` (no request is sent) or raises Unfinished."""
        self._replay = finished
        try:
            yield
        finally:
            self._replay = None

    def _replayed(self, key: tuple) -> Any:
        assert self._replay is not None
        if key not in self._replay:
            raise Unfinished(f"{self.model}: this request had not finished when its batch failed")
        return self._replay[key]


def continuation_start(offsets: Sequence[int], context_len: int, text_len: int) -> int:
    """Index of the first token that holds any continuation character (a token straddling the boundary counts)."""
    start = next((i for i, off in enumerate(offsets) if off >= context_len), len(offsets))
    if start > 0 and (start == len(offsets) or offsets[start] > context_len) and context_len < text_len:
        start -= 1  # token start-1 begins in the context and runs into the continuation
    return start


def _detail(response: Any) -> str:
    """The server's error message, short."""
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except ValueError:
        text = response.text
    return " ".join(text.split())[:300] or response.reason_phrase
