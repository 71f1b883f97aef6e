"""Statistics of CPU tensors computed in a helper process while training goes on (opt-in).

Why a process and not a thread: the training thread releases the GIL around every torch
op, and a statistics thread takes it each time one of its numpy calls returns; the
training thread then waits for it after each op (measured with a thread: the tracer's
optimizer hooks took ~0.6 ms of wall time per CNN step for ~0.1 ms of their own work).
A process has its own interpreter: the training thread only copies what the statistics
read into shared memory (one ``torch._foreach_copy_``) and queues a 9-byte record per job,
sent once per step; the answers come back the same way and are picked up, in submission
order, by :class:`dsnotebook.core.transfer.HostCopier` on the training thread, like an
asynchronous CUDA copy.  So the Run, its listeners and live views still run on the
training thread only.

Why opt-in (``DSNOTEBOOK_STATS_HELPER=1``): the helper only uses cycles no one else wants
(``SCHED_IDLE``), and with torch's default of one intra-op thread per core there are few:
on 2 cores with 2 torch threads it moved 0.1-1.4 ms of CPU per step off the training
thread but the steps were not faster (the forward and backward passes slowed by about as
much; ``benchmarks/overhead.py --helper``).  It pays where cores are left idle (fewer torch
threads than cores, steps waiting for data).

The helper (``_helper_main.py``: numpy, no torch, about 0.1 s to start) is shared by every
tracer of the process, ends when idle or when this process ends, and is restarted on
demand.  Until it answers, when its slots are all in use (it fell behind) or when it died,
the statistics are computed here instead, with the same numpy code, so the numbers never
depend on where they were computed.  Linux only (memfd + SCM_RIGHTS).
"""
from __future__ import annotations

import atexit
import collections
import os
import pathlib
import pickle
import select
import socket
import struct
import subprocess
import sys
import time
from typing import Any

NICE = 10
IDLE_S = 60.0
START_TIMEOUT_S = 20.0  # no answer by then: give up on the helper for this process
_MAIN = pathlib.Path(__file__).with_name("_helper_main.py")


def supported() -> bool:
    """Whether this platform can run the helper (Linux: memfd and fd passing)."""
    return sys.platform.startswith("linux") and hasattr(os, "memfd_create") and hasattr(socket, "send_fds")


def enabled() -> bool:
    """Whether tracers offload CPU statistics: opt-in, ``DSNOTEBOOK_STATS_HELPER=1`` (see the module docstring)."""
    return os.environ.get("DSNOTEBOOK_STATS_HELPER", "0") == "1" and supported()


class HelperProcess:
    """The parent's end: start, register layouts, send jobs, collect answers in order."""

    def __init__(self, nice: int = NICE, idle_s: float = IDLE_S) -> None:
        self.nice, self.idle_s = nice, idle_s
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.broken = not supported()  # True: never (again) in this process
        self.generation = 0  # bumps on every (re)start: layouts register again
        self._started_at = 0.0
        self._inflight: collections.deque[Any] = collections.deque()  # jobs sent, oldest first
        self._unsent: list[bytes] = []  # job records not sent yet
        self.sent = 0  # jobs sent in this process's life (tests, benchmarks)
        self._pid = os.getpid()

    # -- life cycle ---------------------------------------------------------------------------
    def available(self) -> bool:
        """Whether jobs can be sent now (starts the helper on first use; never waits)."""
        if self._pid != os.getpid():  # a forked child: the parent's helper is not ours
            self._forget()
            self._pid = os.getpid()
        if self.ready:
            return True
        if self.broken:
            return False
        if self.proc is None:
            self._start()
            return False
        self._receive(block=False)
        if not self.ready and self.proc is not None and time.monotonic() - self._started_at > START_TIMEOUT_S:
            self.broken = True
            self.close()
        return self.ready

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen([sys.executable, str(_MAIN), str(child.fileno()), str(self.nice),
                                          str(self.idle_s)], pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)
        except OSError:
            parent.close()
            self.broken = True
            return
        finally:
            child.close()
        parent.setblocking(False)
        self.sock, self._started_at, self.generation = parent, time.monotonic(), self.generation + 1

    def close(self) -> None:
        """Let the helper go (it exits when its socket closes); jobs in flight are computed here."""
        sock, proc = self.sock, self.proc
        self._forget()
        if sock is not None:
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _forget(self) -> None:
        self.sock, self.proc, self.ready, self._unsent = None, None, False, []
        inflight, self._inflight = self._inflight, collections.deque()
        for job in inflight:
            job.lost()

    # -- messages -----------------------------------------------------------------------------
    def register(self, lid: int, fd: int, sizes: list[int], slot_bytes: int, slots: int) -> bool:
        return self._send(b"L" + pickle.dumps((lid, sizes, slot_bytes, slots)), fds=[fd])

    def forget_layout(self, lid: int) -> None:
        if self.ready:
            self._send(b"F" + struct.pack("<I", lid))

    def submit(self, job: Any, kind: bytes, lid: int, slot: int) -> bool:
        """Queue a job; it is sent with the next :meth:`poll` (one message for the jobs of a step:
        one wake-up of the helper) and answered in order.  False when the helper is gone."""
        if self.sock is None:
            return False
        self._unsent.append(kind + struct.pack("<II", lid, slot))
        self._inflight.append(job)
        self.sent += 1
        return True

    def kick(self) -> None:
        """Send the queued jobs."""
        if self._unsent:
            msg, self._unsent = b"".join(self._unsent), []
            self._send(msg)

    def _send(self, msg: bytes, fds: list[int] | None = None) -> bool:
        sock = self.sock
        if sock is None:
            return False
        try:
            try:
                socket.send_fds(sock, [msg], fds) if fds else sock.send(msg)
            except BlockingIOError:  # its queue is full: wait for room (rare: slots bound the jobs in flight)
                sock.setblocking(True)
                try:
                    socket.send_fds(sock, [msg], fds) if fds else sock.send(msg)
                finally:
                    sock.setblocking(False)
            return True
        except OSError:
            self.close()
            return False

    def poll(self) -> None:
        """Send what is queued and take every answer that arrived (no waiting)."""
        if self._inflight:
            self.kick()
            self._receive(block=False)

    def wait_for(self, job: Any) -> None:
        """Block until ``job`` is answered (or the helper is gone: then the job is lost)."""
        self.kick()
        while not job.answered and job in self._inflight:
            self._receive(block=True)

    def _receive(self, block: bool) -> None:
        sock = self.sock
        if sock is None:
            return
        while True:
            if block:
                select.select([sock], [], [])
            try:
                msg = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:  # the helper exited (idle, killed): start again on the next job
                self.close()
                return
            if msg[:1] == b"R":
                self.ready = True
            elif msg[:1] == b"D" and self._inflight:
                job = self._inflight.popleft()
                job.answer(msg[1], msg[2:].decode(errors="replace"))
            if block and self.ready:
                return


_shared: HelperProcess | None = None


def shared_helper() -> HelperProcess:
    """The process's statistics helper (one for every tracer)."""
    global _shared
    if _shared is None:
        _shared = HelperProcess()
        atexit.register(_shared.close)
    return _shared
