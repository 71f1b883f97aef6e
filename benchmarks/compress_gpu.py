"""The compression table on a GPU: every method that applies, measured against the original.

    python benchmarks/compress_gpu.py [--model auto|resnet50|gpt2|tiny] [--batch N] [--rounds 7]
                                      [--sens-layers 8] [--distill-steps 20] [--out benchmarks/results]

Models (random init, random inputs: nothing is downloaded; there is no accuracy to measure, so the
table's quality columns are the output deviation and the top-1 agreement with the original):
  resnet50  torchvision ResNet-50, fp32, eval mode; inputs 3x224x224, batch 1 and --batch (32).
  gpt2      GPT-2 124M from ``transformers.GPT2Config()``; its Conv1D layers are converted to
            nn.Linear first (same arithmetic) so the Linear-based methods apply; inputs 128 tokens,
            batch 1 and --batch (8); the MLP's GELU module is declared channel-wise for pruning.
  tiny      the digits CNN on the CPU (the smoke test where there is no GPU).
``auto``: resnet50 if torchvision imports, else gpt2 if transformers does, on CUDA; tiny without CUDA.

Methods: dynamic_int8 and int8_weight_only (torchao when installed; without it the first is
skipped on CUDA, torch.ao's kernels being CPU-only, and the second uses dsnotebook's reference
weight-only int8), magnitude_prune (50%), channel_prune (30%), channel_prune + int8 weight-only, and
distillation into the 50%-channel-pruned student on random batches (--distill-steps).

Writes ``<out>/compress_gpu_<device>_<date>.txt`` (versions, the text table, notes, warnings) and
``.json`` (the table); without --out (and on the CPU smoke test) it only prints.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import pathlib
import sys
import time
from typing import Any

import torch
from torch import nn

import dsnotebook
from dsnotebook.compress import Chain, ChannelPrune, Distill, DynamicInt8, Int8WeightOnly, MagnitudePrune
from dsnotebook.core.jsonsafe import to_json


def resnet50(batch: int, device: torch.device) -> tuple[nn.Module, tuple, Any, tuple[type, ...]]:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).to(device).eval()
    x = torch.randn(batch, 3, 224, 224, device=device)
    data = [torch.randn(batch, 3, 224, 224, device=device) for _ in range(4)]
    return model, (x,), data, ()


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace transformers' Conv1D (x @ W + b, W stored [in, out]) by the same nn.Linear."""
    from transformers.pytorch_utils import Conv1D

    n = 0
    for name, m in list(model.named_modules()):
        if isinstance(m, Conv1D):
            w = m.weight.detach()
            lin = nn.Linear(w.shape[0], w.shape[1], device=w.device, dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w.t())
                lin.bias.copy_(m.bias.detach())
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, lin)
            n += 1
    return n


def gpt2(batch: int, device: torch.device) -> tuple[nn.Module, tuple, Any, tuple[type, ...]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(use_cache=False)
    model = GPT2LMHeadModel(cfg).to(device).eval()
    ids = torch.randint(0, cfg.vocab_size, (batch, 128), device=device)
    with torch.no_grad():
        before = model(ids).logits
    print(f"gpt2: {conv1d_to_linear(model)} Conv1D layers converted to nn.Linear")
    with torch.no_grad():
        diff = float((model(ids).logits - before).abs().max())
    print(f"gpt2: max |logits change| after the conversion: {diff:.3g}")
    act = type(model.transformer.h[0].mlp.act)
    data = [torch.randint(0, cfg.vocab_size, (batch, 128), device=device) for _ in range(4)]
    return model, (ids,), data, (act,)


def tiny(batch: int, device: torch.device) -> tuple[nn.Module, tuple, Any, tuple[type, ...]]:
    from dsnotebook.examples import DigitsCNN

    torch.manual_seed(0)
    data = [torch.randn(batch, 1, 8, 8, device=device) for _ in range(4)]
    return DigitsCNN().to(device).eval(), (torch.randn(batch, 1, 8, 8, device=device),), data, ()


def pick(name: str, cuda: bool) -> str:
    if name != "auto":
        return name
    if not cuda:
        return "tiny"
    if importlib.util.find_spec("torchvision") is not None:
        return "resnet50"
    if importlib.util.find_spec("transformers") is not None:
        return "gpt2"
    return "tiny"


def versions() -> str:
    parts = [f"torch {torch.__version__}", f"dsnotebook {dsnotebook.__version__}"]
    for mod in ("torchao", "torchvision", "transformers"):
        if importlib.util.find_spec(mod) is not None:
            try:
                parts.append(f"{mod} {__import__(mod).__version__}")
            except Exception as exc:  # a broken optional install: say so, run without it
                parts.append(f"{mod} (import failed: {type(exc).__name__})")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="auto", choices=["auto", "resnet50", "gpt2", "tiny"])
    ap.add_argument("--batch", type=int, default=None, help="batch N (default: 32 resnet50, 8 gpt2, 32 tiny)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--block-s", type=float, default=0.05)
    ap.add_argument("--sens-layers", type=int, default=8, help="per-layer sensitivity: first N layers per method (0: off)")
    ap.add_argument("--distill-steps", type=int, default=20)
    ap.add_argument("--out", default=None, help="directory for the .txt/.json results (default: print only)")
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    which = pick(args.model, cuda)
    batch = args.batch or {"resnet50": 32, "gpt2": 8, "tiny": 32}[which]
    model, inputs, data, pointwise = {"resnet50": resnet50, "gpt2": gpt2, "tiny": tiny}[which](batch, device)
    dev_name = torch.cuda.get_device_name(device) if cuda else "CPU"
    head = [f"compress_gpu: {which} on {dev_name}, batch 1 and {batch}; {versions()}",
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; rounds {args.rounds}, "
            f"block {args.block_s} s; random init and inputs (no accuracy: quality = output deviation, top-1 agreement)"]
    print("\n".join(head), flush=True)
    methods = [DynamicInt8(), Int8WeightOnly(), MagnitudePrune(0.5),
               ChannelPrune(0.3, pointwise=pointwise),
               Chain(ChannelPrune(0.3, pointwise=pointwise), Int8WeightOnly(), name="channel_prune+int8_weight_only"),
               Distill(steps=args.distill_steps, lr=1e-4, pointwise=pointwise)]  # student: the teacher, half its channels
    t0 = time.perf_counter()
    result = dsnotebook.compress(model, methods, inputs, data=data, rounds=args.rounds, block_s=args.block_s,
                                 sensitivity=args.sens_layers > 0, max_layers=max(1, args.sens_layers))
    took = time.perf_counter() - t0
    text = "\n".join(head + [f"compress() took {took:.0f} s", "", str(result), "", "notes:"] +
                     [f"  {k}: {n}" for k, ns in result.notes.items() for n in ns])
    if len(result.sensitivity):
        s = result.sensitivity.sort_values(["method", "max_abs_dev"], ascending=[True, False])
        text += "\n\nper-layer sensitivity (max |output change| when only that layer is compressed):\n" + \
                s[["method", "layer", "type", "max_abs_dev", "rel_dev", "agreement"]].to_string(index=False)
    print(text[len("\n".join(head)):], flush=True)
    if args.out and cuda:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tag = dev_name.split()[-1].lower() if cuda else "cpu"
        stem = out / f"compress_gpu_{which}_{tag}_{datetime.date.today().isoformat()}"
        stem.with_suffix(".txt").write_text(text + "\n")
        table = result.table.reset_index().to_dict("records")
        stem.with_suffix(".json").write_text(json.dumps(to_json({"header": head, "seconds": took, "table": table}),
                                                        indent=1, allow_nan=False))
        print(f"wrote {stem}.txt and .json")
    elif args.out:
        print("(CPU smoke test: nothing written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
