"""Machines this CPU is not: ``detect_gpu()`` run against simulated torch device probes.

Each function patches only the queries ``dsnotebook.perf.hardware`` makes (availability,
device properties, version strings) for the duration of one ``detect_gpu()`` call, with the
values those machines report, and returns the profile: the real detection code builds it.
"""
from __future__ import annotations

import types

import pytest
import torch

from dsnotebook.advisor.settings import TuningProfile, detect_gpu

GIB = 2**30


def _no_gpus(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(torch.cuda, "is_available", lambda: False)
    mp.setattr(torch.xpu, "is_available", lambda: False)
    mp.setattr(torch.backends.mps, "is_available", lambda: False)


def apple(name: str = "Apple M3 Max", cores: int = 40, usable_gib: int = 96, macos14: bool = True,
          torch_version: str | None = None) -> TuningProfile:
    """An M-series Mac through MPS (``torch_version`` pretends an older torch)."""
    with pytest.MonkeyPatch.context() as mp:
        _no_gpus(mp)
        mp.setattr(torch.backends.mps, "is_available", lambda: True)
        mp.setattr(torch.backends.mps, "get_name", lambda: name)
        mp.setattr(torch.backends.mps, "get_core_count", lambda: cores)
        mp.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: macos14 or major < 14)
        mp.setattr(torch.mps, "recommended_max_memory", lambda: usable_gib * GIB)
        if torch_version:
            mp.setattr(torch, "__version__", torch_version)
        return detect_gpu()


def amd(arch: str = "gfx942:sramecc+:xnack-", name: str = "AMD Instinct MI300X", mem_gib: int = 192,
        cus: int = 304, hip: str = "6.4.43482", gpus: int = 8) -> TuningProfile:
    """An AMD GPU under a ROCm build of torch (``torch.cuda`` is HIP; ``torch.version.cuda`` is None)."""
    # major/minor: ROCm reports a gfx-derived pair here that looks like a CUDA compute capability
    props = types.SimpleNamespace(name=name, major=9, minor=4, total_memory=mem_gib * GIB,
                                  multi_processor_count=cus, gcnArchName=arch)
    with pytest.MonkeyPatch.context() as mp:
        _no_gpus(mp)
        mp.setattr(torch.cuda, "is_available", lambda: True)
        mp.setattr(torch.cuda, "current_device", lambda: 0)
        mp.setattr(torch.cuda, "device_count", lambda: gpus)
        mp.setattr(torch.cuda, "get_device_properties", lambda i: props)
        mp.setattr(torch.version, "hip", hip)
        mp.setattr(torch.version, "cuda", None)
        return detect_gpu()


def intel(name: str = "Intel(R) Data Center GPU Max 1550", mem_gib: int = 128, xe_cores: int = 128,
          fp64: bool = True, dpas: bool = True, dpas_tf32: bool = True, integrated: bool = False,
          gpus: int = 1) -> TuningProfile:
    """An Intel GPU through ``torch.xpu`` (defaults: the Data Center GPU Max 1550, "Ponte Vecchio")."""
    props = types.SimpleNamespace(name=name, total_memory=mem_gib * GIB, gpu_subslice_count=xe_cores,
                                  max_compute_units=xe_cores * 8, has_fp64=fp64, has_bfloat16_conversions=True,
                                  has_subgroup_matrix_multiply_accumulate=dpas,
                                  has_subgroup_matrix_multiply_accumulate_tensor_float32=dpas_tf32,
                                  is_integrated_gpu=integrated, driver_version="1.6.32224")
    with pytest.MonkeyPatch.context() as mp:
        _no_gpus(mp)
        mp.setattr(torch.xpu, "is_available", lambda: True)
        mp.setattr(torch.xpu, "current_device", lambda: 0)
        mp.setattr(torch.xpu, "device_count", lambda: gpus)
        mp.setattr(torch.xpu, "get_device_properties", lambda i: props)
        mp.setattr(torch.version, "xpu", "20250101", raising=False)
        return detect_gpu()


def arc_a770() -> TuningProfile:
    """A consumer Intel GPU: XMX for bf16 but no TF32 and no float64."""
    return intel(name="Intel(R) Arc(TM) A770 Graphics", mem_gib=16, xe_cores=32, fp64=False, dpas_tf32=False)
