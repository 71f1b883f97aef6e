"""The kernel->browser traffic of the series protocol, recorded from a real widget, is the
fixture the TypeScript tests replay (js/src/shared/testdata/series_traffic.json, read by
js/src/shared/traffic.test.ts): this test checks the fixture still is what Python sends.

After a deliberate protocol change, rewrite it with
``.venv/bin/python tests/widgets/test_series_traffic.py --write`` and run ``npm test`` in js/.
"""
from __future__ import annotations

import base64
import json
import pathlib
import sys
from typing import Any

import numpy as np
import pytest

from dsnotebook.widgets import HeatmapWidget
from dsnotebook.widgets import series as series_mod

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "js" / "src" / "shared" / "testdata" / "series_traffic.json"
N_STATS, N_ROWS = 3, 4


def _values(step: int) -> np.ndarray:
    """[stat, row, 1] float32 with NaN (no data), +inf and zeros among ordinary values."""
    s, r = np.meshgrid(np.arange(N_STATS), np.arange(N_ROWS), indexing="ij")
    v = (((step * 7 + r * 3 + s) % 11) / 3.0 + 0.001 * step).astype(np.float32)
    v[:, 2] = np.nan if step % 4 == 1 else v[:, 2]
    if step == 6:
        v[0, 1] = np.inf
    return v[:, :, None]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def record(monkeypatch: Any) -> dict[str, Any]:
    """Feed a heatmap 16 steps (batched into several messages, with drops) on a fake clock."""
    clock = {"t": 1000.0}
    monkeypatch.setattr(series_mod.time, "monotonic", lambda: clock["t"])
    stats = [{"key": f"s{i}", "label": f"stat {i}", "log": i == 0} for i in range(N_STATS)]
    w = HeatmapWidget(rows=[{"name": f"m{r}.weight"} for r in range(N_ROWS)], stats=stats)
    w.series.max_message_bytes = N_STATS * N_ROWS * 4 * 2  # two columns per message

    def snap() -> dict[str, Any]:
        return {"kind": "snapshot", "meta": dict(w.snapshot_meta), "data": _b64(w.snapshot)}

    initial = snap()
    events: list[dict[str, Any]] = []
    w.send = lambda content, buffers=None: events.append(  # type: ignore[method-assign]
        {"kind": "msg", "content": content, "buffers": [_b64(bytes(b)) for b in buffers or []]})
    w.observe(lambda _change: events.append(snap()), names=["snapshot_meta"])
    for step in range(16):
        w.append([step], _values(step))
        clock["t"] += 0.04
        if step % 5 == 4:
            w.drop([step - 4, step - 2])
        if step == 9:
            w.append([10, 11, 12], np.concatenate([_values(s) for s in (10, 11, 12)], axis=2))
            clock["t"] += 0.3
            break
    for step in range(13, 16):
        w.append([step], _values(step))
        clock["t"] += 0.5
    w.flush()
    final = np.ascontiguousarray(w.values().transpose(0, 2, 1))  # [stat, col, row] as the browser holds it
    return {"rows": N_ROWS, "stats": N_STATS, "initial": initial, "events": events,
            "final": {"steps": w.steps, "seq": w.series.seq, "values": _b64(final.tobytes())}}


def test_fixture_is_what_python_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    traffic = record(monkeypatch)
    kinds = [e["kind"] for e in traffic["events"]]
    # the fixture exercises what the replay tests need: chunked appends, drops, several snapshots
    assert kinds.count("snapshot") >= 3 and kinds.count("msg") >= 8
    assert any(e["content"]["type"] == "drop" for e in traffic["events"] if e["kind"] == "msg")
    assert any(len(e["content"]["steps"]) == 2 for e in traffic["events"] if e["kind"] == "msg")
    assert all(e["content"].get("dtype", "float32") == "float32" for e in traffic["events"] if e["kind"] == "msg")
    assert FIXTURE.exists(), f"missing {FIXTURE}: run this file with --write"
    assert json.loads(FIXTURE.read_text()) == json.loads(json.dumps(traffic)), (
        "the series protocol's traffic changed: rewrite the fixture (python tests/widgets/test_series_traffic.py "
        "--write) and run `npm test` in js/")


if __name__ == "__main__" and "--write" in sys.argv:
    mp = pytest.MonkeyPatch()
    try:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(record(mp), indent=1) + "\n")
        print(f"wrote {FIXTURE}")
    finally:
        mp.undo()
