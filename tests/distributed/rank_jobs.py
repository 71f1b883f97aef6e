"""Job functions run on every rank by :func:`rank_launch.run_ranks` (gloo, CPU).

Each builds the same model from the same seed on every rank, trains a few steps on its own
slice of one batch under a tracer and returns what the test checks (rank 0 returns its Run's
tables).  The single-process references live here too, so the test and the jobs build the
same model and data.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PER_RANK = 6  # samples per rank and step


class MLP(nn.Module):
    """7 and 3 output rows: uneven shards over 2 or 4 ranks, and an empty shard on rank 3 of 4."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(8, 7)
        self.l2 = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(x)))


def cnn() -> nn.Module:
    from dsnotebook.examples import DigitsCNN

    torch.manual_seed(0)
    return DigitsCNN(channels=4, hidden=16)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP()


def batch(world: int, step: int, image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole job's batch of ``step`` (every rank takes its slice)."""
    g = torch.Generator().manual_seed(100 + step)
    n = world * PER_RANK
    x = torch.rand(n, 1, 8, 8, generator=g) if image else torch.randn(n, 8, generator=g)
    y = torch.randint(0, 10 if image else 3, (n,), generator=g)
    return x, y


def mine(t: torch.Tensor, rank: int) -> torch.Tensor:
    return t[rank * PER_RANK:(rank + 1) * PER_RANK]


def reference_grads(model: nn.Module, world: int, steps: int, image: bool) -> list[list[torch.Tensor]]:
    """One process, the whole batch: each step's gradients (the job's averaged gradient, up to rounding)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    out = []
    for s in range(steps):
        x, y = batch(world, s, image)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        out.append([p.grad.detach().clone() for p in model.parameters()])
        opt.step()
    return out


def _train(model: nn.Module, opt: torch.optim.Optimizer, rank: int, world: int, steps: int, image: bool,
           slow_rank: int | None, slow_s: float, fail_at: int | None = None, stall_at: int | None = None,
           stall_s: float = 0.0) -> None:
    for s in range(steps):
        if rank == slow_rank:
            time.sleep(slow_s)  # this rank's "data loading" is slow
        if s == stall_at and rank == 1:
            time.sleep(stall_s)
        x, y = batch(world, s, image)
        opt.zero_grad()
        out = model(mine(x, rank))
        if s == fail_at and rank == 1:
            raise ValueError("rank 1 fails on purpose")
        F.cross_entropy(out, mine(y, rank)).backward()
        opt.step()


def _rank0_tables(tr: Any) -> dict[str, Any]:
    from dsnotebook.distributed import rank_grads, rank_phase_table, straggler, straggler_scores

    run = tr.run
    grads = {s: run.grads_at(s) for s in run.steps}
    return {"grads": {s: (g.tensor_ids.copy(), g.values.copy(), g.hist.copy()) for s, g in grads.items() if g},
            "updates": tr.to_dataframe("updates"), "rank_grads": rank_grads(run), "scores": straggler_scores(run),
            "straggler": straggler(run), "table": rank_phase_table(run), "events": list(run.events),
            "names": [t["name"] for t in run.tensors]}


def ddp_job(rank: int, world: int, steps: int = 4, slow_rank: int | None = None, slow_s: float = 0.0,
            gather_every: int = 3, update_every: int = 1) -> dict[str, Any]:
    from dsnotebook import ModelTracer
    from dsnotebook.distributed import RankStatsProbe

    model = nn.parallel.DistributedDataParallel(cnn())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with ModelTracer(model, opt, profile_every=1, capture_graph=False, update_every=update_every,
                     probes=[RankStatsProbe(gather_every)]) as tr:
        _train(model, opt, rank, world, steps, True, slow_rank, slow_s)
    out = {"hooks": (tr.hook_count, tr.module_hook_count), "meta": tr.run.meta.get("ranks"),
           "own_grads": len(tr.run.steps)}
    return {**out, **_rank0_tables(tr)} if rank == 0 else out


def fsdp_job(rank: int, world: int, steps: int = 3, slow_rank: int | None = None, slow_s: float = 0.0,
             gather_every: int = 2) -> dict[str, Any]:
    from torch.distributed.fsdp import fully_shard

    from dsnotebook import ModelTracer
    from dsnotebook.distributed import RankStatsProbe
    from dsnotebook.perf.comm import time_fsdp
    from dsnotebook.stats.reference import TorchStatsBackend

    model = mlp()
    fully_shard(model.l1)
    fully_shard(model.l2)
    fully_shard(model)
    timer = time_fsdp(model)  # FSDP2's collectives, timed: the comm phase
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref, backend, before = {}, TorchStatsBackend(), {}

    def full_stats(_opt: Any, *_: Any) -> None:  # a collective on every rank, in the same order
        grads = [p.grad.full_tensor() for p in model.parameters()]
        before["w"] = [p.full_tensor().detach().clone() for p in model.parameters()]
        ref[len(ref)] = {"grads": backend.grad_stats_exact(grads).numpy()}

    def full_updates(_opt: Any, *_: Any) -> None:
        after = [p.full_tensor().detach() for p in model.parameters()]
        flat = torch.cat([w.reshape(-1) for w in before["w"]])
        ref[len(ref) - 1]["updates"] = backend.update_stats_exact(flat, after).numpy()

    opt.register_step_pre_hook(full_stats)  # before the tracer's own hooks
    opt.register_step_post_hook(full_updates)
    with ModelTracer(model, opt, profile_every=1, capture_graph=False,
                     probes=[RankStatsProbe(gather_every)]) as tr:
        _train(model, opt, rank, world, steps, False, slow_rank, slow_s)
    out = {"hooks": (tr.hook_count, tr.module_hook_count), "meta": tr.run.meta.get("ranks"),
           "local_numel": [p.to_local().numel() for p in model.parameters()], "comm_calls": timer.buckets}
    if rank == 0:
        out.update(_rank0_tables(tr), reference=ref, numel=[t["numel"] for t in tr.run.tensors],
                   update_rows=tr.run.updates_at(0))
    return out


def failing_job(rank: int, world: int, mode: str = "raise", steps: int = 5) -> dict[str, Any]:
    """mode "raise": rank 1 raises at step 2; "stall": rank 1 sleeps past the group timeout at step 2."""
    from dsnotebook import ModelTracer
    from dsnotebook.distributed import RankStatsProbe

    model = nn.parallel.DistributedDataParallel(cnn())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = RankStatsProbe(2, heartbeat=0.2, hang_after=2.0 if mode == "stall" else None)
    tr = ModelTracer(model, opt, capture_graph=False, probes=[probe])
    error = None
    t0 = time.monotonic()
    try:
        with tr:
            _train(model, opt, rank, world, steps, True, None, 0.0, fail_at=2 if mode == "raise" else None,
                   stall_at=2 if mode == "stall" else None, stall_s=6.0)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"error": error, "seconds": time.monotonic() - t0, "hooks": (tr.hook_count, tr.module_hook_count),
            "events": [e["detail"] for e in tr.run.events], "reports": list(probe.reports),
            "global_hooks": _global_optimizer_hooks()}


def _global_optimizer_hooks() -> int:
    from torch.optim import optimizer as o

    return len(o._global_optimizer_pre_hooks) + len(o._global_optimizer_post_hooks)

