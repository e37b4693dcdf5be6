"""Named base → fine-tuned model pairs, as data.

The paper's pairs (SPEC §2) plus small modern ones that fit a laptop or one GPU. Each preset names a ``base``
model and the ``tuned`` model fine-tuned from it, the ``study`` it serves, and notes (licence gates, weight
formats). :func:`resolve_models` turns ``--model`` values into model specs for :func:`~conjugate.lm.load.load_backend`:
a preset name expands to ``[base, tuned]``; ``<preset>:base`` / ``<preset>:tuned`` pick one; anything else (a
path, a hub id, an ``openai:`` spec) passes through.
"""

from __future__ import annotations

from collections.abc import Iterable

PRESETS: dict[str, dict[str, str]] = {
    "llama7b-alpaca": {
        "base": "huggyllama/llama-7b",
        "tuned": "chavinlo/alpaca-native",
        "study": "icl_vs_if",
        "notes": "Paper pair (ICL vs instruction following). Alpaca-7B fine-tuned natively on the Stanford "
                 "Alpaca data; its weights are .bin only (loaded with torch.load(weights_only=True)).",
    },
    "llama7b-vicuna": {
        "base": "huggyllama/llama-7b",
        "tuned": "lmsys/vicuna-7b-v1.3",
        "study": "icl_vs_if",
        "notes": "Paper pair. Vicuna v1.3 is a chat model fine-tuned from LLaMA-7B on ShareGPT conversations.",
    },
    "opt1.3b-iml": {
        "base": "facebook/opt-1.3b",
        "tuned": "facebook/opt-iml-max-1.3b",
        "study": "icl_vs_if",
        "notes": "Paper pair. OPT-IML-Max: OPT instruction-tuned on the OPT-IML Bench (~2000 tasks).",
    },
    "llama2-7b-codellama": {
        "base": "meta-llama/Llama-2-7b-hf",
        "tuned": "codellama/CodeLlama-7b-hf",
        "study": "xnli",
        "notes": "Paper pair (code fine-tuning vs reasoning). Llama 2 is gated on the hub: accept the licence "
                 "and set HF_TOKEN.",
    },
    "llama2-7b-chat": {
        "base": "meta-llama/Llama-2-7b-hf",
        "tuned": "meta-llama/Llama-2-7b-chat-hf",
        "study": "harmful",
        "notes": "Safety-tuned chat model and its base, for the harmful-content study (gated; set HF_TOKEN).",
    },
    "qwen2.5-0.5b-instruct": {
        "base": "Qwen/Qwen2.5-0.5B",
        "tuned": "Qwen/Qwen2.5-0.5B-Instruct",
        "study": "icl_vs_if",
        "notes": "Small modern base/instruct pair; multilingual; runs on a CPU.",
    },
    "smollm2-360m-instruct": {
        "base": "HuggingFaceTB/SmolLM2-360M",
        "tuned": "HuggingFaceTB/SmolLM2-360M-Instruct",
        "study": "icl_vs_if",
        "notes": "Small modern base/instruct pair, mostly English pretraining; runs on a CPU.",
    },
    "gemma3-270m-en": {
        "base": "gemma3-270m",
        "tuned": "gemma3-270m-tuned-en",
        "study": "icl_vs_if",
        "notes": "Offline matched pair from the package index: Gemma 3 270M base and the same model with the "
                 "project's English instruction-tuning LoRA adapter (conjugate models list).",
    },
    "gemma3-270m-refusal": {
        "base": "gemma3-270m",
        "tuned": "gemma3-270m-refusal-en",
        "study": "harmful",
        "notes": "Offline safety pair from the package index: Gemma 3 270M base and the same model with the "
                 "project's English-only refusal-tuning LoRA adapter, whose chat arm is the format it was tuned "
                 "on ('Instruction: ...\\nResponse:').",
    },
    "qwen2.5-0.5b-coder": {
        "base": "Qwen/Qwen2.5-0.5B",
        "tuned": "Qwen/Qwen2.5-Coder-0.5B",
        "study": "xnli",
        "notes": "Small base/code pair standing in for Llama-2 → CodeLlama.",
    },
}

ROLES = ("base", "tuned")


def resolve_models(names: str | Iterable[str]) -> list[str]:
    """Model specs for ``names`` (a list, or one comma-separated string), duplicates dropped, order kept.

    ``"llama7b-alpaca"`` → ``["huggyllama/llama-7b", "chavinlo/alpaca-native"]``;
    ``"llama7b-alpaca:tuned"`` → ``["chavinlo/alpaca-native"]``; other names pass through unchanged.
    """
    if isinstance(names, str):
        names = names.split(",")
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        for spec in expand(name):
            if spec not in out:
                out.append(spec)
    return out


def expand(name: str) -> list[str]:
    """One name → its model specs (see :func:`resolve_models`)."""
    if name in PRESETS:
        return [PRESETS[name]["base"], PRESETS[name]["tuned"]]
    preset, _, role = name.rpartition(":")
    if preset in PRESETS:
        if role not in ROLES:
            raise ValueError(f"preset {preset!r}: unknown role {role!r}; use {preset}:base or {preset}:tuned")
        return [PRESETS[preset][role]]
    return [name]


def describe() -> list[tuple[str, str, str, str]]:
    """(name, base, tuned, notes) rows for listing."""
    return [(n, p["base"], p["tuned"], p["notes"]) for n, p in PRESETS.items()]
