"""Hit rate of the first-non-finite localisation over injected faults (CPU).

Six models; in each, several modules get a NaN injected into their forward output or
into the gradient their backward produces, at step 0 or step 7 of a plain SGD or Adam
loop (no GradScaler: the first bad update writes NaN into the weights).  A hit is an
event of kind "nonfinite" at the injection step naming the injected module and phase.

    python benchmarks/nonfinite_sweep.py [--mode cheap|strict] [--quick]
    python benchmarks/nonfinite_sweep.py --cost     # healthy-step cost of the step capture
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer
from dsnotebook.examples import DigitsCNN, DigitsTransformer


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        g = g.clone(memory_format=torch.contiguous_format)
        g.view(-1)[0] = float("nan")
        return g


class Injector:
    """A forward hook on one module that spoils its output (forward) or its backward at one step."""

    def __init__(self, module: nn.Module, phase: str, step: int) -> None:
        self.phase, self.step, self.calls = phase, step, 0
        self.handle = module.register_forward_hook(self.hook)
        self.current = 0

    def hook(self, module, args, out):
        if self.current != self.step or not torch.is_grad_enabled():
            return None
        t = out[0] if isinstance(out, tuple) else out
        if self.phase == "forward":
            bad = t.clone(memory_format=torch.contiguous_format)
            bad.view(-1)[-1] = float("nan")  # the last element: used by every model (LSTM: the last time step)
        else:
            bad = _NaNGrad.apply(t)
        return (bad, *out[1:]) if isinstance(out, tuple) else bad


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 64), nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class ResBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.stem(x)))
        h = F.relu(h + self.bn2(self.conv(h)))
        return self.head(h.mean(dim=(2, 3)))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        out, _ = self.lstm(torch.tanh(self.proj(x.view(x.shape[0], 8, 8))))
        return self.head(out[:, -1])


class DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.norm, self.fc2 = nn.Linear(64, 64), nn.Dropout(0.3), nn.LayerNorm(64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(self.norm(self.drop(F.gelu(self.fc1(x.flatten(1))))))


MODELS = {
    "mlp": (MLP, ["fc1", "fc2", "fc3"]),
    "cnn": (DigitsCNN, ["features.0", "features.2", "head.1", "head.3"]),
    "resbn": (ResBN, ["stem", "bn1", "conv", "bn2", "head"]),
    "lstm": (LSTMNet, ["proj", "lstm", "head"]),
    "transformer": (DigitsTransformer, ["embed", "encoder.layers.1.linear1", "encoder.layers.2", "head"]),
    "dropnet": (DropNet, ["fc1", "norm", "fc2"]),
}


def run_case(model_name: str, target: str, phase: str, step: int, opt_name: str, mode: str) -> tuple[bool, str]:
    torch.manual_seed(0)
    make, _ = MODELS[model_name]
    model = make()
    module = dict(model.named_modules())[target]
    inj = Injector(module, phase, step)
    opt = torch.optim.SGD(model.parameters(), lr=0.05) if opt_name == "sgd" else torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ModelTracer(model, opt, nonfinite=mode, capture_graph=False) as tracer:
            for i in range(step + 4):
                inj.current = i
                x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
    inj.handle.remove()
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"]
    if not ev:
        return False, "no event"
    e = ev[0]
    module_ok = e["module"] == target or (e["module"] or "").startswith(target + " ")
    phase_ok = e["detail"].startswith(phase)
    ok = e["step"] == step and module_ok and phase_ok
    return ok, f"step {e['step']} {e['module']}: {e['detail'][:90]}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="cheap")
    ap.add_argument("--quick", action="store_true", help="SGD only, step 0 and 7, forward and backward")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--cost", action="store_true", help="only the healthy-step cost of the default mode's capture")
    args = ap.parse_args()
    if args.cost:
        capture_cost()
        return 0
    cases = [(m, t, ph, st, opt) for m, (_, targets) in MODELS.items() for t in targets
             for ph, st, opt in itertools.product(("forward", "backward"), (0, 7), ("sgd", "adam") if not args.quick else ("sgd",))]
    hits, t0 = 0, time.perf_counter()
    for case in cases:
        ok, what = run_case(*case, mode=args.mode)
        hits += ok
        if args.v or not ok:
            print(("HIT " if ok else "MISS"), *case, "->", what)
    points = sum(len(t) for _, t in MODELS.values())
    print(f"mode {args.mode}: {hits}/{len(cases)} = {100 * hits / len(cases):.1f}% named correctly "
          f"({points} injection points in {len(MODELS)} models; forward/backward; step 0/7; "
          f"{'SGD' if args.quick else 'SGD and Adam'}; {time.perf_counter() - t0:.0f} s)")
    return 0



def capture_cost(repeats: int = 2000) -> None:
    """Host time per training step of the default mode's step capture (its two root hooks), measured
    directly: the same forward+backward with and without them, interleaved, on the digits CNN."""
    import statistics

    from dsnotebook.dataflow.replay import StepCapture

    torch.manual_seed(0)
    model = DigitsCNN()
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    cap = StepCapture(model, keep_output_grads=True)

    def one(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            cap.new_step()
            F.cross_entropy(model(x), y).backward()
        return (time.perf_counter() - t0) / n

    on, off = [], []
    for i in range(repeats // 50):
        for with_hooks in ((True, False) if i % 2 else (False, True)):
            if with_hooks:
                cap.start()
                on.append(one(50))
                cap.stop()
            else:
                off.append(one(50))
    d = statistics.median(a - b for a, b in zip(on, off))
    print(f"step capture: {1e6 * d:+.1f} us per step on a {1e3 * statistics.median(off):.2f} ms forward+backward "
          f"({100 * d / statistics.median(off):+.2f}%), median of {len(on)} interleaved 50-step block pairs")


if __name__ == "__main__":
    sys.exit(main())
