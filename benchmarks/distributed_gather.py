"""How should rank statistics reach one place?  Measured on CPU with gloo, 2 and 4 processes.

Candidates for moving every rank's packed statistics (per tensor: 5 float64 sums, 64 uint32
histogram counts, 3 float64 update sums, numel, flags = 344 bytes) of N=10 recorded steps:

* ``gather``: one ``dist.gather`` of a preallocated uint8 tensor to rank 0 (blocking);
* ``gather_async``: the same with ``async_op=True``: what the training thread pays to issue
  it (the wait happens at the next collection, N steps later);
* ``all_gather_object``: the pickling collective, for scale;
* ``files``: every rank appends its bytes to its own file (write + flush, no fsync), and a
  reader merges: ``files_write`` is what a rank pays, ``files_merge`` what the reader pays to
  read and combine the P files once.

    .venv/bin/python benchmarks/distributed_gather.py [--reps 200] [--out benchmarks/results/...]

Medians in milliseconds per collection (one collection every N=10 steps).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

RECORD_BYTES = 344
STEPS = 10
MODELS = {"digits CNN (8 tensors)": 8, "GPT-2 124M (148 tensors)": 148, "ResNet-50 (161 tensors)": 161}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _median_ms(xs: list[float]) -> float:
    return 1e3 * statistics.median(xs)


def _worker(rank: int, world: int, port: int, reps: int, tmp: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    res = {}
    for label, n in MODELS.items():
        nbytes = n * RECORD_BYTES * STEPS
        buf = torch.randint(0, 255, (nbytes,), dtype=torch.uint8)
        recv = [torch.empty_like(buf) for _ in range(world)] if rank == 0 else None
        for _ in range(5):
            dist.gather(buf, recv, dst=0)
        t_sync, t_issue, t_obj, t_write, t_merge = [], [], [], [], []
        path = os.path.join(tmp, f"rank{rank}_{n}.bin")
        with open(path, "wb") as f:
            for i in range(reps):
                dist.barrier()
                t0 = time.perf_counter()
                dist.gather(buf, recv, dst=0)
                t_sync.append(time.perf_counter() - t0)
                dist.barrier()
                t0 = time.perf_counter()
                work = dist.gather(buf, recv, dst=0, async_op=True)
                t_issue.append(time.perf_counter() - t0)
                work.wait()
                if i % 4 == 0:  # pickling is slow: fewer repetitions
                    dist.barrier()
                    objs = [None] * world
                    t0 = time.perf_counter()
                    dist.all_gather_object(objs, {"stats": buf.numpy()})
                    t_obj.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                f.write(buf.numpy().tobytes())
                f.flush()
                t_write.append(time.perf_counter() - t0)
        dist.barrier()
        if rank == 0:
            for _ in range(max(5, reps // 10)):
                t0 = time.perf_counter()
                parts = []
                for r in range(world):
                    with open(os.path.join(tmp, f"rank{r}_{n}.bin"), "rb") as f:
                        f.seek(-nbytes, os.SEEK_END)
                        parts.append(np.frombuffer(f.read(nbytes), dtype=np.uint8))
                np.stack(parts).astype(np.float64).sum(0)  # stands in for combining
                t_merge.append(time.perf_counter() - t0)
        res[label] = {"bytes": nbytes, "gather": _median_ms(t_sync), "gather_async_issue": _median_ms(t_issue),
                      "all_gather_object": _median_ms(t_obj), "files_write": _median_ms(t_write),
                      "files_merge": _median_ms(t_merge) if t_merge else None}
        dist.barrier()
    if rank == 0:
        out.update(res)
    dist.destroy_process_group()


def run(world: int, reps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as m:
        out = m.dict()
        mp.start_processes(_worker, args=(world, _free_port(), reps, tmp, out), nprocs=world, join=True,
                           start_method="spawn")
        return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines = [f"# distributed_gather.py {datetime.date.today()} torch {torch.__version__} python "
             f"{platform.python_version()} cpus {os.cpu_count()} reps {args.reps}",
             "# ms per collection of N=10 steps (median); files_merge: the reader, once per collection",
             f"{'ranks':>5} {'model':<26} {'KB/rank':>8} {'gather':>8} {'async':>8} {'*_object':>9} "
             f"{'f_write':>8} {'f_merge':>8}"]
    for world in args.worlds:
        for label, r in run(world, args.reps).items():
            lines.append(f"{world:>5} {label:<26} {r['bytes'] / 1024:>8.1f} {r['gather']:>8.3f} "
                         f"{r['gather_async_issue']:>8.3f} {r['all_gather_object']:>9.3f} {r['files_write']:>8.3f} "
                         f"{r['files_merge']:>8.3f}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
