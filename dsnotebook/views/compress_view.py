"""A compression result shaped for the compression panel, and the panel's button wired back to it.

Who listens: the panel's ``chosen`` trait (set by a row's button in the browser, or from Python)
-> :func:`compression_widget`'s observer -> ``result.choose(name)`` -> the model is in
``result.chosen_model`` and ``on_choose(name, model)`` is called.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from dsnotebook.compress.result import CompressionResult
from dsnotebook.core.jsonsafe import to_json
from dsnotebook.widgets.compress import CompressionWidget

__all__ = ["panel_state", "compression_widget"]

_ROW_KEYS = ("status", "backend", "params", "size_bytes", "size_ratio", "sparse_bytes", "sparse_format",
             "latency_b1_ms", "latency_b1_iqr_ms", "speedup_b1", "speedup_b1_lo", "speedup_b1_hi", "verdict_b1",
             "latency_bN_ms", "latency_bN_iqr_ms", "speedup_bN", "speedup_bN_lo", "speedup_bN_hi", "verdict_bN",
             "max_abs_dev", "rel_dev", "agreement")


def _split(text: Any) -> list[str]:
    return [s for s in str(text or "").split("; ") if s]


def panel_state(result: CompressionResult) -> dict[str, Any]:
    """The panel's traits for ``result`` (JSON values: NaN becomes None)."""
    t = result.table
    m = result.metric
    rows = []
    for name, r in t.iterrows():
        row = {"method": str(name), **{k: r[k] for k in _ROW_KEYS}, "metric": r[m], "metric_delta": r[f"{m}_delta"],
               "worse": [k for k in str(r["worse"] or "").split(",") if k],
               "warnings": _split(r["warnings"]), "notes": list(result.notes.get(str(name), []))}
        rows.append(to_json(row))
    sens = [to_json({k: r[k] for k in ("method", "layer", "type", "metric", "metric_delta", "max_abs_dev")})
            for r in result.sensitivity.to_dict("records")]
    has_metric = any(isinstance(r["metric"], float) and math.isfinite(r["metric"]) for r in rows)
    return {"rows": rows, "sensitivity": sens, "metric_name": m, "higher_is_better": bool(result.higher_is_better),
            "has_metric": has_metric, "batch": int(result.batch), "chosen": result.chosen or ""}


def compression_widget(result: CompressionResult,
                       on_choose: Callable[[str, Any], Any] | None = None) -> CompressionWidget:
    """The panel for ``result``; its buttons call ``result.choose`` (and ``on_choose(name, model)``)."""
    w = CompressionWidget(text_fallback=result.summary, **panel_state(result))

    def chosen(change: dict[str, Any]) -> None:
        name = change["new"]
        if not name or name == result.chosen:
            return
        try:
            model = result.choose(name)
        except KeyError as exc:
            w.status = str(exc.args[0])
            return
        w.status = f"chosen: {name} (result.chosen_model)"
        if on_choose is not None:
            on_choose(name, model)

    w.observe(chosen, "chosen")
    return w
