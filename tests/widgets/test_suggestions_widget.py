"""The suggestions panel's widget sends a verification's loop figure (``extra["with_loading"]``)
to the browser, JSON-safe: numpy numbers as Python numbers, non-finite values as null."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant
from dsnotebook.advisor.verify import VerifyResult
from dsnotebook.widgets.suggestions import SuggestionsWidget


def _result(loop: dict[str, Any] | None) -> VerifyResult:
    res = VerifyResult(variant="bf16 autocast", steps_per_block=8, pairs=3, baseline_s=0.03, variant_s=0.02,
                       speedup=1.5, speedup_iqr=(1.4, 1.6), pair_speedups=[1.4, 1.5, 1.6], baseline_peak_bytes=None,
                       variant_peak_bytes=None, baseline_saved_bytes=1000, variant_saved_bytes=600,
                       baseline_loss=2.3, variant_loss=2.3, loss_drift=0.001, verdict="verified", reason="faster")
    res.extra["timing"] = "step" if loop is not None else "loop"
    if loop is not None:
        res.extra["with_loading"] = loop
    return res


def _suggestion(res: VerifyResult | None) -> Suggestion:
    s = Suggestion(rule="amp", title="mixed precision", category="speed", evidence={"dtype": "float32"}, gain="x1.5",
                   snippet="with torch.autocast(...):", verify_hint="A/B", variant=Variant("bf16 autocast"))
    if res is not None:
        s.status, s.result = res.verdict, res
    return s


# what verify.py puts there, with the numpy numbers a median gives and a non-finite quartile
LOOP = {"baseline_s": np.float64(0.04161), "variant_s": np.float64(0.04292), "speedup": np.float64(0.9695),
        "speedup_iqr": [np.float64(0.95), float("nan")], "pair_speedups": [np.float64(0.96), 0.97, float("inf")]}


def _synced(w: SuggestionsWidget) -> list[dict[str, Any]]:
    """The ``suggestions`` trait as the browser gets it (strict JSON: a NaN would fail here)."""
    state = w.get_state(key="suggestions")
    return json.loads(json.dumps(state["suggestions"], allow_nan=False))


def test_verify_button_sends_the_loop_figure() -> None:
    calls = []

    def on_verify(sid: str, steps: int, progress: Any) -> dict[str, Any]:
        calls.append((sid, steps))
        progress(1, 2, "pair 1/1")
        return _suggestion(_result(dict(LOOP))).to_record()

    w = SuggestionsWidget([_suggestion(None).to_record()], on_verify=on_verify)
    assert w.suggestions[0]["result"] is None
    w._on_msg(w, {"type": "verify", "id": "amp"}, [])  # what the browser's button sends
    assert calls == [("amp", w.verify_steps)]
    [card] = _synced(w)
    assert card["status"] == "verified"
    extra = card["result"]["extra"]
    assert extra["timing"] == "step"
    loop = extra["with_loading"]
    assert loop["baseline_s"] == 0.04161 and loop["variant_s"] == 0.04292 and loop["speedup"] == 0.9695
    assert loop["speedup_iqr"] == [0.95, None] and loop["pair_speedups"] == [0.96, 0.97, None]
    assert all(type(v) is float for v in (loop["baseline_s"], loop["variant_s"], loop["speedup"]))
    assert w.progress["running"] is False


def test_the_run_table_path_keeps_the_loop_figure() -> None:
    """After the cell ended the dashboard refills the panel from the Run's table (set_suggestions)."""
    w = SuggestionsWidget([])
    w.set_suggestions([_suggestion(_result(dict(LOOP))).to_record()])
    loop = _synced(w)[0]["result"]["extra"]["with_loading"]
    assert math.isclose(loop["speedup"], 0.9695) and loop["speedup_iqr"][1] is None


def test_a_result_without_the_loop_figure_sends_none() -> None:
    w = SuggestionsWidget([])
    w.update_record(_suggestion(_result(None)).to_record())
    [card] = _synced(w)
    assert card["result"]["extra"] == {"timing": "loop"}
    # a raw record straight from a handler (not through to_record) is made JSON-safe too
    w.update_record({"id": "amp", "status": "verified",
                     "result": {"speedup": np.float64(1.2), "extra": {"with_loading": {"speedup": np.float32("nan")}}}})
    assert _synced(w)[0]["result"]["extra"]["with_loading"] == {"speedup": None}
