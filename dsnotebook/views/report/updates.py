"""Report section: update ratios ||update|| / ||weight|| per tensor and step, and their median.

The Run's ``update_ratio`` (what the live heatmap's "update / weight" shows), thinned like
the gradient heatmap and sharing its columns and x range, so the two line up.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, CustomJSHover, HoverTool, Span
from bokeh.plotting import figure

from dsnotebook.views.report.columns import Columns, reduce_max, stat_matrices
from dsnotebook.views.report.markup import heading, note
from dsnotebook.views.report.matrix import STEP_HOVER, matrix_figure, step_axis

__all__ = ["update_section"]

RULE_OF_THUMB = 1e-3  # update/weight around 1e-3 is the usual healthy order of magnitude


def update_section(run: Any, steps: list[int], cols: Columns, cols_src: ColumnDataSource,
                   rows_src: ColumnDataSource, x_range: Any) -> list[Any]:
    items: list[Any] = [heading("Update ratios")]
    mats = stat_matrices(run, "updates", ("update_ratio", "changed_frac"), steps)
    ratio, changed = mats["update_ratio"], mats["changed_frac"]
    if not np.isfinite(ratio).any():
        return items + [note("No update statistics were recorded (no optimizer traced, or track_updates=False).")]
    img = reduce_max(ratio, cols)
    items.append(note("||update|| / ||weight|| after each optimizer step (largest of each column's steps); "
                      f"around {RULE_OF_THUMB:g} is the usual order of magnitude. 'changed' is the fraction of "
                      "elements that moved (0: the tensor did not update)."))
    parts, _fig = matrix_figure({"update_ratio": img, "changed_frac": reduce_max(changed, cols)},
                                {"update_ratio": "update / weight", "changed_frac": "changed fraction"},
                                {"update_ratio": True, "changed_frac": False}, rows_src, cols_src,
                                title="update per tensor", x_range=x_range, name="dsn-update-heatmap")
    items += parts
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(ratio), ratio, np.nan)
        has = np.isfinite(finite).any(axis=0)
        med = np.full(finite.shape[1], np.nan)
        if has.any():
            med[has] = np.nanmedian(finite[:, has], axis=0)
    line = reduce_max(med[None, :], cols)[0].astype(np.float64)
    ok = np.isfinite(line) & (line > 0)
    fig = figure(title="median update / weight over tensors", height=180, sizing_mode="stretch_width",
                 x_range=x_range, y_axis_type="log", tools="xpan,xwheel_zoom,box_zoom,reset,save",
                 name="dsn-update-median")
    src = ColumnDataSource({"x": (np.arange(cols.n) + 0.5)[ok], "y": line[ok]})
    rend = fig.line("x", "y", source=src, line_width=1.5)
    fig.add_layout(Span(location=RULE_OF_THUMB, dimension="width", line_dash="dashed", line_color="#999"))
    fig.add_tools(HoverTool(renderers=[rend], mode="vline", tooltips=[("step", "@x{custom}"),
                                                                      ("median", "@y{0.000e0}")],
                            formatters={"@x": CustomJSHover(args={"cols": cols_src, "how": "max"}, code=STEP_HOVER)}))
    step_axis(fig, cols_src)
    items.append(fig)
    return items
