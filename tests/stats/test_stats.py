"""The torch backend (CPU fast path and exact float64 path) against plain per-tensor math."""
import math

import numpy as np
import pytest
import torch

from dsnotebook.run.fields import derive_grad_fields, derive_update_fields
from dsnotebook.stats.reference import HIST_OFFSET, TorchStatsBackend, hist_bin_edges
from helpers import plain_grad_stats

FIELDS = ("norm", "mean", "std", "absmax", "nonfinite", "zero_frac")


def _check(tensors, out):
    out = out.cpu().numpy()
    derived = derive_grad_fields(out, np.array([t.numel() for t in tensors]))
    for i, t in enumerate(tensors):
        ref = plain_grad_stats(t)
        np.testing.assert_array_equal(out[i, HIST_OFFSET:], ref["hist"], err_msg=f"hist of tensor {i}")
        assert out[i, HIST_OFFSET:].sum() + out[i, 3] == t.numel()
        for k, f in enumerate(FIELDS):
            np.testing.assert_allclose(derived[i, k], ref[f], rtol=1e-5, atol=0, equal_nan=True,
                                       err_msg=f"{f} of tensor {i}")


def _random_set(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shapes = [(16, 1, 3, 3), (16,), (300, 70), (1,), (7, 5, 3), (4096,)]
    scales = [1e-3, 1.0, 1e-6, 3.0, 1e-12, 50.0]
    out = [(torch.randn(s, generator=g) * sc).to(dtype) for s, sc in zip(shapes, scales)]
    out[2][:10] = 0.0  # some exact zeros
    out[2][10, :5] = 1e-40  # subnormals
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fast_path_matches_plain(dtype):
    tensors = _random_set(0, dtype)
    backend = TorchStatsBackend()
    assert backend._host(tensors) is not None  # the fast path is what runs here
    _check(tensors, backend.grad_stats(tensors))
    _check(tensors, backend.grad_stats(tensors))  # buffers reused: same answer


def test_exact_path_on_adversarial_values():
    nan, inf = float("nan"), float("inf")
    tensors = [
        torch.tensor([nan, 1.0, -inf, 0.0, -0.0, 1e-30, 1e30, 2e30]),
        torch.tensor([3e38, -3e38, 1e-45]),  # squares overflow float32
        torch.zeros(0),
        torch.tensor([inf]),
        torch.randn(6, 4).t(),  # non-contiguous
        torch.randn(10)[1:],  # storage offset
    ]
    backend = TorchStatsBackend()
    out = backend.grad_stats(tensors)
    _check(tensors, out)
    assert out[0, 3] == 2 and out[3, 3] == 1
    assert math.isfinite(out[1, 1]) and out[1, 1] > 1e77  # float64 sum of squares


def test_non_finite_falls_back_on_cpu_and_matches():
    tensors = _random_set(1)
    tensors[1][3] = float("nan")
    _check(tensors, TorchStatsBackend().grad_stats(tensors))


def test_update_stats_match_plain():
    backend = TorchStatsBackend()
    weights = _random_set(2)
    before = backend.snapshot(weights)
    old = [w.clone() for w in weights]
    for w in weights:
        w.view(-1)[::3] += 1e-3 * w.view(-1)[::3].sign()
    raw = backend.update_stats(before, weights).numpy()
    derived = derive_update_fields(raw, np.array([w.numel() for w in weights]))
    for i, (w, o) in enumerate(zip(weights, old)):
        ratio = float((w.double() - o.double()).norm() / o.double().norm())
        changed = float((w != o).sum()) / w.numel()
        np.testing.assert_allclose(derived[i], [ratio, changed], rtol=1e-5)


def test_hist_edges_are_powers_of_two():
    edges = hist_bin_edges()
    assert edges[0] == 0 and len(edges) == 64
    assert all(b == 2 * a for a, b in zip(edges[1:], edges[2:]))


def test_fast_path_on_finite_extremes_matches_the_exact_path():
    """Huge (squares beyond float32), subnormal, signed zeros, histogram edges: all on the fast path."""
    vals = [0.0, -0.0, 1e-45, -1e-44, 1e-40, 2.0 ** -46, 2.0 ** -47, 1.5 * 2.0 ** -45, 2.0 ** 15.5, 2.0 ** 16,
            65504.0, 3.0e38, -3.3e38, 1.0, -1.0, 1e-30, 1e30]
    tensors = [torch.tensor(vals), torch.full((33,), 3.0e38), torch.zeros(5), torch.randn(6, 4).t()]
    backend = TorchStatsBackend()
    got, exact = backend.grad_stats(tensors), backend.grad_stats_exact(tensors)
    assert torch.equal(got[:, 2:], exact[:, 2:])  # abs-max, counts and histogram exactly
    torch.testing.assert_close(got, exact, rtol=1e-12, atol=0)
    _check(tensors, got)


def test_tensor_subclasses_take_the_exact_path():
    """DTensor and other subclasses are never copied into the fast path's numpy buffer."""
    class Sub(torch.Tensor):
        pass

    tensors = [torch.randn(5, 3).as_subclass(Sub), torch.randn(4)]
    backend = TorchStatsBackend()
    assert backend._host(tensors) is None and backend._host([torch.randn(4)]) is not None
    _check(tensors, backend.grad_stats(tensors))
