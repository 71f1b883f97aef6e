"""The advisor on real GPU workloads: every suggestion verified by A/B, measured gains printed.

    python benchmarks/advisor_gpu.py [--case resnet50|gpt2|all] [--steps 20] [--out benchmarks/results]

Cases (random data, so nothing is downloaded):
  resnet50  torchvision ResNet-50, fp32, batch 64 of 3x224x224, SGD with momentum, a plain
            DataLoader (num_workers=0) over a synthetic image tensor on the host.
  gpt2      GPT-2 124M from ``transformers.GPT2Config()`` with random init, 8 x 512 tokens, AdamW.

Each case: 12 training steps under ModelTracer(profile_every=2), a torch.profiler window
(trace written to --out), ``tracer.advise(data=loader)``, then ``suggestion.verify`` for
every suggestion that has a variant (``--steps`` timed steps per arm, interleaved pairs; a change
to the step is judged on the step, the loop with its loading shown beside it).
Prints suggestions with evidence and the measured speed-up / memory change / loss drift,
and writes everything as JSON to ``--out/advisor_gpu.json``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dsnotebook import ModelTracer, detect_gpu
from dsnotebook.core.jsonsafe import to_json


def resnet50_case():
    try:
        import torchvision
    except ImportError:
        return None, "torchvision is not installed (pip install torchvision)"
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = TensorDataset(torch.randn(512, 3, 224, 224), torch.randint(0, 1000, (512,)))
    loader = DataLoader(data, batch_size=64, shuffle=True, drop_last=True)

    def step(batch):
        x, y = batch
        x, y = x.cuda(non_blocking=True), y.cuda(non_blocking=True)
        if next(model.parameters()).is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return (model, opt, loader, step), None


def gpt2_case():
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None, "transformers is not installed (pip install transformers)"
    torch.manual_seed(0)
    cfg = GPT2Config(use_cache=False)  # 124M: 12 layers, 768 wide, 12 heads; no KV cache in training
    # (a cache mutated inside a checkpointed block would be updated again by the recomputation)
    model = GPT2LMHeadModel(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    loader = DataLoader(TensorDataset(torch.randint(0, cfg.vocab_size, (256, 512))), batch_size=8, shuffle=True,
                        drop_last=True)

    def step(batch):
        (ids,) = batch
        ids = ids.cuda(non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        return loss
    return (model, opt, loader, step), None


def _forever(loader):
    while True:
        yield from loader


def run_case(name: str, parts, steps: int, out: pathlib.Path) -> dict:
    model, opt, loader, step = parts
    hw = detect_gpu()
    t0 = time.time()
    with ModelTracer(model, opt, profile_every=2, capture_graph=False) as tracer:
        it = _forever(loader)
        for _ in range(12):
            step(next(it))
        win = tracer.profile_window(active=2, wait=0, warmup=1, trace_path=str(out / f"{name}_trace.json"))
        for _ in range(3):
            step(next(it))
        win.close()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    from dsnotebook.perf import measures

    ph = measures.phases(tracer.run)
    print(f"\n=== {name}: {1e3 * ph.get('step', 0):.1f} ms/step; phases (ms): "
          + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in ph.items() if k not in ("step", "step_traced")))
    mem = measures.memory(tracer.run)
    print(f"    memory: peak {mem.get('peak_allocated', 0) / 2**30:.2f} GiB, params {mem.get('params', 0) / 2**20:.0f} MiB, "
          f"activations {sum(measures.activations_by_module(tracer.run).values()) / 2**20:.0f} MiB; "
          f"profiled in {time.time() - t0:.0f} s")
    suggestions = tracer.advise(hardware=hw, data=loader)
    results = []
    for s in suggestions:
        print(f"\n  * {s.title}\n    evidence: {s.evidence}\n    estimated: {s.gain}")
        if not s.can_verify:
            print("    (no automatic variant: " + s.verify_hint + ")")
            results.append(s.to_record())
            continue
        t1 = time.time()
        try:
            r = s.verify(step, steps=steps, data=loader, warmup=2)
            print(f"    {r}  [{time.time() - t1:.0f} s]")
        except Exception as exc:  # report and go on with the next suggestion
            print(f"    verification failed: {type(exc).__name__}: {exc}")
        results.append(s.to_record())
    print(f"\n  {name} summary:")
    for rec in results:
        r = rec.get("result") or {}
        if r.get("speedup") is not None:
            mem = r.get("memory_change")
            print(f"    {rec['status']:<9} {rec['id']:<18} x{r['speedup']:.2f} "
                  f"(IQR {r['speedup_iqr'][0]:.2f}-{r['speedup_iqr'][1]:.2f})"
                  + (f", memory {100 * mem:+.0f}%" if mem is not None else "")
                  + (f", loss drift {100 * r['loss_drift']:+.2f}%" if r.get("loss_drift") is not None else "")
                  + (f"; loop with loading x{loop['speedup']:.2f}"
                     if (loop := (r.get("extra") or {}).get("with_loading")) else ""))
        else:
            print(f"    {rec['status']:<9} {rec['id']:<18} {r.get('error', '(not verifiable automatically)')}")
    return {"case": name, "phases": ph, "memory": mem, "suggestions": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="all", choices=("resnet50", "gpt2", "all"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("advisor_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hw = detect_gpu()
    print(hw)
    print(hw.get_optimal_settings())
    report = {"hardware": hw.to_dict(), "cases": []}
    for name, make in (("resnet50", resnet50_case), ("gpt2", gpt2_case)):
        if args.case not in (name, "all"):
            continue
        parts, why = make()
        if parts is None:
            print(f"\n=== {name}: skipped: {why}")
            continue
        report["cases"].append(run_case(name, parts, args.steps, out))
        del parts
        torch.cuda.empty_cache()
    (out / "advisor_gpu.json").write_text(json.dumps(to_json(report), indent=1, allow_nan=False))
    print(f"\nwritten: {out / 'advisor_gpu.json'}")


if __name__ == "__main__":
    main()
