"""Ranks that do not pull together: one straggler rank, or work that moves from rank to rank.

Both read the per-rank phases rank 0 gathered (:mod:`dsnotebook.distributed.ranks`).  A
*straggler* is the same rank, step after step, doing more of its own work than the others
(they wait for it in every collective): the advice depends on where its extra time goes.
*Uneven work* is compute that differs across ranks with the slowest rank changing from step
to step: the batches differ in cost (variable sequence lengths, data-dependent branches).
Neither can be verified in one process: the hint says what to compare after a change.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.distributed import rank_phases, straggler_scores
from dsnotebook.distributed.ranks import STEP_TIME

UNEVEN_SHARE = 0.10  # compute spread across ranks, as a share of the step
UNEVEN_MOVES = 0.6  # ... and no rank is the slowest in more than this share of the steps

_ADVICE = {
    "data": ("its data loading (or work between steps: logging, evaluation, checkpointing)",
             "loader = torch.utils.data.DataLoader(dataset, batch_size=..., num_workers=8, pin_memory=True,\n"
             "    persistent_workers=True, prefetch_factor=4,\n"
             "    sampler=torch.utils.data.distributed.DistributedSampler(dataset, drop_last=True))\n"
             "# and keep rank-0-only work (logging, eval, checkpoints) off the step: every N steps, or async"),
    "fwd": ("its forward compute (a slower or throttled GPU, another process on it, or a costlier batch)",
            "# on the straggler's host: nvidia-smi -q -d PERFORMANCE,CLOCK  (throttle reasons, clocks)\n"
            "#                           nvidia-smi --query-compute-apps=pid,used_memory --format=csv\n"
            "# equal batches per rank: pad or bucket sequences to the same length"),
    "bwd": ("its backward compute (a slower or throttled GPU, another process on it, or a costlier batch)",
            "# on the straggler's host: nvidia-smi -q -d PERFORMANCE,CLOCK  (throttle reasons, clocks)\n"
            "# equal batches per rank: pad or bucket sequences to the same length"),
    "opt": ("its optimizer step (CPU offload or extra work on that rank only)",
            "# keep per-rank optimizer work equal: no rank-specific CPU offload; fused optimizers:\n"
            "optimizer = torch.optim.AdamW(model.parameters(), lr=..., fused=True)"),
}


def straggler_rank(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    scores = straggler_scores(run)
    hit = scores[scores["straggler"].astype(bool)]
    if hit.empty:
        return None
    rank = int(hit.index[0])
    row = hit.iloc[0]
    phase = str(row["excess_phase"])
    where, snippet = _ADVICE.get(phase, _ADVICE["data"])
    score, step_s = float(row["score"]), float(row["step_s"])
    return Suggestion(
        rule="straggler_rank", category="distributed", severity="warning",
        title=f"Rank {rank} is the straggler: the job waits for it {100 * score:.0f}% of every step "
              f"({where.split(' (')[0]})",
        evidence={"rank": rank, "score": score, "excess_phase": phase,
                  "excess_ms": 1e3 * float(row["excess_s"]), "step_ms": 1e3 * step_s,
                  "work_ms_by_rank": {int(r): round(1e3 * float(w), 2) for r, w in scores["work_s"].items()},
                  "wait_ms_by_rank": {int(r): round(1e3 * float(w), 2) for r, w in scores["wait_s"].items()}},
        gain=f"up to {1e3 * score * step_s:.1f} ms per step (x{1 / max(1e-9, 1 - score):.2f}) if rank {rank} did "
             "no more work than the fastest rank",
        snippet=snippet,
        verify_hint=f"not verifiable in this process: fix {where} on rank {rank}, rerun, and compare its straggler "
                    "score in the rank x phase view",
        target="speed")


def uneven_work(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    df = rank_phases(run)
    if df.empty or df["rank"].nunique() < 2:
        return None
    flat = df.pivot_table(index=["step", "rank"], columns="phase", values="seconds", aggfunc="last")
    if not {"fwd_compute", "bwd_compute", "step"} <= set(flat.columns):
        return None
    flat = flat.rename(columns={"step": STEP_TIME}).reset_index()
    flat["compute"] = flat["fwd_compute"] + flat["bwd_compute"]
    flat = flat[flat["compute"].notna() & (flat["step"] > flat["step"].min())]  # warm-up step left out
    steps = flat.groupby("step")
    if steps.ngroups < 3:
        return None
    share = float(np.median((steps["compute"].max() - steps["compute"].min()) / steps[STEP_TIME].median()))
    slowest = flat.loc[steps["compute"].idxmax(), ["step", "rank"]]
    top_share = float(slowest["rank"].value_counts(normalize=True).iloc[0])
    if share < UNEVEN_SHARE or top_share > UNEVEN_MOVES:
        return None
    return Suggestion(
        rule="uneven_work", category="distributed", severity="info",
        title=f"Compute differs by {100 * share:.0f}% of the step across ranks, and the slowest rank changes "
              "from step to step: the batches differ in cost",
        evidence={"compute_spread_share": share, "slowest_rank_share": top_share, "steps": int(steps.ngroups),
                  "slowest_rank_by_step": {int(a): int(b) for a, b in zip(slowest["step"], slowest["rank"])}},
        gain=f"up to {100 * share:.0f}% of the step: every rank waits for the costliest batch of each step",
        snippet="# give every rank batches of equal cost: bucket by length, or pad to a fixed length\n"
                "from torch.utils.data import DataLoader\n"
                "batches = sorted(range(len(ds)), key=lambda i: len(ds[i]))  # then chunk, shuffle the chunks\n"
                "# or token-budget batching: the same number of tokens per rank and step",
        verify_hint="not verifiable in this process: change the batching, rerun, and compare the compute spread "
                    "across ranks in the rank x phase view",
        target="speed")
