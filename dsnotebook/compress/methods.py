"""What a compression method is, and how method names become methods.

A method receives a *private copy* of the model (``compress`` deep-copies the reference for
every method, so a method may change the copy in place and the user's model is never touched)
and returns a :class:`Compressed`: the compressed model, the backend that did the work, notes a
reader needs to judge the numbers (e.g. "zeros are stored densely"), and extra measured facts.

Methods that can compress one layer at a time (``per_layer = True``) also list their candidate
layers; the per-layer sensitivity (the metric when only that layer is compressed) uses them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["Context", "Compressed", "Method", "Chain", "NotApplicable", "CompressionWarning",
           "register", "resolve", "known_methods", "COMPRESSIBLE"]

#: layer types quantization and pruning act on (a model with none of them has nothing to compress)
COMPRESSIBLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class NotApplicable(Exception):
    """The method does not apply to this model or device (its row says why; not an error)."""


class CompressionWarning(UserWarning):
    """A compressed model is worse than the original in something measured (slower, bigger, less
    accurate), or a method failed."""


@dataclass
class Context:
    """What every method may use: example inputs (a tuple of positional arguments), the user's
    data (batches, for methods that train), the device, and the tracer factory
    ``tracer(model, optimizer)`` (a context manager; ``None`` where none was configured)."""

    args: tuple[Any, ...]
    data: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    tracer: Callable[..., Any] | None = None


@dataclass
class Compressed:
    model: nn.Module
    backend: str
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. sparse_bytes, plan, tracer, losses


class Method:
    """Base class: subclass it and implement :meth:`apply` to plug in your own method."""

    key = "method"
    per_layer = False  # can compress a single layer (``only=``): per-layer sensitivity
    needs_data = False  # trains (distillation): compress() asks for data= up front

    def __init__(self, name: str | None = None) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name or self.key

    def layers(self, model: nn.Module, ctx: Context) -> list[str]:
        """Names of the layers :meth:`apply` can compress one at a time (``only={name}``)."""
        return []

    def apply(self, model: nn.Module, ctx: Context, only: set[str] | None = None) -> Compressed:
        """Compress ``model`` (a private copy: changing it in place is fine)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Chain(Method):
    """Methods applied one after the other, e.g. channel pruning then int8 quantization."""

    def __init__(self, *methods: Method, name: str | None = None) -> None:
        super().__init__(name)
        if len(methods) < 2:
            raise ValueError("Chain needs at least two methods")
        self.methods = list(methods)
        self.needs_data = any(m.needs_data for m in self.methods)

    @property
    def name(self) -> str:
        return self._name or "+".join(m.name for m in self.methods)

    def apply(self, model: nn.Module, ctx: Context, only: set[str] | None = None) -> Compressed:
        notes: list[str] = []
        info: dict[str, Any] = {}
        backends = []
        for m in self.methods:
            out = m.apply(model, ctx)
            model = out.model
            backends.append(out.backend)
            notes += [f"{m.name}: {n}" for n in out.notes]
            info.update(out.info)
        return Compressed(model, " + ".join(backends), notes, info)


_REGISTRY: dict[str, Callable[[], Method]] = {}


def register(key: str, factory: Callable[[], Method]) -> None:
    """Make ``key`` usable as a method name (``compress(model, [key], ...)``)."""
    _REGISTRY[key] = factory


def known_methods() -> list[str]:
    return sorted(_REGISTRY)


def resolve(methods: str | Method | Iterable[str | Method]) -> list[Method]:
    """Method objects for names (``"a+b"`` chains a then b) and objects, in order; unique names."""
    items: Sequence[Any] = [methods] if isinstance(methods, (str, Method)) else list(methods)
    if not items:
        raise ValueError(f"no compression methods given; known: {', '.join(known_methods())}")
    out: list[Method] = []
    for item in items:
        if isinstance(item, Method):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"a method is a name or a dsnotebook.compress.Method, got {type(item).__name__}: {item!r:.60}")
        parts = [p.strip() for p in item.split("+")]
        unknown = [p for p in parts if p not in _REGISTRY]
        if unknown:
            raise ValueError(f"unknown compression method {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(known_methods())} (chain them with '+', e.g. "
                             f"'channel_prune+dynamic_int8')")
        made = [_REGISTRY[p]() for p in parts]
        out.append(made[0] if len(made) == 1 else Chain(*made, name=item))
    names = [m.name for m in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"two methods named {', '.join(dup)}: give one of them name=...")
    if "original" in names:
        raise ValueError("'original' names the uncompressed model's row; rename that method")
    return out


def compressible_layers(model: nn.Module, types: tuple[type, ...] = COMPRESSIBLE) -> list[str]:
    """Names of the model's Linear/Conv layers (shared ones once), in model order."""
    return [n for n, m in model.named_modules() if isinstance(m, types)]
