"""The one JSON converter: whatever a record holds becomes plain JSON that browsers and files accept."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dsnotebook.core.jsonsafe import to_json


def test_numpy_torch_tuples_and_non_finite_become_plain_json():
    record = {"median": np.float64(1.5), "count": np.int64(3), "flag": np.bool_(True), "nan": float("nan"),
              "inf": np.float32(np.inf), "pair": (1, -math.inf), "hist": np.array([[1, np.nan], [2, 3]]),
              "dtype": torch.float32, "scalar": torch.tensor(2.5), "vec": torch.tensor([1.0, float("nan")]),
              "shape": torch.Size([2, 3]), 7: np.float32(0.25), "name": np.str_("fc1"), "ids": {3, 1},
              "nested": [{"x": np.uint8(4)}]}
    out = to_json(record)
    text = json.dumps(out, allow_nan=False)  # strict JSON: no NaN/Infinity tokens
    assert json.loads(text) == out == {
        "median": 1.5, "count": 3, "flag": True, "nan": None, "inf": None, "pair": [1, None],
        "hist": [[1.0, None], [2.0, 3.0]], "dtype": "torch.float32", "scalar": 2.5, "vec": [1.0, None],
        "shape": [2, 3], "7": 0.25, "name": "fc1", "ids": [1, 3], "nested": [{"x": 4}]}
    assert type(out["count"]) is int and type(out["median"]) is float and type(out["name"]) is str


def test_plain_values_pass_unchanged():
    for v in (None, True, 0, -3, 2.5, "text", [], {}):
        assert to_json(v) == v and type(to_json(v)) is type(v)


def test_widgets_and_advisor_share_it():
    pytest.importorskip("anywidget")
    import dsnotebook.advisor.suggestion as suggestion
    import dsnotebook.widgets.suggestions as widget

    assert suggestion.to_json is to_json and widget.to_json is to_json
