"""Fused CuPy raw kernels for the per-step statistics (C12).

``is_available()`` says whether they can run here; ``CupyStatsBackend`` computes the
same table as ``dsnotebook.stats.TorchStatsBackend`` (see ``backend.py`` for the design:
one multi-tensor launch, cached plans, no host synchronisation).

Importing this package never imports cupy: ``import dsnotebook.kernels`` works on
machines without cupy or without a GPU, and cupy is only touched by ``is_available``
(guarded) and by the backend's first call.

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
        from .backend import CupyStatsBackend

        return CupyStatsBackend
    raise AttributeError(name)
