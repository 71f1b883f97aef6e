"""Memory: activation checkpointing where activations dominate, a bigger batch where memory is idle."""
from __future__ import annotations

from typing import Any

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant, checkpoint_modules, loader_with

ACT_OVER_STATIC = 1.0  # activations larger than params + grads + optimizer state
HEADROOM = 0.5  # peak allocated below half of the GPU
MIN_SAVING = 0.1  # the estimated saving must be at least this share of all activations


def _mb(b: float) -> float:
    return round(b / 2**20, 2)


def gradient_checkpointing(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    act = measures.activations_by_module(run)
    blocks = measures.blocks(act)
    mem = measures.memory(run)
    if not blocks:
        return None
    total = sum(act.values())
    static = mem.get("params", 0) + mem.get("grads", 0) + mem.get("optimizer_state", 0)
    in_blocks = sum(blocks.values())
    if total <= ACT_OVER_STATIC * static or in_blocks < 0.5 * total:
        return None
    per_block = {k: _mb(v) for k, v in sorted(blocks.items(), key=lambda kv: -kv[1])[:12]}
    # Checkpointing keeps a block's input and drops everything saved inside it.
    # A block's input is about the size of one of the tensors saved inside it.
    inside = [sum(1 for m in act if m.startswith(b + ".")) for b in blocks]
    k = max(1.0, sum(inside) / len(inside))
    est = in_blocks * (1 - 1 / k)
    if est < MIN_SAVING * total:
        # Single layers (the items of a Sequential of leaves) keep their input either way:
        # checkpointing them one by one saves next to nothing.
        return None
    prefix = next(iter(blocks)).rpartition(".")[0]  # "" for the items of an nn.Sequential model
    where, container = (f"model.{prefix}", prefix) if prefix else ("model", "the model")
    variant = None
    if ctx.model is not None:
        mods = dict(ctx.model.named_modules())
        chosen = [mods[n] for n in blocks if n in mods]
        if chosen:
            variant = Variant(f"checkpoint {len(chosen)} blocks of {container}",
                              enter=lambda c, ms=chosen: checkpoint_modules(ms))
    return Suggestion(
        rule="checkpointing", category="memory",
        title=f"Activations ({_mb(total)} MB) outweigh the model state ({_mb(static)} MB): "
              f"checkpoint the {len(blocks)} blocks of {container}",
        evidence={"activations_mb": _mb(total), "model_state_mb": _mb(static), "in_blocks_mb": _mb(in_blocks),
                  "saved_per_block_mb": per_block},
        gain=f"about {_mb(est)} MB less activation memory (each block keeps only its input), "
             "for ~30% more compute (blocks run forward twice)",
        snippet="from torch.utils.checkpoint import checkpoint\n"
                f"for block in {where}:  # in forward: x = checkpoint(block, x, use_reentrant=False)\n"
                "    ...",
        verify_hint="A/B: activation bytes saved for backward (CPU) / peak allocated (CUDA), with and without",
        target="memory", variant=variant)


def batch_headroom(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    mem = measures.memory(run)
    peak, total = mem.get("peak_allocated"), hw.gpu_memory_bytes
    if hw.device not in ("cuda", "xpu", "mps") or not peak or not total or peak / total >= HEADROOM:
        return None
    factor = 2
    while peak * factor * 2 < 0.8 * total and factor < 8:
        factor *= 2
    loader = ctx.data
    bs = getattr(loader, "batch_size", None)
    variant = None
    if bs:
        variant = Variant(f"batch size {bs} -> {bs * factor}", make_data=lambda d, f=factor: loader_with(
            d, batch_size=d.batch_size * f), work_scale=float(factor))
    return Suggestion(
        rule="batch_size", category="speed",
        title=f"Peak memory is {100 * peak / total:.0f}% of "
              + ("what Metal lets this process use" if hw.device == "mps" else "the GPU")
              + f": a {factor}x larger batch fits",
        evidence={"peak_allocated_gb": round(peak / 2**30, 2), "gpu_memory_gb": round(total / 2**30, 1),
                  "batch_size": bs},
        gain="higher throughput per sample when the GPU is under-occupied (scale the LR with the batch)",
        snippet=f"loader = DataLoader(dataset, batch_size={bs * factor if bs else f'{factor} * batch_size'}, ...)\n"
                f"# linear scaling rule: lr = lr * {factor} (with warm-up)",
        verify_hint="A/B throughput per sample with the bigger batch (speed-up is per sample)",
        variant=variant)
