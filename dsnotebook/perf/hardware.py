"""What machine is this: the facts the advisor and the run's metadata describe it by.

``detect_gpu()`` answers from torch's own queries (device properties, backend flags) plus
psutil/os for the host, so it works on CPU-only machines and never initialises more
than torch itself would.  It describes NVIDIA GPUs (compute capability), AMD GPUs under
ROCm builds of torch, where ``torch.cuda`` is the HIP device (gfx architecture; bf16, TF32
and fp8 by architecture, the tables torch itself uses), Apple GPUs through MPS (the chip,
unified memory, no float64) and Intel GPUs through ``torch.xpu`` (the device's own
capability flags).  :func:`tf32_enabled` reads the current float32 precision of matmuls and
convolutions under both of torch's APIs without raising.  The settings recommended for
these facts live in ``dsnotebook.advisor.settings`` (``dsnotebook.detect_gpu()`` returns a
profile that offers them).
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


def _ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except Exception:
            return 0


def _cpu_bf16() -> bool:
    """True when the CPU has native bf16 math (AVX512-BF16 or AMX): then CPU autocast pays off."""
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, name, None) or getattr(getattr(torch._C, "_cpu", None), name, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:
            pass
    return False


@dataclass(frozen=True)
class HardwareProfile:
    """Facts about the machine; ``device`` is torch's device type: "cuda" (NVIDIA, or AMD under
    ROCm: see ``vendor``), "mps", "xpu" or "cpu"."""

    device: str
    gpu_name: str | None
    gpu_count: int
    compute_capability: tuple[int, int] | None  # NVIDIA only (meaningless under ROCm)
    gpu_memory_bytes: int | None  # MPS: what Metal recommends one process may use of the unified memory
    sm_count: int | None  # SMs (NVIDIA), compute units (AMD), GPU cores (Apple), Xe-cores (Intel)
    bf16: bool
    tf32: bool
    fp8: bool
    cpu_cores: int
    cpu_name: str
    ram_bytes: int
    torch_version: str
    cuda_version: str | None
    cudnn_version: int | None
    vendor: str | None = None  # "nvidia", "amd", "apple", "intel"; None: CPU, or a profile recorded before
    arch: str | None = None  # "sm_90", "gfx942"
    unified_memory: bool = False
    fp64: bool = True
    runtime: str | None = None  # "CUDA 12.8", "ROCm 6.4.43482", "Metal, macOS 15.1", "SYCL 20250101"

    @property
    def gpu_memory_gb(self) -> float | None:
        return None if self.gpu_memory_bytes is None else self.gpu_memory_bytes / 2**30

    @property
    def nvidia(self) -> bool:
        """An NVIDIA GPU (profiles recorded before ``vendor`` existed: any "cuda" device)."""
        return self.device == "cuda" and self.vendor in (None, "nvidia")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for Run.meta and widgets)."""
        d = asdict(self)
        d["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        return d

    def __repr__(self) -> str:
        flags = f"bf16 {yes_no(self.bf16)}, TF32 {yes_no(self.tf32)}, fp8 {yes_no(self.fp8)}"
        mem = f"{self.gpu_memory_gb:.0f} GiB" if self.gpu_memory_bytes else "memory unknown"
        if self.nvidia:
            cc = ".".join(map(str, self.compute_capability or ()))
            gpu = f"{self.gpu_count} x {self.gpu_name} (sm_{cc.replace('.', '')}, {mem}, {self.sm_count} SMs; {flags})"
        elif self.vendor == "amd":
            gpu = f"{self.gpu_count} x {self.gpu_name} ({self.arch}, {mem}, {self.sm_count} CUs; {flags})"
        elif self.device == "mps":
            cores = f"{self.sm_count} GPU cores, " if self.sm_count else ""
            gpu = f"{self.gpu_name} GPU ({cores}unified memory, {mem} usable; {flags}; no float64)"
        elif self.device == "xpu":
            extra = (", unified memory" if self.unified_memory else "", "" if self.fp64 else "; no float64")
            gpu = f"{self.gpu_count} x {self.gpu_name} ({self.sm_count} Xe-cores, {mem}{extra[0]}; {flags}{extra[1]})"
        else:
            gpu = f"no GPU (CPU bf16 math {yes_no(self.bf16)})"
        return (f"<HardwareProfile {gpu}; {self.cpu_cores} CPU cores, {self.ram_bytes / 2**30:.0f} GiB RAM; "
                f"torch {self.torch_version}" + (f", {self.runtime}" if self.runtime else "") + ">")


def amd_features(arch: str, hip_version: str | None = None) -> dict[str, bool]:
    """bf16/TF32/fp8 of an AMD GPU from its gfx architecture (``gcnArchName``, e.g. "gfx942:sramecc+:xnack-").

    bf16: matrix cores with bf16 (CDNA1-4: gfx908, gfx90a, gfx94x, gfx95x) and RDNA3/4 WMMA
    (gfx11xx, gfx12xx); Vega (gfx906) and RDNA1/2 (gfx10xx) emulate it.  TF32: only where torch
    maps ``allow_tf32`` to hipBLASLt's xf32 (``torch.cuda.is_tf32_supported``: gfx94x, gfx95x).
    fp8: torch's table (gfx94x; gfx12xx from ROCm 6.3; gfx95x from ROCm 6.5).
    """
    base = arch.split(":")[0]
    rocm = tuple(int(p) for p in (hip_version or "0").split(".")[:2] if p.isdigit())
    return {"bf16": base.startswith(("gfx908", "gfx90a", "gfx94", "gfx95", "gfx11", "gfx12")),
            "tf32": base.startswith(("gfx94", "gfx95")),
            "fp8": base.startswith("gfx94") or (base.startswith("gfx12") and rocm >= (6, 3))
            or (base.startswith("gfx95") and rocm >= (6, 5))}


def _host() -> dict[str, Any]:
    return dict(cpu_cores=os.cpu_count() or 1, cpu_name=platform.processor() or platform.machine(),
                ram_bytes=_ram_bytes(), torch_version=torch.__version__, cuda_version=torch.version.cuda)


def device_available(kind: str) -> bool:
    """Whether torch has a usable device of this type ("cuda", "xpu", "mps"); never raises."""
    try:
        if kind == "cuda":
            return torch.cuda.is_available()
        if kind == "xpu":
            return hasattr(torch, "xpu") and torch.xpu.is_available()
        if kind == "mps":
            return torch.backends.mps.is_available()
    except Exception:
        pass
    return False


def _pick(device: int | str | torch.device | None) -> tuple[str, int | None]:
    """(device type, index) to describe: the one asked for, else the first GPU torch has."""
    if device is None:
        kind = next((k for k in ("cuda", "xpu", "mps") if device_available(k)), "cpu")
        return kind, None
    if isinstance(device, int):
        kind = next((k for k in ("cuda", "xpu") if device_available(k)), "cpu")
        return kind, device
    dev = torch.device(device)
    return (dev.type, dev.index) if device_available(dev.type) else ("cpu", None)


def detect_gpu(device: int | str | torch.device | None = None) -> HardwareProfile:
    """Describe the machine: the GPU ``device`` (default: the current one of the first GPU type
    torch has: CUDA/ROCm, XPU, MPS) if any, and the host."""
    kind, idx = _pick(device)
    if kind == "cuda":
        return _cuda_profile(torch.cuda.current_device() if idx is None else idx)
    if kind == "xpu":
        return _xpu_profile(torch.xpu.current_device() if idx is None else idx)
    if kind == "mps":
        return _mps_profile()
    return HardwareProfile(device="cpu", gpu_name=None, gpu_count=0, compute_capability=None,
                           gpu_memory_bytes=None, sm_count=None, bf16=_cpu_bf16(), tf32=False, fp8=False,
                           cudnn_version=None, **_host())


def _cuda_profile(idx: int) -> HardwareProfile:
    props = torch.cuda.get_device_properties(idx)
    common = dict(gpu_name=props.name, gpu_count=torch.cuda.device_count(), gpu_memory_bytes=int(props.total_memory),
                  sm_count=int(props.multi_processor_count), **_host())
    hip = getattr(torch.version, "hip", None)
    if hip:
        arch = str(getattr(props, "gcnArchName", "") or "unknown").split(":")[0]
        return HardwareProfile(device="cuda", compute_capability=None, cudnn_version=None, vendor="amd", arch=arch,
                               runtime=f"ROCm {hip}", **amd_features(arch, hip), **common)
    cc = (props.major, props.minor)
    try:
        cudnn = torch.backends.cudnn.version()
    except Exception:
        cudnn = None
    return HardwareProfile(device="cuda", compute_capability=cc, bf16=cc >= (8, 0), tf32=cc >= (8, 0),
                           fp8=cc >= (8, 9), cudnn_version=cudnn, vendor="nvidia", arch=f"sm_{cc[0]}{cc[1]}",
                           runtime=f"CUDA {torch.version.cuda}" if torch.version.cuda else None, **common)


def _mps_profile() -> HardwareProfile:
    """Apple silicon: the chip's name and GPU cores from Metal, unified memory, bf16 from macOS 14."""
    mps = torch.backends.mps
    name = _call(getattr(mps, "get_name", None)) or "Apple GPU"
    cores = _call(getattr(mps, "get_core_count", None))
    usable = _call(getattr(torch.mps, "recommended_max_memory", None))
    macos = platform.mac_ver()[0]
    host = _host()
    return HardwareProfile(device="mps", gpu_name=name, gpu_count=1, compute_capability=None,
                           gpu_memory_bytes=int(usable or host["ram_bytes"]) or None,
                           sm_count=int(cores) if cores else None, bf16=bool(_call(mps.is_macos_or_newer, 14, 0)),
                           tf32=False, fp8=False, cudnn_version=None, vendor="apple", arch=None, unified_memory=True,
                           fp64=False, runtime="Metal" + (f", macOS {macos}" if macos else ""), **host)


def _xpu_profile(idx: int) -> HardwareProfile:
    """Intel GPUs: bf16/TF32 from the device's DPAS (XMX) flags, float64 and integration as it reports them."""
    props = torch.xpu.get_device_properties(idx)
    flag = lambda name: bool(getattr(props, name, False))  # noqa: E731
    cores = getattr(props, "gpu_subslice_count", None) or getattr(props, "max_compute_units", None)
    sycl = getattr(torch.version, "xpu", None)
    return HardwareProfile(device="xpu", gpu_name=props.name, gpu_count=torch.xpu.device_count(),
                           compute_capability=None, gpu_memory_bytes=int(props.total_memory),
                           sm_count=int(cores) if cores else None,
                           bf16=flag("has_subgroup_matrix_multiply_accumulate"),
                           tf32=flag("has_subgroup_matrix_multiply_accumulate_tensor_float32"), fp8=False,
                           cudnn_version=None, vendor="intel", arch=None, unified_memory=flag("is_integrated_gpu"),
                           fp64=flag("has_fp64"), runtime=f"SYCL {sycl}" if sycl else "XPU", **_host())


def _call(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or None where this torch lacks it or it refuses."""
    try:
        return fn(*args) if fn is not None else None
    except Exception:
        return None


def has_conv(model: nn.Module | None) -> bool:
    return model is not None and any(isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)) for m in model.modules())


def yes_no(b: bool) -> str:
    return "yes" if b else "no"


def backend_flag(path: str) -> Any:
    """A ``torch.backends`` setting by dotted path ("cuda.matmul.fp32_precision"); None where this
    torch lacks it or its getter refuses to answer (legacy and per-op settings that disagree)."""
    obj: Any = torch.backends
    try:
        for part in path.split("."):
            obj = getattr(obj, part)
    except (AttributeError, RuntimeError):
        return None
    return obj


def has_fp32_precision_api() -> bool:
    """torch >= 2.9 describes float32 precision per backend and op (``fp32_precision``)."""
    return backend_flag("cuda.matmul.fp32_precision") is not None


def tf32_enabled(op: str = "matmul", device: str = "cuda") -> bool:
    """Whether fp32 matmuls (``op="matmul"``) or convolutions (``"conv"``) may use TF32 on ``device``:
    CUDA/ROCm (cuBLAS/hipBLASLt, cuDNN/MIOpen) or "xpu" (oneDNN, where bf16 counts too); never on
    MPS or CPU.  Read from
    the per-op setting where torch has one ("none" inherits from the backend, then from the
    generic value), else from the legacy ``allow_tf32`` flag."""
    if op not in ("matmul", "conv"):
        raise ValueError(f"op must be 'matmul' or 'conv', got {op!r}")
    if device not in ("cuda", "xpu"):
        return False
    if has_fp32_precision_api():
        if device == "xpu":
            chain: tuple[str, ...] = ("mkldnn.matmul" if op == "matmul" else "mkldnn.conv", "mkldnn", "")
        else:
            chain = ("cuda.matmul" if op == "matmul" else "cudnn.conv", "cudnn", "")
        for prefix in chain:
            value = backend_flag(f"{prefix}.fp32_precision" if prefix else "fp32_precision")
            if value not in (None, "none"):
                return value == "tf32" or (device == "xpu" and value == "bf16")  # a user's bf16 is lower still
        return False
    if device == "xpu":
        return bool(backend_flag("mkldnn.allow_tf32"))
    return bool(backend_flag("cuda.matmul.allow_tf32" if op == "matmul" else "cudnn.allow_tf32"))
