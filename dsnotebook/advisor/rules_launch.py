"""Host overhead: kernel launches (torch.compile / CUDA graphs) and per-tensor optimizer loops."""
from __future__ import annotations

from typing import Any

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.settings import compile_helps
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant, compile_in_place, set_optimizer_impl

PER_LAYER_S = 50e-6  # fwd+bwd per leaf-module call below this: launches, not math, set the pace
HOST_OVER_DEVICE = 1.0  # profiler window: host op time above device time
OPT_SHARE = 0.10


def _launch_evidence(run: Any) -> dict[str, Any] | None:
    prof = run.records.tables["profile"]
    if prof:
        host = sum(r["cpu_s"] for r in prof if r["phase"] in ("fwd", "bwd"))
        dev = sum(r["device_s"] for r in prof if r["phase"] in ("fwd", "bwd"))
        if dev > 0 and host > HOST_OVER_DEVICE * dev:
            return {"source": "torch.profiler window", "host_op_ms": 1e3 * host, "device_ms": 1e3 * dev}
        return None
    times = measures.module_times(run)
    leaves = measures.leaf_modules(list(times.index))
    calls = int(times.loc[leaves, "calls"].clip(lower=1).sum())
    ph = measures.phases(run)
    compute = ph.get("fwd", 0.0) + ph.get("bwd", 0.0)
    if calls < 8 or compute <= 0:
        return None
    per = compute / calls
    if per >= PER_LAYER_S:
        return None
    return {"source": "per-layer hook timing", "leaf_calls": calls, "fwd_bwd_ms": 1e3 * compute,
            "us_per_layer_call": 1e6 * per}


def compile_launch_bound(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    s = ctx.settings(run)
    if not compile_helps(hw) or s.get("compiled"):
        return None
    ev = _launch_evidence(run)
    if ev is None:
        return None
    variant = (Variant("torch.compile (in place)", enter=lambda c: compile_in_place(c.model), min_warmup=3)
               if ctx.model is not None else None)
    return Suggestion(
        rule="compile", category="speed",
        title="The step is launch-bound: fuse kernels with torch.compile"
              + (" (CUDA graphs for tiny steps)" if hw.device == "cuda" else ""),
        evidence=ev,
        gain="x1.3-2 when many small kernels dominate; 'reduce-overhead' removes launch cost entirely",
        snippet="model.compile()                      # in place; or model = torch.compile(model)\n"
                "# tiny, static-shape steps: CUDA graphs\n# model.compile(mode='reduce-overhead')",
        verify_hint="A/B after a few warm-up steps (the first steps compile); loss drift should stay tiny",
        variant=variant)


def fused_optimizer(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    ph = measures.phases(run)
    step, opt_s = ph.get("step", 0.0), ph.get("opt", 0.0)
    if step <= 0 or opt_s / step < OPT_SHARE:
        return None
    opt = ctx.optimizer
    groups = getattr(opt, "param_groups", None) or []
    if any(g.get("fused") for g in groups):
        return None
    has_fused = bool(groups) and all("fused" in g for g in groups)
    names = run.meta.get("optimizers") or [type(opt).__name__ if opt is not None else "optimizer"]
    impl = "fused" if (has_fused or not groups) else "foreach"
    if impl == "foreach" and any(g.get("foreach") for g in groups):
        return None
    name = names[0] if names else "Adam"
    variant = (Variant(f"{name}({impl}=True)", enter=lambda c: set_optimizer_impl(c.optimizer, impl))
               if opt is not None else None)
    return Suggestion(
        rule="fused_optimizer", category="speed",
        title=f"The optimizer takes {100 * opt_s / step:.0f}% of the step: use the {impl} implementation",
        evidence={"opt_ms": 1e3 * opt_s, "step_ms": 1e3 * step, "opt_share": opt_s / step,
                  "tensors": len(run.tensors), "optimizer": name},
        gain="the optimizer phase several times faster (one kernel for all tensors instead of one per tensor)",
        snippet=f"optimizer = torch.optim.{name}(model.parameters(), lr=..., {impl}=True)",
        verify_hint=f"A/B with {impl}=True set on the optimizer's param groups; losses should match closely",
        variant=variant)
