"""The statistics' float32 path (devices without float64, e.g. Apple MPS): accuracy and cost.

    python benchmarks/stats_float32.py [--device cuda|mps|cpu] [--reps 15] [--scale 1.0]

Accuracy (any machine, on the CPU): the float32 path against the float64 path on the
adversarial sets of tests/stats and tests/kernels plus a ResNet-50-shaped gradient set at
several magnitudes: worst relative error of norms and sums of squares, worst error of sums
relative to sum |x|, and whether histograms, counts and abs-max are identical.

Cost (on ``--device``): per call, medians over interleaved repetitions, each arm timed to a
device synchronisation: the float32 path on the device; a batched host copy (one ``cat``
on the device, one copy, the CPU fast path); the float64 path where the device has float64.
On MPS this decides which of the two float32-capable strategies a Mac should use; on CUDA it
measures the float32 path's cost against the float64 path on the same tensors.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from dsnotebook.core.clock import synchronize
from dsnotebook.stats.devices import has_float64
from dsnotebook.stats.reference import COL_ABSMAX, COL_SUM, COL_SUMSQ, TorchStatsBackend

NAN, INF = float("nan"), float("inf")


def resnet50_like(scale: float = 1.0, seed: int = 0) -> list[torch.Tensor]:
    """161 tensors, ~25.6M elements: ResNet-50's parameter shapes, normal values at varied magnitudes."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            out = width * 4
            shapes += [(width, cin, 1, 1), (width,), (width,), (width, width, 3, 3), (width,), (width,),
                       (out, width, 1, 1), (out,), (out,)]
            if b == 0:
                shapes += [(out, cin, 1, 1), (out,), (out,)]
            cin = out
    shapes += [(1000, 2048), (1000,)]
    return [torch.randn(s, generator=g) * scale * 10.0 ** (i % 9 - 6) for i, s in enumerate(shapes)]


def adversarial() -> list[list[torch.Tensor]]:
    specials = [0.0, -0.0, NAN, INF, -INF, 1e-30, -1e-30, 1e30, -1e30, 1e-40, -1e-44, 1e-45, 3.0e38, -3.3e38,
                2.0 ** -46, 2.0 ** -47, 2.0 ** 16, 2.0 ** 15.5, 6e-8, 1e-5, 65504.0, 1.0, -1.0]
    g = torch.Generator().manual_seed(7)
    body = torch.randn(200_001, generator=g)
    body[::97], body[5::101], body[7::89], body[11::83], body[13::79], body[17::71] = NAN, INF, 0.0, -0.0, 1e-39, 1e30
    base = [torch.tensor(specials), body, torch.full((70_000,), NAN), torch.zeros(70_001), torch.full((5,), 3.0e38),
            torch.tensor([3e38, -3e38, 1e-45]), torch.zeros(0), torch.randn(300, 333).t(), torch.randn(50_000) + 100.0]
    return [[t.to(d) for t in base] for d in (torch.float32, torch.float16, torch.bfloat16)]


def accuracy() -> None:
    f32, f64 = TorchStatsBackend(float32=True), TorchStatsBackend()
    sets = {"adversarial fp32/fp16/bf16": [t for s in adversarial() for t in s],
            "ResNet-50 shapes, 1e-6..1e2": resnet50_like(),
            "ResNet-50 shapes, bf16": [t.bfloat16() for t in resnet50_like(seed=1)]}
    print("accuracy of the float32 path against the float64 path (CPU)")
    print(f"{'set':<30}{'tensors':>8}{'norm rel':>11}{'sumsq rel':>11}{'sum/sum|x|':>12}  hist, counts, absmax")
    for name, ts in sets.items():
        a, b = f32.grad_stats(ts), f64.grad_stats_exact(ts)
        ok = torch.equal(a[:, COL_ABSMAX:], b[:, COL_ABSMAX:])
        nz = b[:, COL_SUMSQ] > 0
        sq = ((a[nz, COL_SUMSQ] - b[nz, COL_SUMSQ]).abs() / b[nz, COL_SUMSQ]).max().item()
        norm = ((a[nz, COL_SUMSQ].sqrt() - b[nz, COL_SUMSQ].sqrt()).abs() / b[nz, COL_SUMSQ].sqrt()).max().item()
        absum = torch.stack([t.double().nan_to_num(0, 0, 0).abs().sum() for t in ts])
        s = ((a[:, COL_SUM] - b[:, COL_SUM]).abs() / absum.clamp_min(1e-300)).max().item()
        print(f"{name:<30}{len(ts):>8}{norm:>11.1e}{sq:>11.1e}{s:>12.1e}  {'identical' if ok else 'DIFFERENT'}")


def _timed(fn, device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def cost(device: torch.device, reps: int, scale: float) -> None:
    ts = [t.to(device) for t in resnet50_like()]
    if scale != 1.0:
        ts = [t for t in ts for _ in range(max(1, round(scale)))]
    n = sum(t.numel() for t in ts)
    f32, host = TorchStatsBackend(float32=True), TorchStatsBackend(float32=False)

    def host_copy() -> torch.Tensor:
        flat = torch.cat([t.detach().reshape(-1) for t in ts]).cpu()
        return host.grad_stats(list(flat.split([t.numel() for t in ts])))

    arms = {"float32 path on the device": lambda: f32.grad_stats(ts), "batched host copy + CPU": host_copy}
    if has_float64(device) and device.type != "cpu":
        arms["float64 path on the device"] = lambda: TorchStatsBackend(float32=False).grad_stats_exact(ts)
    for fn in arms.values():  # warm-up: layouts, kernels, allocator
        fn(), fn()
    times: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(reps):  # interleaved: drift hits every arm alike
        for k, fn in arms.items():
            times[k].append(_timed(fn, device))
    base = statistics.median(times["float32 path on the device"])
    print(f"\ncost per call on {device} ({len(ts)} tensors, {n / 1e6:.1f}M elements, {reps} interleaved reps; "
          f"torch {torch.__version__})")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:<30}{1e3 * med:>9.2f} ms   x{med / base:.2f} of the float32 path   "
              f"({n / med / 1e9:.2f} G elements/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    ap.add_argument("--device", default=default)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--scale", type=float, default=1.0, help="repeat the tensor set (bigger models)")
    args = ap.parse_args()
    accuracy()
    cost(torch.device(args.device), args.reps, args.scale)


if __name__ == "__main__":
    main()
