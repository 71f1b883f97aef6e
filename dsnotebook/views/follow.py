"""follow(path): the live dashboard of a run directory that another process is writing.

A :class:`~dsnotebook.run.reader.RunDirReader` applies the directory's new segments to its
Run; the Run's listeners feed the same :class:`~dsnotebook.views.live_dashboard.LiveDashboard`
a traced cell shows.  A background thread polls at most once a second (a readdir and the
new segments only, so a directory on a shared file system written from another machine
works the same) while the kernel stays free for other cells; it stops by itself once the
writer has finished (last segment closed) or is gone (crashed).  ``wait()`` polls in the
calling thread instead, for scripts and for cells that want to block until some step.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from dsnotebook.run.reader import RunDirReader
from dsnotebook.run.runs import is_run_dir

MIN_INTERVAL = 1.0  # seconds between polls, at least


class Follower:
    """A run directory shown live: ``widget`` (display it), ``run`` (the Run read so far)."""

    def __init__(self, path: str | os.PathLike[str], interval: float = MIN_INTERVAL, keep: int | None = None) -> None:
        import ipywidgets

        if not float(interval) >= MIN_INTERVAL:
            raise ValueError(f"interval must be >= {MIN_INTERVAL} s (a follower polls at most once a second), "
                             f"got {interval!r}")
        self.reader = RunDirReader(path, keep=keep)
        self.path = self.reader.dir
        if self.path.is_dir() and not is_run_dir(self.path):
            inner = sorted(p.name for p in self.path.iterdir() if p.is_dir() and is_run_dir(p))
            if inner:
                raise ValueError(f"{self.path} is a folder of runs ({', '.join(inner[:5])}): follow one of them, "
                                 "or Run.open the folder to list and compare them")
        self.interval = float(interval)
        self.view: Any = None
        self.error: BaseException | None = None
        self.polls = 0
        self._resets = 0
        self._closed = False
        self._io = threading.Lock()  # one poll at a time (thread and wait())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = ipywidgets.Label(value=f"waiting for {self.path}")  # text, never HTML
        self.status.add_class("dsn-follow-status")
        self.widget = ipywidgets.VBox([self.status])
        self.widget.add_class("dsn-follow")

    @property
    def run(self) -> Any:
        return self.reader.run

    @property
    def state(self) -> str:
        """live, finished, crashed, empty, or waiting (no manifest yet)."""
        return self.reader.state() if self.reader.manifest is not None else "waiting"

    # -- polling -------------------------------------------------------------------------------
    def poll(self) -> int:
        """Read the segments written since the last poll and show them; returns how many."""
        with self._io:
            self.polls += 1
            n = self.reader.poll()
            run = self.reader.run
            if run is not None and self.reader.resets != self._resets:
                self._resets = self.reader.resets
                self._show(run)
            state = self.state
            if self.view is not None and n:
                self.view.heat.push()  # every step in the directory is complete
                self.view.push()
                self.view.push_perf()
            self._set_status(state)
            if self.view is not None and state in ("finished", "crashed") and not self._closed:
                self._closed = True
                self.view.close(self.status.value)
            return n

    def _show(self, run: Any) -> None:
        from dsnotebook.views.live_dashboard import LiveDashboard

        if self.view is not None:
            self.view.close("replaced by a new save")
        self.view = LiveDashboard(run)
        self._closed = False
        self.widget.children = (self.status, self.view.widget)

    def _set_status(self, state: str) -> None:
        run = self.reader.run
        steps = run.steps if run is not None else []
        text = f"{self.path}: {state}"
        if steps:
            text += f", step {steps[-1]}"
        lock = self.reader.lock() if state == "live" else None
        if lock is not None:
            text += f" (writer {lock.describe()})"
        elif self.reader.last_write:
            text += f", last written {self.reader.last_write}"
        if self.status.value != text:
            self.status.value = text
        if self.view is not None and state == "live":
            self.view.set_status(f"following {self.path}: step {steps[-1] if steps else '-'}")

    # -- in the background -----------------------------------------------------------------------
    def start(self) -> "Follower":
        """Poll in a background thread until the writer finishes (or :meth:`stop`)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"dsnotebook-follow:{self.path.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.poll()
            except Exception as exc:  # shown, not raised into some other cell
                self.error = exc
                self.status.value = f"{self.path}: stopped following ({type(exc).__name__}: {exc})"
                return
            if self.state in ("finished", "crashed") or self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    @property
    def following(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, steps: int | None = None, finished: bool = False, timeout: float = 60.0) -> "Follower":
        """Poll here (once per interval) until ``steps`` steps are shown, or the writer finished /
        crashed (``finished=True``); TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            run, state = self.reader.run, self.state
            if finished and state in ("finished", "crashed"):
                return self
            if steps is not None and run is not None and len(run.steps) >= steps:
                return self
            if steps is None and not finished and run is not None:
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path}: {state}, {len(run.steps) if run is not None else 0} steps after "
                                   f"{timeout} s")
            time.sleep(self.interval)

    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        run = self.reader.run
        steps = f"{len(run.steps)} steps shown" if run is not None else "nothing read yet"
        return f"<Follower {self.path}: {self.state}, {steps}{', polling' if self.following else ''}>"


def follow(path: str | os.PathLike[str], interval: float = MIN_INTERVAL, keep: int | None = None,
           display: bool = True) -> Follower:
    """Show the live dashboard of the run directory ``path`` (written by a script, maybe on another
    machine) and keep it updated in the background until that run finishes."""
    f = Follower(path, interval=interval, keep=keep)
    f.poll()
    if display:
        f.display()
    if f.state not in ("finished", "crashed"):
        f.start()
    return f
