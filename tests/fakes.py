"""Constructed inputs shared by several test folders: hardware profiles and Runs with profiler records."""
from __future__ import annotations

import torch

from dsnotebook import Run
from dsnotebook.advisor.settings import TuningProfile


def fake_gpu(name="NVIDIA H100 80GB HBM3", cc=(9, 0), mem_gb=80, cores=32, gpus=1) -> TuningProfile:
    """A simulated CUDA machine (what ``dsnotebook.detect_gpu()`` would return there)."""
    return TuningProfile(device="cuda", gpu_name=name, gpu_count=gpus, compute_capability=cc,
                         gpu_memory_bytes=mem_gb * 2**30, sm_count=132, bf16=cc >= (8, 0), tf32=cc >= (8, 0),
                         fp8=cc >= (8, 9), cpu_cores=cores, cpu_name="x86_64", ram_bytes=512 * 2**30,
                         torch_version=torch.__version__, cuda_version="12.8", cudnn_version=90100)


def cpu_profile(bf16=False, cores=8) -> TuningProfile:
    return TuningProfile(device="cpu", gpu_name=None, gpu_count=0, compute_capability=None, gpu_memory_bytes=None,
                         sm_count=None, bf16=bf16, tf32=False, fp8=False, cpu_cores=cores, cpu_name="x86_64",
                         ram_bytes=16 * 2**30, torch_version=torch.__version__, cuda_version=None,
                         cudnn_version=None)


H100 = fake_gpu()
V100 = fake_gpu(name="Tesla V100", cc=(7, 0), mem_gb=32)
CPU = cpu_profile(bf16=False)

HEALTHY_PHASES = {"data": 0.001, "fwd": 0.040, "bwd": 0.080, "opt": 0.004, "comm": 0.0, "tracer": 0.002,
                  "other": 0.003}
HEALTHY_SETTINGS = {"device": "cuda", "autocast": "bfloat16", "compiled": False, "tf32_matmul": True,
                    "tf32_cudnn": True, "cudnn_benchmark": True, "channels_last": True}


def tensors(conv: bool = True, n_blocks: int = 4) -> list[dict]:
    rows = []
    if conv:
        rows.append({"name": "stem.weight", "module": "stem", "tensor": "weight", "shape": [64, 3, 7, 7],
                     "dtype": "float32", "numel": 64 * 147, "trainable": True})
    for i in range(n_blocks):
        rows.append({"name": f"layers.{i}.fc.weight", "module": f"layers.{i}.fc", "tensor": "weight",
                     "shape": [256, 256], "dtype": "float32", "numel": 256 * 256, "trainable": True})
    for i, r in enumerate(rows):
        r["tensor_id"], r["aliases"] = i, []
    return rows


def perf_run(phases=None, modules=None, memory=None, settings=None, meta=None, conv=True, steps=3) -> Run:
    """A Run with profiler records as the TimingProbe writes them (sampled steps 0..steps-1)."""
    phases = dict(HEALTHY_PHASES if phases is None else phases)
    phases["step"] = sum(v for k, v in phases.items() if k != "comm")
    modules = {"stem": (0.010, 0.020), "layers.0.fc": (0.008, 0.015), "layers.1.fc": (0.008, 0.015),
               "layers.2.fc": (0.008, 0.015), "layers.3.fc": (0.006, 0.015)} if modules is None else modules
    memory = {"params": 300 << 20, "grads": 300 << 20, "optimizer_state": 600 << 20,
              "peak_allocated": 60 << 30, "act:stem": 50 << 20, **{f"act:layers.{i}.fc": 50 << 20 for i in range(4)}} \
        if memory is None else memory
    run = Run(tensors(conv), {"optimizers": ["AdamW"], "settings": dict(HEALTHY_SETTINGS, **(settings or {})),
                              **(meta or {})})
    for s in range(steps):
        run.add_records("timings", [{"step": s, "module": "(step)", "phase": k, "seconds": v, "calls": 1}
                                    for k, v in phases.items()])
        run.add_records("timings", [{"step": s, "module": m, "phase": ph, "seconds": t, "calls": 1}
                                    for m, (f, b) in modules.items() for ph, t in (("fwd", f), ("bwd", b))])
        rows = []
        for k, b in memory.items():
            if k.startswith("act:"):
                rows.append({"step": s, "module": k[4:], "kind": "activations", "bytes": b})
            else:
                rows.append({"step": s, "module": "(model)", "kind": k, "bytes": b})
        run.add_records("memory", rows)
    return run
