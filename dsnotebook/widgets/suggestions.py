"""Suggestions panel (anywidget): advisor cards with evidence, gain, snippet and an A/B verify button.

Traits: ``suggestions`` (the Run's ``suggestions`` records: id, rule, title, category,
severity, evidence, gain, snippet, verify_hint, can_verify, status, result),
``progress`` (``{"id", "done", "total", "message", "running"}`` while a verification
runs), ``verify_steps``, ``status``, ``title``.

Browser -> kernel: custom message ``{"type": "verify", "id": <suggestion id>}``. The
widget calls ``on_verify(id, steps, progress)`` (set by the dashboard: the advisor's
``verify_by_id``), where ``progress(done, total, message)`` updates the trait live, and
puts the returned record in place (status verified / refuted / error with its numbers).
"""
from __future__ import annotations

from typing import Any, Callable

import anywidget
import traitlets

from dsnotebook.core.jsonsafe import to_json
from dsnotebook.widgets.esm import load_esm

__all__ = ["SuggestionsWidget"]

VerifyHandler = Callable[[str, int, Callable[[int, int, str], None]], dict[str, Any]]


class SuggestionsWidget(anywidget.AnyWidget):
    _esm = load_esm("suggestions")

    suggestions = traitlets.List(traitlets.Dict()).tag(sync=True)
    progress = traitlets.Dict().tag(sync=True)
    verify_steps = traitlets.Int(20).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("suggestions").tag(sync=True)

    def __init__(self, suggestions: list[dict[str, Any]] | None = None, on_verify: VerifyHandler | None = None,
                 **kwargs: Any) -> None:
        super().__init__(suggestions=to_json(list(suggestions or [])), **kwargs)
        self.on_verify = on_verify
        self.on_msg(self._on_msg)

    def set_suggestions(self, records: list[dict[str, Any]]) -> None:
        recs = to_json([dict(r) for r in records])
        if recs != self.suggestions:
            self.suggestions = recs

    def update_record(self, record: dict[str, Any]) -> None:
        rec = to_json(dict(record))
        out = [rec if s.get("id") == rec.get("id") else s for s in self.suggestions]
        if not any(s.get("id") == rec.get("id") for s in self.suggestions):
            out.append(rec)
        self.suggestions = out

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "verify":
            self.run_verify(str(content.get("id", "")))

    def run_verify(self, suggestion_id: str) -> dict[str, Any] | None:
        """Run the verification of one card (what the button does); returns the new record."""
        steps = int(self.verify_steps)

        def progress(done: int, total: int, message: str) -> None:
            self.progress = {"id": suggestion_id, "done": int(done), "total": int(total), "message": str(message),
                             "running": True}

        progress(0, 1, "starting…")
        self._set_status(suggestion_id, "running", None)
        record = None
        try:
            if self.on_verify is None:
                raise RuntimeError("no verification available here (no step function registered)")
            record = self.on_verify(suggestion_id, steps, progress)
            self.update_record(record)
        except Exception as exc:
            self._set_status(suggestion_id, "error", {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            p = dict(self.progress)
            p.update(running=False, message="done")
            self.progress = p
        return record

    def _set_status(self, suggestion_id: str, status: str, result: Any) -> None:
        out = []
        for s in self.suggestions:
            if s.get("id") == suggestion_id:
                s = dict(s, status=status)
                if result is not None:
                    s["result"] = to_json(result)
            out.append(s)
        self.suggestions = out
