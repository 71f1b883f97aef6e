"""Cost of the dataflow features on the GPU: activations every 10, the default non-finite mode, profiling every 10.

    PYTHONPATH=. python3 benchmarks/dataflow_gpu.py [--rounds 8] [--steps 20] [--cases resnet50-fp32,...]
    PYTHONPATH=. python3 benchmarks/dataflow_gpu.py --smoke      # CPU, a tiny model: checks the script runs

Cases: torchvision ResNet-50 fp32 batch 64 (SGD), ResNet-50 bf16 autocast + channels_last
batch 64, GPT-2 124M (transformers ``GPT2LMHeadModel(GPT2Config())``, random init) bf16
autocast 8x512 with AdamW.  Arms, each a ModelTracer with gradient statistics only at
step 0 (``every=10**9``: the sentinel runs every step), no update statistics, no graph:

    base        nothing else (what every arm shares)
    act10       + activations_every=10
    nonfinite   + nonfinite="cheap" (the default mode)
    prof10      + profile_every=10

Each round times one block of ``--steps`` steps per arm and one plain block (no tracer),
in an order that alternates between rounds; per round the ratio arm/plain and arm/base
are taken; medians and interquartile ranges are printed ("vs base" is the feature's own
cost).  Blocks are whole multiples of 10 steps, so every block holds the same number of
sampled steps.  The garbage collector's time and passes per arm come from gc.callbacks.

Then the host cost, on a launch-bound variant of the same model (batch 2, or 1x64 tokens:
the same modules and hooks, but the GPU never holds the host back, so a synchronised
step's wall time is host time): per arm, steps interleaved with plain steps; the extra
of sampled steps and of the others over the plain median, amortised per step at every
10 (sampled/10 + other x 0.9); and dsnotebook's own host time by kind (probe calls at
the step boundaries incl. the host copies' callbacks, module forward hooks, backward
hooks, saved-tensor pack hooks) from one instrumented pass.  The torch side of a hook
(the module call's slow path when any hook exists) shows only in the wall-time extra.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import statistics
import sys
import threading
import time
from typing import Any, Callable

import torch

from _gpu_e2e import _gpt2_step, _resnet_step  # noqa: E402

BASE = dict(every=10**9, track_updates=False, capture_graph=False, nonfinite="off", keep=64)
ARMS = {"base": {}, "act10": dict(activations_every=10), "nonfinite": dict(nonfinite="cheap"),
        "prof10": dict(profile_every=10)}


def _tiny_cnn(dev: str) -> tuple[Any, Any, Callable[[], None]]:
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).to(dev)
    x, y = torch.randn(8, 3, 16, 16, device=dev), torch.randint(0, 10, (8,), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return model, opt, step


CASES = {"resnet50-fp32": lambda d: _resnet_step(False, d), "resnet50-bf16cl": lambda d: _resnet_step(True, d),
         "gpt2-bf16": lambda d: _gpt2_step(True, d)}
# The same models at a size where every step is launch-bound (the GPU never holds the host
# back): per-step wall time is then host time, and the features' extra is their host cost.
SMALL = {"resnet50-fp32": lambda d: _resnet_step(False, d, 2), "resnet50-bf16cl": lambda d: _resnet_step(True, d, 2),
         "gpt2-bf16": lambda d: _gpt2_step(True, d, (1, 64))}
SMOKE = {"tiny-cnn": _tiny_cnn}


def _sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


class GcMeter:
    """Time and passes of the garbage collector while on."""

    def __init__(self) -> None:
        self.seconds, self.passes, self._t0 = 0.0, collections.Counter(), 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.passes[info["generation"]] += 1

    def reset(self) -> None:
        self.seconds, self.passes = 0.0, collections.Counter()


def block(step: Callable[[], None], n: int, dev: str) -> float:
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    _sync(dev)
    return (time.perf_counter() - t0) / n * 1e3


def _q(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return 100 * (statistics.median(xs) - 1), 100 * (q[0] - 1), 100 * (q[2] - 1)


class HostMeter:
    """Host time inside dsnotebook's hooks, by kind, while installed (class methods patched)."""

    KINDS = {"module hooks": [("dsnotebook.core.hooks", None, "_global_pre"), ("dsnotebook.core.hooks", None, "_global_post"),
                              ("dsnotebook.dataflow.replay", "StepCapture", "_pre"),
                              ("dsnotebook.dataflow.replay", "StepCapture", "_post"),
                              ("dsnotebook.perf.timing", "TimingProbe", "_root_enter"),
                              ("dsnotebook.perf.timing", "TimingProbe", "_root_pre"),
                              ("dsnotebook.perf.timing", "TimingProbe", "_root_post"),
                              ("dsnotebook.perf.timing", "TimingProbe", "_root_leave")],
             "backward hooks": [("dsnotebook.perf.spans", "GradMark", "__call__")],
             "pack hooks": [("dsnotebook.perf.memory", "SavedTensorMeter", "_pack")]}

    def __init__(self) -> None:
        self.ns: collections.Counter = collections.Counter()
        self._undo: list[Callable[[], None]] = []
        self._local = threading.local()

    def _wrap(self, owner: Any, attr: str, kind: str) -> None:
        orig = getattr(owner, attr, None)
        if orig is None:
            return
        meter = self

        def timed(*a: Any, **k: Any) -> Any:
            if getattr(meter._local, "busy", False):
                return orig(*a, **k)
            meter._local.busy = True
            t0 = time.perf_counter_ns()
            try:
                return orig(*a, **k)
            finally:
                meter.ns[kind] += time.perf_counter_ns() - t0
                meter._local.busy = False

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, orig))

    def install(self, tracer: Any) -> None:
        import importlib

        for kind, targets in self.KINDS.items():
            for mod, cls, attr in targets:
                m = importlib.import_module(mod)
                owner = getattr(m, cls, None) if cls else m
                if owner is not None:
                    self._wrap(owner, attr, kind)
        self._wrap(tracer, "_call", "probe calls")
        if hasattr(tracer, "_copier"):
            self._wrap(tracer._copier, "poll", "probe calls")

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()


@contextlib.contextmanager
def _host_clock(on: bool) -> Any:
    """While on, the timing probe attaches with a host clock (perf_counter marks, no CUDA events)."""
    if not on:
        yield
        return
    import dsnotebook.perf.timing as timing

    orig = timing.MarkClock
    timing.MarkClock = lambda device: orig("cpu")
    try:
        yield
    finally:
        timing.MarkClock = orig


def host_pass(model: Any, opt: Any, step: Callable[[], None], kw: dict, n: int, dev: str) -> dict[str, Any]:
    """Instrumented steps under a fresh tracer: dsnotebook host time by kind (us over ``n`` steps)."""
    from dsnotebook import ModelTracer

    meter = HostMeter()
    tracer = ModelTracer(model, opt, **{**BASE, **kw})
    meter.install(tracer)
    try:
        with tracer:
            block(step, 10, dev)
            meter.ns.clear()
            block(step, n, dev)
    finally:
        meter.remove()
    warn = [e["detail"] for e in tracer.run.events if e["kind"] == "warning" and "modified in place" not in e["detail"]]
    return {"us": {k: v / 1e3 for k, v in meter.ns.items()}, "warnings": warn[:3], "tracer": tracer}


def synced_steps(step: Callable[[], None], n: int, dev: str, tracer: Any = None) -> list[tuple[bool, float]]:
    """(sampled?, us) per step, each step synchronised: on a launch-bound step this is host time."""
    out = []
    for _ in range(n):
        _sync(dev)
        t0 = time.perf_counter()
        step()
        _sync(dev)
        us = (time.perf_counter() - t0) * 1e6
        s = tracer.step_count if tracer is not None else -1  # the step just run (the count moves on at the next one)
        out.append((s % 10 == 0, us))
    return out


def host_section(name: str, make: Callable[[str], Any], args: argparse.Namespace, dev: str) -> None:
    """Launch-bound variant of the case: each feature's host cost per sampled and other step."""
    from dsnotebook import ModelTracer

    model, opt, step = make(dev)
    block(step, 10, dev)
    print(f"   launch-bound variant (same modules, tiny batch): per-step wall time, synchronised, "
          f"{args.host_rounds} rounds x {args.host_steps} steps per arm, interleaved with plain")
    print(f"   {'arm':<10}{'plain us':>9}{'sampled +us':>12}{'other +us':>10}{'amortised +us/step':>20}  "
          "dsnotebook host us per sampled step (amortised per step), by kind")
    for arm, kw in ARMS.items():
        tracer = ModelTracer(model, opt, **{**BASE, **kw})
        with tracer:
            block(step, 10, dev)
        plain: list[float] = []
        traced: list[tuple[bool, float]] = []
        for r in range(args.host_rounds):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                if on:
                    with tracer:
                        traced += synced_steps(step, args.host_steps, dev, tracer)
                else:
                    plain += [us for _, us in synced_steps(step, args.host_steps, dev)]
        p = statistics.median(plain)
        smp = [us - p for s, us in traced if s]
        oth = [us - p for s, us in traced if not s]
        ds, do = statistics.median(smp), statistics.median(oth)
        h = host_pass(model, opt, step, kw, 20, dev)
        parts = ", ".join(f"{k} {v / 2:.0f} ({v / 20:.0f})" for k, v in sorted(h["us"].items()))
        print(f"   {arm:<10}{p:>9.0f}{ds:>+12.0f}{do:>+10.0f}{ds / 10 + do * 0.9:>+20.0f}  {parts}")
        if h["warnings"]:
            print(f"      warnings: {h['warnings']}")
    del model, opt, step
    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()


def run_case(name: str, make: Callable[[str], Any], args: argparse.Namespace, dev: str) -> None:
    from dsnotebook import ModelTracer
    from dsnotebook.core.hooks import global_hooks_installed

    model, opt, step = make(dev)
    block(step, 10, dev)
    tracers = {a: ModelTracer(model, opt, **{**BASE, **kw}) for a, kw in ARMS.items()}
    if args.diag:  # profiling with host-clock marks instead of CUDA events: the events' own cost
        tracers["prof10-hostclk"] = ModelTracer(model, opt, **{**BASE, **ARMS["prof10"]})
    for a, t in tracers.items():
        with _host_clock(a.endswith("hostclk")), t:
            block(step, 10, dev)  # plans, kernels, workspaces, first sampled steps
    gcm = GcMeter()
    times: dict[str, list[float]] = collections.defaultdict(list)
    gc_s: dict[str, float] = collections.Counter()
    gc_n: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    order = ["plain", *tracers]
    t_start = time.perf_counter()
    for r in range(args.rounds):
        for arm in (order if r % 2 == 0 else order[::-1]):
            gcm.reset()
            if arm == "plain":
                times[arm].append(block(step, args.steps, dev))
            else:
                with _host_clock(arm.endswith("hostclk")), tracers[arm]:
                    times[arm].append(block(step, args.steps, dev))
            gc_s[arm] += gcm.seconds
            gc_n[arm].update(gcm.passes)
    gc.callbacks.remove(gcm._cb)
    plain = times["plain"]
    q = statistics.quantiles(plain, n=4)
    print(f"\n== {name}: plain {statistics.median(plain):.2f} ms/step (IQR {q[0]:.2f}..{q[2]:.2f}), "
          f"{args.rounds} rounds x {args.steps} steps per arm, {time.perf_counter() - t_start:.0f} s")
    print(f"   {'arm':<10}{'ms/step':>9}{'vs plain':>10}{'IQR':>18}{'vs base':>10}{'IQR':>18}{'gc ms/100 steps':>17}  gc passes")
    total_steps = args.rounds * args.steps
    for arm in order:
        ms = statistics.median(times[arm])
        vp = _q([a / p for a, p in zip(times[arm], plain)])
        vb = _q([a / b for a, b in zip(times[arm], times["base"])])
        print(f"   {arm:<10}{ms:>9.2f}{vp[0]:>+9.2f}%  [{vp[1]:+6.2f},{vp[2]:+6.2f}]{vb[0]:>+9.2f}%  "
              f"[{vb[1]:+6.2f},{vb[2]:+6.2f}]{1e3 * gc_s[arm] / total_steps * 100:>14.2f}   {dict(gc_n[arm])}")
    act = tracers["act10"].run.to_dataframe("activations")
    tm = tracers["prof10"].run.to_dataframe("timings")
    clock = next((p._clock for p in tracers["prof10"].probes if hasattr(p, "_clock")), None)
    print(f"   checks: activation rows per sampled step {len(act) / max(1, act.step.nunique()):.0f}; timing rows "
          f"{len(tm)} over {tm.step.nunique()} steps; CUDA events created {getattr(clock, 'created', '?')}; "
          f"global module hooks left {global_hooks_installed()}")
    del tracers, model, opt, step
    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block (a multiple of 10)")
    ap.add_argument("--host-rounds", type=int, default=2, help="rounds of the launch-bound host measurement")
    ap.add_argument("--host-steps", type=int, default=30, help="steps per block of the host measurement")
    ap.add_argument("--no-host", action="store_true", help="skip the launch-bound host measurement")
    ap.add_argument("--diag", action="store_true", help="also an arm profiling with host-clock marks (no CUDA events)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model: check that the script runs")
    args = ap.parse_args()
    dev = "cpu" if args.smoke else "cuda"
    cases = SMOKE if args.smoke else {c: CASES[c] for c in args.cases.split(",")}
    small = SMOKE if args.smoke else {c: SMALL[c] for c in args.cases.split(",")}
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}, gc objects {len(gc.get_objects())}, "
          f"gc thresholds {gc.get_threshold()}")
    t0 = time.perf_counter()
    for name, make in cases.items():
        run_case(name, make, args, dev)
        if not args.no_host:
            host_section(name, small[name], args, dev)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
