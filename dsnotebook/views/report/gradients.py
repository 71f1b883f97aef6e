"""Report section: the gradient heatmap (tensors x steps, log colour, hover) and the global norm.

Values are the Run's (``Run.matrix``: the numbers of the live heatmap), thinned to the
report's columns like the live heatmap's aggregated bins (largest value of the window);
cells whose window holds non-finite gradient elements get the widgets' red mark, with the
count on hover. The global gradient norm per step is :func:`dsnotebook.perf.measures.global_grad_norms`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, CustomJSHover, HoverTool
from bokeh.plotting import figure

from dsnotebook.perf import measures
from dsnotebook.views.report.columns import Columns, reduce_max, reduce_sum, stat_matrices
from dsnotebook.views.report.markup import heading, note
from dsnotebook.views.report.matrix import MARK_COLOR, ROW_HOVER, STEP_HOVER, matrix_figure, step_axis

__all__ = ["gradient_section"]


def gradient_section(run: Any, steps: list[int], cols: Columns, cols_src: ColumnDataSource,
                     rows_src: ColumnDataSource, x_range: Any) -> list[Any]:
    items: list[Any] = [heading("Gradient flow")]
    if not run.tensors or not steps:
        return items + [note("No gradient statistics were recorded.")]
    mats = stat_matrices(run, "grads", ("norm", "absmax", "nonfinite"), steps)
    norm, absmax = reduce_max(mats["norm"], cols), reduce_max(mats["absmax"], cols)
    items.append(note(f"{len(run.tensors)} tensors x {len(steps)} recorded steps"
                      + (f", shown in {cols.n} columns (each the largest value of its steps)" if cols.n < len(steps)
                         else "") + ". Red outline: non-finite gradient elements in that cell."))
    parts, fig = matrix_figure({"norm": norm, "absmax": absmax}, {"norm": "grad norm", "absmax": "grad abs-max"},
                               {"norm": True, "absmax": True}, rows_src, cols_src, title="gradient per tensor",
                               x_range=x_range, name="dsn-grad-heatmap")
    nf = reduce_sum(mats["nonfinite"], cols)  # non-finite gradient elements per tensor and column
    r, c = np.nonzero(nf > 0)
    if len(r):
        marks = ColumnDataSource({"x": c + 0.5, "y": r + 0.5, "count": nf[r, c]})
        rend = fig.rect(x="x", y="y", width=1, height=1, source=marks, fill_alpha=0, line_color=MARK_COLOR,
                        line_width=2)
        fig.add_tools(HoverTool(renderers=[rend], tooltips=[
            ("tensor", "@y{custom}"), ("step", "@x{custom}"), ("non-finite elements", "@count{0,0}")],
            formatters={"@y": CustomJSHover(args={"rows": rows_src}, code=ROW_HOVER),
                        "@x": CustomJSHover(args={"cols": cols_src, "how": "sum"}, code=STEP_HOVER)}))
    items += parts
    items.append(_global_norm(run, steps, cols, cols_src, x_range, nf.sum(axis=0)))
    return items


def _global_norm(run: Any, steps: list[int], cols: Columns, cols_src: ColumnDataSource, x_range: Any,
                 bad: np.ndarray) -> Any:
    gsteps, gvals = measures.global_grad_norms(run)
    per_step = np.full(len(steps), np.nan)
    pos = {s: i for i, s in enumerate(steps)}
    for s, v in zip(gsteps, gvals):
        if s in pos:
            per_step[pos[s]] = v
    line = reduce_max(per_step[None, :], cols)[0].astype(np.float64)
    x = np.arange(cols.n) + 0.5
    fig = figure(title="global gradient norm (finite steps; red: non-finite elements)", height=200,
                 sizing_mode="stretch_width", x_range=x_range, y_axis_type="log",
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", name="dsn-global-norm")
    ok = np.isfinite(line) & (line > 0)
    src = ColumnDataSource({"x": x[ok], "y": line[ok]})
    rend = fig.line("x", "y", source=src, line_width=1.5)
    fig.add_tools(HoverTool(renderers=[rend], mode="vline", tooltips=[("step", "@x{custom}"), ("norm", "@y{0.0000e0}")],
                            formatters={"@x": CustomJSHover(args={"cols": cols_src, "how": "max"}, code=STEP_HOVER)}))
    hit = np.flatnonzero(bad > 0)
    if len(hit):
        y0 = float(np.nanmin(line[ok])) if ok.any() else 1.0
        fig.scatter(x[hit], np.full(len(hit), y0), marker="triangle", size=9, color=MARK_COLOR)
    step_axis(fig, cols_src)
    return fig
