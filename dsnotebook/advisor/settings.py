"""Hardware facts -> recommended settings, with a reason for each (what ``get_optimal_settings`` returns)."""
from __future__ import annotations

import torch
from torch import nn

from dsnotebook.perf.hardware import HardwareProfile, OptimalSettings, has_conv


def autocast_choice(hw: HardwareProfile) -> tuple[torch.dtype | None, bool, str]:
    """(dtype, needs GradScaler, reason) for mixed precision on this machine."""
    if hw.device == "cuda":
        cc = hw.compute_capability or (0, 0)
        if hw.bf16:
            return torch.bfloat16, False, f"sm_{cc[0]}{cc[1]} has bf16 tensor cores: fp32 range, no loss scaling"
        if cc >= (7, 0):
            return torch.float16, True, f"sm_{cc[0]}{cc[1]} has fp16 tensor cores but no bf16: fp16 + GradScaler"
        return None, False, f"sm_{cc[0]}{cc[1]} has no tensor cores: mixed precision gains little"
    if hw.bf16:
        return torch.bfloat16, False, "CPU has AVX512-BF16/AMX: bf16 matmuls are native"
    return None, False, "CPU without native bf16 math: autocast would emulate it (slower)"


def dataloader_workers(hw: HardwareProfile) -> tuple[int, str]:
    if hw.device == "cuda":
        per_gpu = max(1, hw.cpu_cores // max(1, hw.gpu_count))
        n = max(1, min(8, per_gpu - 1))
        return n, f"{hw.cpu_cores} cores for {hw.gpu_count} GPU(s): {n} loader processes each, one core for the loop"
    n = max(0, min(4, hw.cpu_cores // 4))
    return n, f"CPU training uses the cores for compute too: {n} of {hw.cpu_cores} cores for loading"


def optimal_settings(hw: HardwareProfile, model: nn.Module | None = None) -> OptimalSettings:
    dtype, scaler, why_amp = autocast_choice(hw)
    workers, why_workers = dataloader_workers(hw)
    cuda = hw.device == "cuda"
    cc = hw.compute_capability or (0, 0)
    conv = has_conv(model)
    channels_last = cuda and cc >= (7, 0) and (model is None or conv)
    reasons = {
        "autocast": why_amp,
        "grad_scaler": "fp16 gradients underflow without loss scaling" if scaler else "not needed",
        "tf32": "Ampere+ runs fp32 matmuls/convs on tensor cores with TF32 (10-bit mantissa)" if hw.tf32
        else "no TF32 on this device",
        "cudnn_benchmark": "fixed input shapes: let cuDNN pick the fastest conv algorithm" if cuda else "CPU",
        "channels_last": ("NHWC convs use tensor cores without transposes" if channels_last else
                          "no conv layers" if model is not None and not conv else "needs a tensor-core GPU"),
        "compile": "fuses elementwise ops and cuts kernel launches (first steps compile)" if cuda and cc >= (7, 0)
        else "on CPU/older GPUs compile time rarely pays off in a notebook",
        "num_workers": why_workers + ("; pinned memory for async host-to-device copies" if cuda else ""),
        "fused_optimizer": "one fused kernel per parameter group instead of one per tensor" if cuda
        else "foreach (torch's CPU default) is already multi-tensor",
    }
    return OptimalSettings(device=hw.device, autocast_dtype=dtype, grad_scaler=scaler, tf32=hw.tf32,
                           cudnn_benchmark=cuda, channels_last=channels_last, compile=cuda and cc >= (7, 0),
                           num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0,
                           fused_optimizer=cuda, reasons=reasons)
