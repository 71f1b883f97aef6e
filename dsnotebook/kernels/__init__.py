"""Fused CuPy raw kernels for the per-step statistics.

``is_available()`` says whether they can run here; ``CupyStatsBackend`` computes the
same table as ``dsnotebook.stats.reference.TorchStatsBackend`` (see ``backend.py`` for the design:
one multi-tensor launch, cached plans, no host synchronisation).

Importing this package never imports cupy: ``import dsnotebook.kernels`` works on
machines without cupy or without a GPU, and cupy is only touched by ``is_available``
(guarded) and by the backend's first call.

Decisions (details in the files named):

* Strides are handled in-kernel: tensors that are dense in any dimension order
  (contiguous, transposed, channels_last) are read as flat memory with 16-byte vector
  loads (a scalar head/tail handles misaligned views such as storage offset 1); other
  views are read element by element through their collapsed sizes/strides.  Only views
  with more than 6 non-mergeable dims, or pointers not aligned to the element size, are
  copied (staged) each call -- see ``layout.py``.
* Update statistics cost 4 x element size bytes per parameter (16 B fp32, 8 B bf16):
  one fused snapshot copy (read + write) before the step, one fused read of snapshot +
  new weights after it; exact "changed" counts for any optimizer -- see ``update_stats.cu``.
  ``update_stats(..., carry=True)`` also writes the new weights over the snapshot (3 x
  element size), which UpdateStatsProbe(carry=True) reuses as the next "before".
* bf16 gradients are instruction-bound: the usual 16-byte vector takes a fast path where a
  value's histogram row is its exponent byte (one byte permute, one shared atomic per value,
  16-bit per-thread counters) -- see ``grad_stats.cu``; results are bit-identical to the
  previous kernel (``tests/kernels/legacy_grad_stats.cu``).
* Determinism: fp64 partial sums per block reduced in block order by the tensor's last
  block; counts via 64-bit integer atomics (exact, order-free); no float atomics --
  see ``grad_stats.cu``.  Results are bitwise identical run to run.
* Returned tensors are reused buffers, overwritten by the next call for the same tensors;
  safe when the caller enqueues its device->host copy right after (``backend.py``).

Files: ``common.cuh`` (layout + element access), ``grad_stats.cu``,
``update_stats.cu`` (the kernels), ``layout.py`` (table and block map, numpy),
``plans.py`` (plan cache), ``backend.py`` (launches).
"""
from __future__ import annotations

from typing import Any

__all__ = ["is_available", "CupyStatsBackend"]

_available: bool | None = None


def is_available() -> bool:
    """True only when cupy imports and ``cupy.cuda.is_available()`` is True.  Never raises.

    ``cupy.cuda.is_available()`` is the first and, without a GPU, the only cupy call.
    """
    global _available
    if _available is None:
        try:
            import cupy

            _available = bool(cupy.cuda.is_available())
        except Exception:  # ImportError, missing CUDA libraries, driver errors
            _available = False
    return _available


def __getattr__(name: str) -> Any:
    # Lazy: the backend module imports numpy/torch helpers only when asked for.
    if name == "CupyStatsBackend":
        from dsnotebook.kernels.backend import CupyStatsBackend

        return CupyStatsBackend
    raise AttributeError(name)
