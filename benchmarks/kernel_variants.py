"""Issue 15 items 2-4 on one GPU: kernel variants, the host path, update statistics.  < 3 minutes.

    PYTHONPATH=. python3 benchmarks/kernel_variants.py [--quick] [--out DIR]

A. Correctness: the default kernel against the previous one (tests/kernels/legacy_grad_stats.cu,
   "v0": every number must be bit-identical) and against the torch reference, on data that
   exercises the fast path's edges; the carry comparison against the plain one.
B. Bandwidth of grad_stats over 1e9 elements in 300 tensors (bf16, fp32, bf16 with 10% zeros
   scattered), every variant against torch.sum over the same bytes, interleaved, CUDA events.
C. Host path per call for ResNet-50's 161 and GPT-2's 148 gradient tensors: the same tensors
   each step, new tensor objects each step (zero_grad(set_to_none=True)), and the previous
   host path (full layout key + cupy argument tuple) in the same run; its parts; end to end
   with the caller's pinned copy.
D. Update statistics on GPT-2 124M fp32 weights: GPU time of snapshot + compare (exact, 16 B per
   parameter), the carry comparison (12 B), gradient statistics, copy/read peaks, and what each
   mode costs per step against 1% of a 41.3 ms GPT-2 bf16 step; a snapshot on a side stream
   while a GEMM workload runs (could it hide behind the backward pass?).
E. (--only E) GPT-2 124M bf16 autocast 8x512 AdamW end to end: plain against ModelTracer with
   gradient statistics only, + exact update statistics, + carry updates, + updates every 4th
   step; interleaved rounds, median of the per-round ratios (noisy on a host-bound step).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
from typing import Any, Callable

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from stats_float32 import resnet50_like  # noqa: E402

from dsnotebook.kernels import CupyStatsBackend, is_available  # noqa: E402
from dsnotebook.stats.reference import TorchStatsBackend  # noqa: E402

LEGACY = "../../tests/kernels/legacy_grad_stats.cu"
LINES: list[str] = []
GPT2_STEP_MS = 41.3  # plain GPT-2 124M bf16 8x512 AdamW step on the H200 (lead's run, 2026-11-30)


def say(msg: str = "") -> None:
    print(msg, flush=True)
    LINES.append(msg)


def gpt2_shapes() -> list[tuple[int, ...]]:
    d, f, v, n = 768, 3072, 50257, 1024
    layer = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, f), (f,), (f, d), (d,)]
    return [(v, d), (n, d)] + layer * 12 + [(d,), (d,)]


def split_sizes(total: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(0)
    w = torch.rand(n, generator=g) + 0.25
    sizes = (w / w.sum() * total / 64).floor().long() * 64
    sizes[-1] += total - int(sizes.sum())
    return sizes.tolist()


def events_ms(fn: Callable[[], Any]) -> float:
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median ms per call, the candidates taking turns round after round."""
    for fn in fns.values():
        fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(events_ms(fn))
    return {k: statistics.median(v) for k, v in times.items()}


# ------------------------------------------------------------------------------------ A
def check(name: str, ok: bool, detail: str = "") -> bool:
    say(f"  {'PASS' if ok else 'FAIL'}  {name}{('  ' + detail) if detail else ''}")
    return ok


def cases(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(1)
    n = 3 * 65536 + 77
    body = torch.randn(n, generator=g, device="cuda")
    sparse = body.clone()
    sparse[::10] = 0.0
    edges = torch.tensor([2.0 ** -49, 2.0 ** -48, 2.0 ** -47, 2.0 ** -46, 2.0 ** 15.9, 2.0 ** 16, 2.0 ** 17, 1e-40, 0.0,
                          3e38, float("nan"), float("inf")], device="cuda")
    walk = edges[torch.randint(0, len(edges), (n,), generator=g, device="cuda")]
    tiny = body * 2.0 ** -40
    return [t.to(dtype) for t in (body, sparse, walk, tiny, body * 1e-3, edges)] + [body.to(dtype)[3:], body[:5]]


def section_a() -> bool:
    say("\n[A] correctness")
    new, old, ref = CupyStatsBackend(), CupyStatsBackend(_grad_source=LEGACY), TorchStatsBackend()
    ok = True
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        ts = cases(dtype)
        a, b, r = new.grad_stats(ts).clone(), old.grad_stats(ts).clone(), ref.grad_stats_exact(ts)
        ok &= check(f"{str(dtype)[6:]:8} default == v0 bit for bit", torch.equal(a, b),
                    "" if torch.equal(a, b) else f"max diff {(a - b).abs().max().item():.3g}")
        exact = torch.equal(a[:, 2:], r[:, 2:])
        scale = torch.stack([t.double().nan_to_num(0.0, 0.0, 0.0).abs().sum() for t in ts])  # |x| sums: cancellation
        rel = max(((a[:, 0] - r[:, 0]).abs() / scale.clamp_min(1e-300)).max().item(),
                  ((a[:, 1] - r[:, 1]).abs() / r[:, 1].clamp_min(1e-300)).max().item())
        ok &= check(f"{str(dtype)[6:]:8} counts/hist/absmax == reference, sums rel {rel:.1e}", exact and rel < 1e-6)
        for defs in (("-DDSN_FAST=0",), ("-DDSN_FAST=1",), ("-DDSN_VOTE=0",), ("-DDSN_MINB=1",)):
            v = CupyStatsBackend(_defines=defs).grad_stats(ts).clone()
            ok &= check(f"{str(dtype)[6:]:8} {defs[0]} == default", torch.equal(v, a))
    ws = [torch.randn(s, device="cuda") for s in [(300, 200), (1001,), (7, 3, 3, 3)]]
    snap = new.snapshot(ws)
    for w in ws:
        w.add_(torch.randn_like(w) * 1e-3 * (torch.rand_like(w) < 0.5))
    plain = new.update_stats(snap, ws).clone()
    carried = new.update_stats(snap, ws, carry=True).clone()
    again = new.update_stats(snap, ws).clone()  # snapshot now holds the new weights
    ok &= check("update carry == plain; afterwards the snapshot holds the new weights",
                torch.equal(plain, carried) and bool((again[:, 0] == 0).all()) and bool((again[:, 2] == 0).all()))
    return ok


# ------------------------------------------------------------------------------------ B
VARIANTS = {"v0 (previous)": dict(_grad_source=LEGACY), "default": {}, "FAST=1 (no bf16 pairs)": dict(_defines=("-DDSN_FAST=1",)),
            "FAST=0 (general only)": dict(_defines=("-DDSN_FAST=0",)), "VOTE=0": dict(_defines=("-DDSN_VOTE=0",)),
            "MINB=1": dict(_defines=("-DDSN_MINB=1",)), "MINB=6": dict(_defines=("-DDSN_MINB=6",)),
            "no hist (diag)": dict(_defines=("-DDSN_HIST_MODE=2",))}


def section_b(total: int, rounds: int) -> None:
    say(f"\n[B] grad_stats bandwidth, {total:.3g} elements in 300 tensors; GB/s (% of torch.sum), medians of "
        f"{rounds} interleaved rounds")
    for label, dtype, zeros in (("bf16", torch.bfloat16, False), ("fp32", torch.float32, False),
                                ("bf16 10% zeros", torch.bfloat16, True)):
        flat = torch.empty(total, dtype=dtype, device="cuda")
        flat.normal_(generator=torch.Generator(device="cuda").manual_seed(0))
        if zeros:
            flat[::10] = 0
        ts = list(torch.split(flat, split_sizes(total, 300)))
        nbytes = total * flat.element_size()
        fns: dict[str, Callable[[], Any]] = {"torch.sum": lambda: torch.sum(flat)}
        for name, kw in VARIANTS.items():
            be = CupyStatsBackend(**kw)
            fns[name] = lambda be=be: be.grad_stats(ts)
        ms = interleaved(fns, rounds)
        ref = nbytes / ms["torch.sum"] / 1e6
        say(f"  {label:15} torch.sum {ref:5.0f} | " + " | ".join(
            f"{k} {nbytes / v / 1e6:5.0f} ({100 * nbytes / v / 1e6 / ref:4.1f}%)" for k, v in ms.items() if k != "torch.sum"))
        del ts, flat, fns
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------ C
def host_us(fn: Callable[[int], Any], n: int, *, e2e: bool = False) -> float:
    """Median microseconds per call over 5 blocks of n calls: host time of the issue only, or with
    ``e2e`` host + device (synchronised at the end of each block)."""
    out = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        if e2e:
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) / n * 1e6)
    torch.cuda.synchronize()
    return statistics.median(out)


def section_c(n: int) -> None:
    say("\n[C] host path per call, microseconds (host = issue only; e2e = host + GPU with the caller's pinned copy)")
    for label, shapes in (("resnet50 161", [t.shape for t in resnet50_like()]), ("gpt2 148", gpt2_shapes())):
        base = [torch.randn(s, device="cuda") * 1e-3 for s in shapes]
        fresh = [[t.detach() for t in base] for _ in range(64)]  # new objects each step, same storage
        pool = [[t.clone() for t in base] for _ in range(2)]  # new objects and alternating pointers
        moving = [[t.detach() for t in pool[i % 2]] for i in range(64)]
        be = CupyStatsBackend()
        pinned = torch.empty(len(base), 69, dtype=torch.float64, pin_memory=True)

        def old_call(ts):  # the previous host path: ids + pointers, full layout key, cupy argument tuple
            ptrs = tuple(map(torch.Tensor.data_ptr, ts))
            tuple(map(id, ts))
            plan = be._grad_plans._lookup(ts, ptrs)  # layout key, hash, LRU
            dp = plan.device_pointers(ptrs)
            be._launch(plan, "dsn_grad_stats", plan.head + (dp[1], plan.chunk) + plan.grad_bufs
                       + (plan.grad_out.data_ptr(),))
            return plan.grad_out

        def with_copy(f):
            return lambda i: pinned.copy_(f(i), non_blocking=True)

        calls = {"same tensors": lambda i: be.grad_stats(base), "new objects (set_to_none)": lambda i: be.grad_stats(fresh[i % 64]),
                 "new objects, pointers alternate": lambda i: be.grad_stats(moving[i % 64]),
                 "previous path, new objects": lambda i: old_call(fresh[i % 64])}
        for f in calls.values():
            for i in range(20):
                f(i)
        say(f"  {label} tensors")
        for k, f in calls.items():
            say(f"    {k:34} host {host_us(f, n):7.1f}   e2e+copy {host_us(with_copy(f), n, e2e=True):7.1f}")
        cache = be._grad_plans
        plan, dp = cache.get(base)
        args = plan.head + (dp[1], plan.chunk) + plan.grad_bufs + (plan.grad_out.data_ptr(),)
        parts = {"lookup, path 1 (same objects)": lambda i: cache.get(base),
                 "lookup, path 2 (new objects)": lambda i: cache.get(fresh[i % 64]),
                 "lookup, full key (path 3)": lambda i: cache._lookup(fresh[i % 64], tuple(map(torch.Tensor.data_ptr, fresh[i % 64]))),
                 "launch, packed parameters": lambda i: be._launch_packed(plan, "dsn_grad_stats", args, ((2, dp[1]),)),
                 "launch, cupy argument tuple": lambda i: be._launch(plan, "dsn_grad_stats", args),
                 "pinned copy only": lambda i: pinned.copy_(plan.grad_out, non_blocking=True)}
        say("    " + " | ".join(f"{k} {host_us(f, n):.1f}" for k, f in parts.items()))
        def burst() -> None:
            for _ in range(100):
                be._launch_packed(plan, "dsn_grad_stats", args, ((2, dp[1]),))

        kern = statistics.median([events_ms(burst) for _ in range(5)]) * 10  # us per launch, back to back
        old = CupyStatsBackend(_grad_source=LEGACY)
        old.grad_stats(base)
        op, odp = old._grad_plans.get(base)
        oargs = op.head + (odp[1], op.chunk) + op.grad_bufs + (op.grad_out.data_ptr(),)
        okern = statistics.median([events_ms(lambda: [old._launch_packed(op, "dsn_grad_stats", oargs, ((2, odp[1]),))
                                                      for _ in range(100)]) for _ in range(5)]) * 10
        say(f"    kernel only, 100 launches back to back: {kern:.1f} us per launch (previous kernel {okern:.1f} us)"
            f"  hits {cache.hits}  builds {cache.builds}")
        from dsnotebook.kernels import layout as L

        sweep = {}
        orig = L.choose_chunk
        try:
            for chunk in (8192, 16384, 32768, 65536):
                L.choose_chunk = lambda total, c=chunk: c
                bc = CupyStatsBackend()
                bc.grad_stats(base)
                cp_, cd = bc._grad_plans.get(base)
                ca = cp_.head + (cd[1], cp_.chunk) + cp_.grad_bufs + (cp_.grad_out.data_ptr(),)
                sweep[chunk] = statistics.median([events_ms(lambda: [bc._launch_packed(cp_, "dsn_grad_stats", ca, ((2, cd[1]),))
                                                                     for _ in range(100)]) for _ in range(5)]) * 10
        finally:
            L.choose_chunk = orig
        say("    chunk sweep (us per launch, back to back): " + " | ".join(f"{c // 1024}Ki {t:.1f}" for c, t in sweep.items())
            + f"  (chosen: {L.choose_chunk(sum(t.numel() for t in base)) // 1024}Ki)")
        del base, fresh, pool, moving
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------ D
def section_d(rounds: int) -> None:
    say(f"\n[D] update statistics, GPT-2 124M fp32 weights (148 tensors); GPU ms per call, medians of {rounds} rounds")
    ws = [torch.randn(s, device="cuda") * 0.02 for s in gpt2_shapes()]
    gs = [torch.randn_like(w) * 1e-4 for w in ws]
    numel = sum(w.numel() for w in ws)
    be = CupyStatsBackend()
    snap = be.snapshot(ws)
    flat = torch.randn(numel, device="cuda")
    flat2 = torch.randn(numel, device="cuda")
    ms = interleaved({"snapshot (r+w 8 B)": lambda: be.snapshot(ws), "update_stats (2 reads, 8 B)": lambda: be.update_stats(snap, ws),
                      "update carry (2 r + 1 w, 12 B)": lambda: be.update_stats(snap, ws, carry=True),
                      "grad_stats fp32 (4 B)": lambda: be.grad_stats(gs), "torch clone (copy peak, 8 B)": lambda: flat.clone(),
                      "torch.sum 2 buffers (read peak, 8 B)": lambda: (flat.sum(), flat2.sum())}, rounds)
    for k, v in ms.items():
        say(f"  {k:38} {v:7.3f} ms  {numel * int(k.split('(')[-1].split(' B')[0].split()[-1]) / v / 1e6:6.0f} GB/s")
    budget = GPT2_STEP_MS * 10  # 1% in microseconds
    g, s, u, c = (1e3 * ms[k] for k in ("grad_stats fp32 (4 B)", "snapshot (r+w 8 B)", "update_stats (2 reads, 8 B)",
                                        "update carry (2 r + 1 w, 12 B)"))
    say(f"  per step, GPU us (1% of a {GPT2_STEP_MS} ms step = {budget:.0f} us):")
    for label, t in (("grads only", g), ("grads + exact updates (today)", g + s + u), ("grads + carry updates", g + c),
                     ("grads + exact updates every 4th step", g + (s + u) / 4), ("grads + carry updates every 4th", g + c / 4),
                     ("grads + exact updates every 10th", g + (s + u) / 10)):
        say(f"    {label:40} {t:7.0f} us = {100 * t / 1e3 / GPT2_STEP_MS:5.2f}% of the step")
    # could the snapshot hide behind the backward pass? a GEMM workload with and without a concurrent snapshot
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    side = torch.cuda.Stream()

    def work():
        for _ in range(8):
            a @ a

    def work_then_snap():
        work()
        be.snapshot(ws)

    def work_with_side_snap():
        ev = torch.cuda.current_stream().record_event()
        side.wait_event(ev)
        with torch.cuda.stream(side):
            be.snapshot(ws)
        work()
        torch.cuda.current_stream().wait_stream(side)

    ov = interleaved({"gemm": work, "gemm then snapshot": work_then_snap, "gemm + snapshot on side stream": work_with_side_snap},
                     rounds)
    say(f"  GEMM workload {ov['gemm']:.2f} ms: + snapshot after it {1e3 * (ov['gemm then snapshot'] - ov['gemm']):+.0f} us, "
        f"+ snapshot on a side stream {1e3 * (ov['gemm + snapshot on side stream'] - ov['gemm']):+.0f} us")
    del ws, gs, flat, flat2, snap, a
    torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------ E
def section_e(rounds: int, steps: int) -> None:
    from _gpu_e2e import _block, _gpt2_step

    from dsnotebook import ModelTracer
    from dsnotebook.params.schedule import Schedule
    from dsnotebook.params.updates import UpdateStatsProbe

    model, opt, step = _gpt2_step(bf16=True)

    def tracer(**upd):
        probes = [] if upd.get("off") else [UpdateStatsProbe(Schedule(1), **upd)]
        return ModelTracer(model, opt, backend="cupy", track_updates=False, probes=probes, capture_graph=False)

    arms = {"grads only": tracer(off=True), "grads + updates (exact)": tracer(), "grads + updates carry": tracer(carry=True),
            "grads + updates every 4th": tracer(stride=4)}
    _block(step, 5)
    for tr in arms.values():
        with tr:
            _block(step, 5)  # plans, kernels
    ratios: dict[str, list[float]] = {k: [] for k in arms}
    plain = []
    for r in range(rounds):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        base = _block(step, steps)
        plain.append(base)
        for k in order:
            with arms[k]:
                t = _block(step, steps)
            ratios[k].append(t / base)
        plain.append(_block(step, steps))
    say(f"\n[E] GPT-2 124M bf16 8x512 AdamW, {rounds} rounds of {steps} steps: plain {statistics.median(plain):.2f} ms "
        f"(IQR of plain blocks {statistics.quantiles(plain, n=4)[0]:.2f}..{statistics.quantiles(plain, n=4)[2]:.2f})")
    for k, v in ratios.items():
        q = statistics.quantiles(v, n=4)
        say(f"  {k:28} {100 * (statistics.median(v) - 1):+6.2f}%  [IQR {100 * (q[0] - 1):+.2f}, {100 * (q[2] - 1):+.2f}]"
            + "".join(f"  snapshots reused {p.reused}" for p in arms[k].probes if isinstance(p, UpdateStatsProbe) and p.carry))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--only", default="A,B,C,D")
    ap.add_argument("--out", default=None, help="also write the table to DIR/kernel_variants.txt")
    args = ap.parse_args()
    if not (torch.cuda.is_available() and is_available()):
        sys.exit("needs a CUDA GPU and cupy")
    import cupy

    t0 = time.perf_counter()
    say(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  cupy {cupy.__version__}  CUDA {torch.version.cuda}")
    only = set(args.only.split(","))
    for key, fn in (("A", section_a), ("B", lambda: section_b(10**7 if args.quick else 10**9, 5 if args.quick else 15)),
                    ("C", lambda: section_c(50 if args.quick else 300)), ("D", lambda: section_d(5 if args.quick else 15)),
                    ("E", lambda: section_e(3 if args.quick else 12, 10))):
        if key in only:
            try:
                fn()
            except Exception as exc:  # keep the other sections
                import traceback

                say(f"section {key} FAILED: {exc!r}\n{traceback.format_exc()}")
    say(f"\n{time.perf_counter() - t0:.0f} s")
    if args.out:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(args.out) / "kernel_variants.txt").write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
