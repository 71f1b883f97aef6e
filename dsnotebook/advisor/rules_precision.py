"""Number formats and layouts: mixed precision, TF32, channels_last."""
from __future__ import annotations

from typing import Any

import torch

from dsnotebook.perf.hardware import HardwareProfile, has_fp32_precision_api, tf32_enabled
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.settings import autocast_choice, channels_last_helps
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant, autocast_on, set_tf32, to_channels_last

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


def _amp_choice(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> tuple[Any, bool, str] | None:
    """(dtype, GradScaler, reason) when mixed precision is worth suggesting for this run, else None."""
    dtype, scaler, why = autocast_choice(hw)
    if dtype is None or ctx.settings(run).get("autocast") or "float32" not in measures.param_dtypes(run):
        return None
    return (dtype, scaler, why) if _compute_share(run)[1] >= COMPUTE_SHARE else None


def _conv_share(run: Any) -> tuple[int, float, float, bool]:
    """(conv layers, conv seconds, their share of forward + backward, whether per-layer times exist)."""
    n_conv = measures.conv_weights(run)
    times = measures.module_times(run)
    conv_names = {t["module"] for t in run.tensors if t.get("tensor") == "weight" and len(t.get("shape", ())) == 4}
    convs = times[times.index.isin(conv_names)]
    conv_s = float((convs["fwd"] + convs["bwd"]).sum())
    compute, _ = _compute_share(run)
    return n_conv, conv_s, (conv_s / compute if compute > 0 else 0.0), not times.empty


def _nhwc_with_amp(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> bool:
    """Whether the autocast suggestion brings channels_last along: an NCHW conv net on tensor cores.

    Low-precision tensor-core convolutions read NHWC; on an NCHW model cuDNN transposes the
    activations to and fro.  H200, ResNet-50 batch 64, step alone with the batch on the GPU
    (benchmarks/results/advisor_verdict_h200_2026-11-30.txt): fp32 32.3 ms, bf16 autocast on
    NCHW x1.10-1.12, channels_last x1.33 (fp32; cuDNN's TF32 convolutions), bf16 +
    channels_last x1.32 (the step is then host-bound at about 24 ms).  Suggesting bf16 alone
    for a conv net would promise its x1.5-3 and deliver x1.1; with the layout it delivers what
    the GPU allows.  channels_last keeps its own suggestion too (it pays in fp32 as well)."""
    if not hw.nvidia or not channels_last_helps(hw) or ctx.settings(run).get("channels_last") is not False:
        return False
    n_conv, _, share, timed = _conv_share(run)
    return n_conv > 0 and (share >= 0.3 or not timed)


def mixed_precision(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    choice = _amp_choice(run, hw, ctx)
    if choice is None:
        return None
    dtype, scaler, why = choice
    compute, share = _compute_share(run)
    nhwc = _nhwc_with_amp(run, hw, ctx)
    name = str(dtype).replace("torch.", "")
    dev = hw.device
    x = "x.to(memory_format=torch.channels_last)" if nhwc else "x"
    layout = ("model = model.to(memory_format=torch.channels_last)  # NHWC: what tensor-core convs read\n"
              if nhwc else "")
    if scaler:
        snippet = (layout + f"scaler = torch.amp.GradScaler('{dev}')\n"
                   f"with torch.autocast('{dev}', dtype=torch.float16):\n    loss = loss_fn(model({x}), y)\n"
                   "scaler.scale(loss).backward()\nscaler.step(optimizer)\nscaler.update()")
    else:
        snippet = (layout + f"with torch.autocast('{dev}', dtype=torch.{name}):\n    loss = loss_fn(model({x}), y)\n"
                   "loss.backward()")
    if dev == "mps":  # Apple GPUs run fp16/bf16 math at about the fp32 rate: the gain is mostly memory
        gain = "about half the activation memory and bandwidth; speed-ups on Apple GPUs are modest (verify)"
    else:
        units = {"cuda": "tensor cores" if hw.nvidia else "matrix cores", "xpu": "XMX engines"}.get(dev, "bf16 units")
        gain = f"x1.5-3 on matmul/conv-heavy steps ({units}), about half the activation memory"
    evidence = {"param_dtype": "float32", "compute_ms": 1e3 * compute, "compute_share": share,
                "device": hw.gpu_name or "cpu", "reason": why}
    if nhwc:
        evidence["channels_last"] = False
        evidence["conv_layers"] = measures.conv_weights(run)
    autocast = lambda: torch.autocast(dev, dtype=dtype)  # noqa: E731
    on = lambda: autocast_on(dev)  # noqa: E731
    variant = (Variant(f"autocast {name} + channels_last", enter=lambda c: to_channels_last(c.model, c.optimizer),
                       step_context=autocast, in_effect=on) if nhwc
               else Variant(f"autocast {name}", step_context=autocast, in_effect=on))
    return Suggestion(
        rule="mixed_precision", category="speed",
        title=f"Train in {name} autocast" + (" with a GradScaler" if scaler else "")
        + (" and channels_last" if nhwc else ""),
        evidence=evidence,
        gain=gain + ("; channels_last lets the convolutions use them without layout transposes" if nhwc else ""),
        snippet=snippet,
        verify_hint="A/B: the step under torch.autocast vs fp32" + (" (model in channels_last)" if nhwc else "")
        + "; watch the loss drift (should stay within ~1%)",
        variant=variant)


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
    if not channels_last_helps(hw) or s.get("channels_last") is not False:
        return None
    n_conv, conv_s, share, timed = _conv_share(run)
    if n_conv == 0 or (timed and share < 0.3):
        return None
    return Suggestion(
        rule="channels_last", category="speed",
        title="Use channels_last (NHWC) memory format for this conv net",
        evidence={"conv_layers": n_conv, "conv_ms": 1e3 * conv_s, "conv_share_of_compute": share,
                  "channels_last": False},
        gain="x1.1-1.3 for conv nets on tensor cores, TF32 or bf16 (no NCHW<->NHWC transposes)" if hw.nvidia
        else "faster oneDNN convolutions (NHWC is their native layout on Intel GPUs)",
        snippet="model = model.to(memory_format=torch.channels_last)\n"
                f"x = x.to('{hw.device}', memory_format=torch.channels_last)",
        verify_hint="A/B with the model (and the optimizer's state) converted vs not",
        variant=(Variant("channels_last", enter=lambda c: to_channels_last(c.model, c.optimizer))
                 if ctx.model is not None else None))
