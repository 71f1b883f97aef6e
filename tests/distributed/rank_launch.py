"""Start N gloo processes on this CPU, each running one job function, and collect what each returned.

Every job gets ``init_process_group("gloo", timeout=pg_timeout)`` and the launcher a wall-clock
``timeout``: a rank that hangs is killed and the test fails with "hang", it never blocks the
suite.  Job functions live in :mod:`rank_jobs` (importable by name in the spawned children)
and return a picklable dict, written to ``<tmp>/rank<r>.pkl``.
"""
from __future__ import annotations

import datetime
import os
import pickle
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, job: str, world: int, port: int, tmp: str, pg_timeout: float, kwargs: dict[str, Any]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    import torch.distributed as dist

    import rank_jobs

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=pg_timeout))
    try:
        out = getattr(rank_jobs, job)(rank, world, **kwargs)
        with open(os.path.join(tmp, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(out, f)
    finally:
        try:
            dist.destroy_process_group()
        except Exception:
            pass


def run_ranks(job: str, world: int, tmp: Path, *, timeout: float = 120.0, pg_timeout: float = 30.0,
              **kwargs: Any) -> list[dict[str, Any]]:
    """Run ``rank_jobs.<job>(rank, world, **kwargs)`` on ``world`` processes; their results by rank."""
    ctx = mp.start_processes(_entry, args=(job, world, _free_port(), str(tmp), pg_timeout, kwargs), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise AssertionError(f"{job} on {world} ranks did not finish within {timeout:.0f} s: a hang")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join(5)
    out = []
    for r in range(world):
        with open(tmp / f"rank{r}.pkl", "rb") as f:
            out.append(pickle.load(f))
    return out
