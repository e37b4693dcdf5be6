"""Shared pytest fixtures. Keep each one small; add yours below."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def restore_threads():
    """Runs set torch's thread count (``threads``, a sweep's cpus per run); put it back after every test."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory):
    """Folder of a tiny random GPT-2 + byte-level BPE tokenizer (conjugate.lm.tiny), built once per session."""
    from conjugate.lm.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"), arch="gpt2", seed=0)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory):
    """Folder of a tiny random Llama (its tokenizer prepends a BOS token), built once per session."""
    from conjugate.lm.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=0)


@pytest.fixture(autouse=True)
def isolated_request_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point CONJUGATE_CACHE at a fresh folder per test: no test reads or writes the user's request cache or
    another test's entries."""
    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path_factory.mktemp("conjugate-cache")))
