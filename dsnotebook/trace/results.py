"""What a tracer offers once it has recorded something: tables, advice, views, summaries.

Kept apart from the hook and clock machinery of :mod:`dsnotebook.trace.tracer`; every
method here reads the tracer's Run.
"""
from __future__ import annotations

from typing import Any

import pandas as pd


class TracerResults:
    """Mixin of :class:`~dsnotebook.trace.tracer.ModelTracer`: the read side."""

    run: Any
    views: list[Any]

    def flush(self, wait: bool = False) -> None:  # pragma: no cover - provided by ModelTracer
        raise NotImplementedError

    def to_dataframe(self, table: str = "grads") -> pd.DataFrame:
        """A pandas DataFrame of one recorded table (``run.to_dataframe``), after in-flight copies land.
        ``"rank_grads"`` (distributed runs) is long format: one row per step, rank and tensor."""
        self.flush(wait=True)
        if table == "rank_grads":
            from dsnotebook.distributed import rank_grads

            return rank_grads(self.run)
        return self.run.to_dataframe(table)

    def profile_window(self, active: int = 3, wait: int = 1, warmup: int = 1, trace_path: str | None = None) -> Any:
        """Run ``torch.profiler`` over the next few optimizer steps; per-module rows land in the
        Run's ``profile`` table; ``.export_chrome_trace(path)`` writes a Perfetto trace."""
        from dsnotebook.perf.window import ProfileWindow

        opts = self._live_optimizers()
        return ProfileWindow(self.model, opts[0] if len(opts) == 1 else None, wait=wait, warmup=warmup,
                             active=active, run=self.run, trace_path=trace_path)

    def advise(self, hardware: Any = None, data: Any = None) -> list[Any]:
        """Tuning suggestions for this run (``dsnotebook.advisor.advise`` with the traced model and
        optimizer; pass the DataLoader as ``data`` to make the data-loader advice verifiable)."""
        from dsnotebook.advisor import advise

        self.flush(wait=True)
        opts = self._live_optimizers()
        out = advise(self.run, hardware, model=self.model, optimizer=opts[0] if len(opts) == 1 else None, data=data)
        for s in out:  # verify() pauses this tracer: A/B steps must not land in the Run
            s.bind(tracer=self)
        return out

    def enable_gradient_heatmap(self, display: bool = True) -> Any:
        """Show a live gradient heatmap of this tracer's Run (returns the widget)."""
        from dsnotebook.views.live_heatmap import LiveHeatmap

        view = LiveHeatmap(self.run)
        self.add_view(view)
        if display:
            view.display()
        return view.widget

    def add_view(self, view: Any) -> None:
        """Keep a live view with the tracer (its widget stays reachable as :attr:`dashboard`)."""
        self.views.append(view)

    @property
    def dashboard(self) -> Any:
        """The widget of the latest live view (the magic's dashboard), or None."""
        return self.views[-1].widget if self.views else None

    def report(self, path: Any, **options: Any) -> Any:
        """Write the standalone HTML report of this tracer's Run (bokeh, resources inline) to ``path``,
        after in-flight copies land; ``options`` go to ``dsnotebook.views.report.write_report``."""
        from dsnotebook.views.report import write_report

        self.flush(wait=True)
        return write_report(self.run, path, **options)

    def summary(self) -> str:
        """A readable text summary of the Run (what terminals and scripts show)."""
        from dsnotebook.views.text import text_summary

        self.flush(wait=True)
        return text_summary(self.run)

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return (f"<ModelTracer {self.run.meta.get('model')} ({state}, step {self.step_count}, every {self.every}): "
                f"{self.run!r}>")
