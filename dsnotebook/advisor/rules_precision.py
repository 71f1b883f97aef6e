"""Number formats and layouts: mixed precision, TF32, channels_last."""
from __future__ import annotations

from typing import Any

import torch

from dsnotebook.perf.hardware import HardwareProfile, has_fp32_precision_api, tf32_enabled
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.settings import autocast_choice, channels_last_helps
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant, set_tf32, to_channels_last

COMPUTE_SHARE = 0.4  # forward + backward share of the step worth speeding up
_TF32_SNIPPET_NEW = ('torch.backends.cuda.matmul.fp32_precision = "tf32"\n'
                     'torch.backends.cudnn.conv.fp32_precision = "tf32"\n'
                     'torch.backends.cudnn.rnn.fp32_precision = "tf32"')
_TF32_SNIPPET_LEGACY = ("torch.backends.cuda.matmul.allow_tf32 = True\ntorch.backends.cudnn.allow_tf32 = True\n"
                        "# or: torch.set_float32_matmul_precision('high')")
_TF32_SNIPPET_XPU = ('torch.set_float32_matmul_precision("high")  # oneDNN matmuls in TF32 on the Intel GPU\n'
                     'torch.backends.mkldnn.conv.fp32_precision = "tf32"')
_TF32_SNIPPET_XPU_LEGACY = "torch.backends.mkldnn.allow_tf32 = True  # oneDNN TF32 on the Intel GPU"


def _compute_share(run: Any) -> tuple[float, float]:
    ph = measures.phases(run)
    step = ph.get("step", 0.0)
    compute = ph.get("fwd", 0.0) + ph.get("bwd", 0.0)
    return compute, (compute / step if step > 0 else 0.0)


def mixed_precision(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    dtype, scaler, why = autocast_choice(hw)
    s = ctx.settings(run)
    compute, share = _compute_share(run)
    if dtype is None or s.get("autocast") or "float32" not in measures.param_dtypes(run) or share < COMPUTE_SHARE:
        return None
    name = str(dtype).replace("torch.", "")
    dev = hw.device
    if scaler:
        snippet = (f"scaler = torch.amp.GradScaler('{dev}')\n"
                   f"with torch.autocast('{dev}', dtype=torch.float16):\n    loss = loss_fn(model(x), y)\n"
                   "scaler.scale(loss).backward()\nscaler.step(optimizer)\nscaler.update()")
    else:
        snippet = f"with torch.autocast('{dev}', dtype=torch.{name}):\n    loss = loss_fn(model(x), y)\nloss.backward()"
    if dev == "mps":  # Apple GPUs run fp16/bf16 math at about the fp32 rate: the gain is mostly memory
        gain = "about half the activation memory and bandwidth; speed-ups on Apple GPUs are modest (verify)"
    else:
        units = {"cuda": "tensor cores" if hw.nvidia else "matrix cores", "xpu": "XMX engines"}.get(dev, "bf16 units")
        gain = f"x1.5-3 on matmul/conv-heavy steps ({units}), about half the activation memory"
    return Suggestion(
        rule="mixed_precision", category="speed",
        title=f"Train in {name} autocast" + (" with a GradScaler" if scaler else ""),
        evidence={"param_dtype": "float32", "compute_ms": 1e3 * compute, "compute_share": share,
                  "device": hw.gpu_name or "cpu", "reason": why},
        gain=gain,
        snippet=snippet,
        verify_hint="A/B: the step under torch.autocast vs fp32; watch the loss drift (should stay within ~1%)",
        variant=Variant(f"autocast {name}", step_context=lambda: torch.autocast(dev, dtype=dtype)))


def tf32(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    s = ctx.settings(run)
    dev = hw.device
    if dev == "xpu":  # oneDNN's settings, read now: the recorded flags are cuBLAS/cuDNN's
        on, conv_on = tf32_enabled("matmul", "xpu"), tf32_enabled("conv", "xpu")
    else:
        on, conv_on = s.get("tf32_matmul", tf32_enabled("matmul")), s.get("tf32_cudnn")
    if not hw.tf32 or dev not in ("cuda", "xpu") or on or s.get("autocast"):
        return None
    compute, share = _compute_share(run)
    if share < COMPUTE_SHARE:
        return None
    new_api = has_fp32_precision_api()
    if dev == "xpu":
        snippet, gain = (_TF32_SNIPPET_XPU if new_api else _TF32_SNIPPET_XPU_LEGACY), "up to x2-4 on fp32 matmuls (XMX)"
    else:
        snippet = _TF32_SNIPPET_NEW if new_api else _TF32_SNIPPET_LEGACY
        gain = (f"fp32 GEMMs in hipBLASLt's xf32 ({hw.arch})" if hw.vendor == "amd"
                else "up to x2-8 on fp32 matmuls (Ampere+)")
    return Suggestion(
        rule="tf32", category="speed",
        title="Allow TF32 for fp32 matmuls and convolutions",
        evidence={"allow_tf32_matmul": bool(on), "allow_tf32_conv": conv_on,
                  "compute_ms": 1e3 * compute, "compute_share": share, "gpu": hw.gpu_name},
        gain=gain + "; 10-bit mantissa, fine for training",
        snippet=snippet,
        verify_hint="A/B with the flags on vs off; loss drift should stay small",
        variant=Variant("TF32 on", enter=lambda c: set_tf32(True, device=dev)))


def channels_last(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    s = ctx.settings(run)
    n_conv = measures.conv_weights(run)
    if not channels_last_helps(hw) or n_conv == 0 or s.get("channels_last") is not False:
        return None
    times = measures.module_times(run)
    conv_names = {t["module"] for t in run.tensors if t.get("tensor") == "weight" and len(t.get("shape", ())) == 4}
    convs = times[times.index.isin(conv_names)]
    conv_s = float((convs["fwd"] + convs["bwd"]).sum())
    compute, _ = _compute_share(run)
    share = conv_s / compute if compute > 0 else 0.0
    if not times.empty and share < 0.3:
        return None
    return Suggestion(
        rule="channels_last", category="speed",
        title="Use channels_last (NHWC) memory format for this conv net",
        evidence={"conv_layers": n_conv, "conv_ms": 1e3 * conv_s, "conv_share_of_compute": share,
                  "channels_last": False},
        gain="x1.1-1.3 for conv nets under autocast on tensor cores (no NCHW<->NHWC transposes)" if hw.nvidia
        else "faster oneDNN convolutions (NHWC is their native layout on Intel GPUs)",
        snippet="model = model.to(memory_format=torch.channels_last)\n"
                f"x = x.to('{hw.device}', memory_format=torch.channels_last)",
        verify_hint="A/B with the model converted vs not (best combined with autocast)",
        variant=Variant("channels_last", enter=lambda c: to_channels_last(c.model)) if ctx.model is not None else None)
