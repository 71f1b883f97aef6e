"""How a run directory's segments are stored, measured: numpy .npy / .npz vs Arrow IPC vs Parquet.

    python benchmarks/rundir_formats.py [WORK_DIR]

200 tensors of realistic gradient statistics (the torch backend's raw sums and 64-bin
histograms of random gradients, histograms Poisson-jittered per step so that no two steps
repeat).  For segments of k = 1, 10, 100 steps: wall and CPU time per step of writing one
segment (temporary name, fsync, rename) and bytes per step; then the time to read back a
10,000-step run stored in segments of 100 steps.  This chose Arrow IPC with zstd
(dsnotebook.run.rundir_format); the numbers are in benchmarks/results/.
"""
import io
import json
import os
import pathlib
import sys
import tempfile
import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import torch
from dsnotebook.stats.reference import TorchStatsBackend, HIST_OFFSET, HIST_BINS

T = 200
rng = np.random.default_rng(0)
sizes = rng.integers(100, 200_000, T)
be = TorchStatsBackend()
variants = []
for v in range(8):
    ts = [torch.randn(int(n)) * float(10 ** rng.uniform(-6, 0)) for n in sizes]
    variants.append(be.grad_stats(ts).numpy())


def block(k, s0):
    vals = np.concatenate([variants[(s0 + i) % 8][:, :HIST_OFFSET] for i in range(k)])
    hist = np.concatenate([np.random.default_rng(s0 + i).poisson(variants[(s0 + i) % 8][:, HIST_OFFSET:]).astype(np.uint32) for i in range(k)])
    vals = vals * np.random.default_rng(s0).uniform(0.9, 1.1, vals.shape)
    ids = np.tile(np.arange(T, dtype=np.int32), k)
    return {"steps": np.arange(s0, s0 + k, dtype=np.int64), "ordinals": np.arange(s0, s0 + k, dtype=np.int64),
            "grad_ids": ids, "grad_vals": vals, "hist": hist, "grad_ids_len": np.full(k, T, np.int64)}


HEAD = {"events": [], "records": {}, "meta": {"x": 1}}


def commit(d, name, write):
    tmp = d / (name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush(); os.fsync(f.fileno())
    os.replace(tmp, d / name)


def w_npz(f, a, compress=False):
    arrs = dict(a, head=np.frombuffer(json.dumps(HEAD).encode(), np.uint8))
    (np.savez_compressed if compress else np.savez)(f, **arrs)


def r_npz(p):
    with np.load(p) as z:
        return {k: z[k] for k in z.files}


def w_npy(f, a):
    names = list(a)
    h = json.dumps({**HEAD, "arrays": names}).encode()
    np.save(f, np.frombuffer(h, np.uint8))
    for n in names:
        np.save(f, a[n])


def r_npy(p):
    with open(p, "rb") as f:
        h = json.loads(np.load(f).tobytes())
        return {n: np.load(f) for n in h["arrays"]}


def to_tables(a):
    g = pa.table({"step": pa.array(np.repeat(a["steps"], a["grad_ids_len"])), "tensor_id": a["grad_ids"],
                  **{f"r{i}": a["grad_vals"][:, i] for i in range(5)},
                  "hist": pa.FixedSizeListArray.from_arrays(pa.array(a["hist"].reshape(-1)), HIST_BINS)})
    return g, None


def w_ipc(f, a, comp=None):
    g, u = to_tables(a)
    opts = ipc.IpcWriteOptions(compression=comp)
    with ipc.new_file(f, g.schema, options=opts) as w:
        w.write_table(g)


def r_ipc(p):
    with pa.memory_map(str(p)) as src:
        g = ipc.open_file(src).read_all()
    return {"hist": g.column("hist").combine_chunks().values.to_numpy().reshape(-1, HIST_BINS),
            "vals": np.stack([g.column(f"r{i}").to_numpy() for i in range(5)], 1)}


def w_pq(f, a, comp="zstd"):
    g, u = to_tables(a)
    pq.write_table(g, f, compression=comp)


def r_pq(p):
    g = pq.read_table(p)
    return {"hist": g.column("hist").combine_chunks().values.to_numpy().reshape(-1, HIST_BINS),
            "vals": np.stack([g.column(f"r{i}").to_numpy() for i in range(5)], 1)}


def w_npyz(f, a, level=1):
    b = io.BytesIO(); w_npy(b, a)
    f.write(zlib.compress(b.getbuffer(), level))


def r_npyz(p):
    with open(p, "rb") as f:
        b = io.BytesIO(zlib.decompress(f.read()))
    h = json.loads(np.load(b).tobytes())
    return {n: np.load(b) for n in h["arrays"]}


FORMATS = {
    "npy-zlib1": (w_npyz, r_npyz),
    "npy-zlib3": (lambda f, a: w_npyz(f, a, 3), r_npyz),
    "npy-stream": (w_npy, r_npy),
    "npz": (w_npz, r_npz),
    "npz-zlib": (lambda f, a: w_npz(f, a, True), r_npz),
    "arrow-ipc": (w_ipc, r_ipc),
    "arrow-ipc-lz4": (lambda f, a: w_ipc(f, a, "lz4"), r_ipc),
    "arrow-ipc-zstd": (lambda f, a: w_ipc(f, a, "zstd"), r_ipc),
    "parquet-snappy": (lambda f, a: w_pq(f, a, "snappy"), r_pq),
    "parquet-zstd": (lambda f, a: w_pq(f, a, "zstd"), r_pq),
}
base = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="rundir_fmt_"))
total_steps = 10_000
print(f"{T} tensors; per-step writer CPU cost (segment of k steps, incl. fsync+rename), bytes/step, read 10,000 steps")
for name, (w, r) in FORMATS.items():
    res = {}
    for k in (1, 10, 100):
        d = base / f"{name}-{k}"; d.mkdir(parents=True, exist_ok=True)
        blocks = [block(k, i * k) for i in range(max(3, 200 // k))]
        times = []
        for i, b in enumerate(blocks):
            t0 = time.perf_counter(); c0 = time.process_time()
            commit(d, f"seg-{i:06d}", lambda f: w(f, b))
            times.append(((time.perf_counter() - t0), time.process_time() - c0))
        wall = np.median([t[0] for t in times]) / k * 1e3
        cpu = np.median([t[1] for t in times]) / k * 1e3
        size = sum(p.stat().st_size for p in d.iterdir()) / (len(blocks) * k)
        res[k] = (wall, cpu, size)
    # read time: 10,000 steps in segments of 100
    d = base / f"{name}-read"; d.mkdir(exist_ok=True)
    for i in range(total_steps // 100):
        commit(d, f"seg-{i:06d}", lambda f: w(f, block(100, i * 100)))
    t0 = time.perf_counter()
    for p in sorted(d.iterdir()):
        r(p)
    read = time.perf_counter() - t0
    mb = sum(p.stat().st_size for p in d.iterdir()) / 1e6
    print(f"{name:15s} " + "  ".join(f"k={k}: {v[0]:.3f} ms wall {v[1]:.3f} ms cpu {v[2] / 1e3:.1f} kB" for k, v in res.items())
          + f"  | read 10k steps: {read:.2f} s, {mb:.0f} MB", flush=True)
