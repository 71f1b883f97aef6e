"""Advisor: rules that read a Run plus the hardware profile and propose changes with evidence.

``advise(run, hardware)`` runs every rule in :data:`RULES` (each a small function,
``rule(run, hardware, context) -> Suggestion | None``), stores the suggestions in the
Run's ``suggestions`` table and returns them.  Pass the live ``model``, ``optimizer``
and ``data`` to get suggestions that can verify themselves (``suggestion.verify``).

For widgets: :func:`suggestions_of` gives the live objects of a Run by id and
:func:`verify_by_id` runs one verification with a progress callback, using the step
function registered with :func:`set_step_function`.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.rules_data import data_loader_bound
from dsnotebook.advisor.rules_distributed import ddp_communication
from dsnotebook.advisor.rules_launch import compile_launch_bound, fused_optimizer
from dsnotebook.advisor.rules_memory import batch_headroom, gradient_checkpointing
from dsnotebook.advisor.rules_precision import channels_last, mixed_precision, tf32
from dsnotebook.advisor.rules_ranks import straggler_rank, uneven_work
from dsnotebook.advisor.rules_training import dead_units, exploding_vanishing, update_ratio
from dsnotebook.advisor.settings import TuningProfile, detect_gpu
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant
from dsnotebook.advisor.verify import Progress, TrainingState, VerifyResult, verify_variant

Rule = Callable[[Any, HardwareProfile, AdviceContext], "Suggestion | None"]
RULES: list[Rule] = [data_loader_bound, mixed_precision, tf32, channels_last, compile_launch_bound,
                     gradient_checkpointing, batch_headroom, fused_optimizer, exploding_vanishing, update_ratio,
                     dead_units, ddp_communication, straggler_rank, uneven_work]

_BOOKS: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()

__all__ = ["advise", "Suggestion", "Variant", "VerifyResult", "TrainingState", "verify_variant", "RULES",
           "suggestions_of", "verify_by_id", "set_step_function", "hardware_of"]


def hardware_of(run: Any) -> TuningProfile:
    """The hardware profile recorded with the run, else this machine's (either offers its settings)."""
    d = run.meta.get("hardware_profile")
    if d:
        d = dict(d)
        d["compute_capability"] = tuple(d["compute_capability"]) if d.get("compute_capability") else None
        try:
            return TuningProfile(**d)
        except TypeError:
            pass
    return detect_gpu()


def advise(run: Any, hardware: HardwareProfile | None = None, *, model: Any = None, optimizer: Any = None,
           data: Any = None, rules: list[Rule] | None = None) -> list[Suggestion]:
    """Every rule's suggestion for ``run`` on ``hardware`` (default: the run's recorded machine)."""
    hw = hardware if hardware is not None else hardware_of(run)
    ctx = AdviceContext(model=model, optimizer=optimizer, data=data)
    out: list[Suggestion] = []
    for rule in (rules if rules is not None else RULES):
        try:
            s = rule(run, hw, ctx)
        except Exception as exc:  # one broken rule must not hide the others
            run.add_event(None, "warning", None, f"advisor rule {getattr(rule, '__name__', rule)} failed: "
                                                 f"{type(exc).__name__}: {exc}")
            continue
        if s is not None:
            out.append(s.bind(run=run, model=model, optimizer=optimizer, data=data))
    run.add_records("suggestions", [s.to_record() for s in out])
    book = _BOOKS.setdefault(run, {"suggestions": {}, "step_fn": None, "data": None})
    book["suggestions"].update({s.id: s for s in out})
    return out


def suggestions_of(run: Any) -> dict[str, Suggestion]:
    """Live suggestions made for ``run`` in this session, by id."""
    return dict(_BOOKS.get(run, {}).get("suggestions", {}))


def set_step_function(run: Any, step_fn: Callable[..., Any], data: Any = None) -> None:
    """The step a widget's verify button runs (``step_fn(batch)`` with ``data``, else ``step_fn()``)."""
    book = _BOOKS.setdefault(run, {"suggestions": {}, "step_fn": None, "data": None})
    book["step_fn"], book["data"] = step_fn, data


def verify_by_id(run: Any, suggestion_id: str, *, steps: int = 20, progress: Progress | None = None,
                 step_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Verify one suggestion (widget button); returns its updated record (also in the Run)."""
    book = _BOOKS.get(run) or {}
    s = book.get("suggestions", {}).get(suggestion_id)
    if s is None:
        raise KeyError(f"no live suggestion {suggestion_id!r} for this run (call advise() in this session)")
    fn = step_fn or book.get("step_fn")
    if fn is None:
        raise ValueError("no step function: call dsnotebook.advisor.set_step_function(run, step_fn, data=...)")
    s.verify(fn, steps=steps, data=book.get("data"), progress=progress)
    return s.to_record()
