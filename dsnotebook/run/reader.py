"""Reading a run directory: all of it (``Run.open``) or, while it is written, only its new segments.

:class:`RunDirReader` keeps the segments it has applied; each :meth:`~RunDirReader.poll` lists
the directory once and reads only the segments that appeared since, applying them to its
Run through the Run's public methods, so the Run's listeners (live views) hear about the
new steps exactly as if they had been recorded in this process.  A segment that starts the
run over (``reset``: the first segment, or a new ``Run.save`` over an old one) makes a new
Run.  The directory's state is ``live`` (a live writer holds it), ``finished`` (its last
segment is marked closed), ``crashed`` (neither: the writer died, e.g. ``kill -9``; every
committed segment is there) or ``empty``.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any

from dsnotebook.run.lock import LockInfo, read_lock
from dsnotebook.run.rundir_format import HEAD, MANIFEST, list_segments, read_manifest, read_segment
from dsnotebook.run.store import Run


class RunDirReader:
    """Incremental reader of one run directory (``keep``: steps retained in memory; default the writer's)."""

    def __init__(self, directory: str | os.PathLike[str], keep: int | None = None) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 4):
            raise ValueError(f"keep must be None or an integer >= 4, got {keep!r}")
        self.dir = pathlib.Path(directory)
        self.keep = keep
        self.manifest: dict[str, Any] | None = None
        self.run: Any = None
        self.last_seq = -1
        self.closed = False
        self.resets = 0  # how many times a segment started the run over (a follower rebuilds its views)
        self.last_write = ""  # when the newest segment read was written (the writer's clock)

    def poll(self) -> int:
        """Apply the segments committed since the last poll; returns how many."""
        if self.manifest is None:
            if not (self.dir / MANIFEST).is_file():
                return 0
            self.manifest = read_manifest(self.dir)
        new = [(seq, p) for seq, p in list_segments(self.dir) if seq > self.last_seq]
        for seq, path in new:
            head, arrays = read_segment(path)
            self._apply(head, arrays)
            self.last_seq = seq
        return len(new)

    def _apply(self, head: dict[str, Any], arrays: dict[str, Any]) -> None:
        if "reset" in head:
            state = dict(head["reset"])
            if self.keep is not None:
                state["keep"] = max(self.keep, len(arrays["steps"]), 4)
            run = Run(head.get("tensors", []), head.get("meta", {}), keep=int(state["keep"]))
            run.restore(state, arrays, events=head.get("events", []), graph=head.get("graph"),
                        act_modules=head.get("act_modules", []), records=head.get("records", {}))
            if self.manifest and self.manifest.get("run_id"):
                run.run_id = self.manifest["run_id"]
            self.run = run
            self.resets += 1
        else:
            run = self.run
            if run is None:
                raise ValueError(f"{self.dir}: its first segment does not start the run (no 'reset'): damaged")
            if "tensors" in head:
                run.tensors[:] = head["tensors"]
            if "meta" in head:
                run.meta.clear()
                run.meta.update(head["meta"])
            if "act_modules" in head:
                run.extend_act_modules(head["act_modules"], start=int(head.get("act_modules_from", 0)))
            run.append_steps(arrays)
            if "graph" in head:
                run.set_graph(head["graph"])
            for e in head.get("events", []):
                run.add_event(e.get("step"), e.get("kind"), e.get("module"), e.get("detail"))
            for table, rows in head.get("records", []):  # one chunk per add_records call of the writer's Run
                run.add_records(table, rows)
        self.closed = bool(head.get("closed"))
        self.last_write = str(head.get("written", ""))

    def lock(self) -> LockInfo | None:
        return read_lock(self.dir)

    def state(self) -> str:
        """live, finished, crashed or empty (see the module docstring)."""
        return run_dir_state(self.dir, closed=self.closed if self.last_seq >= 0 else None)


def run_dir_state(d: pathlib.Path, closed: bool | None = None) -> str:
    """live / finished / crashed / empty; ``closed``: whether the last segment is closed, if known."""
    info = read_lock(d)
    if info is not None and info.alive:
        return "live"
    segs = list_segments(d)
    if not segs:
        return "empty"
    if closed is None:
        try:
            closed = bool(json.loads((segs[-1][1] / HEAD).read_text()).get("closed"))
        except (OSError, ValueError):
            closed = False
    return "finished" if closed else "crashed"


def open_run_dir(directory: str | os.PathLike[str], keep: int | None = None) -> Any:
    """The Run in a run directory, with every committed segment (also while written, or after a crash)."""
    reader = RunDirReader(directory, keep=keep)
    read_manifest(reader.dir)  # clear errors first
    deadline = time.monotonic() + 5.0
    while True:
        reader.poll()
        if reader.run is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # a writer that has just written the manifest commits its first segment next
    if reader.run is None:
        raise FileNotFoundError(f"{reader.dir} has a manifest but no segment yet: nothing was written")
    reader.run.source = {"path": str(reader.dir), "state": reader.state(), "segments": reader.last_seq + 1}
    return reader.run
