"""The report's rows x columns heatmap (bokeh ``image``): gradients, updates and activations use it.

One float32 image per statistic; rows are named by a shared ``ColumnDataSource`` (so the
gradient and update heatmaps carry the tensor names once), columns by the shared step
windows of :mod:`dsnotebook.views.report.columns`. Hover reads the row's name, the
column's steps and the exact value through ``CustomJSHover``; bokeh escapes what they
return (tooltips are text unless a field says ``{safe}``, which none here does). Colours
are the widgets' scale (:mod:`dsnotebook.widgets.colors`: viridis, log or linear over the
finite values, grey for no data).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from bokeh.models import (ColumnDataSource, CustomJS, CustomJSHover, CustomJSTickFormatter, FixedTicker, HoverTool,
                          LinearColorMapper, LogColorMapper, PlainText, Range1d, Select, ColorBar)
from bokeh.plotting import figure

from dsnotebook.views.report.columns import Columns
from dsnotebook.widgets import colors

__all__ = ["PALETTE", "NAN_COLOR", "MARK_COLOR", "columns_source", "rows_source", "color_mapper", "matrix_figure",
           "STEP_HOVER", "step_axis"]

PALETTE = ["#%02x%02x%02x" % c for c in colors.LUT]
NAN_COLOR = "#%02x%02x%02x" % colors.NAN_RGB
MARK_COLOR = "#%02x%02x%02x" % colors.MARK_RGB
MAX_LABEL = 48  # characters of a row name on the axis (hover shows it whole)

# value -> "123" / "10-19 (max of 10 steps)": the steps column c covers
STEP_HOVER = """const c = Math.floor(value); const d = cols.data;
if (!(c >= 0 && c < d.first.length)) return "";
return d.count[c] > 1 ? `${d.first[c]}-${d.last[c]} (${how} of ${d.count[c]} steps)` : `${d.first[c]}`;"""
ROW_HOVER = """const r = Math.floor(value); const d = rows.data;
return (r >= 0 && r < d.name.length) ? d.name[r] + (d.detail[r] ? "  " + d.detail[r] : "") : "";"""
VALUE_HOVER = """if (value === null || value === undefined || value !== value) return "no data";
if (value === Infinity) return "inf"; if (value === -Infinity) return "-inf";
const a = Math.abs(value);
return a >= 1e5 || (a !== 0 && a < 1e-3) ? value.toExponential(4) : String(Number(value.toPrecision(5)));"""


def columns_source(cols: Columns) -> ColumnDataSource:
    """The step windows, shared by every figure whose x axis is those columns."""
    return ColumnDataSource({"first": cols.first.astype(np.int32), "last": cols.last.astype(np.int32),
                             "count": cols.count.astype(np.int32), "x": np.arange(cols.n, dtype=np.int32) + 0.5})


def rows_source(names: Sequence[str], details: Sequence[str] | None = None) -> ColumnDataSource:
    """Row names (and a short detail, e.g. a shape) shared by every figure of those rows."""
    names = [str(n) for n in names]
    return ColumnDataSource({"name": names, "detail": [str(d) for d in (details or [""] * len(names))]})


def step_axis(fig: Any, cols_src: ColumnDataSource) -> None:
    """Label the column axis with the first step of each column."""
    fig.xaxis.formatter = CustomJSTickFormatter(args={"cols": cols_src}, code="""
const c = Math.floor(tick); const d = cols.data;
return (c >= 0 && c < d.first.length) ? String(d.first[c]) : "";""")
    fig.xaxis.axis_label = "step"


def color_mapper(values: np.ndarray, log: bool) -> Any:
    """The widgets' scale over the finite (log: finite positive) values of ``values``."""
    lo, hi = colors.value_range(values, log)
    if np.isnan(lo):
        lo, hi = (1.0, 10.0) if log else (0.0, 1.0)
    if hi <= lo:
        hi = lo * 1.001 if log else lo + 1e-9
    cls = LogColorMapper if log else LinearColorMapper
    return cls(palette=PALETTE, low=lo, high=hi, nan_color=NAN_COLOR, low_color=PALETTE[0],
               high_color=PALETTE[-1])


def _row_ticks(n: int, names: Sequence[str]) -> tuple[list[float], dict[float, Any]]:
    """Ticks at row centres (at most ~40) labelled with the row names as PlainText: a plain
    string label would be parsed for TeX delimiters ($$...$$) by bokeh."""
    stride = max(1, int(np.ceil(n / 40)))
    ticks = [i + 0.5 for i in range(0, n, stride)]
    labels = {}
    for t in ticks:
        name = str(names[int(t)])
        labels[t] = PlainText(text=name if len(name) <= MAX_LABEL else name[:MAX_LABEL - 1] + "…")
    return ticks, labels


def matrix_figure(images: dict[str, np.ndarray], labels: dict[str, str], logs: dict[str, bool],
                  rows_src: ColumnDataSource, cols_src: ColumnDataSource, *, title: str, how: str = "max",
                  x_range: Any = None, name: str = "") -> tuple[Any, Any]:
    """A heatmap of ``images`` (each float32 [rows, columns]); with several, a ``Select`` switches
    between them (returns ``(layout items, figure)``). Row 0 is drawn on top."""
    keys = list(images)
    first = keys[0]
    n_rows, n_cols = images[first].shape
    names = rows_src.data["name"]
    height = int(min(900, max(170, 60 + 5 * n_rows)))
    fig = figure(title=title, height=height, sizing_mode="stretch_width", x_range=x_range or Range1d(0, max(1, n_cols)),
                 y_range=Range1d(max(1, n_rows), 0), tools="xpan,xwheel_zoom,box_zoom,reset,save",
                 active_scroll=None, name=name)
    src = ColumnDataSource({k: [np.ascontiguousarray(images[k], dtype=np.float32)] for k in keys})
    mappers = {k: color_mapper(images[k], logs[k]) for k in keys}
    img = fig.image(image=first, x=0, y=0, dw=max(1, n_cols), dh=max(1, n_rows), source=src,
                    color_mapper=mappers[first])
    ticks, overrides = _row_ticks(n_rows, names)
    fig.yaxis.ticker = FixedTicker(ticks=ticks)
    fig.yaxis.major_label_overrides = overrides
    fig.yaxis.major_label_text_font_size = "9px"
    fig.grid.visible = False
    step_axis(fig, cols_src)
    value_fmt = CustomJSHover(code=VALUE_HOVER)
    hover = HoverTool(renderers=[img], tooltips=_tooltips(labels[first], first),
                      formatters={"$y": CustomJSHover(args={"rows": rows_src}, code=ROW_HOVER),
                                  "$x": CustomJSHover(args={"cols": cols_src, "how": how}, code=STEP_HOVER),
                                  **{f"@{k}": value_fmt for k in keys}})
    fig.add_tools(hover)
    bar = ColorBar(color_mapper=mappers[first], width=10, title=labels[first], title_text_font_size="10px")
    fig.add_layout(bar, "right")
    items: list[Any] = [fig]
    if len(keys) > 1:
        select = Select(title="statistic", value=first, options=[(k, labels[k]) for k in keys], width=220)
        select.js_on_change("value", CustomJS(
            args={"img": img, "bar": bar, "hover": hover, "mappers": mappers, "labels": labels, "fig": fig,
                  "title": title},
            code="""const k = cb_obj.value;
img.glyph.image = {field: k};
img.glyph.color_mapper = mappers[k]; bar.color_mapper = mappers[k]; bar.title = labels[k];
hover.tooltips = [["row", "$y{custom}"], ["step", "$x{custom}"], [labels[k], `@${k}{custom}`]];
fig.title.text = `${title}: ${labels[k]}`;"""))
        fig.title.text = f"{title}: {labels[first]}"
        items.insert(0, select)
    return items, fig


def _tooltips(label: str, key: str) -> list[tuple[str, str]]:
    return [("row", "$y{custom}"), ("step", "$x{custom}"), (label, f"@{key}{{custom}}")]
