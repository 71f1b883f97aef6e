"""A suggestion: what to change, the numbers that triggered it, and a way to prove it (A/B).

Records are plain JSON (``to_record``) with a stable ``id`` (the rule name, plus the
module for per-module advice), so a widget can key cards by id and replace a card when
its verification finishes.  The live object keeps weak references to the model,
optimizer and data the advice was made for; ``verify`` runs the A/B comparison and
writes the outcome back to the Run's ``suggestions`` table.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from dsnotebook.core.jsonsafe import to_json
from dsnotebook.advisor.variants import Variant
from dsnotebook.advisor.verify import Progress, VerifyResult, verify_variant

CATEGORIES = ("speed", "memory", "training", "distributed")


@dataclass
class Applied:
    """A suggestion in effect: ``undo()``, the ``data`` to iterate, the per-step ``context()``."""

    undo: Callable[[], None]
    data: Any
    context: Callable[[], Any]


@dataclass
class Suggestion:
    rule: str
    title: str
    category: str
    evidence: dict[str, Any]
    gain: str
    snippet: str
    verify_hint: str
    target: str = "speed"  # what verification judges: speed, memory or stability
    severity: str = "info"  # info, warning
    variant: Variant | None = None
    key: str | None = None  # distinguishes several suggestions of one rule (e.g. per module)
    status: str = "proposed"  # proposed, running, verified, refuted, error
    result: VerifyResult | None = None
    error: str | None = None
    _refs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.rule if self.key is None else f"{self.rule}:{self.key}"

    @property
    def can_verify(self) -> bool:
        return self.variant is not None

    def bind(self, run: Any = None, model: Any = None, optimizer: Any = None, data: Any = None,
             tracer: Any = None) -> "Suggestion":
        """Remember (weakly) what verify() needs; an attached ``tracer`` is paused while it runs."""
        for k, v in (("run", run), ("model", model), ("optimizer", optimizer), ("data", data), ("tracer", tracer)):
            if v is not None:
                try:
                    self._refs[k] = weakref.ref(v)
                except TypeError:  # e.g. a list of batches: hold it strongly
                    self._refs[k] = (lambda v=v: v)
        return self

    def _ref(self, k: str) -> Any:
        r = self._refs.get(k)
        return r() if r is not None else None

    def verify(self, step_fn: Callable[..., Any], steps: int = 20, *, model: Any = None, optimizer: Any = None,
               data: Any = None, pairs: int | None = None, warmup: int = 1,
               progress: Progress | None = None, timing: str = "auto") -> VerifyResult:
        """A/B: ``step_fn`` under the baseline and under this suggestion's change.

        ``step_fn()`` runs one full training step (load, forward, backward, optimizer)
        and returns the loss; with ``data`` (an iterable or DataLoader) it is called as
        ``step_fn(batch)``.  A change to the loading (the data-loader rule) is timed with
        the loading; a change to the step (autocast, TF32, compile, ...) is judged on the
        step, with batches loaded before the clock starts, and the loop with its loading
        is reported beside it (``result.extra["with_loading"]``): a loop that waits for its
        data hides a faster step.  ``timing`` overrides ("step" or "loop"; see
        :func:`~dsnotebook.advisor.verify.verify_variant`).  Model, optimizer and RNG state
        are restored afterwards.
        """
        if self.variant is None:
            raise ValueError(f"{self.id}: this suggestion has no automatic variant to verify; "
                             f"apply the snippet by hand and compare ({self.verify_hint})")
        model = model if model is not None else self._ref("model")
        optimizer = optimizer if optimizer is not None else self._ref("optimizer")
        data = data if data is not None else self._ref("data")
        if model is None:
            raise ValueError(f"{self.id}: pass model= (the suggestion was made without one)")
        self.status, self.error = "running", None
        self._publish()
        tracer = self._ref("tracer")
        paused = tracer is not None and tracer.attached
        if paused:
            tracer.detach()
        try:
            self.result = verify_variant(self.variant, step_fn, model=model, optimizer=optimizer, data=data,
                                         steps=steps, pairs=pairs, warmup=warmup, target=self.target,
                                         progress=progress, timing=timing)
            self.status = self.result.verdict
        except BaseException as exc:
            self.status, self.error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if paused:
                tracer.attach()
            self._publish()
        return self.result

    def apply(self, *, model: Any = None, optimizer: Any = None, data: Any = None) -> "Applied":
        """Make the change for real (after verifying it, ideally).

        Returns an :class:`Applied`: flag/model/optimizer changes are in effect until
        ``applied.undo()``; a data change gives ``applied.data`` (the new loader, use it in
        the loop); a per-step change (autocast) is ``with applied.context(): ...``.
        """
        from dsnotebook.advisor.variants import VerifyContext

        if self.variant is None:
            raise ValueError(f"{self.id}: nothing to apply automatically; use the snippet:\n{self.snippet}")
        model = model if model is not None else self._ref("model")
        optimizer = optimizer if optimizer is not None else self._ref("optimizer")
        data = data if data is not None else self._ref("data")
        v = self.variant
        undo = v.enter(VerifyContext(model, optimizer, data)) if v.enter is not None else None
        new_data = v.make_data(data) if v.make_data is not None and data is not None else data
        return Applied(undo=undo or (lambda: None), data=new_data, context=v.step_context or contextlib.nullcontext)

    def _publish(self) -> None:
        run = self._ref("run")
        if run is not None:
            run.add_records("suggestions", [self.to_record()])

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-able dict (the Run's ``suggestions`` table row)."""
        result = self.result.to_record() if self.result is not None else None
        if self.error:
            result = {"error": self.error}
        return to_json({"id": self.id, "rule": self.rule, "title": self.title, "category": self.category,
                      "severity": self.severity, "evidence": self.evidence, "gain": self.gain,
                      "snippet": self.snippet, "verify_hint": self.verify_hint, "can_verify": self.can_verify,
                      "status": self.status, "result": result})

    def __str__(self) -> str:
        ev = ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items())
        s = f"[{self.category}] {self.title}\n  evidence: {ev}\n  gain: {self.gain}\n  verify: {self.verify_hint}"
        if self.result is not None:
            s += f"\n  {self.result}"
        return s + "\n" + "\n".join("    " + line for line in self.snippet.splitlines())

    def _repr_markdown_(self) -> str:
        ev = "".join(f"\n- {k}: `{_fmt(v)}`" for k, v in self.evidence.items())
        res = f"\n\n**{self.status}**: {self.result}" if self.result is not None else ""
        return f"**{self.title}** ({self.category})\n\nEvidence:{ev}\n\nGain: {self.gain}{res}\n\n```python\n{self.snippet}\n```"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
