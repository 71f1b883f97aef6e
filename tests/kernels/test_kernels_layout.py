"""CPU tests of the kernels' host side: the table and block map, checked by emulating
in numpy exactly what each CUDA block reads (raw memory through the table's pointers,
dense in memory order or strided through collapsed sizes/strides) and the kernels'
bit-level histogram formula, against the torch reference.  No GPU, no cupy needed."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from dsnotebook.kernels import layout as L
from dsnotebook.kernels.plans import PlanCache
from dsnotebook.stats.reference import GRAD_COLS, TorchStatsBackend


def _raw(addr: int, nbytes: int) -> np.ndarray:
    if nbytes == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(addr)).copy()


def _to_f32(raw: np.ndarray, dt: int) -> np.ndarray:
    if dt == L.DT_F32:
        return raw.view(np.float32)
    if dt == L.DT_F16:
        return raw.view(np.float16).astype(np.float32)
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _offsets(row: np.ndarray, idx: np.ndarray) -> np.ndarray:
    nd = int(row[L.M_NDIM])
    off = np.zeros_like(idx)
    i = idx.copy()
    for d in range(nd - 1, 0, -1):
        q, r = np.divmod(i, row[L.M_SIZES + d])
        off += r * row[L.M_STRIDES + d]
        i = q
    return off + i * row[L.M_STRIDES]


def _block_values(row: np.ndarray, chunk_idx: int, chunk: int) -> np.ndarray:
    numel, dt = int(row[L.M_NUMEL]), int(row[L.M_DTYPE])
    es = L.ELEMENT_SIZE[dt]
    start = chunk_idx * chunk
    n = max(0, min(chunk, numel - start))
    if row[L.M_MODE] == L.MODE_DENSE:
        return _to_f32(_raw(int(row[L.M_PTR]) + start * es, n * es), dt)
    offs = _offsets(row, np.arange(start, start + n, dtype=np.int64))
    span = _to_f32(_raw(int(row[L.M_PTR]), (int(offs.max()) + 1) * es if n else 0), dt)
    return span[offs]


def _kernel_bins(v: np.ndarray) -> np.ndarray:
    a = (v.view(np.uint32).astype(np.int64) << 1) & 0xFFFFFFFF
    e = a >> 24
    lo = np.minimum(a, 1)
    return np.minimum(np.maximum(e + (1 + 46 - 127), lo), 63)


def emulate_grad_stats(arr: L.PlanArrays, chunk: int) -> np.ndarray:
    """What dsn_grad_stats computes, block by block, then the last-block reduction."""
    n = arr.meta.shape[0]
    part = np.zeros((arr.nblocks, 4 + 64))
    for b, (t, c) in enumerate(arr.bmap):
        x = _block_values(arr.meta[t], int(c), chunk)
        fin = np.isfinite(x)
        v = np.where(fin, x, np.float32(0))
        hist = np.bincount(_kernel_bins(v), minlength=64)
        part[b, :4] = [v.astype(np.float64).sum(), (v.astype(np.float64) ** 2).sum(),
                       np.abs(v).max(initial=0.0), (~fin).sum()]
        part[b, 4:] = hist
    out = np.zeros((n, GRAD_COLS))
    for t in range(n):
        first, nblk = arr.meta[t, L.M_FIRST], arr.meta[t, L.M_NBLK]
        rows = part[first:first + nblk]
        assert (arr.bmap[first:first + nblk, 0] == t).all()
        assert (arr.bmap[first:first + nblk, 1] == np.arange(nblk)).all()
        nf = rows[:, 3].sum()
        hist = rows[:, 4:].sum(0)
        hist[0] -= nf
        out[t, :5] = [rows[:, 0].sum(), rows[:, 1].sum(), rows[:, 2].max(), nf, hist[0]]
        out[t, 5:] = hist
    return out


def _views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40, 33, generator=g)
    x4 = torch.randn(3, 8, 5, 7, generator=g)
    special = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-30, -1e30,
                            1e-45, 3e38, 1.5, -2.0**-46, 2.0**16, 2.0**-47])
    return [
        base,                                          # contiguous, several chunks
        base.t(),                                      # dense, transposed
        x4.contiguous(memory_format=torch.channels_last),
        base[::3, 1::2],                               # strided
        base.flatten()[1:],                            # storage offset 1 (misaligned)
        base[:, :1].expand(40, 9),                     # stride 0
        torch.empty(0),                                # empty
        torch.tensor([2.5]),                           # one element
        torch.tensor(-3.0),                            # 0-dim
        special,
        (torch.randn(300, generator=g) * 1e3).to(torch.float16)[1:],
        torch.randn(17, 19, generator=g).to(torch.bfloat16).t()[::2],
        torch.randn((4,) * 7, generator=g)[(slice(0, 3),) * 7],  # 7 unmergeable strided dims
    ]


def test_block_map_and_emulated_kernel_match_reference():
    chunk = 64  # small chunks: many blocks per tensor, exercising the partial reduction
    views = [v for v in _views() if not L.needs_staging(L.TensorSpec.of(v))]
    staged = [v for v in _views() if L.needs_staging(L.TensorSpec.of(v))]
    assert len(staged) == 1 and staged[0].dim() == 7
    arr = L.build_plan([L.TensorSpec.of(v) for v in views], chunk=chunk)
    got = emulate_grad_stats(arr, chunk)
    ref = TorchStatsBackend().grad_stats_exact(views).numpy()
    np.testing.assert_array_equal(got[:, 3:], ref[:, 3:])  # counts and histogram: exact
    np.testing.assert_array_equal(got[:, 2], ref[:, 2])
    np.testing.assert_allclose(got[:, :2], ref[:, :2], rtol=1e-12, atol=0)
    modes = arr.meta[:, L.M_MODE]
    assert modes[1] == L.MODE_DENSE and modes[2] == L.MODE_DENSE and modes[3] == L.MODE_STRIDED


def test_snapshot_regions_keep_alignment_and_do_not_overlap():
    views = [v for v in _views() if not L.needs_staging(L.TensorSpec.of(v))]
    arr = L.build_plan([L.TensorSpec.of(v) for v in views])
    end = 0
    for row, v in zip(arr.meta, views):
        off = int(row[L.M_SNAP])
        assert off >= end
        if row[L.M_MODE] == L.MODE_DENSE:
            assert off % 16 == int(row[L.M_PTR]) % 16
        end = off + v.numel() * v.element_size()
    assert arr.snap_bytes >= end


def test_collapse_and_density():
    assert L.collapse((4, 1, 5), (5, 7, 1)) == ([20], [1])
    assert L.collapse((4, 5), (10, 2)) == ([20], [2])  # every other element
    assert L.collapse((4, 5), (10, 3)) == ([4, 5], [10, 3])
    assert L.is_dense((2, 3, 4), (1, 8, 2))
    assert not L.is_dense((2, 3), (4, 1))
    assert not L.is_dense((2, 3), (0, 1))
    assert L.needs_staging(L.TensorSpec(ptr=2, shape=(3,), strides=(1,), dtype_code=L.DT_F32))
    assert not L.needs_staging(L.TensorSpec(ptr=2, shape=(3,), strides=(1,), dtype_code=L.DT_BF16))


def test_many_blocks_map_is_dense_and_ordered():
    specs = [L.TensorSpec(ptr=1024 * i, shape=(n,), strides=(1,), dtype_code=L.DT_BF16)
             for i, n in enumerate([0, 1, L.MAX_CHUNK, L.MAX_CHUNK + 1, 3 * L.MAX_CHUNK - 5, 7])]
    arr = L.build_plan(specs, chunk=L.MAX_CHUNK)
    assert L.build_plan(specs).chunk == L.SMALL_CHUNK  # small set: small chunks
    assert list(arr.meta[:, L.M_NBLK]) == [1, 1, 1, 2, 3, 1]
    assert arr.nblocks == 9
    assert list(arr.bmap[:, 0]) == [0, 1, 2, 3, 3, 4, 4, 4, 5]
    assert list(arr.bmap[:, 1]) == [0, 0, 0, 0, 1, 0, 1, 2, 0]


class _FakePlan:
    def __init__(self) -> None:
        self.uploads: list[tuple[int, ...]] = []

    def device_pointers(self, ptrs):
        self.uploads.append(ptrs)
        return ptrs


def test_plan_cache_fast_path_and_invalidation():
    built: list[_FakePlan] = []
    cache = PlanCache(lambda ts, key: built.append(_FakePlan()) or built[-1])
    ts = [torch.zeros(3), torch.zeros(2, 2)]
    p1, ptrs = cache.get(ts)
    assert ptrs == (ts[0].data_ptr(), ts[1].data_ptr())
    for _ in range(4):
        assert cache.get(ts)[0] is p1
    assert len(built) == 1 and len(p1.uploads) == 3  # armed after the third call
    assert cache.hits == [2, 2, 1]  # the 2nd and 3rd call took path 2, then path 1 (armed)
    fresh = [t.clone() for t in ts]  # same layout, new pointers: same plan, new pointer table
    p2, ptrs2 = cache.get(fresh)
    assert p2 is p1 and ptrs2 == (fresh[0].data_ptr(), fresh[1].data_ptr())
    assert cache.hits[1] == 3  # new objects, same layout: the light path
    reshaped = [ts[0], ts[1].view(4)]  # other shape, read the same way (contiguous): same plan
    assert cache.get(reshaped)[0] is p1 and len(built) == 1
    transposed = [ts[0], ts[1].t()]  # not contiguous: its sizes and strides count
    p3, _ = cache.get(transposed)
    assert p3 is not p1 and len(built) == 2
    misaligned = [ts[0][1:], ts[1]]  # other alignment: new plan
    assert cache.get(misaligned)[0] is not p1 and len(built) == 3
    ts[1].set_(torch.zeros(2, 2))  # same object, storage swapped in place: fast path must miss
    assert cache.get(ts)[1] == (ts[0].data_ptr(), ts[1].data_ptr())


@pytest.mark.parametrize("change", ["dtype", "numel", "strides", "pointer"])
def test_plan_cache_light_path_sees_layout_changes(change):
    """Gradients after zero_grad(set_to_none=True): new objects each step, usually the same
    layout (path 2 of plans.py).  Anything the kernels depend on must still be seen."""
    built: list[_FakePlan] = []
    cache = PlanCache(lambda ts, key: built.append(_FakePlan()) or built[-1])
    shapes = [(8, 3, 3, 3), (8,), (10, 4)]
    step = [torch.zeros(s) for s in shapes]
    p1, _ = cache.get(step)
    for _ in range(3):  # new objects every step, same layout: one plan, no rebuild
        step = [torch.zeros(s) for s in shapes]
        assert cache.get(step)[0] is p1
    assert len(built) == 1 and cache.hits[1] == 3
    other = [torch.zeros(s) for s in shapes]
    if change == "dtype":  # .data = p.data.half() on a parameter: same size in bytes for bf16 <-> fp16
        other[1] = torch.zeros(8, dtype=torch.bfloat16)
        step[1] = step[1].to(torch.float16)
        assert cache.get(step)[0] is not p1
        assert cache.get(other)[0] is not cache.get(step)[0]
        return
    if change == "numel":  # .data = p.data[:4]
        other[1] = torch.zeros(4)
    elif change == "strides":  # a gradient with another layout than its parameter
        other[2] = torch.zeros(4, 10).t()
    else:  # storage moved (FSDP re-allocation): same plan, new pointer table
        p2, ptrs = cache.get(other)
        assert p2 is p1 and ptrs == tuple(t.data_ptr() for t in other) and len(built) == 1
        return
    assert cache.get(other)[0] is not p1 and len(built) == 2
