"""Runs with something in every table, and the check that two Runs hold the same data."""
from __future__ import annotations

import numpy as np

from dsnotebook.core.jsonsafe import to_json
from dsnotebook.run import ACT_FIELDS, Run
from dsnotebook.run.frames import TABLES
from dsnotebook.stats.reference import COL_NONFINITE, GRAD_COLS, HIST_OFFSET, UPDATE_COLS

TENSORS = [{"tensor_id": i, "name": f"l{i}.weight", "module": f"l{i}", "tensor": "weight", "shape": [n],
            "dtype": "float32", "numel": n, "trainable": True, "aliases": []} for i, n in enumerate((4, 6, 8))]
ONE = np.zeros(1, np.int32)


def grad_raw(x: np.ndarray) -> np.ndarray:
    """Backend layout of one tensor, computed with plain numpy (finite elements only)."""
    x = np.asarray(x, np.float64).reshape(-1)
    f = x[np.isfinite(x)]
    row = np.zeros(GRAD_COLS)
    row[:HIST_OFFSET] = [f.sum(), (f * f).sum(), np.abs(f).max(initial=0.0), x.size - f.size, (x == 0).sum()]
    row[HIST_OFFSET] = (f == 0).sum()
    row[HIST_OFFSET + 1] = (f != 0).sum()
    return row


def act_row(module: str, call: int, seed: int, dead: tuple | list = ()) -> dict:
    rng = np.random.default_rng(seed)
    r = {"module": module, "type": "Linear", "dead": list(dead)}
    r.update({f: float(rng.random()) for f in ACT_FIELDS})
    r.update({"call": call, "dead_units": len(dead), "units": 8, "nonfinite": 0})
    return r


def record_step(run: Run, s: int, rng: np.random.Generator) -> None:
    """One step of every kind of row (a second optimizer, activations every 4th step, records)."""
    raws = np.stack([grad_raw(rng.normal(size=n)) for n in (4, 6, 8)])
    raws[1, COL_NONFINITE] = s % 3
    run.add_grads(s, [0, 1], raws[:2])
    run.add_grads(s, [2], raws[2:])  # a second optimizer
    run.add_updates(s, [0, 1, 2], rng.random((3, UPDATE_COLS)))
    if s % 4 == 0:
        run.add_activations(s, [act_row("l0", 0, s, dead=[s % 8]), act_row(f"m{s // 8}", 0, s + 1)])
    run.add_records("timings", [{"step": s, "module": "l0", "phase": "fwd", "seconds": 0.001 * s, "calls": 1}])
    run.add_records("memory", [{"step": s, "module": "l0", "kind": "activations", "bytes": 64 * s}])
    run.add_records("calls", [{"step": s, "call": 0, "parent": None, "name": "fuse", "kind": "function",
                               "level": "info", "depth": 0, "thread": "MainThread", "start_s": 0.5 * s,
                               "wall_s": 0.01, "device_s": None, "inputs": [{"name": "x", "shape": [2]}],
                               "outputs": [], "error": None, "overhead_s": 1e-6}])
    run.add_records("rank_phases", [{"step": s, "rank": r, "phase": "fwd", "seconds": 0.1 + r} for r in (0, 1)])
    run.add_records("rank_grads", [{"step": s, "rank": 0, "tensor_id": [0, 1], "numel": [4, 6], "sum": [1.5, 2.0],
                                    "sumsq": [3.0, 4.0], "absmax": [1.0, 2.0], "nonfinite": [0, 0],
                                    "zeros": [0, 1], "contributes": [True, True]}])
    run.add_records("sentinel", [{"step": s + 1, "grad_norm": 0.5 * s, "nonfinite_tensors": 0, "tensors": 3}])


def full_run(keep: int = 8, steps: range = range(0, 40, 2)) -> Run:
    """A thinned run with rows in every table (steps, events, graph, profile, suggestions)."""
    run = Run(TENSORS, meta={"command": "%%deepseek_trace", "model": {"params": 18}}, keep=keep)
    rng = np.random.default_rng(2)
    for s in steps:
        record_step(run, s, rng)
        if s == 12:
            run.add_event(12, "nonfinite", "l1", "2 non-finite <values>")
    run.add_event(None, "warning", None, "no step")
    run.set_graph(GRAPH)
    run.add_records("profile", [{"module": "l0", "phase": "fwd", "cpu_s": 0.1, "device_s": 0.0, "ops": 3,
                                 "top_ops": ["aten::mm"]}])
    run.add_records("suggestions", [SUGGESTION])
    return run


GRAPH = {"nodes": [{"id": "n0", "kind": "module", "label": "l0", "name": "l0", "type": "Linear", "params": 4,
                    "call": 0, "parent": None, "order": 0, "leaf": True, "shapes": [[4]], "param_inputs": []}],
         "edges": [{"id": "e0", "source": "n0", "target": "n0", "tensor": "t", "shape": [4], "dtype": "float32",
                    "device": "cpu"}]}
SUGGESTION = {"id": "r1", "rule": "r", "title": "t", "category": "c", "severity": "info", "evidence": {"x": 1},
              "gain": "2x", "snippet": "s", "verify_hint": "", "can_verify": False, "status": "new", "result": None}


def assert_same_run(a: Run, b: Run, tables: tuple[str, ...] = TABLES, lists: bool = True) -> None:
    """Same retained steps, thinning state, every table and per-step array (``lists``: and metadata,
    events, graph, tensors, modules)."""
    assert b.steps == a.steps and b.dropped_steps == a.dropped_steps
    if lists:
        assert to_json(b.meta) == to_json(a.meta) and b.events == a.events and b.graph == a.graph
        assert b.tensors == a.tensors and b.act_modules == a.act_modules
    for table in tables:
        x, y = a.to_dataframe(table), b.to_dataframe(table)
        assert list(x.columns) == list(y.columns), table
        assert len(x) == len(y), (table, len(x), len(y))
        if table in a.records.tables:  # JSON rows: numpy values come back as plain numbers and lists
            assert to_json(a.records.tables[table]) == b.records.tables[table], table
        else:
            assert x.astype(str).equals(y.astype(str)) and list(x.dtypes) == list(y.dtypes), table
    for s in a.steps:
        for x, y in zip(a.grads_at(s) or (), b.grads_at(s) or ()):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
        for x, y in zip(a.updates_at(s) or (), b.updates_at(s) or ()):
            np.testing.assert_array_equal(x, y)
        assert a.nonfinite_at(s) == b.nonfinite_at(s) and a.has_activations(s) == b.has_activations(s)
        if a.has_activations(s):
            x, y = a.activations_at(s), b.activations_at(s)
            assert x.modules == y.modules and [d.tolist() for d in x.dead] == [d.tolist() for d in y.dead]
            np.testing.assert_array_equal(x.values, y.values)
