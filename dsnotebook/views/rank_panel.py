"""Rank 0's Run -> the rank x phase panel's state (and a text table for terminals and reports).

Reads :mod:`dsnotebook.distributed.ranks` (the numbers the advisor's straggler rules read), so a
straggler named in the panel is the one named in the suggestions.  Who listens: the dashboard's
"ranks" tab (:class:`~dsnotebook.views.live_dashboard.LiveDashboard`, on "rank_phases" rows).
"""
from __future__ import annotations

import math
from typing import Any

from dsnotebook.core.clock import PHASE_LABELS
from dsnotebook.core.jsonsafe import to_json
from dsnotebook.distributed import phase_skew, rank_phase_table, straggler_scores
from dsnotebook.distributed.ranks import STEP_TIME
from dsnotebook.widgets.perf import PHASE_COLORS

__all__ = ["COLUMNS", "panel_state", "show", "rank_text"]

#: (key in the rank x phase table, label, colour), in display order
COLUMNS: list[tuple[str, str, str]] = [
    ("data", PHASE_LABELS["data"], PHASE_COLORS["data"]),
    ("fwd_compute", "forward compute", PHASE_COLORS["fwd"]),
    ("bwd_compute", "backward compute", PHASE_COLORS["bwd"]),
    ("opt", PHASE_LABELS["opt"], PHASE_COLORS["opt"]),
    ("wait", "waiting for others", "#c0392b"),
    ("comm", PHASE_LABELS["comm"], "#e57373"),
    ("tracer", PHASE_LABELS["tracer"], PHASE_COLORS["tracer"]),
    (STEP_TIME, "step", "#607d8b"),
]


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def panel_state(run: Any) -> dict[str, Any]:
    """The RanksWidget's data traits for ``run`` (empty lists before any rank phases arrived)."""
    table = rank_phase_table(run)
    if table.empty:
        return {"ranks": [], "columns": [list(c) for c in COLUMNS], "matrix": [], "skew": [], "scores": [],
                "excess": [], "straggler": -1, "steps": 0}
    # forward/backward compute: the passes themselves where no per-layer times exist (compiled models)
    for comp, whole in (("fwd_compute", "fwd"), ("bwd_compute", "bwd")):
        table[comp] = table[comp].where(table[comp].notna(), table[whole])
    skew, scores = phase_skew(run), straggler_scores(run)
    hit = scores.index[scores["straggler"].astype(bool)]
    steps = run.records.tables.get("rank_phases", [])
    n_steps = len({r["step"] for r in steps}) - (1 if len({r["step"] for r in steps}) > 1 else 0)
    return to_json({
        "ranks": [int(r) for r in table.index],
        "columns": [list(c) for c in COLUMNS],
        "matrix": [[_num(table.loc[r, k]) if k in table else None for k, _, _ in COLUMNS] for r in table.index],
        "skew": [_num(skew.loc[k, "skew_s"]) if k in skew.index else None for k, _, _ in COLUMNS],
        "scores": [_num(scores.loc[r, "score"]) for r in table.index],
        "excess": [str(scores.loc[r, "excess_phase"]) for r in table.index],
        "straggler": int(hit[0]) if len(hit) else -1,
        "steps": n_steps})


def show(widget: Any, run: Any) -> None:
    """Put ``run``'s per-rank numbers into a RanksWidget."""
    widget.set_data(panel_state(run))


def rank_text(run: Any) -> str:
    """The rank x phase table as text (milliseconds), with the straggler line; "" without rank phases."""
    st = panel_state(run)
    if not st["ranks"]:
        return ""
    labels = [label for _, label, _ in COLUMNS]
    width = [max(9, len(x)) for x in labels]
    lines = ["rank x phase (median ms per sampled step)",
             "rank    " + "  ".join(f"{x:>{w}}" for x, w in zip(labels, width)) + "  straggler score"]
    for r, row, score in zip(st["ranks"], st["matrix"], st["scores"]):
        cells = "  ".join(f"{'-' if v is None else f'{1e3 * v:.2f}':>{w}}" for v, w in zip(row, width))
        lines.append(f"{r:<6}  {cells}  {100 * (score or 0):.1f}%" + ("  <- straggler" if r == st["straggler"] else ""))
    lines.append("skew    " + "  ".join(f"{'-' if v is None else f'{1e3 * v:.2f}':>{w}}"
                                       for v, w in zip(st["skew"], width)))
    return "\n".join(lines)
