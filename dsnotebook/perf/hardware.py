"""What machine is this, and which training settings suit it (C7).

``detect_gpu()`` answers from torch's own queries (device properties, backend flags) plus
psutil/os for the host, so it works on CPU-only machines and never initialises more
than torch itself would.  ``get_optimal_settings()`` turns the facts into the settings
the advisor (``dsnotebook.advisor``) recommends, each with the reason it was chosen:
bf16 where the GPU has bf16 tensor cores (Ampere, sm_80, and newer), fp16 with a
GradScaler on Volta/Turing, TF32 matmuls on Ampere+, channels_last for conv nets on
tensor-core GPUs, DataLoader workers from the CPU cores each GPU gets.

>>> hw = detect_gpu(); hw
>>> s = hw.get_optimal_settings(model); s          # readable table with reasons
>>> undo = s.apply(model, optimizer)              # flags, memory format, fused optimizer
>>> with s.autocast(): loss = loss_fn(model(x), y)
"""
from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

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

    def get_optimal_settings(self, model: nn.Module | None = None) -> "OptimalSettings":
        """Settings the advisor would pick on this machine (``model`` refines channels_last)."""
        from dsnotebook.advisor.settings import optimal_settings

        return optimal_settings(self, model)

    def __repr__(self) -> str:
        if self.device == "cuda":
            cc = ".".join(map(str, self.compute_capability or ()))
            gpu = (f"{self.gpu_count} x {self.gpu_name} (sm_{cc.replace('.', '')}, {self.gpu_memory_gb:.0f} GiB, "
                   f"{self.sm_count} SMs; bf16 {_yn(self.bf16)}, TF32 {_yn(self.tf32)}, fp8 {_yn(self.fp8)})")
        else:
            gpu = f"no CUDA GPU (CPU bf16 math {_yn(self.bf16)})"
        return (f"<HardwareProfile {gpu}; {self.cpu_cores} CPU cores, {self.ram_bytes / 2**30:.0f} GiB RAM; "
                f"torch {self.torch_version}" + (f", CUDA {self.cuda_version}" if self.cuda_version else "") + ">")


def _yn(b: bool) -> str:
    return "yes" if b else "no"


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


@dataclass
class OptimalSettings:
    """Recommended settings, each with a reason (``reasons[name]``); see :meth:`apply`."""

    device: str
    autocast_dtype: torch.dtype | None
    grad_scaler: bool
    tf32: bool
    cudnn_benchmark: bool
    channels_last: bool
    compile: bool
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    fused_optimizer: bool
    reasons: dict[str, str] = field(default_factory=dict)

    def dataloader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``torch.utils.data.DataLoader``."""
        kw: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kw.update(persistent_workers=self.persistent_workers, prefetch_factor=4)
        return kw

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision around forward + loss (no-op when no autocast dtype is recommended)."""
        if self.autocast_dtype is None:
            yield
        else:
            with torch.autocast(self.device, dtype=self.autocast_dtype):
                yield

    def grad_scaler_or_none(self) -> Any:
        return torch.amp.GradScaler(self.device) if self.grad_scaler else None

    def apply(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None) -> Callable[[], None]:
        """Set TF32/cudnn flags, channels_last on ``model``, fused optimizer kernels; returns ``undo``.

        Autocast is a context (:meth:`autocast`) and DataLoader settings are arguments
        (:meth:`dataloader_kwargs`): neither can be switched on from outside the loop.
        ``compile`` is applied with ``model.compile()`` (in place) when recommended.
        """
        from dsnotebook.advisor import variants

        undos = []
        if self.tf32:
            undos.append(variants.set_tf32(True))
        if self.cudnn_benchmark:
            undos.append(variants.set_cudnn_benchmark(True))
        if model is not None and self.channels_last and has_conv(model):
            undos.append(variants.to_channels_last(model))
        if optimizer is not None and self.fused_optimizer:
            undos.append(variants.set_optimizer_impl(optimizer, "fused"))
        if model is not None and self.compile:
            undos.append(variants.compile_in_place(model))

        def undo() -> None:
            for u in reversed(undos):
                u()
        return undo

    def __repr__(self) -> str:
        rows = [("autocast", str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "off"),
                ("GradScaler", _yn(self.grad_scaler)), ("TF32", _yn(self.tf32)),
                ("cudnn.benchmark", _yn(self.cudnn_benchmark)), ("channels_last", _yn(self.channels_last)),
                ("torch.compile", _yn(self.compile)),
                ("DataLoader", f"num_workers={self.num_workers}, pin_memory={self.pin_memory}"),
                ("fused optimizer", _yn(self.fused_optimizer))]
        keys = ["autocast", "grad_scaler", "tf32", "cudnn_benchmark", "channels_last", "compile", "num_workers",
                "fused_optimizer"]
        lines = [f"OptimalSettings for {self.device}:"]
        for (label, value), key in zip(rows, keys):
            lines.append(f"  {label:<16} {value:<34} {self.reasons.get(key, '')}")
        return "\n".join(lines)
