"""Report section: the advisor's suggestions, with their evidence and verification verdicts.

Read from the Run's ``suggestions`` table (``Run.to_dataframe("suggestions")``: what the
suggestions panel shows): proposed, running, verified, refuted or error, and for a
finished A/B the measured step times, speed-up with its IQR, memory change and loss drift;
where the verdict was made on the step alone, the loop with its loading beside it and the
reason verify() gave when the loop hides the step's gain (``extra["with_loading"]``).
"""
from __future__ import annotations

from typing import Any

from dsnotebook.views.report.markup import div, esc, heading, note, table

__all__ = ["loop_text", "suggestion_section", "verdict_text"]

STATUSES = ("proposed", "running", "verified", "refuted", "error")


def verdict_text(result: Any) -> str:
    """One line for a verification result record (what the card and the text summary say)."""
    if not isinstance(result, dict):
        return ""
    if "error" in result and len(result) == 1:
        return f"error: {result['error']}"
    parts = []
    if result.get("baseline_s") is not None and result.get("variant_s") is not None:
        parts.append(f"{1e3 * result['baseline_s']:.2f} -> {1e3 * result['variant_s']:.2f} ms/step")
    if result.get("speedup") is not None:
        iqr = result.get("speedup_iqr") or []
        on_step = (result.get("extra") or {}).get("timing") == "step"
        parts.append(f"speed-up x{result['speedup']:.2f}" + (" on the step" if on_step else "")
                     + (f" [IQR {iqr[0]:.2f}-{iqr[1]:.2f}]" if len(iqr) == 2 and None not in iqr else ""))
    if result.get("memory_change") is not None:
        parts.append(f"memory {100 * result['memory_change']:+.1f}%")
    if result.get("loss_drift") is not None:
        parts.append(f"loss drift {100 * result['loss_drift']:+.2f}%")
    if result.get("pairs"):
        parts.append(f"{result['pairs']} pairs of {result.get('steps_per_block', '?')} steps")
    text = ", ".join(parts)
    return text + (f" ({result['reason']})" if result.get("reason") else "")


def loop_text(result: Any) -> str:
    """The user's loop with its loading, measured beside a verdict made on the step ("" if none)."""
    loop = (result.get("extra") or {}).get("with_loading") if isinstance(result, dict) else None
    if not isinstance(loop, dict):
        return ""
    parts = []
    if loop.get("baseline_s") is not None and loop.get("variant_s") is not None:
        parts.append(f"{1e3 * loop['baseline_s']:.2f} -> {1e3 * loop['variant_s']:.2f} ms/step")
    if loop.get("speedup") is not None:
        parts.append(f"x{loop['speedup']:.2f}")
    if not parts:
        return ""
    return "with loading in the loop: " + ", ".join(parts) + (f" ({loop['note']})" if loop.get("note") else "")


def suggestion_section(run: Any) -> list[Any]:
    items: list[Any] = [heading("Suggestions")]
    df = run.to_dataframe("suggestions")
    if df.empty:
        return items + [note("The advisor was not asked (tracer.advise()), or it had nothing to suggest.")]
    counts = df["status"].value_counts().to_dict()
    items.append(note(", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)))
    cards = []
    for r in df.to_dict("records"):
        status = str(r.get("status") or "proposed")
        cls = f"dsn-verdict-{status}" if status in STATUSES else ""
        evidence = r.get("evidence") or {}
        ev = table(["evidence", "value"], list(evidence.items())) if isinstance(evidence, dict) and evidence else ""
        verdict, loop = verdict_text(r.get("result")), loop_text(r.get("result"))
        cards.append(
            f'<div class="dsn-report-card"><div><b>{esc(r.get("title"))}</b> '
            f'<span>({esc(r.get("category"))}, {esc(r.get("severity"))})</span> '
            f'<span class="{esc(cls)}">{esc(status)}</span></div>'
            + (f"<div>verification: {esc(verdict)}</div>" if verdict else "")
            + (f'<div class="dsn-report-loop">{esc(loop)}</div>' if loop else "")
            + f"<div>estimated gain: {esc(r.get('gain'))}</div>"
            + (f"<div>how to verify: {esc(r.get('verify_hint'))}</div>" if r.get("verify_hint") else "")
            + ev + (f"<pre>{esc(r.get('snippet'))}</pre>" if r.get("snippet") else "") + "</div>")
    items.append(div("".join(cards), css_class="dsn-suggestions"))
    return items
