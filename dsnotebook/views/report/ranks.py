"""Report section: the rank x phase table of a distributed run, its skew and the straggler.

The numbers are the rank x phase panel's (:func:`dsnotebook.views.rank_panel.panel_state`,
which reads :mod:`dsnotebook.distributed.ranks`, the straggler rules' source).  A run without
per-rank phases (one process) gets no section.
"""
from __future__ import annotations

from typing import Any

from dsnotebook.views.rank_panel import panel_state
from dsnotebook.views.report.markup import div, esc, heading, table

__all__ = ["rank_section"]


def rank_section(run: Any) -> list[Any]:
    st = panel_state(run)
    if not st["ranks"]:
        return []
    labels = [label for _, label, _ in st["columns"]]
    rows = [[f"rank {r}", *[_ms(v) for v in row], f"{100 * (score or 0):.1f}%"]
            for r, row, score in zip(st["ranks"], st["matrix"], st["scores"])]
    rows.append(["skew", *[_ms(v) for v in st["skew"]], ""])
    hit = st["straggler"]
    if hit >= 0:
        i = st["ranks"].index(hit)
        line = (f"<p style='font:12px system-ui,sans-serif;color:#b42318'><b>straggler: rank {esc(hit)}</b>: the "
                f"job waits for it {esc(round(100 * (st['scores'][i] or 0)))}% of every step (extra time in its "
                f"{esc(st['excess'][i])} phase)</p>")
    else:
        line = "<p style='font:12px system-ui,sans-serif'>no straggler: the ranks do the same work</p>"
    meta = run.meta.get("ranks") or {}
    what = (f"<p style='font:12px system-ui,sans-serif;color:#555'>{esc(meta.get('world_size', len(st['ranks'])))} "
            f"ranks ({esc(meta.get('mode', '?'))}, {esc(meta.get('backend', '?'))}); median ms per sampled step over "
            f"{esc(st['steps'])} steps; whole job: {esc(meta.get('whole_job', ''))}</p>")
    return [heading("Ranks"), div(what + line + table(["rank", *labels, "straggler score"], rows,
                                                        numeric=range(1, len(labels) + 2)))]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(1e3 * v, 3)
