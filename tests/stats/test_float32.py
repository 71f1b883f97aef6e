"""The float32 path (devices without float64, e.g. Apple MPS), forced on this CPU and checked
against the float64 path on the adversarial inputs of tests/stats and tests/kernels.

Contract: histograms, non-finite and zero counts and abs-max identical; norms within 1e-5
relative (measured: ~1e-14, so the compensation is pinned at 1e-10); means within 1e-12 of
the tensor's mean |x| (values more than 2^149 below a tensor's largest one fall out of
float32's range); update ratios within 1e-5, changed counts identical.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dsnotebook import ModelTracer
from dsnotebook.kernels import choice
from dsnotebook.run.fields import derive_update_fields
from dsnotebook.stats import reference
from dsnotebook.stats.reference import COL_ABSMAX, COL_SUM, COL_SUMSQ, TorchStatsBackend
from helpers import tiny_cnn

F32 = TorchStatsBackend(float32=True)
REF = TorchStatsBackend()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NAN, INF = float("nan"), float("inf")


def assert_matches_float64(tensors, got=None):
    got = F32.grad_stats(tensors) if got is None else got
    ref = REF.grad_stats_exact(tensors).cpu()
    assert got.device.type == "cpu" and got.dtype == torch.float64 and got.shape == ref.shape
    bad = (got[:, COL_ABSMAX:] != ref[:, COL_ABSMAX:]).any(1).nonzero().flatten().tolist()
    assert not bad, f"abs-max/counts/hist differ for tensors {bad}: {got[bad[0]]} vs {ref[bad[0]]}"
    torch.testing.assert_close(got[:, COL_SUMSQ], ref[:, COL_SUMSQ], rtol=1e-10, atol=0)
    abs_sum = torch.stack([t.detach().cpu().double().nan_to_num(0.0, 0.0, 0.0).abs().sum() for t in tensors])
    assert ((got[:, COL_SUM] - ref[:, COL_SUM]).abs() <= 1e-12 * abs_sum).all(), (got[:, COL_SUM], ref[:, COL_SUM])
    return got, ref


def _random_set(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    shapes = [(16, 1, 3, 3), (16,), (300, 70), (1,), (7, 5, 3), (4096,)]
    scales = [1e-3, 1.0, 1e-6, 3.0, 1e-12, 50.0]
    out = [(torch.randn(s, generator=g) * sc).to(dtype) for s, sc in zip(shapes, scales)]
    out[2][:10] = 0.0
    out[2][10, :5] = 1e-40  # subnormal in float32 (zero in fp16)
    return out


def _adversarial(dtype):
    """The kernels' adversarial set, smaller: specials, a body sprinkled with them, all-NaN, all-zero, huge."""
    specials = [0.0, -0.0, NAN, INF, -INF, 1e-30, -1e-30, 1e30, -1e30, 1e-40, -1e-44, 1e-45, 3.0e38, -3.3e38,
                2.0 ** -46, 2.0 ** -47, 2.0 ** 16, 2.0 ** 15.5, 6e-8, 1e-5, 65504.0, 1.0, -1.0]
    g = torch.Generator().manual_seed(7)
    body = torch.randn(20_001, generator=g)
    body[::97], body[5::101], body[7::89], body[11::83] = NAN, INF, 0.0, -0.0
    body[13::79], body[17::71] = 1e-39, 1e30
    return [torch.tensor(specials).to(dtype), body.to(dtype), torch.full((7_000,), NAN).to(dtype),
            torch.zeros(7_001, dtype=dtype), torch.full((5,), 3.0e38).to(dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_sets(dtype):
    assert_matches_float64(_random_set(0, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial_values(dtype):
    assert_matches_float64(_adversarial(dtype))


def test_exact_path_adversarial_set():
    tensors = [torch.tensor([NAN, 1.0, -INF, 0.0, -0.0, 1e-30, 1e30, 2e30]),
               torch.tensor([3e38, -3e38, 1e-45]),  # squares far beyond float32
               torch.zeros(0), torch.tensor([INF]), torch.randn(6, 4).t(), torch.randn(10)[1:],
               torch.tensor(2.5), torch.empty(0, 5, dtype=torch.bfloat16), torch.tensor([-3.0])]
    got, _ = assert_matches_float64(tensors)
    assert got[1, COL_SUMSQ] > 1e77 and (got[2] == 0).all()


def test_sum_of_an_offset_tensor_keeps_its_spread():
    """std comes from sums: with |mean| = 1000 std, float32 squares (rounded, not split) would
    put std off by ~1e-4; the exact squares keep it within 1e-6."""
    g = torch.Generator().manual_seed(3)
    t = [torch.randn(50_000, generator=g) * 0.1 + 100.0]
    got, ref = assert_matches_float64(t)
    var = lambda r: (r[0, COL_SUMSQ] - r[0, COL_SUM] ** 2 / 50_000) / 49_999  # noqa: E731
    assert abs(float(var(got) / var(ref)) - 1) < 1e-6


def test_views_sizes_and_mixed_dtypes_in_one_call():
    base = torch.randn(300, 333)
    tensors = [base.flatten()[1:], base.t(), base[::3, 1::2], torch.randn(2, 3, 4, 5).permute(3, 1, 0, 2),
               torch.randn(64, 65).half(), torch.randn(8191).bfloat16(), torch.randn(1), torch.randn(4097)]
    assert_matches_float64(tensors)


def test_chunk_width_follows_the_sizes():
    many_small = reference.float32_path.Layout([64] * 500, torch.device("cpu"))
    one_big = reference.float32_path.Layout([10_000_000], torch.device("cpu"))
    assert many_small.width == 64 and one_big.width == 4096
    assert one_big.rows == -(-10_000_000 // 4096) and int(many_small.pads.sum()) == 0


def test_deterministic_and_no_float64_on_the_device():
    """Nothing the path runs on the device creates a float64 tensor, or uses an op MPS lacks or serialises."""
    tensors = _adversarial(torch.float32) + _random_set(1, torch.bfloat16)

    class Watch(TorchDispatchMode):
        ops: set = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            Watch.ops.add(str(func.overloadpacket))
            if func is torch.ops.aten.lift_fresh.default:  # torch.from_numpy: the host result
                return out
            for t in out if isinstance(out, (list, tuple)) else [out]:
                if isinstance(t, torch.Tensor):
                    assert t.dtype != torch.float64, f"{func} made a float64 tensor"
            return out

    with Watch():
        a = F32.grad_stats(tensors)
        before = F32.snapshot(tensors)
        u = F32.update_stats(before, tensors)
    assert not {"aten.segment_reduce", "aten.bincount", "aten._segment_reduce_backward"} & Watch.ops
    assert torch.equal(a, F32.grad_stats(tensors)) and torch.equal(u, F32.update_stats(before, tensors))


def _weights(dtype):
    g = torch.Generator().manual_seed(5)
    ws = [torch.randn(1000, generator=g), torch.randn(50, 20, generator=g), torch.randn(7, generator=g) * 1e-30,
          torch.tensor([3e38, -3e38, NAN, 1.0, INF, 0.0, 1e-40]), torch.zeros(0), torch.zeros(5)]
    return [w.to(dtype) for w in ws]


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_stats_match_float64(dtype):
    weights = _weights(dtype)
    snap32, snap64 = F32.snapshot(weights), REF.snapshot(weights)
    for w in weights:
        w.view(-1)[::3] += 1e-3 * w.view(-1)[::3].sign() + 1e-3  # NaN stays NaN, 3e38 does not move
    weights[3][2] = 2.0  # NaN -> finite: changed, excluded from the sums
    got, ref = F32.update_stats(snap32, weights), REF.update_stats_exact(snap64, weights)
    assert got.device.type == "cpu" and got.dtype == torch.float64
    assert torch.equal(got[:, 2], ref[:, 2])
    torch.testing.assert_close(got[:, :2], ref[:, :2], rtol=1e-6, atol=0)
    numel = np.array([w.numel() for w in weights])
    np.testing.assert_allclose(derive_update_fields(got.numpy(), numel), derive_update_fields(ref.numpy(), numel),
                               rtol=1e-5)


def test_float64_tensors_and_empty_calls_take_the_exact_path():
    t = [torch.randn(10, dtype=torch.float64)]
    assert torch.equal(F32.grad_stats(t), REF.grad_stats_exact(t))
    assert F32.grad_stats([]).shape == (0, reference.GRAD_COLS)


def test_devices_without_float64_take_the_float32_path(monkeypatch):
    """``TorchStatsBackend()`` asks the device; a device without float64 gets the float32 path."""
    monkeypatch.setattr(reference, "has_float64", lambda device: False)
    auto = TorchStatsBackend()
    tensors = _random_set(2, torch.float32)
    assert isinstance(auto.snapshot(tensors), reference.float32_path.Snapshot)
    assert torch.equal(auto.grad_stats(tensors), F32.grad_stats(tensors))


def _train(model, steps=4, seed=0):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    with ModelTracer(model, opt) as tracer:
        for _ in range(steps):
            x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return tracer


def test_a_traced_run_on_a_device_without_float64_records_the_same_numbers(monkeypatch):
    torch.manual_seed(0)
    model = tiny_cnn()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = _train(model)
    model.load_state_dict(state)
    monkeypatch.setattr(choice, "has_float64", lambda device: False)  # the device probe the tracer's choice asks
    simulated = _train(model)
    assert plain.run.meta["backends"] == {"cpu": "torch"} and simulated.run.meta["backends"] == {"cpu": "torch-float32"}
    for table, exact in (("grads", ["nonfinite", "zero_frac", "absmax"]), ("updates", ["changed_frac"])):
        a, b = plain.to_dataframe(table), simulated.to_dataframe(table)
        assert len(a) == len(b) > 0
        for col in exact:
            np.testing.assert_array_equal(a[col], b[col])
        for col in [c for c in ("norm", "mean", "std", "update_ratio") if c in a]:
            np.testing.assert_allclose(a[col], b[col], rtol=1e-5, atol=1e-12)
    ha, hb = plain.to_dataframe("hist"), simulated.to_dataframe("hist")
    assert ha.equals(hb)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_on_a_real_gpu(dtype):
    """The same ops on a GPU's own kernels (CUDA/ROCm here; what MPS runs is untested without a Mac)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    tensors = [t.cuda() for t in _adversarial(dtype) + _random_set(0, dtype)]
    assert_matches_float64(tensors)
    weights = [w.cuda() for w in _weights(dtype)]
    snap32, snap64 = F32.snapshot(weights), REF.snapshot(weights)
    for w in weights:
        w.view(-1)[::3] += 1e-3
    got, ref = F32.update_stats(snap32, weights), REF.update_stats_exact(snap64, weights).cpu()
    assert torch.equal(got[:, 2], ref[:, 2])
    torch.testing.assert_close(got[:, :2], ref[:, :2], rtol=1e-6, atol=0)
