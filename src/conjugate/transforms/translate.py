"""Translation as a conjugate transform, through pluggable :class:`Translator` backends.

A translator maps a batch of texts from one language to another: ``translate(texts, src, tgt) -> list[str]``,
languages as ISO 639-1 codes (``en``, ``fr``, ``hu``, ...). Three backends, chosen with :func:`get_translator`:

- ``table:DIR`` — :class:`TableTranslator`: pre-translated text, one ``<lang>.txt`` per language aligned line
  by line (``table`` alone: the project's own corpus in ``conjugate/data/icl/sentences``). Exact lookups, no
  model; a line missing from the table is an error naming it.
- ``hf:<model id or path>`` — :class:`HFTranslator`: a Hugging Face sequence-to-sequence translation model
  (MarianMT, NLLB, M2M100). ``{src}``/``{tgt}`` in the id are filled in per direction, so
  ``hf:Helsinki-NLP/opus-mt-{src}-{tgt}`` picks the right Marian pair (and the reverse one for the inverse).
  NLLB and M2M100 get their language tokens automatically.
- ``llm:<backend spec>`` — :class:`LLMTranslator`: any model :func:`conjugate.lm.load.load_backend` can load
  (a local model, ``openai-chat:<model>@<url>``...) with a fixed translation prompt, greedy.

Texts are translated line by line (blank lines and the whitespace around each line are kept; repeated lines
are translated once), so a multi-line prompt keeps its layout. The ``translate:<lang>`` transform wraps a
translator: apply = translate from English (or ``src``) into ``<lang>``, invert = translate back. Translation
is lossy, so ``exact`` is False.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .base import Transform, TransformError, register

LANGUAGE_NAMES = {
    "en": "English", "fr": "French", "es": "Spanish", "nl": "Dutch", "hu": "Hungarian", "de": "German",
    "it": "Italian", "pt": "Portuguese", "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ru": "Russian",
    "sw": "Swahili", "ml": "Malayalam", "ar": "Arabic", "hi": "Hindi", "pl": "Polish", "tr": "Turkish",
}
NLLB_CODES = {
    "en": "eng_Latn", "fr": "fra_Latn", "es": "spa_Latn", "nl": "nld_Latn", "hu": "hun_Latn", "de": "deu_Latn",
    "it": "ita_Latn", "pt": "por_Latn", "ja": "jpn_Jpan", "zh": "zho_Hans", "ko": "kor_Hang", "ru": "rus_Cyrl",
    "sw": "swh_Latn", "ml": "mal_Mlym", "ar": "arb_Arab", "hi": "hin_Deva", "pl": "pol_Latn", "tr": "tur_Latn",
}
TRANSLATOR_SPECS = ("table", "table:<dir>", "hf:<model-id-or-path>", "llm:<backend-spec>")
LLM_PROMPT = ("Translate the following {src_name} text into {tgt_name}. Reply with the translation only.\n\n"
              "{src_name}: {text}\n{tgt_name}:")


class TranslationError(TransformError):
    """A text could not be translated; the message names the text, languages and translator."""


@runtime_checkable
class Translator(Protocol):
    """What the translate transform (and the harmful-content study) needs."""

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        """``texts`` translated from ``src`` into ``tgt``, same order and length."""
        ...


def language_name(code: str) -> str:
    """``"fr"`` → ``"French"``; unknown codes come back unchanged."""
    return LANGUAGE_NAMES.get(code, code)


def by_lines(texts: Sequence[str], translate_lines: Callable[[list[str]], list[str]]) -> list[str]:
    """Translate every distinct non-blank line of ``texts`` with one call, then rebuild each text.

    Each line's surrounding whitespace and the blank lines stay as they were.
    """
    split = [t.split("\n") for t in texts]
    unique = list(dict.fromkeys(line.strip() for lines in split for line in lines if line.strip()))
    done = translate_lines(unique) if unique else []
    if len(done) != len(unique):
        raise TranslationError(f"translator returned {len(done)} lines for {len(unique)}")
    table = dict(zip(unique, done, strict=True))
    out = []
    for lines in split:
        rebuilt = []
        for line in lines:
            core = line.strip()
            if not core:
                rebuilt.append(line)
                continue
            start = line.index(core)
            rebuilt.append(line[:start] + table[core] + line[start + len(core):])
        out.append("\n".join(rebuilt))
    return out


class TableTranslator:
    """Lookups in aligned pre-translated text: line ``i`` of every language is the same sentence."""

    def __init__(self, table: Mapping[str, Sequence[str]], where: str = "table"):
        if not table:
            raise TranslationError(f"{where}: no languages")
        counts = {lang: len(lines) for lang, lines in table.items()}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{lang}: {n}" for lang, n in counts.items())
            raise TranslationError(f"{where}: languages are not aligned, line counts differ ({detail})")
        self.name = f"table:{where}"
        self.where = where
        self.lines = {lang: [line.strip() for line in lines] for lang, lines in table.items()}
        self.index: dict[str, dict[str, int]] = {}
        for lang, lines in self.lines.items():
            idx: dict[str, int] = {}
            for i, line in enumerate(lines):
                if line:
                    idx.setdefault(line, i)
            self.index[lang] = idx

    @classmethod
    def from_dir(cls, directory: str | Path) -> TableTranslator:
        """Read ``<lang>.txt`` files (UTF-8, one sentence a line) from ``directory``."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TranslationError(f"translation table {directory}: not a folder")
        files = sorted(directory.glob("*.txt"))
        if not files:
            raise TranslationError(f"translation table {directory}: no <lang>.txt files")
        table = {f.stem: f.read_text(encoding="utf-8").splitlines() for f in files}
        counts = {f.name: len(table[f.stem]) for f in files}
        if len(set(counts.values())) > 1:
            first = files[0].name
            bad = [f"{name} has {n}" for name, n in counts.items() if n != counts[first]]
            raise TranslationError(f"translation table {directory}: files are not aligned: {first} has "
                                   f"{counts[first]} lines but {', '.join(bad)}")
        return cls(table, where=str(directory))

    @classmethod
    def builtin(cls) -> TableTranslator:
        """The project's own multilingual corpus (``conjugate.data``)."""
        from .. import data

        return cls({lang: data.sentences(lang) for lang in data.LANGUAGES}, where="built-in corpus")

    @property
    def languages(self) -> list[str]:
        return sorted(self.lines)

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        for lang in (src, tgt):
            if lang not in self.lines:
                raise TranslationError(f"{self.name}: no language {lang!r}; it has {', '.join(self.languages)}")
        if src == tgt:
            return list(texts)

        def lookup(lines: list[str]) -> list[str]:
            out = []
            for line in lines:
                i = self.index[src].get(line)
                if i is None:
                    raise TranslationError(f"{self.name}: no {src}→{tgt} translation of {line[:60]!r}")
                out.append(self.lines[tgt][i])
            return out

        return by_lines(texts, lookup)


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
            from ..lm.backend import BackendError
            from ..lm.hf import pick_device, pick_dtype, require_transformers

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
            from ..lm.backend import BackendError
            from ..lm.load import load_backend

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


def get_translator(spec: str, **options: Any) -> Translator:
    """``table`` | ``table:DIR`` | ``hf:<model>`` | ``llm:<backend spec>`` → a translator.

    ``options`` go to the backend's constructor (e.g. ``batch_size`` for ``hf:``, ``max_new_tokens``).
    """
    kind, sep, rest = spec.strip().partition(":")
    if kind == "table":
        return TableTranslator.builtin() if not rest or rest == "builtin" else TableTranslator.from_dir(rest)
    if kind == "hf" and rest:
        return HFTranslator(rest, **options)
    if kind == "llm" and rest:
        return LLMTranslator(rest, **options)
    raise TranslationError(f"unknown translator {spec!r}; use one of {', '.join(TRANSLATOR_SPECS)}")


class TranslateTransform(Transform):
    """Translate from ``src`` into ``tgt``; the inverse translates back (lossy)."""

    exact = False
    domain = "text the translator can translate; the inverse is a back-translation, not an exact inverse"

    def __init__(self, tgt: str, translator: Translator | None = None, src: str = "en"):
        self.tgt, self.src = tgt, src
        self.translator = translator if translator is not None else TableTranslator.builtin()
        self.name = f"translate:{tgt}"

    def apply(self, text: str) -> str:
        return self.apply_many([text])[0]

    def invert(self, text: str) -> str:
        return self.invert_many([text])[0]

    def apply_many(self, texts: Sequence[str]) -> list[str]:
        return self.translator.translate(list(texts), self.src, self.tgt)

    def invert_many(self, texts: Sequence[str]) -> list[str]:
        return self.translator.translate(list(texts), self.tgt, self.src)


def _make(arg: str | None, translator: Translator | None = None, src: str = "en", **_: Any) -> TranslateTransform:
    """``translate:<lang>`` or ``translate:<lang>@<translator spec>``."""
    tgt, _, tspec = (arg or "").partition("@")
    if tspec:
        translator = get_translator(tspec)
    return TranslateTransform(tgt.strip(), translator, src=src)


register("translate", _make, usage="translate:<lang>[@<translator>]", needs_arg=True)
