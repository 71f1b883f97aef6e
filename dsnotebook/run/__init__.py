"""The Run: the one data model every view reads (see :mod:`dsnotebook.run.store`).

``fields`` (statistic names and how raw sums become them), ``steps`` (retained steps and
thinning), ``rows`` (what the per-step readers return), ``frames`` (DataFrames),
``files`` (the run directory), ``records`` (tables of plain records).
"""
from dsnotebook.run.fields import ACT_FIELDS, GRAD_FIELDS, UPDATE_FIELDS
from dsnotebook.run.rows import ActivationRows, GradRows, StatRows, UpdateRows
from dsnotebook.run.store import Run

__all__ = ["Run", "ACT_FIELDS", "GRAD_FIELDS", "UPDATE_FIELDS", "ActivationRows", "GradRows", "StatRows",
           "UpdateRows"]
