"""The standalone HTML report of a Run (bokeh, resources inline): ``write_report(run, "run.html")``.

Also reachable as ``run.report(path)``, ``tracer.report(path)``, ``dsnotebook.report(run, path)``
and ``python -m dsnotebook report RUN_DIR -o run.html``. One module per section; see
:mod:`dsnotebook.views.report.document` for the layout and the size rules.
"""
from dsnotebook.views.report.document import DEFAULT_COLUMNS, DEFAULT_HIST_COLUMNS, build_report, write_report

__all__ = ["write_report", "build_report", "DEFAULT_COLUMNS", "DEFAULT_HIST_COLUMNS"]
