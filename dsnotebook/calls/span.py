"""``with dsnotebook.trace.span("branch"):``: a block timed as a child of the enclosing call."""
from __future__ import annotations

from typing import Any

from dsnotebook.calls.record import INFO, Site, error_text
from dsnotebook.calls.state import STATE, current
from dsnotebook.calls.wrap import begin, end

__all__ = ["Span"]

_span_sites: dict[tuple[str, int | None], Site] = {}


class Span:
    """``with dsnotebook.trace.span("branch"):`` a block timed as a child of the enclosing call.

    Its level is the enclosing call's unless given.  One ``Span`` object times one block at a
    time (``trace.span(...)`` makes a new one each time).
    """

    __slots__ = ("site", "level", "rec", "sink")

    def __init__(self, name: str, level: int | None = None) -> None:
        key = (name, level)
        site = _span_sites.get(key)
        if site is None:
            site = Site(name, "span", INFO if level is None else level, modules=None)
            if len(_span_sites) < 10_000:  # names made per step (f"step {i}") are not all kept
                _span_sites[key] = site
        self.site, self.level, self.rec = site, level, None

    def __enter__(self) -> "Span":
        if not STATE.enabled:
            return self
        parent = current.get()
        level = self.level if self.level is not None else (parent.level if parent is not None else INFO)
        self.sink = STATE.sink
        self.rec = begin(self.site, level, parent, self.sink)
        return self

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> bool:
        rec, self.rec = self.rec, None
        if rec is not None:
            if exc is not None:
                rec.error = error_text(exc)
            end(rec, self.sink)
        return False
