"""RunDirProbe: ``ModelTracer(..., log_dir=...)`` as a probe that runs a :class:`RunWriter`.

The directory is taken when the tracer is made (two writers, or a directory that holds
another run: the error reaches the user before anything is hooked); the writer streams
while the tracer is attached.  At detach the tracer calls every probe's ``flush`` after
their ``detach``: this probe, the last in the list, pushes a barrier through the tracer's
host copier (a CPU tensor is delivered only after every earlier device copy), so the
final segment is written after the last step's statistics have landed in the Run.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import torch

from dsnotebook.core.probe import Probe, ProbeContext
from dsnotebook.run.lock import WriterLock
from dsnotebook.run.writer import RunWriter, settle_existing


class RunDirProbe(Probe):
    """Writes the tracer's Run to ``log_dir`` (see :mod:`dsnotebook.run.writer`)."""

    name = "log_dir"

    def __init__(self, log_dir: str | os.PathLike[str], interval: float = 1.0) -> None:
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise TypeError(f"log_dir must be a path, got {log_dir!r}")
        self.dir = pathlib.Path(log_dir)
        self.interval = interval
        self.writer: RunWriter | None = None
        self._closing = False
        check_writable(self.dir)

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        ctx.run.meta.setdefault("log_dir", str(self.dir))
        if self.writer is None or self.writer.run is not ctx.run:
            self.writer = RunWriter(ctx.run, self.dir, interval=self.interval)
        self._closing = False
        self.writer.start()

    def detach(self) -> None:
        self._closing = True  # closed by flush(), once the last copies have landed

    def flush(self) -> None:
        if self.writer is None or not self.writer.active:
            return
        if self._closing:
            # delivered after every copy submitted before it: the last step is in the Run then
            self.ctx.submit(torch.zeros(0), lambda _host: self._close())
        else:
            self.writer.flush()

    def _close(self) -> None:
        self._closing = False
        writer = self.writer
        if writer is not None:
            writer.close()
            if writer.error is not None:
                raise writer.error  # the tracer records it as a warning event

    @property
    def error(self) -> BaseException | None:
        return None if self.writer is None else self.writer.error


def check_writable(d: pathlib.Path) -> None:
    """Clear errors now for a directory another writer holds or that holds another run."""
    if not d.exists():
        return
    lock = WriterLock(d)
    lock.acquire("write")
    try:
        settle_existing(d, "log", run_id="")
    finally:
        lock.release()
