"""A :class:`~conjugate.lm.backend.Backend` over any Hugging Face ``AutoModelForCausalLM``.

Greedy generation and log-likelihood scoring, both batched. Prompts are sorted by token length (longest first,
so an out-of-memory error shows up on the first batch) and results come back in input order. Generation pads on
the left, so every row's next token sits in the last column; scoring pads on the right, where causal attention
makes padding invisible to real tokens. Batched greedy output equals one-prompt-at-a-time output (in fp32; bf16
kernels may break exact ties differently).

Weights load through ``from_pretrained``: safetensors when the repository has them, else ``torch.load`` with
``weights_only=True`` (no arbitrary unpickling; pass ``safetensors_only=True`` to refuse ``.bin`` files
altogether). A ``.bin`` file whose pickle holds anything but tensors is refused with one line (it is never run,
and never retried with ``weights_only=False``). ``trust_remote_code`` is never set. ``transformers`` is an
optional extra, imported on first use.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .backend import BackendError
from .runner import ProgressBar

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"cpu": 16, "cuda": 64, "mps": 16}


def require_transformers() -> Any:
    """Import ``transformers`` or explain how to install it."""
    try:
        import transformers
    except ImportError:
        raise BackendError(
            "Hugging Face models need the 'transformers' package: pip install 'conjugate-prompting[hf]'"
        ) from None
    return transformers


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


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def split_context(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of the context onto the continuation (``"A: "+"x"`` → ``"A:"+" x"``).

    BPE tokenizers attach a space to the following word, so this keeps the continuation's first token whole.
    """
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


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
    turn in chat mode. The template applies to :meth:`generate` only; :meth:`loglikelihood` scores raw text.
    ``batch_size="auto"`` starts at a per-device default and halves on CUDA out-of-memory.
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
        self.tokenizer, self.model = _load(transformers, self.name, self.dtype, self.device, revision, safetensors_only)
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat and not has_template:
            raise BackendError(f"{self.name}: chat=True but the tokenizer has no chat_template")
        self.chat = has_template if chat is None else bool(chat)

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
        encoded = self.tokenizer(texts, add_special_tokens=not self.chat)["input_ids"]
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
        ctx = self.tokenizer(context)["input_ids"]
        whole = self.tokenizer(context + continuation)["input_ids"]
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

    # ----------------------------------------------------------------- batching
    def _batched(self, items: list, run: Callable[[list], list], what: str,
                 length: Callable[[Any], int] = len) -> list:
        """Run ``run`` on length-sorted batches, halving the batch size on CUDA OOM; results in input order."""
        order = sorted(range(len(items)), key=lambda i: -length(items[i]))
        results: list = [None] * len(items)
        progress = ProgressBar(self.show_progress, len(items), f"{self.name}: {what}")
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
                progress.advance(len(idx))
        finally:
            progress.close()
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
