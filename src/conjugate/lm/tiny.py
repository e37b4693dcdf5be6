"""Tiny randomly initialised causal LMs with a real tokenizer, for tests and offline smoke runs.

``write_tiny_model(out_dir, arch="gpt2")`` writes a folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load like any hub model: safetensors weights, a config, and a byte-level BPE
tokenizer trained with ``tokenizers`` on the project's own sentences (``conjugate/data/icl/**/*.txt`` when present,
else a short built-in list). Two architectures cover the two families the studies use: ``gpt2`` (learned
positions, no BOS token) and ``llama`` (rotary positions, a BOS token prepended by the tokenizer), so the code
paths that depend on special tokens and position handling are both exercised. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

ARCHS = ("gpt2", "llama")

BUILTIN_CORPUS = (
    "The cat sat on the mat.",
    "What is 7 times 12?",
    "Repeat the sentence exactly as it is written.",
    "Capitalize every character of the input.",
    "Input: the weather is nice today",
    "Output: THE WEATHER IS NICE TODAY",
    "The river flows slowly through the old town.",
    "She reads a book every evening before bed.",
    "Le chat est assis sur le tapis.",
    "Quel est le résultat de 7 fois 12 ?",
    "El perro corre en el parque.",
    "¿Cuánto es 7 por 12?",
    "De kat zit op de mat.",
    "Wat is 7 keer 12?",
    "A macska a szőnyegen ül.",
    "Mennyi 7 szer 12?",
    "Th3 c4t s4t 0n th3 m4t.",
    "Ethay atcay atsay onay ethay atmay.",
    "Premise: a man is playing a guitar on stage.",
    "Question: a man is performing music. True, False or Neither?",
    "Answer: True",
    "Answer: False",
    "Answer: Neither",
    "I cannot help with that request.",
    "Sure, here is how to bake bread at home.",
    "Der Hund schläft im Garten.",
    "Was ist sieben mal zwölf?",
    "The students walked to school in the rain.",
    "Numbers: 1 2 3 4 5 6 7 8 9 10 11 12 84",
    "Fill in the blank: ___ is the capital of France.",
    "Paris is the capital of France.",
    "Ok.",
)

SPECIAL_TOKEN = "<|endoftext|>"  # EOS for both, BOS and PAD-less (the backend sets pad from eos)


def project_corpus() -> list[str]:
    """Sentences from ``conjugate/data/icl/**/*.txt`` (one per line, ``#`` comments skipped); empty if none."""
    lines: list[str] = []
    for entry in _text_files(resources.files("conjugate") / "data" / "icl"):
        for line in entry.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _text_files(root) -> list:
    """``*.txt`` files under a resource folder, recursively, in name order (deterministic corpus)."""
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found.extend(_text_files(entry))
        elif entry.name.endswith(".txt"):
            found.append(entry)
    return found


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``corpus`` (every byte representable)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return tok


def write_tiny_model(
    out_dir: str | Path,
    arch: str = "gpt2",
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 512,
) -> Path:
    """Write a tiny random causal LM (about 100–200K parameters) and its tokenizer to ``out_dir``.

    ``corpus`` trains the tokenizer; default: the project's sentences, else :data:`BUILTIN_CORPUS`.
    Weights come from ``torch.manual_seed(seed)``; the same seed and corpus give the same files.
    Returns ``out_dir``.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    import torch
    from tokenizers import processors
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast

    sentences = list(corpus) if corpus is not None else (project_corpus() or list(BUILTIN_CORPUS))
    if not sentences:
        raise ValueError("empty corpus: the tokenizer needs at least one sentence")
    tok = train_tokenizer(sentences, vocab_size=vocab_size)
    eos_id = tok.token_to_id(SPECIAL_TOKEN)
    if arch == "llama":  # Llama-style tokenizers prepend a BOS token; exercise that path
        tok.post_processor = processors.TemplateProcessing(
            single=f"{SPECIAL_TOKEN} $A", pair=f"{SPECIAL_TOKEN} $A $B", special_tokens=[(SPECIAL_TOKEN, eos_id)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL_TOKEN, eos_token=SPECIAL_TOKEN, model_max_length=256
    )

    common = dict(vocab_size=tok.get_vocab_size(), bos_token_id=eos_id, eos_token_id=eos_id, initializer_range=0.1)
    if arch == "gpt2":
        config = GPT2Config(n_positions=256, n_embd=64, n_layer=2, n_head=2, **common)
    else:
        config = LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, **common,
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out
