"""Module calls inside a traced call: process-wide forward hooks that exist only while one runs.

torch's global module hooks (``register_module_forward_pre_hook`` / ``..._forward_hook``) see
every module without touching any model.  They slow down every module call of the process,
so they are installed when the first traced call that wants them starts (a count over
threads, under a lock) and removed when the last one ends; a hook that fires outside a traced
call (another thread, code that is not traced) returns at once.  Installing them costs a few
microseconds, so a function whose call used no module skips them for its next
:data:`SKIP_AFTER_EMPTY` calls (``modules=None``, the default); ``modules=True`` installs them
on every call, ``modules=False`` never.

Names: a module's path in the tracer's model (so that a click in the flame view selects its
node in the dataflow graph), else its path under the module whose method was traced, else
its class name.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable

from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from dsnotebook.calls.record import Call, Site
from dsnotebook.core.hooks import in_recompute
from dsnotebook.core.modules import named_modules

__all__ = ["ModuleHooks", "SKIP_AFTER_EMPTY"]

#: calls of a function skipped (no module hooks) after a call of it that saw no module call
SKIP_AFTER_EMPTY = 63


class ModuleHooks:
    """The process-wide module hooks, counted; and the per-module sites (names)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._handles: list[Any] = []
        self._sites: "weakref.WeakKeyDictionary[nn.Module, Site]" = weakref.WeakKeyDictionary()
        self._roots: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
        #: set by the wrapper module: (module, site, args) -> None and (module, site, args, output) -> None
        self.on_enter: Callable[..., Any] | None = None
        self.on_exit: Callable[..., Any] | None = None
        self.current: Callable[[], Call | None] = lambda: None

    # -- names ---------------------------------------------------------------------------
    def name_model(self, model: nn.Module, authoritative: bool = True, prefix: str = "") -> None:
        """Name every module of ``model`` by its path (under ``prefix``); a tracer's model is
        ``authoritative`` (its paths are those the dataflow graph shows) and renames modules named before."""
        for path, mod in named_modules(model):
            name = ".".join(p for p in (prefix, path) if p) or type(mod).__name__
            site = self._sites.get(mod)
            if site is None:
                self._sites[mod] = Site(name, "module", 0)
            elif authoritative:
                site.name = name
        self._roots.add(model)

    def note_owner(self, obj: Any) -> None:
        """A traced method's ``self``: name its submodules relative to it, unless known already."""
        if isinstance(obj, nn.Module) and obj not in self._roots and obj not in self._sites:
            self.name_model(obj, authoritative=False)

    def site(self, module: nn.Module) -> Site:
        """A module met for the first time is named with its submodules: ``Sequential``, ``Sequential.0``..."""
        site = self._sites.get(module)
        if site is None:
            self.name_model(module, authoritative=False, prefix=type(module).__name__)
            site = self._sites[module]
        return site

    # -- the hooks -----------------------------------------------------------------------
    @property
    def installed(self) -> int:
        """How many traced calls hold the hooks now (0: none installed)."""
        return self._count

    def acquire(self) -> None:
        with self._lock:
            self._count += 1
            if self._count == 1:
                self._handles = [register_module_forward_pre_hook(self._pre),
                                 register_module_forward_hook(self._post, always_call=True)]

    def release(self) -> None:
        with self._lock:
            if self._count == 0:
                return
            self._count -= 1
            if self._count == 0:
                handles, self._handles = self._handles, []
                for h in handles:
                    h.remove()

    def _pre(self, module: nn.Module, args: Any) -> None:
        cur = self.current()
        if cur is None or cur.hooks is None or in_recompute():
            return None
        cur.hooks.mods += 1
        if self.on_enter is not None:
            self.on_enter(module, self.site(module), cur, args)
        return None

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        cur = self.current()
        if cur is None or cur.site.kind != "module" or cur.site is not self._sites.get(module):
            return None
        if self.on_exit is not None:
            self.on_exit(cur, output)
        return None
