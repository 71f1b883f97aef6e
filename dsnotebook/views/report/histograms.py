"""Report section: one tensor's log2|g| histogram over steps (bins x steps, exact counts).

The same numbers as the live histogram panel (:mod:`dsnotebook.views.histograms`). A
histogram cannot be averaged over steps and stay exact, so each column is one real step:
of each window of steps, the one with the most non-finite elements (so a NaN step is
never thinned away), else the window's last. Every tensor's histograms travel once, as one
uint32 image of counts cropped to the bins that tensor ever uses (float64 if a count
reaches 2^32); a ``Select`` picks the tensor and a small script shows its image. Exact zeros
and non-finite elements are drawn apart, below the bins, never on the log2 axis.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import (ColorBar, ColumnDataSource, CustomJS, CustomJSHover, HoverTool, LogColorMapper, Range1d,
                          Select)
from bokeh.plotting import figure

from dsnotebook.stats.reference import HIST_EXP_MIN
from dsnotebook.views.histograms import step_histograms
from dsnotebook.views.report.columns import representatives, windows
from dsnotebook.views.report.markup import heading, note
from dsnotebook.views.report.matrix import MARK_COLOR, PALETTE

__all__ = ["histogram_section", "histogram_data"]

TRANSPARENT = (0, 0, 0, 0)
EXP0 = HIST_EXP_MIN - 1  # y of bin b is its exponent floor(log2|g|) = b + EXP0
MIN_HIST_COLUMNS = 4  # thousands of tensors: few columns rather than a file over budget

# Shows tensor t's block (also what the page shows first, filled in by Python).
SHOW = """
const t = Number(select.value); const d = all.data;
const lo = d.lo[t], n = d.nbins[t], block = d.image[t];
let vmin = Infinity, vmax = 0;
if (n) for (const v of block) { if (v > 0 && v < vmin) vmin = v; if (v > vmax) vmax = v; }
if (!(vmax > 0)) { vmin = 1; vmax = 10; } else if (vmax <= vmin) vmax = vmin * 1.001;
const y0 = lo + EXP0;
view.data = {image: n ? [block] : [], y: n ? [y0] : [], dh: n ? [n] : [], numel: n ? [d.numel[t]] : []};
mapper.low = vmin; mapper.high = vmax;
fig.y_range.start = n ? y0 - 0.5 : EXP0; fig.y_range.end = n ? y0 + n + 0.5 : EXP0 + 1;
const xs = [], ys = [], ns = [], kinds = [], shares = [];
for (let c = 0; c < H; c++) {
  const z = zeros[t * H + c], f = nonfinite[t * H + c];
  if (z > 0) { xs.push(c + 0.5); ys.push(0.5); ns.push(z); kinds.push("exact zeros"); shares.push(z / d.numel[t]); }
  if (f > 0) { xs.push(c + 0.5); ys.push(1.5); ns.push(f); kinds.push("non-finite"); shares.push(f / d.numel[t]); }
}
apart.data = {x: xs, y: ys, count: ns, kind: kinds, share: shares,
              color: kinds.map((k) => k === "non-finite" ? MARK : "#7f7f7f")};
"""
COUNT_HOVER = """if (value === null || value === undefined) return "";
const n = view.data.numel.length ? view.data.numel[0] : 0;
const share = n ? ` (${(100 * value / n).toPrecision(3)}% of ${n.toLocaleString("en-US")})` : "";
return Number(value).toLocaleString("en-US") + share;"""
BIN_HOVER = """const e = Math.floor(value);
if (e <= EXP0 + 1) return `|g| < 2^${EXP0 + 2}`;
if (e >= EXP0 + 63) return `|g| >= 2^${EXP0 + 63}`;
return `2^${e} <= |g| < 2^${e + 1}`;"""
STEP_HOVER = """const c = Math.floor(value); const d = cols.data;
if (!(c >= 0 && c < d.step.length)) return "";
return d.count[c] > 1 ? `${d.step[c]} (one of steps ${d.first[c]}-${d.last[c]})` : `${d.step[c]}`;"""


def histogram_data(run: Any, steps: list[int], hist_columns: int, budget_bytes: int | None = None) -> dict[str, Any]:
    """Every tensor's histograms at the chosen steps: per tensor its counts [bins in use, columns]
    (``blocks``, bins ``lo`` .. ``lo + nbins - 1``), exact zeros and non-finite counts [tensors * columns].
    With ``budget_bytes``, fewer columns when the counts would not fit (at least MIN_HIST_COLUMNS)."""
    data = _histogram_data(run, steps, hist_columns)
    nbytes = sum(b.nbytes for b in data["blocks"])
    if budget_bytes is not None and nbytes > budget_bytes and data["H"] > MIN_HIST_COLUMNS:
        data = _histogram_data(run, steps, max(MIN_HIST_COLUMNS, int(data["H"] * budget_bytes / nbytes)))
    return data


def _histogram_data(run: Any, steps: list[int], hist_columns: int) -> dict[str, Any]:
    cols = windows(steps, hist_columns)
    weight = np.array([run.nonfinite_at(s) for s in steps], np.float64)
    chosen = representatives(steps, cols, weight)
    counts, nonfinite, _present = step_histograms(run, chosen)  # [T, H, 64], [T, H]
    n_t, H = counts.shape[0], len(chosen)
    body = counts[:, :, 1:]  # bins on the log2 axis
    lo = np.ones(n_t, np.int32)
    nbins = np.zeros(n_t, np.int32)
    blocks = []
    for t in range(n_t):
        used = np.flatnonzero(body[t].any(axis=0))
        if len(used):
            a, b = int(used[0]), int(used[-1]) + 1
            lo[t], nbins[t] = a + 1, b - a
            blocks.append(_exact(body[t, :, a:b].T))  # [bins, H]: image rows are bins
        else:
            blocks.append(np.zeros((1, H), np.uint32))  # nothing recorded: nbins 0 hides it
    return {"cols": cols, "steps": chosen, "blocks": blocks, "zeros": _exact(counts[:, :, 0].reshape(-1)),
            "nonfinite": _exact(nonfinite.reshape(-1)), "lo": lo, "nbins": nbins, "H": H}


def _exact(a: np.ndarray) -> np.ndarray:
    """Counts as uint32 (exact), or float64 (exact to 2^53) if one reaches 2^32."""
    a = np.ascontiguousarray(a, np.int64)
    return a.astype(np.uint32) if a.size == 0 or a.max() < 2**32 else a.astype(np.float64)


def histogram_section(run: Any, steps: list[int], hist_columns: int, budget_bytes: int) -> list[Any]:
    items: list[Any] = [heading("Gradient histogram over steps")]
    data = histogram_data(run, steps, hist_columns, budget_bytes)
    H = data["H"]
    if not H or not run.tensors:
        return items + [note("No gradient histograms were recorded.")]
    items.append(note("Counts of floor(log2|g|) per step for the chosen tensor, exact (hover a cell). "
                      f"{H} columns, each one real step" + (f" of a window of about {len(steps) // H} steps "
                      "(the one with the most non-finite elements, else the last)" if H < len(steps) else "")
                      + ". Exact zeros and non-finite elements are shown apart, below."))
    names = [str(t["name"]) for t in run.tensors]
    start = int(np.argmax(data["nbins"] > 0)) if (data["nbins"] > 0).any() else 0
    hcols = data["cols"]
    cols_src = ColumnDataSource({"step": np.asarray(data["steps"], np.int32), "first": hcols.first.astype(np.int32),
                                 "last": hcols.last.astype(np.int32), "count": hcols.count.astype(np.int32)})
    all_src = ColumnDataSource({"name": names, "lo": data["lo"], "nbins": data["nbins"], "image": data["blocks"],
                                "numel": np.array([float(t["numel"]) for t in run.tensors])})
    select = Select(title="tensor", value=str(start), options=[(str(i), n) for i, n in enumerate(names)], width=420,
                    name="dsn-hist-select")
    view = ColumnDataSource({"image": [], "y": [], "dh": [], "numel": []})
    apart = ColumnDataSource({"x": [], "y": [], "count": [], "kind": [], "share": [], "color": []})
    mapper = LogColorMapper(palette=PALETTE, low=1, high=10, low_color=TRANSPARENT, nan_color=TRANSPARENT)
    x_range = Range1d(0, H, bounds=(0, H))
    fig = figure(title="log2|g| histogram over steps", height=360, sizing_mode="stretch_width", x_range=x_range,
                 y_range=Range1d(EXP0, EXP0 + 64), tools="xpan,xwheel_zoom,box_zoom,reset,save", name="dsn-hist")
    img = fig.image(image="image", x=0, y="y", dw=H, dh="dh", source=view, color_mapper=mapper)
    fig.yaxis.axis_label = "log2|g|"
    fig.add_layout(ColorBar(color_mapper=mapper, width=10, title="count", title_text_font_size="10px"), "right")
    step_fmt = CustomJSHover(args={"cols": cols_src}, code=STEP_HOVER)
    fig.add_tools(HoverTool(renderers=[img], tooltips=[
        ("step", "$x{custom}"), ("bin", "$y{custom}"), ("count", "@image{custom}")],
        formatters={"$x": step_fmt, "$y": CustomJSHover(code=BIN_HOVER.replace("EXP0", str(EXP0))),
                    "@image": CustomJSHover(args={"view": view}, code=COUNT_HOVER)}))
    _step_axis(fig, cols_src)
    strip = figure(title="exact zeros (grey) and non-finite elements (red) at each step", height=120,
                   sizing_mode="stretch_width", x_range=x_range, y_range=Range1d(0, 2),
                   tools="xpan,xwheel_zoom,reset", name="dsn-hist-apart")
    rects = strip.rect(x="x", y="y", width=1, height=0.9, color="color", source=apart)
    strip.yaxis.ticker = [0.5, 1.5]
    strip.yaxis.major_label_overrides = {0.5: "zeros", 1.5: "non-finite"}
    strip.add_tools(HoverTool(renderers=[rects], tooltips=[("step", "@x{custom}"), ("", "@kind"),
                                                           ("count", "@count{0,0}"), ("share", "@share{0.000%}")],
                              formatters={"@x": step_fmt}))
    _step_axis(strip, cols_src)
    show = CustomJS(args={"select": select, "all": all_src, "view": view, "apart": apart, "mapper": mapper, "fig": fig,
                          "zeros": data["zeros"], "nonfinite": data["nonfinite"], "H": H,
                          "EXP0": EXP0, "MARK": MARK_COLOR}, code=SHOW)
    select.js_on_change("value", show)
    _fill_first(data, names, start, view, apart, mapper, fig, run)
    return items + [select, fig, strip]


def _step_axis(fig: Any, cols_src: ColumnDataSource) -> None:
    from bokeh.models import CustomJSTickFormatter

    fig.xaxis.formatter = CustomJSTickFormatter(args={"cols": cols_src}, code="""
const c = Math.floor(tick); const d = cols.data;
return (c >= 0 && c < d.step.length) ? String(d.step[c]) : "";""")
    fig.xaxis.axis_label = "step"


def _fill_first(data: dict[str, Any], names: list[str], t: int, view: ColumnDataSource, apart: ColumnDataSource,
                mapper: Any, fig: Any, run: Any) -> None:
    """The first tensor's view, as the script would make it (the page shows it before any choice)."""
    H, lo, n = data["H"], int(data["lo"][t]), int(data["nbins"][t])
    block = data["blocks"][t]
    pos = block[block > 0]
    vmin, vmax = (float(pos.min()), float(pos.max())) if pos.size else (1.0, 10.0)
    mapper.low, mapper.high = vmin, (vmax if vmax > vmin else vmin * 1.001)
    y0 = lo + EXP0
    numel = float(run.tensors[t]["numel"])
    view.data = {"image": [block] if n else [], "y": [y0] if n else [], "dh": [n] if n else [],
                 "numel": [numel] if n else []}
    fig.y_range.start, fig.y_range.end = (y0 - 0.5, y0 + n + 0.5) if n else (EXP0, EXP0 + 1)
    xs, ys, counts, kinds, shares = [], [], [], [], []
    for c in range(H):
        z, f = int(data["zeros"][t * H + c]), int(data["nonfinite"][t * H + c])
        for v, y, kind in ((z, 0.5, "exact zeros"), (f, 1.5, "non-finite")):
            if v > 0:
                xs.append(c + 0.5), ys.append(y), counts.append(v), kinds.append(kind), shares.append(v / numel)
    apart.data = {"x": xs, "y": ys, "count": counts, "kind": kinds, "share": shares,
                  "color": [MARK_COLOR if k == "non-finite" else "#7f7f7f" for k in kinds]}
