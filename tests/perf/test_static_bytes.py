"""perf.memory.StaticBytes: the same rows as static_rows, recomputed when what they count changes."""
import torch
from torch import nn

from dsnotebook.perf.memory import StaticBytes, static_rows


def _bytes(rows):
    return {r["kind"]: r["bytes"] for r in rows}


def test_same_numbers_as_static_rows_and_follows_changes():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters())
    cache = StaticBytes(refresh=1000)
    assert _bytes(cache.rows(0, model, [opt])) == _bytes(static_rows(0, model, [opt]))
    assert _bytes(cache.rows(0, model, [opt]))["grads"] == 0
    model(torch.randn(2, 8)).sum().backward()  # gradients appear
    assert _bytes(cache.rows(1, model, [opt])) == _bytes(static_rows(1, model, [opt]))
    opt.step()  # optimizer state appears
    rows = cache.rows(2, model, [opt])
    assert _bytes(rows) == _bytes(static_rows(2, model, [opt])) and _bytes(rows)["optimizer_state"] > 0
    assert {r["step"] for r in rows} == {2}


def test_refreshed_every_so_often():
    model = nn.Linear(4, 4)
    cache = StaticBytes(refresh=2)
    cache.rows(0, model, [])
    with torch.no_grad():
        model.weight.data = torch.zeros(4, 4, dtype=torch.float64)  # same count of tensors, twice the bytes
    cache.rows(1, model, [])
    assert _bytes(cache.rows(2, model, [])) == _bytes(static_rows(2, model, []))
