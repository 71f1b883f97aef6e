"""One writer per run directory: a lock file with pid, host and a heartbeat.

The lock is made by hard-linking a fully written temporary file to ``writer.lock``: the link
either appears whole or fails because the lock exists (atomic also on NFS, unlike
``O_EXCL`` on old clients).  The holder refreshes the file's mtime at every flush.  A lock
is stale when its process is gone (same host: the pid no longer runs, or runs another
program) or, for a writer on another host, when it has not been refreshed for
``STALE_AFTER`` seconds; a stale lock is taken over, a live one is a clear error.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from dsnotebook.run.rundir_format import LOCK, fsync_dir

STALE_AFTER = 60.0  # seconds without a heartbeat before another host's lock counts as stale


class RunDirBusy(RuntimeError):
    """Another live writer holds the run directory."""


def _proc_start(pid: int) -> str | None:
    """Start time of a process (Linux: /proc/<pid>/stat field 22), to tell a reused pid apart."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@dataclass
class LockInfo:
    """Who holds a run directory, and whether that writer still lives."""

    pid: int
    host: str
    token: str
    started: str
    age_s: float  # seconds since the last heartbeat
    alive: bool

    def describe(self) -> str:
        where = "this machine" if self.host == socket.gethostname() else f"host {self.host}"
        return f"pid {self.pid} on {where}, since {self.started}, last heartbeat {self.age_s:.0f} s ago"


def read_lock(d: pathlib.Path, stale_after: float = STALE_AFTER) -> LockInfo | None:
    """The lock of ``d`` (None if none)."""
    p = d / LOCK
    try:
        text = p.read_text()
        age = max(0.0, time.time() - p.stat().st_mtime)
    except FileNotFoundError:
        return None
    try:
        data: dict[str, Any] = json.loads(text)
        pid, host = int(data["pid"]), str(data["host"])
    except (ValueError, KeyError, TypeError):
        return LockInfo(-1, "?", "", "?", age, alive=age < stale_after)
    if host == socket.gethostname():
        alive = _pid_alive(pid)
        if alive and data.get("proc_start") and _proc_start(pid) not in (None, data["proc_start"]):
            alive = False  # the pid now belongs to another process
    else:
        alive = age < stale_after
    return LockInfo(pid, host, str(data.get("token", "")), str(data.get("started", "?")), age, alive)


class WriterLock:
    """The lock a writer holds while it writes ``d``."""

    def __init__(self, d: pathlib.Path) -> None:
        self.dir = d
        self.token = ""

    @property
    def held(self) -> bool:
        return bool(self.token)

    def acquire(self, what: str = "write") -> None:
        """Take the lock; RunDirBusy if a live writer holds it (a stale lock is taken over)."""
        d, path = self.dir, self.dir / LOCK
        token = secrets.token_hex(8)
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                           "proc_start": _proc_start(os.getpid()),
                           "started": datetime.datetime.now().isoformat(timespec="seconds")})
        tmp = d / f".{LOCK}.{token}"
        with open(tmp, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        try:
            for _ in range(10):
                try:
                    os.link(tmp, path)
                    fsync_dir(d)
                    self.token = token
                    return
                except FileExistsError:
                    info = read_lock(d)
                    if info is None:
                        continue  # released meanwhile: try again
                    if info.alive:
                        raise RunDirBusy(f"cannot {what} {d}: another writer holds it ({info.describe()}). "
                                         "Two writers never share a directory: use another directory, or wait "
                                         f"for that one to finish (if that process is gone for good, delete {path})")
                    self._break_stale(path, info)
            raise RunDirBusy(f"cannot {what} {d}: could not take {path} (other writers keep racing for it)")
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _break_stale(path: pathlib.Path, info: LockInfo) -> None:
        """Move a stale lock aside (one of several racing takers wins the rename)."""
        aside = path.with_name(f".{LOCK}.stale-{secrets.token_hex(4)}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)

    def owned(self) -> bool:
        """Whether the lock file is still ours (another process may have broken it as stale)."""
        info = read_lock(self.dir)
        return info is not None and info.token == self.token and bool(self.token)

    def heartbeat(self) -> None:
        try:
            os.utime(self.dir / LOCK)
        except OSError:
            pass

    def release(self) -> None:
        if self.token and self.owned():
            (self.dir / LOCK).unlink(missing_ok=True)
            fsync_dir(self.dir)
        self.token = ""
