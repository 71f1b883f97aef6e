"""CupyStatsBackend: the statistics of ``dsnotebook.stats.reference`` from fused CuPy raw kernels.

Design:

* One launch for all tensors of a call: block -> (tensor, chunk of 16Ki or 64Ki
  elements), as in multi_tensor_apply.  The per-tensor table (numel, dtype, layout) and
  the block map are built once per layout of the tensors and cached; the data pointers
  go in a separate small table, uploaded when they move and cached too
  (``plans.PlanCache``).  A cached call costs a few C-level passes over the tensors
  (``plans.py``) and one ``cuLaunchKernel`` whose parameters sit in a buffer built with
  the plan (only the pointer table and output slots are rewritten per call).
* Zero-copy: the kernels read the tensors' memory through their data pointers (what
  ``__cuda_array_interface__`` / DLPack would hand over) and write into torch-owned
  buffers; no array is converted or copied on the way in or out.
* Asynchronous: everything is enqueued on torch's *current* stream; there is no host
  synchronisation, ``.item()`` or ``.cpu()``.  A new layout or pointer set uploads its
  table from pinned memory with a non-blocking copy and allocates buffers through
  torch's caching allocator (no synchronisation either).
* Output buffer reuse: ``grad_stats`` / ``update_stats`` return a tensor that belongs to
  the plan and is overwritten by the next call for the same set of tensors.  That is
  safe when the caller enqueues its device->pinned-host copy on the current stream right
  after the call (the next launch is ordered after that copy), which is what the tracer
  does.  To keep several results on the device, pass ``out=`` or ``.clone()`` them.
  Likewise partial rows, tickets and the snapshot buffer are reused launch after
  launch: calls for one set of tensors must stay on one stream.
* Determinism: fp64 sums as per-block partial rows, reduced in block order by the last
  block of each tensor; counts and abs-max through 64-bit integer atomics (exact in any
  order); see ``grad_stats.cu``.  Results are bitwise identical run to run.
* Strides: see ``layout.py`` (dense in any order and strided views in-kernel; only
  >6-dim strided or misaligned tensors are staged through a copy).
* Update statistics: a flat snapshot (1 read + 1 write of the weights) and one fused
  pass over snapshot + new weights: 4 x element size bytes per parameter in total
  (16 B fp32, 8 B bf16/fp16).  A snapshot stays valid until the next ``snapshot`` call
  for the same tensors.
* Anything the kernels do not handle (CPU tensors, float64 or integer tensors, tensors
  on several devices) goes to the torch reference backend unchanged.
"""
from __future__ import annotations

import pathlib
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from dsnotebook.stats.reference import GRAD_COLS, UPDATE_COLS, TorchStatsBackend
from dsnotebook.kernels import layout as L
from dsnotebook.kernels.plans import PlanCache

KERNEL_DIR = pathlib.Path(__file__).resolve().parent
_compile_lock = threading.Lock()
_modules: dict[tuple, dict[str, Any]] = {}  # (device index, defines, source) -> kernel name -> launcher


def _compile(device_index: int, defines: tuple[str, ...] = (), grad_source: str | None = None) -> dict[str, Any]:
    """Compile both .cu files once per device (cupy also caches the binaries on disk).

    ``defines`` (``-D`` options) select the diagnostic kernel variants of the benchmark;
    ``grad_source`` replaces grad_stats.cu by another file with the same kernel (the
    previous kernel, kept for the bit-identity test and the benchmark).
    """
    import cupy

    key = (device_index, defines, grad_source)
    with _compile_lock:
        if key in _modules:
            return _modules[key]
        fns: dict[str, Any] = {}
        with cupy.cuda.Device(device_index):
            for src, names in ((grad_source or "grad_stats.cu", ("dsn_grad_stats",)),
                               ("update_stats.cu", ("dsn_snapshot", "dsn_update_stats", "dsn_update_carry"))):
                code = (KERNEL_DIR / src).read_text()
                mod = cupy.RawModule(code=code, options=("-std=c++17", f"-I{KERNEL_DIR}") + defines)
                for name in names:
                    fns[name] = _Launcher(mod.get_function(name))
        _modules[key] = fns
        return fns


class _StreamRef:
    """A raw stream pointer in the CUDA stream protocol (for cupy's from_external)."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.ptr)


_streams: dict[int, Any] = {}


def _cupy_stream(ptr: int) -> Any:
    s = _streams.get(ptr)
    if s is None:
        import cupy

        try:
            s = cupy.cuda.Stream.from_external(_StreamRef(ptr))
        except Exception:  # older cupy: no from_external / no stream protocol
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                s = cupy.cuda.ExternalStream(ptr)
        _streams[ptr] = s
    return s


class _Launcher:
    """cuLaunchKernel on a given stream with the least Python in between."""

    def __init__(self, raw_kernel: Any):
        self.raw = raw_kernel
        self.fn = raw_kernel.kernel  # compiles now, not inside the first timed step
        self._direct = True
        try:
            from cupy.cuda import driver

            self.ptr = int(self.fn.ptr)
            self.driver_launch = driver.launchKernel
        except Exception:  # pragma: no cover - cupy without the driver API: argument tuples
            self.ptr = 0
            self.driver_launch = None

    def packed(self, grid: int, params: "_Params", stream_ptr: int) -> None:
        """Launch with parameters already in a buffer (see _Params): no conversion per call."""
        if self.driver_launch is not None:
            self.driver_launch(self.ptr, grid, 1, 1, L.THREADS, 1, 1, 0, stream_ptr, params.addr, 0)
        else:
            self(grid, tuple(int(v) for v in params.vals), stream_ptr)

    def __call__(self, grid: int, args: tuple, stream_ptr: int) -> None:
        stream = _cupy_stream(stream_ptr)
        if self._direct:
            try:
                self.fn((grid,), (L.THREADS,), args, shared_mem=0, stream=stream)
                return
            except TypeError:
                self._direct = False
        with stream:
            self.raw((grid,), (L.THREADS,), args)


class _Params:
    """The parameters of one kernel for one plan, laid out as cuLaunchKernel wants them.

    Every parameter of our kernels is 8 bytes (pointers and int64), so ``vals`` holds the
    values and ``ptrs`` the address of each value; cuLaunchKernel copies the values when
    it is called, so the buffer is rewritten and reused from one launch to the next.
    """

    __slots__ = ("vals", "ptrs", "addr")

    def __init__(self, args: Sequence[int]):
        self.vals = np.array([int(a) for a in args], dtype=np.int64)
        base = np.uint64(self.vals.ctypes.data)
        self.ptrs = base + np.arange(len(args), dtype=np.uint64) * np.uint64(8)
        self.addr = int(self.ptrs.ctypes.data)


class _Plan:
    """Device-side table, block map and reusable buffers for one layout of tensors.

    ``fallback`` plans mark sets the kernels do not handle (checked once per layout,
    not per call).
    """

    fallback = False

    def __init__(self, tensors: Sequence[torch.Tensor], key: tuple):
        dev = tensors[0].device
        if not _supported(tensors):
            self.fallback = True
            return
        self.device = dev
        self.device_index = dev.index if dev.index is not None else torch.cuda.current_device()
        self.n = len(tensors)
        self.staged: dict[int, torch.Tensor] = {}
        specs = []
        for i, t in enumerate(tensors):
            sp = L.TensorSpec.of(t)
            if L.needs_staging(sp):
                buf = torch.empty(t.shape, dtype=t.dtype, device=dev)
                self.staged[i] = buf
                sp = L.TensorSpec.of(buf)
            specs.append(sp)
        arr = L.build_plan(specs)
        self.nblocks = arr.nblocks
        self.chunk = arr.chunk
        self.snap_bytes = arr.snap_bytes
        self.meta = _upload(torch.from_numpy(arr.meta), dev)
        self.bmap = _upload(torch.from_numpy(arr.bmap), dev)
        nb = self.nblocks
        z = dict(device=dev)
        self.gpart_f = torch.empty(nb * L.GPART_F, dtype=torch.float64, **z)
        self.gaccu = torch.zeros(self.n * L.GPART_U, dtype=torch.int64, **z)  # zero between launches
        self.gtickets = torch.zeros(self.n, dtype=torch.int32, **z)
        self.upart_f = torch.empty(nb * L.UPART_F, dtype=torch.float64, **z)
        self.uaccu = torch.zeros(self.n * L.UPART_U, dtype=torch.int64, **z)
        self.utickets = torch.zeros(self.n, dtype=torch.int32, **z)
        self.grad_out = torch.empty(self.n, GRAD_COLS, dtype=torch.float64, **z)
        self.update_out = torch.empty(self.n, UPDATE_COLS, dtype=torch.float64, **z)
        self.snap: torch.Tensor | None = None
        p = torch.Tensor.data_ptr
        self.head = (p(self.meta), p(self.bmap))
        self.grad_bufs = (p(self.gpart_f), p(self.gaccu), p(self.gtickets))
        self.upd_bufs = (p(self.upart_f), p(self.uaccu), p(self.utickets))
        self._pointer_tables: OrderedDict[tuple[int, ...], tuple[torch.Tensor, int]] = OrderedDict()
        self.params: dict[str, _Params] = {}  # kernel name -> its parameter buffer

    def device_pointers(self, ptrs: tuple[int, ...]) -> tuple[torch.Tensor, int] | None:
        """Device copy of the data pointers (staging buffers substituted), cached per set."""
        if self.fallback:
            return None
        found = self._pointer_tables.get(ptrs)
        if found is not None:
            self._pointer_tables.move_to_end(ptrs)
            return found
        eff = list(ptrs)
        for i, buf in self.staged.items():
            eff[i] = buf.data_ptr()
        table = _upload(torch.tensor(eff, dtype=torch.int64), self.device)
        found = (table, table.data_ptr())
        self._pointer_tables[ptrs] = found
        while len(self._pointer_tables) > 8:
            self._pointer_tables.popitem(last=False)
        return found

    def stage(self, tensors: Sequence[torch.Tensor]) -> None:
        for i, buf in self.staged.items():
            t = tensors[i]
            if t.shape == buf.shape:
                buf.copy_(t)
            else:  # same plan, other shape of the same contiguous layout (plans.light_signature)
                buf.view(-1).copy_(t.reshape(-1))

    def kernel_params(self, name: str, args: Sequence[int]) -> _Params:
        found = self.params.get(name)
        if found is None:
            found = self.params[name] = _Params(args)
        return found


def _upload(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device on the current stream without a host synchronisation.

    From pinned memory (torch's caching host allocator, reused once the copy's event
    has completed): a copy from pageable memory may make the driver wait for the stream.
    """
    return host.pin_memory().to(device, non_blocking=True)


class _Snapshot:
    """Opaque result of ``snapshot``: the plan it belongs to (its buffer is plan.snap).

    Holds the tensors it was taken of (views of the weights: no memory) so that
    ``update_stats`` with the same objects only re-checks their data pointers.
    """

    __slots__ = ("plan", "fallback", "tensors", "ids", "ptrs", "dptrs")

    def __init__(self, plan: _Plan | None, fallback: Any = None, tensors: Sequence[torch.Tensor] = (),
                 dptrs: Any = None, ids: tuple[int, ...] = (), ptrs: tuple[int, ...] = ()):
        self.plan = plan
        self.fallback = fallback
        self.tensors = tensors
        self.dptrs = dptrs
        self.ids = ids
        self.ptrs = ptrs


def _supported(tensors: Sequence[torch.Tensor]) -> bool:
    dev = tensors[0].device
    if dev.type != "cuda":
        return False
    codes = L.DTYPE_CODES
    for t in tensors:
        if t.dtype not in codes or t.device != dev:
            return False
    return True


class CupyStatsBackend:
    """Same numbers and layout as ``TorchStatsBackend``, from two or three fused launches."""

    name = "cupy"

    def __init__(self, *, _defines: tuple[str, ...] = (), _grad_source: str | None = None) -> None:
        self._defines = tuple(_defines)  # benchmark diagnostics only
        self._grad_source = _grad_source  # another grad_stats kernel source (tests, benchmark)
        self._reference = TorchStatsBackend()
        self._grad_plans: PlanCache[_Plan] = PlanCache(_Plan)
        self._param_plans: PlanCache[_Plan] = PlanCache(_Plan)

    # -- helpers -----------------------------------------------------------------
    def _fns(self, idx: int) -> dict[str, Any]:
        return _modules.get((idx, self._defines, self._grad_source)) or _compile(idx, self._defines, self._grad_source)

    def _launch(self, plan: _Plan, name: str, args: tuple) -> None:
        """Launch with an argument tuple (cupy converts it: the slower, general way)."""
        idx = plan.device_index
        fns = self._fns(idx)
        if torch.cuda.current_device() != idx:
            with torch.cuda.device(idx):
                fns[name](plan.nblocks, args, torch._C._cuda_getCurrentRawStream(idx))
        else:
            fns[name](plan.nblocks, args, torch._C._cuda_getCurrentRawStream(idx))

    def _launch_packed(self, plan: _Plan, name: str, args: tuple, dynamic: tuple[tuple[int, int], ...]) -> None:
        """Launch from the plan's parameter buffer for ``name``; ``dynamic`` = (slot, value) rewritten now.

        ``args`` are the launch's parameters (used to build the buffer on the first call).
        """
        idx = plan.device_index
        launcher = self._fns(idx)[name]
        params = plan.params.get(name) or plan.kernel_params(name, args)
        vals = params.vals
        for slot, value in dynamic:
            vals[slot] = value
        if torch._C._cuda_getDevice() != idx:
            with torch.cuda.device(idx):
                launcher.packed(plan.nblocks, params, torch._C._cuda_getCurrentRawStream(idx))
        else:
            launcher.packed(plan.nblocks, params, torch._C._cuda_getCurrentRawStream(idx))

    @staticmethod
    def _out(out: torch.Tensor | None, default: torch.Tensor) -> torch.Tensor:
        if out is None:
            return default
        if (out.shape != default.shape or out.dtype != torch.float64
                or out.device != default.device or not out.is_contiguous()):
            raise ValueError(f"out must be a contiguous float64 {tuple(default.shape)} tensor "
                             f"on {default.device}")
        return out

    # -- the backend protocol ----------------------------------------------------
    def grad_stats(self, tensors: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
        """[n, GRAD_COLS] float64 on the tensors' device; see the module docstring on reuse."""
        if len(tensors) == 0:
            return torch.zeros(0, GRAD_COLS, dtype=torch.float64)
        if not tensors[0].is_cuda:
            return self._reference.grad_stats(tensors)
        plan, dptrs = self._grad_plans.get(tensors)
        if plan.fallback:
            return self._reference.grad_stats(tensors)
        if plan.staged:
            plan.stage(tensors)
        res = plan.grad_out if out is None else self._out(out, plan.grad_out)
        rp = res.data_ptr()
        self._launch_packed(plan, "dsn_grad_stats", plan.head + (dptrs[1], plan.chunk) + plan.grad_bufs + (rp,),
                            ((2, dptrs[1]), (7, rp)))
        return res

    def snapshot(self, tensors: Sequence[torch.Tensor]) -> _Snapshot:
        """Copy of the weights into the plan's snapshot buffer (valid until the next one)."""
        if len(tensors) == 0 or not tensors[0].is_cuda:
            return _Snapshot(None, self._reference.snapshot(tensors))
        plan, dptrs = self._param_plans.get(tensors)
        if plan.fallback:
            return _Snapshot(None, self._reference.snapshot(tensors))
        if plan.staged:
            plan.stage(tensors)
        if plan.snap is None:
            plan.snap = torch.empty(plan.snap_bytes, dtype=torch.uint8, device=plan.device)
        sp = plan.snap.data_ptr()
        self._launch_packed(plan, "dsn_snapshot", plan.head + (dptrs[1], plan.chunk, sp), ((2, dptrs[1]), (4, sp)))
        cache = self._param_plans
        return _Snapshot(plan, tensors=tensors, dptrs=dptrs, ids=cache.last_ids, ptrs=cache.last_ptrs)

    supports_carry = True

    def update_stats(self, before: _Snapshot, tensors: Sequence[torch.Tensor],
                     out: torch.Tensor | None = None, carry: bool = False) -> torch.Tensor:
        """[n, UPDATE_COLS] float64: sum((new-old)^2), sum(old^2), changed.

        ``carry=True`` also writes the new weights over the snapshot, so that ``before``
        then stands for the weights as they are now (a caller that knows they do not change
        until the next comparison skips the next ``snapshot``; see UpdateStatsProbe).
        """
        if before.plan is None:
            return self._reference.update_stats(before.fallback, tensors)
        if ((tensors is before.tensors or tuple(map(id, tensors)) == before.ids)
                and tuple(map(torch.Tensor.data_ptr, tensors)) == before.ptrs):
            plan, dptrs = before.plan, before.dptrs  # the very tensors of the snapshot, in place
        else:
            plan, dptrs = self._param_plans.get(tensors)
        if plan is not before.plan:
            raise ValueError("update_stats: the tensors changed (shapes, strides, dtypes or "
                             "alignment) since snapshot(); take a new snapshot")
        if plan.staged:
            plan.stage(tensors)
        res = plan.update_out if out is None else self._out(out, plan.update_out)
        rp, sp = res.data_ptr(), plan.snap.data_ptr()
        self._launch_packed(plan, "dsn_update_carry" if carry else "dsn_update_stats",
                            plan.head + (dptrs[1], plan.chunk, sp) + plan.upd_bufs + (rp,),
                            ((2, dptrs[1]), (4, sp), (8, rp)))
        return res
