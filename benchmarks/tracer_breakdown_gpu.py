"""Where the tracer's cost goes on the GPU: per-probe host time and the kernels it adds.

    PYTHONPATH=. python3 benchmarks/tracer_breakdown_gpu.py [--cases gpt2-bf16,resnet50-fp32] [--pairs 6]

For each model and tracer configuration: interleaved blocks with and without the tracer
(median overhead), the host time each probe hook takes per step (measured around the
tracer's own probe calls), and a torch.profiler summary of one traced step: the CUDA
kernels and CPU ops that are the tracer's (by name) and the step's GPU busy time.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from _gpu_e2e import _block, _gpt2_step, _resnet_step  # noqa: E402


CASES = {"gpt2-bf16": lambda: _gpt2_step(True), "gpt2-fp32": _gpt2_step,
         "resnet50-fp32": lambda: _resnet_step(False), "resnet50-bf16cl": lambda: _resnet_step(True)}
CONFIGS = {"every step": {}, "no updates": {"track_updates": False},
           "every step + act10 + prof10": {"activations_every": 10, "profile_every": 10},
           "every 1000 (sentinel)": {"every": 1000}}


def probe_times(tracer, step, n: int) -> dict[str, float]:
    acc: collections.Counter = collections.Counter()
    orig = tracer._call

    def timed(fn, *a):
        t0 = time.perf_counter_ns()
        orig(fn, *a)
        acc[f"{type(fn.__self__).__name__}.{fn.__name__}"] += time.perf_counter_ns() - t0

    tracer._call = timed
    try:
        with tracer:
            _block(step, n)
    finally:
        del tracer._call
    return {k: v / n / 1e3 for k, v in acc.most_common() if v / n / 1e3 >= 1.0}


def profile(tracer, step) -> str:
    from torch.profiler import ProfilerActivity, profile as tprof

    with tracer:
        _block(step, 3)
        with tprof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            _block(step, 2)
    return p.key_averages().table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    from dsnotebook import ModelTracer

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    for case in args.cases.split(","):
        model, opt, step = CASES[case]()
        _block(step, 5)
        for cname in args.configs.split(","):
            tracer = ModelTracer(model, opt, backend="cupy", **CONFIGS[cname])
            with tracer:
                _block(step, 5)
            ratios, plain = [], []
            for i in range(args.pairs):
                t = {}
                for on in ((False, True) if i % 2 == 0 else (True, False)):
                    if on:
                        with tracer:
                            t[on] = _block(step, args.steps)
                    else:
                        t[on] = _block(step, args.steps)
                ratios.append(t[True] / t[False]); plain.append(t[False])
            q = statistics.quantiles(ratios, n=4)
            print(f"\n== {case} | {cname}: plain {statistics.median(plain):.2f} ms, overhead "
                  f"{100 * (statistics.median(ratios) - 1):+.2f}% [IQR {100 * (q[0] - 1):+.2f}, {100 * (q[2] - 1):+.2f}]")
            for k, us in probe_times(tracer, step, 20).items():
                print(f"   {us:9.1f} us/step  {k}")
            if args.profile and cname == "every step":
                print(profile(tracer, step))
            tracer.flush(wait=True)
            del tracer
        del model, opt, step
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
