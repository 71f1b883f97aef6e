"""Report section: non-finite events (the first module whose output or gradient went NaN/Inf) and
other events of the run, from ``Run.to_dataframe("events")``; plus the steps whose gradients
held non-finite elements (``Run.nonfinite_at``), so a run without localisation still says when."""
from __future__ import annotations

from typing import Any

from dsnotebook.views.report.markup import div, heading, note, table

__all__ = ["event_section", "nonfinite_steps"]

MAX_STEPS = 50


def nonfinite_steps(run: Any) -> list[tuple[int, int]]:
    """(step, non-finite gradient elements) of every retained step that had any."""
    return [(s, n) for s, n in ((s, run.nonfinite_at(s)) for s in run.steps) if n > 0]


def event_section(run: Any) -> list[Any]:
    items: list[Any] = [heading("Non-finite values and events")]
    df = run.to_dataframe("events")
    bad = nonfinite_steps(run)
    mode = run.meta.get("nonfinite")
    if df.empty and not bad:
        how = "" if mode in (None, "off") else f" (localisation mode {mode!r})"
        off = " Localisation was off." if mode == "off" else ""
        return items + [note(f"No non-finite gradient or activation was recorded{how}.{off}")]
    if not df.empty:
        rows = [(s if s == s else None, k, m, d) for s, k, m, d in zip(df["step"], df["kind"], df["module"],
                                                                        df["detail"])]
        items.append(div(f"<b>{len(rows)} event(s)</b>" + table(["step", "kind", "module", "detail"], rows,
                                                                  numeric=(0,), css_class="dsn-events")))
    if bad:
        shown = bad[:MAX_STEPS]
        more = f" (first {MAX_STEPS} of {len(bad)})" if len(bad) > MAX_STEPS else ""
        items.append(div(f"<b>steps with non-finite gradient elements{more}</b>"
                         + table(["step", "non-finite elements"], shown, numeric=(0, 1))))
    return items
