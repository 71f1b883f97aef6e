"""What a rule may look at besides the Run: the hardware profile and, when given, the live
objects (model, optimizer, data) that let a suggestion build a variant to verify."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class AdviceContext:
    model: Any = None
    optimizer: Any = None
    data: Any = None

    def settings(self, run: Any) -> dict[str, Any]:
        """The configuration the profiler saw (autocast, TF32, channels_last, ...)."""
        return dict(run.meta.get("settings") or {})
