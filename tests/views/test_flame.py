"""The flame view's boxes (one call, per step, all calls), its text fallback, the live feeder,
the dashboard's functions tab, and the calls table in a saved run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dsnotebook
from dsnotebook import ModelTracer, Run
from dsnotebook.views.flame_tree import build, text_tree
from dsnotebook.views.flame_view import FlameView


def _row(call, parent, name, start, wall, step=None, kind="function", **kw):
    return {"step": step, "call": call, "parent": parent, "name": name, "kind": kind, "level": "info", "depth": 0,
            "thread": 1, "start_s": start, "wall_s": wall, "device_s": None, "inputs": None, "outputs": None,
            "error": None, "overhead_s": 0.0, **kw}


ROWS = [  # two calls of "fuse", each with branches a and b; the second in step 1 with a module
    _row(1, None, "fuse", 0.0, 1.0, step=0), _row(2, 1, "a", 0.1, 0.3, step=0), _row(3, 1, "b", 0.5, 0.4, step=0),
    _row(4, None, "fuse", 2.0, 2.0, step=1), _row(5, 4, "a", 2.0, 0.5, step=1), _row(6, 4, "b", 2.6, 1.2, step=1),
    _row(7, 6, "conv", 2.7, 1.0, step=1, kind="module", error="RuntimeError: x",
         outputs=[{"name": "out", "shape": [2, 3], "dtype": "float32"}]),
]


def test_one_call_as_it_ran():
    v = build(ROWS, "call", call_index=0)
    assert v["calls"] == 2 and v["call_index"] == 0 and v["total"] == 1.0
    n = {x["name"]: x for x in v["nodes"]}
    assert (n["a"]["x"], n["a"]["w"], n["a"]["depth"]) == (pytest.approx(0.1), 0.3, 1)
    assert n["fuse"]["self"] == pytest.approx(0.3) and n["b"]["parent"] == n["fuse"]["id"]
    latest = build(ROWS, "call")
    assert latest["call_index"] == 1 and {x["name"] for x in latest["nodes"]} == {"fuse", "a", "b", "conv"}
    conv = next(x for x in latest["nodes"] if x["name"] == "conv")
    assert conv["module"] == "conv" and conv["errors"] == 1 and conv["x"] == pytest.approx(0.7)


def test_merged_over_all_calls_and_per_step():
    v = build(ROWS, "all")
    n = {x["name"]: x for x in v["nodes"]}
    assert n["fuse"]["count"] == 2 and n["fuse"]["wall"] == pytest.approx(3.0) and v["total"] == pytest.approx(3.0)
    assert n["a"]["x"] == 0 and n["b"]["x"] == pytest.approx(0.8) and n["b"]["w"] == pytest.approx(1.6)
    assert n["conv"]["x"] == pytest.approx(0.8) and n["b"]["steps"] == [0, 1]
    s0 = build(ROWS, "step", step=0)
    assert s0["step"] == 0 and s0["steps"] == [0, 1] and {x["name"] for x in s0["nodes"]} == {"fuse", "a", "b"}
    assert build(ROWS, "step")["step"] == 1
    assert build(ROWS, "step", step=7)["step"] == 1, "the latest step with calls at or before it"
    with pytest.raises(ValueError, match="mode"):
        build(ROWS, "flat")


def test_orphans_become_roots_and_big_views_are_cut():
    v = build([_row(9, 99, "orphan", 0.0, 1.0)], "call")
    assert v["nodes"][0]["parent"] is None and v["nodes"][0]["name"] == "orphan"
    many = [_row(1, None, "root", 0.0, 10.0)] + [_row(i, 1, f"k{i}", i * 0.01, 0.001 * i) for i in range(2, 60)]
    cut = build(many, "call", max_nodes=10)
    assert len(cut["nodes"]) == 10 and cut["hidden"] == 49
    assert {x["name"] for x in cut["nodes"]} >= {"root", "k59", "k58"}


def test_text_fallback():
    text = text_tree(build(ROWS, "call"))
    lines = text.splitlines()
    assert lines[0].startswith("fuse") and lines[1].startswith("  a") and lines[3].startswith("    conv")
    assert "raised RuntimeError: x" in lines[3] and "-> 2x3" in lines[3] and "1.00 s" in lines[3]
    assert "no traced calls" in text_tree(build([], "call"))


def test_feeder_of_a_dataframe_answers_the_controls():
    view = FlameView(ROWS)
    w = view.widget
    assert w.calls == 2 and w.shown_call == 1 and w.modes == ["call", "step", "all"] and w.has_data
    w.call_index = 0
    assert w.shown_call == 0 and len(w.nodes) == 3
    w.mode = "all"
    assert w.nodes[0]["count"] == 2
    assert repr(w).startswith("traced calls: 2 root call(s)")
    assert w._repr_mimebundle_()[0]["text/plain"].startswith("traced calls")


def _fused_training(steps=3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))

    @dsnotebook.trace
    def step_fn(x):
        with dsnotebook.trace.span("loss"):
            return F.mse_loss(model(x), torch.zeros(len(x), 2))

    return model, step_fn


def test_live_dashboard_gets_a_functions_tab_when_traced_calls_ran(tmp_path):
    from dsnotebook.views.live_dashboard import LiveDashboard

    model, step_fn = _fused_training()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracer = ModelTracer(model, opt)
    view = LiveDashboard(tracer.run, flush=tracer.flush)
    assert "functions" not in [t for t, _ in view.widget.panels()]
    with tracer:
        for _ in range(3):
            opt.zero_grad()
            step_fn(torch.randn(5, 4)).backward()
            opt.step()
    view.close()
    titles = [t for t, _ in view.widget.panels()]
    assert "functions" in titles
    flame = view.flame.widget
    assert flame.steps == [0, 1, 2] and {n["name"] for n in flame.nodes} >= {"loss", "0", "2"}
    view.widget.heatmap.selected_step = 1
    flame.mode = "step"
    assert flame.shown_step == 1
    module = next(n for n in flame.nodes if n["kind"] == "module")
    flame.selected_module = module["module"]
    assert view.widget.heatmap.selected_module == module["module"], "linked with the other panels"
    path = tracer.run.save(tmp_path / "run")
    again = Run.open(path).to_dataframe("calls")
    assert len(again) == len(tracer.to_dataframe("calls")) and set(again["step"]) == {0, 1, 2}


def test_default_recorder_flame():
    @dsnotebook.trace
    def f():
        return 1

    dsnotebook.trace.clear()
    f()
    w = dsnotebook.trace.flame()
    assert w.calls == 1 and w.nodes[0]["name"].endswith("f") and w.overhead["ready"]
    dsnotebook.trace.clear()


def test_report_has_a_traced_functions_section(tmp_path):
    from dsnotebook.views.report.calls import calls_section

    run = Run()
    assert calls_section(run) == []
    run.add_records("calls", ROWS)
    run.meta["calls_overhead"] = {"call_s": {"function": 1.2e-6}}
    heading, note, table = calls_section(run)
    assert "Traced functions" in heading.text and "2 root calls over 2 steps" in note.text and "1.20 us" in note.text
    assert "<td>fuse</td><td class=\"num\">2</td><td class=\"num\">3000</td>" in table.text.replace("\n", "")
    hostile = Run()
    hostile.add_records("calls", [_row(1, None, "<img src=x onerror=alert(1)>", 0.0, 1.0)])
    assert "<img" not in calls_section(hostile)[2].text and "&lt;img" in calls_section(hostile)[2].text
    path = dsnotebook.report(run, tmp_path / "r.html")
    assert "Traced functions" in path.read_text()
