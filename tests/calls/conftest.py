"""Function-tracing tests start from an empty default recorder and leave nothing held."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import dsnotebook
from dsnotebook.calls.device import DEVICE


@pytest.fixture(autouse=True)
def clean_recorder():
    dsnotebook.trace.clear()
    yield
    dsnotebook.trace.enabled = True
    assert dsnotebook.trace.active() == {"module_hooks": 0, "op_modes": 0, "sinks": 0}
    assert torch._C._len_torch_function_stack() == 0
    DEVICE.forced = None
    DEVICE.factory = None
    dsnotebook.trace.clear()
