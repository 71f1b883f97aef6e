"""The standalone report: one HTML file, bokeh with its resources inline, nothing fetched when opened.

Sections, in order: metadata, gradient flow (heatmap + global norm), the histogram of
log2|g| over steps, update ratios, activations and dead units, non-finite events,
performance (step split, per-layer times), ranks (distributed runs: rank x phase, stragglers),
traced functions (``@dsnotebook.trace`` calls merged by path), suggestions with their verification verdicts.
Each section is one module and reads the Run through its public readers,
:mod:`dsnotebook.perf.measures` (performance) or :mod:`dsnotebook.views.histograms`, the
same sources as the widgets.

Size: numbers travel as float32 (uint32 for counts) in bokeh's binary array encoding;
steps are thinned to at most ``max_columns`` columns (``hist_columns`` for histograms,
whose columns are real steps); the step windows and the tensor names are one shared
``ColumnDataSource`` each. ``benchmarks/report.py`` measures size and build time.
"""
from __future__ import annotations

import os
import pathlib
import re
from typing import Any

from bokeh.document import Document
from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import Range1d
from bokeh.resources import INLINE

from dsnotebook.views.report.activations import activation_section
from dsnotebook.views.report.calls import calls_section
from dsnotebook.views.report.columns import columns_for, windows
from dsnotebook.views.report.events import event_section
from dsnotebook.views.report.gradients import gradient_section
from dsnotebook.views.report.histograms import histogram_section
from dsnotebook.views.report.markup import heading
from dsnotebook.views.report.matrix import columns_source, rows_source
from dsnotebook.views.report.metadata import metadata_section
from dsnotebook.views.report.performance import performance_section
from dsnotebook.views.report.ranks import rank_section
from dsnotebook.views.report.suggestions import suggestion_section
from dsnotebook.views.report.updates import update_section

__all__ = ["build_report", "write_report", "DEFAULT_COLUMNS", "DEFAULT_HIST_COLUMNS"]

DEFAULT_COLUMNS = 400
DEFAULT_HIST_COLUMNS = 100
# raw bytes of one section's numbers (bokeh compresses them further): a model with more tensors
# or modules gets fewer columns, not a bigger file
SECTION_BYTES = 640_000
HIST_BYTES = 2_000_000
# what a page would fetch: an element (outside the inline scripts) with a source or link
_EXTERNAL = re.compile(r"""<[a-z]+\b[^>]*\b(?:src|href)\s*=""", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S | re.I)


def _shape(t: dict[str, Any]) -> str:
    shape = t.get("shape")
    return "[" + "x".join(str(d) for d in shape) + "]" if shape else ""


def build_report(run: Any, *, title: str | None = None, max_columns: int = DEFAULT_COLUMNS,
                 hist_columns: int = DEFAULT_HIST_COLUMNS) -> Any:
    """The report's bokeh layout (a ``column`` of sections) for ``run``."""
    steps = run.steps
    cols = windows(steps, columns_for(2 * len(run.tensors), max_columns, SECTION_BYTES))
    cols_src = columns_source(cols)
    rows_src = rows_source([t["name"] for t in run.tensors], [_shape(t) for t in run.tensors])
    x_range = Range1d(0, max(1, cols.n), bounds=(0, max(1, cols.n)))
    items: list[Any] = [heading(title or _default_title(run), level=1)]
    items += metadata_section(run)
    items += gradient_section(run, steps, cols, cols_src, rows_src, x_range)
    items += histogram_section(run, steps, hist_columns, HIST_BYTES)
    items += update_section(run, steps, cols, cols_src, rows_src, x_range)
    items += activation_section(run, max_columns, SECTION_BYTES)
    items += event_section(run)
    items += performance_section(run, max_columns)
    items += rank_section(run)  # distributed runs only
    items += calls_section(run)  # runs with @dsnotebook.trace calls only
    items += suggestion_section(run)
    return column(items, sizing_mode="stretch_width", name="dsn-report")


def write_report(run: Any, path: str | os.PathLike[str], *, title: str | None = None,
                 max_columns: int = DEFAULT_COLUMNS, hist_columns: int = DEFAULT_HIST_COLUMNS) -> pathlib.Path:
    """Write the standalone HTML report of ``run`` to ``path`` (parent folders are made); returns
    the path. Opens offline: bokeh's JavaScript is inline and nothing refers to a URL."""
    if not hasattr(run, "tensors") or not hasattr(run, "steps"):
        raise TypeError(f"write_report needs a dsnotebook Run (or tracer.run), got {type(run).__qualname__}")
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the report's file name, e.g. {path / 'report.html'}")
    layout = build_report(run, title=title, max_columns=max_columns, hist_columns=hist_columns)
    doc = Document()
    doc.add_root(layout)
    doc.title = title or _default_title(run)
    html = file_html(doc, INLINE, doc.title)
    bad = _EXTERNAL.search(_SCRIPT.sub("", html))
    if bad:  # would break "opens offline": never write such a file
        raise RuntimeError(f"the report would fetch {bad.group(0)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _default_title(run: Any) -> str:
    model = run.meta.get("model") or "run"
    started = run.meta.get("started")
    return f"dsnotebook report: {model}" + (f" ({started})" if started else "")
