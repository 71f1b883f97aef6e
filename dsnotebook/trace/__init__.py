"""The trace layer: ``ModelTracer`` (:mod:`dsnotebook.trace.tracer`) and function tracing.

The package itself is the function-tracing decorator, so that ``dsnotebook.trace`` reads as
users expect (as ``dsnotebook.compress`` is callable too)::

    @dsnotebook.trace                      # or @dsnotebook.trace(level="debug", name="fusion")
    def fuse(a, b): ...
    with dsnotebook.trace.span("branch"): ...
    dsnotebook.trace.calls()               # calls recorded without a tracer, as a DataFrame
    dsnotebook.trace.flame()               # their flame view

The module's submodules (``tracer``, ``compose``, ...) import as before.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from dsnotebook.trace.functions import FUNCTIONS

span = FUNCTIONS.span
calls = FUNCTIONS.calls
clear = FUNCTIONS.clear
overhead = FUNCTIONS.overhead
flame = FUNCTIONS.flame
active = FUNCTIONS.active


class _TraceModule(types.ModuleType):
    def __call__(self, fn: Any = None, **options: Any) -> Any:
        return FUNCTIONS(fn, **options)

    __call__.__doc__ = type(FUNCTIONS).__doc__

    @property
    def enabled(self) -> bool:
        """False: traced functions call straight through (nothing is recorded)."""
        return FUNCTIONS.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        FUNCTIONS.enabled = value


sys.modules[__name__].__class__ = _TraceModule
