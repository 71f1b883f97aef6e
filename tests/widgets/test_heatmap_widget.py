"""HeatmapWidget without a browser: message encoding, rate limit, drop, snapshot, text
fallback (colours: test_colors.py). The browser side of the protocol is
tested in TypeScript (js/src/shared/*.test.ts, `npm test`) on traffic recorded here
(test_series_traffic.py)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from dsnotebook.widgets import HeatmapWidget
from dsnotebook.widgets import series as series_mod
from dsnotebook.widgets.esm import load_esm

REPO = pathlib.Path(__file__).resolve().parents[2]
ROWS = [
    {"name": "conv1.weight", "module": "conv1", "tensor": "weight", "shape": [8, 1, 3, 3]},
    {"name": "conv1.bias", "module": "conv1", "tensor": "bias", "shape": [8]},
    {"name": "fc.weight", "module": "fc", "tensor": "weight", "shape": [10, 8]},
]
STATS = [
    {"key": "norm", "label": "grad norm", "log": True},
    {"key": "absmax", "label": "grad abs-max", "log": True},
    {"key": "update_ratio", "label": "update / weight", "log": True},
    {"key": "nonfinite", "label": "non-finite count", "log": False},
    {"key": "zero_frac", "label": "zero fraction", "log": False},
]
S, R = len(STATS), len(ROWS)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(series_mod.time, "monotonic", c)
    return c


@pytest.fixture
def widget(clock: Clock) -> HeatmapWidget:
    w = HeatmapWidget(rows=ROWS, stats=STATS)
    w.sent = []  # type: ignore[attr-defined]
    w.send = lambda content, buffers=None: w.sent.append((content, buffers))  # type: ignore[method-assign]
    return w


def vals(steps: list[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((S, R, len(steps)), dtype=np.float64) + np.arange(len(steps))  # float64 on purpose


def decode(content: dict, buffers: list) -> np.ndarray:
    """The browser's view of an append: [stat, col, row] float32 -> [stat, row, col]."""
    assert content["dtype"] == "float32" and content["layout"] == "stat,col,row"
    raw = bytes(buffers[0])
    arr = np.frombuffer(raw, dtype=np.float32).reshape(content["shape"])
    return arr.transpose(0, 2, 1)


# ---------------------------------------------------------------- messages
def test_append_sends_header_and_one_float32_buffer(widget: HeatmapWidget) -> None:
    v = vals([0, 1])
    widget.append([0, 1], v)
    assert len(widget.sent) == 1
    content, buffers = widget.sent[0]
    assert content["type"] == "append" and content["seq"] == 1
    assert content["steps"] == [0, 1]
    assert content["shape"] == [S, 2, R]
    assert len(buffers) == 1 and len(bytes(buffers[0])) == S * 2 * R * 4
    np.testing.assert_array_equal(decode(content, buffers), v.astype(np.float32))
    # the header is small JSON
    assert len(json.dumps(content)) < 300


def test_only_new_columns_are_sent(widget: HeatmapWidget, clock: Clock) -> None:
    widget.append([0], vals([0]))
    clock.t += 0.2
    widget.append([1], vals([1], seed=1))
    assert [c["steps"] for c, _ in widget.sent] == [[0], [1]]
    assert [c["seq"] for c, _ in widget.sent] == [1, 2]
    np.testing.assert_array_equal(decode(*widget.sent[1]), vals([1], seed=1).astype(np.float32))


def test_rate_limit_keeps_pending_until_interval_or_flush(widget: HeatmapWidget, clock: Clock) -> None:
    widget.append([0], vals([0]))
    assert len(widget.sent) == 1
    clock.t += 0.03
    widget.append([1], vals([1]))
    clock.t += 0.03
    widget.append([2], vals([2]))
    assert len(widget.sent) == 1, "sent again within 0.1 s"
    assert widget.steps == [0, 1, 2]
    clock.t += 0.05  # 0.11 s after the first send
    widget.append([3], vals([3]))
    assert len(widget.sent) == 2
    assert widget.sent[1][0]["steps"] == [1, 2, 3]
    clock.t += 0.01
    widget.append([4], vals([4]))
    assert len(widget.sent) == 2
    widget.flush()
    assert widget.sent[2][0]["steps"] == [4]


def test_at_most_ten_sends_per_second(widget: HeatmapWidget, clock: Clock) -> None:
    for step in range(1000):  # 1000 steps in 1 s
        widget.append([step], vals([step]))
        clock.t += 0.001
    widget.flush()
    appends = [c for c, _ in widget.sent if c["type"] == "append"]
    assert len(appends) <= 11
    assert [s for c in appends for s in c["steps"]] == list(range(1000))


def test_big_batches_are_chunked_below_the_message_limit(widget: HeatmapWidget) -> None:
    widget.series.max_message_bytes = S * R * 4 * 7  # 7 columns per message
    steps = list(range(30))
    v = vals(steps)
    widget.append(steps, v)
    msgs = widget.sent
    assert [len(c["steps"]) for c, _ in msgs] == [7, 7, 7, 7, 2]
    assert [c["seq"] for c, _ in msgs] == [1, 2, 3, 4, 5]
    assert all(len(bytes(b[0])) <= widget.series.max_message_bytes for _, b in msgs)
    got = np.concatenate([decode(c, b) for c, b in msgs], axis=2)
    np.testing.assert_array_equal(got, v.astype(np.float32))


def test_default_message_size_is_well_below_10mb(clock: Clock) -> None:
    rows = [{"name": f"m{i}.weight", "module": f"m{i}", "tensor": "weight"} for i in range(2000)]
    w = HeatmapWidget(rows=rows, stats=STATS)
    sent: list = []
    w.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    w.append(list(range(300)), np.ones((S, 2000, 300), np.float32))
    assert len(sent) > 1
    assert max(len(bytes(b[0])) for _, b in sent) <= 4 * 1024 * 1024


def test_nan_survives_and_shape_is_checked(widget: HeatmapWidget) -> None:
    v = vals([0])
    v[:, 1, 0] = np.nan
    widget.append([0], v)
    got = decode(*widget.sent[0])
    assert np.isnan(got[:, 1, 0]).all()
    with pytest.raises(ValueError, match="shape"):
        widget.append([1, 2], vals([1]))


# ---------------------------------------------------------------- drop
def test_drop_of_sent_columns_sends_a_drop_message(widget: HeatmapWidget, clock: Clock) -> None:
    widget.append([0, 1, 2, 3], vals([0, 1, 2, 3]))
    clock.t += 0.2
    widget.drop([1, 3])
    assert widget.sent[-1][0] == {"type": "drop", "seq": 2, "steps": [1, 3]}
    assert widget.steps == [0, 2]
    np.testing.assert_array_equal(widget.values(), vals([0, 1, 2, 3]).astype(np.float32)[:, :, [0, 2]])


def test_drop_of_pending_columns_never_sends_them(widget: HeatmapWidget, clock: Clock) -> None:
    widget.append([0], vals([0]))
    widget.append([1, 2], vals([1, 2], seed=3))  # pending (rate limit)
    widget.drop([1])
    widget.flush()
    steps_sent = [s for c, _ in widget.sent if c["type"] == "append" for s in c["steps"]]
    assert steps_sent == [0, 2]
    assert not [c for c, _ in widget.sent if c["type"] == "drop"]
    assert widget.steps == [0, 2]


def test_drops_go_before_appends_in_one_send(widget: HeatmapWidget, clock: Clock) -> None:
    widget.append([0, 1], vals([0, 1]))
    widget.drop([0])
    widget.append([2], vals([2]))
    widget.flush()
    assert [c["type"] for c, _ in widget.sent] == ["append", "drop", "append"]
    assert [c["seq"] for c, _ in widget.sent] == [1, 2, 3]


# ---------------------------------------------------------------- snapshot
def snapshot_values(w: HeatmapWidget) -> np.ndarray:
    meta = w.snapshot_meta
    return np.frombuffer(w.snapshot, dtype=np.float32).reshape(meta["shape"]).transpose(0, 2, 1)


def test_snapshot_holds_everything_after_flush(widget: HeatmapWidget, clock: Clock) -> None:
    assert widget.snapshot_meta["seq"] == 0 and widget.snapshot_meta["steps"] == []
    widget.append([0, 1], vals([0, 1]))
    widget.append([2], vals([2]))
    widget.drop([1])
    widget.flush()
    meta = widget.snapshot_meta
    assert meta["seq"] == widget.sent[-1][0]["seq"]
    assert meta["steps"] == [0, 2] and meta["shape"] == [S, 2, R] and not meta["truncated"]
    expect = np.concatenate([vals([0, 1]), vals([2])], axis=2).astype(np.float32)[:, :, [0, 2]]
    np.testing.assert_array_equal(snapshot_values(widget), expect)
    assert isinstance(widget.snapshot, bytes)


def test_snapshot_refreshes_about_once_a_second(widget: HeatmapWidget, clock: Clock) -> None:
    widget.append([0], vals([0]))
    assert widget.snapshot_meta["seq"] == 1  # first send: no snapshot yet -> refreshed
    for step in range(1, 8):
        clock.t += 0.15
        widget.append([step], vals([step]))
    # 1.05 s after the first refresh: refreshed again, not at every send
    assert widget.snapshot_meta["steps"] == list(range(8))
    for step in range(8, 12):
        clock.t += 0.15
        widget.append([step], vals([step]))
    assert widget.snapshot_meta["steps"] == list(range(8)), "refreshed before a second passed"
    widget.flush()
    assert widget.snapshot_meta["steps"] == list(range(12))
    assert widget.snapshot_meta["seq"] == widget.sent[-1][0]["seq"]


def test_snapshot_keeps_the_most_recent_columns_when_too_big(widget: HeatmapWidget) -> None:
    widget.series.max_snapshot_bytes = S * R * 4 * 5
    steps = list(range(12))
    widget.append(steps, vals(steps))
    widget.flush()
    meta = widget.snapshot_meta
    assert meta["truncated"] and meta["total_columns"] == 12 and meta["steps"] == list(range(7, 12))
    np.testing.assert_array_equal(snapshot_values(widget), vals(steps).astype(np.float32)[:, :, 7:])


def test_status_is_rate_limited_and_flushed(widget: HeatmapWidget, clock: Clock) -> None:
    widget.set_status("running… step 1")
    assert widget.status == "running… step 1"
    clock.t += 0.01
    widget.set_status("running… step 2")
    assert widget.status == "running… step 1"
    widget.flush()
    assert widget.status == "running… step 2"


# ---------------------------------------------------------------- text fallback
def test_mimebundle_text_uses_text_fallback(widget: HeatmapWidget) -> None:
    widget.text_fallback = lambda: "conv1.weight  grad norm 0.12\nfc.weight     grad norm 0.5"
    data, _meta = widget._repr_mimebundle_()
    assert data["text/plain"].startswith("conv1.weight  grad norm 0.12")
    assert "application/vnd.jupyter.widget-view+json" in data


def test_mimebundle_default_text_and_broken_fallback(widget: HeatmapWidget, clock: Clock) -> None:
    widget.append([0, 5], vals([0, 5]))
    text = widget._repr_mimebundle_()[0]["text/plain"]
    assert "3 tensors x 2 steps" in text and "conv1.weight" in text and "grad norm" in text
    widget.text_fallback = lambda: 1 / 0
    text = widget._repr_mimebundle_()[0]["text/plain"]
    assert "ZeroDivisionError" in text


def test_missing_bundle_gives_a_readable_widget(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    esm = load_esm("heatmap", static=tmp_path)
    assert "bundle is missing" in esm and "export default" in esm


def test_built_bundle_is_loaded_when_present() -> None:
    static = REPO / "dsnotebook" / "widgets" / "static" / "heatmap.js"
    if not static.exists():
        pytest.skip("bundle not built (npm run build in js/)")
    assert "\n" in HeatmapWidget._esm and "dsn-heatmap" in HeatmapWidget._esm


def test_status_right_after_a_data_flush_is_shown(widget: HeatmapWidget, clock: Clock) -> None:
    """Regression: flush() then set_status('finished') left the status pending forever."""
    widget.set_status("tracing model…")
    clock.t += 5
    widget.append([0], vals([0]))
    widget.flush()
    widget.set_status("finished - 1 step")
    assert widget.status == "finished - 1 step"


def test_display_and_update_display_refresh_the_text(monkeypatch: pytest.MonkeyPatch, widget: HeatmapWidget) -> None:
    import IPython.display

    class Handle:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def update(self, obj: HeatmapWidget) -> None:
            self.texts.append(obj._repr_mimebundle_()[0]["text/plain"])

    handle = Handle()
    calls: list = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=None: calls.append(display_id) or handle)
    assert widget.display() is handle and calls == [True]
    widget.append([0, 1], vals([0, 1]))
    widget.flush()
    widget.update_display()
    assert "3 tensors x 2 steps" in handle.texts[-1]


def test_big_snapshots_refresh_less_often(clock: Clock) -> None:
    rows = [{"name": f"m{i}.weight", "module": f"m{i}", "tensor": "weight"} for i in range(500)]
    w = HeatmapWidget(rows=rows, stats=STATS)
    w.send = lambda content, buffers=None: None  # type: ignore[method-assign]
    refreshes = []
    w.observe(lambda ch: refreshes.append(clock.t), names=["snapshot_meta"])
    for step in range(200):  # 2 MB of columns, then 10 s of steps
        w.append([step], np.ones((S, 500, 1), np.float32))
        clock.t += 0.05
    gaps = np.diff(refreshes)
    assert len(refreshes) >= 2 and gaps.min() >= 1.0 - 1e-9
    assert all(g >= w.series.snapshot_nbytes() / w.series.snapshot_bytes_per_s * 0.5 for g in gaps[-2:])


def test_terminal_ipython_shows_the_text_summary(widget: HeatmapWidget) -> None:
    """What terminal IPython / nbconvert text pick: text/plain through IPython's formatter."""
    from IPython.core.formatters import DisplayFormatter

    widget.text_fallback = lambda: "per-layer gradient summary"
    data, _ = DisplayFormatter().format(widget)
    assert data["text/plain"] == "per-layer gradient summary"


def test_rows_and_stats_keep_their_length(widget: HeatmapWidget) -> None:
    import traitlets

    widget.rows = [dict(r, name=r["name"] + "!") for r in ROWS]  # relabelling is fine
    with pytest.raises(traitlets.TraitError, match="new HeatmapWidget"):
        widget.rows = ROWS[:2]
    with pytest.raises(traitlets.TraitError):
        widget.stats = STATS[:1]


def test_rows_are_plain_json() -> None:
    import torch

    w = HeatmapWidget(rows=[{"name": "fc.weight", "shape": torch.Size([3, np.int64(4)])}])
    assert w.rows == [{"name": "fc.weight", "module": "fc", "tensor": "weight", "shape": [3, 4]}]
    json.dumps(w.rows)
