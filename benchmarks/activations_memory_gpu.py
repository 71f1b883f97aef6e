"""Peak GPU memory and time of a sampled activation step against a plain step.

    PYTHONPATH=. python3 benchmarks/activations_memory_gpu.py [--cases resnet50-fp32,resnet50-bf16,gpt2-bf16] [--rounds 6]
    PYTHONPATH=. python3 benchmarks/activations_memory_gpu.py --smoke   # CPU, a tiny model: checks the script runs

Why: outputs that a later in-place op changes (ResNet's batch norms before ReLU(inplace)) used to
be copied in the hook on sampled steps; they are now reduced there (five numbers and a
per-channel peak).  Per case: ``max_memory_allocated`` of a plain step and of a step under a
tracer with ``activations_every=1`` (every step sampled; the first sampled step learns which
modules to reduce and is left out), and per-step wall time of blocks of ``--steps`` steps, plain
and sampled, interleaved over ``--rounds`` rounds (ratio per round; median and IQR).
The tracer records nothing else (gradient statistics at step 0 only, no update statistics, no
graph, non-finite checks off), so the extra is the activation sampling alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _gpu_common import LINES, say  # noqa: E402

CASES = ("resnet50-fp32", "resnet50-bf16", "gpt2-bf16")
BASE = dict(every=10**9, track_updates=False, capture_graph=False, nonfinite="off", activations_every=1)


def _make(case: str, dev: str):
    if dev == "cpu":
        from dsnotebook.examples import DigitsCNN

        model = DigitsCNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        return model, opt, step
    from _gpu_e2e import _gpt2_step, _resnet_step

    if case.startswith("resnet50"):
        return _resnet_step(case.endswith("bf16"), dev)
    return _gpt2_step(case.endswith("bf16"), dev)


def _peak(step, dev: str) -> float:
    if dev == "cpu":
        step()
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def _block(step, n: int, dev: str) -> float:
    if dev != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if dev != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e3


def run_case(case: str, dev: str, rounds: int, steps: int) -> None:
    from dsnotebook import ModelTracer

    model, opt, step = _make(case, dev)
    for _ in range(3):
        step()
    plain_peak = max(_peak(step, dev) for _ in range(2))
    tracer = ModelTracer(model, opt, **BASE)
    tracer.attach()
    try:
        step()  # first sample: finds the outputs changed in place later
        tracer.flush()
        notes = [e for e in tracer.run.events if "modified in place" in e["detail"]]
        sampled_peak = max(_peak(step, dev) for _ in range(2))
    finally:
        tracer.detach()
    ratios, plain_ms, samp_ms = [], [], []
    for r in range(rounds):
        order = ("plain", "sampled") if r % 2 == 0 else ("sampled", "plain")
        got = {}
        for arm in order:
            if arm == "sampled":
                tracer.attach()
                try:
                    got[arm] = _block(step, steps, dev)
                finally:
                    tracer.detach()
            else:
                got[arm] = _block(step, steps, dev)
        plain_ms.append(got["plain"])
        samp_ms.append(got["sampled"])
        ratios.append(got["sampled"] / got["plain"] - 1)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    say(f"{case}: peak plain {plain_peak:.2f} GiB, sampled step {sampled_peak:.2f} GiB "
        f"(+{sampled_peak - plain_peak:.2f} GiB); step {statistics.median(plain_ms):.2f} ms plain, "
        f"{statistics.median(samp_ms):.2f} ms sampled: +{100 * statistics.median(ratios):.1f}% "
        f"[IQR {100 * q[0]:+.1f}, {100 * q[2]:+.1f}] per sampled step; "
        f"note: {notes[0]['detail'][:160] if notes else 'none'}")
    del model, opt, step, tracer
    if dev != "cpu":
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default=None, help="also write the printed lines to this file")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    dev = "cpu" if a.smoke else "cuda"
    if dev == "cuda":
        say(f"# {torch.cuda.get_device_name()} torch {torch.__version__} {time.strftime('%Y-%m-%d')}")
    for case in (["cnn"] if a.smoke else a.cases.split(",")):
        run_case(case, dev, 2 if a.smoke else a.rounds, 2 if a.smoke else a.steps)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
