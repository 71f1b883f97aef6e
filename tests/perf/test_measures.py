"""One source per number: the panel, the text summary and the advisor read perf.measures."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dsnotebook import ModelTracer, Run
from dsnotebook.advisor import advise
from dsnotebook.core.clock import PHASE_LABELS, PHASES
from dsnotebook.perf import measures
from dsnotebook.views.live_dashboard import LiveDashboard
from dsnotebook.views.perf_summary import panel_state, performance_summary
from dsnotebook.views.text import performance_lines, text_summary
from dsnotebook.widgets.perf import PHASE_STYLES, PerfWidget
from fakes import H100, tensors

STEADY = {"data": 0.001, "fwd": 0.010, "bwd": 0.015, "opt": 0.002, "comm": 0.0, "tracer": 0.001, "other": 0.002}


def run_with_slow_first_step(steps: int = 5, slow: float = 3.0) -> Run:
    """Sampled steps 0..steps-1 of a steady ~30 ms step; the first one ``slow`` times slower (warm-up)."""
    run = Run(tensors(conv=False), {"optimizers": ["SGD"], "settings": {"device": "cuda", "autocast": "bfloat16"}})
    for s in range(steps):
        k = slow if s == 0 else 1.0
        ph = {p: k * v for p, v in STEADY.items()}
        ph["step"] = sum(v for p, v in ph.items() if p != "comm")
        run.add_records("timings", [{"step": s, "module": "(step)", "phase": p, "seconds": v, "calls": 1}
                                    for p, v in ph.items()])
        run.add_records("timings", [{"step": s, "module": m, "phase": p, "seconds": k * t, "calls": 1}
                                    for m in ("layers.0.fc", "layers.1.fc") for p, t in (("fwd", 0.004), ("bwd", 0.006))])
        run.add_records("memory", [{"step": s, "module": "(model)", "kind": "params", "bytes": 1000 + s},
                                   {"step": s, "module": "layers.0.fc", "kind": "activations", "bytes": 64}])
    return run


def test_panel_step_time_is_the_advisors_median_not_a_mean_with_the_warmup_step():
    run = run_with_slow_first_step()
    steady = STEADY["data"] + STEADY["fwd"] + STEADY["bwd"] + STEADY["opt"] + STEADY["other"]
    ph = measures.phases(run)
    assert ph["step"] == pytest.approx(steady)  # ~30 ms; a mean over all 5 sampled steps would be ~42 ms
    dash = LiveDashboard(run, graph=False, perf_interval=0.0)
    try:
        dash.push_perf()
        state = json.loads(json.dumps(dash.perf.get_state(["step", "phases", "steady_steps", "sampled_steps"])))
    finally:
        dash.close()
    assert state["step"]["step"] == ph["step"] and state["step"]["data"] == ph["data"]
    assert state["steady_steps"] == 4 and state["sampled_steps"] == 5
    assert [r["warmup"] for r in state["phases"]] == [True, False, False, False, False]
    # the advisor's evidence is the same number
    run2 = run_with_slow_first_step()
    for p in run2.records.tables["timings"]:  # make the loop data-bound so the rule speaks
        if p["module"] == "(step)" and p["phase"] in ("data", "step"):
            p["seconds"] += 0.030
    (s,) = [s for s in advise(run2, H100) if s.rule == "data_loader"]
    assert s.evidence["step_ms"] == pytest.approx(1e3 * measures.phases(run2)["step"])
    assert s.evidence["step_ms"] == pytest.approx(1e3 * panel_state(run2)["step"]["step"])


def test_text_summary_shows_the_same_median_step():
    run = run_with_slow_first_step()
    lines = performance_lines(run)
    assert lines[0].startswith(f"performance: median step {1e3 * measures.phases(run)['step']:.3g} ms of 4 sampled")
    assert "warm-up step left out" in lines[0]
    assert "layers.0.fc 10 ms" in "\n".join(lines)
    assert "performance: median step" in text_summary(run)
    assert performance_lines(Run(tensors(), {})) == []


def test_step_phases_frame_and_median_step():
    run = run_with_slow_first_step(steps=4)
    df = measures.step_phases(run)
    assert list(df.columns) == ["step", *PHASES, "step_traced", "step_s", "warmup"]
    assert df["step"].tolist() == [0, 1, 2, 3] and df["warmup"].tolist() == [True, False, False, False]
    assert (df["step_s"] == df["step_traced"] - df["tracer"]).all()
    one = run_with_slow_first_step(steps=1)  # a single sampled step is all there is: kept
    assert measures.phases(one)["step"] == pytest.approx(3 * 0.030)
    assert measures.phases(Run(tensors(), {})) == {} and measures.step_phases(Run(tensors(), {})).empty


def test_module_times_are_medians_over_steady_steps_in_model_order():
    run = run_with_slow_first_step()
    times = measures.module_times(run)
    assert list(times.index) == ["layers.0.fc", "layers.1.fc"] and list(times.columns) == ["fwd", "bwd", "calls"]
    assert times.at["layers.0.fc", "fwd"] == pytest.approx(0.004) and times.at["layers.1.fc", "bwd"] == pytest.approx(0.006)
    assert times["calls"].tolist() == [1, 1]
    assert measures.module_times(Run(tensors(), {})).empty
    assert measures.leaf_modules(["(root)", "a", "a.0", "b"]) == ["a.0", "b"]
    assert measures.leaf_modules(["(root)"]) == ["(root)"]  # a model that is one module


def test_memory_reads_the_latest_sampled_step():
    run = run_with_slow_first_step()
    assert measures.memory(run) == {"params": 1004, "activations": 64}
    assert measures.memory_rows(run).to_dict("records") == [
        {"module": "(model)", "kind": "params", "bytes": 1004}, {"module": "layers.0.fc", "kind": "activations", "bytes": 64}]
    assert measures.activations_by_module(run) == {"layers.0.fc": 64}


def test_panel_state_is_json_and_the_widget_only_renders_it():
    run = run_with_slow_first_step()
    state = panel_state(run)
    assert json.loads(json.dumps(state)) == state
    assert [l["module"] for l in state["layers"]] == ["layers.0.fc", "layers.1.fc"]
    assert state["memory"][0] == {"module": "(model)", "kind": "params", "bytes": 1004}
    w = PerfWidget()
    assert not w.has_data and [p[0] for p in w.phase_styles] == list(PHASES)
    w.set_data(state)
    assert w.has_data and w.step == state["step"] and w.layers == state["layers"]
    with pytest.raises(KeyError, match="unknown keys"):
        w.set_data({"timings": []})
    assert [label for _, label, _ in PHASE_STYLES] == [PHASE_LABELS[p] for p in PHASES]
    w.set_state({"selected_module": "layers.1.fc"})  # a click in the browser arrives through ipywidgets' set_state
    assert w.selected_module == "layers.1.fc"


def test_phase_names_are_defined_once():
    import inspect

    import dsnotebook.perf.steps as steps
    import dsnotebook.perf.timing as timing
    import dsnotebook.views.perf_summary as summary
    import dsnotebook.widgets.perf as widget

    for mod in (timing, steps, summary, widget, measures):
        src = inspect.getsource(mod)
        assert '("data", "fwd", "bwd"' not in src, mod.__name__
    import pathlib

    ts = pathlib.Path(__file__).resolve().parents[2] / "js" / "src" / "perf.ts"
    if ts.exists():
        assert '["data", "data loading"' not in ts.read_text()


def test_summary_from_a_real_tracer_is_consistent():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt, profile_every=1) as tr:
        for _ in range(4):
            opt.zero_grad()
            model(torch.randn(8, 16)).pow(2).mean().backward()
            opt.step()
    snap = performance_summary(tr.run)
    json.dumps(snap)
    assert snap["sampled_steps"] == [0, 1, 2, 3] and snap["steady_steps"] == [1, 2, 3]
    assert snap["step"] == measures.phases(tr.run) == panel_state(tr.run)["step"]
    assert [l["module"] for l in snap["layers"]] == ["0", "1", "2"]
