"""The outcome of an A/B verification and how it is judged: :class:`VerifyResult` (numbers, verdict,
reason; ``to_record`` is what the suggestions card and the report read), :func:`judge` (verified or
refuted per target: speed, memory, stability) and :func:`loop_figure` (the loop with its loading
beside a verdict made on the step).  Running the A/B is :mod:`dsnotebook.advisor.verify`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class VerifyResult:
    variant: str
    steps_per_block: int
    pairs: int
    baseline_s: float  # median seconds per step
    variant_s: float
    speedup: float  # per unit of work (x work_scale); > 1: the variant is faster
    speedup_iqr: tuple[float, float]
    pair_speedups: list[float]
    baseline_peak_bytes: int | None
    variant_peak_bytes: int | None
    baseline_saved_bytes: int
    variant_saved_bytes: int
    baseline_loss: float | None
    variant_loss: float | None
    loss_drift: float | None  # median relative difference of matched losses (variant - baseline) / |baseline|
    verdict: str = ""
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_change(self) -> float | None:
        """Relative change of the arm's memory (peak on CUDA, saved activations elsewhere)."""
        a, b = ((self.baseline_peak_bytes, self.variant_peak_bytes) if self.baseline_peak_bytes
                else (self.baseline_saved_bytes, self.variant_saved_bytes))
        return None if not a else (b - a) / a

    def to_record(self) -> dict[str, Any]:
        d = asdict(self)
        d["speedup_iqr"] = list(self.speedup_iqr)
        d["memory_change"] = self.memory_change
        return d

    def __str__(self) -> str:
        mem = self.memory_change
        loss = "" if self.loss_drift is None else f", loss drift {100 * self.loss_drift:+.2f}%"
        return (f"{self.verdict}: {self.variant}: {1e3 * self.baseline_s:.2f} -> {1e3 * self.variant_s:.2f} ms/step, "
                f"speed-up x{self.speedup:.2f} [IQR {self.speedup_iqr[0]:.2f}-{self.speedup_iqr[1]:.2f}]"
                + ("" if mem is None else f", memory {100 * mem:+.1f}%") + loss + f" ({self.reason})"
                + self._loop_note())

    def _loop_note(self) -> str:
        """The loop with its loading, where the verdict was made on the step alone."""
        loop = self.extra.get("with_loading")
        if not loop:
            return ""
        note = (f"; with loading in the loop: {1e3 * loop['baseline_s']:.2f} -> {1e3 * loop['variant_s']:.2f} "
                f"ms/step, x{loop['speedup']:.2f}")
        return note + (f" ({loop['note']})" if loop.get("note") else "")


WAITS_NOTE = "the loop waits for its data: speed up loading to get the step's gain"


def loop_figure(step: "VerifyResult", loop: "VerifyResult", target: str) -> dict[str, Any]:
    """``extra["with_loading"]``: the loop measured with its loading, beside a verdict made on the step,
    and the reason when the loop hides the step's gain (a speed change faster by more than 3% on the
    step whose loop keeps less than half of that).  The one place of that rule: the suggestions card
    and the report show ``note`` as given."""
    waits = target == "speed" and step.speedup > 1.03 and loop.speedup < 1 + (step.speedup - 1) / 2
    return {"baseline_s": loop.baseline_s, "variant_s": loop.variant_s, "speedup": loop.speedup,
            "speedup_iqr": list(loop.speedup_iqr), "pair_speedups": loop.pair_speedups,
            "note": WAITS_NOTE if waits else ""}


def judge(r: VerifyResult, target: str) -> tuple[str, str]:
    """verified / refuted, with the reason in words."""
    if target == "speed":
        ok = r.speedup > 1.03 and r.speedup_iqr[0] > 1.0
        why = (f"median speed-up x{r.speedup:.2f} over {len(r.pair_speedups)} pairs, "
               f"lower quartile x{r.speedup_iqr[0]:.2f}")
        return ("verified" if ok else "refuted"), why + ("" if ok else " (needs > x1.03 with the lower quartile > x1)")
    if target == "memory":
        ch = r.memory_change
        ok = ch is not None and ch < -0.05
        what = "peak allocated" if r.baseline_peak_bytes else "activations saved for backward"
        why = "no memory measured" if ch is None else f"{what} {100 * ch:+.1f}%"
        return ("verified" if ok else "refuted"), why
    if target == "stability":
        a, b = r.baseline_loss, r.variant_loss
        finite = b is not None and b == b and abs(b) != float("inf")
        ok = finite and (a is None or a != a or abs(a) == float("inf") or b <= a)
        return ("verified" if ok else "refuted"), f"median loss {a} -> {b}"
    raise ValueError(f"unknown target {target!r}")
