"""The Run: the one data model every view reads (see :mod:`dsnotebook.run.store`)."""
from dsnotebook.run.store import Run

__all__ = ["Run"]
