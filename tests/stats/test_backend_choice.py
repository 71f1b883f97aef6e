"""Which backend a device gets: CuPy only on NVIDIA CUDA builds, the float32 path where float64 is missing.

Devices are simulated: ``torch.version.cuda``/``hip`` are set as a CUDA or ROCm build sets them,
``kernels.is_available`` claims a working cupy (so that only the build decides), and the
XPU's ``has_fp64`` comes from a stand-in for ``torch.xpu.get_device_properties``.
"""
from __future__ import annotations

import types
import warnings

import pytest
import torch

from dsnotebook import kernels
from dsnotebook.kernels import choice
from dsnotebook.kernels.choice import make_backend, nvidia_cuda_build
from dsnotebook.stats import devices
from dsnotebook.stats.devices import has_float64
from dsnotebook.stats.reference import TorchStatsBackend

CUDA = torch.device("cuda", 0)


class FakeCupyBackend:
    name = "cupy"


@pytest.fixture
def cupy_works(monkeypatch):
    """cupy imports and sees a GPU: only the torch build can keep the kernels away."""
    monkeypatch.setattr(kernels, "is_available", lambda: True)
    monkeypatch.setattr(kernels, "CupyStatsBackend", FakeCupyBackend, raising=False)


def build(monkeypatch, cuda=None, hip=None):
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.version, "hip", hip)


def test_nvidia_cuda_build_gets_the_kernels(monkeypatch, cupy_works):
    build(monkeypatch, cuda="12.8")
    assert nvidia_cuda_build()
    assert make_backend("auto", CUDA).name == "cupy" and make_backend("cupy", CUDA).name == "cupy"
    assert make_backend("torch", CUDA).name == "torch"


@pytest.mark.parametrize("cuda", [None, "12.8"])  # ROCm builds leave cuda None; set it too: hip decides
def test_rocm_build_never_gets_the_kernels(monkeypatch, cupy_works, cuda):
    build(monkeypatch, cuda=cuda, hip="6.4.43482")
    assert not nvidia_cuda_build()
    backend = make_backend("auto", CUDA)
    assert isinstance(backend, TorchStatsBackend) and backend.name == "torch"  # MI300X has float64
    with pytest.raises(RuntimeError, match="NVIDIA CUDA builds of torch only.*ROCm"):
        make_backend("cupy", CUDA)


def test_cpu_only_build_and_other_devices_never_get_the_kernels(monkeypatch, cupy_works):
    build(monkeypatch)
    assert make_backend("auto", CUDA).name == "torch"
    build(monkeypatch, cuda="12.8")
    for dev in ("cpu", "mps", "xpu"):
        assert isinstance(make_backend("auto", torch.device(dev)), TorchStatsBackend)
    with pytest.warns(UserWarning, match="needs CUDA tensors"):
        make_backend("cupy", torch.device("mps"))


def test_mps_gets_the_float32_path():
    assert not has_float64(torch.device("mps"))
    backend = make_backend("auto", torch.device("mps"))
    assert backend.float32 and backend.name == "torch-float32"
    assert make_backend("torch", torch.device("mps")).name == "torch-float32"
    assert make_backend("auto", torch.device("cpu")).name == "torch"


@pytest.mark.parametrize("fp64,name", [(True, "torch"), (False, "torch-float32")])
def test_xpu_asks_the_device_for_float64(monkeypatch, fp64, name):
    """Intel Data Center GPU Max has float64; Arc GPUs do not."""
    devices._xpu_float64.cache_clear()
    monkeypatch.setattr(torch.xpu, "current_device", lambda: 0)
    monkeypatch.setattr(torch.xpu, "get_device_properties", lambda i: types.SimpleNamespace(has_fp64=fp64))
    try:
        assert has_float64("xpu") is fp64 and has_float64(torch.device("xpu", 0)) is fp64
        assert make_backend("auto", torch.device("xpu")).name == name
    finally:
        devices._xpu_float64.cache_clear()


def test_unreadable_or_unknown_devices_get_the_path_that_runs_everywhere(monkeypatch):
    devices._xpu_float64.cache_clear()

    def broken(i):
        raise RuntimeError("no XPU runtime")
    monkeypatch.setattr(torch.xpu, "get_device_properties", broken)
    monkeypatch.setattr(torch.xpu, "current_device", lambda: 0)
    try:
        assert not has_float64("xpu") and not has_float64("hpu")
    finally:
        devices._xpu_float64.cache_clear()
    assert has_float64("cpu") and has_float64("cuda")


def test_bad_choice_is_a_clear_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend("triton", torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choice.make_backend("torch", torch.device("cpu")).name == "torch"
