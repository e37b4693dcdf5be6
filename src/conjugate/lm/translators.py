"""Translators backed by a model, registered as the ``hf:`` and ``llm:`` specs of
:func:`conjugate.transforms.get_translator` (and so of ``translate:<lang>@hf:...``) when this module is imported.

- ``hf:<model id or path>`` — :class:`HFTranslator`: a Hugging Face sequence-to-sequence translation model
  (MarianMT, NLLB, M2M100). ``{src}``/``{tgt}`` in the id are filled in per direction, so
  ``hf:Helsinki-NLP/opus-mt-{src}-{tgt}`` picks the right Marian pair (and the reverse one for the inverse).
  NLLB and M2M100 get their language tokens automatically.
- ``llm:<backend spec>`` — :class:`LLMTranslator`: any model :func:`conjugate.lm.load.load_backend` can load
  (a local model, ``openai-chat:<model>@<url>``...) with a fixed translation prompt, greedy.

They live here, not in :mod:`conjugate.transforms`, so that the dependency runs one way: ``lm`` uses
``transforms``, never the reverse. Code that takes a translator spec imports :func:`get_translator` from here,
which guarantees both kinds are registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..transforms.translate import TranslationError, by_lines, get_translator, language_name, register_translator

NLLB_CODES = {
    "en": "eng_Latn", "fr": "fra_Latn", "es": "spa_Latn", "nl": "nld_Latn", "hu": "hun_Latn", "de": "deu_Latn",
    "it": "ita_Latn", "pt": "por_Latn", "ja": "jpn_Jpan", "zh": "zho_Hans", "ko": "kor_Hang", "ru": "rus_Cyrl",
    "sw": "swh_Latn", "ml": "mal_Mlym", "ar": "arb_Arab", "hi": "hin_Deva", "pl": "pol_Latn", "tr": "tur_Latn",
}
LLM_PROMPT = ("Translate the following {src_name} text into {tgt_name}. Reply with the translation only.\n\n"
              "{src_name}: {text}\n{tgt_name}:")


def lang_kwargs(tokenizer: Any, src: str, tgt: str) -> dict[str, Any]:
    """``generate`` arguments that pick the target language of a multilingual model.

    NLLB-style vocabularies hold tokens such as ``fra_Latn``; M2M100 tokenizers have ``get_lang_id``. Fixed-pair
    models (MarianMT ``opus-mt-en-fr``) need nothing.
    """
    if hasattr(tokenizer, "get_lang_id"):
        tokenizer.src_lang = src
        return {"forced_bos_token_id": tokenizer.get_lang_id(tgt)}
    vocab = tokenizer.get_vocab()
    code_src, code_tgt = NLLB_CODES.get(src, src), NLLB_CODES.get(tgt, tgt)
    if code_tgt in vocab and code_src in vocab and code_tgt != tgt:
        tokenizer.src_lang = code_src
        return {"forced_bos_token_id": vocab[code_tgt]}
    return {}


class HFTranslator:
    """A Hugging Face seq2seq translation model, greedy (or beam) decoding, batched by length.

    Weights load through ``from_pretrained`` (safetensors when present; ``.bin`` files only through
    ``torch.load(weights_only=True)``), never with remote code.
    """

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 max_new_tokens: int = 256, num_beams: int = 1):
        if batch_size < 1:
            raise TranslationError(f"batch_size must be >= 1, got {batch_size}")
        self.model_spec = model
        self.name = f"hf:{model}"
        self.device, self.dtype_name = device, dtype
        self.batch_size, self.max_new_tokens, self.num_beams = batch_size, max_new_tokens, num_beams
        self._loaded: dict[str, tuple[Any, Any]] = {}

    def model_id(self, src: str, tgt: str) -> str:
        return self.model_spec.replace("{src}", src).replace("{tgt}", tgt)

    def _load(self, model_id: str) -> tuple[Any, Any]:
        if model_id not in self._loaded:
            from .backend import BackendError
            from .hf import pick_device, pick_dtype, require_transformers

            try:
                transformers = require_transformers()
                device = pick_device(self.device)
                dtype = pick_dtype(self.dtype_name, device)
                tok = transformers.AutoTokenizer.from_pretrained(model_id)
                major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
                dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
                model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model_id, **{dtype_key: dtype})
            except BackendError as e:
                raise TranslationError(str(e)) from None
            except (OSError, ValueError) as e:
                raise TranslationError(f"could not load translation model {model_id!r}: {e}") from None
            model.to(device).eval()
            self._loaded[model_id] = (tok, model)
        return self._loaded[model_id]

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        if src == tgt:
            return list(texts)
        return by_lines(texts, lambda lines: self._run(lines, src, tgt))

    def _run(self, lines: list[str], src: str, tgt: str) -> list[str]:
        import torch

        tok, model = self._load(self.model_id(src, tgt))
        extra = lang_kwargs(tok, src, tgt)
        order = sorted(range(len(lines)), key=lambda i: -len(lines[i]))
        out: list[str] = [""] * len(lines)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = tok([lines[i] for i in idx], return_tensors="pt", padding=True, truncation=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            with torch.inference_mode():
                gen = model.generate(**enc, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                     do_sample=False, **extra)
            for i, text in zip(idx, tok.batch_decode(gen, skip_special_tokens=True), strict=True):
                out[i] = text.strip()
        return out


class LLMTranslator:
    """Any :class:`~conjugate.lm.backend.Backend` with a fixed translation prompt (:data:`LLM_PROMPT`).

    ``backend`` is a Backend or a spec for :func:`~conjugate.lm.load.load_backend`, loaded on first use.
    """

    def __init__(self, backend: Any, max_new_tokens: int = 256, prompt: str = LLM_PROMPT, **backend_options: Any):
        self._backend = backend if not isinstance(backend, str) else None
        self.spec = backend if isinstance(backend, str) else getattr(backend, "name", "backend")
        self.name = f"llm:{self.spec}"
        self.max_new_tokens, self.prompt, self.backend_options = max_new_tokens, prompt, backend_options

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from .backend import BackendError
            from .load import load_backend

            try:
                self._backend = load_backend(self.spec, **self.backend_options)
            except BackendError as e:
                raise TranslationError(f"{self.name}: {e}") from None
        return self._backend

    def prompts(self, lines: Sequence[str], src: str, tgt: str) -> list[str]:
        names = {"src_name": language_name(src), "tgt_name": language_name(tgt)}
        return [self.prompt.format(text=line, **names) for line in lines]

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        if src == tgt:
            return list(texts)

        def run(lines: list[str]) -> list[str]:
            outs = self.backend.generate(self.prompts(lines, src, tgt), self.max_new_tokens, stop=("\n",))
            return [o.strip() for o in outs]

        return by_lines(texts, run)


register_translator("hf", HFTranslator, "hf:<model-id-or-path>")
register_translator("llm", LLMTranslator, "llm:<backend-spec>")

__all__ = ["HFTranslator", "LLMTranslator", "LLM_PROMPT", "NLLB_CODES", "get_translator", "lang_kwargs"]
