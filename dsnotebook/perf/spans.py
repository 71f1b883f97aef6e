"""Cheap marks for the timing probe's hooks: pooled device events and flat span logs.

A sampled step takes four marks per module call (forward start/end, backward start/end).
Each mark used to be a new device event, a tuple in a per-module list and a pair of
closures; on a model with a few hundred module calls that is thousands of tracked Python
objects alive through the step, and the garbage collector's passes over them (and the
full collections they bring forward on a big process, e.g. one that imported
transformers) cost more than the hooks themselves.  Here:

- :class:`MarkClock` hands out device timing events from a pool: an event goes back to the
  pool once the step that used it has been read, so a sampled step after the first
  allocates none;
- :class:`SpanLog` keeps the spans of one sampled step in flat lists (names, starts,
  ends); they become the per-module lists of :class:`~dsnotebook.perf.steps.StepMarks`
  only when the step is finalised;
- :class:`GradMark` is one gradient hook and one mark per tensor, shared by the module
  whose backward starts there and those whose backward ends there (no closures, no
  handles: the hooks go away with the autograd graph, and do nothing once their step is
  over).
"""
from __future__ import annotations

from collections import deque
from typing import Any

import torch

from dsnotebook.core.clock import Clock
from dsnotebook.core.hooks import flatten_tensors

MAX_UNRESOLVED = 4  # sampled steps whose device events may still be in flight before we synchronise


class MarkClock:
    """:class:`~dsnotebook.core.clock.Clock` with a pool of device events (host marks unchanged)."""

    def __init__(self, device: torch.device | str) -> None:
        self._clock = Clock(device)
        self.device = self._clock.device
        self.mode = self._clock.mode
        runtime = getattr(torch, self.device.type, None)
        self._event_cls = getattr(runtime, "Event", None) if self.mode == "events" else None
        self._free: list[Any] = []
        self._issued: deque[Any] = deque()  # events handed out, in the order they were recorded
        self._stream: Any = None  # CUDA: the stream marks are recorded on (see refresh_stream)
        self.created = 0  # events ever created (tests, benchmarks)

    def refresh_stream(self) -> None:
        """Read the current CUDA stream once (at each root forward) instead of at every mark:
        ``Event.record()`` builds a new ``Stream`` object per call to find it.  Backward
        marks run on autograd threads, whose nodes run on the stream of their forward op."""
        if self._event_cls is not None and self.device.type == "cuda":
            self._stream = torch.cuda.current_stream(self.device)

    def mark(self) -> Any:
        if self._event_cls is None:
            return self._clock.mark()
        if self._free:
            ev = self._free.pop()
        else:
            ev = self._event_cls(enable_timing=True)
            self.created += 1
        if self._stream is not None:
            ev.record(self._stream)
        else:
            ev.record()
        self._issued.append(ev)
        return ev

    def done(self, mark: Any) -> bool:
        """True when ``mark`` has been reached (always on the host clock); never waits."""
        if self._event_cls is None or mark is None:
            return True
        try:
            return bool(mark.query())
        except Exception:  # an event never recorded, or a runtime without query
            return False

    def release_before(self, mark: Any) -> None:
        """Events recorded before ``mark`` belong to steps already read: back to the pool.

        ``mark`` itself stays out (it is also the next step's first mark)."""
        if self._event_cls is None or mark is None or not any(e is mark for e in self._issued):
            return
        while self._issued and self._issued[0] is not mark:
            self._free.append(self._issued.popleft())

    def sync(self) -> None:
        self._clock.sync()

    def seconds(self, a: Any, b: Any) -> float:
        return self._clock.seconds(a, b)


class SpanLog:
    """Forward spans and backward marks of one sampled step, as flat lists."""

    __slots__ = ("fwd_names", "fwd_a", "fwd_b", "bwd_names", "bwd_out", "bwd_in", "grads", "live", "open_names",
                 "open_t", "open_in")

    def __init__(self) -> None:
        self.open_names: list[str] = []  # module calls whose forward is running (innermost last)
        self.open_t: list[Any] = []  # their start marks
        self.open_in: list[torch.Tensor | None] = []  # their first input that requires grad
        self.fwd_names: list[str] = []
        self.fwd_a: list[Any] = []
        self.fwd_b: list[Any] = []
        self.bwd_names: list[str] = []  # per module call: gradient marks of its output and its input
        self.bwd_out: list[GradMark] = []
        self.bwd_in: list[GradMark] = []
        self.grads: dict[int, GradMark] = {}  # id(tensor) -> its mark (the tensor is held until close)
        self.live = True  # False once the step's forward/backward is over: late hooks do nothing

    def close(self) -> None:
        """The step's forward and backward are over: forget open calls and tensors, late hooks do nothing."""
        self.live = False
        self.open_names.clear()
        self.open_t.clear()
        self.open_in.clear()
        for g in self.grads.values():
            g.tensor = None
        self.grads.clear()

    def grad_mark(self, t: torch.Tensor, clock: MarkClock) -> tuple[GradMark, Any]:
        """The mark of ``t``'s gradient, and the handle of a hook to remove later (only for a leaf).

        A graph tensor's gradient is complete when the node that made it is about to run: a
        pre-hook on that node (C++ side; no hook dictionary on the tensor), which goes away
        with the graph.  A leaf (parameter, input) gets a tensor hook, whose handle is returned."""
        g = self.grads.get(id(t))
        if g is not None:
            return g, None
        g = self.grads[id(t)] = GradMark(self, clock, t)
        node = t.grad_fn
        if node is not None:
            node.register_prehook(g)
            return g, None
        return g, t.register_hook(g)

    def into(self, fwd: dict[str, list[tuple[Any, Any]]], bwd: dict[str, list[tuple[Any, Any]]]) -> None:
        """Append the spans to ``StepMarks.fwd``/``.bwd`` (per-module lists, first-seen order)."""
        for name, x, y in zip(self.fwd_names, self.fwd_a, self.fwd_b):
            fwd[name].append((x, y))
        for name, out, inp in zip(self.bwd_names, self.bwd_out, self.bwd_in):
            for k in range(min(out.count, inp.count)):  # one span per backward pass through the call
                bwd[name].append((out.at(k), inp.at(k)))
        for lst in (self.fwd_names, self.fwd_a, self.fwd_b, self.bwd_names, self.bwd_out, self.bwd_in):
            lst.clear()


class GradMark:
    """When the gradient of one tensor was complete: the start of the backward of the module
    that produced it and the end of the backward of the modules that consumed it.  One
    gradient hook and one mark per tensor, shared by every module span that ends or starts
    there (about half the hooks and marks of one hook at each end of every module call)."""

    __slots__ = ("log", "clock", "tensor", "first", "more")

    def __init__(self, log: SpanLog, clock: MarkClock, tensor: torch.Tensor) -> None:
        self.log, self.clock, self.tensor = log, clock, tensor  # held: its id stays unique during the step
        self.first: Any = None
        self.more: list[Any] | None = None  # further backward passes through the same graph

    def __call__(self, *_: Any) -> None:  # autograd thread
        if not self.log.live:
            return
        if self.first is None:
            self.first = self.clock.mark()
        else:
            if self.more is None:
                self.more = []
            self.more.append(self.clock.mark())

    @property
    def count(self) -> int:
        return 0 if self.first is None else 1 + len(self.more or ())

    def at(self, k: int) -> Any:
        return self.first if k == 0 else self.more[k - 1]  # type: ignore[index]


def first_grad_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor that requires grad in a module's inputs or outputs (no list built for
    the usual single tensor)."""
    if type(obj) is tuple and obj:
        obj = obj[0] if len(obj) == 1 or isinstance(obj[0], torch.Tensor) and obj[0].requires_grad else obj
    if isinstance(obj, torch.Tensor):
        return obj if obj.requires_grad else None
    return next((t for _, t in flatten_tensors(obj, limit=16) if t.requires_grad), None)


def last_mark(st: Any) -> Any:
    """The latest mark a sampled step (:class:`~dsnotebook.perf.steps.StepMarks`) holds: its
    events complete in order on one stream, so this one being done means all are."""
    if st.end is not None:
        return st.end
    for c in reversed(st.opts):
        if c.after is not None or c.end is not None:
            return c.after if c.after is not None else c.end
    return st.bwd_done
