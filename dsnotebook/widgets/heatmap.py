"""Live gradient heatmap (anywidget): rows = tensors in model order, columns = steps.

Traits carry metadata and one periodic snapshot; new columns travel as deltas on the
series protocol (:mod:`dsnotebook.widgets.series`: custom messages with a small JSON
header and one float32 buffer each). At most one send per ``MIN_INTERVAL`` seconds
(append/drop/status); call ``flush()`` at the end of a cell.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import traitlets

from dsnotebook.widgets.esm import load_esm
from dsnotebook.widgets.series import SeriesWidget

__all__ = ["HeatmapWidget", "DEFAULT_STATS"]

DEFAULT_STATS: list[dict[str, Any]] = [
    {"key": "norm", "label": "grad norm", "log": True},
    {"key": "absmax", "label": "grad abs-max", "log": True},
    {"key": "update_ratio", "label": "update / weight", "log": True},
    {"key": "nonfinite", "label": "non-finite count", "log": False},
    {"key": "zero_frac", "label": "zero fraction", "log": False},
]


def _plain_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as plain JSON: str labels, int shapes (module/tensor split from the name)."""
    out = [dict(r) for r in rows]
    for i, r in enumerate(out):
        r["name"] = str(r.get("name", f"row {i}"))
        r["module"] = str(r.get("module", r["name"].rpartition(".")[0]))
        r["tensor"] = str(r.get("tensor", r["name"].rpartition(".")[2]))
        if r.get("shape") is not None:
            r["shape"] = [int(d) for d in r["shape"]]
    return out


class HeatmapWidget(SeriesWidget):
    """Tensors x steps heatmap of per-tensor statistics, updated live.

    ``values`` given to :meth:`append` have shape ``[n_stats, n_rows, n_new]``
    (float32; NaN = no data for that cell).
    """

    _esm = load_esm("heatmap")

    #: key of the statistic whose value > 0 marks a cell as non-finite ("" = none)
    mark_stat = traitlets.Unicode("nonfinite").tag(sync=True)
    title = traitlets.Unicode("gradient heatmap").tag(sync=True)
    #: linked selection: module of the row clicked in the browser ("" = none), and the
    #: step of the cell clicked (-1 = none); settable from Python (outlines those rows)
    selected_module = traitlets.Unicode("").tag(sync=True)
    selected_step = traitlets.Int(-1).tag(sync=True)
    #: name of the tensor (row) clicked last ("" = none): the dashboard's histogram follows it
    selected_tensor = traitlets.Unicode("").tag(sync=True)
    #: the step under the pointer (debounced; -1 = none), for panels that follow it
    hover_step = traitlets.Int(-1).tag(sync=True)

    MIN_INTERVAL: ClassVar[float] = 0.1

    def __init__(
        self,
        rows: Sequence[dict[str, Any]] = (),
        stats: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        stats = list(DEFAULT_STATS if stats is None else stats)
        if kwargs.get("mark_stat", "nonfinite") not in [s.get("key") for s in stats]:
            kwargs["mark_stat"] = ""
        #: callable returning the text/plain representation (set by the Run/tracer)
        self.text_fallback: Callable[[], str] | None = None
        super().__init__(rows=_plain_rows(rows), stats=stats, **kwargs)

    @traitlets.validate("rows", "stats")
    def _fixed_shape(self, proposal: Any) -> Any:
        name = proposal["trait"].name
        series = self.__dict__.get("series")
        n = None if series is None else series.n_rows if name == "rows" else series.n_stats
        if n is not None and len(proposal["value"]) != n:
            raise traitlets.TraitError(
                f"{name} has {n} entries for the life of the widget; make a new HeatmapWidget for another model")
        return proposal["value"]

    # ------------------------------------------------------------------ display
    def display(self) -> Any:
        """Display the widget (with a display id) and return the display handle.

        The output's ``text/plain`` is the text summary as of now; call
        :meth:`update_display` at the end of the cell so that saved notebooks, nbconvert's
        text/markdown exports and terminals carry the final summary.
        """
        from IPython.display import display

        self._display_handle = display(self, display_id=True)
        return self._display_handle

    def update_display(self) -> None:
        """Re-send the output of :meth:`display` (fresh text summary; the live view stays)."""
        handle = getattr(self, "_display_handle", None)
        if handle is not None:
            handle.update(self)

    # ------------------------------------------------------------------ text repr
    def _repr_mimebundle_(self, **kwargs: Any):  # type: ignore[override]
        bundle = super()._repr_mimebundle_(**kwargs)
        text = self._text_summary()
        if isinstance(bundle, tuple):
            data, meta = bundle
            return {**(data or {}), "text/plain": text}, meta
        return {**(bundle or {}), "text/plain": text}

    def _text_summary(self) -> str:
        if self.text_fallback is not None:
            try:
                return str(self.text_fallback())
            except Exception as exc:  # a broken fallback must not break display
                return f"{self.title}: text summary failed ({type(exc).__name__}: {exc})"
        return self.default_text()

    def default_text(self) -> str:
        """A small summary: last value of each row for the shown statistic."""
        steps = self.steps
        head = f"{self.title}: {len(self.rows)} tensors x {len(steps)} steps"
        if steps:
            head += f" (steps {steps[0]}..{steps[-1]})"
        lines = [head]
        if self.status:
            lines.append(self.status)
        keys = [s["key"] for s in self.stats]
        if not steps or self.stat not in keys:
            return "\n".join(lines)
        si = keys.index(self.stat)
        last = self.values()[si, :, -1]
        label = self.stats[si]["label"]
        width = max([len("tensor")] + [len(r["name"]) for r in self.rows])
        lines.append(f"{'tensor':<{width}}  {label} @ step {steps[-1]}")
        for r, v in zip(self.rows, last):
            lines.append(f"{r['name']:<{width}}  {'-' if np.isnan(v) else format(float(v), '.4g')}")
        return "\n".join(lines)
