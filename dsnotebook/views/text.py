"""Readable text summary of a Run: the view for terminals, scripts and nbconvert text."""
from __future__ import annotations

import numpy as np

from dsnotebook.core.clock import PHASE_LABELS, PHASES
from dsnotebook.perf import measures
from dsnotebook.run.store import Run


def _fmt(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-" if x is None or np.isnan(x) else str(x)
    return f"{x:.3g}"


def layer_table(run: Run) -> list[dict]:
    """Per tensor: last and median grad norm, last update ratio, non-finite total."""
    steps = run.steps
    norm = run.matrix("norm", steps)
    ratio = run.matrix("update_ratio", steps)
    nonfinite = run.matrix("nonfinite", steps)
    rows = []
    for i, t in enumerate(run.tensors):
        seen = ~np.isnan(norm[i])
        last = float(norm[i][seen][-1]) if seen.any() else float("nan")
        med = float(np.nanmedian(norm[i])) if seen.any() else float("nan")
        rseen = ~np.isnan(ratio[i])
        rows.append({"name": t["name"], "numel": t["numel"], "last_norm": last, "median_norm": med,
                     "update_ratio": float(ratio[i][rseen][-1]) if rseen.any() else float("nan"),
                     "nonfinite": int(np.nansum(nonfinite[i])), "steps": int(seen.sum())})
    return rows


def nonfinite_lines(run: Run) -> list[str]:
    """One line per located non-finite episode, first one first: what to read before anything else."""
    out = []
    for e in run.events:
        if e["kind"] != "nonfinite":
            continue
        where = f"in {e['module']}" if e["module"] else "(module not located)"
        prefix = "FIRST NON-FINITE" if not out else "non-finite"
        out.append(f"!! {prefix} at step {e['step']} {where}: {e['detail']}")
    return out


def activation_lines(run: Run, max_rows: int = 12) -> list[str]:
    """Modules with dead units (or non-finite outputs) at the last sampled step."""
    if not run.act_modules:
        return []
    df = run.to_dataframe("activations")
    if df.empty:
        return []
    last = df[df.step == df.step.max()]
    bad = last[(last.dead_units > 0) | (last.nonfinite > 0)]
    lines = [f"activations (step {int(last.step.iloc[0])}, {len(last)} module outputs): "
             + (f"{len(bad)} with dead units or non-finite values" if len(bad) else "no dead units, all finite")]
    for r in bad.head(max_rows).itertuples():
        idx = ", ".join(str(i) for i in r.dead_indices[:8]) + (", ..." if len(r.dead_indices) > 8 else "")
        lines.append(f"  {r.module:<32} dead {r.dead_units}/{r.units}" + (f" [{idx}]" if r.dead_units else "")
                     + f"  zero frac {r.zero_frac:.2f}" + (f"  non-finite {r.nonfinite}" if r.nonfinite else ""))
    return lines


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3g} ms"


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def performance_lines(run: Run, max_layers: int = 5) -> list[str]:
    """The step split, slowest layers and memory: the numbers the performance panel and the advisor
    show (``dsnotebook.perf.measures``: the median steady sampled step, warm-up left out)."""
    ph = measures.phases(run)
    if not ph:
        return []
    per_step = measures.step_phases(run)
    steady = int((~per_step["warmup"].astype(bool)).sum())
    left_out = " (warm-up step left out)" if steady < len(per_step) else ""
    wall = ph["step_traced"] or 1.0
    lines = [f"performance: median step {_ms(ph['step'])} of {steady} sampled steps{left_out}",
             "  " + " · ".join(f"{PHASE_LABELS[p]} {_ms(ph[p])} ({100 * ph[p] / wall:.0f}%)"
                               for p in PHASES if ph.get(p, 0.0) > 0)]
    times = measures.module_times(run)
    leaves = times.loc[measures.leaf_modules(list(times.index))] if len(times) else times
    if len(leaves):
        top = (leaves["fwd"] + leaves["bwd"]).sort_values(ascending=False, kind="stable").head(max_layers)
        lines.append("  slowest layers (forward + backward): " + ", ".join(f"{m} {_ms(v)}" for m, v in top.items()))
    mem = measures.memory(run)
    if mem:
        lines.append("  memory: " + ", ".join(f"{k} {_bytes(v)}" for k, v in mem.items()))
    return lines


def text_summary(run: Run, max_rows: int = 40) -> str:
    """A compact per-tensor gradient table plus a line per warning/non-finite event."""
    steps = run.steps
    head = (f"dsnotebook: {run.meta.get('model', 'model')} - {len(run.tensors)} tensors, "
            f"{len(steps)} recorded steps" + (f" ({steps[0]}..{steps[-1]})" if steps else ""))
    first = nonfinite_lines(run)
    if first:
        head += "\n" + "\n".join(first)
    rows = layer_table(run)
    width = min(48, max([len(r["name"]) for r in rows] + [6]))
    lines = [head, f"{'tensor':<{width}} {'numel':>9} {'grad norm':>10} {'median':>10} {'upd/w':>9} {'nonfin':>7}"]
    for r in rows[:max_rows]:
        name = r["name"] if len(r["name"]) <= width else "…" + r["name"][-(width - 1):]
        flag = "  <- non-finite" if r["nonfinite"] else ("  (no grad)" if r["steps"] == 0 else "")
        lines.append(f"{name:<{width}} {r['numel']:>9} {_fmt(r['last_norm']):>10} {_fmt(r['median_norm']):>10} "
                     f"{_fmt(r['update_ratio']):>9} {r['nonfinite']:>7}{flag}")
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more tensors (tracer.to_dataframe('grads') has them all)")
    lines += activation_lines(run)
    lines += performance_lines(run)
    if run.records.tables.get("rank_phases"):  # rank 0 of a distributed job
        from dsnotebook.views.rank_panel import rank_text

        lines.append(rank_text(run))
    for e in [e for e in run.events if e["kind"] != "nonfinite"][-5:]:
        lines.append(f"[{e['kind']}] step {e['step']}: {e['detail']}")
    return "\n".join(lines)
