"""compare(a, b): runs side by side, their gradient heatmaps next to each other.

Each run gets a :class:`~dsnotebook.views.live_heatmap.LiveHeatmap` fed once with all its
retained steps; its title names the run.  Tables of several runs with a ``run`` column:
:func:`dsnotebook.run.runs.compare_frames` (``RunSet.to_dataframe``).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from dsnotebook.run.runs import compare_frames
from dsnotebook.run.store import Run

__all__ = ["compare", "compare_frames"]


def _as_runs(runs: Any) -> dict[str, Run]:
    if isinstance(runs, Mapping):
        items = list(runs.items())
    else:
        items = []
        for i, r in enumerate(runs):
            if isinstance(r, (str, os.PathLike)):
                items.append((os.path.basename(os.path.normpath(str(r))), r))
            else:
                items.append((f"run {i + 1}", r))
    out: dict[str, Run] = {}
    for name, r in items:
        run = Run.open(r) if isinstance(r, (str, os.PathLike)) else getattr(r, "run", r)  # a path, tracer or Run
        if not isinstance(run, Run):
            raise TypeError(f"compare takes Runs, tracers or run directories, got {type(run).__qualname__}")
        out[str(name)] = run
    return out


def compare(*runs: Any, display: bool = True) -> Any:
    """Gradient heatmaps of two or more runs side by side (Runs, tracers, run directories, or one
    mapping name -> run); returns the ipywidgets box."""
    import ipywidgets

    from dsnotebook.views.live_heatmap import LiveHeatmap

    one = len(runs) == 1 and isinstance(runs[0], (Mapping, list, tuple))  # compare({"a": a, "b": b}) / compare([a, b])
    named = _as_runs(runs[0] if one else runs)
    if len(named) < 2:
        raise ValueError(f"compare needs at least two runs, got {len(named)}")
    panels = []
    for name, run in named.items():
        view = LiveHeatmap(run)
        view.widget.title = f"{name}: gradient heatmap"
        view.close(name)  # sends every retained step once, stops listening
        view.widget.layout = ipywidgets.Layout(flex="1 1 0", min_width="0")
        panels.append(view.widget)
    box = ipywidgets.HBox(panels, layout=ipywidgets.Layout(width="100%"))
    box.add_class("dsn-compare")
    if display:
        from IPython.display import display as show

        show(box)
    return box
