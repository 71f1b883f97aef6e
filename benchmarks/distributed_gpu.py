"""Distributed tracing overhead: DDP and FSDP2 GPT-2 124M, DDP ResNet-50, statistics every step.

On 2 GPUs (NCCL; one process per GPU, started by torchrun):

    PYTHONPATH=. torchrun --standalone --nproc_per_node 2 benchmarks/distributed_gpu.py \\
        --out benchmarks/results/distributed_gpu_h200x2_$(date +%F).txt

Smoke test on a CPU (gloo, tiny models; what ``make test`` cannot afford to time):

    PYTHONPATH=. .venv/bin/python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        benchmarks/distributed_gpu.py --smoke

Each workload is built from the same seed on every rank: GPT-2 124M from ``transformers.GPT2Config()``
with random init (8 x 512 tokens per GPU, AdamW) wrapped in DDP, and again with FSDP2
(``fully_shard`` per block, then the root); ResNet-50 (torchvision if installed, else the
same bottleneck architecture defined here; batch 64 of 3x224x224 per GPU, SGD momentum) in
DDP.  Blocks of ``--steps`` steps with and without ``ModelTracer`` (statistics of every
parameter every step, gathered to rank 0 every ``--gather-every`` steps) alternate in ABBA
order; a block's time is the slowest rank's (all_reduce MAX), after a barrier.  Reported:
medians and interquartile ranges of the per-step times and of the per-pair ratios
traced/plain.  Results with date, GPUs and versions go to ``--out`` (text) and beside it as JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


# -- models ---------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ResNetLike(nn.Module):
    """ResNet-50's bottleneck layout ((3, 4, 6, 3) blocks, width 64) when torchvision is missing."""

    def __init__(self, blocks: tuple[int, ...] = (3, 4, 6, 3), width: int = 64, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        cin = width
        for i, n in enumerate(blocks):
            w = width * 2 ** i
            for j in range(n):
                layers.append(Bottleneck(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = 4 * w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


class TinyLM(nn.Module):
    """A causal transformer LM for machines without transformers (blocks in ``.h`` like GPT-2)."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, ctx: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.h = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True,
                                                          norm_first=True) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], device=ids.device)
        for block in self.h:
            x = block(x, src_mask=mask, is_causal=True)
        return self.head(self.ln(x))


def gpt2(smoke: bool) -> tuple[nn.Module, list[nn.Module], str]:
    """(model, its blocks for fully_shard, label)."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        m = TinyLM(256, 64, 2, 4, 64) if smoke else TinyLM(50257, 768, 12, 12, 1024)
        return m, list(m.h), "transformer LM (transformers not installed)"
    cfg = (GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64, use_cache=False) if smoke
           else GPT2Config(use_cache=False))
    m = GPT2LMHeadModel(cfg)
    return m, list(m.transformer.h), "GPT-2 tiny" if smoke else "GPT-2 124M (transformers, random init)"


def resnet(smoke: bool) -> tuple[nn.Module, str]:
    if smoke:
        return ResNetLike((1, 1, 1, 1), 8, 10), "ResNet-like tiny"
    try:
        import torchvision

        return torchvision.models.resnet50(weights=None), "ResNet-50 (torchvision)"
    except ImportError:
        return ResNetLike(), "ResNet-50 layout (torchvision not installed)"


# -- workloads --------------------------------------------------------------------------------------
Workload = tuple[nn.Module, torch.optim.Optimizer, Callable[[], None], str]


def workload(name: str, dev: torch.device, smoke: bool) -> Workload:
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    if name.startswith("gpt2"):
        model, blocks, label = gpt2(smoke)
        model.to(dev)
        if name == "gpt2_fsdp":
            from torch.distributed.fsdp import fully_shard

            for b in blocks:
                fully_shard(b)
            fully_shard(model)
            label += ", FSDP2"
        else:
            model = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
            label += ", DDP"
        batch, seq = (2, 32) if smoke else (8, 512)
        vocab = 256 if smoke else 50257
        ids = torch.randint(0, vocab, (batch, seq), device=dev, generator=None)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out = model(ids)
            logits = out.logits if hasattr(out, "logits") else out
            F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
            opt.step()
        return model, opt, step, f"{label}, {batch}x{seq} tokens per rank, fp32"
    model, label = resnet(smoke)
    model = DDP(model.to(dev), device_ids=[dev.index] if dev.type == "cuda" else None)
    batch, size = (4, 32) if smoke else (64, 224)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 10 if smoke else 1000, (batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, step, f"{label}, DDP, batch {batch} of 3x{size}x{size} per rank, fp32"


# -- timing ------------------------------------------------------------------------------------------
def block(step: Callable[[], None], n: int, dev: torch.device) -> float:
    """Seconds per step of the slowest rank over ``n`` steps."""
    dist.barrier()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t = torch.tensor([(time.perf_counter() - t0) / n], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0], xs[0], xs[0]]
    return q[0], statistics.median(xs), q[2]


def measure(name: str, args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    from dsnotebook import ModelTracer
    from dsnotebook.distributed import RankStatsProbe

    model, opt, step, label = workload(name, dev, args.smoke)
    tracer = ModelTracer(model, opt, capture_graph=False, probes=[RankStatsProbe(args.gather_every)])
    block(step, args.warmup, dev)
    with tracer:
        block(step, args.warmup, dev)  # kernels compiled, plans built, the statistics group set up
    plain, traced, ratios = [], [], []
    for i in range(args.pairs):
        t: dict[bool, float] = {}
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            if on:
                with tracer:
                    t[on] = block(step, args.steps, dev)
            else:
                t[on] = block(step, args.steps, dev)
        plain.append(t[False])
        traced.append(t[True])
        ratios.append(t[True] / t[False])
    tracer.flush(wait=True)
    recorded = len(tracer.run.steps)
    ranks = tracer.run.meta.get("ranks") or {}
    del model, opt, tracer
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    p, tr, r = quartiles(plain), quartiles(traced), quartiles(ratios)
    return {"workload": name, "label": label, "plain_ms": [1e3 * v for v in p], "traced_ms": [1e3 * v for v in tr],
            "overhead_pct": [100 * (v - 1) for v in r], "pairs": args.pairs, "steps": args.steps,
            "steps_recorded_on_rank0": recorded, "mode": ranks.get("mode")}


def environment(dev: torch.device, world: int) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=pathlib.Path(__file__).parent, timeout=10).stdout.strip()
    except Exception:
        commit = ""
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "host": socket.gethostname(), "python": platform.python_version(), "torch": torch.__version__,
           "world_size": world, "backend": dist.get_backend(), "dsnotebook_commit": commit}
    if dev.type == "cuda":
        env.update(gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                   cuda=torch.version.cuda, nccl=".".join(map(str, torch.cuda.nccl.version())))
    for mod in ("transformers", "torchvision", "cupy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = None
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="gpt2_ddp,gpt2_fsdp,resnet50_ddp")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--gather-every", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="tiny models, few steps (implied without CUDA)")
    ap.add_argument("--out", default=None, help="text results file (JSON beside it)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.smoke
    args.smoke = not cuda
    if args.smoke:
        args.pairs, args.steps, args.warmup = min(args.pairs, 3), min(args.steps, 3), min(args.warmup, 2)
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=300),
                            device_id=dev if cuda else None)
    rank, world = dist.get_rank(), dist.get_world_size()
    results = [measure(w, args, dev) for w in args.workloads.split(",") if w]
    if rank == 0:
        env = environment(dev, world)
        lines = [f"# distributed_gpu.py {env['date']} on {env['host']}: {world} x "
                 f"{', '.join(sorted(set(env.get('gpus', ['CPU']))))}, torch {env['torch']}"
                 f"{', CUDA ' + str(env.get('cuda')) + ', NCCL ' + str(env.get('nccl')) if cuda else ', gloo'}, "
                 f"transformers {env['transformers']}, torchvision {env['torchvision']}, cupy {env['cupy']}, "
                 f"dsnotebook {env['dsnotebook_commit']}",
                 f"# statistics of every parameter every step, gathered to rank 0 every {args.gather_every} steps; "
                 f"{args.pairs} ABBA pairs of {args.steps}-step blocks; slowest rank per block; "
                 "median [IQR]" + (" -- SMOKE TEST (tiny models on CPU): not a measurement" if args.smoke else "")]
        for r in results:
            p, t, o = r["plain_ms"], r["traced_ms"], r["overhead_pct"]
            lines.append(f"{r['label']}: plain {p[1]:.2f} ms [{p[0]:.2f}, {p[2]:.2f}], traced {t[1]:.2f} ms "
                         f"[{t[0]:.2f}, {t[2]:.2f}], overhead {o[1]:+.2f}% [{o[0]:+.2f}, {o[2]:+.2f}] "
                         f"(rank 0 recorded {r['steps_recorded_on_rank0']} steps, mode {r['mode']})")
        text = "\n".join(lines)
        print(text, flush=True)
        if args.out:
            out = pathlib.Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")
            out.with_suffix(".json").write_text(json.dumps({"env": env, "args": vars(args), "results": results},
                                                           indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
