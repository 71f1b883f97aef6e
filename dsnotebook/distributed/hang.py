"""When a job hangs: which rank stopped where, said in one message.

Each rank keeps its last phase (step, phase, since when) in two attributes the training thread
overwrites (no lock, no I/O in the hot path).  A daemon thread copies them to the job's c10d
store about once a second (``dsnotebook/<generation>/<rank>``), so the state of every rank
survives the rank: a rank that raised, or one that is stuck inside a collective, is still
described there.  A report is written when

* a collective fails or times out: ours (the statistics gather), or the user's, seen as the
  exception leaving the traced block (the tracer's detach runs while it propagates);
* this rank's phase has not changed for ``hang_after`` seconds (NCCL's watchdog may kill
  the process at its own timeout without a Python exception: this report comes first).

The report names every rank with its last step and phase and how long ago it was heard from,
the ranks that are behind, and points at torch's flight recorder, which records the
collectives each NCCL rank issued (the exact call that hung).
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable

__all__ = ["Heartbeat", "describe_hang", "is_collective_failure", "FLIGHT_RECORDER_HINT"]

FLIGHT_RECORDER_HINT = (
    "To see which collective each rank was in, rerun with torch's flight recorder: "
    "TORCH_FR_BUFFER_SIZE=2000 TORCH_NCCL_DUMP_ON_TIMEOUT=1 TORCH_FR_DUMP_TEMP_FILE=/tmp/fr_trace_rank_ "
    "(NCCL dumps one file per rank when a collective times out), then analyse them with "
    "`torchfrtrace /tmp --prefix fr_trace_rank_` (python -m torch.distributed.flight_recorder.fr_trace)")
_MARKERS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "nccl", "gloo",
            "watchdog", "collective", "peer", "aborted")


def is_collective_failure(exc: BaseException | None) -> bool:
    """A torch.distributed error, or a RuntimeError that reads like a failed collective."""
    if exc is None:
        return False
    try:
        import torch.distributed as dist

        if isinstance(exc, getattr(dist, "DistError", ())):
            return True
    except Exception:  # pragma: no cover - builds without distributed support
        pass
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, (RuntimeError, TimeoutError, ConnectionError)) and any(m in text for m in _MARKERS)


#: where a step's phases come in a step, to tell which rank is behind within the same step
PHASE_ORDER = ("dsnotebook statistics gather", "data loading", "forward", "backward", "optimizer")


def _progress(state: dict[str, Any]) -> tuple[int, int]:
    phase = state.get("phase")
    return (state.get("step") if state.get("step") is not None else -1,
            PHASE_ORDER.index(phase) if phase in PHASE_ORDER else -1)


def describe_hang(reason: str, me: int, size: int, states: dict[int, dict[str, Any] | None],
                  now: float | None = None) -> str:
    """The report: ``states[r]`` is rank r's last heartbeat (step, phase, since, heard, status) or None."""
    now = time.time() if now is None else now
    known = {r: s for r, s in states.items() if s}
    front = max((_progress(s) for s in known.values()), default=None)
    lines = [f"dsnotebook: {reason} on rank {me} of {size}. Last phase each rank reached:"]
    behind = []
    for r in range(size):
        s = states.get(r)
        if not s:
            lines.append(f"  rank {r}: never heard from (it did not start tracing, or the store is unreachable)")
            behind.append(r)
            continue
        where = f"step {s.get('step')} {s.get('phase')}"
        since = s.get("since")
        if since is not None:
            where += f" (for {max(0.0, now - since):.1f} s)"
        heard = s.get("heard")
        if heard is not None and now - heard > 5:
            where += f", last heard {now - heard:.0f} s ago"
        status = s.get("status") or "running"
        if status != "running":
            where += f" - {status}"
        if status.startswith("raised") or (front is not None and _progress(s) < front):
            behind.append(r)
        lines.append(f"  rank {r}: {where}")
    if behind:
        lines.append(f"Ranks behind the others or stopped: {', '.join(map(str, behind))}: the others wait for "
                     "them in a collective.")
    lines.append(FLIGHT_RECORDER_HINT + ".")
    return "\n".join(lines)


class Heartbeat:
    """This rank's last phase, copied to the c10d store by a daemon thread; reads everyone's back."""

    def __init__(self, store: Any, prefix: str, rank: int, size: int, interval: float = 1.0,
                 hang_after: float | None = None, on_hang: Callable[[str], None] | None = None) -> None:
        self.store, self.prefix, self.rank, self.size = store, prefix, rank, size
        self.interval, self.hang_after, self.on_hang = interval, hang_after, on_hang
        self.step: int | None = None
        self.phase = "starting"
        self.since = time.time()
        self.status = "running"
        self._written: tuple[Any, ...] | None = None
        self._stop = threading.Event()
        self._reported = False
        self._thread: threading.Thread | None = None

    def mark(self, step: int, phase: str) -> None:
        """The training thread entered ``phase`` of ``step`` (two attribute writes)."""
        if phase != self.phase or step != self.step:
            self.step, self.phase, self.since = step, phase, time.time()

    def start(self) -> "Heartbeat":
        if self.store is not None and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"dsnotebook-heartbeat-{self.rank}", daemon=True)
            self._thread.start()
        return self

    def _key(self, rank: int) -> str:
        return f"{self.prefix}/{rank}"

    def write(self, status: str | None = None) -> None:
        """Copy the state to the store now (also from the training thread, on errors)."""
        if status is not None:
            self.status = status
        state = (self.step, self.phase, self.since, self.status)
        if self.store is None:
            return
        try:
            self.store.set(self._key(self.rank), json.dumps(
                {"step": self.step, "phase": self.phase, "since": self.since, "heard": time.time(),
                 "status": self.status, "pid": os.getpid()}))
            self._written = state
        except Exception:  # the store's host is gone: nothing left to tell, and torch logs every failed try
            self.store = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()
            if (self.hang_after is not None and not self._reported and self.status == "running"
                    and time.time() - self.since > self.hang_after):
                self._reported = True
                if self.on_hang is not None:
                    self.on_hang(self.report(f"no progress for {self.hang_after:.0f} s (step {self.step}, "
                                             f"{self.phase})"))

    def states(self) -> dict[int, dict[str, Any] | None]:
        """Every rank's last written state (None where the store has none or cannot be read)."""
        out: dict[int, dict[str, Any] | None] = {}
        for r in range(self.size):
            out[r] = None
            if r == self.rank:
                out[r] = {"step": self.step, "phase": self.phase, "since": self.since, "heard": time.time(),
                          "status": self.status}
                continue
            if self.store is None:
                continue
            try:
                if self.store.check([self._key(r)]):
                    out[r] = json.loads(self.store.get(self._key(r)))
            except Exception:
                pass
        return out

    def report(self, reason: str) -> str:
        return describe_hang(reason, self.rank, self.size, self.states())

    def stop(self, status: str = "detached") -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval + 1)
            self._thread = None
        self.write(status)
