"""Report section: what the run is (model, tracer options, versions, machine) and what it holds."""
from __future__ import annotations

from typing import Any

from dsnotebook.views.report.markup import div, heading, table

__all__ = ["metadata_section", "metadata_rows"]


def metadata_rows(run: Any) -> list[tuple[str, Any]]:
    """(key, value) rows: the Run's shape, then its metadata (nested dicts one level deep)."""
    steps = run.steps
    rows: list[tuple[str, Any]] = [
        ("tensors", len(run.tensors)),
        ("parameters", sum(int(t.get("numel", 0)) for t in run.tensors)),
        ("retained steps", len(steps)),
        ("steps", f"{steps[0]}..{steps[-1]}" if steps else "-"),
        ("steps thinned away", run.dropped_steps),
        ("events", len(run.events)),
    ]
    for k, v in run.meta.items():
        if isinstance(v, dict):
            rows += [(f"{k}.{k2}", v2) for k2, v2 in v.items()]
        else:
            rows.append((str(k), v))
    return rows


def metadata_section(run: Any) -> list[Any]:
    return [heading("Run"), div(table(["", "value"], metadata_rows(run)), css_class="dsn-metadata")]
