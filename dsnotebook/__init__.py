"""dsnotebook: see inside PyTorch training, live, in the notebook cell that runs it.

``%load_ext dsnotebook`` then ``%%deepseek_trace`` on a training cell, or
``with ModelTracer(model, optimizer) as tracer: ...`` in code.
"""
from __future__ import annotations

from typing import Any

from dsnotebook.run.store import Run, set_report_writer
from dsnotebook.trace.tracer import ModelTracer
from dsnotebook import trace  # callable: @dsnotebook.trace(level=...), dsnotebook.trace.span(...), .calls()
from dsnotebook import compress  # callable: dsnotebook.compress(model, methods, example_inputs, ...)

__version__ = "0.1.0"
__all__ = ["ModelTracer", "Run", "compare", "compress", "follow", "trace", "detect_gpu", "report",
           "load_ipython_extension", "__version__"]


def follow(path: Any, interval: float = 1.0, keep: Any = None, display: bool = True) -> Any:
    """Show the live dashboard of a run directory another process is writing (``ModelTracer(...,
    log_dir=path)`` in a script), polled at most once a second until that run finishes."""
    from dsnotebook.views.follow import follow as _follow

    return _follow(path, interval=interval, keep=keep, display=display)


def compare(*runs: Any, display: bool = True) -> Any:
    """Gradient heatmaps of two or more runs side by side (Runs, tracers or run directories);
    tables with a ``run`` column: ``Run.open(parent).to_dataframe(table)``."""
    from dsnotebook.views.compare import compare as _compare

    return _compare(*runs, display=display)


def __getattr__(name: str) -> Any:
    if name == "detect_gpu":  # lazy: hardware detection is not needed to import the package
        from dsnotebook.advisor.settings import detect_gpu  # the facts, plus get_optimal_settings()

        return detect_gpu
    raise AttributeError(f"module 'dsnotebook' has no attribute {name!r}")


def report(run: Any, path: Any, **options: Any) -> Any:
    """Write the standalone HTML report (bokeh, resources inline) of a Run or a tracer to ``path``;
    ``run.report(path)`` and ``tracer.report(path)`` call this. Returns the file's path."""
    from dsnotebook.views.report import write_report

    if hasattr(run, "flush") and hasattr(run, "run"):  # a tracer: let in-flight copies land first
        run.flush(wait=True)
        run = run.run
    return write_report(run, path, **options)


set_report_writer(report)  # Run.report -> the views layer, without the Run importing a view


def _compression_widget(result: Any, on_choose: Any = None) -> Any:
    from dsnotebook.views.compress_view import compression_widget

    return compression_widget(result, on_choose=on_choose)


# compress sits below trace and views: the distilled student is traced by ModelTracer, result.widget() is a view
compress.configure(tracer=ModelTracer, widget=_compression_widget)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext dsnotebook``: registers ``%%deepseek_trace`` and ``%deepseek_open``."""
    from dsnotebook._magics import TraceMagics

    ipython.register_magics(TraceMagics)


def unload_ipython_extension(ipython: Any) -> None:
    pass
