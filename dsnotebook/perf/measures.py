"""Numbers the rules read from a Run: medians over sampled steps, so one odd step decides nothing.

The first sampled step is dropped when there are later ones (it carries one-off costs:
lazy initialisation, allocator growth, cuDNN autotuning, worker start-up).
"""
from __future__ import annotations

import re
import statistics
from collections import defaultdict
from typing import Any

import numpy as np

_BLOCK = re.compile(r"^(.*\.\d+)(?:\.|$)")


def _steps(rows: list[dict[str, Any]]) -> list[int]:
    steps = sorted({r["step"] for r in rows if r.get("step") is not None})
    return steps[1:] if len(steps) > 1 else steps


def phases(run: Any) -> dict[str, float]:
    """Seconds per step phase (data, fwd, bwd, opt, comm, tracer, other, step) of the sampled step with
    the median step time (one real step, so the parts add up); {} if unprofiled.

    ``step`` excludes ``tracer`` (the statistics dsnotebook computes at the optimizer hooks);
    ``step_traced`` is the measured wall time."""
    rows = [r for r in run.records.tables["timings"] if r["module"] == "(step)"]
    keep = set(_steps(rows))
    per: dict[int, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["step"] in keep:
            per[r["step"]][r["phase"]] = r["seconds"]
    per = {k: v for k, v in per.items() if "step" in v}
    if not per:
        return {}
    order = sorted(per, key=lambda k: per[k]["step"] - per[k].get("tracer", 0.0))
    out = dict(per[order[(len(order) - 1) // 2]])
    out["step_traced"] = out["step"]
    out["step"] = max(0.0, out["step"] - out.get("tracer", 0.0))
    return out


def comm_buckets(run: Any) -> int:
    rows = [r for r in run.records.tables["timings"] if r["module"] == "(step)" and r["phase"] == "comm"]
    return int(statistics.median([r["calls"] for r in rows])) if rows else 0


def module_times(run: Any) -> dict[str, dict[str, float]]:
    """module -> {"fwd": median s, "bwd": median s, "calls": n} over sampled steps."""
    rows = [r for r in run.records.tables["timings"] if r["module"] != "(step)"]
    keep = set(_steps(rows))
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    calls: dict[str, int] = {}
    for r in rows:
        if r["step"] in keep:
            acc[(r["module"], r["phase"])].append(r["seconds"])
            calls[r["module"]] = r["calls"]
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"fwd": 0.0, "bwd": 0.0, "calls": 0})
    for (m, ph), v in acc.items():
        out[m][ph] = statistics.median(v)
        out[m]["calls"] = calls.get(m, 0)
    return dict(out)


def leaf_modules(names: list[str]) -> list[str]:
    s = set(names)
    return [n for n in names if n not in ("(root)",) and not any(o.startswith(n + ".") for o in s)]


def memory(run: Any) -> dict[str, int]:
    """Latest sampled step: kind -> bytes (params, grads, optimizer_state, peak_allocated, rss, activations total)."""
    rows = run.records.tables["memory"]
    if not rows:
        return {}
    last = max(r["step"] for r in rows)
    out: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["step"] == last:
            out[r["kind"]] += int(r["bytes"])
    return dict(out)


def activations_by_module(run: Any) -> dict[str, int]:
    rows = run.records.tables["memory"]
    if not rows:
        return {}
    last = max(r["step"] for r in rows)
    return {r["module"]: int(r["bytes"]) for r in rows if r["step"] == last and r["kind"] == "activations"}


def blocks(act: dict[str, int]) -> dict[str, int]:
    """Activation bytes per repeated block (``layers.3``, ``encoder.layer.11``): paths ending in an
    index whose siblings exist too -- the natural unit of activation checkpointing."""
    per: dict[str, int] = defaultdict(int)
    for module, b in act.items():
        m = _BLOCK.match(module + ".")
        if m:
            per[m.group(1)] += b
    parents: dict[str, list[str]] = defaultdict(list)
    for name in per:
        parents[name.rsplit(".", 1)[0]].append(name)
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
