"""Rank x phase panel (anywidget): every rank's step phases, its straggler score, each phase's skew.

A pure renderer: every number arrives computed (see :func:`dsnotebook.views.rank_panel.panel_state`,
which reads ``dsnotebook.distributed.ranks``, the same source as the advisor).  Traits:

* ``ranks``: rank numbers, one table row each;
* ``columns``: ``[[key, label, colour], ...]`` the table's columns in display order;
* ``matrix``: rank x column median seconds over the steady sampled steps (None: not measured);
* ``skew``: per column, the median over steps of the slowest minus the fastest rank;
* ``scores`` / ``excess``: per rank, the share of every step the job waits for it and the phase
  of its extra work; ``straggler``: the straggler rank or -1; ``steps``: sampled steps used;
* ``selected_rank`` (click a row; -1: none), ``status``, ``title``.
"""
from __future__ import annotations

from typing import Any

import anywidget
import traitlets

from dsnotebook.widgets.esm import load_esm
from dsnotebook.widgets.panel import set_data

__all__ = ["RanksWidget"]


class RanksWidget(anywidget.AnyWidget):
    _esm = load_esm("ranks")

    ranks = traitlets.List(traitlets.Int()).tag(sync=True)
    columns = traitlets.List(traitlets.List(traitlets.Unicode())).tag(sync=True)
    matrix = traitlets.List(traitlets.List()).tag(sync=True)
    skew = traitlets.List().tag(sync=True)
    scores = traitlets.List().tag(sync=True)
    excess = traitlets.List(traitlets.Unicode()).tag(sync=True)
    straggler = traitlets.Int(-1).tag(sync=True)
    steps = traitlets.Int(0).tag(sync=True)
    selected_rank = traitlets.Int(-1).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("ranks").tag(sync=True)

    STATE = ("ranks", "columns", "matrix", "skew", "scores", "excess", "straggler", "steps")

    def set_data(self, state: dict[str, Any]) -> None:
        """Set the data traits in one message; only those that changed are sent (see widgets.panel)."""
        set_data(self, state, self.STATE)

    @property
    def has_data(self) -> bool:
        return bool(self.ranks)
