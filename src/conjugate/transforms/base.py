"""The transform interface, composition, and the registry of transform specs.

A conjugate transform ``s`` changes how a prompt looks while keeping its task; the answer is mapped back with
``s⁻¹``. Each :class:`Transform` states honestly how far its inverse can be trusted:

- ``exact`` is True when ``invert(apply(t)) == t`` for every ``t`` in the transform's declared domain
  (:meth:`Transform.in_domain`, described in words by ``domain``). Outside that domain the inverse is
  best effort.
- :meth:`Transform.invert` raises :class:`NotInvertibleError` when no inverse exists at all, and
  :class:`TransformError` when the text is not something the transform could have produced.

Specs are strings: a registered name (``"leetspeak"``), a name with an argument (``"translate:fr"``), a name
with one of its named variants (``"leetspeak:authors"``), or a composition with ``+`` applied left to right
(``"leetspeak+base64"``: leetspeak first, then Base64).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class TransformError(ValueError):
    """A transform could not be applied or inverted; the message says which and why."""


class NotInvertibleError(TransformError):
    """The transform has no inverse."""


class Transform:
    """Base class: subclasses set ``name``, ``exact`` and ``domain`` and implement :meth:`apply` (and
    :meth:`invert` where an inverse exists)."""

    name: str = "identity"
    exact: bool = False
    domain: str = "any text"

    def apply(self, text: str) -> str:
        raise NotImplementedError

    def invert(self, text: str) -> str:
        raise NotInvertibleError(f"transform {self.name!r} has no inverse")

    def in_domain(self, text: str) -> bool:
        """Whether ``text`` lies in the declared domain, where an ``exact`` transform round-trips."""
        return True

    def apply_many(self, texts: Sequence[str]) -> list[str]:
        """:meth:`apply` on each text (transforms that call a model override this to batch)."""
        return [self.apply(t) for t in texts]

    def invert_many(self, texts: Sequence[str]) -> list[str]:
        return [self.invert(t) for t in texts]

    def __add__(self, other: Transform) -> Compose:
        return Compose([self, other])

    def __repr__(self) -> str:
        return f"<transform {self.name} exact={self.exact}>"


class Compose(Transform):
    """Apply ``parts`` left to right; invert right to left. Exact when every part is exact; a text is in the
    domain when each part's input is in that part's domain."""

    def __init__(self, parts: Sequence[Transform]):
        flat: list[Transform] = []
        for p in parts:
            flat.extend(p.parts if isinstance(p, Compose) else [p])
        if not flat:
            raise TransformError("an empty composition")
        self.parts = flat
        self.name = "+".join(p.name for p in flat)
        self.exact = all(p.exact for p in flat)
        self.domain = " then ".join(f"{p.name}: {p.domain}" for p in flat)

    def apply(self, text: str) -> str:
        for p in self.parts:
            text = p.apply(text)
        return text

    def invert(self, text: str) -> str:
        for p in reversed(self.parts):
            text = p.invert(text)
        return text

    def apply_many(self, texts: Sequence[str]) -> list[str]:
        out = list(texts)
        for p in self.parts:
            out = p.apply_many(out)
        return out

    def invert_many(self, texts: Sequence[str]) -> list[str]:
        out = list(texts)
        for p in reversed(self.parts):
            out = p.invert_many(out)
        return out

    def in_domain(self, text: str) -> bool:
        for p in self.parts:
            if not p.in_domain(text):
                return False
            text = p.apply(text)
        return True


@dataclass(frozen=True)
class Entry:
    """A registered transform family: ``make(arg, **options)`` builds one; ``usage`` shows its spec form.

    ``variants`` names the optional arguments a family without ``needs_arg`` accepts (``leetspeak:authors``);
    ``make`` gets ``None`` for the plain name and the variant's name otherwise."""

    make: Callable[..., Transform]
    usage: str
    needs_arg: bool = False
    variants: tuple[str, ...] = ()


_REGISTRY: dict[str, Entry] = {}


def register(name: str, make: Callable[..., Transform], usage: str | None = None, needs_arg: bool = False,
             variants: Sequence[str] = ()) -> None:
    """Add a transform family under ``name`` (``make(arg, **options)``; ``arg`` is the text after ``:``).

    ``variants``: the arguments the family optionally takes (each also listed by :func:`available`)."""
    if needs_arg and variants:
        raise ValueError(f"transform {name!r}: a family takes a free argument or named variants, not both")
    _REGISTRY[name] = Entry(make, usage or name, needs_arg, tuple(v.lower() for v in variants))


def available() -> list[str]:
    """The spec forms of every registered transform and variant, e.g. ``["base64", ..., "leetspeak",
    "leetspeak:authors", ..., "translate:<lang>"]``."""
    return sorted([e.usage for e in _REGISTRY.values()]
                  + [f"{name}:{v}" for name, e in _REGISTRY.items() for v in e.variants])


def get_transform(spec: str, **options: Any) -> Transform:
    """The transform for ``spec``: one name, ``name:arg``, or a ``+``-composition of those.

    ``options`` go to every family that takes them (``translator=`` and ``src=`` for ``translate``).
    Unknown names raise :class:`TransformError` listing the valid ones.
    """
    parts = [p.strip() for p in spec.split("+")]
    if not spec.strip() or any(not p for p in parts):
        raise TransformError(f"empty transform in spec {spec!r}; valid transforms: {', '.join(available())}")
    made = [_one(p, options) for p in parts]
    return made[0] if len(made) == 1 else Compose(made)


def _one(spec: str, options: dict[str, Any]) -> Transform:
    name, sep, arg = spec.partition(":")
    key = name.strip().lower()
    entry = _REGISTRY.get(key)
    if entry is None:
        raise TransformError(f"unknown transform {name!r}; valid transforms: {', '.join(available())}")
    if entry.needs_arg and not arg.strip():
        raise TransformError(f"transform {name!r} needs an argument: {entry.usage}")
    if entry.variants and sep:
        variant = arg.strip().lower()
        if variant not in entry.variants:
            forms = ", ".join([key] + [f"{key}:{v}" for v in entry.variants])
            raise TransformError(f"unknown variant {arg.strip()!r} of transform {name!r}; valid variants: {forms}")
        return entry.make(variant, **options)
    if not entry.needs_arg and sep:
        raise TransformError(f"transform {name!r} takes no argument (got {spec!r})")
    return entry.make(arg.strip() if sep else None, **options)
