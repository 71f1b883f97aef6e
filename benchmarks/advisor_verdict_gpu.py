"""Issue 15 item 6: the advisor's bf16 verdict on ResNet-50 next to a direct measurement of the same change.

    PYTHONPATH=. python3 benchmarks/advisor_verdict_gpu.py [--rounds 5] [--steps 8] [--out DIR] [--cudnn-benchmark]

One process, torchvision ResNet-50, batch 64 of 3x224x224 (random), SGD with momentum, the
user's loop of ``benchmarks/advisor_gpu.py``: a DataLoader with ``num_workers=0`` over a host
tensor and a step that moves the batch with ``x.cuda(non_blocking=True)`` (pageable memory)
and converts it to channels_last when the model is.  cudnn.benchmark as the user left it (off).

1. Facts: the loader's ``next()`` on the host, the pageable host-to-device copy, flags.
2. The advisor: 12 traced steps, ``tracer.advise(data=loader)``; each speed suggestion for
   precision/layout verified with ``suggestion.verify(step, data=loader)`` exactly as a user
   would, plus bf16 autocast alone (NCHW) for comparison.  A forward hook on the first and the last
   convolution records, per verification arm, whether autocast was on, the dtype the
   convolutions produced and whether their weights were channels_last: proof that the change
   reached the model the step uses.
3. Direct: the same step function, interleaved blocks (order rotating each round), arms
   fp32 / bf16 autocast / bf16 autocast + channels_last / fp32 + channels_last, each under
   three data modes: ``resident`` (batches already on the GPU: how the issue's 32.8 ms and
   20-23 ms were measured), ``host`` (batches loaded before the clock, copied by the step: what
   the advisor now times) and ``loader`` (``next(loader)`` inside the timed loop: the user's
   loop as it is, what the advisor timed before).  Ratios are fp32 / arm in the same round and mode.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dsnotebook import ModelTracer, detect_gpu
from dsnotebook.advisor.variants import Variant, to_channels_last
from dsnotebook.advisor.verify import verify_variant
from dsnotebook.core.jsonsafe import to_json


def forever(loader):
    """Batches across epoch ends (a new epoch costs what it costs in training)."""
    while True:
        yield from loader


def say(msg: str) -> None:
    print(msg, flush=True)


def med_iqr(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return statistics.median(xs), q[0], q[2]


class LayoutProbe:
    """Forward hooks recording (autocast on, output dtype, weight channels_last) per label."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.label = "idle"
        self.seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, module, args, out) -> None:
        cl = module.weight.is_contiguous(memory_format=torch.channels_last)
        on = torch.is_autocast_enabled(out.device.type) if out.device.type != "cuda" else torch.is_autocast_enabled()
        self.seen[self.label][(on, str(out.dtype).replace("torch.", ""),
                               "NHWC" if cl else "NCHW")] += 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8, help="steps per direct block")
    ap.add_argument("--verify-steps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--modes", default="resident,host,loader", help="direct data modes, comma-separated")
    ap.add_argument("--arms", default="", help="direct arms, comma-separated (default: all)")
    ap.add_argument("--skip-tf32", action="store_true", help="do not verify the TF32 suggestion")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True first")
    ap.add_argument("--smoke", action="store_true", help="a tiny conv net on the CPU: checks the script runs")
    args = ap.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("advisor_verdict_gpu.py needs a CUDA GPU (or --smoke for a CPU dry run)")
    dev = "cpu" if args.smoke else "cuda"

    def sync() -> None:
        if dev == "cuda":
            torch.cuda.synchronize()

    t_start = time.time()
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    hw = detect_gpu()
    say(str(hw))
    say(f"cudnn.benchmark={torch.backends.cudnn.benchmark}, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    torch.manual_seed(0)
    if args.smoke:
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                    torch.nn.Conv2d(8, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(8, 10))
        data = TensorDataset(torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))
        batch_size = 8
    else:
        import torchvision

        model = torchvision.models.resnet50(weights=None).cuda()
        data = TensorDataset(torch.randn(512, 3, 224, 224), torch.randint(0, 1000, (512,)))
        batch_size = 64
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)

    inner_amp = {"on": False}  # direct arms only: autocast around forward + loss inside the step

    def step(batch):
        x, y = batch
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if next(model.parameters()).is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        # (never autocast(enabled=False) here: nested, it would switch an outer autocast off; run 2 did)
        with torch.autocast(dev, dtype=torch.bfloat16) if inner_amp["on"] else contextlib.nullcontext():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    # ---- 1. facts
    it = forever(loader)
    loads, copies = [], []
    for _ in range(6):
        t0 = time.perf_counter()
        b = next(it)
        loads.append(time.perf_counter() - t0)
        sync()
        t0 = time.perf_counter()
        b[0].to(dev, non_blocking=True)
        sync()
        copies.append(time.perf_counter() - t0)
    say(f"\n[1] host: loader next() {1e3 * statistics.median(loads):.1f} ms, pageable H2D copy of the batch "
        f"{1e3 * statistics.median(copies):.1f} ms (medians of 6)")

    # ---- 2. the advisor
    with ModelTracer(model, opt, profile_every=2, capture_graph=False) as tracer:
        it = forever(loader)
        for _ in range(12):
            step(next(it))
    sync()
    from dsnotebook.perf import measures

    ph = measures.phases(tracer.run)
    say(f"\n[2] traced: {1e3 * ph.get('step', 0):.1f} ms/step; "
        + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in ph.items() if k not in ("step", "step_traced")))
    suggestions = tracer.advise(hardware=hw, data=loader)
    say("    suggestions: " + ", ".join(f"{s.id} [{s.variant.name if s.variant else '-'}]" for s in suggestions))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    probe = LayoutProbe([convs[0], convs[-1]])
    report: dict = {"hardware": hw.to_dict(), "advisor": {}, "direct": {}}
    amp = lambda: torch.autocast(dev, dtype=torch.bfloat16)  # noqa: E731
    todo = [(s.id, s.variant, "auto", s.target) for s in suggestions
            if s.rule in ("mixed_precision", "channels_last") + (() if args.skip_tf32 else ("tf32",)) and s.can_verify]
    mp = next((s.variant for s in suggestions if s.rule == "mixed_precision" and s.can_verify), None)
    if mp is not None:  # the advisor before the fix: the step timed with the loading of its batch
        todo.append(("mp_loop_timed", mp, "loop", "speed"))
    todo += [("autocast_alone", Variant("autocast bfloat16 (alone, NCHW)", step_context=amp), "auto", "speed"),
             ("cl_alone", Variant("channels_last (alone, fp32)",
                                              enter=lambda c: to_channels_last(c.model, c.optimizer)), "auto",
              "speed")]
    for key, variant, timing, target in todo:
        t1 = time.time()
        # label the probe by arm: wrap the variant's step context and the baseline's absence of it
        inner_ctx, inner_enter = variant.step_context, variant.enter

        @contextlib.contextmanager
        def var_ctx(inner_ctx=inner_ctx, key=key):
            old, probe.label = probe.label, f"{key}:variant"
            try:
                with (inner_ctx() if inner_ctx else contextlib.nullcontext()):
                    yield
            finally:
                probe.label = old
        probe.label = f"{key}:baseline"
        labelled = Variant(variant.name, enter=inner_enter, step_context=var_ctx, make_data=variant.make_data,
                           work_scale=variant.work_scale, min_warmup=variant.min_warmup)
        try:
            r = verify_variant(labelled, step, model=model, optimizer=opt, data=loader, steps=args.verify_steps,
                               warmup=2, target=target, timing=timing)
            say(f"\n    {key}: {r}  [{time.time() - t1:.0f} s]")
            report["advisor"][key] = r.to_record()
        except Exception as exc:
            say(f"\n    {key}: verification failed: {type(exc).__name__}: {exc}")
        probe.label = "idle"
        for lab in (f"{key}:baseline", f"{key}:variant"):
            say(f"      forwards seen {lab}: " + ", ".join(
                f"autocast={a} out={d} weight={f}: {n}" for (a, d, f), n in sorted(probe.seen[lab].items())))
    probe.remove()

    # ---- 3. direct, interleaved
    # name: (autocast around the whole step as the advisor applies it, channels_last, optimizer state
    # converted with the parameters, autocast around forward + loss only as in a hand-written loop)
    arms = {"fp32": (False, False, False, False), "bf16": (True, False, False, False),
            "bf16+CL": (True, True, True, False), "bf16+CL/fwd": (False, True, True, True),
            "bf16+CL/stale": (True, True, False, False), "bf16/fwd": (False, False, False, True),
            "fp32+CL": (False, True, True, False)}
    if args.arms:
        arms = {k: v for k, v in arms.items() if k in args.arms.split(",") or k == "fp32"}
    it = forever(loader)
    host_batches = [next(it) for _ in range(args.steps)]
    gpu_batches = [(x.to(dev), y.to(dev)) for x, y in host_batches]
    sync()
    host_s: dict[tuple[str, str], list[float]] = collections.defaultdict(list)

    def block(arm: str, mode: str, n: int) -> float:
        amp, cl, match, inner = arms[arm]
        undo = to_channels_last(model, opt if match else None) if cl else None
        inner_amp["on"] = inner
        issue = 0.0
        try:
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
                it = forever(loader) if mode == "loader" else None
                src = gpu_batches if mode == "resident" else host_batches
                b = next(it) if it is not None else src[0]
                sync()
                t0 = time.perf_counter()
                for i in range(n):
                    h = time.perf_counter()
                    step(b)
                    issue += time.perf_counter() - h
                    b = next(it) if it is not None else src[(i + 1) % len(src)]
                sync()
                host_s[(mode, arm)].append(issue / n)
                return (time.perf_counter() - t0) / n
        finally:
            inner_amp["on"] = False
            if undo is not None:
                undo()

    modes = tuple(m for m in args.modes.split(",") if m in ("resident", "host", "loader"))
    for mode in modes:
        for arm in arms:
            block(arm, mode, 2)  # warm-up
    host_s.clear()
    times = {(m, a): [] for m in modes for a in arms}
    names = list(arms)
    for r in range(args.rounds):
        for mode in modes:
            order = names[r % len(names):] + names[:r % len(names)]
            for arm in order:
                times[(mode, arm)].append(block(arm, mode, args.steps))
    say(f"\n[3] direct, same process, {args.rounds} rounds x {args.steps} steps per block, order rotating")
    say(f"    {'mode':<9} {'arm':<14} {'ms/step':>8} {'host':>6}   speed-up vs fp32 (median [IQR] of per-round ratios)"
        "   [host: ms per step the Python thread spent inside step(), copy included]")
    for mode in modes:
        for arm in names:
            t = times[(mode, arm)]
            ratios = [a / b for a, b in zip(times[(mode, 'fp32')], t)]
            m, lo, hi = med_iqr(ratios)
            say(f"    {mode:<9} {arm:<14} {1e3 * statistics.median(t):8.2f} {1e3 * statistics.median(host_s[(mode, arm)]):6.2f}"
                f"   x{m:.2f} [{lo:.2f}-{hi:.2f}]")
            report["direct"][f"{mode}/{arm}"] = {"ms": [1e3 * v for v in t], "speedup": m, "iqr": [lo, hi]}

    # ---- 5. the optimizer step alone, NHWC parameters: momentum left NCHW vs converted along
    say("\n[5] opt.step() alone on the NHWC model: host ms to issue it, GPU ms (events); median of 10")
    for label, match in (("momentum NCHW (left as it was)", False), ("momentum NHWC (converted along)", True)):
        undo = to_channels_last(model, opt if match else None)
        try:
            step(gpu_batches[0])  # NHWC gradients
            hs, gs = [], []
            for _ in range(10):
                sync()
                ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if dev == "cuda" else None
                if ev:
                    ev[0].record()
                h = time.perf_counter()
                opt.step()
                hs.append(time.perf_counter() - h)
                if ev:
                    ev[1].record()
                    ev[1].synchronize()
                    gs.append(ev[0].elapsed_time(ev[1]) / 1e3)
            say(f"    {label:<32} host {1e3 * statistics.median(hs):6.2f} ms"
                + (f", GPU {1e3 * statistics.median(gs):6.2f} ms" if gs else ""))
            report["direct"][f"opt_step/{'matched' if match else 'stale'}"] = {"host_ms": 1e3 * statistics.median(hs)}
        finally:
            undo()

    # ---- side by side
    say("\n[4] verdict vs direct (same change, same step)")
    for key, rec in report["advisor"].items():
        direct = ("bf16+CL" if "channels_last" in rec["variant"] else "bf16") if key.startswith("m") else \
            {"autocast_alone": "bf16", "channels_last": "fp32+CL", "cl_alone": "fp32+CL"}.get(key)
        loop = (rec.get("extra") or {}).get("with_loading") or {}
        line = f"    {key:<15} {rec['extra'].get('timing', '?'):<4} advisor x{rec['speedup']:.2f} ({rec['verdict']})"
        if loop:
            line += f", loop with loading x{loop['speedup']:.2f}"
        if direct:
            line += " | direct " + ", ".join(f"{m} x{report['direct'][f'{m}/{direct}']['speedup']:.2f}" for m in modes
                                             if f"{m}/{direct}" in report["direct"])
        say(line)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "advisor_verdict_gpu.json").write_text(json.dumps(to_json(report), indent=1, allow_nan=False))
    say(f"\nwritten: {out / 'advisor_verdict_gpu.json'}; total {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
