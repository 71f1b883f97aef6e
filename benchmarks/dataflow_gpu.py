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
sampled steps.

Then, per arm, one instrumented pass (not timed end to end): host time inside
dsnotebook's code per step, split into probe calls at the step boundaries (incl. the
host copies' callbacks), module forward hooks, backward (tensor) hooks and
saved-tensor pack hooks, as us per sampled step and amortised per step; host issue time
of each step (perf_counter around step() without synchronising; on a launch-bound step
this is what the GPU waits for) for sampled and other steps against plain steps; and the
garbage collector's time and passes (gc.callbacks).
"""
from __future__ import annotations

import argparse
import collections
import gc
import statistics
import sys
import threading
import time
from typing import Any, Callable

import torch

BASE = dict(every=10**9, track_updates=False, capture_graph=False, nonfinite="off", keep=64)
ARMS = {"base": {}, "act10": dict(activations_every=10), "nonfinite": dict(nonfinite="cheap"),
        "prof10": dict(profile_every=10)}


def _resnet(bf16: bool, dev: str) -> tuple[Any, Any, Callable[[], None]]:
    import torchvision

    model = torchvision.models.resnet50().to(dev)
    x = torch.randn(64, 3, 224, 224, device=dev)
    y = torch.randint(0, 1000, (64,), device=dev)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return model, opt, step


def _gpt2(dev: str, tiny: bool = False) -> tuple[Any, Any, Callable[[], None]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256) if tiny else GPT2Config()
    model = GPT2LMHeadModel(cfg).to(dev)
    ids = torch.randint(0, cfg.vocab_size, (2, 32) if tiny else (8, 512), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()

    return model, opt, step


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


CASES = {"resnet50-fp32": lambda d: _resnet(False, d), "resnet50-bf16cl": lambda d: _resnet(True, d),
         "gpt2-bf16": lambda d: _gpt2(d)}
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
             "backward hooks": [("dsnotebook.perf.spans", "BackwardSpan", "start"),
                                ("dsnotebook.perf.spans", "BackwardSpan", "finish")],
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
                owner = getattr(m, cls) if cls else m
                self._wrap(owner, attr, kind)
        self._wrap(tracer, "_call", "probe calls")
        if hasattr(tracer, "_copier"):
            self._wrap(tracer._copier, "poll", "probe calls")

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()


def host_pass(model: Any, opt: Any, step: Callable[[], None], kw: dict, n: int, dev: str) -> dict[str, Any]:
    """Instrumented steps under a fresh tracer: dsnotebook host time, per-step issue times."""
    from dsnotebook import ModelTracer

    meter = HostMeter()
    tracer = ModelTracer(model, opt, **{**BASE, **kw})
    meter.install(tracer)
    issue: dict[bool, list[float]] = {True: [], False: []}
    try:
        with tracer:
            block(step, 10, dev)
            meter.ns.clear()
            _sync(dev)
            for _ in range(n):
                s = tracer.step_count
                t0 = time.perf_counter()
                step()
                issue[s % 10 == 0].append((time.perf_counter() - t0) * 1e6)
            _sync(dev)
    finally:
        meter.remove()
    sampled = n // 10
    out = {k: v / 1e3 for k, v in meter.ns.items()}  # us in total over n steps
    warn = [e["detail"] for e in tracer.run.events if e["kind"] == "warning"]
    return {"us": out, "n": n, "sampled": sampled, "issue": issue, "warnings": warn[:3], "tracer": tracer}


def plain_issue(step: Callable[[], None], n: int, dev: str) -> list[float]:
    _sync(dev)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        out.append((time.perf_counter() - t0) * 1e6)
    _sync(dev)
    return out


def run_case(name: str, make: Callable[[str], Any], args: argparse.Namespace, dev: str) -> None:
    from dsnotebook import ModelTracer
    from dsnotebook.core.hooks import global_hooks_installed

    model, opt, step = make(dev)
    block(step, 10, dev)
    tracers = {a: ModelTracer(model, opt, **{**BASE, **kw}) for a, kw in ARMS.items()}
    for t in tracers.values():
        with t:
            block(step, 10, dev)  # plans, kernels, workspaces, first sampled steps
    gcm = GcMeter()
    times: dict[str, list[float]] = collections.defaultdict(list)
    gc_s: dict[str, float] = collections.Counter()
    gc_n: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    order = ["plain", *ARMS]
    t_start = time.perf_counter()
    for r in range(args.rounds):
        for arm in (order if r % 2 == 0 else order[::-1]):
            gcm.reset()
            if arm == "plain":
                times[arm].append(block(step, args.steps, dev))
            else:
                with tracers[arm]:
                    times[arm].append(block(step, args.steps, dev))
            gc_s[arm] += gcm.seconds
            gc_n[arm].update(gcm.passes)
    gc.callbacks.remove(gcm._cb)
    plain = times["plain"]
    print(f"\n== {name}: plain {statistics.median(plain):.2f} ms/step (IQR {statistics.quantiles(plain, n=4)[0]:.2f}.."
          f"{statistics.quantiles(plain, n=4)[2]:.2f}), {args.rounds} rounds x {args.steps} steps, "
          f"{time.perf_counter() - t_start:.0f} s")
    print(f"   {'arm':<10}{'ms/step':>9}{'vs plain':>10}{'IQR':>18}{'vs base':>10}{'IQR':>18}{'gc ms/100 steps':>17}  gc passes")
    total_steps = args.rounds * args.steps
    for arm in order:
        ms = statistics.median(times[arm])
        vp = _q([a / p for a, p in zip(times[arm], plain)])
        vb = _q([a / b for a, b in zip(times[arm], times["base"])])
        print(f"   {arm:<10}{ms:>9.2f}{vp[0]:>+9.2f}%  [{vp[1]:+6.2f},{vp[2]:+6.2f}]{vb[0]:>+9.2f}%  "
              f"[{vb[1]:+6.2f},{vb[2]:+6.2f}]{1e3 * gc_s[arm] / total_steps * 100:>14.2f}   {dict(gc_n[arm])}")
    pl = plain_issue(step, 40, dev)
    p_med = statistics.median(pl)
    print(f"   host: plain step issue {p_med:.0f} us (median); dsnotebook host time per sampled step / amortised "
          "per step, by kind; issue time of sampled and other steps minus plain")
    for arm, kw in ARMS.items():
        h = host_pass(model, opt, step, kw, args.host_steps, dev)
        tot = sum(h["us"].values())
        parts = ", ".join(f"{k} {v / h['sampled']:.0f}" for k, v in sorted(h["us"].items()))
        iss = h["issue"]
        ds = statistics.median(iss[True]) - p_med if iss[True] else float("nan")
        du = statistics.median(iss[False]) - p_med if iss[False] else float("nan")
        tr = h["tracer"]
        extra = ""
        if arm == "act10":
            df = tr.to_dataframe("activations")
            extra = f" | rows/sampled step {len(df) / max(1, df.step.nunique()):.0f}, dead units {int(df.dead_units.sum())}"
        if arm == "prof10":
            tm = tr.to_dataframe("timings")
            clock = next((p._clock for p in tr.probes if hasattr(p, "_clock")), None)
            extra = (f" | timing rows {len(tm)} over {tm.step.nunique()} steps, events created "
                     f"{getattr(clock, 'created', '?')}")
        print(f"   {arm:<10} {tot / h['sampled']:8.0f} us/sampled step ({parts}); amortised {tot / h['n']:6.0f} us/step;"
              f" issue +{ds:.0f} us sampled, {du:+.0f} us other{extra}")
        if h["warnings"]:
            print(f"      warnings: {h['warnings']}")
    print(f"   global module hooks left installed: {global_hooks_installed()}")
    del tracers, model, opt, step
    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block (a multiple of 10)")
    ap.add_argument("--host-steps", type=int, default=40, help="steps of the instrumented pass per arm")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model: check that the script runs")
    args = ap.parse_args()
    dev = "cpu" if args.smoke else "cuda"
    cases = SMOKE if args.smoke else {c: CASES[c] for c in args.cases.split(",")}
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}, gc objects {len(gc.get_objects())}, "
          f"gc thresholds {gc.get_threshold()}")
    t0 = time.perf_counter()
    for name, make in cases.items():
        run_case(name, make, args, dev)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
