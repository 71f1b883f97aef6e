"""Cost of ``@dsnotebook.trace`` per call, at each level, against the undecorated function.

    python benchmarks/function_trace.py [--calls 2000] [--blocks 41] [--out FILE]

Each case runs blocks of ``--calls`` calls, undecorated and decorated alternating (ABBA), and
reports the median over block pairs of (decorated - undecorated) / calls, in microseconds, as
wall time and as this thread's CPU time (``time.thread_time``: on a shared machine other
processes inflate wall time, not CPU time).  Cases:

* ``empty``: ``def f(x): return x`` (the pure cost of tracing; the target is <= 2 us at "info"),
* ``small op``: ``x + 1`` on a 16-element tensor,
* ``3 modules``: three ``nn.Linear(16, 16)`` calls inside (module hooks held by the call),
* ``debug`` / ``trace`` levels of the small op (trace: ops of every 10th call),
* ``span``: ``with dsnotebook.trace.span("x"): pass`` against an empty block,
* ``record_function``: ``torch.profiler.record_function`` around the empty function, for reference.

The empty-call cost that dsnotebook measures at start (and subtracts from nested times) is
printed beside it.  On a CUDA machine the small-op cases also run on the GPU (CUDA events taken
per call: ``device_s`` is recorded).  Traced calls go to the default recorder, cleared between
blocks so memory stays flat.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from typing import Any, Callable

import torch

import dsnotebook

trace = dsnotebook.trace


def _block(fn: Callable[[Any], Any], arg: Any, n: int, clock: Callable[[], float]) -> float:
    t = clock()
    for _ in range(n):
        fn(arg)
    return clock() - t


def measure(plain: Callable[[Any], Any], traced: Callable[[Any], Any], arg: Any, calls: int,
            blocks: int, sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median per-call difference (us) over interleaved block pairs, wall and thread CPU time."""
    out: dict[str, list[float]] = {"wall": [], "cpu": [], "plain_wall": []}
    for fn in (plain, traced):  # warm-up (and the one-time calibration)
        _block(fn, arg, 50, time.perf_counter)
    for i in range(blocks):
        res: dict[tuple[bool, str], float] = {}
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            fn = traced if on else plain
            sync()
            w0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                fn(arg)
            sync()
            res[(on, "wall")] = time.perf_counter() - w0
            res[(on, "cpu")] = time.thread_time() - c0
        out["wall"].append((res[(True, "wall")] - res[(False, "wall")]) / calls * 1e6)
        out["cpu"].append((res[(True, "cpu")] - res[(False, "cpu")]) / calls * 1e6)
        out["plain_wall"].append(res[(False, "wall")] / calls * 1e6)
        trace.clear()
    q = statistics.quantiles(out["wall"], n=4)
    return {"wall_us": statistics.median(out["wall"]), "wall_q1": q[0], "wall_q3": q[2],
            "cpu_us": statistics.median(out["cpu"]), "plain_us": statistics.median(out["plain_wall"])}


def cases(device: torch.device) -> list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], Any]]:
    x = torch.ones(16, device=device)
    lins = torch.nn.Sequential(*[torch.nn.Linear(16, 16) for _ in range(3)]).to(device)

    def empty(v: Any) -> Any:
        return v

    def small(v: torch.Tensor) -> torch.Tensor:
        return v + 1

    def modules(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return lins[2](lins[1](lins[0](v)))

    def with_record_function(v: Any) -> Any:
        with torch.profiler.record_function("empty"):
            return v

    def with_span(v: Any) -> Any:
        with trace.span("x"):
            return v

    dev = "" if device.type == "cpu" else f" ({device.type})"
    out = []
    if device.type == "cpu":
        out.append(("empty, info", empty, trace(empty, modules=None), 0))
        out.append(("empty, info, modules=False", empty, trace(empty, modules=False), 0))
        out.append(("span around an empty block", empty, with_span, 0))
        out.append(("record_function (reference)", empty, with_record_function, 0))
    out.append((f"small op, info{dev}", small, trace(small), x))
    out.append((f"3 modules, info{dev}", modules, trace(modules), x))
    out.append((f"small op, debug{dev}", small, trace(small, level="debug"), x))
    out.append((f"small op, trace every 10th{dev}", small, trace(small, level="trace", sample_every=10), x))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="calls per block")
    ap.add_argument("--blocks", type=int, default=41, help="block pairs (odd: ABBA ends balanced)")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    args = ap.parse_args()
    lines = [f"dsnotebook function tracing cost, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
             f"Python {platform.python_version()}, {torch.get_num_threads()} threads, {platform.machine()}"]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        if device.type == "cuda":
            torch.ones(1, device=device)  # CUDA up: device events are taken from now on
        for name, plain, traced, arg in cases(device):
            calls = args.calls if "info" in name or "empty" in name or "span" in name or "record" in name \
                else max(50, args.calls // 20)  # debug and trace summarise every call: fewer
            r = measure(plain, traced, arg, calls, args.blocks, sync)
            rows.append((name, r))
            print(f"  {name:<34} +{r['wall_us']:7.2f} us wall [{r['wall_q1']:+.2f}, {r['wall_q3']:+.2f}]  "
                  f"+{r['cpu_us']:7.2f} us cpu   (plain {r['plain_us']:.2f} us)", file=sys.stderr)
    o = trace.overhead()
    lines.append(f"empty-call cost measured at start (subtracted from nested times): function "
                 f"{o['call_s']['function'] * 1e6:.2f} us, span {o['call_s']['span'] * 1e6:.2f} us, module "
                 f"{o['call_s']['module'] * 1e6:.2f} us, op {o['call_s']['op'] * 1e6:.2f} us; reported by an empty call: "
                 f"{o['inner_s']['function'] * 1e6:.2f} us; calibration took {o['calibration_s'] * 1e3:.1f} ms")
    lines.append(f"{'case':<36}{'wall us/call':>14}{'  IQR':<18}{'cpu us/call':>12}{'plain us':>10}")
    for name, r in rows:
        lines.append(f"{name:<36}{r['wall_us']:>14.2f}  [{r['wall_q1']:+.2f}, {r['wall_q3']:+.2f}]"
                     f"{'':<3}{r['cpu_us']:>10.2f}{r['plain_us']:>10.2f}")
    info = next(r for n, r in rows if n == "empty, info")
    verdict = "met" if info["cpu_us"] <= 2.0 else "MISSED"
    lines.append(f"target <= 2 us per call at info on CPU (judged on CPU time, which other processes do not "
                 f"inflate): {verdict} (cpu {info['cpu_us']:.2f} us, wall {info['wall_us']:.2f} us)")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
