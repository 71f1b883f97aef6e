"""Section 3 of gpu_stats.py: ModelTracer end to end on ResNet-50 and GPT-2 124M (see its docstring)."""
from __future__ import annotations

import time
import traceback
from typing import Callable

import torch

from _gpu_common import PROFILES, _iqr, _med, say

# ---------------------------------------------------------------------------- bench 3
def _resnet_step(bf16: bool, dev: str = "cuda", batch: int = 64):
    """torchvision ResNet-50, SGD with momentum; bf16: autocast + channels_last (model and input)."""
    import torchvision

    model = torchvision.models.resnet50().to(dev)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return model, opt, step


def _gpt2_step(bf16: bool = False, dev: str = "cuda", shape: tuple[int, int] = (8, 512)):
    """GPT-2 124M (transformers config, random init), AdamW; bf16: autocast around forward and loss."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config()
    model = GPT2LMHeadModel(cfg).to(dev)
    ids = torch.randint(0, cfg.vocab_size, shape, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()

    return model, opt, step


def _block(step: Callable[[], None], n: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e3


def bench3(res: dict, pairs: int, steps: int) -> None:
    from dsnotebook import ModelTracer

    say(f"\n[3] end to end, ModelTracer(backend='cupy') every step; {pairs} interleaved pairs of {steps} steps")
    cases = [("resnet50 fp32 b64", lambda: _resnet_step(False)),
             ("resnet50 bf16-autocast channels_last b64", lambda: _resnet_step(True)),
             ("gpt2-124M fp32 8x512", _gpt2_step)]
    for name, make in cases:
        try:
            model, opt, step = make()
            tracer = ModelTracer(model, opt, backend="cupy")
            _block(step, 5)
            with tracer:
                _block(step, 5)  # plans built, kernels compiled
            plain, traced, ratios = [], [], []
            for i in range(pairs):
                t: dict[bool, float] = {}
                for on in ((False, True) if i % 2 == 0 else (True, False)):
                    if on:
                        with tracer:
                            t[on] = _block(step, steps)
                    else:
                        t[on] = _block(step, steps)
                plain.append(t[False]); traced.append(t[True]); ratios.append(t[True] / t[False])
            # host time of the tracer's hooks, measured directly (grads present, after a backward)
            spent = [0.0]  # host time inside the statistics backend (dsnotebook.kernels)
            for be in tracer._backends.values():
                for meth in ("grad_stats", "snapshot", "update_stats"):
                    orig = getattr(be, meth)

                    def timed(*a, _orig=orig, **k):
                        t0 = time.perf_counter()
                        try:
                            return _orig(*a, **k)
                        finally:
                            spent[0] += time.perf_counter() - t0

                    setattr(be, meth, timed)
            with tracer:
                step()  # leaves every p.grad in place for the direct hook calls below
                hook_us = []
                spent[0] = 0.0
                for _ in range(50):
                    t0 = time.perf_counter()
                    tracer._pre_step(opt, (), {})
                    tracer._post_step(opt, (), {})
                    hook_us.append((time.perf_counter() - t0) * 1e6)
                backend_us = spent[0] / 50 * 1e6
                torch.cuda.synchronize()
                import cProfile
                import io
                import pstats

                prof = cProfile.Profile()
                prof.enable()
                for _ in range(50):
                    tracer._pre_step(opt, (), {})
                    tracer._post_step(opt, (), {})
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(22)
                PROFILES.append(f"==== {name}: tracer hooks x50 (pre+post), by own time\n{buf.getvalue()}")
                torch.cuda.synchronize()
                # host time to issue one plain step (CPU-bound steps: about the step time)
                t0 = time.perf_counter()
                step()
                issue_ms = (time.perf_counter() - t0) * 1e3
                torch.cuda.synchronize()
            tracer.flush(wait=True)
            backends = tracer.run.meta.get("backends")
            bes = list(tracer._backends.values())
            builds = {"grad_layouts": sum(getattr(b, "_grad_plans").builds for b in bes if hasattr(b, "_grad_plans")),
                      "param_layouts": sum(getattr(b, "_param_plans").builds for b in bes if hasattr(b, "_param_plans"))}
            r = {"plain_ms": _med(plain), "plain_iqr": _iqr(plain), "traced_ms": _med(traced),
                 "traced_iqr": _iqr(traced), "overhead_pct": 100 * (_med(ratios) - 1),
                 "overhead_iqr_pct": tuple(100 * (q - 1) for q in _iqr(ratios)),
                 "plain_spread_pct": 100 * (_iqr(plain)[1] - _iqr(plain)[0]) / _med(plain),
                 "hook_host_us": _med(hook_us), "hook_host_pct_of_step": 100 * _med(hook_us) / 1e3 / _med(plain),
                 "backends": backends, "plan_builds": builds, "issue_ms_one_step": issue_ms,
                 "backend_host_us_per_step": backend_us,
                 "tensors": len(list(model.parameters())),
                 "recorded_steps": len(getattr(tracer.run, "steps", []))}
            res.setdefault("bench3", {})[name] = r
            say(f"  {name:<42} plain {r['plain_ms']:7.2f} ms  traced {r['traced_ms']:7.2f} ms  overhead "
                f"{r['overhead_pct']:+5.2f}% (IQR {r['overhead_iqr_pct'][0]:+.2f}..{r['overhead_iqr_pct'][1]:+.2f}%)"
                f"  hooks {r['hook_host_us']:.0f} us = {r['hook_host_pct_of_step']:.2f}% of a step"
                f" (of which stats backend {backend_us:.0f} us)  {backends}"
                f"  builds {builds}  plain-step IQR {r['plain_iqr'][0]:.2f}..{r['plain_iqr'][1]:.2f} ms"
                f"  host issue of one step {issue_ms:.1f} ms")
            del model, opt, step, tracer
            torch.cuda.empty_cache()
        except Exception:
            say(f"  {name}: FAILED\n" + traceback.format_exc())
