"""The one series protocol both live panels (heatmap, graph) use: what the channel accepts,
what a reset sends, and that both widgets share it and the bundle loader."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

from dsnotebook.widgets import GraphWidget, HeatmapWidget
from dsnotebook.widgets.esm import load_esm
from dsnotebook.widgets.series import SeriesChannel, SeriesWidget


class _Sent(list):
    def __call__(self, content, buffers=None):
        self.append((content, buffers))


def _graph(ids: list[str]) -> dict:
    return {"nodes": [{"id": i, "kind": "module", "label": i, "name": i, "type": "Linear"} for i in ids], "edges": []}


def test_both_live_panels_use_the_one_channel() -> None:
    for w in (HeatmapWidget(rows=[{"name": "fc.weight"}]), GraphWidget(_graph(["fc#0"]))):
        assert isinstance(w, SeriesWidget) and isinstance(w.series, SeriesChannel)
        assert w.snapshot_meta["dtype"] == "float32" and w.snapshot_meta["layout"] == "stat,col,row"


@pytest.mark.parametrize("make", [lambda: HeatmapWidget(rows=[{"name": "a.w"}, {"name": "b.w"}]),
                                  lambda: GraphWidget(_graph(["a#0", "b#0"]))])
def test_steps_must_increase(make) -> None:
    """The browser bisects the steps: a column out of order would be misplaced there."""
    w = make()
    w.send = _Sent()
    n = len(w.stats)
    w.append([3, 5], np.zeros((n, 2, 2)))
    with pytest.raises(ValueError, match="steps must increase"):
        w.append([4], np.zeros((n, 2, 1)))
    with pytest.raises(ValueError, match="steps must increase"):
        w.append([7, 7], np.zeros((n, 2, 2)))
    assert w.steps == [3, 5]


def test_float64_goes_out_as_float32() -> None:
    w = GraphWidget(_graph(["a#0"]), stats=[{"key": "x"}])
    w.send = sent = _Sent()
    w.append([0], np.array([[[1 / 3]]], dtype=np.float64))
    head, bufs = sent[0]
    assert head["dtype"] == "float32" and len(bytes(bufs[0])) == 4
    assert np.frombuffer(bytes(bufs[0]), np.float32)[0] == np.float32(1 / 3)


def test_a_new_graph_with_the_same_rows_still_clears_the_browser() -> None:
    """Regression: a reset kept the seq, so a browser already at that seq ignored the empty
    snapshot (rows unchanged: no forced rebuild) and kept showing the old graph's columns."""
    w = GraphWidget(_graph(["a#0", "b#0"]), stats=[{"key": "x"}])
    w.send = sent = _Sent()
    w.append([0, 1], np.ones((1, 2, 2)))
    w.flush()
    seen = w.snapshot_meta["seq"]
    assert seen == sent[-1][0]["seq"]
    w.set_graph(_graph(["a#0", "b#0"]))
    meta = w.snapshot_meta
    assert meta["steps"] == [] and meta["seq"] > seen
    assert w.steps == [] and w.values().shape == (1, 2, 0)
    w.append([0], np.zeros((1, 2, 1)))  # steps start again after a reset
    assert sent[-1][0]["seq"] == meta["seq"] + 1


def test_a_column_too_big_for_one_message_is_refused() -> None:
    with pytest.raises(ValueError, match="one column must fit in one message"):
        GraphWidget(_graph([f"m{i}#0" for i in range(300_000)]), stats=[{"key": f"s{i}"} for i in range(7)])


def test_values_are_a_copy() -> None:
    w = HeatmapWidget(rows=[{"name": "fc.weight"}], stats=[{"key": "x"}])
    w.send = _Sent()
    w.append([0], np.ones((1, 1, 1)))
    w.values()[0, 0, 0] = 7
    assert w.values()[0, 0, 0] == 1


@pytest.mark.parametrize("name", ["heatmap", "graph", "perf", "suggestions"])
def test_missing_bundle_gives_a_readable_panel(name: str, tmp_path: pathlib.Path) -> None:
    esm = load_esm(name, static=tmp_path)
    assert f"the {name} panel's JavaScript bundle is missing" in esm and "export default" in esm
    assert "\n" in esm  # anywidget would read a one-line string with a dot as a path
