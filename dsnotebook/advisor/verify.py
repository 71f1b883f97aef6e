"""A/B verification: the user's step under the baseline and under a variant, interleaved.

Protocol (``verify_variant``):

1. Snapshot parameters, buffers, gradients, optimizer state and every RNG (torch CPU and
   CUDA, Python ``random``, numpy).  The same snapshot is restored before *every* block,
   so both arms start each block from the same weights and random streams; their
   losses can be compared step by step (loss drift), and training does not advance.
2. Warm-up blocks for both arms (compilation, allocator, worker start-up), not timed.
3. ``pairs`` pairs of timed blocks, the order alternating AB, BA, ...; a block is
   ``steps // pairs`` steps.  Per-step time of a block = block wall time / steps, after
   a device synchronisation on CUDA.  Speed-up = median over pairs of
   (baseline / variant) x ``work_scale``; spread = its interquartile range.
4. Each arm is measured in its steady state, alone.  With ``data``, every block opens a
   fresh iterator of the arm's loader (a DataLoader with workers: a fresh copy, so its
   workers start with the block; the same batches in both arms, from the restored RNG)
   and closes it at the end of the block, workers and prefetch threads included:
   nothing one arm loads in the background can land in the other arm's timed block.  The
   clock runs from the arrival of the block's first batch (pipeline start-up excluded) to
   the arrival of the batch after its last step, and an arm with ``k`` loader workers
   times a multiple of ``k`` steps (the workers deliver in rounds of ``k``): the per-step
   time is the loader's throughput whatever the block length.
5. Memory per arm: peak allocated on CUDA (reset per block), and on every device the
   bytes autograd saves for backward in one extra untimed step (what checkpointing,
   autocast and batch size change).
6. Restore the snapshot; training continues exactly where it was.
"""
from __future__ import annotations

import contextlib
import copy
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from dsnotebook.core.clock import synchronize
from dsnotebook.perf.hardware import device_available
from dsnotebook.perf.memory import SavedTensorMeter
from dsnotebook.advisor.variants import Variant, VerifyContext, loader_with

Progress = Callable[[int, int, str], None]


@dataclass
class VerifyResult:
    variant: str
    steps_per_block: int
    pairs: int
    baseline_s: float  # median seconds per step
    variant_s: float
    speedup: float  # per unit of work (x work_scale); > 1: the variant is faster
    speedup_iqr: tuple[float, float]
    pair_speedups: list[float]
    baseline_peak_bytes: int | None
    variant_peak_bytes: int | None
    baseline_saved_bytes: int
    variant_saved_bytes: int
    baseline_loss: float | None
    variant_loss: float | None
    loss_drift: float | None  # median relative difference of matched losses (variant - baseline) / |baseline|
    verdict: str = ""
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_change(self) -> float | None:
        """Relative change of the arm's memory (peak on CUDA, saved activations elsewhere)."""
        a, b = ((self.baseline_peak_bytes, self.variant_peak_bytes) if self.baseline_peak_bytes
                else (self.baseline_saved_bytes, self.variant_saved_bytes))
        return None if not a else (b - a) / a

    def to_record(self) -> dict[str, Any]:
        d = asdict(self)
        d["speedup_iqr"] = list(self.speedup_iqr)
        d["memory_change"] = self.memory_change
        return d

    def __str__(self) -> str:
        mem = self.memory_change
        loss = "" if self.loss_drift is None else f", loss drift {100 * self.loss_drift:+.2f}%"
        return (f"{self.verdict}: {self.variant}: {1e3 * self.baseline_s:.2f} -> {1e3 * self.variant_s:.2f} ms/step, "
                f"speed-up x{self.speedup:.2f} [IQR {self.speedup_iqr[0]:.2f}-{self.speedup_iqr[1]:.2f}]"
                + ("" if mem is None else f", memory {100 * mem:+.1f}%") + loss + f" ({self.reason})")


# -- state ------------------------------------------------------------------------------------
class TrainingState:
    """Exact copy of model, gradients, optimizer and RNG state; :meth:`restore` puts it back."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        self.model, self.optimizer = model, optimizer
        self.params = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()
                       if isinstance(v, torch.Tensor)}
        self.grads = {id(p): (p.grad.detach().clone() if p.grad is not None else None) for p in model.parameters()}
        self.opt = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
        self.training = {id(m): m.training for m in model.modules()}
        self.rng_cpu = torch.get_rng_state()
        self.rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        # Apple and Intel GPUs draw dropout masks from their own generators
        self.rng_mps = torch.mps.get_rng_state() if device_available("mps") else None
        self.rng_xpu = torch.xpu.get_rng_state_all() if device_available("xpu") else None
        self.rng_py = random.getstate()
        try:
            import numpy as np

            self.rng_np = np.random.get_state()
        except Exception:  # pragma: no cover
            self.rng_np = None

    def restore(self) -> None:
        with torch.no_grad():
            live = self.model.state_dict(keep_vars=True)
            for k, v in self.params.items():
                t = live[k]
                if t.shape != v.shape or t.dtype != v.dtype:
                    t.data = v.clone()
                else:
                    t.copy_(v)
        for p in self.model.parameters():
            g = self.grads.get(id(p))
            p.grad = None if g is None else g.clone()
        if self.optimizer is not None:
            self.optimizer.load_state_dict(copy.deepcopy(self.opt))
        for m in self.model.modules():
            m.training = self.training.get(id(m), m.training)
        torch.set_rng_state(self.rng_cpu)
        if self.rng_cuda is not None:
            torch.cuda.set_rng_state_all(self.rng_cuda)
        if self.rng_mps is not None:
            torch.mps.set_rng_state(self.rng_mps)
        if self.rng_xpu is not None:
            torch.xpu.set_rng_state_all(self.rng_xpu)
        random.setstate(self.rng_py)
        if self.rng_np is not None:
            import numpy as np

            np.random.set_state(self.rng_np)


# -- running ----------------------------------------------------------------------------------
class _Arm:
    """One side of the comparison: its data source, times, losses, memory.

    The source is opened at the start of each block and closed at its end (:meth:`open`,
    :meth:`close`), so an arm's loader does no work while the other arm is timed.  A
    DataLoader with workers is opened as a fresh copy per block (same dataset, sampler and
    settings, persistence included: an epoch that ends inside a block costs what it costs in
    training), whose workers are shut down at the end of the block."""

    def __init__(self, name: str, variant: Variant | None, data: Any) -> None:
        self.name, self.variant, self.data = name, variant, data
        self.period = _delivery_period(data)
        self._source: Any = None
        self._it: Iterator[Any] | None = None
        self.times: list[float] = []
        self.timed_steps = 0
        self.losses: list[list[float]] = []
        self.peaks: list[int] = []
        self.saved = 0

    def open(self) -> None:
        self.close()
        if self.data is None:
            return
        workers = isinstance(self.data, DataLoader) and self.data.num_workers > 0
        self._source = loader_with(self.data) if workers else self.data
        self._it = iter(self._source)

    def batch(self) -> Any:
        if self._it is None:
            self.open()
        try:
            return next(self._it)
        except StopIteration:  # the end of an epoch (or of a short dataset): start it again
            self._it = iter(self._source)
        try:
            return next(self._it)
        except StopIteration:
            raise ValueError("verify: the data ran out; pass something that can be iterated again "
                             "(a DataLoader, a list of batches), not a one-shot iterator") from None

    def close(self) -> None:
        """Stop the iterator's background work: loader worker processes, prefetch threads."""
        it, self._it, self._source = self._it, None, None
        if it is None or it is self.data:  # a user's one-shot iterator is not ours to close
            return
        if hasattr(it, "_shutdown_workers"):  # a DataLoader's multi-process iterator (what its __del__ calls)
            it._shutdown_workers()
        elif hasattr(it, "close"):
            it.close()


def _delivery_period(data: Any) -> int:
    """Steps per round of a loader's deliveries: ``k`` workers load ``k`` batches side by side."""
    return max(1, data.num_workers) if isinstance(data, DataLoader) else 1


def _loss_value(out: Any) -> float | None:
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return float(out.detach())
    if isinstance(out, (int, float)):
        return float(out)
    return None


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def verify_variant(variant: Variant, step_fn: Callable[..., Any], *, model: nn.Module,
                   optimizer: torch.optim.Optimizer | None = None, data: Any = None, steps: int = 20,
                   pairs: int | None = None, warmup: int = 1, target: str = "speed",
                   progress: Progress | None = None) -> VerifyResult:
    """Run ``step_fn`` (``step_fn(batch)`` when ``data`` is given, else ``step_fn()``) under the
    baseline and under ``variant``; return the measured difference.  State is restored."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    pairs = pairs or max(1, min(5, steps))
    block = max(1, steps // pairs)
    warmup = max(warmup, variant.min_warmup)
    device = _device_of(model)
    cuda = device.type == "cuda"
    ctx = VerifyContext(model, optimizer, data)
    state = TrainingState(model, optimizer)
    total = 2 * (1 + pairs)
    done = [0]

    def tick(msg: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, msg)

    arms: dict[str, _Arm] = {}
    with_data = data is not None
    try:
        # Every block's iterators are made from the same RNG state: a shuffled loader yields the same batches.
        arms["baseline"] = _Arm("baseline", None, data)
        vdata = variant.make_data(data) if (variant.make_data is not None and with_data) else data
        arms["variant"] = _Arm("variant", variant, vdata)

        def run_block(arm: _Arm, n: int, timed: bool, measure_saved: bool = False) -> None:
            """``n`` steps, timed from the arrival of the block's first batch to the arrival of the
            batch after the last step: the loader's start-up is outside, ``n`` loads and ``n`` steps
            inside, and no untimed work gives the loader a head start."""
            state.restore()
            cm = arm.variant.applied(ctx) if arm.variant is not None else contextlib.nullcontext()
            with cm:
                arm.open()
                try:
                    n = -(-n // arm.period) * arm.period
                    batch = arm.batch() if with_data else None
                    synchronize(device)  # any GPU (CUDA/ROCm, MPS, XPU) runs asynchronously
                    if cuda:
                        torch.cuda.reset_peak_memory_stats()
                    losses = []
                    t0 = time.perf_counter()
                    for _ in range(n):
                        losses.append(_one_step(arm, step_fn, batch, with_data))
                        batch = arm.batch() if with_data else None
                    synchronize(device)
                    dt = (time.perf_counter() - t0) / n
                    if timed:
                        arm.times.append(dt)
                        arm.timed_steps = n
                        arm.losses.append([v for v in (_loss_value(x) for x in losses)])
                        if cuda:
                            arm.peaks.append(int(torch.cuda.max_memory_allocated()))
                    if measure_saved:
                        state.restore()
                        meter = SavedTensorMeter(model)
                        meter.begin()
                        try:
                            _one_step(arm, step_fn, batch, with_data)
                        finally:
                            meter.end()
                        arm.saved = meter.total
                finally:
                    arm.close()

        for name in ("baseline", "variant"):
            run_block(arms[name], warmup, timed=False, measure_saved=True)
            tick(f"warm-up {name}")
        for i in range(pairs):
            order = ("baseline", "variant") if i % 2 == 0 else ("variant", "baseline")
            for name in order:
                run_block(arms[name], block, timed=True)
                tick(f"pair {i + 1}/{pairs}: {name}")
    finally:
        for arm in arms.values():
            arm.close()
        state.restore()
    return _summarise(variant, arms["baseline"], arms["variant"], block, pairs, target)


def _one_step(arm: _Arm, step_fn: Callable[..., Any], batch: Any, with_data: bool) -> Any:
    """One training step of ``arm`` on ``batch`` (its per-step context, e.g. autocast, around it)."""
    wrap = arm.variant.step_context() if arm.variant is not None and arm.variant.step_context else contextlib.nullcontext()
    with wrap:
        return step_fn(batch) if with_data else step_fn()


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return (xs[0], xs[0]) if xs else (float("nan"), float("nan"))
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def _summarise(variant: Variant, a: _Arm, b: _Arm, block: int, pairs: int, target: str) -> VerifyResult:
    ratios = [variant.work_scale * ta / tb for ta, tb in zip(a.times, b.times) if tb > 0]
    speedup = statistics.median(ratios) if ratios else float("nan")
    iqr = _quartiles(ratios)
    drifts, la, lb = [], [], []
    for xa, xb in zip(a.losses, b.losses):
        for va, vb in zip(xa, xb):
            if va is not None and vb is not None:
                la.append(va)
                lb.append(vb)
                if va == va and vb == vb and va != 0:  # not NaN
                    drifts.append((vb - va) / abs(va))
    res = VerifyResult(
        variant=variant.name, steps_per_block=block, pairs=pairs, baseline_s=statistics.median(a.times),
        variant_s=statistics.median(b.times), speedup=speedup, speedup_iqr=iqr, pair_speedups=ratios,
        baseline_peak_bytes=int(statistics.median(a.peaks)) if a.peaks else None,
        variant_peak_bytes=int(statistics.median(b.peaks)) if b.peaks else None,
        baseline_saved_bytes=a.saved, variant_saved_bytes=b.saved,
        baseline_loss=statistics.median(la) if la else None, variant_loss=statistics.median(lb) if lb else None,
        loss_drift=statistics.median(drifts) if drifts else None,
        extra={"work_scale": variant.work_scale, "timed_steps": {"baseline": a.timed_steps, "variant": b.timed_steps}})
    res.verdict, res.reason = judge(res, target)
    return res


def judge(r: VerifyResult, target: str) -> tuple[str, str]:
    """verified / refuted, with the reason in words."""
    if target == "speed":
        ok = r.speedup > 1.03 and r.speedup_iqr[0] > 1.0
        why = (f"median speed-up x{r.speedup:.2f} over {len(r.pair_speedups)} pairs, "
               f"lower quartile x{r.speedup_iqr[0]:.2f}")
        return ("verified" if ok else "refuted"), why + ("" if ok else " (needs > x1.03 with the lower quartile > x1)")
    if target == "memory":
        ch = r.memory_change
        ok = ch is not None and ch < -0.05
        what = "peak allocated" if r.baseline_peak_bytes else "activations saved for backward"
        why = "no memory measured" if ch is None else f"{what} {100 * ch:+.1f}%"
        return ("verified" if ok else "refuted"), why
    if target == "stability":
        a, b = r.baseline_loss, r.variant_loss
        finite = b is not None and b == b and abs(b) != float("inf")
        ok = finite and (a is None or a != a or abs(a) == float("inf") or b <= a)
        return ("verified" if ok else "refuted"), f"median loss {a} -> {b}"
    raise ValueError(f"unknown target {target!r}")
