"""Report section: where a step's time goes (phases per sampled step) and per-layer times.

Every number comes from :mod:`dsnotebook.perf.measures`, the source of the performance
panel, the text summary and the advisor: ``step_phases`` (one row per sampled step),
``phases`` (the steady step with the median time), ``module_times`` (median forward and
backward per module), ``memory``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from dsnotebook.perf import measures
from dsnotebook.views.report.markup import div, heading, note, table

__all__ = ["performance_section"]

MAX_MODULES = 60


def performance_section(run: Any, max_columns: int) -> list[Any]:
    items: list[Any] = [heading("Performance")]
    ph = measures.step_phases(run)
    if ph.empty:
        return items + [note("No timing was recorded (ModelTracer(..., profile_every=N) or "
                             "%%deepseek_trace --profile-every N).")]
    phases = [p for p in measures.PHASES if p in ph and float(ph[p].sum()) > 0]
    median = measures.phases(run)
    if median:
        step = median["step"]
        rows = [(p, median[p] * 1e3, 100 * median[p] / step if step > 0 else float("nan"))
                for p in measures.PHASES if median.get(p, 0) > 0]
        items.append(div(f"<b>median steady step: {step * 1e3:.2f} ms</b> (without dsnotebook's own work; "
                         f"{median['step_traced'] * 1e3:.2f} ms as measured)"
                         + table(["phase", "ms", "% of step"], rows, numeric=(1, 2))))
    if len(ph) > max_columns:  # evenly spaced sampled steps
        ph = ph.iloc[np.unique(np.linspace(0, len(ph) - 1, max_columns).round().astype(int))]
    data = {"x": [str(int(s)) for s in ph["step"]], "warmup": ["yes" if w else "no" for w in ph["warmup"]],
            "total": (ph["step_traced"] * 1e3).to_numpy()}
    for p in phases:
        data[p] = (ph[p] * 1e3).to_numpy()
    src = ColumnDataSource(data)
    fig = figure(title="step split per sampled step (ms)", height=260, sizing_mode="stretch_width",
                 x_range=FactorRange(*data["x"]), tools="xpan,xwheel_zoom,reset,save", name="dsn-step-split")
    colors = [Category10_10[i % 10] for i in range(len(phases))]
    rends = fig.vbar_stack(phases, x="x", width=0.8, color=colors, source=src, legend_label=phases)
    fig.add_tools(HoverTool(renderers=rends, tooltips=[("step", "@x"), ("phase", "$name"), ("ms", "@$name{0.000}"),
                                                       ("step total ms", "@total{0.000}"), ("warm-up", "@warmup")]))
    fig.xaxis.axis_label = "sampled step (the first is warm-up, left out of medians)"
    fig.xaxis.major_label_orientation = 0.8 if len(data["x"]) > 30 else 0
    fig.legend.label_text_font_size = "9px"
    fig.add_layout(fig.legend[0], "right")  # beside the bars, never over them
    items.append(fig)
    items += _layers(run)
    mem = measures.memory(run)
    if mem:
        items.append(div("<b>memory at the latest sampled step</b>"
                         + table(["kind", "MiB"], [(k, v / 2**20) for k, v in mem.items()], numeric=(1,))))
    return items


def _layers(run: Any) -> list[Any]:
    mt = measures.module_times(run)
    if mt.empty:
        return []
    leaves = measures.leaf_modules([str(m) for m in mt.index])
    mt = mt.loc[[m for m in mt.index if str(m) in set(leaves)]]
    note_text = ""
    if len(mt) > MAX_MODULES:
        keep = (mt["fwd"] + mt["bwd"]).nlargest(MAX_MODULES).index
        mt = mt.loc[[m for m in mt.index if m in set(keep)]]
        note_text = f" (the {MAX_MODULES} slowest)"
    names = [str(m) for m in mt.index][::-1]  # model order, top to bottom
    src = ColumnDataSource({"module": names, "fwd": (mt["fwd"].to_numpy() * 1e3)[::-1],
                            "bwd": (mt["bwd"].to_numpy() * 1e3)[::-1], "calls": mt["calls"].to_numpy()[::-1]})
    fig = figure(title=f"per-layer time, median of the steady sampled steps (ms){note_text}",
                 height=int(min(900, 80 + 18 * len(names))), sizing_mode="stretch_width",
                 y_range=FactorRange(*names), tools="save,reset", name="dsn-layer-times")
    rends = fig.hbar_stack(["fwd", "bwd"], y="module", height=0.8, color=["#4c78a8", "#f58518"], source=src,
                           legend_label=["forward", "backward"])
    fig.add_tools(HoverTool(renderers=rends, tooltips=[("module", "@module"), ("forward ms", "@fwd{0.000}"),
                                                       ("backward ms", "@bwd{0.000}"), ("calls", "@calls")]))
    fig.add_layout(fig.legend[0], "right")
    fig.yaxis.major_label_text_font_size = "9px"
    return [fig]
