"""The report's text blocks (bokeh ``Div``): every name and value escaped, never HTML.

A ``Div`` renders its ``text`` as HTML, so nothing from a run (module names, event details,
suggestion snippets, metadata) goes in without :func:`esc`; and TeX is off (``disable_math``):
a name holding ``$$...$$`` would otherwise be typeset by MathJax, which BokehJS fetches from a
CDN. Numbers are formatted here once, so every section writes them the same way.
"""
from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence

from bokeh.models import Div

__all__ = ["esc", "fmt", "table", "heading", "note", "div"]

STYLE = """<style>
.dsn-report-table { border-collapse: collapse; font: 12px system-ui, sans-serif; margin: 4px 0 10px; }
.dsn-report-table th, .dsn-report-table td { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left;
  vertical-align: top; }
.dsn-report-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
.dsn-report-card { font: 12px system-ui, sans-serif; border: 1px solid #ccc; border-radius: 4px; padding: 6px 10px;
  margin: 6px 0; }
.dsn-report-card pre { background: #f6f6f6; padding: 6px; overflow-x: auto; }
.dsn-verdict-verified { color: #1a7f37; font-weight: 600; } .dsn-verdict-refuted { color: #b42318; font-weight: 600; }
.dsn-verdict-error { color: #b42318; } .dsn-verdict-proposed { color: #555; }
</style>"""


def esc(value: Any) -> str:
    """``value`` as HTML-escaped text (quotes included)."""
    return html.escape(fmt(value), quote=True)


def fmt(value: Any) -> str:
    """A readable text form of a number or value: 4 significant digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          css_class: str = "") -> str:
    """An HTML table of escaped cells; columns in ``numeric`` are right-aligned."""
    num = set(numeric)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{esc(v)}</td>' if i in num else f"<td>{esc(v)}</td>"
                         for i, v in enumerate(r)) + "</tr>"
        for r in rows)
    cls = f"dsn-report-table {css_class}".strip()
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def heading(text: str, level: int = 2) -> Div:
    return Div(text=f"<h{level} style='font-family:system-ui,sans-serif;margin:18px 0 4px'>{esc(text)}</h{level}>",
               sizing_mode="stretch_width", disable_math=True)


def note(text: str) -> Div:
    """A line of plain text (escaped) under a heading."""
    return Div(text=f'<p style="font:12px system-ui,sans-serif;color:#555;margin:0 0 6px">{esc(text)}</p>',
               sizing_mode="stretch_width", disable_math=True)


def div(markup: str, css_class: str = "") -> Div:
    """A Div of markup built with :func:`esc`/:func:`table` (never raw run text)."""
    return Div(text=STYLE + markup, sizing_mode="stretch_width", css_classes=[css_class] if css_class else [],
               disable_math=True)
