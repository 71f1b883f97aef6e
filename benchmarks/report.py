"""Size and build time of the standalone HTML report for 200 tensors x 10,000 steps.

    python benchmarks/report.py [--tensors 200] [--steps 10000] [--out /tmp/dsn_report_bench]

The Run is synthetic but shaped like a real one, filled through the Run's public writers:
per tensor and step gradient sums and a 64-bin log2|g| histogram drawn from the
distribution of log2|g| for a Gaussian gradient whose scale drifts over training (about 20
occupied bins, counts summing exactly to numel), a few non-finite steps, update ratios,
activation rows for 50 modules every 10 steps, per-layer timings every 10 steps, events
and suggestions. Two cases: the tracer's default memory bound (``keep=1000``: older steps
thinned, what a user gets) and ``keep`` = every step (the worst case for the report).
Budget (issue): at most 5 MB. Prints size per case and the build time (median of
``--repeat`` builds; ``write_report`` end to end, bokeh serialisation included).
"""
from __future__ import annotations

import argparse
import pathlib
import platform
import statistics
import time

import numpy as np

from dsnotebook.run import Run
from dsnotebook.stats.reference import HIST_BINS, HIST_EXP_MIN
from dsnotebook.views.report import write_report

MODULES = 50


def synthetic_run(n_tensors: int, n_steps: int, keep: int, seed: int = 0) -> Run:
    rng = np.random.default_rng(seed)
    tensors = []
    for i in range(n_tensors):
        block, kind = divmod(i, 2)
        shape = [512, 512] if kind == 0 else [512]
        name = f"layers.{block}.{'weight' if kind == 0 else 'bias'}"
        tensors.append({"tensor_id": i, "name": name, "module": f"layers.{block}", "tensor": name.rsplit('.', 1)[1],
                        "shape": shape, "dtype": "float32", "numel": int(np.prod(shape)), "trainable": True,
                        "aliases": []})
    run = Run(tensors, {"model": "Synthetic", "every": 1, "activations_every": 10, "profile_every": 10,
                        "nonfinite": "cheap", "torch": "n/a"}, keep=keep)
    numel = np.array([t["numel"] for t in tensors], np.int64)
    base = rng.uniform(-14, -6, n_tensors)  # log2 of each tensor's gradient scale at step 0
    exps = np.arange(HIST_BINS - 1) + HIST_EXP_MIN  # exponent of bins 1..63
    ids = np.arange(n_tensors, dtype=np.int32)
    bad_steps = set(rng.choice(n_steps, size=5, replace=False).tolist())
    for s in range(n_steps):
        c = base - 3.0 * s / n_steps + rng.normal(0, 0.1, n_tensors)  # [T]
        d = exps[None, :] + 0.5 - c[:, None]
        p = np.exp2(d) * np.exp(-0.5 * np.exp2(2 * d))  # density of log2|g| for a Gaussian g
        p /= p.sum(axis=1, keepdims=True)
        nonfinite = np.zeros(n_tensors, np.int64)
        if s in bad_steps:
            nonfinite[rng.integers(0, n_tensors)] = 7
        hist = np.zeros((n_tensors, HIST_BINS), np.int64)
        hist[:, 1:] = rng.multinomial(numel - nonfinite, p)
        sigma = np.exp2(c)
        raw = np.zeros((n_tensors, 5 + HIST_BINS))
        raw[:, 0] = rng.normal(0, 1, n_tensors) * sigma * np.sqrt(numel)
        raw[:, 1] = numel * sigma ** 2
        raw[:, 2] = 4 * sigma
        raw[:, 3] = nonfinite
        raw[:, 5:] = hist
        run.add_grads(s, ids, raw)
        w2 = numel * 0.02 ** 2
        ratio = 1e-3 * np.exp2(rng.normal(0, 0.3, n_tensors) - s / n_steps)
        run.add_updates(s, ids, np.stack([(ratio ** 2) * w2, w2, numel.astype(float)], axis=1))
        if s % 10 == 0:
            run.add_activations(s, [{"module": f"layers.{m}", "type": "ReLU", "mean": 0.3, "std": 0.5 + 0.01 * m,
                                     "absmax": 4.0, "zero_frac": 0.5, "nonfinite": 0, "dead_units": m % 3,
                                     "units": 512, "call": 0, "dead": list(range(m % 3))} for m in range(MODULES)])
            rows = [{"step": s, "module": f"layers.{m}", "phase": ph, "seconds": 1e-4 * (1 + m % 7), "calls": 1}
                    for m in range(MODULES) for ph in ("fwd", "bwd")]
            rows += [{"step": s, "module": "(step)", "phase": ph, "seconds": v, "calls": 1}
                     for ph, v in (("data", 2e-3), ("fwd", 8e-3), ("bwd", 15e-3), ("opt", 3e-3), ("tracer", 1e-3),
                                   ("other", 1e-3), ("step", 30e-3))]
            run.add_records("timings", rows)
    for s in sorted(bad_steps):
        run.add_event(s, "nonfinite", "layers.3", "backward: 7 non-finite gradient elements")
    run.add_records("suggestions", [{"id": "lr", "rule": "lr", "title": "Lower the learning rate", "category": "training",
                                     "severity": "warning", "evidence": {"max_update_ratio": 0.02}, "gain": "stability",
                                     "snippet": "opt.param_groups[0]['lr'] *= 0.5", "verify_hint": "", "can_verify": False,
                                     "status": "proposed", "result": None}])
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensors", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/dsn_report_bench"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"report benchmark: {args.tensors} tensors x {args.steps} steps; python {platform.python_version()}, "
          f"{platform.machine()}")
    for keep in (1000, args.steps):
        t0 = time.perf_counter()
        run = synthetic_run(args.tensors, args.steps, keep)
        fill = time.perf_counter() - t0
        path = args.out / f"report_keep{keep}.html"
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            write_report(run, path)
            times.append(time.perf_counter() - t0)
        size = path.stat().st_size
        print(f"keep={keep:>6}: {len(run.steps)} retained steps (run filled in {fill:.1f} s); report {size / 1e6:.2f} MB "
              f"({'within' if size <= 5e6 else 'OVER'} the 5 MB budget), build {statistics.median(times):.2f} s "
              f"(median of {args.repeat}: {', '.join(f'{t:.2f}' for t in times)}) -> {path}")


if __name__ == "__main__":
    main()
