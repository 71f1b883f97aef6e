"""Per-rank tables of rank 0's Run as DataFrames with a ``rank`` column: phases, skew, stragglers.

The one source of every per-rank number the rank x phase view, the text summary and the
advisor show (like :mod:`dsnotebook.perf.measures` for one process): medians over the sampled
steps, the first (warm-up) sampled step left out when there are later ones.

Who is the straggler?  In a synchronised job every rank's step lasts as long as the slowest
rank's, so step times alone cannot tell; the difference is *what a rank does* in that time.
A rank's ``work`` is what it computes or loads itself: data loading, the compute inside
forward and backward (leaf modules, which never wait in a collective) and the optimizer.
Its ``wait`` is the rest of the step (the time spent in collectives waiting for the others,
which DDP shows after the backward and FSDP2 inside the passes; dsnotebook's own work is left
out).  The straggler score of a rank is its work minus the least work of any rank, as a share
of the median step: the fraction of every step the job waits for that rank.  Its
``excess_phase`` is the phase where its work exceeds the median rank's most.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dsnotebook.core.clock import PHASES, STEP
from dsnotebook.distributed.packing import PHASE_KEYS
from dsnotebook.run.fields import GRAD_FIELDS, derive_grad_fields

__all__ = ["WIDE_KEYS", "STEP_TIME", "rank_phases", "rank_phase_table", "phase_skew", "straggler_scores", "straggler",
           "rank_grads",
           "STRAGGLER_SCORE", "WORK_PHASES"]

#: a rank whose score is at least this (5% of every step spent waiting for it) is named the straggler
STRAGGLER_SCORE = 0.05
#: the parts of a step a rank does by itself ("fwd"/"bwd": the compute inside the passes)
WORK_PHASES: tuple[str, ...] = ("data", "fwd", "bwd", "opt")
_PHASE_COLUMNS = ["step", "rank", "phase", "seconds"]
STEP_TIME = "step_time"  # the phase "step" (the step's wall time) once phases are columns beside the step number
#: columns of the rank x phase table: the phases, the step's wall time, the compute inside the passes
WIDE_KEYS: tuple[str, ...] = tuple(STEP_TIME if k == STEP else k for k in PHASE_KEYS)
_GRAD_COLUMNS = ["step", "rank", "tensor_id", "name", "numel", "norm", "mean", "std", "absmax", "nonfinite",
                 "zero_frac", "contributes"]


def rank_phases(run: Any) -> pd.DataFrame:
    """Every rank's sampled steps: columns step, rank, phase, seconds (long format; phases are
    :data:`~dsnotebook.distributed.packing.PHASE_KEYS`)."""
    return pd.DataFrame(run.records.tables.get("rank_phases", []), columns=_PHASE_COLUMNS)


def _steady(df: pd.DataFrame) -> pd.DataFrame:
    steps = sorted(df["step"].unique())
    return df[df["step"].isin(steps[1:])] if len(steps) > 1 else df


def _wide(run: Any) -> pd.DataFrame:
    """One row per (step, rank) of the steady sampled steps, one column per phase key, plus work and wait."""
    df = rank_phases(run)
    if df.empty:
        return pd.DataFrame(columns=["step", "rank", *WIDE_KEYS, "work", "wait"])
    wide = df.pivot_table(index=["step", "rank"], columns="phase", values="seconds", aggfunc="last")
    wide = wide.rename(columns={STEP: STEP_TIME}).reindex(columns=list(WIDE_KEYS))
    wide.columns.name = None
    wide = wide.reset_index()
    # complete steps only: a step some rank has not delivered yet would skew the comparison
    n_ranks = wide["rank"].nunique()
    wide = wide[wide.groupby("step")["rank"].transform("count") == n_ranks]
    wide = _steady(wide)
    for p in PHASES:
        wide[p] = wide[p].fillna(0.0)
    fwd = wide["fwd_compute"].where(wide["fwd_compute"].notna(), wide["fwd"])
    bwd = wide["bwd_compute"].where(wide["bwd_compute"].notna(), wide["bwd"])
    wide["work"] = wide["data"] + fwd + bwd + wide["opt"]
    wide["wait"] = np.maximum(0.0, wide[STEP_TIME] - wide["tracer"] - wide["work"])
    return wide.reset_index(drop=True)


def rank_phase_table(run: Any) -> pd.DataFrame:
    """Rank x phase: median seconds over the steady sampled steps (index ``rank``; columns
    :data:`WIDE_KEYS` (the phases, ``step_time``, ``fwd_compute``, ``bwd_compute``), ``work`` and ``wait``)."""
    wide = _wide(run)
    cols = [*WIDE_KEYS, "work", "wait"]
    if wide.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="rank"))
    return wide.groupby("rank")[cols].median()


def phase_skew(run: Any) -> pd.DataFrame:
    """Per phase (index): ``skew_s`` (median over steps of the slowest minus the fastest rank),
    ``slowest_rank`` (the rank most often slowest), ``share`` (skew as a share of the median step)."""
    wide = _wide(run)
    cols = ["skew_s", "slowest_rank", "share"]
    keys = [*PHASES, STEP_TIME, "fwd_compute", "bwd_compute", "work", "wait"]
    if wide.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="phase"))
    step = float(wide[STEP_TIME].median()) or float("nan")
    rows = {}
    for p in keys:
        g = wide[wide[p].notna()].groupby("step")[p]
        if not g.ngroups:
            continue
        skew = float((g.max() - g.min()).median())
        slow = wide.loc[g.idxmax().to_numpy(), "rank"].mode()
        rows[p] = {"skew_s": skew, "slowest_rank": int(slow.iloc[0]) if len(slow) else -1, "share": skew / step}
    out = pd.DataFrame.from_dict(rows, orient="index")[cols]
    out.index.name = "phase"
    return out


def straggler_scores(run: Any) -> pd.DataFrame:
    """Per rank (index): ``work_s``, ``wait_s``, ``step_s`` (medians), ``score`` (see the module
    docstring), ``excess_phase``, ``excess_s`` and ``straggler`` (True for at most one rank)."""
    wide = _wide(run)
    cols = ["work_s", "wait_s", "step_s", "score", "excess_phase", "excess_s", "straggler"]
    if wide.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="rank"))
    wide = wide.assign(fwd=wide["fwd_compute"].where(wide["fwd_compute"].notna(), wide["fwd"]),
                       bwd=wide["bwd_compute"].where(wide["bwd_compute"].notna(), wide["bwd"]))
    # per step, against the least-working rank of that step; then the median over steps
    least = wide.groupby("step")["work"].transform("min")
    step = wide.groupby("step")[STEP_TIME].transform("median")
    wide["score"] = (wide["work"] - least) / step.where(step > 0, np.nan)
    med = wide.groupby("rank")[[*WORK_PHASES, "work", "wait", STEP_TIME, "score"]].median()
    excess = med[list(WORK_PHASES)] - med[list(WORK_PHASES)].median()
    out = pd.DataFrame({"work_s": med["work"], "wait_s": med["wait"], "step_s": med[STEP_TIME], "score": med["score"],
                        "excess_phase": excess.idxmax(axis=1), "excess_s": excess.max(axis=1)})
    out["straggler"] = False
    if len(out) > 1 and out["score"].max() >= STRAGGLER_SCORE:
        out.loc[out["score"].idxmax(), "straggler"] = True
    out.index.name = "rank"
    return out[cols]


def straggler(run: Any) -> int | None:
    """The straggler rank, or None (one rank, no sampled steps, or no rank slow enough)."""
    s = straggler_scores(run)
    hit = s.index[s["straggler"].astype(bool)]
    return int(hit[0]) if len(hit) else None


def rank_grads(run: Any) -> pd.DataFrame:
    """Each rank's own gradient statistics per recorded step and tensor (long format: step, rank,
    tensor_id, name, numel (local), norm, mean, std, absmax, nonfinite, zero_frac, contributes).

    Under FSDP2 these are the statistics of each rank's shard; under DDP every rank's values are
    the same all-reduced gradient's.
    """
    rows = run.records.tables.get("rank_grads", [])
    if not rows:
        return pd.DataFrame(columns=_GRAD_COLUMNS)
    lengths = [len(r["tensor_id"]) for r in rows]

    def col(key: str, dtype: Any) -> np.ndarray:
        parts = [np.asarray(r[key], dtype=dtype).reshape(-1) for r in rows]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    ids = col("tensor_id", np.int64)
    numel = col("numel", np.int64)
    raw = np.stack([col(k, np.float64) for k in ("sum", "sumsq", "absmax", "nonfinite", "zeros")], axis=1)
    vals = derive_grad_fields(raw, numel)
    names = np.array([t["name"] for t in run.tensors] or [""], dtype=object)
    df = pd.DataFrame({"step": np.repeat([r["step"] for r in rows], lengths).astype(np.int64),
                       "rank": np.repeat([r["rank"] for r in rows], lengths).astype(np.int64),
                       "tensor_id": ids, "name": names[ids] if len(run.tensors) else "", "numel": numel})
    for k, f in enumerate(GRAD_FIELDS):
        df[f] = vals[:, k]
    df["nonfinite"] = df["nonfinite"].astype(np.int64)
    df["contributes"] = col("contributes", bool)
    return df[_GRAD_COLUMNS]
