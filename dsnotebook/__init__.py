"""dsnotebook: see inside PyTorch training, live, in the notebook cell that runs it.

``%load_ext dsnotebook`` then ``%%deepseek_trace`` on a training cell, or
``with ModelTracer(model, optimizer) as tracer: ...`` in code.
"""
from __future__ import annotations

from typing import Any

from dsnotebook.run.store import Run
from dsnotebook.trace.tracer import ModelTracer

__version__ = "0.1.0"
__all__ = ["ModelTracer", "Run", "detect_gpu", "load_ipython_extension", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "detect_gpu":  # lazy: hardware detection is not needed to import the package
        from dsnotebook.advisor.settings import detect_gpu  # the facts, plus get_optimal_settings()

        return detect_gpu
    raise AttributeError(f"module 'dsnotebook' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext dsnotebook``: registers ``%%deepseek_trace``."""
    from dsnotebook._magics import TraceMagics

    ipython.register_magics(TraceMagics)


def unload_ipython_extension(ipython: Any) -> None:
    pass
