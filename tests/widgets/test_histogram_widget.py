"""HistogramWidget without a browser: exact counts through float32-only messages, show() replaces
the columns (a new seq supersedes the old state), the dashboard's link to the heatmap's clicked
row, and the bundle. The browser side (count = hi * 2^24 + lo) is tested in
js/src/histogram/counts.test.ts and in tests/browser/test_histogram_browser.py."""
from __future__ import annotations

import numpy as np
import pytest
from ipywidgets.widgets.widget_link import Link

from dsnotebook.views.histograms import bin_rows
from dsnotebook.widgets import HeatmapWidget
from dsnotebook.widgets.dashboard import Dashboard
from dsnotebook.widgets.histogram import SPLIT, HistogramWidget, decode_counts, encode_counts

R = len(bin_rows())


def _widget() -> HistogramWidget:
    w = HistogramWidget(rows=bin_rows())
    w.sent = []  # type: ignore[attr-defined]
    w.send = lambda content, buffers=None: w.sent.append((content, buffers))  # type: ignore[method-assign]
    return w


def _decode_message(content: dict, buffers: list) -> np.ndarray:
    """What the browser computes from one append: counts [steps, rows] as float64."""
    assert content["dtype"] == "float32" and content["layout"] == "stat,col,row"
    planes = np.frombuffer(bytes(buffers[0]), np.float32).reshape(content["shape"]).astype(np.float64)
    return planes[1] * SPLIT + planes[0]  # [col, row]


def test_counts_round_trip_exactly_through_float32_planes() -> None:
    counts = np.array([[0, 1, SPLIT - 1, SPLIT, SPLIT + 1], [2**32 + 5, 2**40 + 3, 2**47 + 1, 7, 2**48 - 1]])
    planes = encode_counts(counts)
    assert planes.dtype == np.float32 and planes.shape == (2, 5, 2)
    np.testing.assert_array_equal(decode_counts(planes), counts)
    assert np.float32(SPLIT + 1) == SPLIT, "float32 alone would lose the count"
    with pytest.raises(ValueError):
        encode_counts(np.array([[2**48]]))
    with pytest.raises(ValueError):
        encode_counts(np.array([[-1]]))
    with pytest.raises(ValueError):
        encode_counts(np.zeros(3))


def test_show_replaces_and_append_adds_exact_columns() -> None:
    w = _widget()
    first = np.zeros((2, R), np.int64)
    first[:, 30] = [SPLIT + 1, 5]
    w.show("a.weight", 2 * SPLIT, [2, SPLIT], [3, 4], first)
    w.flush()
    seq_a = w.series.seq
    assert w.tensor == w.shown == "a.weight" and w.numel == 2 * SPLIT and w.steps == [3, 4]
    appends = [(c, b) for c, b in w.sent if c["type"] == "append"]
    np.testing.assert_array_equal(np.concatenate([_decode_message(c, b) for c, b in appends]), first)
    more = np.zeros((1, R), np.int64)
    more[0, R - 1] = 9  # non-finite row
    w.append_counts([5], more)
    w.flush()
    np.testing.assert_array_equal(w.counts(), np.concatenate([first, more]))
    other = np.ones((1, R), np.int64)
    w.show("b.bias", R, [R], [5], other)
    assert w.series.seq > seq_a and w.snapshot_meta["seq"] >= seq_a  # the reset supersedes what was shown
    assert w.tensor == "b.bias" and w.steps == [5]
    np.testing.assert_array_equal(w.counts(), other)
    with pytest.raises(ValueError):
        w.append_counts([4], other)  # steps only increase


def test_dashboard_shows_the_histogram_of_the_clicked_row() -> None:
    heat = HeatmapWidget(rows=[{"name": "fc.weight"}, {"name": "fc.bias"}])
    hist = HistogramWidget(rows=bin_rows())
    dash = Dashboard(heat, histogram=hist)
    assert dash.children[:2] == (heat, hist)  # always there: it hides itself while nothing is selected
    heat.selected_tensor = "fc.bias"  # what a click on the row sets in the browser
    assert hist.tensor == "fc.bias"
    hist.tensor = ""  # the panel's close button
    assert heat.selected_tensor == ""
    assert any(isinstance(link, Link) for link in dash.links)  # linked in the browser too


def test_the_bundle_is_built() -> None:
    w = HistogramWidget(rows=bin_rows())
    assert "dsn-histogram-missing" not in w._esm and "dsn-histogram" in w._esm
