"""GPU statistics benchmarks of issue 3 (run on a CUDA machine with cupy).

    PYTHONPATH=. python3 benchmarks/gpu_stats.py --out DIR [--only 1,2,3] [--quick]

1. Statistics alone over 1e9 elements in 300 tensors (fp32 and bf16): GB/s of the fused
   kernel against a plain ``torch.sum`` over the same bytes, same run; plus snapshot and
   update statistics over 1e9 fp32 weights.
2. ResNet-50-sized (161 tensors, 25.6M) and GPT-2-124M-sized gradient sets: host time,
   device time and end-to-end time per step of the fused kernel, against a
   ``torch._foreach_norm``-based batched path and a W&B-style per-tensor ``.item()`` loop.
3. End to end: ModelTracer(backend="cupy") recording every step on torchvision ResNet-50
   (batch 64, fp32; bf16 autocast + channels_last) and GPT-2 124M (transformers config,
   random init, 8 x 512), interleaved blocks with and without the tracer; medians, IQR,
   and the tracer's host time per step measured directly.

Writes ``gpu_stats.json`` and ``gpu_stats.txt`` into --out and prints the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sys
import time
import traceback
from typing import Any, Callable, Sequence

import torch

from dsnotebook.core.jsonsafe import to_json
from dsnotebook.kernels import CupyStatsBackend, is_available
from dsnotebook.stats.reference import TorchStatsBackend

from _gpu_common import LINES, PROFILES, _events_ms, _iqr, _med, say  # noqa: E402
from _gpu_e2e import bench3  # noqa: E402


def _split_sizes(total: int, n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g) + 0.25
    sizes = (w / w.sum() * total / 64).floor().long() * 64  # 256-byte aligned views
    sizes[-1] += total - int(sizes.sum())
    return sizes.tolist()


VARIANTS = {  # diagnostic kernel variants (-D options of grad_stats.cu; benchmarks/kernel_variants.py has more)
    "default": (),
    "general path only": ("-DDSN_FAST=0",),
    "no hist": ("-DDSN_HIST_MODE=2",),
}


def bench1_variants(res: dict, reps: int, total: int) -> None:
    """Where the time goes: the same launch with parts of the work compiled out."""
    say(f"\n[1b] kernel variants (diagnostics), {total:.3g} elements in 300 tensors, GB/s")
    for dtype in (torch.float32, torch.bfloat16):
        flat = torch.empty(total, dtype=dtype, device="cuda")
        flat.normal_(generator=torch.Generator(device="cuda").manual_seed(0))
        ts = list(torch.split(flat, _split_sizes(total, 300)))
        nbytes = total * flat.element_size()
        row = {}
        for name, defs in VARIANTS.items():
            be = CupyStatsBackend(_defines=defs)
            row[name] = nbytes / _med(_events_ms(lambda: be.grad_stats(ts), reps)) / 1e6
        row["torch.sum"] = nbytes / _med(_events_ms(lambda: torch.sum(flat), reps)) / 1e6
        dn = str(dtype).replace("torch.", "")
        res.setdefault("bench1_variants", {})[dn] = row
        say(f"  {dn:<9}" + " | ".join(f"{k} {v:.0f}" for k, v in row.items()))
        del ts, flat
        torch.cuda.empty_cache()


def bench1(res: dict, reps: int, total: int) -> None:
    be = CupyStatsBackend()
    say(f"\n[1] statistics alone: {total:.3g} elements in 300 tensors")
    for dtype in (torch.float32, torch.bfloat16):
        flat = torch.empty(total, dtype=dtype, device="cuda")
        flat.normal_(generator=torch.Generator(device="cuda").manual_seed(0))
        ts = list(torch.split(flat, _split_sizes(total, 300)))
        nbytes = total * flat.element_size()
        be.grad_stats(ts)
        k = _events_ms(lambda: be.grad_stats(ts), reps)
        s = _events_ms(lambda: torch.sum(flat), reps)
        s32 = _events_ms(lambda: torch.sum(flat, dtype=torch.float32), reps) if dtype != torch.float32 else s
        f = _events_ms(lambda: torch._foreach_norm(ts), max(3, reps // 4))
        gbk, gbs, gbs32 = nbytes / _med(k) / 1e6, nbytes / _med(s) / 1e6, nbytes / _med(s32) / 1e6
        name = str(dtype).replace("torch.", "")
        r = {"bytes": nbytes, "kernel_ms": _med(k), "kernel_ms_iqr": _iqr(k), "torch_sum_ms": _med(s),
             "torch_sum_f32acc_ms": _med(s32), "foreach_norm_ms": _med(f), "kernel_GBps": gbk,
             "torch_sum_GBps": gbs, "torch_sum_f32acc_GBps": gbs32, "ratio_vs_sum": gbk / gbs}
        res.setdefault("bench1", {})[name] = r
        say(f"  {name:<9} fused stats {r['kernel_ms']:.3f} ms = {gbk:7.0f} GB/s | torch.sum {r['torch_sum_ms']:.3f} ms"
            f" = {gbs:7.0f} GB/s (fp32-acc sum {gbs32:.0f} GB/s) | ratio {100 * gbk / gbs:5.1f}%"
            f" | _foreach_norm alone {r['foreach_norm_ms']:.2f} ms")
        del ts, flat
        torch.cuda.empty_cache()
    # update statistics: snapshot (read+write) and update (2 reads) over fp32 weights
    flat = torch.randn(total, device="cuda")
    ts = list(torch.split(flat, _split_sizes(total, 300)))
    snap = be.snapshot(ts)
    sn = _events_ms(lambda: be.snapshot(ts), reps)
    up = _events_ms(lambda: be.update_stats(snap, ts), reps)
    cp = _events_ms(lambda: flat.clone(), reps)
    nb = total * 4
    r = {"snapshot_ms": _med(sn), "snapshot_GBps": 2 * nb / _med(sn) / 1e6, "update_ms": _med(up),
         "update_GBps": 2 * nb / _med(up) / 1e6, "clone_GBps": 2 * nb / _med(cp) / 1e6,
         "bytes_per_param": 16}
    res.setdefault("bench1", {})["update_fp32"] = r
    say(f"  update fp32: snapshot {r['snapshot_ms']:.3f} ms ({r['snapshot_GBps']:.0f} GB/s r+w), update_stats "
        f"{r['update_ms']:.3f} ms ({r['update_GBps']:.0f} GB/s), torch clone {r['clone_GBps']:.0f} GB/s; 16 B/param")
    del ts, flat, snap
    torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- bench 2
def foreach_path(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Batched torch statistics around torch._foreach_norm (norms, abs-max) + one histogram."""
    l2 = torch.stack(torch._foreach_norm(ts, 2))
    mx = torch.stack(torch._foreach_norm(ts, float("inf")))
    flat = torch.cat([t.reshape(-1) for t in ts]).float()
    lengths = torch.tensor([t.numel() for t in ts], device=flat.device)
    seg = torch.repeat_interleave(torch.arange(len(ts), device=flat.device), lengths)
    sums = torch.zeros(len(ts), device=flat.device).index_add_(0, seg, flat)
    exp = torch.frexp(flat.abs()).exponent.clamp_(-46, 16) + 47
    hist = torch.bincount(seg * 64 + exp.long(), minlength=len(ts) * 64)
    return torch.cat([l2, mx, sums, hist.float()])


def wandb_loop(ts: Sequence[torch.Tensor]) -> list:
    """W&B-style: per tensor .item() syncs, histc over [min, max], .cpu()."""
    out = []
    for g in ts:
        flat = g.detach().reshape(-1).float()
        norm = flat.norm().item()
        nonfinite = (~torch.isfinite(flat)).sum().item()
        lo, hi = flat.min().item(), flat.max().item()
        hist = torch.histc(flat, bins=64, min=lo, max=hi).cpu()
        out.append((norm, nonfinite, lo, hi, hist))
    return out


def _per_step(fn: Callable[[], Any], steps: int, copy_out: bool) -> dict:
    """Host us/step (issue only), end-to-end us/step (issue + device, synchronised at the end)."""
    pinned: dict[tuple, torch.Tensor] = {}

    def step() -> None:
        r = fn()
        if copy_out and isinstance(r, torch.Tensor):
            h = pinned.get(tuple(r.shape))
            if h is None:
                h = pinned[tuple(r.shape)] = torch.empty(r.shape, dtype=r.dtype, pin_memory=True)
            h.copy_(r, non_blocking=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    e2e = []
    host = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        host.append((t1 - t0) / steps * 1e6)
        e2e.append((t2 - t0) / steps * 1e6)
    dev = _events_ms(step, 20)
    return {"host_us": _med(host), "e2e_us": _med(e2e), "e2e_us_iqr": _iqr(e2e), "device_us": 1e3 * _med(dev)}


def _shapes(which: str) -> list[torch.Size]:
    if which == "resnet50":
        import torchvision

        return [p.shape for p in torchvision.models.resnet50().parameters()]
    from transformers import GPT2Config, GPT2LMHeadModel

    return [p.shape for p in GPT2LMHeadModel(GPT2Config()).parameters()]


def bench2(res: dict) -> None:
    say("\n[2] statistics alone per step on gradient sets (host = issue time; e2e = host+device, "
        "synchronised at the end of each block of steps)")
    for which in ("resnet50", "gpt2"):
        shapes = _shapes(which)
        ts = [torch.randn(s, device="cuda") * 1e-3 for s in shapes]
        numel = sum(t.numel() for t in ts)
        be = CupyStatsBackend()
        fresh = [[t.detach() for t in ts] for _ in range(64)]  # new objects each step (set_to_none)
        it = iter(range(10**9))
        rows = {
            "cupy fused (same tensors)": _per_step(lambda: be.grad_stats(ts), 200, True),
            "cupy fused (new tensor objects each step)": _per_step(
                lambda: be.grad_stats(fresh[next(it) % 64]), 200, True),
            "cupy plan cache lookup only": None,
            "torch reference backend": _per_step(lambda: TorchStatsBackend().grad_stats(ts), 20, True),
            "torch._foreach_norm path": _per_step(lambda: foreach_path(ts), 20, True),
            "W&B-style .item() loop": _per_step(lambda: wandb_loop(ts), 3, False),
        }
        t0 = time.perf_counter()
        for _ in range(2000):
            be._grad_plans.get(ts)
        rows["cupy plan cache lookup only"] = {"host_us": (time.perf_counter() - t0) / 2000 * 1e6}
        t0 = time.perf_counter()
        for i in range(2000):
            be._grad_plans.get(fresh[i % 64])
        rows["cupy plan cache lookup, new objects"] = {"host_us": (time.perf_counter() - t0) / 2000 * 1e6}
        plan, dptrs = be._grad_plans.get(ts)
        args = plan.head + (dptrs[1], plan.chunk) + plan.grad_bufs + (plan.grad_out.data_ptr(),)
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        t0 = time.perf_counter()
        for _ in range(300):
            be._launch(plan, "dsn_grad_stats", args)
        t1 = time.perf_counter()
        b.record()
        b.synchronize()
        rows["cupy launch only"] = {"host_us": (t1 - t0) / 300 * 1e6,
                                    "device_us": a.elapsed_time(b) / 300 * 1e3}  # back to back: kernel time
        # chunk-length sweep (diagnostics): kernel time back to back with other block maps
        from dsnotebook.kernels import layout as L

        orig_choose = L.choose_chunk
        for chunk in (4096, 8192, 16384, 32768, 65536):
            L.choose_chunk = lambda total, c=chunk: c
            try:
                be_c = CupyStatsBackend()
                pl, dp = be_c._grad_plans.get(ts)
                args_c = pl.head + (dp[1], pl.chunk) + pl.grad_bufs + (pl.grad_out.data_ptr(),)
                for _ in range(20):
                    be_c._launch(pl, "dsn_grad_stats", args_c)
                torch.cuda.synchronize()
                a.record()
                for _ in range(200):
                    be_c._launch(pl, "dsn_grad_stats", args_c)
                b.record()
                b.synchronize()
                rows[f"kernel only, chunk {chunk} ({pl.nblocks} blocks)"] = {"device_us": a.elapsed_time(b) / 200 * 1e3}
            finally:
                L.choose_chunk = orig_choose
        pinned = torch.empty(plan.grad_out.shape, dtype=torch.float64, pin_memory=True)
        t0 = time.perf_counter()
        for _ in range(300):
            pinned.copy_(plan.grad_out, non_blocking=True)
        rows["caller's pinned copy only"] = {"host_us": (time.perf_counter() - t0) / 300 * 1e6}
        torch.cuda.synchronize()
        res.setdefault("bench2", {})[which] = {"tensors": len(ts), "numel": numel, "rows": rows,
                                               "plan_builds": be._grad_plans.builds}
        say(f"  {which}: {len(ts)} tensors, {numel / 1e6:.1f}M elements (fp32)")
        for k, r in rows.items():
            extra = "".join(f"  {n} {r[n]:9.1f}" for n in ("host_us", "device_us", "e2e_us") if n in r)
            say(f"    {k:<44}{extra}")
        del ts, fresh
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--only", default="1,1b,2,3")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    if not (torch.cuda.is_available() and is_available()):
        sys.exit("needs a CUDA GPU and cupy")
    import cupy

    res: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cupy": cupy.__version__,
        "cuda_runtime": torch.version.cuda, "python": platform.python_version(), "host": platform.processor(),
    }
    say(f"{res['date']}  {res['gpu']}  torch {res['torch']}  cupy {res['cupy']}  CUDA {res['cuda_runtime']}")
    only = set(args.only.split(","))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = [("1", lambda: bench1(res, 10 if args.quick else 30, 10**7 if args.quick else 10**9)),
                ("1b", lambda: bench1_variants(res, 10 if args.quick else 20, 10**7 if args.quick else 10**9)),
                ("2", lambda: bench2(res)),
                ("3", lambda: bench3(res, 2 if args.quick else args.pairs, 3 if args.quick else args.steps))]
    for key, fn in sections:
        if key in only:
            try:
                fn()
            except Exception:
                say(f"bench {key} FAILED\n" + traceback.format_exc())
            (out / "gpu_stats.json").write_text(json.dumps(to_json(res), indent=1))
            (out / "gpu_stats.txt").write_text("\n".join(LINES) + "\n")
            if PROFILES:
                (out / "profiles.txt").write_text("\n".join(PROFILES))


if __name__ == "__main__":
    main()
