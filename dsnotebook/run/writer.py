"""RunWriter: streams a Run into a run directory while it is recorded, off the training thread.

Who listens: the writer is a Run listener.  On the training thread it only takes references
(a step's record once the next step has begun, so every written step is complete; new
events, record rows, modules) into a queue under a lock that is never held for I/O.  A
background thread turns the queue into one segment (:mod:`dsnotebook.run.rundir_format`)
every ``interval`` seconds (at most 2), refreshes the lock's heartbeat, and ``close()``
(tracer detach, interpreter exit) writes the last step and a final segment marked closed.
A failing disk never reaches the training loop: the error is kept in :attr:`error` and
writing stops.  :func:`save_snapshot` is ``Run.save``: the retained state in one segment.
"""
from __future__ import annotations

import atexit
import datetime
import json
import os
import pathlib
import platform
import shutil
import threading
import warnings
from typing import Any

from dsnotebook.run.lock import WriterLock
from dsnotebook.run.records import RECORD_COLUMNS, REPLACED
from dsnotebook.run.rundir_format import (FORMAT, LOCK, MANIFEST, MIN_READER, VERSION, commit_segment, dumps,
                                          encode_block, list_segments, read_manifest, write_json_atomic)
from dsnotebook.run.steps import records_to_arrays

MAX_INTERVAL = 2.0


def _manifest(run: Any, kind: str) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "min_reader": MIN_READER, "kind": kind, "run_id": run.run_id,
            "created": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
            "pid": os.getpid(), "model": run.meta.get("model"), "command": run.meta.get("command")}


def _full_head(run: Any) -> dict[str, Any]:
    """Everything but the step arrays, for a segment that starts the run over (``reset``)."""
    return {"tensors": run.tensors, "meta": run.meta, "events": run.events, "graph": run.graph,
            "act_modules": run.act_modules, "act_modules_from": 0,
            "records": {k: v for k, v in run.records.tables.items() if v}}


def _other_entries(d: pathlib.Path) -> list[str]:
    return [n for n in os.listdir(d) if n != LOCK and not n.startswith(".")]


def settle_existing(d: pathlib.Path, kind: str, run_id: str) -> str:
    """What is in ``d`` already: "new" (empty), "resume" (this run's log), or a clear error."""
    others = _other_entries(d)
    if not others:
        return "new"
    if MANIFEST not in others:
        if kind == "snapshot" and set(others) <= {"run.json", "stats.npz"}:
            return "legacy"  # a save of format version 2: replaced by this one
        raise FileExistsError(f"{d} is not empty and is not a run directory ({', '.join(sorted(others)[:5])}): "
                              "choose a new or empty directory")
    man = read_manifest(d)
    if kind == "snapshot" and man.get("kind") == "snapshot":
        return "replace"
    if kind == "log" and man.get("run_id") == run_id:
        return "resume"
    what = "a run log written while training" if man.get("kind") == "log" else "a saved run"
    raise FileExistsError(f"{d} already holds {what} (run {man.get('run_id')}, created {man.get('created')}); "
                          "nothing is overwritten: choose a new directory")


class RunWriter:
    """Write ``run`` to ``directory`` as it grows; ``start()`` ... ``close()`` (restartable)."""

    def __init__(self, run: Any, directory: str | os.PathLike[str], interval: float = 1.0) -> None:
        if not 0 < float(interval) <= MAX_INTERVAL:
            raise ValueError(f"interval must be in (0, {MAX_INTERVAL}] seconds, got {interval!r}")
        self.run, self.dir, self.interval = run, pathlib.Path(directory), float(interval)
        self.error: BaseException | None = None
        self.segments = 0  # written by this writer
        self._lock_file = WriterLock(self.dir)
        self._queue: list[tuple[Any, ...]] = []
        self._qlock = threading.Lock()  # held only to swap the queue: the training thread never waits on I/O
        self._io = threading.Lock()  # one segment write at a time (thread, flush(), close())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Any = None
        self._started = False
        self._seq = 0
        self._open: int | None = None  # newest step seen: complete once a later one begins
        self._written: int | None = None  # newest step already in the directory
        self._events = self._acts = 0
        self._cursors: dict[str, int] = {}
        self._meta_text = self._tensors_n = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "RunWriter":
        """Take the directory (clear errors: another live writer, another run there), write the
        manifest and the run so far, then stream.  Call it from the thread that records the run."""
        if self.active:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_file.acquire("write")
        try:
            how = settle_existing(self.dir, "log", self.run.run_id)
            if how == "resume" and not self._started:
                raise FileExistsError(f"{self.dir} holds this run's log from another writer: choose a new directory")
            segs = list_segments(self.dir)
            self._seq = segs[-1][0] + 1 if segs else 0
            if how == "new":
                write_json_atomic(self.dir / MANIFEST, _manifest(self.run, "log"))
        except BaseException:
            self._lock_file.release()
            raise
        self.error = None
        if not self._started:
            self._started = True
            self._write_reset()
        self._stop.clear()
        self._unsubscribe = self.run.subscribe(self._on_run)
        self._thread = threading.Thread(target=self._loop, name=f"dsnotebook-writer:{self.dir.name}", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        return self

    def close(self) -> None:
        """Write what is left (the last step is complete now) as a final segment; free the directory."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        atexit.unregister(self.close)
        self._stop.set()
        thread.join(timeout=30)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._open is not None:
            self._capture_step(self._open)
            self._open = None
        try:
            if self.error is None:
                self._write_pending(closed=True)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._lock_file.release()

    def flush(self) -> None:
        """Write the complete steps and rows queued so far now (otherwise the thread does, every interval)."""
        if self.active and self.error is None:
            try:
                self._write_pending()
            except Exception as exc:
                self._fail(exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._write_pending()
            except Exception as exc:
                self._fail(exc)
                return

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            warnings.warn(f"dsnotebook: writing {self.dir} stopped: {type(exc).__name__}: {exc}", RuntimeWarning,
                          stacklevel=2)

    # -- the training thread: take references only ------------------------------------------
    def _capture_step(self, step: int) -> None:
        got = self.run.step_record(step)
        if got is not None and (self._written is None or step > self._written):
            with self._qlock:
                self._queue.append(("step", step, got[0], got[1]))
            self._written = step

    def _put(self, item: tuple[Any, ...]) -> None:
        with self._qlock:
            self._queue.append(item)

    def _on_run(self, kind: str, steps: list[int]) -> None:
        try:
            run = self.run
            if kind == "append":
                for s in steps:
                    if self._open is None or s > self._open:
                        if self._open is not None:
                            self._capture_step(self._open)
                        self._open = s
                if len(run.act_modules) > self._acts:
                    n = len(run.act_modules)
                    self._put(("act_modules", self._acts, run.act_modules[self._acts:n]))
                    self._acts = n
            elif kind == "event":
                n = len(run.events)
                self._put(("events", run.events[self._events:n]))
                self._events = n
            elif kind == "graph":
                self._put(("graph", run.graph))
            elif kind in RECORD_COLUMNS:
                rows, self._cursors[kind] = run.records.rows_since(kind, self._cursors.get(kind, 0))
                if kind in REPLACED:  # replaced in place later: copy them now
                    rows = json.loads(dumps(rows))
                if rows or kind in REPLACED:
                    self._put(("records", kind, rows))
        except Exception as exc:  # never into the training loop
            self._fail(exc)

    # -- the writer thread: build and commit segments ----------------------------------------
    def _write_reset(self) -> None:
        """The first segment: the run as it is now (usually just tensors and metadata)."""
        run = self.run
        state, arrays = run.state_arrays()
        head = {"reset": state, **_full_head(run), "steps": arrays["steps"].tolist(),
                "ordinals": arrays["ordinals"].tolist(), "closed": False}
        self._events, self._acts = len(run.events), len(run.act_modules)
        self._cursors = {k: run.records.appended.get(k, 0) for k in RECORD_COLUMNS}
        self._written = run.steps[-1] if run.steps else None
        self._meta_text, self._tensors_n = dumps(run.meta), len(run.tensors)
        with self._io:
            self._commit(head, arrays)

    def _commit(self, head: dict[str, Any], arrays: dict[str, Any]) -> None:
        head["written"] = datetime.datetime.now().isoformat(timespec="milliseconds")
        if not self._lock_file.owned():
            raise RuntimeError(f"{self.dir / LOCK} is no longer this writer's (taken over as stale?): stopped "
                               "writing so that nothing is overwritten")
        commit_segment(self.dir, self._seq, head, encode_block(arrays))
        self._seq += 1
        self.segments += 1
        self._lock_file.heartbeat()

    def _write_pending(self, closed: bool = False) -> None:
        with self._io:
            with self._qlock:
                items, self._queue = self._queue, []
            head: dict[str, Any] = {}
            try:
                meta_text = dumps(self.run.meta)
            except RuntimeError:  # changed size while read: next time
                meta_text = self._meta_text
            if meta_text != self._meta_text:
                head["meta"], self._meta_text = json.loads(meta_text), meta_text
            if len(self.run.tensors) != self._tensors_n:
                head["tensors"], self._tensors_n = self.run.tensors, len(self.run.tensors)
            if not items and not head and not closed:
                self._lock_file.heartbeat()
                return
            steps, ordinals, recs = [], [], []
            events: list[Any] = []
            records: list[list[Any]] = []  # [table, rows] per add_records call: the reader trims as this Run did
            mods: list[Any] = []
            for item in items:
                if item[0] == "step":
                    steps.append(item[1])
                    ordinals.append(item[2])
                    recs.append(item[3])
                elif item[0] == "events":
                    events.extend(item[1])
                elif item[0] == "records":
                    if item[1] in REPLACED:  # only the newest state of a replaced table
                        records = [r for r in records if r[0] != item[1]]
                    records.append([item[1], item[2]])
                elif item[0] == "graph":
                    head["graph"] = item[1]
                elif item[0] == "act_modules":
                    if not mods:
                        head["act_modules_from"] = item[1]
                    mods.extend(item[2])
            head.update({"steps": steps, "ordinals": ordinals, "closed": closed})
            if events:
                head["events"] = events
            if records:
                head["records"] = records
            if mods:
                head["act_modules"] = mods
            self._commit(head, records_to_arrays(steps, ordinals, recs))


def save_snapshot(run: Any, directory: str | os.PathLike[str]) -> pathlib.Path:
    """``Run.save``: the retained state in one closed segment.  Saving again over a saved run
    replaces it (older segments are removed once the new one is committed); a run log written
    while training, a live writer, or a folder of other files is a clear error."""
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    lock = WriterLock(d)
    lock.acquire("save to")
    try:
        how = settle_existing(d, "snapshot", run.run_id)
        old = list_segments(d)
        seq = old[-1][0] + 1 if old else 0
        if how in ("new", "legacy"):
            write_json_atomic(d / MANIFEST, _manifest(run, "snapshot"))
        state, arrays = run.state_arrays()
        head = {"reset": state, **_full_head(run), "steps": arrays["steps"].tolist(),
                "ordinals": arrays["ordinals"].tolist(), "closed": True,
                "written": datetime.datetime.now().isoformat(timespec="milliseconds")}
        commit_segment(d, seq, head, encode_block(arrays))
        for _, p in old:  # superseded by the reset segment just committed
            shutil.rmtree(p, ignore_errors=True)
        if how == "legacy":
            for name in ("run.json", "stats.npz"):
                (d / name).unlink(missing_ok=True)
    finally:
        lock.release()
    return d
