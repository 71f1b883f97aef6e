"""The compression panel's Python side: strict-JSON state, the choose button's round trip, the text fallback."""
from __future__ import annotations

import json

import pytest
import torch

import dsnotebook
from compress_models import FAST, ConvNet
from dsnotebook.views.compress_view import compression_widget, panel_state
from dsnotebook.widgets.compress import CompressionWidget


@pytest.fixture(scope="module")
def result():
    torch.manual_seed(0)
    images = torch.randn(16, 1, 8, 8)
    return dsnotebook.compress(ConvNet(), ["magnitude_prune", "channel_prune", "dynamic_int8"], images,
                               eval_fn=lambda m: float(m(images)[:, 0].mean()), metric="score", tolerance=1e9,
                               **{**FAST, "sensitivity": True})


def test_panel_state_is_strict_json(result):
    s = panel_state(result)
    json.dumps(s, allow_nan=False)  # NaN (e.g. sparse_bytes of most rows) became null
    assert [r["method"] for r in s["rows"]] == ["original", "magnitude_prune", "channel_prune", "dynamic_int8"]
    assert s["rows"][0]["sparse_bytes"] is None and s["rows"][1]["sparse_bytes"] > 0
    assert s["metric_name"] == "score" and s["has_metric"] and s["batch"] == 16
    assert {r["method"] for r in s["sensitivity"]} == {"magnitude_prune", "channel_prune", "dynamic_int8"}
    assert all(isinstance(r["warnings"], list) and isinstance(r["worse"], list) for r in s["rows"])
    assert any("stored densely" in n for n in s["rows"][1]["notes"])


def test_choose_button_hands_the_model_back(result):
    seen = []
    w = result.widget(on_choose=lambda name, model: seen.append((name, model)))  # through the front door
    assert isinstance(w, CompressionWidget)
    w.chosen = "channel_prune"  # what the browser's button does (tests/browser clicks it for real)
    assert result.chosen == "channel_prune" and result.chosen_model is result.models["channel_prune"]
    assert seen == [("channel_prune", result.models["channel_prune"])]
    assert "chosen: channel_prune" in w.status
    w.chosen = "original"  # not a compressed model: nothing handed back, the panel says why
    assert result.chosen == "channel_prune" and "no compressed model 'original'" in w.status


def test_text_fallback_outside_a_browser(result):
    w = compression_widget(result)
    bundle = w._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    text = data["text/plain"]
    assert text.splitlines()[1].split()[:3] == ["method", "size", "x"]
    assert "magnitude_prune: dense storage keeps the zeros" in text
    assert "application/vnd.jupyter.widget-view+json" in data
