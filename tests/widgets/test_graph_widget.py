"""Graph, performance and suggestions widgets: traits, wire messages, the live dashboard feed."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import traitlets

from dsnotebook import ModelTracer, Run
from dsnotebook.views.live_dashboard import LiveDashboard
from dsnotebook.widgets import GraphWidget, PerfWidget, SuggestionsWidget
from dsnotebook.widgets.dashboard import Dashboard
from dsnotebook.widgets.graph import node_of_event_module, slim_graph
from dsnotebook.views.perf_summary import panel_state
from helpers import tiny_cnn

HOSTILE = "<img src=x onerror=alert(1)>"
STATIC = pathlib.Path(__file__).resolve().parents[2] / "dsnotebook" / "widgets" / "static"


def _graph():
    return {"nodes": [
        {"id": "input:x", "kind": "input", "label": "x", "name": "x", "type": "Tensor", "params": 0, "call": 0,
         "parent": None, "order": 0, "leaf": True, "shapes": [[2, 3]], "param_inputs": []},
        {"id": "(root)#0", "kind": "module", "label": "Net", "name": "", "type": "Net", "params": np.int64(17),
         "call": 0, "parent": None, "order": 1, "leaf": False, "shapes": [[2, 1]], "param_inputs": []},
        {"id": f"{HOSTILE}#0", "kind": "module", "label": HOSTILE, "name": HOSTILE, "type": "Linear", "params": 12,
         "call": 0, "parent": "(root)#0", "order": 2, "leaf": True, "shapes": [torch.Size([2, 4])], "param_inputs": []},
        {"id": "(root)#0/relu#0", "kind": "op", "label": "relu", "name": "", "type": "relu", "params": 0, "call": 0,
         "parent": "(root)#0", "order": 3, "leaf": True, "shapes": [[2, 4]], "param_inputs": []},
    ], "edges": [{"id": "e0", "source": "input:x", "target": f"{HOSTILE}#0", "tensor": 0, "shape": [2, 3],
                  "dtype": "float32", "device": "cpu"}], "model": "Net", "message": None}


class _Sent(list):
    def __call__(self, content, buffers=None):
        self.append((content, buffers))


def test_graph_traits_are_plain_json_and_names_stay_text():
    w = GraphWidget(_graph())
    g = w.graph
    json.dumps(g)  # numpy ints and torch.Size became plain JSON
    assert [n["id"] for n in g["nodes"]][2] == f"{HOSTILE}#0" and g["nodes"][2]["label"] == HOSTILE
    assert g["nodes"][2]["shapes"] == [[2, 4]] and g["nodes"][1]["params"] == 17
    assert set(g["edges"][0]) == {"source", "target", "shape", "dtype"}
    assert w.row_ids == ["(root)#0", f"{HOSTILE}#0"]  # module nodes carry values
    assert [s["key"] for s in w.stats][0] == w.stat


def test_graph_append_messages_and_snapshot():
    w = GraphWidget(_graph(), stats=[{"key": "a", "log": True}, {"key": "b"}])
    sent = _Sent()
    w.send = sent
    vals = np.arange(2 * 2 * 3, dtype=np.float64).reshape(2, 2, 3)  # [stat, row, step]
    w.append([0, 2, 4], vals)
    head, bufs = sent[-1]
    assert head == {"type": "append", "seq": 1, "steps": [0, 2, 4], "shape": [2, 3, 2], "layout": "stat,col,row",
                    "dtype": "float32"}
    block = np.frombuffer(bytes(bufs[0]), np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(block, vals.transpose(0, 2, 1).astype(np.float32))
    w.drop([2])
    assert sent[-1][0] == {"type": "drop", "seq": 2, "steps": [2]}
    w.flush()
    meta = w.snapshot_meta
    assert meta["seq"] == 2 and meta["steps"] == [0, 4] and meta["shape"] == [2, 2, 2]
    snap = np.frombuffer(w.snapshot, np.float32).reshape(2, 2, 2)
    np.testing.assert_array_equal(snap, vals[:, :, [0, 2]].transpose(0, 2, 1).astype(np.float32))
    with pytest.raises(ValueError):
        w.append([1], np.zeros((2, 2, 1)))  # steps go forward only
    with pytest.raises(ValueError):
        w.append([9], np.zeros((2, 3, 1)))  # wrong row count


def test_set_graph_resets_rows_and_columns():
    w = GraphWidget(None)
    assert w.rows == [] and w.graph["nodes"] == []
    w.set_graph(_graph())
    assert len(w.rows) == 2 and w.steps == []
    w.append([5], np.ones((len(w.stats), 2, 1)))
    assert w.values().shape == (len(w.stats), 2, 1)


def test_event_modules_map_to_node_ids():
    assert node_of_event_module("fc1") == "fc1#0"
    assert node_of_event_module("blocks.0 (call 2)") == "blocks.0#1"
    assert node_of_event_module(None) == ""
    w = GraphWidget(_graph())
    w.set_events([{"step": 3, "kind": "nonfinite", "module": HOSTILE, "detail": "output has 4 NaN"}])
    assert w.events[0]["node"] == f"{HOSTILE}#0" and w.events[0]["detail"] == "output has 4 NaN"
    assert slim_graph(None)["nodes"] == []


def test_an_event_in_the_loss_marks_the_output_node():
    """The non-finite search may find the loss (outside the model): the graph marks the model's
    output, where the loss reads it, instead of a node that does not exist."""
    g = _graph()
    g["nodes"].append({"id": "output:output", "kind": "output", "label": "output", "name": "output", "type": "Tensor"})
    w = GraphWidget(g)
    w.set_events([{"step": 5, "kind": "nonfinite", "module": "(loss)", "detail": "backward: ..."}])
    assert w.events[0]["node"] == "output:output"
    bare = GraphWidget(_graph())  # no output node: the id matches no node, nothing is marked
    bare.set_events([{"module": "(loss)"}])
    assert bare.events[0]["node"] not in {n["id"] for n in bare.graph["nodes"]}


def test_perf_panel_state_per_layer_and_phases():
    timings = [
        {"step": 0, "module": "fc", "phase": "fwd", "seconds": 0.002, "calls": 1},
        {"step": 0, "module": "fc", "phase": "bwd", "seconds": 0.004, "calls": 1},
        {"step": 2, "module": "fc", "phase": "fwd", "seconds": 0.004, "calls": 1},
        {"step": 2, "module": "fc", "phase": "bwd", "seconds": 0.006, "calls": 1},
        {"step": 0, "module": "(step)", "phase": "data", "seconds": 0.1, "calls": 1},
        {"step": 0, "module": "(step)", "phase": "step", "seconds": 0.2, "calls": 1},
    ]
    memory = [{"step": 0, "module": "(model)", "kind": "params", "bytes": 10},
              {"step": 2, "module": "(model)", "kind": "params", "bytes": 12},
              {"step": 2, "module": "fc", "kind": "activations", "bytes": 64}]
    run = Run()
    run.add_records("timings", timings)
    run.add_records("memory", memory)
    t = panel_state(run)  # medians over sampled steps, the first (warm-up) one left out: perf.measures
    assert t["layers"] == [{"module": "fc", "fwd": pytest.approx(0.004), "bwd": pytest.approx(0.006), "calls": 1,
                            "activation_bytes": 64}]
    assert t["phases"][0]["data"] == 0.1 and t["phases"][0]["total"] == 0.2 and t["phases"][0]["fwd"] == 0.0
    assert t["memory"] == [{"module": "(model)", "kind": "params", "bytes": 12},
                           {"module": "fc", "kind": "activations", "bytes": 64}]
    assert t["sampled_steps"] == 2
    w = PerfWidget()
    assert not w.has_data
    w.set_state(t)
    assert w.has_data and w.layers == t["layers"]


def test_suggestions_verify_reports_progress_and_result():
    seen = []
    rec = {"id": "tf32", "title": "TF32", "status": "proposed", "can_verify": True, "evidence": {"x": float("nan")},
           "result": None}

    def handler(sid, steps, progress):
        for i in range(3):
            progress(i + 1, 3, f"block {i}")
        return dict(rec, status="verified", result={"speedup": 1.4, "verdict": "verified"})

    w = SuggestionsWidget([rec], on_verify=handler)
    assert w.suggestions[0]["evidence"] == {"x": None}  # JSON: no NaN
    w.observe(lambda ch: seen.append(ch["new"]), "progress")
    w._on_msg(w, {"type": "verify", "id": "tf32"}, [])
    assert [p["done"] for p in seen if p.get("running")] == [0, 1, 2, 3]
    assert seen[-1]["running"] is False
    assert w.suggestions[0]["status"] == "verified" and w.suggestions[0]["result"]["speedup"] == 1.4

    def broken(sid, steps, progress):
        raise ValueError("no step function")

    w.on_verify = broken
    w.run_verify("tf32")
    assert w.suggestions[0]["status"] == "error" and "no step function" in w.suggestions[0]["result"]["error"]


def test_dashboard_links_selection_both_ways():
    from dsnotebook.widgets import HeatmapWidget

    heat = HeatmapWidget(rows=[{"name": "fc.weight", "module": "fc", "tensor": "weight"}])
    graph, perf, sugg = GraphWidget(_graph()), PerfWidget(), SuggestionsWidget()
    d = Dashboard(heat, graph, perf, sugg, text_fallback=lambda: "summary")
    heat.selected_module = "fc"
    assert graph.selected_module == "fc" and perf.selected_module == "fc"
    graph.selected_module = HOSTILE
    assert heat.selected_module == HOSTILE and perf.selected_module == HOSTILE
    heat.selected_step = 7
    assert graph.step == 7
    heat.hover_step = 3  # hovering wins while it lasts
    assert graph.step == 3
    heat.hover_step = -1
    assert graph.step == 7
    assert [t for t in d.tabs.titles] == ["graph"] and list(d.children) == [heat, d.tabs]
    sugg.set_suggestions([{"id": "a", "title": "A"}])
    perf.set_state({"layers": [{"module": "fc", "fwd": 0.1, "bwd": 0.0, "calls": 1}]})
    d.refresh()
    assert list(d.tabs.titles) == ["graph", "performance", "suggestions (1)"]
    d.refresh(show_graph=False)
    assert list(d.tabs.titles) == ["performance", "suggestions (1)"]
    bundle = d._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["text/plain"] == "summary"


def _train(model, opt, n):
    for _ in range(n):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.randint(0, 10, (4,))).backward()
        opt.step()


def test_live_dashboard_feeds_activation_steps_and_grad_norms():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracer = ModelTracer(model, opt, activations_every=2, profile_every=3)
    view = LiveDashboard(tracer.run, flush=tracer.flush, min_interval=0.0, perf_interval=0.0)
    with tracer:
        _train(model, opt, 9)
    view.close("finished")
    g = view.graph
    assert g.row_ids == ["(root)#0", "0#0", "1#0", "2#0", "3#0"]
    assert g.steps == [0, 2, 4, 6, 8]  # the sampled steps only
    vals = g.values()
    keys = [s["key"] for s in g.stats]
    acts = tracer.run.to_dataframe("activations")
    for (step, mod), r in acts.set_index(["step", "module"]).iterrows():
        row = g.row_ids.index(f"{mod}#{r['call']}")
        col = g.steps.index(step)
        for k in ("mean", "std", "absmax", "zero_frac", "nonfinite"):
            assert vals[keys.index(k), row, col] == np.float32(r[k])
        if r["units"]:  # a rectifier output: dead fraction
            assert vals[keys.index("dead_frac"), row, col] == np.float32(r["dead_units"] / r["units"])
        else:  # dead units mean nothing on other outputs
            assert np.isnan(vals[keys.index("dead_frac"), row, col])
    # grad norm of a module = norm over its parameters (the root: all of them)
    norms = tracer.run.matrix("norm", g.steps)
    mods = [t["module"] for t in tracer.run.tensors]
    fc = [i for i, m in enumerate(mods) if m == "3"]
    np.testing.assert_allclose(vals[keys.index("grad_norm"), g.row_ids.index("3#0")],
                               np.sqrt((norms[fc] ** 2).sum(0)), rtol=1e-6)
    np.testing.assert_allclose(vals[keys.index("grad_norm"), 0], np.sqrt((norms ** 2).sum(0)), rtol=1e-6)
    assert np.isnan(vals[keys.index("grad_norm"), g.row_ids.index("1#0")]).all()  # ReLU: no parameters
    assert view.perf.has_data and {r["module"] for r in view.perf.layers} >= {"0", "3"}
    assert list(view.widget.tabs.titles)[:2] == ["graph", "performance"]
    # suggestions made after the cell reach the panel
    tracer.advise()
    assert len(view.suggestions.suggestions) == len(tracer.run.records.tables["suggestions"])


def test_live_dashboard_without_activations_sends_every_step():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracer = ModelTracer(model, opt)
    view = LiveDashboard(tracer.run, flush=tracer.flush, min_interval=0.0)
    with tracer:
        _train(model, opt, 5)
    view.close()
    assert view.graph.steps == [0, 1, 2, 3, 4]
    assert [s["key"] for s in view.graph.stats] == ["grad_norm", "nonfinite"]
    assert not np.isnan(view.graph.values()[0, 0]).any()


def test_live_dashboard_without_graph_falls_back_to_the_heatmap():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracer = ModelTracer(model, opt, capture_graph=False)
    view = LiveDashboard(tracer.run, flush=tracer.flush)
    with tracer:
        _train(model, opt, 2)
    view.close()
    # no tabs: the heatmap, and the histogram panel (hidden until a row is clicked)
    assert list(view.widget.children) == [view.heat.widget, view.histogram.widget]
    assert view.histogram.widget.tensor == ""


@pytest.mark.parametrize("name", ["graph", "perf", "suggestions"])
def test_bundles_are_built_without_cdn_imports(name):
    path = STATIC / f"{name}.js"
    if not path.exists():
        pytest.skip("bundles not built (npm run build in js/)")
    js = path.read_text()
    assert "export" in js and f"dsn-{'sugg' if name == 'suggestions' else name}" in js
    assert "https://" not in js and "esm.sh" not in js and "innerHTML" not in js


def test_magic_view_is_the_dashboard_unless_no_graph():
    from dsnotebook._magics import _live_view
    from dsnotebook.views.live_heatmap import LiveHeatmap

    model = tiny_cnn()
    tracer = ModelTracer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    view = _live_view(tracer)
    assert isinstance(view, LiveDashboard) and isinstance(view.widget, Dashboard) and tracer.views == [view] and tracer.dashboard is view.widget
    view.close()
    assert isinstance(_live_view(tracer, graph=False), LiveHeatmap)
