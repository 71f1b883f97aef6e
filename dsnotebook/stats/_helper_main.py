"""The statistics helper process (started by :mod:`dsnotebook.stats.helper`; run as a script).

It imports numpy and :mod:`hostmath` only (no torch, no dsnotebook package: about 0.1 s
to start), lowers its priority, and serves jobs from its one socket in order: the input
buffers and the output rows live in shared memory (one memfd per tensor layout, sent with
the layout), so a job message is a few bytes and so is its answer.  It exits when the
socket closes (the parent exited or let it go) or after ``idle_s`` seconds without work.

Messages in (SOCK_SEQPACKET, one per recv): ``b"L" + pickle((id, sizes, slot_bytes,
slots))`` with the memfd attached; ``b"F" + id`` forget a layout; job records ``b"G"``/``b"U"``
+ ``<II`` (layout id, slot), one or more per message: gradient / update statistics of that slot.  Messages out:
``b"R"`` ready; ``b"D" + status`` per job in order (0 done, 1 not finite: the parent
takes the exact path, 2 failed, followed by the error text).
"""
from __future__ import annotations

import mmap
import os
import pickle
import select
import socket
import struct
import sys
import traceback

import numpy as np

import hostmath  # type: ignore  # this directory is sys.path[0]
from layout import GRAD_COLS  # type: ignore


class _Region:
    def __init__(self, fd: int, sizes: list[int], slot_bytes: int, slots: int) -> None:
        self.map = mmap.mmap(fd, slot_bytes * slots)
        os.close(fd)
        self.seg = hostmath.Segments(sizes)
        self.scratch = hostmath.Scratch(self.seg.total)
        total, n = self.seg.total, self.seg.n
        self.slots = []
        for k in range(slots):
            base = k * slot_bytes
            a = np.frombuffer(self.map, np.float32, total, base)
            b = np.frombuffer(self.map, np.float32, total, base + align(4 * total))
            out = np.frombuffer(self.map, np.float64, n * GRAD_COLS, base + 2 * align(4 * total)).reshape(n, GRAD_COLS)
            self.slots.append((a, b, out))


def align(nbytes: int) -> int:
    return (nbytes + 63) // 64 * 64


def serve(sock: socket.socket, idle_s: float) -> None:
    regions: dict[int, _Region] = {}
    sock.send(b"R")
    while True:
        if not select.select([sock], [], [], idle_s)[0]:
            return  # idle: the parent starts a new helper when it needs one
        msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 1)
        if not msg:
            return  # the parent closed its end
        kind = msg[:1]
        if kind == b"L":
            lid, sizes, slot_bytes, slots = pickle.loads(msg[1:])
            regions[lid] = _Region(fds[0], sizes, slot_bytes, slots)
            continue
        if kind == b"F":
            regions.pop(struct.unpack("<I", msg[1:5])[0], None)
            continue
        for at in range(0, len(msg), 9):  # one or more job records
            sock.send(run_job(regions, msg[at:at + 1], *struct.unpack("<II", msg[at + 1:at + 9])))


def run_job(regions: dict[int, _Region], kind: bytes, lid: int, slot: int) -> bytes:
    try:
        r = regions[lid]
        a, b, out = r.slots[slot]
        if kind == b"G":  # the parent checked the gradients are finite
            out[:, :] = hostmath.grad_stats(a, r.seg, r.scratch)
            return b"D\0"
        res = hostmath.update_stats(a, b, r.seg, r.scratch)
        if res is None:
            return b"D\1"
        out[:, :res.shape[1]] = res
        return b"D\0"
    except Exception:
        return b"D\2" + traceback.format_exc(limit=3).encode()[-4000:]


def main() -> None:
    fd, nice, idle_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    if nice > 0:
        try:
            os.nice(nice)
        except OSError:
            pass
    if hasattr(os, "sched_setscheduler"):
        try:  # run only on otherwise idle cycles; any waking thread of the trainer preempts it at once
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass
    sock = socket.socket(fileno=fd)
    try:
        serve(sock, idle_s)
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
