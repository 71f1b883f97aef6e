"""One traced call (a function, a span, a module or a torch op) and its row in the ``calls`` table.

A :class:`Call` is created when the call starts and handed to the sink (the active tracer's
:class:`~dsnotebook.calls.probe.CallsProbe`, else the default recorder) when it ends; the
sink turns it into a row later, in batches, because the device time and the debug statistics
are only known once the device has caught up.  Slots and few assignments keep the hot path
(at most 2 us per call at "info" on a CPU) short.
"""
from __future__ import annotations

from typing import Any

#: the levels of ``@dsnotebook.trace``, cheapest first
LEVELS: tuple[str, ...] = ("info", "debug", "trace")
INFO, DEBUG, TRACE = 0, 1, 2
#: what a row of the ``calls`` table stands for
KINDS: tuple[str, ...] = ("function", "span", "module", "op")


class Site:
    """What is traced at one place in the code (a decorated function, a span name)."""

    __slots__ = ("name", "kind", "level", "modules", "sample_every", "calls", "skip_hooks")

    def __init__(self, name: str, kind: str, level: int, modules: bool | None = None, sample_every: int = 1) -> None:
        self.name, self.kind, self.level = name, kind, level
        #: True: module calls inside are recorded on every call; None: adaptively (hooks are skipped
        #: on the following calls of a function whose call saw no module); False: never
        self.modules = modules
        self.sample_every = sample_every
        self.calls = 0  # calls started (the "trace" level samples every sample_every-th one)
        self.skip_hooks = 0  # calls left before module hooks are tried again (adaptive mode)


class Call:
    """A call while it runs: its place in the tree, its clock readings and what it carried.

    ``cost`` is the instrumentation time spent outside the call's own [t0, t1] window (its
    wrapper, summaries, hook installation) and ``nested`` the same summed over every traced
    call below it: the parent's reported wall time is corrected by both.  ``skew`` is the
    instrumentation time spent in its root call before it started (earlier siblings' and
    ancestors' ``nested`` when it began, plus its own set-up): its start is shifted back by it.
    """

    __slots__ = ("id", "parent", "site", "level", "depth", "step", "thread", "t0", "t1", "cost", "nested", "skew", "error",
                 "ev", "hooks", "mods", "token", "inputs", "outputs", "stats", "ops")

    def __init__(self, cid: int, site: Site, level: int, parent: "Call | None", step: int | None, thread: int) -> None:
        self.id = cid
        self.site = site
        self.level = level
        self.parent = parent
        self.depth = 0 if parent is None else parent.depth + 1
        self.step = step
        self.thread = thread
        self.cost = 0.0
        self.nested = 0.0
        self.skew = 0.0 if parent is None else parent.skew + parent.nested
        self.error: str | None = None
        self.ev: Any = None  # (start, end) device events, or None
        self.hooks: "Call | None" = None if parent is None else parent.hooks  # who holds the module hooks
        self.mods = 0  # module calls seen while this call held the hooks
        self.inputs: Any = None
        self.outputs: Any = None
        self.stats: Any = None  # (device tensor of backend statistics, numels) at "debug"
        self.ops: Any = None  # the TorchFunctionMode of a sampled "trace" call


def error_text(exc: BaseException) -> str:
    """``Type: message``, short enough for a tooltip."""
    msg = str(exc)
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
