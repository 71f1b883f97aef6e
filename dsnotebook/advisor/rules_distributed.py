"""Communication-bound DDP: the gradient all-reduce takes a large share of the step."""
from __future__ import annotations

from typing import Any

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.suggestion import Suggestion

COMM_SHARE = 0.3


def ddp_communication(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    dist = run.meta.get("distributed") or {}
    if dist.get("world_size", 1) < 2:
        return None
    ph = measures.phases(run)
    step, comm = ph.get("step", 0.0), ph.get("comm", 0.0)
    if step <= 0 or comm / step < COMM_SHARE:
        return None
    bucket_mb = (run.meta.get("ddp") or {}).get("bucket_cap_mb", 25.0)
    grads = sum(t["numel"] * 4 for t in run.tensors if t.get("trainable", True))
    return Suggestion(
        rule="ddp_communication", category="distributed", severity="warning",
        title=f"Gradient all-reduce takes {100 * comm / step:.0f}% of the step on {dist['world_size']} ranks",
        evidence={"comm_ms": 1e3 * comm, "step_ms": 1e3 * step, "comm_share": comm / step,
                  "buckets_per_step": measures.comm_buckets(run), "bucket_cap_mb": bucket_mb,
                  "gradient_mb": round(grads / 2**20, 1), "backend": dist.get("backend")},
        gain="PowerSGD rank 1-4 cuts the bytes sent 10-100x; bigger buckets and overlap hide the rest",
        snippet="from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powerSGD\n"
                "state = powerSGD.PowerSGDState(process_group=None, matrix_approximation_rank=2,\n"
                "                               start_powerSGD_iter=1000)\n"
                "model.register_comm_hook(state, powerSGD.powerSGD_hook)\n"
                "# or: DDP(model, bucket_cap_mb=100, gradient_as_bucket_view=True, static_graph=True)\n"
                "# with gradient accumulation: `with model.no_sync():` on all but the last micro-batch",
        verify_hint="DDP allows one comm hook, set before the first forward: restart with it and compare the "
                    "comm share in the performance panel",
        target="speed")
