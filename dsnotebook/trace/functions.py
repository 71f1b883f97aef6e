"""Function tracing as users call it: ``@dsnotebook.trace``, ``dsnotebook.trace.span/calls/flame``.

The work is done in :mod:`dsnotebook.calls` (a probe-layer package, so that the tracer can
compose its :class:`~dsnotebook.calls.probe.CallsProbe`); this module, in the trace layer, adds
the flame view, which lives in the views layer above the probes.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from dsnotebook.calls.api import FunctionTrace

__all__ = ["FUNCTIONS", "flame_view"]


def flame_view(calls: pd.DataFrame | Any) -> Any:
    """A flame widget of traced calls (a DataFrame of the ``calls`` columns, or a Run)."""
    from dsnotebook.views.flame_view import flame

    return flame(calls)


#: the one decorator object behind ``dsnotebook.trace``
FUNCTIONS = FunctionTrace(viewer=flame_view)
