"""CPU checks of the CUDA sources: every .cu in dsnotebook/kernels compiles for sm_90
with nvcc (so a syntax error cannot land on a GPU-less CI), and the layout constants of
common.cuh agree with layout.py / stats.py."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from dsnotebook.stats import reference as stats
from dsnotebook.kernels import layout as L

KERNEL_DIR = pathlib.Path(__file__).resolve().parents[2] / "dsnotebook" / "kernels"
SOURCES = sorted(KERNEL_DIR.glob("*.cu"))


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for cand in ("/usr/local/cuda/bin/nvcc", os.path.join(os.environ.get("CUDA_HOME", "/nonexistent"), "bin", "nvcc")):
        if os.path.exists(cand):
            return cand
    return None


def test_sources_exist():
    names = {p.name for p in SOURCES}
    assert {"grad_stats.cu", "update_stats.cu"} <= names


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_cu_compiles_for_sm90(src: pathlib.Path, tmp_path: pathlib.Path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not on PATH nor in /usr/local/cuda/bin")
    cmd = [nvcc, "-arch=sm_90", "-std=c++17", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr.lower(), res.stderr


def _cuh_constants() -> dict[str, int]:
    text = (KERNEL_DIR / "common.cuh").read_text()
    consts: dict[str, int] = {}
    for name, expr in re.findall(r"constexpr\s+(?:int|i64)\s+(\w+)\s*=\s*([^;]+);", text):
        consts[name] = int(eval(expr, {}, dict(consts)))  # noqa: S307 - our own header
    return consts


def test_header_constants_match_python():
    c = _cuh_constants()
    assert c["THREADS"] == L.THREADS and c["MAX_CHUNK"] == L.MAX_CHUNK and c["MAXDIM"] == L.MAXDIM
    assert c["HIST_BINS"] == stats.HIST_BINS and c["HIST_EXP_MIN"] == stats.HIST_EXP_MIN
    assert c["GRAD_COLS"] == stats.GRAD_COLS and c["UPDATE_COLS"] == stats.UPDATE_COLS
    for name in ("M_PTR", "M_NUMEL", "M_DTYPE", "M_MODE", "M_FIRST", "M_NBLK", "M_SNAP", "M_NDIM",
                 "M_SIZES", "M_STRIDES", "M_COLS", "DT_F32", "DT_F16", "DT_BF16", "MODE_DENSE",
                 "MODE_STRIDED", "GPART_F", "GPART_U", "UPART_F", "UPART_U"):
        assert c[name] == getattr(L, name), name
