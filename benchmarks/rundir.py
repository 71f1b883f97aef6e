"""Run directories: write overhead per training step, and the time to open a long run.

    python benchmarks/rundir.py [--pairs 10] [--steps 300] [--open-steps 10000] [--device auto]

1. Overhead of ``log_dir``: a 100-layer MLP (200 parameter tensors) trains under a tracer
   with and without ``log_dir``; blocks of ``--steps`` steps alternate (ABBA), each timed
   between attach and detach (so the writer's start and final segment are not in it, its
   background flushes are), and the median of the per-pair ratios is printed with its IQR.
2. Opening: a Run of 200 tensors x ``--open-steps`` steps with realistic statistics (the torch
   backend's output for random gradients, Poisson-jittered histograms) is written by a
   RunWriter in segments of 100 steps; then ``Run.open`` (default keep 1000, and keep = all)
   is timed, and the directory's size printed.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _pairs import overhead_pct  # noqa: E402

from dsnotebook import ModelTracer, Run  # noqa: E402
from dsnotebook.run.writer import RunWriter  # noqa: E402
from dsnotebook.stats.reference import HIST_OFFSET, TorchStatsBackend  # noqa: E402


def mlp(layers: int = 100, width: int = 64) -> torch.nn.Module:
    mods: list[torch.nn.Module] = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*mods)


def block(model, opt, x, y, steps: int, log_dir: pathlib.Path | None) -> float:
    """Seconds per step of ``steps`` steps under a tracer (with log_dir or not), attach/detach excluded."""
    tracer = ModelTracer(model, opt, keep=256, capture_graph=False, log_dir=log_dir)
    with tracer:
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / steps
    return dt


def overhead(pairs: int, steps: int, device: torch.device, tmp: pathlib.Path) -> dict:
    torch.manual_seed(0)
    model = mlp().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(64, 64, device=device), torch.randn(64, 64, device=device)
    n_tensors = len(list(model.parameters()))
    block(model, opt, x, y, steps // 4, None)  # warm-up
    block(model, opt, x, y, steps // 4, tmp / "warm")
    plain, logged, ratios = [], [], []
    for i in range(pairs):
        t = {}
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            t[on] = block(model, opt, x, y, steps, tmp / f"pair{i}" if on else None)
        plain.append(t[False])
        logged.append(t[True])
        ratios.append(t[True] / t[False])
    med, q1, q3 = overhead_pct(ratios)
    segs = len(list((tmp / "pair0").glob("seg-*")))
    return {"tensors": n_tensors, "plain_ms": 1e3 * statistics.median(plain), "logged_ms": 1e3 * statistics.median(logged),
            "overhead_pct": med, "iqr": (q1, q3), "segments_per_block": segs}


def synthetic_run(steps: int, tensors: int = 200) -> tuple[Run, list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    sizes = rng.integers(100, 200_000, tensors)
    rows = [{"tensor_id": i, "name": f"layer{i // 2}.{'weight' if i % 2 == 0 else 'bias'}", "module": f"layer{i // 2}",
             "tensor": "weight" if i % 2 == 0 else "bias", "shape": [int(n)], "dtype": "float32", "numel": int(n),
             "trainable": True, "aliases": []} for i, n in enumerate(sizes)]
    be = TorchStatsBackend()
    variants = [be.grad_stats([torch.randn(int(n)) * float(10 ** rng.uniform(-6, 0)) for n in sizes]).numpy()
                for _ in range(4)]
    return Run(rows, {"model": "synthetic"}, keep=1000), variants


def listener_cost(tmp: pathlib.Path, steps: int = 2000, pairs: int = 10) -> tuple[float, float]:
    """Training-thread CPU per step of recording 200 tensors' rows into a Run, with and without a
    RunWriter listening (its thread's commits are not on this thread's clock): microseconds."""
    run, variants = synthetic_run(1)
    ids = np.arange(len(run.tensors))
    upd = np.ones((len(ids), 3))
    plain, logged = [], []
    for i in range(pairs):
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            r = Run(run.tensors, {}, keep=1000)
            w = RunWriter(r, tmp / f"listen{i}", interval=2.0).start() if on else None
            c0 = time.thread_time()
            for s in range(steps):
                r.add_grads(s, ids, variants[s % 4])
                r.add_updates(s, ids, upd)
            (logged if on else plain).append((time.thread_time() - c0) / steps)
            if w is not None:
                w.close()
    return 1e6 * statistics.median(plain), 1e6 * statistics.median(logged)


def open_time(steps: int, tmp: pathlib.Path) -> dict:
    run, variants = synthetic_run(steps)
    d = tmp / "long"
    ids = np.arange(len(run.tensors))
    rng = np.random.default_rng(1)
    w = RunWriter(run, d, interval=2.0).start()
    t0, write_cpu = time.perf_counter(), 0.0
    for s in range(steps):
        raw = variants[s % 4].copy()
        raw[:, :HIST_OFFSET] *= rng.uniform(0.9, 1.1, (len(ids), 1))
        raw[:, HIST_OFFSET:] = rng.poisson(raw[:, HIST_OFFSET:])
        run.add_grads(s, ids, raw)
        run.add_updates(s, ids, rng.random((len(ids), 3)))
        if s % 100 == 99:
            c0 = time.process_time()
            w.flush()
            write_cpu += time.process_time() - c0
    w.close()
    fill = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    out = {"steps": steps, "tensors": len(run.tensors), "dir_mb": size / 1e6, "write_ms_per_step": 1e3 * write_cpu / steps,
           "fill_s": fill}
    for label, keep in (("keep 1000", None), ("keep all", steps)):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            again = Run.open(d, keep=keep)
            times.append(time.perf_counter() - t0)
        out[f"open_s ({label})"] = min(times)
        out[f"retained ({label})"] = len(again.steps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--open-steps", type=int, default=10_000)
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="dsn_rundir_bench_"))
    try:
        print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads")
        r = overhead(args.pairs, args.steps, device, tmp)
        print(f"write overhead, {r['tensors']} tensors, {args.pairs} interleaved pairs of {args.steps} steps: "
              f"tracer {r['plain_ms']:.2f} ms/step, tracer + log_dir {r['logged_ms']:.2f} ms/step, "
              f"overhead {r['overhead_pct']:+.1f}% [IQR {r['iqr'][0]:+.1f}%, {r['iqr'][1]:+.1f}%] "
              f"({r['segments_per_block']} segments in a block)")
        p, q = listener_cost(tmp)
        print(f"training thread, recording 200 tensors' rows per step: {p:.1f} us CPU without a writer, {q:.1f} us "
              f"with one listening (+{q - p:.1f} us)")
        o = open_time(args.open_steps, tmp)
        print(f"open: {o['tensors']} tensors x {o['steps']} steps, directory {o['dir_mb']:.0f} MB "
              f"(writer {o['write_ms_per_step']:.3f} ms CPU per step in segments of 100 steps)")
        for k in ("keep 1000", "keep all"):
            print(f"  Run.open ({k}): {o[f'open_s ({k})']:.2f} s, {o[f'retained ({k})']} steps retained")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
