"""Report section: the traced functions (``@dsnotebook.trace``) of a run, merged by call path.

The numbers are the flame view's "all calls" boxes (:func:`dsnotebook.views.flame_tree.build`):
per path (function / span / module / op under its caller) the calls, their summed and mean wall
time, the time not spent in traced children, device time and calls that raised.  A run without
traced calls gets no section.
"""
from __future__ import annotations

from typing import Any

from dsnotebook.views.flame_tree import build
from dsnotebook.views.report.markup import div, heading, note, table

__all__ = ["calls_section"]

MAX_ROWS = 80


def calls_section(run: Any, max_rows: int = MAX_ROWS) -> list[Any]:
    rows = run.records.tables.get("calls") or []
    if not rows:
        return []
    view = build(rows, "all", max_nodes=max_rows)
    out = []
    for n in view["nodes"]:
        name = ("  " * n["depth"]) + n["name"] + ("" if n["kind"] == "function" else f" ({n['kind']})")
        out.append([name, n["count"], _ms(n["wall"]), _ms(n["wall"] / n["count"] if n["count"] else None),
                    _ms(n["self"]), _ms(n["device"]), n["errors"] or ""])
    over = (run.meta.get("calls_overhead") or {}).get("call_s", {}).get("function")
    text = (f"{view['calls']} root calls over {len(view['steps'])} steps, merged by call path (ms); tracing cost "
            + (f"{over * 1e6:.2f} us per call, subtracted" if over else "not measured"))
    if view["hidden"]:
        text += f"; {view['hidden']} smaller entries not shown"
    return [heading("Traced functions"), note(text),
            div(table(["call path", "calls", "total ms", "mean ms", "self ms", "device ms", "raised"], out,
                      numeric=range(1, 7)))]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(1e3 * v, 4)
