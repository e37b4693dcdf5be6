"""A :class:`~conjugate.lm.backend.Backend` over any Hugging Face ``AutoModelForCausalLM``.

Greedy generation and log-likelihood scoring, both batched. Prompts are sorted by token length (longest first,
so an out-of-memory error shows up on the first batch) and results come back in input order. Generation pads on
the left, so every row's next token sits in the last column; scoring pads on the right, where causal attention
makes padding invisible to real tokens. Batched greedy output equals one-prompt-at-a-time output (in fp32; bf16
kernels may break exact ties differently). :meth:`HFBackend.choices` scores several options after one context,
running the context once and the options against its key/value cache.

Any local spec of :func:`~conjugate.lm.load.resolve_source` works: a folder, a hub id, a GGUF file (loaded from
its cached fp32 conversion, :mod:`conjugate.lm.gguf`), a named real model, ``BASE+adapter:DIR`` (a LoRA adapter
checked against its base and merged into it, :mod:`conjugate.lm.adapters`).

Weights load through ``from_pretrained``: safetensors when the repository has them, else ``torch.load`` with
``weights_only=True`` (no arbitrary unpickling; pass ``safetensors_only=True`` to refuse ``.bin`` files
altogether). A ``.bin`` file whose pickle holds anything but tensors is refused with one line (it is never run,
and never retried with ``weights_only=False``). ``trust_remote_code`` is never set. ``transformers`` is an
optional extra, imported on first use.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .backend import BackendError, cut_at_stop, require_transformers, split_context
from .runner import ProgressBar

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"cpu": 16, "cuda": 64, "mps": 16}


def pick_device(device: str = "auto") -> str:
    """``cuda`` when available for ``auto``, else ``cpu``; an explicit choice is checked."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} requested but CUDA is not available")
    return device


def pick_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``auto``: bf16 on a CUDA GPU that supports it, fp16 on older GPUs, fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise BackendError(f"unknown dtype {dtype!r}; choose auto, {', '.join(table)}")
    return table[dtype]


class StopOnStrings:
    """A ``StoppingCriteria``: a row is done once its generated text contains a stop string.

    Generation ends when every row is done (``transformers`` pads finished rows), saving the remaining steps.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Sequence[str]):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, [s for s in stop if s]

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.stop:
            texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
            for i, text in enumerate(texts):
                done[i] = cut_at_stop(text, self.stop)[1]
        return done


class HFBackend:
    """Greedy generation and log-likelihoods from a local folder or hub id.

    ``chat=None`` applies the tokenizer's chat template when it has one (instruction/chat models), ``True``
    requires one, ``False`` sends raw text. Some *base* models ship a chat template too (Qwen2.5, SmolLM2):
    studies that must send raw text to a base model pass ``chat=False``. ``system_prompt`` is added as a system
    turn in chat mode. The template applies to :meth:`generate` only; :meth:`loglikelihood` and :meth:`choices`
    score raw text. ``batch_size="auto"`` starts at a per-device default and halves on CUDA out-of-memory.
    ``bos``: whether the tokenizer's special tokens (a BOS token, for tokenizers that add one) go before a prompt
    — ``None`` (default) as the tokenizer does for raw text and not under a chat template, ``False`` never (the
    paper's setup: ``tokenizer(prompts, add_special_tokens=False)``), ``True`` always. It is part of the
    backend's identity in the request cache.
    """

    def __init__(
        self,
        path_or_id: str,
        dtype: str | torch.dtype = "auto",
        device: str = "auto",
        batch_size: int | str = "auto",
        chat: bool | None = None,
        system_prompt: str | None = None,
        revision: str | None = None,
        safetensors_only: bool = False,
        show_progress: bool = False,
        bos: bool | None = None,
    ):
        self._transformers = transformers = require_transformers()
        self.name = str(path_or_id)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.system_prompt = system_prompt
        self.show_progress = show_progress
        if batch_size == "auto":
            self.batch_size = DEFAULT_BATCH.get(self.device.split(":")[0], 16)
        elif isinstance(batch_size, int) and batch_size > 0:
            self.batch_size = batch_size
        else:
            raise BackendError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
        from .source import resolve_source

        self.source = resolve_source(self.name)
        if self.source.adapter is not None:  # an adapter made for another base is refused before any loading
            from .adapters import check_base, fingerprint, split_adapter

            check_base(self.source.adapter, fingerprint(self.source.model, self.source.gguf),
                       split_adapter(self.name)[0])
        self.tokenizer, self.model = _load(transformers, self._weights_folder(), self.dtype, self.device, revision,
                                           safetensors_only)
        if self.source.adapter is not None:
            from .adapters import apply_adapter

            self.model = apply_adapter(self.model, self.source.adapter).to(self.device)
        if self.source.chat_template is not None:  # a named sibling's prompt format replaces the tokenizer's
            self.tokenizer.chat_template = self.source.chat_template
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat and not has_template:
            raise BackendError(f"{self.name}: chat=True but the tokenizer has no chat_template")
        self.chat = has_template if chat is None else bool(chat)
        self.bos = bos

    def _weights_folder(self) -> str:
        """What ``from_pretrained`` reads: the cached fp32 conversion of a GGUF file, else the folder or hub id."""
        if self.source.gguf is None:
            return self.source.model
        from .gguf import converted_folder

        return str(converted_folder(self.source.gguf))

    def __repr__(self) -> str:
        return f"HFBackend({self.name!r}, device={self.device!r}, dtype={self.dtype}, chat={self.chat})"

    # ----------------------------------------------------------------- generation
    def format_prompt(self, prompt: str) -> str:
        """The text actually fed to the model: the prompt itself, or the chat template around it."""
        if not self.chat:
            return prompt
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompts(self, prompts: Sequence[str], max_new_tokens: int = 0) -> list[list[int]]:
        """Token ids per prompt (a chat template brings its own special tokens).

        An empty prompt becomes the start token; a prompt too long for the context window keeps its end.
        """
        texts = [self.format_prompt(p) for p in prompts]
        encoded = self.tokenizer(texts, add_special_tokens=self._special_tokens())["input_ids"]
        limit = _max_len(self.model, self.tokenizer)
        keep = limit - max_new_tokens if limit else None
        if keep is not None and keep < 1:
            raise BackendError(f"{self.name}: max_new_tokens={max_new_tokens} leaves no room in the context "
                               f"window of {limit} tokens")
        out = []
        for ids in encoded:
            ids = ids or [self._start_token()]
            out.append(ids[-keep:] if keep else ids)
        return out

    def _special_tokens(self) -> bool:
        """Whether the tokenizer adds its special tokens (a BOS) to a prompt: ``bos`` when set; otherwise for raw
        text yes (the tokenizer's default) and for a chat template no (the template brings its own)."""
        return (not self.chat) if self.bos is None else bool(self.bos)

    def _start_token(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> list[str]:
        """Greedy continuations in input order, each cut at its first stop string."""
        if max_new_tokens < 0:
            raise BackendError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not prompts:
            return []
        if max_new_tokens == 0:
            return [""] * len(prompts)
        ids = self.encode_prompts(prompts, max_new_tokens)
        return self._batched(ids, lambda batch: self._generate_batch(batch, max_new_tokens, tuple(stop)), "generate")

    @torch.inference_mode()
    def _generate_batch(self, batch: list[list[int]], max_new_tokens: int, stop: tuple[str, ...]) -> list[str]:
        input_ids, attention = _pad(batch, self.tokenizer.pad_token_id, left=True, device=self.device)
        width = input_ids.shape[1]
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=self._transformers.StoppingCriteriaList([StopOnStrings(self.tokenizer, width, stop)]),
        )
        texts = self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        return [cut_at_stop(t, stop)[0] for t in texts]

    # ----------------------------------------------------------------- scoring
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], int]:
        """Token ids of context+continuation and how many of them (at the end) are the continuation.

        The whole string is tokenised once so the continuation is scored as the model would read it; when a
        token merges across the boundary, context and continuation are tokenised separately instead.
        """
        context, continuation = split_context(context, continuation)
        special = self.bos is not False  # raw text: the tokenizer's own start token unless bos=False
        ctx = self.tokenizer(context, add_special_tokens=special)["input_ids"]
        whole = self.tokenizer(context + continuation, add_special_tokens=special)["input_ids"]
        if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
            ids, n_cont = whole, len(whole) - len(ctx)
        else:
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            ids, n_cont = ctx + cont, len(cont)
        if n_cont == len(ids):  # empty context and no BOS: condition on the start/end-of-text token, like lm-eval
            ids = [self._start_token(), *ids]
        limit = _max_len(self.model, self.tokenizer)
        if limit and len(ids) > limit:  # keep the continuation, drop the oldest context
            if n_cont >= limit:
                raise BackendError(f"{self.name}: continuation of {n_cont} tokens exceeds the context window {limit}")
            ids = ids[-limit:]
        return ids, n_cont

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """``log p(continuation | context)`` per pair, summed over continuation tokens; input order."""
        if not pairs:
            return []
        encoded = [self.encode_pair(c, x) for c, x in pairs]
        return self._batched(encoded, self._score_batch, "loglikelihood", length=lambda e: len(e[0]))

    @torch.inference_mode()
    def _score_batch(self, batch: list[tuple[list[int], int]]) -> list[float]:
        input_ids, attention = _pad([ids for ids, _ in batch], self.tokenizer.pad_token_id, left=False,
                                    device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_lp = logprobs.gather(-1, input_ids[:, 1:, None])[..., 0]
        out = []
        for row, (ids, n_cont) in enumerate(batch):
            end = len(ids) - 1  # prediction of token t sits at position t-1
            out.append(float(token_lp[row, end - n_cont:end].sum()))
        return out

    # ----------------------------------------------------------------- options after a shared context
    def choices(self, context: str, options: Sequence[str]) -> list[float]:
        """``log p(option | context)`` per option: the numbers of :meth:`loglikelihood` on the pairs (same
        tokenisation, :meth:`encode_pair`; equal up to float rounding), with the context run once.

        The context goes through the model once, keeping its key/value cache; every option's first token is
        read from the context's last logits, and only when some option has more tokens does a second, short
        forward pass run on that cache repeated once per option (all options in one batch). A context that
        tokenises differently per option (one cut at the window limit) is scored as pairs instead.
        """
        return self.choices_many([(context, options)])[0]

    def choices_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """:meth:`choices` of every (context, options) item, the contexts batched together (longest first,
        ``batch_size`` contexts per forward pass, halved on CUDA out-of-memory). Not part of the
        :class:`~conjugate.lm.backend.Backend` protocol: an optional batched form of it."""
        out: list[list[float] | None] = [None] * len(items)
        shared: dict[int, list[tuple[int, tuple[list[int], list[list[int]]]]]] = {}  # by number of options
        pairs: list[tuple[int, list[tuple[list[int], int]]]] = []
        for i, (context, options) in enumerate(items):
            encoded = [self.encode_pair(context, o) for o in options]
            if not encoded:
                out[i] = []
                continue
            prefixes = [ids[: len(ids) - n] for ids, n in encoded]
            if prefixes[0] and all(p == prefixes[0] for p in prefixes):
                shared.setdefault(len(encoded), []).append((i, (prefixes[0], [ids[len(ids) - n:] for ids, n in
                                                                               encoded])))
            else:
                pairs.append((i, encoded))
        show = len(items) > 1
        for group in shared.values():
            scores = self._batched([item for _, item in group], self._choices_batch, "choices",
                                   length=lambda item: len(item[0]), progress=show)
            for (i, _), s in zip(group, scores, strict=True):
                out[i] = s
        if pairs:
            flat = self._batched([e for _, encoded in pairs for e in encoded], self._score_batch, "choices",
                                 length=lambda e: len(e[0]), progress=show)
            pos = 0
            for i, encoded in pairs:
                out[i], pos = flat[pos:pos + len(encoded)], pos + len(encoded)
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def _choices_batch(self, batch: list[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
        """Scores for (context ids, option ids per option) items with the same number of options: the contexts
        left-padded with explicit position ids (as generation does), then the options' tails on their cache."""
        model, dev, pad = self.model, self.device, self.tokenizer.pad_token_id
        n_rows, k = len(batch), len(batch[0][1])
        if any(len(tails) != k for _, tails in batch):
            raise ValueError("every context needs the same number of options in one batch")
        ids, mask = _pad([prefix for prefix, _ in batch], pad, left=True, device=dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
        first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # (rows, vocab)
        scores = [[float(first_lp[r, tails[j][0]]) for j in range(k)] for r, (_, tails) in enumerate(batch)]
        longest = max(len(t) for _, tails in batch for t in tails)
        if longest == 1:
            return scores
        # the rest of every option: one forward on the context's cache, repeated once per option
        steps = longest - 1
        tail_ids = torch.full((n_rows * k, steps), pad, dtype=torch.long)
        tail_mask = torch.zeros((n_rows * k, steps), dtype=torch.long)
        for r, (_, tails) in enumerate(batch):
            for j, t in enumerate(tails):
                if len(t) > 1:
                    tail_ids[r * k + j, : len(t) - 1] = torch.tensor(t[:-1], dtype=torch.long)
                    tail_mask[r * k + j, : len(t) - 1] = 1
        cache = first.get("cache", None) or first.get("past_key_values", None)  # the name changed in transformers 5
        if cache is None:
            raise BackendError(f"{self.name}: the model returned no key/value cache")
        cache.batch_repeat_interleave(k)
        full_mask = torch.cat([mask.repeat_interleave(k, dim=0), tail_mask.to(dev)], dim=1)
        start = mask.sum(-1).repeat_interleave(k)[:, None]
        tail_pos = start + torch.arange(steps, device=dev)[None, :]
        cache_arg = "cache" if _accepts(model, "cache") else "past_key_values"
        second = model(input_ids=tail_ids.to(dev), attention_mask=full_mask, position_ids=tail_pos,
                       use_cache=False, **{cache_arg: cache})
        lp = torch.log_softmax(second.logits.float(), dim=-1)  # (rows*k, steps, vocab)
        for r, (_, tails) in enumerate(batch):
            for j, t in enumerate(tails):
                if len(t) > 1:
                    targets = torch.tensor(t[1:], dtype=torch.long, device=dev)
                    scores[r][j] += float(lp[r * k + j, torch.arange(len(t) - 1, device=dev), targets].sum())
        return scores

    # ----------------------------------------------------------------- batching
    def _batched(self, items: list, run: Callable[[list], list], what: str,
                 length: Callable[[Any], int] = len, progress: bool = True) -> list:
        """Run ``run`` on length-sorted batches, halving the batch size on CUDA OOM; results in input order."""
        order = sorted(range(len(items)), key=lambda i: -length(items[i]))
        results: list = [None] * len(items)
        bar = ProgressBar(self.show_progress and progress, len(items), f"{self.name}: {what}")
        pos = 0
        try:
            while pos < len(order):
                idx = order[pos:pos + self.batch_size]
                try:
                    outs = run([items[i] for i in idx])
                except torch.cuda.OutOfMemoryError:
                    if self.batch_size == 1:
                        raise BackendError(f"{self.name}: out of GPU memory even at batch size 1") from None
                    torch.cuda.empty_cache()
                    self.batch_size //= 2
                    log.warning("%s: CUDA out of memory; batch size now %d", self.name, self.batch_size)
                    continue
                for i, o in zip(idx, outs, strict=True):
                    results[i] = o
                pos += len(idx)
                bar.advance(len(idx))
        finally:
            bar.close()
        return results


def _load(transformers: Any, name: str, dtype: torch.dtype, device: str, revision: str | None,
          safetensors_only: bool) -> tuple[Any, Any]:
    """Tokenizer (pad token set, left padding) and model in eval mode on ``device``."""
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, revision=revision)
        kwargs: dict[str, Any] = {"revision": revision, "use_safetensors": True if safetensors_only else None}
        major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
        kwargs["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = dtype
        with warnings.catch_warnings():  # torch's note on a pickle's protocol, before it refuses the file anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            model = transformers.AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met a non-tensor object: refuse, never retry
        raise BackendError(f"{_pickle_weights(name)}: not a safe weights file (pickle content refused; "
                           "convert it to safetensors)") from None
    except (OSError, ValueError) as e:
        raise BackendError(f"could not load model {name!r}: {e}") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise BackendError(f"{name}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device)
    model.eval()
    return tokenizer, model


def _pickle_weights(name: str) -> str:
    """The pickle weights file(s) of a model folder, for an error message (the hub id for a hub model)."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return f"{name} (its .bin weights)"
    bins = sorted(folder.glob("*.bin"))
    return str(bins[0]) if len(bins) == 1 else f"{folder} (its .bin weights files)"


def _pad(rows: list[list[int]], pad_id: int, left: bool, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded id tensor and its attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(r, dtype=torch.long)
        mask[i, sl] = 1
    return ids.to(device), mask.to(device)


def _max_len(model: Any, tokenizer: Any) -> int | None:
    """The model's context window, if it states one."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 1_000_000 else None


def _accepts(model: Any, name: str) -> bool:
    """Whether the model's ``forward`` takes keyword ``name`` (argument names differ between versions)."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
