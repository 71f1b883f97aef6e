"""What machine is this: the facts the advisor and the run's metadata describe it by.

``detect_gpu()`` answers from torch's own queries (device properties, backend flags) plus
psutil/os for the host, so it works on CPU-only machines and never initialises more
than torch itself would.  :func:`tf32_enabled` reads the current float32 precision of
CUDA matmuls and cuDNN convolutions under both of torch's APIs without raising.  The
settings recommended for these facts live in ``dsnotebook.advisor.settings``
(``dsnotebook.detect_gpu()`` returns a profile that offers them).
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
    """Facts about the machine; ``device`` is "cuda" or "cpu"."""

    device: str
    gpu_name: str | None
    gpu_count: int
    compute_capability: tuple[int, int] | None
    gpu_memory_bytes: int | None
    sm_count: int | None
    bf16: bool
    tf32: bool
    fp8: bool
    cpu_cores: int
    cpu_name: str
    ram_bytes: int
    torch_version: str
    cuda_version: str | None
    cudnn_version: int | None

    @property
    def gpu_memory_gb(self) -> float | None:
        return None if self.gpu_memory_bytes is None else self.gpu_memory_bytes / 2**30

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for Run.meta and widgets)."""
        d = asdict(self)
        d["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        return d

    def __repr__(self) -> str:
        if self.device == "cuda":
            cc = ".".join(map(str, self.compute_capability or ()))
            gpu = (f"{self.gpu_count} x {self.gpu_name} (sm_{cc.replace('.', '')}, {self.gpu_memory_gb:.0f} GiB, "
                   f"{self.sm_count} SMs; bf16 {yes_no(self.bf16)}, TF32 {yes_no(self.tf32)}, fp8 {yes_no(self.fp8)})")
        else:
            gpu = f"no CUDA GPU (CPU bf16 math {yes_no(self.bf16)})"
        return (f"<HardwareProfile {gpu}; {self.cpu_cores} CPU cores, {self.ram_bytes / 2**30:.0f} GiB RAM; "
                f"torch {self.torch_version}" + (f", CUDA {self.cuda_version}" if self.cuda_version else "") + ">")


def detect_gpu(device: int | str | torch.device | None = None) -> HardwareProfile:
    """Describe the machine: the CUDA GPU ``device`` (default: current) if any, and the host."""
    common = dict(cpu_cores=os.cpu_count() or 1, cpu_name=platform.processor() or platform.machine(),
                  ram_bytes=_ram_bytes(), torch_version=torch.__version__, cuda_version=torch.version.cuda)
    if not torch.cuda.is_available():
        return HardwareProfile(device="cpu", gpu_name=None, gpu_count=0, compute_capability=None,
                               gpu_memory_bytes=None, sm_count=None, bf16=_cpu_bf16(), tf32=False, fp8=False,
                               cudnn_version=None, **common)
    if device is None:
        idx = torch.cuda.current_device()
    elif isinstance(device, int):
        idx = device
    else:
        idx = torch.device(device).index or 0
    props = torch.cuda.get_device_properties(idx)
    cc = (props.major, props.minor)
    try:
        cudnn = torch.backends.cudnn.version()
    except Exception:
        cudnn = None
    return HardwareProfile(device="cuda", gpu_name=props.name, gpu_count=torch.cuda.device_count(),
                           compute_capability=cc, gpu_memory_bytes=int(props.total_memory),
                           sm_count=int(props.multi_processor_count), bf16=cc >= (8, 0), tf32=cc >= (8, 0),
                           fp8=cc >= (8, 9), cudnn_version=cudnn, **common)


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


def tf32_enabled(op: str = "matmul") -> bool:
    """Whether fp32 CUDA matmuls (``op="matmul"``) or cuDNN convolutions (``"conv"``) may use TF32,
    read from the per-op setting where torch has one ("none" inherits from the backend, then
    from the generic value), else from the legacy ``allow_tf32`` flag."""
    if op not in ("matmul", "conv"):
        raise ValueError(f"op must be 'matmul' or 'conv', got {op!r}")
    if has_fp32_precision_api():
        chain = ("cuda.matmul" if op == "matmul" else "cudnn.conv", "cudnn", "")
        for prefix in chain:
            value = backend_flag(f"{prefix}.fp32_precision" if prefix else "fp32_precision")
            if value not in (None, "none"):
                return value == "tf32"
        return False
    return bool(backend_flag("cuda.matmul.allow_tf32" if op == "matmul" else "cudnn.allow_tf32"))
