"""Host side of the statistics kernels: the per-tensor table and the block map.

Pure numpy and torch metadata, no cupy, so the logic that decides which block reads
which bytes is unit-tested on machines without a GPU.  The constants mirror
``common.cuh``; ``tests/test_kernels_compile.py`` checks that both agree.

Strides: a tensor that is non-overlapping and dense in *any* dimension order (plain
contiguous, channels_last, a transposed weight) is read as one flat run of memory,
because every statistic here is order-independent.  Other views (slices with a step,
expanded dimensions) are read in-kernel through their collapsed sizes and strides
(up to ``MAXDIM`` dimensions after collapsing).  Only tensors beyond that, or whose
data pointer is not a multiple of the element size, are *staged*: copied each call
into a persistent contiguous buffer by the launcher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

THREADS = 128
MAX_CHUNK = 65536    # elements per block for large sets (less per-block overhead)
SMALL_CHUNK = 32768  # for sets below SMALL_SET elements: more blocks, every SM busy
SMALL_SET = 1 << 28
MAXDIM = 6

(M_PTR, M_NUMEL, M_DTYPE, M_MODE, M_FIRST, M_NBLK, M_SNAP, M_NDIM) = range(8)
M_SIZES = 8
M_STRIDES = M_SIZES + MAXDIM
M_COLS = M_STRIDES + MAXDIM

DT_F32, DT_F16, DT_BF16 = 0, 1, 2
MODE_DENSE, MODE_STRIDED = 0, 1
GPART_F, GPART_U = 2, 2 + 64
UPART_F, UPART_U = 2, 1

DTYPE_CODES = {torch.float32: DT_F32, torch.float16: DT_F16, torch.bfloat16: DT_BF16}
ELEMENT_SIZE = {DT_F32: 4, DT_F16: 2, DT_BF16: 2}


@dataclass(frozen=True)
class TensorSpec:
    """What the kernels need to know about one tensor (no reference to the tensor)."""

    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype_code: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def element_size(self) -> int:
        return ELEMENT_SIZE[self.dtype_code]

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorSpec":
        return cls(t.data_ptr(), tuple(t.shape), tuple(t.stride()), DTYPE_CODES[t.dtype])


def collapse(shape: Sequence[int], strides: Sequence[int]) -> tuple[list[int], list[int]]:
    """Drop size-1 dims and merge neighbours that are contiguous with each other.

    Keeps the logical (row-major) order of the elements, so the kernel's index ->
    offset walk visits exactly the elements of the view, duplicates of expanded
    dimensions included, like ``reshape(-1)`` in the reference does.
    """
    sizes: list[int] = []
    strs: list[int] = []
    for s, st in zip(shape, strides):
        if s == 1:
            continue
        if sizes and strs[-1] == st * s:
            sizes[-1] *= s
            strs[-1] = st
        else:
            sizes.append(int(s))
            strs.append(int(st))
    return sizes, strs


def is_dense(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """True when the elements fill exactly numel consecutive slots in some dim order."""
    dims = sorted((st, s) for s, st in zip(shape, strides) if s != 1)
    expected = 1
    for st, s in dims:
        if st != expected:
            return False
        expected *= s
    return True


def needs_staging(spec: TensorSpec) -> bool:
    """Tensors the kernels cannot read in place (rare): see the module docstring."""
    if spec.numel == 0:
        return False
    if spec.ptr % spec.element_size:
        return True
    if is_dense(spec.shape, spec.strides):
        return False
    return len(collapse(spec.shape, spec.strides)[0]) > MAXDIM


@dataclass
class PlanArrays:
    meta: np.ndarray  # int64 [n, M_COLS]
    bmap: np.ndarray  # int32 [nblocks, 2]: tensor, chunk
    snap_bytes: int   # size of a snapshot buffer for these tensors
    chunk: int        # elements per block (a launch argument)

    @property
    def nblocks(self) -> int:
        return int(self.bmap.shape[0])


def choose_chunk(total_numel: int) -> int:
    """Chunk length of one block.

    Measured on an H200 (benchmarks/results, chunk sweep): the 25.6M-element ResNet-50
    gradient set took 54/42/37.4/35.7/41.0 us with 4/8/16/32/64Ki chunks, GPT-2-124M
    225/164/142/134/137 us; 64Ki keeps the per-block overhead lowest at 1e9 elements.
    """
    return SMALL_CHUNK if total_numel < SMALL_SET else MAX_CHUNK


def build_plan(specs: Sequence[TensorSpec], chunk: int | None = None) -> PlanArrays:
    """Table and block map for tensors that need no staging (see ``needs_staging``)."""
    if chunk is None:
        chunk = choose_chunk(sum(sp.numel for sp in specs))
    n = len(specs)
    meta = np.zeros((n, M_COLS), dtype=np.int64)
    nblk = np.empty(n, dtype=np.int64)
    cursor = 0
    for i, sp in enumerate(specs):
        numel = sp.numel
        es = sp.element_size
        row = meta[i]
        row[M_PTR] = sp.ptr
        row[M_NUMEL] = numel
        row[M_DTYPE] = sp.dtype_code
        nblk[i] = max(1, -(-numel // chunk))
        dense = numel <= 1 or is_dense(sp.shape, sp.strides)
        aligned = (cursor + 15) // 16 * 16
        if dense:
            row[M_MODE] = MODE_DENSE
            row[M_SNAP] = aligned + sp.ptr % 16  # same alignment as the tensor itself
        else:
            sizes, strides = collapse(sp.shape, sp.strides)
            if len(sizes) > MAXDIM:
                raise ValueError("tensor needs staging: more than MAXDIM strided dims")
            row[M_MODE] = MODE_STRIDED
            row[M_SNAP] = aligned
            row[M_NDIM] = len(sizes)
            row[M_SIZES:M_SIZES + len(sizes)] = sizes
            row[M_STRIDES:M_STRIDES + len(strides)] = strides
        cursor = int(row[M_SNAP]) + numel * es
    first = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(nblk[:-1], out=first[1:])
    meta[:, M_FIRST] = first
    meta[:, M_NBLK] = nblk
    total = int(nblk.sum())
    if total >= 2**31:
        raise ValueError("too many blocks for one launch")
    bmap = np.empty((total, 2), dtype=np.int32)
    bmap[:, 0] = np.repeat(np.arange(n, dtype=np.int32), nblk)
    bmap[:, 1] = np.arange(total, dtype=np.int64) - np.repeat(first, nblk)
    return PlanArrays(meta, bmap, max(16, (cursor + 15) // 16 * 16), chunk)
