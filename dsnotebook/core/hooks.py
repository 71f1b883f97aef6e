"""Shared plumbing for per-module hooks: names, nested outputs, handle lifetimes, guards.

Graph capture, activation sampling and non-finite localisation all hook every module of
a model for a short time.  What they have in common lives here so that each of them
removes every handle it made, skips forwards that activation checkpointing replays
during backward (torch issue 139214: hooks firing then record a second, bogus call and
leak state), and never lets its own tensor work show up as the user's graph.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import torch
import torch.nn.modules.module as _torch_module
from torch import nn

from dsnotebook.core.modules import named_modules

_state = threading.local()


def in_recompute() -> bool:
    """True while a forward runs inside a backward pass (activation checkpointing replay)."""
    fn = getattr(torch._C, "_current_graph_task_id", None)
    return fn is not None and fn() != -1


@contextlib.contextmanager
def internal() -> Iterator[None]:
    """Mark tensor work done by dsnotebook itself: graph capture does not record it."""
    prev = getattr(_state, "internal", False)
    _state.internal = True
    try:
        yield
    finally:
        _state.internal = prev


def is_internal() -> bool:
    return getattr(_state, "internal", False)


@contextlib.contextmanager
def replaying() -> Iterator[None]:
    """Mark a forward/backward that dsnotebook runs again to localise a non-finite value:
    samplers and recorders ignore it (it belongs to no training step)."""
    prev = getattr(_state, "replaying", False)
    _state.replaying = True
    try:
        yield
    finally:
        _state.replaying = prev


def is_replaying() -> bool:
    return getattr(_state, "replaying", False)


def in_error() -> bool:
    """True inside an always-called forward hook that runs because forward raised."""
    return sys.exc_info()[0] is not None


def flatten_tensors(obj: Any, path: str = "", limit: int = 512, _depth: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Tensors inside nested tuples/lists/dicts/dataclasses (e.g. a Hugging Face ModelOutput),
    each with a readable path like ``logits``, ``[1][0]`` or ``past[0]``."""
    out: list[tuple[str, torch.Tensor]] = []

    def walk(o: Any, p: str, depth: int) -> None:
        if len(out) >= limit or depth > 8:
            return
        if isinstance(o, torch.Tensor):
            out.append((p, o))
        elif isinstance(o, Mapping):
            for k, v in o.items():
                walk(v, f"{p}.{k}" if p else str(k), depth + 1)
        elif isinstance(o, (tuple, list)):
            fields = getattr(o, "_fields", None)  # namedtuple: use its field names
            for i, v in enumerate(o):
                key = fields[i] if fields and i < len(fields) else None
                walk(v, (f"{p}.{key}" if p else key) if key else f"{p}[{i}]", depth + 1)
        elif dataclasses.is_dataclass(o) and not isinstance(o, type):
            for f in dataclasses.fields(o):
                walk(getattr(o, f.name, None), f"{p}.{f.name}" if p else f.name, depth + 1)

    walk(obj, path, _depth)
    return out


def first_float_tensor(obj: Any) -> torch.Tensor | None:
    """The first floating-point tensor of a (nested) module output: ``out`` of an LSTM's
    ``(out, (h, c))``, ``attn_output`` of MultiheadAttention, ``logits`` of a ModelOutput."""
    for _, t in flatten_tensors(obj, limit=16):
        if t.is_floating_point() or t.is_complex():
            return t
    return None




def in_module_hook() -> bool:
    """True while one of dsnotebook's module hooks runs on this thread."""
    return getattr(_state, "hook_depth", 0) > 0


class HookSet:
    """Handles of one feature's hooks; :meth:`remove` takes every one of them out.

    When forward raises, torch runs the always-called forward hooks while iterating the
    module's hook dict; removing a handle then makes torch raise "OrderedDict mutated
    during iteration" instead of the user's exception.  So a removal asked for from inside
    one of our hooks on that path is deferred: the handles stay (their hooks check their
    owner's state and do nothing) until the next :meth:`remove` outside a hook.
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._count = 0
        self.deferred = False

    def add(self, handle: Any, count: int = 1) -> None:
        """Keep ``handle``; ``count`` is how many module hooks it stands for (a subscription
        to the shared global hooks stands for one pre and/or post hook per module)."""
        self._handles.append((handle, count))
        self._count += count

    def __len__(self) -> int:
        return self._count

    def remove(self) -> None:
        if in_module_hook() and in_error():
            self.deferred = True
            return
        self.deferred = False
        self._count = 0
        while self._handles:
            h, _ = self._handles.pop()
            try:
                h.remove()
            except Exception:  # a tensor hook whose tensor is gone: nothing left to remove
                pass


def hook_modules(model: nn.Module, pre: Callable[..., Any] | None, post: Callable[..., Any] | None,
                 hooks: HookSet, modules: list[tuple[str, nn.Module]] | None = None, *,
                 with_kwargs: bool = True) -> None:
    """Register ``pre(name, module, args, kwargs)`` / ``post(name, module, args, kwargs, output)``
    on every module (post hooks also run when forward raises, where torch supports it).

    ``with_kwargs=False`` (callers that read no keyword arguments: ``kwargs`` is then always
    empty) subscribes to one process-wide pair of global module hooks instead of registering
    two hooks per module: arming a sampled step costs one dictionary instead of hundreds of
    handles (about 5 us and a few tracked objects each), and every module call runs one hook
    per direction for all subscribers together.  Pre hooks run in subscription order, post
    hooks in reverse (like nested context managers): the subscriber armed last (the timing
    probe) brackets the module most tightly.
    """
    if not with_kwargs:
        names = _names_by_id(model, modules)
        # Global hooks run before a module's own: a module with hooks of its own (FSDP2's
        # unshard/all-gather, a user's hook) keeps per-module hooks registered after them, so
        # their work stays outside our pre/post brackets (a rank waiting in an all-gather is
        # waiting, not computing).
        pairs = modules if modules is not None else _modules_with_own_hooks(model)
        own = [(n, m) for n, m in pairs if m._forward_pre_hooks or m._forward_hooks]
        if own:
            names = {k: v for k, v in names.items() if k not in {id(m) for _, m in own}}
        sub = _Subscription(names, pre, post)
        _DISPATCH.subscribe(sub)
        hooks.add(sub, count=len(names) * ((pre is not None) + (post is not None)))
        _hook_each(own, pre, post, hooks)
        return
    _hook_each(modules if modules is not None else named_modules(model), pre, post, hooks)


def _modules_with_own_hooks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the modules that carry forward hooks of their own (usually none)."""
    if not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules()):
        return []
    return named_modules(model)


def _hook_each(pairs: list[tuple[str, nn.Module]], pre: Callable[..., Any] | None, post: Callable[..., Any] | None,
               hooks: HookSet) -> None:
    for name, mod in pairs:
        if pre is not None:
            hooks.add(mod.register_forward_pre_hook(_pre_hook(pre, name), with_kwargs=True))
        if post is not None:
            hooks.add(mod.register_forward_hook(_post_hook(post, name), with_kwargs=True, always_call=True))


# -- the shared global hooks ----------------------------------------------------------------
_NO_KWARGS: dict[str, Any] = {}
# model -> (ids of its modules, id -> name, [still valid], weak references that keep it honest)
_name_maps: "weakref.WeakKeyDictionary[nn.Module, tuple[Any, ...]]" = weakref.WeakKeyDictionary()


def _names_by_id(model: nn.Module, modules: list[tuple[str, nn.Module]] | None) -> dict[int, str]:
    """id(module) -> display name, cached per model while its module tree stays the same.

    The cache holds weak references whose callbacks invalidate it when a module dies, so an
    id reused by a new object is never mistaken for the old module."""
    if modules is not None:
        return {id(m): n for n, m in modules}
    ids = tuple(map(id, model.modules()))
    cached = _name_maps.get(model)
    if cached is not None and cached[0] == ids and cached[2][0]:
        return cached[1]
    valid = [True]

    def dead(_: Any, valid: list[bool] = valid) -> None:
        valid[0] = False

    mods = named_modules(model)
    names = {id(m): n for n, m in mods}
    refs = [weakref.ref(m, dead) for _, m in mods]
    _name_maps[model] = (ids, names, valid, refs)
    return names


class _Subscription:
    __slots__ = ("names", "pre", "post")

    def __init__(self, names: dict[int, str], pre: Callable[..., Any] | None, post: Callable[..., Any] | None) -> None:
        self.names, self.pre, self.post = names, pre, post

    def remove(self) -> None:
        _DISPATCH.unsubscribe(self)


class _Dispatcher:
    """One global forward pre-hook and one global forward hook (``always_call``) for every
    subscriber; installed while there is one, removed with the last."""

    def __init__(self) -> None:
        self.pre: tuple[tuple[dict[int, str], Callable[..., Any]], ...] = ()
        self.post: tuple[tuple[dict[int, str], Callable[..., Any]], ...] = ()
        self.subs: tuple[_Subscription, ...] = ()
        self._handles: list[Any] = []
        self._lock = threading.Lock()

    def subscribe(self, sub: _Subscription) -> None:
        with self._lock:
            self._set(self.subs + (sub,))

    def unsubscribe(self, sub: _Subscription) -> None:
        with self._lock:
            if sub in self.subs:
                self._set(tuple(s for s in self.subs if s is not sub))

    def _set(self, subs: tuple[_Subscription, ...]) -> None:
        self.subs = subs
        self.pre = tuple((s.names, s.pre) for s in subs if s.pre is not None)
        self.post = tuple((s.names, s.post) for s in reversed(subs) if s.post is not None)
        if subs and not self._handles:
            self._handles.append(_torch_module.register_module_forward_pre_hook(_global_pre))
            try:
                self._handles.append(_torch_module.register_module_forward_hook(_global_post, always_call=True))
            except TypeError:  # pragma: no cover - a torch without always_call for global hooks
                self._handles.append(_torch_module.register_module_forward_hook(_global_post))
        elif not subs:
            while self._handles:
                self._handles.pop().remove()


_DISPATCH = _Dispatcher()


def _global_pre(module: nn.Module, args: Any) -> None:
    key = id(module)
    for names, fn in _DISPATCH.pre:
        name = names.get(key)
        if name is not None:
            _state.hook_depth = getattr(_state, "hook_depth", 0) + 1
            try:
                fn(name, module, args, _NO_KWARGS)
            finally:
                _state.hook_depth -= 1


def _global_post(module: nn.Module, args: Any, output: Any) -> None:
    key = id(module)
    for names, fn in _DISPATCH.post:
        name = names.get(key)
        if name is not None:
            _state.hook_depth = getattr(_state, "hook_depth", 0) + 1
            try:
                fn(name, module, args, _NO_KWARGS, output)
            finally:
                _state.hook_depth -= 1


def global_hooks_installed() -> bool:
    """True while some feature is subscribed to the shared global module hooks (tests)."""
    return bool(_DISPATCH.subs)


def _pre_hook(fn: Callable[..., Any], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, kwargs: Any) -> None:  # returns None: never alters inputs
        _state.hook_depth = getattr(_state, "hook_depth", 0) + 1
        try:
            fn(name, module, args, kwargs)
        finally:
            _state.hook_depth -= 1
    return hook


def _post_hook(fn: Callable[..., Any], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:  # never alters outputs
        _state.hook_depth = getattr(_state, "hook_depth", 0) + 1
        try:
            fn(name, module, args, kwargs, output)
        finally:
            _state.hook_depth -= 1
    return hook
