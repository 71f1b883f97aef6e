"""GPU tests: the CuPy kernels against the torch reference (float64 path) on the same device.

Counts, histograms and abs-max must match exactly; sums and sums of squares to 1e-6
relative (the issue asks 1e-5; the kernels accumulate in fp64, with fp32 partial sums of
eight bf16/fp16 values, < 5e-7).  Results must be bitwise identical run to run.
"""
from __future__ import annotations

import pytest
import torch

from dsnotebook.stats.reference import GRAD_COLS, UPDATE_COLS, TorchStatsBackend

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU: torch.cuda.is_available() is False", allow_module_level=True)
try:
    import cupy  # noqa: F401
except Exception as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"cupy is not importable: {exc}", allow_module_level=True)

from dsnotebook import kernels

if not kernels.is_available():
    pytest.skip("cupy sees no GPU (cupy.cuda.is_available() is False)", allow_module_level=True)

DEV = torch.device("cuda")
REF = TorchStatsBackend()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture()
def backend():
    return kernels.CupyStatsBackend()


def _abs_sums(tensors):
    return torch.stack([t.detach().double().nan_to_num(0.0, 0.0, 0.0).abs().sum() if t.numel()
                        else torch.zeros((), dtype=torch.float64, device=t.device) for t in tensors])


def assert_grad_match(got: torch.Tensor, tensors, rtol: float = 1e-6) -> None:
    ref = REF.grad_stats_exact(tensors)
    assert got.shape == (len(tensors), GRAD_COLS) and got.dtype == torch.float64
    got, ref = got.cpu(), ref.cpu()
    bad = (got[:, 3:] != ref[:, 3:]).any(1).nonzero().flatten().tolist()
    assert not bad, f"counts/hist differ for tensors {bad[:5]}: got {got[bad[0]]} ref {ref[bad[0]]}"
    assert torch.equal(got[:, 2], ref[:, 2]), (got[:, 2], ref[:, 2])
    torch.testing.assert_close(got[:, 1], ref[:, 1], rtol=rtol, atol=0)
    scale = _abs_sums(tensors).cpu()
    assert ((got[:, 0] - ref[:, 0]).abs() <= rtol * scale).all(), (got[:, 0], ref[:, 0])


def _rand(shape, dtype, scale=1.0, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    return (torch.randn(shape, generator=g, device=DEV) * scale).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_sizes(backend, dtype):
    sizes = [1, 3, 8, 100, 4096, 65535, 65536, 65537, 3 * 65536 + 11, 1_000_003]
    ts = [_rand(n, dtype, scale=10.0 ** (i % 7 - 3), seed=i) for i, n in enumerate(sizes)]
    assert_grad_match(backend.grad_stats(ts), ts)


def test_mixed_dtypes_in_one_launch(backend):
    ts = [_rand(70_000 + i, DTYPES[i % 3], seed=i) for i in range(9)]
    assert_grad_match(backend.grad_stats(ts), ts)


def _adversarial(dtype):
    specials = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-30, -1e-30, 1e30, -1e30,
                1e-40, -1e-44, 1e-45, 3.0e38, -3.3e38, 2.0 ** -46, 2.0 ** -47, 2.0 ** 16, 2.0 ** 15.5,
                6e-8, 1e-5, 65504.0, 1.0, -1.0]
    x = torch.tensor(specials, dtype=torch.float32, device=DEV).to(dtype)
    body = _rand(200_001, torch.float32, seed=7)
    body[::97] = float("nan")
    body[5::101] = float("inf")
    body[7::89] = 0.0
    body[11::83] = -0.0
    body[13::79] = 1e-39  # subnormal in fp32 and bf16
    body[17::71] = 1e30
    return [x, body.to(dtype), torch.full((70_000,), float("nan"), device=DEV, dtype=dtype),
            torch.zeros(70_001, device=DEV, dtype=dtype), torch.full((5,), 3.0e38, device=DEV).to(dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial_values(backend, dtype):
    ts = _adversarial(dtype)
    assert_grad_match(backend.grad_stats(ts), ts)


def test_sumsq_does_not_overflow(backend):
    t = torch.full((100_000,), 3.0e38, device=DEV)
    got = backend.grad_stats([t])
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[0, 1].cpu(), torch.tensor(100_000 * 3.0e38 ** 2, dtype=torch.float64),
                               rtol=1e-7, atol=0)


def test_empty_one_element_and_scalar(backend):
    ts = [torch.empty(0, device=DEV), torch.tensor([2.5], device=DEV), torch.tensor(-3.0, device=DEV),
          torch.empty(0, 5, device=DEV, dtype=torch.bfloat16), torch.tensor([float("nan")], device=DEV)]
    got = backend.grad_stats(ts)
    assert_grad_match(got, ts)
    assert (got[0] == 0).all() and (got[3] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_views(backend, dtype):
    base = _rand((1000, 333), dtype, seed=3)
    x4 = _rand((16, 64, 9, 9), dtype, seed=4)
    big7 = _rand((5,) * 7, dtype, seed=5)
    ts = [
        base.flatten()[1:],                        # storage offset 1: misaligned vectors
        base.flatten()[3:200_000],                 # offset 3
        base.t(),                                  # transpose (dense)
        x4.contiguous(memory_format=torch.channels_last),
        base[::3, 1::2],                           # slices with steps
        base[:, 5],                                # column
        base[:, :1].expand(1000, 70),              # stride 0 (each value counted 70 times)
        x4.permute(0, 2, 3, 1)[:, ::2],            # strided, 4 dims
        big7[(slice(0, 4),) * 7],                  # 7 strided dims: staged copy
    ]
    assert_grad_match(backend.grad_stats(ts), ts)


def test_thousands_of_tiny_tensors(backend):
    g = torch.Generator().manual_seed(11)
    sizes = torch.randint(0, 40, (5000,), generator=g).tolist()
    ts = [_rand(n, DTYPES[i % 3], seed=i) for i, n in enumerate(sizes)]
    ts[10][...] = float("nan") if ts[10].numel() else 0
    assert_grad_match(backend.grad_stats(ts), ts)


def _chunked_ref(tensors, step=1 << 28):
    """Reference for huge tensors, slice by slice (the float64 path needs ~8x memory)."""
    rows = []
    for t in tensors:
        flat = t.reshape(-1)
        parts = [REF.grad_stats_exact([flat[i:i + step]]) for i in range(0, flat.numel(), step)]
        p = torch.cat(parts)
        row = p.sum(0)
        row[2] = p[:, 2].max()
        rows.append(row)
        del parts, p
    return torch.stack(rows)


def test_more_than_2_31_elements(backend):
    n_big = 2**31 + 7  # one tensor beyond int32 indexing, bf16 (4.3 GB)
    big = torch.empty(n_big, dtype=torch.bfloat16, device=DEV)
    big.normal_(generator=torch.Generator(device=DEV).manual_seed(1))
    big[123_456_789] = float("nan")
    big[-1] = float("inf")
    big[2**31 - 3:2**31 + 3] = 0.0
    other = _rand(300_000_000, torch.float16, seed=2)
    ts = [big, other, big[1:1 + 1000]]
    got = backend.grad_stats(ts).clone()
    again = backend.grad_stats(ts).clone()
    assert torch.equal(got, again)
    ref = _chunked_ref(ts).cpu()
    got = got.cpu()
    assert torch.equal(got[:, 3:], ref[:, 3:])
    assert torch.equal(got[:, 2], ref[:, 2])
    torch.testing.assert_close(got[:, :2], ref[:, :2], rtol=1e-6, atol=1e-3)
    assert got[0, 5:].sum() + got[0, 3] == n_big
    del big, other, ts
    torch.cuda.empty_cache()


def test_deterministic_run_to_run(backend):
    ts = [_rand(n, DTYPES[i % 3], scale=1e3, seed=i) for i, n in enumerate([5_000_000, 777_777, 65_537, 12])]
    first = backend.grad_stats(ts).clone()
    for _ in range(5):
        assert torch.equal(backend.grad_stats(ts), first)
    other = kernels.CupyStatsBackend()  # fresh plan and buffers
    assert torch.equal(other.grad_stats(ts), first)


def test_plan_cached_and_output_buffer_reused(backend):
    ts = [_rand(1000 + i, torch.float32, seed=i) for i in range(20)]
    a = backend.grad_stats(ts)
    b = backend.grad_stats(ts)
    assert a is b  # documented: the next call overwrites the returned buffer
    for _ in range(3):
        backend.grad_stats(ts)
    assert backend._grad_plans.builds == 1
    out = torch.empty(20, GRAD_COLS, dtype=torch.float64, device=DEV)
    assert backend.grad_stats(ts, out=out) is out
    assert torch.equal(out, a)


def test_side_stream(backend):
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        ts = [_rand(300_000, torch.float32, seed=9), _rand(5, torch.bfloat16, seed=10)]
        got = backend.grad_stats(ts).clone()
    s.synchronize()
    assert_grad_match(got, ts)


def test_unsupported_dtype_falls_back(backend):
    ts = [torch.randn(100, device=DEV, dtype=torch.float64)]
    assert_grad_match(backend.grad_stats(ts), ts, rtol=1e-12)


def _update_case(dtype):
    base = _rand((512, 300), dtype, seed=21)
    return [base, _rand(140_003, dtype, seed=22)[1:],  # misaligned by one element
            _rand((64, 3, 7, 7), dtype, seed=23).contiguous(memory_format=torch.channels_last),
            _rand((300, 200), dtype, seed=24).t()[:, ::2], torch.empty(0, device=DEV, dtype=dtype),
            _rand(1, dtype, seed=25), _rand((4,) * 7, dtype, seed=26)[(slice(0, 3),) * 7]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_stats(backend, dtype):
    ws = _update_case(dtype)
    ws[0][3, 4] = float("nan")
    ref_before = REF.snapshot(ws)
    snap = backend.snapshot(ws)
    g = torch.Generator(device=DEV).manual_seed(5)
    for i, w in enumerate(ws):
        if w.numel() == 0:
            continue
        noise = torch.randn(w.shape, generator=g, device=DEV).to(dtype) * 1e-2
        mask = torch.rand(w.shape, generator=g, device=DEV) < 0.5  # half of the values unchanged
        w.add_(torch.where(mask, noise, torch.zeros_like(noise)))
    ws[1][7] = float("inf")
    got = backend.update_stats(snap, ws).clone()
    ref = REF.update_stats_exact(ref_before, ws)
    assert got.shape == (len(ws), UPDATE_COLS)
    assert torch.equal(got[:, 2].cpu(), ref[:, 2].cpu())
    torch.testing.assert_close(got[:, :2].cpu(), ref[:, :2].cpu(), rtol=1e-7, atol=0)
    # unchanged weights: zero update; only NaN != NaN counts as changed (as in torch)
    snap2 = backend.snapshot(ws)
    again = backend.update_stats(snap2, ws)
    assert (again[:, 0] == 0).all()
    ref2 = REF.update_stats_exact(REF.snapshot(ws), ws)
    assert torch.equal(again[:, 2].cpu(), ref2[:, 2].cpu())
    torch.testing.assert_close(again[:, :2].cpu(), ref2[:, :2].cpu(), rtol=1e-7, atol=0)


def test_update_stats_rejects_changed_tensor_set(backend):
    ws = [_rand(1000, torch.float32, seed=1)]
    snap = backend.snapshot(ws)
    with pytest.raises(ValueError):
        backend.update_stats(snap, [_rand(999, torch.float32, seed=2)])


def test_update_stats_deterministic(backend):
    ws = [_rand(3_000_000, torch.float32, seed=31), _rand(500_001, torch.bfloat16, seed=32)]
    snap = backend.snapshot(ws)
    for w in ws:
        w.mul_(1.001)
    first = backend.update_stats(snap, ws).clone()
    for _ in range(3):
        assert torch.equal(backend.update_stats(snap, ws), first)


def test_pointers_move_between_calls(backend):
    """zero_grad(set_to_none=True) style: new tensors each step, same layout, other data."""
    shapes = [(64, 3, 7, 7), (64,), (1000, 2048), (5,)]
    for step in range(4):
        ts = [_rand(s, torch.float32, scale=10.0 ** step, seed=100 * step + i) for i, s in enumerate(shapes)]
        if step % 2:
            keep = [torch.empty(s, device=DEV) for s in shapes]  # shift the allocator's addresses
        assert_grad_match(backend.grad_stats(ts), ts)
    assert backend._grad_plans.builds == 1  # one layout, several pointer tables
    del keep


LEGACY = "../../tests/kernels/legacy_grad_stats.cu"  # relative to dsnotebook/kernels (the compile directory)


def _fast_path_cases(dtype):
    """Data for the fast path's edges: exponents 78..143, zeros in some warps only, one lane
    with an extreme value, vectors whose fp32 sum of squares falls below 2^-60."""
    g = torch.Generator(device=DEV).manual_seed(17)
    n = 3 * 65536 + 77
    edges = torch.tensor([2.0 ** -49, 2.0 ** -48, 2.0 ** -47.5, 2.0 ** -47, 2.0 ** -46, 2.0 ** -45, 2.0 ** 15,
                          2.0 ** 15.9, 2.0 ** 16, 2.0 ** 17, 1e-40, 0.0, 3e38], device=DEV)
    body = torch.randn(n, generator=g, device=DEV)
    sparse = body.clone()
    sparse[1000:2000:7] = 0.0          # zeros in a few warps: those warps take the general path
    lone = body.clone()
    lone[4321] = float("inf")          # one lane's vector non-finite
    tiny = torch.randn(n, generator=g, device=DEV) * 2.0 ** -40  # fast range, squares < 2^-60
    mixed = torch.where(torch.rand(n, generator=g, device=DEV) < 0.5, body * 2.0 ** -45, body * 2.0 ** 14)
    walk = edges[torch.randint(0, len(edges), (n,), generator=g, device=DEV)] * torch.where(
        torch.rand(n, generator=g, device=DEV) < 0.5, -1.0, 1.0)
    return [t.to(dtype) for t in (body, sparse, lone, tiny, mixed, walk, edges)] + [body.to(dtype)[3:]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_edges_match_reference(backend, dtype):
    ts = _fast_path_cases(dtype)
    assert_grad_match(backend.grad_stats(ts), ts)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_to_previous_kernel(backend, dtype):
    """The fast path changes how bins are counted, not the sums' order: every number equal."""
    legacy = kernels.CupyStatsBackend(_grad_source=LEGACY)
    ts = _fast_path_cases(dtype) + _adversarial(dtype) + [_rand(n, dtype, scale=10.0 ** (n % 7 - 3), seed=n)
                                                          for n in (1, 7, 100, 4096, 65537, 1_000_003)]
    assert torch.equal(backend.grad_stats(ts).clone(), legacy.grad_stats(ts).clone())


@pytest.mark.parametrize("defines", [("-DDSN_FAST=0",), ("-DDSN_FAST=1",), ("-DDSN_VOTE=0",), ("-DDSN_MINB=1",)],
                         ids=["general-only", "no-bf16-pairs", "per-lane", "minblocks"])
def test_kernel_variants_bit_identical(defines):
    be, ref = kernels.CupyStatsBackend(_defines=defines), kernels.CupyStatsBackend()
    for dtype in DTYPES:
        ts = _fast_path_cases(dtype) + _adversarial(dtype)
        assert torch.equal(be.grad_stats(ts).clone(), ref.grad_stats(ts).clone())


def test_new_gradient_objects_each_step_use_light_path(backend):
    shapes = [(64, 3, 7, 7), (64,), (1000, 2048)]
    base = [_rand(s, torch.float32, seed=i) for i, s in enumerate(shapes)]
    for step in range(4):
        ts = [t.detach() for t in base]  # new objects, same storage: set_to_none style
        assert_grad_match(backend.grad_stats(ts), ts)
    assert backend._grad_plans.builds == 1 and backend._grad_plans.hits[1] == 3
