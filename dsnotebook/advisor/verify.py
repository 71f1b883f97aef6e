"""A/B verification: the user's step under the baseline and under a variant, interleaved.

Protocol (``verify_variant``):

1. Snapshot parameters, buffers, gradients, optimizer state and every RNG
   (:class:`~dsnotebook.advisor.state.TrainingState`).  The same snapshot is restored before *every* block,
   so both arms start each block from the same weights and random streams; their
   losses can be compared step by step (loss drift), and training does not advance.
2. Warm-up blocks for both arms (compilation, allocator, worker start-up), not timed.  A
   variant that can say whether it is in effect (``Variant.in_effect``: autocast) is asked
   so from inside the model's forward in one extra untimed step: a step that switches the
   change off from within (its own ``autocast(enabled=False)``) gets no verdict, and a
   step that never calls the model given to verify gets a note.
3. ``pairs`` pairs of timed blocks, the order alternating AB, BA, ...; a block is
   ``steps // pairs`` steps, or more where the warm-up says that would last under
   ``min_block_s`` (a 3 ms CPU step timed one at a time is mostly scheduler noise: blocks
   grow to about ``min_block_s``, at most ``MAX_BLOCK`` steps).  Per-step time of a block =
   block wall time / steps, after a device synchronisation on CUDA.  Speed-up = median over pairs of
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
5. What is timed depends on what the variant changes (``timing="auto"``).  A variant that
   changes the data (``make_data``: workers, batch size) is timed with its loading, as
   above.  Any other variant changes the step (autocast, TF32, channels_last, compile,
   checkpointing), and its verdict is about the step: each block's batches are loaded
   before its clock starts (the same batches, from the restored RNG) and the clock covers
   only the steps.  Timed with loading, a step change is diluted by the loader's time (and
   hidden entirely on a GPU, where an asynchronous step overlaps the loading): issue 15
   measured bf16 autocast on ResNet-50 at x1.01 in a loop that loaded on its main thread,
   against x1.5 for the step.  The loop with its loading is measured as well and reported
   beside the verdict (``extra["with_loading"]``): what the change gives the loop as it is.
6. Memory per arm: peak allocated on CUDA (reset per block), and on every device the
   bytes autograd saves for backward in one extra untimed step (what checkpointing,
   autocast and batch size change).
7. Restore the snapshot; training continues exactly where it was.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from dsnotebook.core.clock import synchronize
from dsnotebook.perf.memory import SavedTensorMeter
from dsnotebook.advisor.state import TrainingState
from dsnotebook.advisor.variants import Variant, VerifyContext, loader_with
from dsnotebook.advisor.verdict import WAITS_NOTE, VerifyResult, judge, loop_figure

__all__ = ["MAX_BLOCK", "MIN_BLOCK_S", "WAITS_NOTE", "Progress", "VerifyResult", "judge", "loop_figure",
           "verify_variant"]

Progress = Callable[[int, int, str], None]
MIN_BLOCK_S = 0.05  # shortest timed block (seconds); see verify_variant
MAX_BLOCK = 64  # most steps per block that min_block_s may ask for


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


TIMINGS = ("auto", "step", "loop")


def verify_variant(variant: Variant, step_fn: Callable[..., Any], *, model: nn.Module,
                   optimizer: torch.optim.Optimizer | None = None, data: Any = None, steps: int = 20,
                   pairs: int | None = None, warmup: int = 1, target: str = "speed",
                   progress: Progress | None = None, timing: str = "auto",
                   min_block_s: float = MIN_BLOCK_S) -> VerifyResult:
    """Run ``step_fn`` (``step_fn(batch)`` when ``data`` is given, else ``step_fn()``) under the
    baseline and under ``variant``; return the measured difference.  State is restored.

    ``timing``: "loop" times each step with the loading of its batch; "step" times the steps on
    batches loaded before the clock starts; "auto" (default) picks "loop" for a variant that
    changes the data and "step" for any other, and then also measures the loop (with loading)
    and reports it in ``extra["with_loading"]``.  ``min_block_s``: shortest timed block, in
    seconds, judged from the warm-up (0: exactly ``steps // pairs`` steps per block)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    with_data = data is not None
    changes_data = variant.make_data is not None and with_data
    preload = with_data and (timing == "step" or (timing == "auto" and not changes_data))
    with_loop = preload and timing == "auto"
    pairs = pairs or max(1, min(5, steps))
    block = [max(1, steps // pairs)]  # may grow after the warm-up (min_block_s)
    warmup = max(warmup, variant.min_warmup)
    device = _device_of(model)
    cuda = device.type == "cuda"
    ctx = VerifyContext(model, optimizer, data)
    state = TrainingState(model, optimizer)
    total = 2 * (1 + pairs) * (2 if with_loop else 1)
    done = [0]

    def tick(msg: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, msg)

    effect: list[bool] = []  # what ``variant.in_effect`` said inside the model's forward

    def check_effect(arm: _Arm, batch: Any) -> None:
        """One more untimed step with a forward pre-hook on the model asking ``in_effect`` (after the
        warm-up, so a compiled model's timed blocks never see the hook)."""
        state.restore()
        handle = model.register_forward_pre_hook(lambda m, args: effect.append(bool(variant.in_effect())))
        try:
            _one_step(arm, step_fn, batch, with_data)
        finally:
            handle.remove()

    def run_block(arm: _Arm, n: int, timed: bool, preloaded: bool, measure_saved: bool = False) -> float:
        """``n`` steps.  Loop timing: from the arrival of the block's first batch to the arrival of
        the batch after the last step (the loader's start-up outside, ``n`` loads and ``n`` steps
        inside, no untimed work giving the loader a head start).  Step timing: the block's ``n``
        batches are loaded first and the loader closed; the clock covers the ``n`` steps only."""
        state.restore()
        cm = arm.variant.applied(ctx) if arm.variant is not None else contextlib.nullcontext()
        with cm:
            arm.open()
            try:
                if preloaded:
                    batches = [arm.batch() for _ in range(n)]
                    arm.close()  # no loader work while the steps are timed
                    first = batches[0]
                else:
                    n = -(-n // arm.period) * arm.period
                    batches, first = None, (arm.batch() if with_data else None)
                batch = first
                synchronize(device)  # any GPU (CUDA/ROCm, MPS, XPU) runs asynchronously
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                losses = []
                t0 = time.perf_counter()
                for i in range(n):
                    if batches is not None:
                        batch = batches[i]
                    losses.append(_one_step(arm, step_fn, batch, with_data))
                    if batches is None:
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
                        _one_step(arm, step_fn, first if preloaded else batch, with_data)
                    finally:
                        meter.end()
                    arm.saved = meter.total
                    if arm.variant is not None and variant.in_effect is not None:
                        check_effect(arm, first if preloaded else batch)
            finally:
                arm.close()
        return dt

    def measure(base: _Arm, var: _Arm, preloaded: bool, label: str) -> None:
        warm = []
        for arm in (base, var):
            warm.append(run_block(arm, warmup, timed=False, preloaded=preloaded, measure_saved=not label))
            tick(f"{label}warm-up {arm.name}")
        if not label:  # decided once: the loop with its loading (label) is timed in blocks of the same length
            block[0] = _block_length(block[0], min(warm), min_block_s)
        for i in range(pairs):
            for arm in ((base, var) if i % 2 == 0 else (var, base)):
                run_block(arm, block[0], timed=True, preloaded=preloaded)
                tick(f"{label}pair {i + 1}/{pairs}: {arm.name}")

    arms: list[_Arm] = []
    try:
        # Every block's iterators are made from the same RNG state: a shuffled loader yields the same batches.
        vdata = variant.make_data(data) if changes_data else data
        arms += [_Arm("baseline", None, data), _Arm("variant", variant, vdata)]
        measure(arms[0], arms[1], preload, "")
        if effect and not any(effect):
            raise ValueError(f"verify: {variant.name} was not in effect inside the model's forward: the step "
                             "undoes it from within (e.g. its own torch.autocast(..., enabled=False) around the "
                             "forward); an A/B would compare the baseline with itself.  Apply the snippet by hand.")
        if with_loop:
            arms += [_Arm("baseline", None, data), _Arm("variant", variant, vdata)]
            measure(arms[2], arms[3], False, "with loading: ")
    finally:
        for arm in arms:
            arm.close()
        state.restore()
    res = _summarise(variant, arms[0], arms[1], block[0], pairs, target)
    res.extra["timing"] = "step" if preload else "loop"
    res.extra["in_effect"] = any(effect) if effect else None
    if variant.in_effect is not None and not effect:
        res.reason += ("; the step never called the model given to verify, so the change may not have reached "
                       "the step (pass the model the step trains)")
    if with_loop:
        loop = _summarise(variant, arms[2], arms[3], block[0], pairs, target)
        res.extra["with_loading"] = loop_figure(res, loop, target)
    return res


def _one_step(arm: _Arm, step_fn: Callable[..., Any], batch: Any, with_data: bool) -> Any:
    """One training step of ``arm`` on ``batch`` (its per-step context, e.g. autocast, around it)."""
    wrap = arm.variant.step_context() if arm.variant is not None and arm.variant.step_context else contextlib.nullcontext()
    with wrap:
        return step_fn(batch) if with_data else step_fn()


def _block_length(block: int, step_s: float, min_block_s: float) -> int:
    """Steps per timed block: at least ``block``, and enough for ``min_block_s`` at the warm-up's
    per-step time (which includes first-step costs, so it errs towards shorter blocks); at most
    ``MAX_BLOCK`` (step timing preloads a block's batches)."""
    if min_block_s <= 0 or not step_s > 0 or block * step_s >= min_block_s:
        return block
    return max(block, min(MAX_BLOCK, math.ceil(min_block_s / step_s)))


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
