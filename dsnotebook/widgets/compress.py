"""Compression panel (anywidget): the before/after table with bars, the per-layer sensitivity
chart, and a "use this model" button per row.

A pure renderer (the numbers arrive measured, shaped by :mod:`dsnotebook.views.compress_view`).
Traits:

* ``rows``: one dict per model, the original first: ``method, status, backend, params,
  size_bytes, size_ratio, sparse_bytes, sparse_format, latency_b1_ms, latency_b1_iqr_ms,
  speedup_b1, speedup_b1_lo, speedup_b1_hi, verdict_b1`` (the same for ``bN``), ``metric``,
  ``metric_delta``, ``max_abs_dev``, ``rel_dev``, ``agreement``, ``warnings`` (list of text),
  ``notes`` (list of text);
* ``sensitivity``: ``[{"method", "layer", "type", "metric", "metric_delta", "max_abs_dev"}]``;
* ``metric_name``, ``higher_is_better``, ``has_metric``, ``batch`` (N of the "batch N" columns);
* ``chosen``: the method whose model the user picked (the button sets it; the feeder hands the
  model back to Python); ``status``, ``title``.

Outside a browser the text summary given as ``text_fallback`` is the widget's ``text/plain``.
"""
from __future__ import annotations

from typing import Any, Callable

import anywidget
import traitlets

from dsnotebook.widgets.esm import load_esm
from dsnotebook.widgets.panel import with_text_fallback

__all__ = ["CompressionWidget"]


class CompressionWidget(anywidget.AnyWidget):
    _esm = load_esm("compress")

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    sensitivity = traitlets.List(traitlets.Dict()).tag(sync=True)
    metric_name = traitlets.Unicode("metric").tag(sync=True)
    higher_is_better = traitlets.Bool(True).tag(sync=True)
    has_metric = traitlets.Bool(False).tag(sync=True)
    batch = traitlets.Int(1).tag(sync=True)
    chosen = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("compression").tag(sync=True)

    def __init__(self, text_fallback: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_fallback = text_fallback

    def _repr_mimebundle_(self, **kwargs: Any):  # type: ignore[override]
        return with_text_fallback(super()._repr_mimebundle_(**kwargs), self.text_fallback, "compression")
