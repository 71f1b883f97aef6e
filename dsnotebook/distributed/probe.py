"""RankStatsProbe: every rank's local statistics, gathered to rank 0 as whole-job statistics.

The tracer adds it instead of the gradient and update probes when torch.distributed is
initialised (:mod:`dsnotebook.trace.compose`).  On every rank, at each recorded step:

* right before the optimizer updates, the gradients it holds (the local shard of each
  DTensor under FSDP2, the whole all-reduced gradient under DDP) go through the usual
  backend in one batched call per device; after the update, the update sums of the local
  weights; results reach the host asynchronously, as on one process;
* the timing probe's phases of each sampled step (read from this rank's Run) wait beside them;
* every ``gather_every`` steps all of it is packed into one preallocated byte packet and
  gathered to rank 0 (:mod:`dsnotebook.distributed.collect`: one ``gather``, asynchronous, on
  its own gloo group); rank 0 writes whole-job and per-rank rows to its Run
  (:mod:`dsnotebook.distributed.merge`).

Every rank also keeps a heartbeat of its last phase (:mod:`dsnotebook.distributed.hang`) for
the report written when a collective times out, and tells the others when it raised.  With
an exception propagating out of the traced block, detach waits for nothing: the gather in
flight is abandoned, its group destroyed, so a failure on one rank never hangs the others
in dsnotebook's code.  Create the tracer on every rank, after ``fully_shard`` / DDP wrapping.
"""
from __future__ import annotations

import itertools
import sys
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from dsnotebook.core.probe import Probe, ProbeContext, StepBatch
from dsnotebook.distributed.collect import CollectiveTimeout, Collector
from dsnotebook.distributed.hang import Heartbeat, is_collective_failure
from dsnotebook.distributed.merge import Merger
from dsnotebook.distributed.packing import FLAG_CONTRIBUTES, FLAG_SHARDED, FLAG_UPDATE, RECORD, Layout
from dsnotebook.distributed.timings import phase_values, rows_of_step
from dsnotebook.distributed.world import World, contributes, is_sharded, local_tensor, world
from dsnotebook.stats.scaling import unscale_grad_stats

__all__ = ["RankStatsProbe"]

_GENERATION = itertools.count()  # same sequence on every rank: keys of this tracer's heartbeats


class _Step:
    """One recorded step's local records, filled as device results reach the host."""

    __slots__ = ("rec", "present", "submitted", "arrived")

    def __init__(self, n: int) -> None:
        self.rec = np.zeros(n, RECORD)
        self.rec["id"] = np.arange(n, dtype=np.int32)
        self.present = np.zeros(n, bool)
        self.submitted = 0
        self.arrived = 0


class RankStatsProbe(Probe):
    """Local statistics on every rank, whole-job and per-rank rows on rank 0 (see the module docstring).

    ``gather_every``: steps between collections; ``timeout``: seconds the statistics group
    waits for a rank; ``heartbeat``: seconds between heartbeats; ``hang_after``: seconds
    without a phase change before a hang report (None: never).
    """

    name = "ranks"

    def __init__(self, gather_every: int = 10, *, every: int | None = None, track_updates: bool | None = None,
                 timeout: float = 120.0, heartbeat: float = 1.0, hang_after: float | None = 300.0,
                 align_every: int | None = None, update_every: int | None = None) -> None:
        for label, v in (("gather_every", gather_every), ("every", every), ("align_every", align_every),
                         ("update_every", update_every)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{label} must be a positive integer, got {v!r}")
        if timeout <= 0 or heartbeat <= 0 or (hang_after is not None and hang_after <= 0):
            raise ValueError("timeout, heartbeat and hang_after must be positive seconds")
        self.gather_every, self.every, self.track_updates = gather_every, every, track_updates
        self.timeout, self.heartbeat, self.hang_after = timeout, heartbeat, hang_after
        self.align_every, self.update_every = align_every, update_every
        self.collector: Collector | None = None
        self.merger: Merger | None = None
        self.beat: Heartbeat | None = None
        self.hang_report: str | None = None  # the latest report (every one: ``reports``)
        self.reports: list[str] = []
        self._hooks: list[Any] = []
        self._unsubscribe: Any = None
        self._broken = True  # until attach succeeds: every hook is a no-op

    def configure(self, every: int, track_updates: bool, align_every: int | None = None,
                  update_every: int = 1) -> None:
        """The tracer's own settings, where this probe was not given its own.  ``align_every``: the
        activation sampling period; on those steps rank 0 merges before the step's activation rows
        are recorded (the Run's steps only move forward).  ``update_every``: update statistics on
        every k-th recorded step."""
        self.every = self.every if self.every is not None else every
        self.track_updates = self.track_updates if self.track_updates is not None else track_updates
        self.align_every = self.align_every if self.align_every is not None else align_every
        self.update_every = self.update_every if self.update_every is not None else update_every

    def _updates_at(self, step: int) -> bool:
        """Every ``update_every``-th recorded step, decided by the step number alone: every rank agrees."""
        return (step // (self.every or 1)) % (self.update_every or 1) == 0

    def _aligned(self, step: int) -> bool:
        return self.align_every is not None and step % self.align_every == 0

    def records(self, step: int) -> bool:
        return step % (self.every or 1) == 0

    # -- lifecycle -------------------------------------------------------------------------
    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        self.every = self.every or 1
        self.track_updates = True if self.track_updates is None else self.track_updates
        self.world: World = world() or World(0, 1, "none", "")
        rank, size = self.world.rank, self.world.size
        params = ctx.params
        self._n = len(params)
        sharded = np.array([is_sharded(p) for p in params], bool)
        self._flags = (np.array([contributes(p, rank) for p in params], bool) * FLAG_CONTRIBUTES
                       + sharded * FLAG_SHARDED).astype(np.int32)
        with torch.no_grad():
            self._numel = np.array([local_tensor(p).numel() for p in params], np.int64)
        per = -(-self.gather_every // self.every)
        layout = Layout(self._n, grad_slots=per + 2, phase_slots=self.gather_every + 2)
        self._pending: dict[int, _Step] = {}
        self._phases: dict[int, np.ndarray] = {}
        self._snaps: dict[int, tuple[int, list[tuple[Any, Any, np.ndarray, list[torch.Tensor]]]]] = {}
        self._closing = self._final_done = False
        self._step = ctx.step()
        self._next = (self._step // self.gather_every + 1) * self.gather_every
        try:
            self.collector = Collector(layout, rank, size, self.timeout)
        except Exception as exc:  # e.g. a rank that never creates its tracer: new_group times out
            self.collector = None
            raise RuntimeError(f"distributed statistics are off: rank {rank} could not set up the statistics "
                               f"group ({type(exc).__name__}: {exc}); create the tracer on every rank, at the same "
                               "point of the script") from exc
        self._broken = False
        self.merger = Merger(ctx.run, size, self._n) if rank == 0 else None
        self._unsubscribe = ctx.run.subscribe(self._on_run)
        model = ctx.model()
        if model is not None:
            self._hooks = [model.register_forward_pre_hook(self._forward_starts),
                           model.register_forward_hook(self._forward_ends, always_call=True)]
        self.beat = Heartbeat(_default_store(size), f"dsnotebook/{next(_GENERATION)}", rank, size,
                              self.heartbeat, self.hang_after, self._on_hang).start()
        self.beat.mark(self._step, "data loading")
        mode = "fsdp2" if sharded.all() else ("ddp" if not sharded.any() else "mixed")
        ctx.run.meta["ranks"] = {**self.world.to_dict(), "gather_every": self.gather_every, "mode": mode,
                                 "sharded_tensors": int(sharded.sum()), "whole_job": _WHOLE_JOB[mode]}

    def detach(self) -> None:
        exc = sys.exc_info()[1]
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self.collector is None:
            return
        if exc is not None or self._broken:
            self._fail(exc)
        else:
            self._closing = True
            self._maybe_final()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def hook_count(self) -> int:
        return len(self._hooks)

    # -- the step clock ---------------------------------------------------------------------
    def _forward_starts(self, module: Any, args: Any) -> None:
        self.beat.mark(self._step, "forward")

    def _forward_ends(self, module: Any, args: Any, output: Any) -> None:
        self.beat.mark(self._step, "backward")
        if self.merger is not None and not self._broken and self._aligned(self._step) and self.collector.in_flight:
            try:  # activation rows of this step come next: the earlier whole-job rows go in first
                self._finish()
            except CollectiveTimeout as exc:  # never raise from a hook
                self._broken = True
                self._report(f"the statistics gather failed ({exc})", self._step)
                self.collector.abandon()

    def before_forward(self, step: int) -> None:
        if self.beat is None:
            return
        self._step = step  # the tracer's own counter moves on only at the next optimizer call
        self.beat.mark(step, "data loading")
        if (step >= self._next or self._aligned(step)) and not self._broken:
            self._next = (step // self.gather_every + 1) * self.gather_every
            self._collect(step)

    def after_forward(self, step: int) -> None:
        if not self._broken and self.collector is not None and self.collector.done():
            self._finish()  # already complete: merge now, without waiting

    def pre_step(self, batch: StepBatch) -> None:
        if self._broken or self.beat is None:
            return
        self.beat.mark(batch.step, "optimizer")
        if not self.records(batch.step):
            return
        params, ids = self.ctx.params, batch.grad_ids
        scale = _loss_scale(batch.optimizer)
        if ids:
            with torch.no_grad():
                grads = [local_tensor(params[i].grad) for i in ids]
            for device, sub, tensors in _by_device(ids, grads):
                values = self.ctx.backend(device).grad_stats(tensors)
                if scale is not None:  # travels with the statistics, divided out on the host (no sync)
                    values = torch.cat([values.reshape(-1), scale.detach().to(values.device, values.dtype).reshape(1)])
                self._submit(batch.step, values, np.array(sub, np.intp), "grad" if scale is None else "scaled")
        if self.track_updates and batch.optimizer is not None and batch.update_ids and self._updates_at(batch.step):
            with torch.no_grad():
                weights = [local_tensor(params[i]) for i in batch.update_ids]
            snaps = []
            for device, sub, tensors in _by_device(batch.update_ids, weights):
                backend = self.ctx.backend(device)
                snaps.append((backend, backend.snapshot(tensors), np.array(sub, np.intp), tensors))
            self._snaps[id(batch.optimizer)] = (batch.step, snaps)

    def post_step(self, batch: StepBatch) -> None:
        if self._broken:
            return
        if batch.optimizer is None:
            return
        step, snaps = self._snaps.pop(id(batch.optimizer), (None, None))
        for backend, before, idx, tensors in snaps or ():
            self._submit(step, backend.update_stats(before, tensors), idx, "upd")

    # -- local results ---------------------------------------------------------------------
    def _submit(self, step: int, values: torch.Tensor, idx: np.ndarray, kind: str) -> None:
        st = self._pending.get(step)
        if st is None:
            st = self._pending[step] = _Step(self._n)
        st.submitted += 1
        # who listens: this probe's pending step, packed at the next collection
        self.ctx.submit(values, lambda host, st=st, idx=idx, kind=kind: self._arrived(st, idx, host, kind))

    def _arrived(self, st: _Step, idx: np.ndarray, host: np.ndarray, kind: str) -> None:
        rec = st.rec
        if kind == "scaled":  # a fused optimizer's loss-scaled gradients (GradScaler)
            host, kind = unscale_grad_stats(host[:-1].reshape(len(idx), -1), float(host[-1])), "grad"
        if kind == "grad":
            g = rec["grad"]
            g[idx] = host[:, :g.shape[1]]
            rec["hist"][idx] = host[:, g.shape[1]:g.shape[1] + rec["hist"].shape[1]]
            st.present[idx] = True
        else:
            rec["upd"][idx] = host
            rec["flags"][idx] |= FLAG_UPDATE
        st.arrived += 1
        if self._closing:
            self._maybe_final()

    def _on_run(self, kind: str, steps: list[int]) -> None:
        if kind != "timings":
            return
        rows = self.ctx.run.records.tables["timings"]
        for s in steps:
            values = phase_values(rows_of_step(rows, s))
            if values is not None:
                self._phases[s] = values

    # -- collections -----------------------------------------------------------------------
    def _collect(self, step: int, final: bool = False) -> None:
        self.beat.mark(step, "dsnotebook statistics gather")
        try:
            self._finish()
            self._pack(step, final)
            self.collector.issue()
            if final:
                self._finish()
        except CollectiveTimeout as exc:
            self._broken = True
            self._report(f"the statistics gather failed ({exc})", step)
            self.collector.abandon()
        self.beat.mark(step, "data loading")

    def _finish(self, timeout: float | None = None) -> None:
        if self.collector.in_flight and self.collector.wait(timeout) and self.merger is not None:
            self.merger.merge(self.collector.recv_views)

    def _pack(self, step: int, final: bool) -> None:
        head, slots, records, phases = self.collector.next_buffer()
        ready = sorted(s for s, st in self._pending.items()
                       if (s < step or final) and st.arrived == st.submitted)[:len(slots)]
        for i, s in enumerate(ready):
            st = self._pending.pop(s)
            rec = st.rec[st.present]
            rec["flags"] |= self._flags[st.present]
            rec["numel"] = self._numel[st.present]
            slots[i] = (s, len(rec))
            records[i, :len(rec)] = rec
        done = sorted(self._phases)[:len(phases)]
        for i, s in enumerate(done):
            phases[i] = (s, self._phases.pop(s))
        head[0] = (self.world.rank, 1 if final else 0, len(ready), len(done), step)

    def _maybe_final(self) -> None:
        """The last collection, once every local result has landed (GPU copies drain after detach)."""
        if self._final_done or any(st.arrived < st.submitted for st in self._pending.values()):
            return
        self._final_done = True
        try:
            self._collect(self._step, final=True)
        finally:
            self._close("detached")

    def _fail(self, exc: BaseException | None) -> None:
        """An exception leaves the traced block (or a gather failed): tell the others, wait for nothing."""
        self._final_done = True
        if exc is not None:
            first = str(exc).splitlines()[0] if str(exc) else ""
            if is_collective_failure(exc):  # the report first: this rank is the one that saw it fail
                self._report(f"a collective failed ({type(exc).__name__}: {first[:200]})", self._step)
            self.beat.write(f"raised {type(exc).__name__}: {first[:160]}")
        self._close(None)

    def _close(self, status: str | None) -> None:
        if self.collector is not None:
            self.collector.close()
        if self.beat is not None:
            self.beat.stop(status or self.beat.status)

    # -- hang reports ------------------------------------------------------------------------
    def _on_hang(self, report: str) -> None:
        """From the heartbeat thread: print now (the process may be killed), record at detach."""
        self.hang_report = report
        self.reports.append(report)
        print(report, file=sys.stderr, flush=True)

    def _report(self, reason: str, step: int) -> None:
        report = self.hang_report = self.beat.report(reason)
        self.reports.append(report)
        print(report, file=sys.stderr, flush=True)
        self.ctx.run.add_event(step, "warning", None, report)
        warnings.warn(report.splitlines()[0], RuntimeWarning, stacklevel=2)


_WHOLE_JOB = {
    "fsdp2": "every rank holds a shard of each gradient: the whole-job statistics add the shards' sums, "
             "counts and histograms (exact statistics of the unsharded gradient)",
    "ddp": "every rank holds the same all-reduced (averaged) gradient: the whole-job statistics are that "
           "gradient's (rank 0's); per-rank values are kept in rank_grads and must agree",
    "mixed": "sharded tensors add their shards; replicated tensors are taken from rank 0",
}


def _loss_scale(optimizer: torch.optim.Optimizer | None) -> torch.Tensor | None:
    """The loss scale GradScaler handed a self-unscaling (fused) optimizer: its grads are still scaled."""
    if optimizer is None or not getattr(optimizer, "_step_supports_amp_scaling", False):
        return None
    scale = getattr(optimizer, "grad_scale", None)
    return scale if isinstance(scale, torch.Tensor) else None


def _by_device(ids: list[int], tensors: list[torch.Tensor]) -> list[tuple[torch.device, list[int], list[torch.Tensor]]]:
    groups: dict[torch.device, tuple[list[int], list[torch.Tensor]]] = defaultdict(lambda: ([], []))
    for i, t in zip(ids, tensors):
        groups[t.device][0].append(i)
        groups[t.device][1].append(t)
    return [(d, sub, ts) for d, (sub, ts) in groups.items()]


def _default_store(size: int) -> Any:
    """The job's c10d store (heartbeats); None for a job of one or when torch keeps it hidden."""
    if size < 2:
        return None
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:
        return None
