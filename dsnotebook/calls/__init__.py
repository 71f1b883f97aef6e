"""Function tracing: ``@dsnotebook.trace(level=...)``, ``trace.span()``, a call tree with times and data.

A probe-layer package (beside params, dataflow, perf): the decorator and its wrappers
(``wrap``), the call records and the context that nests them (``record``, ``state``), module
calls inside traced calls (``modules``), "debug" data summaries (``data``), "trace" op capture
(``ops``), CUDA device time (``device``), the cost of tracing itself (``calibrate``), and the
two sinks: the tracer's :class:`~dsnotebook.calls.probe.CallsProbe` (the Run's ``calls`` table)
and the default recorder read by ``dsnotebook.trace.calls()``.
"""
from dsnotebook.calls.api import FunctionTrace
from dsnotebook.calls.probe import CallsProbe
from dsnotebook.calls.record import KINDS, LEVELS
from dsnotebook.calls.recorder import DEFAULT, Recorder

__all__ = ["FunctionTrace", "CallsProbe", "Recorder", "DEFAULT", "LEVELS", "KINDS"]
