"""Communication-bound distributed steps: the gradient collectives take a large share of the step.

DDP: the all-reduce (timed by :class:`~dsnotebook.perf.comm.CommTimer`) -> bigger buckets and
overlap, or a compression comm hook (bf16 halves the bytes, PowerSGD cuts them 10-100x).
FSDP2: the all-gathers and reduce-scatters (timed by :func:`~dsnotebook.perf.comm.time_fsdp`)
-> reduce in bf16, keep the last blocks unsharded after forward, prefetch.

With every rank's phases gathered, the share is the *least* of the ranks' comm shares: a rank
that waits for a straggler spends that wait inside its collectives, which is the straggler's
cost (the straggler rule's), not the network's.

None of these can be verified by the in-process A/B harness: every rank must switch at once,
and DDP takes one comm hook, registered before the first forward.  The hint says how to
compare two runs instead (the comm share in the rank x phase view).
"""
from __future__ import annotations

from typing import Any

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.distributed import rank_phase_table

COMM_SHARE = 0.3

_DDP_SNIPPET = (
    "from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook as powerSGD\n"
    "# halve the bytes: all-reduce in bf16 (numbers change by bf16 rounding of the gradient)\n"
    "model.register_comm_hook(None, default_hooks.bf16_compress_hook)\n"
    "# or cut them 10-100x: low-rank PowerSGD (warm-up with plain all-reduce first)\n"
    "# state = powerSGD.PowerSGDState(process_group=None, matrix_approximation_rank=2, start_powerSGD_iter=1000)\n"
    "# model.register_comm_hook(state, powerSGD.powerSGD_hook)\n"
    "# bigger buckets and better overlap:\n"
    "# DDP(model, bucket_cap_mb=100, gradient_as_bucket_view=True, static_graph=True)\n"
    "# with gradient accumulation: `with model.no_sync():` on all but the last micro-batch")
_FSDP_SNIPPET = (
    "from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard\n"
    "mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16)  # half the bytes\n"
    "for block in model.blocks:\n"
    "    fully_shard(block, mp_policy=mp)\n"
    "fully_shard(model, mp_policy=mp, reshard_after_forward=False)  # no re-gather of the root in backward\n"
    "# prefetch one more block ahead when the all-gathers are exposed:\n"
    "# model.blocks[i].set_modules_to_forward_prefetch([model.blocks[i + 1], model.blocks[i + 2]])")


def ddp_communication(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    dist = run.meta.get("distributed") or run.meta.get("ranks") or {}
    if dist.get("world_size", 1) < 2:
        return None
    ph = measures.phases(run)
    step, comm = ph.get("step", 0.0), ph.get("comm", 0.0)
    table = rank_phase_table(run)
    by_rank = {} if table.empty else {int(r): float(c / s) for r, c, s in
                                      zip(table.index, table["comm"], table["step_time"]) if s > 0}
    if by_rank:  # the rank that waits least pays only for the transfers
        least = min(by_rank, key=by_rank.__getitem__)
        step, comm = float(table.loc[least, "step_time"]), float(table.loc[least, "comm"])
    if step <= 0 or comm / step < COMM_SHARE:
        return None
    fsdp = (run.meta.get("ranks") or {}).get("mode") == "fsdp2"
    grads = sum(t["numel"] * 4 for t in run.tensors if t.get("trainable", True))
    evidence: dict[str, Any] = {"comm_ms": 1e3 * comm, "step_ms": 1e3 * step, "comm_share": comm / step,
                                "buckets_per_step": measures.comm_buckets(run), "gradient_mb": round(grads / 2**20, 1),
                                "backend": dist.get("backend"), "world_size": dist["world_size"]}
    if by_rank:
        evidence["comm_share_by_rank"] = {r: round(v, 3) for r, v in by_rank.items()}
    if fsdp:
        what, snippet = "FSDP2's all-gathers and reduce-scatters take", _FSDP_SNIPPET
        gain = "bf16 reduction halves the bytes; unsharded last blocks and prefetching hide the rest behind compute"
    else:
        what, snippet = "The gradient all-reduce takes", _DDP_SNIPPET
        evidence["bucket_cap_mb"] = (run.meta.get("ddp") or {}).get("bucket_cap_mb", 25.0)
        gain = "bf16 compression halves the bytes, PowerSGD rank 1-4 cuts them 10-100x; bigger buckets hide the rest"
    return Suggestion(
        rule="ddp_communication", category="distributed", severity="warning",
        title=f"{what} {100 * comm / step:.0f}% of the step on {dist['world_size']} ranks", evidence=evidence,
        gain=gain, snippet=snippet,
        verify_hint="not verifiable in this process: every rank must change together (DDP takes one comm hook, "
                    "set before the first forward). Restart the job with the change and compare the comm share in "
                    "the rank x phase view",
        target="speed")
