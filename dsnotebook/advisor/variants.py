"""Reversible changes a suggestion can try: each applies itself and hands back an ``undo``.

A :class:`Variant` is what verification runs against the baseline: ``enter`` changes
global flags, the model or the optimizer in place (and returns the function that puts
them back), ``step_context`` wraps every step (autocast), ``make_data`` builds the
variant's own data source from the user's (a DataLoader with workers),
``work_scale`` says how much more work one step does (a doubled batch) so speed is
compared per sample, and ``in_effect`` checks from inside the model's forward that the
change reached it.  The same helpers back ``OptimalSettings.apply``; every one of them
undoes exactly what it changed.
"""
from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Iterator

import torch
from torch import nn

from dsnotebook.perf.hardware import backend_flag, device_available
from dsnotebook.advisor.layout import match_optimizer_state, to_channels_last  # noqa: F401  (re-exported)

Undo = Callable[[], None]


@dataclass
class VerifyContext:
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    data: Any


@dataclass
class Variant:
    name: str
    enter: Callable[[VerifyContext], Undo] | None = None
    step_context: Callable[[], ContextManager[Any]] | None = None
    make_data: Callable[[Any], Any] | None = None
    work_scale: float = 1.0
    min_warmup: int = 1
    # Whether the change is in effect, asked inside the model's forward during the variant's warm-up:
    # a step can undo a change from within (its own ``autocast(enabled=False)``), and then the A/B
    # would compare the baseline with itself and call the change useless.
    in_effect: Callable[[], bool] | None = None

    @contextlib.contextmanager
    def applied(self, ctx: VerifyContext) -> Iterator[None]:
        undo = self.enter(ctx) if self.enter is not None else None
        try:
            yield
        finally:
            if undo is not None:
                undo()


def autocast_on(device: str) -> bool:
    """Whether autocast is enabled for ``device`` here (torch >= 2.4 takes the device type)."""
    try:
        return bool(torch.is_autocast_enabled(device))
    except TypeError:  # pragma: no cover - older signatures
        return bool(torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled())


# -- flags ----------------------------------------------------------------------------------
# torch >= 2.9 describes float32 precision per backend and operation (``fp32_precision``:
# "none" inherits, "ieee", "tf32", "bf16"); the legacy flags (``allow_tf32``,
# ``set_float32_matmul_precision``) are kept beside it, and their getters raise when the two
# disagree.  A change made here keeps both sides agreeing and its undo puts back every value
# of both exactly as it was, including a user's earlier choice.
_FP32_PROPS = ("fp32_precision", "cuda.matmul.fp32_precision", "cudnn.fp32_precision", "cudnn.conv.fp32_precision",
               "cudnn.rnn.fp32_precision", "mkldnn.fp32_precision", "mkldnn.matmul.fp32_precision",
               "mkldnn.conv.fp32_precision", "mkldnn.rnn.fp32_precision")
_TF32_OPS = ("cuda.matmul.fp32_precision", "cudnn.conv.fp32_precision", "cudnn.rnn.fp32_precision")


def _backend_attr(path: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    obj: Any = torch.backends
    for p in parents:
        obj = getattr(obj, p)
    return obj, name


@dataclass(frozen=True)
class PrecisionState:
    """Every float32-precision setting torch has: per-op values and the legacy flags (None: unreadable)."""

    ops: dict[str, str]
    matmul_precision: str | None
    matmul_tf32: bool | None
    cudnn_tf32: bool | None
    onednn_tf32: bool | None = None  # oneDNN's legacy flag (Intel GPUs; None on builds without XPU)

    @classmethod
    def capture(cls) -> "PrecisionState":
        try:
            mm: str | None = torch.get_float32_matmul_precision()
        except RuntimeError:  # the user's settings already mix the APIs: read what can be read
            mm = None
        ops = {p: v for p in _FP32_PROPS if (v := backend_flag(p)) is not None}
        return cls(ops=ops, matmul_precision=mm, matmul_tf32=backend_flag("cuda.matmul.allow_tf32"),
                   cudnn_tf32=backend_flag("cudnn.allow_tf32"), onednn_tf32=backend_flag("mkldnn.allow_tf32"))

    def restore(self) -> None:
        """Legacy flags first (their setters also write per-op values), then every per-op value."""
        if self.matmul_precision is not None:
            torch.set_float32_matmul_precision(self.matmul_precision)
        elif self.matmul_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = self.matmul_tf32
        if self.cudnn_tf32 is not None:
            torch.backends.cudnn.allow_tf32 = self.cudnn_tf32
        if self.onednn_tf32 is not None:
            torch.backends.mkldnn.allow_tf32 = self.onednn_tf32
        for path, value in self.ops.items():
            obj, name = _backend_attr(path)
            setattr(obj, name, value)


def set_tf32(on: bool, device: str = "cuda") -> Undo:
    """TF32 for fp32 matmuls and convolutions/RNNs on (or off); ``undo`` restores the exact prior state.

    ``device="cuda"``: cuBLAS and cuDNN (NVIDIA; under ROCm the same settings reach hipBLASLt);
    ``"xpu"``: oneDNN on Intel GPUs.  The per-op values (``fp32_precision``) are set where torch
    has them; the legacy flags are moved along only where they disagree, so readers of either
    API see the change and none raises."""
    if device == "xpu":
        return _set_onednn_tf32(on)
    if device != "cuda":
        raise ValueError(f"TF32 exists for 'cuda' and 'xpu' devices, not {device!r}")
    before = PrecisionState.capture()
    if on and before.matmul_tf32 is False:
        torch.backends.cuda.matmul.allow_tf32 = True
    elif not on and before.matmul_precision not in (None, "highest"):
        torch.set_float32_matmul_precision("highest")  # also oneDNN: "off" is full fp32 everywhere
    elif not on and before.matmul_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
    if before.cudnn_tf32 is not None and before.cudnn_tf32 != on:
        torch.backends.cudnn.allow_tf32 = on
    if before.ops:
        for path in _TF32_OPS:
            obj, name = _backend_attr(path)
            setattr(obj, name, "tf32" if on else "ieee")
    return before.restore


_ONEDNN_OPS = ("mkldnn.matmul.fp32_precision", "mkldnn.conv.fp32_precision", "mkldnn.rnn.fp32_precision")


def _set_onednn_tf32(on: bool) -> Undo:
    """oneDNN (Intel GPUs): ``set_float32_matmul_precision("high")`` where the user left the default
    (it keeps every reader agreeing), per-op values for convolutions/RNNs (a user's bf16 kept), or
    the legacy oneDNN flag on a torch without per-op values."""
    before = PrecisionState.capture()
    if on and before.matmul_precision == "highest":
        torch.set_float32_matmul_precision("high")
    elif not on and before.matmul_precision == "high":
        torch.set_float32_matmul_precision("highest")
    if before.ops:
        for path in _ONEDNN_OPS:
            if path in before.ops and before.ops[path] != "bf16":
                obj, name = _backend_attr(path)
                setattr(obj, name, "tf32" if on else "ieee")
    elif before.onednn_tf32 is not None:
        torch.backends.mkldnn.allow_tf32 = on
    return before.restore


def set_cudnn_benchmark(on: bool) -> Undo:
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    return lambda: setattr(torch.backends.cudnn, "benchmark", old)


# -- model ----------------------------------------------------------------------------------
_compiled: "weakref.WeakKeyDictionary[nn.Module, Any]" = weakref.WeakKeyDictionary()


def compile_in_place(model: nn.Module, **kwargs: Any) -> Undo:
    """What ``nn.Module.compile`` does (in place: the user's reference keeps pointing at the model),
    with the compiled callable kept per model, so that A/B blocks switching it on and off do not
    compile again."""
    fn = _compiled.get(model) if not kwargs else None
    if fn is None:
        fn = torch.compile(model._call_impl, **kwargs)
        if not kwargs:
            _compiled[model] = fn
    model._compiled_call_impl = fn
    return lambda: setattr(model, "_compiled_call_impl", None)


def checkpoint_modules(modules: Iterable[nn.Module]) -> Undo:
    """Activation checkpointing around each module's forward (non-reentrant torch.utils.checkpoint)."""
    from torch.utils.checkpoint import checkpoint

    done = []
    for m in modules:
        if "forward" in m.__dict__:
            continue
        m.forward = functools.partial(checkpoint, type(m).forward.__get__(m), use_reentrant=False)
        done.append(m)

    def undo() -> None:
        for m in done:
            m.__dict__.pop("forward", None)
    return undo


# -- optimizer ------------------------------------------------------------------------------
def set_optimizer_impl(optimizer: torch.optim.Optimizer, impl: str) -> Undo:
    """Switch an optimizer to ``fused`` or ``foreach`` kernels (param group flags), reversibly."""
    if impl not in ("fused", "foreach"):
        raise ValueError(f"impl must be 'fused' or 'foreach', got {impl!r}")
    keys = ("fused", "foreach")
    old = [{k: g[k] for k in keys if k in g} for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        if impl == "fused" and "fused" not in g:
            raise ValueError(f"{type(optimizer).__name__} has no fused implementation")
        if "fused" in g:
            g["fused"] = impl == "fused"
        g["foreach"] = impl == "foreach"

    def undo() -> None:
        for g, saved in zip(optimizer.param_groups, old):
            for k in keys:
                if k in saved:
                    g[k] = saved[k]
                else:
                    g.pop(k, None)
    return undo


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> Undo:
    """Clip the optimizer's gradients to ``max_norm`` right before every step (a pre-step hook)."""
    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    return optimizer.register_step_pre_hook(hook).remove


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> Undo:
    old = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = g["lr"] * factor

    def undo() -> None:
        for g, lr in zip(optimizer.param_groups, old):
            g["lr"] = lr
    return undo


# -- data -----------------------------------------------------------------------------------
def loader_with(loader: Any, **changes: Any) -> Any:
    """The same DataLoader (dataset, sampler, collate) with other settings (workers, batch size)."""
    from torch.utils.data import DataLoader, IterableDataset

    if not isinstance(loader, DataLoader):
        raise TypeError(f"expected a torch DataLoader, got {type(loader).__qualname__}")
    batch_size = changes.pop("batch_size", None)
    kw: dict[str, Any] = dict(collate_fn=loader.collate_fn, num_workers=loader.num_workers,
                              pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
                              timeout=loader.timeout, multiprocessing_context=loader.multiprocessing_context,
                              generator=loader.generator, persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kw["prefetch_factor"] = loader.prefetch_factor
    kw.update(changes)
    if kw.get("num_workers", 0) == 0:
        kw.pop("prefetch_factor", None)
        kw["persistent_workers"] = False
    if isinstance(loader.dataset, IterableDataset):  # no sampler: the dataset yields in its own order
        return DataLoader(loader.dataset, batch_size=batch_size or loader.batch_size, drop_last=loader.drop_last, **kw)
    if batch_size is None and loader.batch_sampler is not None:
        return DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, **kw)
    return DataLoader(loader.dataset, batch_size=batch_size or loader.batch_size, sampler=loader.sampler,
                      drop_last=loader.drop_last, **kw)


class Prefetcher:
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead (for any iterable
    whose items are slow to produce: I/O, decoding, sleeping in tests).

    Closing the iterator (or dropping it) stops the thread and waits for the item it is
    loading: no loading goes on after the consumer has stopped.  An error in the iterable
    is raised in the consumer."""

    def __init__(self, iterable: Iterable[Any], depth: int = 4) -> None:
        self.iterable, self.depth = iterable, depth

    def __iter__(self) -> Iterator[Any]:
        q: queue.Queue = queue.Queue(self.depth)
        end = object()
        stop = threading.Event()
        failed: list[BaseException] = []

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for item in self.iterable:
                    if not put(item):
                        return
            except BaseException as exc:  # handed to the consumer
                failed.append(exc)
            put(end)

        thread = threading.Thread(target=work, daemon=True, name="dsnotebook-prefetch")
        thread.start()
        try:
            while (item := q.get()) is not end:
                yield item
            if failed:
                raise failed[0]
        finally:
            stop.set()
            thread.join(timeout=30.0)


def faster_loading(num_workers: int, pin_memory: bool) -> Callable[[Any], Any]:
    """make_data for the data-loader rule: worker processes for a DataLoader, a prefetch thread otherwise."""
    pin_memory = pin_memory and (device_available("cuda") or device_available("xpu"))  # advice made for a GPU
    num_workers = min(num_workers, max(2, os.cpu_count() or 1))  # verified on this machine's cores

    def make(data: Any) -> Any:
        from torch.utils.data import DataLoader

        if isinstance(data, DataLoader):
            return loader_with(data, num_workers=num_workers, pin_memory=pin_memory,
                               persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers else None)
        return Prefetcher(data, depth=max(2, 2 * num_workers))
    return make
