"""dsnotebook.compress: the original is never modified, the table is measured (a constructed slow or
fast layer shows up as such), bad input gets a clear message, the sensitivity finds the fragile layer."""
from __future__ import annotations

import time
import warnings

import pytest
import torch
from torch import nn

import dsnotebook
from compress_models import FAST, ConvNet
from dsnotebook.compress import CompressionWarning, Compressed, Distill, Int8WeightOnly, MagnitudePrune, Method
from dsnotebook.compress.latency import interleaved_latency


def _snapshot(model: nn.Module) -> dict:
    return {"state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
            "training": [m.training for m in model.modules()],
            "grad": [p.requires_grad for p in model.parameters()],
            "ids": [id(p) for p in model.parameters()],
            "modules": [type(m) for m in model.modules()]}


def test_original_untouched_bit_identical(convnet, images):
    convnet.train()
    before = _snapshot(convnet)
    data = [(images, torch.randint(0, 10, (16,)))] * 2
    r = dsnotebook.compress(convnet, ["dynamic_int8", "int8_weight_only", "magnitude_prune", "channel_prune",
                                      "channel_prune+dynamic_int8", Distill(steps=3)], images, data=data,
                            **{**FAST, "sensitivity": True})
    after = _snapshot(convnet)
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]) and v.dtype == after["state"][k].dtype, k
    assert before["training"] == after["training"] and before["grad"] == after["grad"]
    assert before["ids"] == after["ids"] and before["modules"] == after["modules"]
    assert set(r.models) == {"dynamic_int8", "int8_weight_only", "magnitude_prune", "channel_prune",
                             "channel_prune+dynamic_int8", "distill"}
    assert all(m is not convnet for m in r.models.values())


def test_global_rng_state_restored(convnet, images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    dsnotebook.compress(convnet, ["magnitude_prune"], images, **FAST)
    assert torch.equal(torch.rand(3), expected)


def test_table_is_measured(convnet, images):
    r = dsnotebook.compress(convnet, [Int8WeightOnly(backend="reference"), "magnitude_prune"], images,
                            eval_fn=lambda m: float(m(images).sum()), metric="score", **FAST)
    t = r.table
    assert list(t.index) == ["original", "int8_weight_only", "magnitude_prune"]
    for col in ("size_bytes", "latency_b1_ms", "latency_bN_ms", "speedup_b1", "score", "score_delta", "max_abs_dev",
                "params", "warnings", "notes", "backend"):
        assert col in t.columns, col
    import io
    buf = io.BytesIO()
    torch.save(r.models["int8_weight_only"].state_dict(), buf)
    assert t.loc["int8_weight_only", "size_bytes"] == buf.tell()  # the bytes torch.save writes
    assert t.loc["int8_weight_only", "size_ratio"] < 0.4
    with torch.no_grad():
        want = float(r.models["magnitude_prune"](images).sum())
    assert t.loc["magnitude_prune", "score"] == pytest.approx(want)
    assert abs(t.loc["magnitude_prune", "size_ratio"] - 1) < 0.02  # dense storage does not shrink...
    assert t.loc["magnitude_prune", "sparse_bytes"] > 0  # ...and the sparse size is reported beside it
    assert r.batch == 16 and (t["latency_b1_ms"] > 0).all()


class Sleep(nn.Module):
    """Costs ``seconds`` per call whatever the input: a constructed slow layer."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


class AddSleep(Method):
    key = "add_sleep"

    def apply(self, model, ctx, only=None):
        model.head = nn.Sequential(Sleep(0.02), model.head)
        return Compressed(model, "test: a 20 ms sleep before the head")


class RemoveSleep(Method):
    key = "remove_sleep"

    def apply(self, model, ctx, only=None):
        model.slow = nn.Identity()
        return Compressed(model, "test: the sleep removed")


def test_a_constructed_slow_layer_shows_up_as_slow(convnet, images):
    with pytest.warns(CompressionWarning, match="add_sleep: slower than the original at batch 1"):
        r = dsnotebook.compress(convnet, [AddSleep()], images, rounds=3, block_s=0.002, threads=1, sensitivity=False)
    row = r.table.loc["add_sleep"]
    assert row["verdict_b1"] == "slower" and row["verdict_bN"] == "slower"
    assert row["worse"].split(",")[:2] == ["b1", "bN"]
    assert "slower" in row["warnings"]


class SlowNet(ConvNet):
    def __init__(self) -> None:
        super().__init__()
        self.slow = Sleep(0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.slow(x))


def test_removing_a_slow_layer_shows_up_as_faster(images):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompressionWarning)  # nothing got worse
        r = dsnotebook.compress(SlowNet(), [RemoveSleep()], images, rounds=3, block_s=0.002, threads=1, sensitivity=False)
    assert r.table.loc["remove_sleep", "verdict_b1"] == "faster"
    assert r.table.loc["remove_sleep", "verdict_bN"] == "faster"


def test_latency_harness_interleaves_and_rotates():
    calls: list[str] = []

    def fn(name: str):
        return lambda x: calls.append(name)

    t = interleaved_latency({"a": fn("a"), "b": fn("b"), "c": fn("c")}, (None,), rounds=4, block_s=0.0, warmup=0, max_calls=1)
    assert set(t) == {"a", "b", "c"} and t["a"].verdict == "baseline"
    timed = calls[-12:]  # 4 rounds x 3 models x 1 call: every model in every round, the order changing
    rounds = [timed[i:i + 3] for i in range(0, 12, 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1


def test_model_without_linear_or_conv_is_refused(images):
    with pytest.raises(ValueError, match="has no Linear or Conv layer.*nothing to compress"):
        dsnotebook.compress(nn.Sequential(nn.ReLU(), nn.Dropout()), ["dynamic_int8"], images)


def test_eval_fn_that_raises_names_the_problem(convnet, images):
    def broken(model):
        raise ZeroDivisionError("no test data")

    with pytest.raises(RuntimeError, match="eval_fn raised on the original model: ZeroDivisionError: no test data"):
        dsnotebook.compress(convnet, ["magnitude_prune"], images, eval_fn=broken, **FAST)
    with pytest.raises(TypeError, match="eval_fn must return a number"):
        dsnotebook.compress(convnet, ["magnitude_prune"], images, eval_fn=lambda m: "good", **FAST)


def test_eval_fn_failing_on_one_compressed_model_marks_its_row(convnet, images):
    def picky(model):
        if isinstance(model.head[1], nn.Linear) and model.head[1].in_features != 256:
            raise ValueError("unexpected width")
        return 1.0

    with pytest.warns(CompressionWarning, match="channel_prune: error: RuntimeError: eval_fn raised on the channel_prune"):
        r = dsnotebook.compress(convnet, ["magnitude_prune", "channel_prune"], images, eval_fn=picky, **FAST)
    assert r.table.loc["magnitude_prune", "status"] == "ok"
    assert r.table.loc["channel_prune", "status"].startswith("error: RuntimeError: eval_fn raised")
    assert "channel_prune" not in r.models
    with pytest.raises(RuntimeError, match="unexpected width"):
        dsnotebook.compress(convnet, ["channel_prune"], images, eval_fn=picky, errors="raise", **FAST)


def test_other_bad_input(convnet, images):
    with pytest.raises(ValueError, match="unknown compression method 'quantise'.*known: channel_prune"):
        dsnotebook.compress(convnet, ["quantise"], images)
    with pytest.raises(ValueError, match="distill train.*pass data="):
        dsnotebook.compress(convnet, ["distill"], images)
    with pytest.raises(TypeError, match="example_inputs must be a tensor"):
        dsnotebook.compress(convnet, ["magnitude_prune"], "images")
    with pytest.raises(ValueError, match=r"model\(\*example_inputs\) raised RuntimeError"):
        dsnotebook.compress(convnet, ["magnitude_prune"], torch.randn(2, 3), **FAST)
    with pytest.raises(TypeError, match="needs a torch.nn.Module"):
        dsnotebook.compress(lambda x: x, ["magnitude_prune"], images)
    with pytest.raises(ValueError, match="two methods named magnitude_prune"):
        dsnotebook.compress(convnet, ["magnitude_prune", MagnitudePrune()], images)


def test_not_applicable_method_is_skipped_without_warning(images):
    convs_only = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompressionWarning)
        r = dsnotebook.compress(convs_only, ["dynamic_int8", "magnitude_prune"], images, **FAST)
    assert r.table.loc["dynamic_int8", "status"].startswith("skipped: no Linear layer to quantize")
    assert "magnitude_prune" in r.models


class Fragile(nn.Module):
    """``robust``: half its weights are tiny (pruning half costs nothing); ``fragile``: all weights equal
    in size (pruning half changes the output a lot)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.robust = nn.Linear(16, 16)
        self.fragile = nn.Linear(16, 4)
        with torch.no_grad():
            w = torch.randn(16, 16, generator=g)
            w[:, ::2] *= 1e-4
            self.robust.weight.copy_(w)
            self.fragile.weight.copy_(torch.sign(torch.randn(4, 16, generator=g)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fragile(torch.relu(self.robust(x)))


def test_sensitivity_finds_the_fragile_layer():
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(2))
    model = Fragile()
    target = model(x).argmax(1)

    def agree(m):
        return float((m(x).argmax(1) == target).float().mean())

    r = dsnotebook.compress(model, ["magnitude_prune"], x, eval_fn=agree, metric="top1", rounds=1, block_s=0.001)
    s = r.sensitivity.set_index("layer")
    assert list(s.index) == ["robust", "fragile"]
    assert s.loc["robust", "max_abs_dev"] < 0.01 * s.loc["fragile", "max_abs_dev"]
    assert s.loc["fragile", "metric_delta"] < s.loc["robust", "metric_delta"] == 0


def test_best_and_choose(convnet, images):
    seen = []
    r = dsnotebook.compress(convnet, ["int8_weight_only", "channel_prune"], images,
                            eval_fn=lambda m: 1.0 if m.head[3].in_features == 32 else 0.5, **FAST)
    r.on_choose.append(lambda name, model: seen.append(name))
    assert r.best(max_drop=0.01) == "int8_weight_only"  # channel_prune is smaller but lost too much
    assert r.best(max_drop=0.6) == "channel_prune"
    model = r.choose("channel_prune")
    assert model is r.models["channel_prune"] and r.chosen_model is model and seen == ["channel_prune"]
    with pytest.raises(KeyError, match="no compressed model 'original'"):
        r.choose("original")
    text = str(r)
    assert "channel_prune" in text and "warnings:" in text and "chosen: channel_prune" in text
