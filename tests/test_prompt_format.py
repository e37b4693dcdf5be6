"""A named tuned sibling carries the prompt format it was tuned on and uses it as its chat template (the chat
arm of the harmful study), and that format is part of its identity in the request cache."""

from __future__ import annotations

import jinja2
import pytest

from conjugate.lm import catalog
from conjugate.lm.cache import backend_identity
from conjugate.lm.hf import HFBackend
from conjugate.lm.source import resolve_source
from conjugate.lm.tunedata import FORMATS


@pytest.fixture()
def sibling(tiny_llama, monkeypatch: pytest.MonkeyPatch):
    """``tiny-sibling``: a named model standing for the tiny Llama folder with the refusal sibling's format."""
    real_is_name, real_spec_of, real_template = catalog.is_model_name, catalog.spec_of, catalog.chat_template_of
    monkeypatch.setattr(catalog, "is_model_name", lambda n: n == "tiny-sibling" or real_is_name(n))
    monkeypatch.setattr(catalog, "spec_of", lambda n: str(tiny_llama) if n == "tiny-sibling" else real_spec_of(n))
    monkeypatch.setattr(catalog, "chat_template_of", lambda n: catalog.INSTRUCTION_TEMPLATE
                        if n == "tiny-sibling" else real_template(n))
    return "tiny-sibling"


def test_the_refusal_sibling_declares_the_instruction_format():
    s = catalog.SHIPPED["gemma3-270m-refusal-en"]
    assert s.chat_template == catalog.INSTRUCTION_TEMPLATE and s.base == "gemma3-270m"
    assert catalog.chat_template_of("gemma3-270m-refusal-en") == catalog.INSTRUCTION_TEMPLATE
    assert catalog.chat_template_of("gemma3-270m") is None
    assert catalog.chat_template_of("gemma3-270m-tuned-en") is None


def test_the_template_renders_the_tuning_datas_instruction_layout():
    fmt = next(f for f in FORMATS if f.name == "instruction")
    env = jinja2.Environment()
    text = env.from_string(catalog.INSTRUCTION_TEMPLATE).render(
        messages=[{"role": "user", "content": "Explain tides"}], add_generation_prompt=True, bos_token="<s>")
    assert text == "<s>" + fmt.prompt("Explain tides")
    with_system = env.from_string(catalog.INSTRUCTION_TEMPLATE).render(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Explain tides"}],
        add_generation_prompt=True, bos_token="<s>")
    assert with_system == "<s>Be brief.\n\n" + fmt.prompt("Explain tides")


def test_a_named_sibling_uses_its_format_as_chat_template(sibling, tiny_llama):
    src = resolve_source(sibling)
    assert src.chat_template == catalog.INSTRUCTION_TEMPLATE and src.model == str(tiny_llama)
    b = HFBackend(sibling, device="cpu", chat=True)
    bos = b.tokenizer.bos_token
    assert b.format_prompt("Explain tides") == f"{bos}Instruction: Explain tides\nResponse:"
    # the raw folder keeps its own behaviour: no template, so chat=True is refused there
    plain = HFBackend(str(tiny_llama), device="cpu", chat=False)
    assert plain.format_prompt("Explain tides") == "Explain tides"


def test_the_format_is_part_of_the_cache_identity(sibling, tiny_llama):
    named = backend_identity(sibling, {})
    raw = backend_identity(str(tiny_llama), {})
    assert named["chat"] is True and len(named["chat_template"]) == 64
    assert "chat_template" not in raw
    assert {k: v for k, v in named.items() if k not in ("chat", "chat_template")} == \
        {k: v for k, v in raw.items() if k != "chat"}
