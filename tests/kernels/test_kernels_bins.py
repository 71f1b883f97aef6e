"""CPU check of the bit arithmetic of grad_stats.cu's fast path, exhaustively where it is cheap.

The fast path bins a value by the exponent byte of a' = (bits << 1) - (E_ROW0 << 24) (per
16-bit lane for a pair of bf16 in one word) and decides with one test of two bits of the
vector's max a'.  Here numpy replays that arithmetic: every value it admits must land in
the row whose bin is the reference bin, every value in range must be admitted, the abs-max
must come back from the lanes, and the general path's row formula and the block
reduction's row -> bin folding must give the reference bins.  No GPU needed.
"""
from __future__ import annotations

import pathlib
import re

import numpy as np

from dsnotebook.stats.reference import HIST_BINS, HIST_EXP_MIN

SRC = (pathlib.Path(__file__).resolve().parents[2] / "dsnotebook" / "kernels" / "grad_stats.cu").read_text()


def _const(name: str) -> int:
    expr = re.search(rf"constexpr\s+\w+\s+{name}\s*=\s*([^;]+);", SRC).group(1)
    expr = re.sub(r"\(u32\)", "", expr).replace("HIST_EXP_MIN", str(HIST_EXP_MIN)).replace("HIST_BINS", str(HIST_BINS))
    return int(eval(expr.split("//")[0]))  # noqa: S307 - our own source


E_ROW0 = _const("E_ROW0")
ROW_ZERO = _const("ROW_ZERO")
M32 = np.uint64(0xFFFFFFFF)


def ref_bin(bits32: np.ndarray) -> np.ndarray:
    """Reference bin of fp32 bit patterns (-1 for non-finite)."""
    b = bits32.astype(np.int64)
    e, m = (b >> 23) & 0xFF, b & 0x7FFFFF
    out = np.where((e == 0) & (m == 0), 0, np.clip(e - 127 - HIST_EXP_MIN + 1, 1, HIST_BINS - 1))
    return np.where(e == 255, -1, out)


def row_to_bin(row: np.ndarray) -> np.ndarray:
    """The block reduction's folding: bin 0 <- ROW_ZERO, bin 1 <- rows 0..2, bin b <- row b + 1."""
    return np.where(row == ROW_ZERO, 0, np.where(row <= 2, 1, row - 1))


def test_constants():
    assert E_ROW0 == 79 and ROW_ZERO == HIST_BINS + 1
    assert "A_OUT16 = 0xc000c000u" in SRC and "A_OUT32 = 0xc0000000u" in SRC


def test_bf16_pairs_every_low_value():
    lo = np.arange(65536, dtype=np.uint64)
    highs = np.unique(np.concatenate([np.arange(0, 65536, 61, dtype=np.uint64),
                                      np.array([0, 1, 0x8000, 0x8001, 0x4F00, 0x4F80, 0x4EFF, 0x8EFF, 0x8F00, 0xCF00,
                                                0x7F80, 0x7FC0, 0xFF80, 0x0080, 0x007F], dtype=np.uint64)]))
    shift = np.uint64((E_ROW0 << 8) * 0x10001)
    for hi in highs:
        w = (hi << np.uint64(16)) | lo
        ap = ((w << np.uint64(1)) - shift) & M32
        fast = (ap & np.uint64(0xC000C000)) == 0
        e_lo, e_hi = (lo >> np.uint64(7)) & np.uint64(0xFF), (hi >> np.uint64(7)) & np.uint64(0xFF)
        in_range = (e_lo >= E_ROW0) & (e_lo <= E_ROW0 + 63) & (e_hi >= E_ROW0) & (e_hi <= E_ROW0 + 63)
        assert np.array_equal(fast, in_range), hex(int(hi))
        rows_lo = ((ap >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64)
        rows_hi = ((ap >> np.uint64(24)) & np.uint64(0xFF)).astype(np.int64)
        assert (row_to_bin(rows_lo)[fast] == ref_bin((lo << np.uint64(16)).astype(np.uint32))[fast]).all()
        assert (row_to_bin(rows_hi)[fast] == ref_bin(np.array([hi << np.uint64(16)], dtype=np.uint32))).all()
        # abs-max from the lanes (finish(): drop the high lane's bit 0, undo the shift)
        back = np.uint64(E_ROW0 << 8)
        amax = np.maximum(((ap & np.uint64(0xFFFF)) + back) & np.uint64(0xFFFE),
                          ((ap >> np.uint64(16)) + back) & np.uint64(0xFFFE))
        true = np.maximum(lo & np.uint64(0x7FFF), hi & np.uint64(0x7FFF)) << np.uint64(1)
        assert (amax[fast] == true[fast]).all()


def test_fp32_every_exponent():
    vals = [(s << 31) | (e << 23) | m for e in range(256) for m in (0, 1, 0x400000, 0x7FFFFF, 0x123456)
            for s in (0, 1)]
    b = np.array(vals, dtype=np.uint64)
    ap = ((b << np.uint64(1)) - np.uint64(E_ROW0 << 24)) & M32
    fast = (ap & np.uint64(0xC0000000)) == 0
    e = ((b >> np.uint64(23)) & np.uint64(0xFF)).astype(np.int64)
    assert np.array_equal(fast, (e >= E_ROW0) & (e <= E_ROW0 + 63))
    rows = (ap >> np.uint64(24)).astype(np.int64)
    assert (row_to_bin(rows)[fast] == ref_bin(b.astype(np.uint32))[fast]).all()
    assert (((ap + np.uint64(E_ROW0 << 24)) & M32)[fast] == ((b << np.uint64(1)) & M32)[fast]).all()
    # general path: row = a ? min(max(e - E_ROW0, 2), HIST_BINS) : ROW_ZERO, on finite values
    a = ((b << np.uint64(1)) & M32).astype(np.int64)
    row = np.where(a != 0, np.minimum(np.maximum((a >> 24) - E_ROW0, 2), HIST_BINS), ROW_ZERO)
    fin = e != 255
    assert (row_to_bin(row)[fin] == ref_bin(b.astype(np.uint32))[fin]).all()
