"""The one source of every performance number a view or a rule shows, read from a Run.

The performance panel, the text summary, the advisor's rules and the report all read
these functions, so a number means the same everywhere: medians over sampled steps, so
one odd step decides nothing, and the first sampled step dropped when there are later
ones (it carries one-off costs: lazy initialisation, allocator growth, cuDNN autotuning,
worker start-up).  Phase names come from :mod:`dsnotebook.core.clock` (defined once).

Results are pandas DataFrames with documented columns, or small dicts made from one.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Iterable

import numpy as np
import pandas as pd

from dsnotebook.core.clock import PHASES, STEP

__all__ = ["PHASES", "STEP", "steady", "timings", "step_phases", "phases", "comm_buckets", "module_times",
           "leaf_modules", "memory_rows", "memory", "activations_by_module", "blocks", "param_dtypes",
           "conv_weights", "global_grad_norms"]

STEP_MODULE = "(step)"  # the module name of whole-step rows in the timings table
_INDEX = re.compile(r"(?:^|\.)\d+(?=\.|$)")  # ".3" in "layers.3.fc", "0" in "0.fc" (a Sequential model)
_TIMING_COLUMNS = ["step", "module", "phase", "seconds", "calls"]


def steady(steps: Iterable[int]) -> list[int]:
    """The sampled steps the medians use: all but the first (warm-up) one when there are later ones."""
    s = sorted({int(x) for x in steps})
    return s[1:] if len(s) > 1 else s


def timings(run: Any) -> pd.DataFrame:
    """The Run's timings table: columns step, module, phase, seconds, calls (one row per module x phase
    x sampled step; module "(step)" holds the step's phases)."""
    rows = [r for r in run.records.tables["timings"] if r.get("step") is not None]
    return pd.DataFrame(rows, columns=_TIMING_COLUMNS)


def step_phases(run: Any) -> pd.DataFrame:
    """One row per sampled step, in step order.

    Columns: ``step``; one per phase of :data:`PHASES` (seconds, 0 when absent);
    ``step_traced`` (the measured wall time, dsnotebook's own work included); ``step_s`` (the
    step without the tracer's work: what the user's loop costs); ``warmup`` (True for the first
    sampled step when later ones exist: left out of every median).  Only steps with a whole-step
    row appear.
    """
    df = timings(run)
    df = df[df["module"] == STEP_MODULE]
    cols = ["step", *PHASES, "step_traced", "step_s", "warmup"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    wide = df.pivot_table(index="step", columns="phase", values="seconds", aggfunc="last")
    if STEP not in wide:
        return pd.DataFrame(columns=cols)
    wide = wide[wide[STEP].notna()]
    out = pd.DataFrame({"step": wide.index.astype(int)})
    for p in PHASES:
        out[p] = wide[p].fillna(0.0).to_numpy(dtype=float) if p in wide else 0.0
    out["step_traced"] = wide[STEP].to_numpy(dtype=float)
    out["step_s"] = np.maximum(0.0, out["step_traced"] - out["tracer"])
    keep = set(steady(out["step"]))
    out["warmup"] = ~out["step"].isin(keep)
    return out[cols].reset_index(drop=True)


def phases(run: Any) -> dict[str, float]:
    """Seconds per phase of the steady sampled step with the median step time (one real step, so
    the parts add up); {} if unprofiled.

    Keys: every phase of :data:`PHASES`, ``step`` (without the tracer's work) and ``step_traced``
    (the measured wall time).  Of an even number of steps the faster middle one is taken.
    """
    df = step_phases(run)
    df = df[~df["warmup"].astype(bool)]
    if df.empty:
        return {}
    df = df.sort_values(["step_s", "step"], kind="stable")
    row = df.iloc[(len(df) - 1) // 2]
    out = {p: float(row[p]) for p in PHASES}
    out.update(step=float(row["step_s"]), step_traced=float(row["step_traced"]))
    return out


def comm_buckets(run: Any) -> int:
    """Median number of gradient buckets a steady sampled step sent (0 without comm timing)."""
    df = timings(run)
    df = df[(df["module"] == STEP_MODULE) & (df["phase"] == "comm")]
    df = df[df["step"].isin(steady(df["step"]))]
    return int(df["calls"].median()) if len(df) else 0


def module_times(run: Any) -> pd.DataFrame:
    """Per module (index, in model order): ``fwd`` and ``bwd`` (median seconds over the steady
    sampled steps, 0 for a step without that phase) and ``calls`` (forward calls per step, median)."""
    df = timings(run)
    df = df[(df["module"] != STEP_MODULE) & df["phase"].isin(("fwd", "bwd"))]
    if df.empty:
        return pd.DataFrame(columns=["fwd", "bwd", "calls"], index=pd.Index([], name="module"))
    order = list(dict.fromkeys(df["module"]))
    df = df[df["step"].isin(steady(df["step"]))]
    sec = df.pivot_table(index=["module", "step"], columns="phase", values="seconds", aggfunc="sum", fill_value=0.0)
    for p in ("fwd", "bwd"):
        if p not in sec:
            sec[p] = 0.0
    out = sec[["fwd", "bwd"]].groupby(level="module").median()
    calls = df[df["phase"] == "fwd"].groupby("module")["calls"].median()
    out["calls"] = calls.reindex(out.index).fillna(0).astype(int)
    out = out.reindex([m for m in order if m in out.index])
    out.index.name = "module"
    return out


def leaf_modules(names: list[str]) -> list[str]:
    """Modules with no child among ``names`` (containers include their children's time); the root
    only when it is the one module."""
    s = set(names)
    leaves = [n for n in names if n != "(root)" and not any(o.startswith(n + ".") for o in s)]
    return leaves or [n for n in names if n == "(root)"]


def memory_rows(run: Any) -> pd.DataFrame:
    """The latest sampled step's memory rows: columns module, kind, bytes (kind: activations per
    module; params, grads, optimizer_state for "(model)"; peak_allocated, reserved or rss, peak_rss)."""
    rows = [r for r in run.records.tables["memory"] if r.get("step") is not None]
    if not rows:
        return pd.DataFrame(columns=["module", "kind", "bytes"])
    last = max(r["step"] for r in rows)
    return pd.DataFrame([{"module": str(r["module"]), "kind": str(r["kind"]), "bytes": int(r["bytes"] or 0)}
                         for r in rows if r["step"] == last], columns=["module", "kind", "bytes"])


def memory(run: Any) -> dict[str, int]:
    """Latest sampled step: kind -> bytes (params, grads, optimizer_state, peak_allocated, rss, activations total)."""
    df = memory_rows(run)
    return {str(k): int(v) for k, v in df.groupby("kind", sort=False)["bytes"].sum().items()}


def activations_by_module(run: Any) -> dict[str, int]:
    """Latest sampled step: module -> bytes saved for backward while it ran."""
    df = memory_rows(run)
    df = df[df["kind"] == "activations"]
    return {str(m): int(b) for m, b in zip(df["module"], df["bytes"])}


def blocks(act: dict[str, int]) -> dict[str, int]:
    """Activation bytes per repeated block (``layers.3``, ``encoder.layer.11``, ``2`` of an
    ``nn.Sequential`` model): paths ending in an index whose siblings exist too -- the natural unit
    of activation checkpointing.  The outermost indexed level wins (``layers.3``, not ``layers.3.sub.1``)."""
    per: dict[str, int] = defaultdict(int)
    for module, b in act.items():
        for m in _INDEX.finditer(module):  # every indexed level: layers.3 and layers.3.sub.1
            per[module[:m.end()]] += b
    parents: dict[str, list[str]] = defaultdict(list)
    for name in per:
        parents[name.rpartition(".")[0]].append(name)
    out = {}
    for names in parents.values():
        if len(names) >= 2:
            for n in names:
                out[n] = per[n]
    # nested indices (layers.0.sub.1): keep the outermost blocks only
    return {n: b for n, b in out.items() if not any(n != o and n.startswith(o + ".") for o in out)}


def param_dtypes(run: Any) -> set[str]:
    return {t.get("dtype", "float32") for t in run.tensors if t.get("trainable", True)}


def conv_weights(run: Any) -> int:
    """Number of 4-D/5-D weight tensors (convolutions)."""
    return sum(1 for t in run.tensors if t.get("tensor") == "weight" and len(t.get("shape", ())) in (4, 5))


def global_grad_norms(run: Any) -> tuple[list[int], np.ndarray]:
    """(steps, global gradient norm per step, NaN/inf included as such)."""
    df = run.to_dataframe("grads")
    if df.empty:
        return [], np.zeros(0)
    g = df.groupby("step")
    norms = g["norm"].apply(lambda s: float(np.sqrt(np.sum(np.square(s.to_numpy(dtype=np.float64))))))
    nonfinite = g["nonfinite"].sum()
    vals = norms.to_numpy()
    vals = np.where(nonfinite.reindex(norms.index).to_numpy() > 0, np.nan, vals)
    return norms.index.tolist(), vals
