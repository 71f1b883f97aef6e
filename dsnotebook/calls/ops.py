"""The torch ops inside a sampled "trace" call, through a ``TorchFunctionMode``.

Each torch function called while the mode is active (``F.conv2d``, ``Tensor.add``,
``torch.matmul``, ...) becomes a child call of kind "op" of the innermost traced call or
module, with its wall time (and device time on CUDA) and its output shapes.  The mode is
pushed only for sampled calls (``sample_every``) and always popped, also when the call
raises.  Metadata queries (``Tensor.shape``, ``dim()``, ``size()``...) are not recorded, and
neither is dsnotebook's own tensor work (statistics of "debug" summaries).  Ops run by an op
(torch's Python implementations) are inside it, not beside it: the mode is off while one runs.
"""
from __future__ import annotations

import contextvars
import threading
import time
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode, resolve_name

from dsnotebook.calls.record import TRACE, Call, Site, error_text

__all__ = ["OpMode", "quiet", "MAX_OPS"]

#: ops recorded per sampled call (the rest run untouched)
MAX_OPS = 2000
#: set while dsnotebook itself computes on tensors inside a traced call: not the user's ops
quiet: "contextvars.ContextVar[bool]" = contextvars.ContextVar("dsnotebook_calls_quiet", default=False)

_SKIP = frozenset({"dim", "size", "stride", "numel", "nelement", "ndimension", "is_contiguous", "data_ptr",
                   "element_size", "is_floating_point", "is_complex", "storage_offset", "untyped_storage",
                   "__len__", "__format__", "__repr__", "__bool__", "__index__", "__int__", "__float__", "__hash__",
                   "__get__", "__set__", "_is_view", "requires_grad_", "__iter__", "__contains__", "__reduce_ex__",
                   "__deepcopy__", "__setstate__", "tolist", "item"})
_sites: dict[Any, Site | None] = {}
_sites_lock = threading.Lock()


def op_site(func: Any) -> Site | None:
    """The site of a torch function (None: a metadata query, not recorded)."""
    site = _sites.get(func)
    if site is None and func not in _sites:
        try:
            name = resolve_name(func) or getattr(func, "__qualname__", None) or repr(func)
        except Exception:
            name = repr(func)
        last = name.rsplit(".", 1)[-1]
        if last in _SKIP:
            site = None
        else:
            for long, short in (("torch.nn.functional.", "F."), ("torch._C._nn.", "F."), ("torch._C._VariableFunctions.", "torch."),
                                ("torch.Tensor.", "Tensor.")):
                if name.startswith(long):
                    name = short + name[len(long):]
                    break
            site = Site(name, "op", TRACE)
        with _sites_lock:
            _sites[func] = site
    return site


def _shapes(out: Any) -> list[dict[str, Any]] | None:
    if isinstance(out, torch.Tensor):
        return [{"name": "out", "shape": list(out.shape), "dtype": str(out.dtype).replace("torch.", "")}]
    if isinstance(out, (tuple, list)):
        res = [{"name": f"out[{i}]", "shape": list(o.shape), "dtype": str(o.dtype).replace("torch.", "")}
               for i, o in enumerate(out[:8]) if isinstance(o, torch.Tensor)]
        return res or None
    return None


class OpMode(TorchFunctionMode):
    """Records the torch functions called under one sampled call (see the module docstring).

    ``begin(site)`` makes a child :class:`Call` of the innermost call (with the device pair when
    CUDA is on) and ``end(call)`` closes it and hands it to the sink: both are the wrapper's, so ops are
    counted and corrected like every other call.
    """

    def __init__(self, owner: Call, begin: Callable[[Site], Call], end: Callable[[Call], None],
                 max_ops: int = MAX_OPS) -> None:
        super().__init__()
        self.owner = owner
        self._begin, self._end = begin, end
        self.max_ops = max_ops
        self.count = 0
        self.skipped = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if quiet.get():
            return func(*args, **kwargs)
        site = op_site(func)
        if site is None:
            return func(*args, **kwargs)
        if self.count >= self.max_ops:
            self.skipped += 1
            return func(*args, **kwargs)
        self.count += 1
        rec = self._begin(site)
        rec.t0 = time.perf_counter()
        try:
            out = func(*args, **kwargs)
        except BaseException as exc:
            rec.t1 = time.perf_counter()
            rec.error = error_text(exc)
            self._end(rec)
            raise
        rec.t1 = time.perf_counter()
        try:
            rec.outputs = _shapes(out)
        except Exception:  # an exotic output: no shapes, never an error in the user's code
            pass
        self._end(rec)
        return out
