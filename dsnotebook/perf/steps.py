"""One sampled step's clock marks, and their split into the phases of a step.

The timing probe (:mod:`dsnotebook.perf.timing`) takes marks inside hooks; turning them
into seconds per phase (:data:`dsnotebook.core.clock.PHASES`) is plain arithmetic, kept
here so the rules of the split are in one place:

* the step runs from ``begin`` (the previous step's last optimizer and dsnotebook's work
  after it are done) to ``end`` (this step's last optimizer and dsnotebook's work after it
  are done);
* ``data`` is ``begin`` to the first forward, less dsnotebook's own work in between;
* ``opt`` is the sum of every optimizer call of the step (several optimizers: each one),
  from the end of dsnotebook's pre-step work to the start of its post-step work;
* ``tracer`` is dsnotebook's own work: at the first optimizer (statistics, collection),
  before each further optimizer (from the call's entry, when known), after each optimizer
  (update statistics, hooks for the next sampled step), and ``own`` spans inside the
  user's phases (probes' hooks on the root module around each forward, the one-time
  settings probe);
* ``other`` is what remains of the wall time (loss, clipping, logging, code between
  optimizers).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from dsnotebook.core.clock import PHASES, STEP


@dataclass
class OptimizerCall:
    """Marks of one optimizer ``step()`` of a sampled step."""

    entry: Any  # step() was called (before dsnotebook's pre-step work); None when unknown
    start: Any  # dsnotebook's pre-step work is done: the update starts
    end: Any = None  # the update is over (dsnotebook's post-step work starts)
    after: Any = None  # dsnotebook's post-step work is done


@dataclass
class StepMarks:
    """Everything the timing probe records for one sampled step."""

    step: int
    begin: Any
    fwd: dict[str, list[tuple[Any, Any]]] = field(default_factory=lambda: defaultdict(list))
    bwd: dict[str, list[tuple[Any, Any]]] = field(default_factory=lambda: defaultdict(list))
    root_fwd: list[tuple[Any, Any]] = field(default_factory=list)
    root_bwd: list[list[Any]] = field(default_factory=list)  # [start, end] per backward pass
    own: list[tuple[Any, Any, bool]] = field(default_factory=list)  # dsnotebook's work: (start, end, in data phase)
    bwd_done: Any = None  # forward/backward over: dsnotebook's work at the first optimizer begins
    opts: list[OptimizerCall] = field(default_factory=list)
    end: Any = None  # begin of the next step
    comm0: tuple[float, int, int] = (0.0, 0, 0)
    comm1: tuple[float, int, int] | None = None
    grad_rows: list[dict[str, Any]] = field(default_factory=list)
    act: dict[str, int] = field(default_factory=dict)  # saved-for-backward bytes per module
    saw_forward: bool = False

    @property
    def recorded(self) -> bool:
        """True once a forward or backward pass was seen."""
        return bool(self.root_fwd or self.root_bwd or self.fwd)

    def absorb(self, later: "StepMarks") -> None:
        """Take the passes ``later`` recorded: they ran before a further optimizer of this step
        (a GAN's second forward/backward between its two optimizers), so they belong here."""
        self.root_fwd += later.root_fwd
        self.root_bwd += later.root_bwd
        self.own += [(a, b, False) for a, b, _ in later.own]
        for mine, theirs in ((self.fwd, later.fwd), (self.bwd, later.bwd)):
            for name, spans in theirs.items():
                mine[name] += spans


def phase_rows(st: StepMarks, sec: Callable[[Any, Any], float], module: str = "(step)") -> list[dict[str, Any]]:
    """Timings rows of ``st``: per-module fwd/bwd, then one row per phase and the step's wall time."""
    rows = []
    for phase, table in (("fwd", st.fwd), ("bwd", st.bwd)):
        for name, spans in table.items():
            rows.append({"step": st.step, "module": name, "phase": phase,
                         "seconds": float(sum(sec(a, b) for a, b in spans)), "calls": len(spans)})
    calls = [c for c in st.opts if c.start is not None and c.end is not None]
    end = st.end
    if end is None:
        last = calls[-1] if calls else None
        end = st.bwd_done if last is None else (last.after if last.after is not None else last.end)
    own = sum(sec(a, b) for a, b, _ in st.own)
    first = st.root_fwd[0][0] if st.root_fwd else st.bwd_done
    v = {"data": max(0.0, sec(st.begin, first) - sum(sec(a, b) for a, b, in_data in st.own if in_data)),
         "fwd": sum(sec(a, b) for a, b in st.root_fwd if b is not None),
         "bwd": sum(sec(a, b) for a, b in st.root_bwd if b is not None),
         "opt": sum(sec(c.start, c.end) for c in calls)}
    tracer = own
    if calls:
        tracer += sec(st.bwd_done, calls[0].start)
        for i, c in enumerate(calls):
            if i and c.entry is not None:
                tracer += sec(c.entry, c.start)
            tracer += sec(c.end, c.after if c.after is not None else end)
    else:  # tracer.step() by hand: everything after forward/backward is dsnotebook's
        tracer += sec(st.bwd_done, end)
    v["tracer"] = tracer
    total = sec(st.begin, end)
    c1 = st.comm1 or st.comm0
    v["comm"], buckets = c1[0] - st.comm0[0], c1[1] - st.comm0[1]
    v["other"] = max(0.0, total - sum(x for k, x in v.items() if k != "comm"))
    v[STEP] = total
    calls_of = {"fwd": len(st.root_fwd), "bwd": len(st.root_bwd), "opt": max(1, len(calls)), "comm": buckets}
    for phase in (*PHASES, STEP):
        rows.append({"step": st.step, "module": module, "phase": phase, "seconds": float(max(v[phase], 0.0)),
                     "calls": int(calls_of.get(phase, 1))})
    return rows
