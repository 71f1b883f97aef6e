"""LiveHeatmap: the widget mirrors the Run (appends, thinning drops) while training runs."""
import numpy as np
import torch
import torch.nn.functional as F

from dsnotebook import ModelTracer
from dsnotebook.views.live_heatmap import HEATMAP_STATS, LiveHeatmap
from helpers import tiny_cnn


def _steps(model, opt, n):
    for i in range(n):
        x = torch.randn(4, 1, 8, 8)
        opt.zero_grad()
        F.cross_entropy(model(x), torch.randint(0, 10, (4,))).backward()
        opt.step()


def test_widget_mirrors_run_including_thinning():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracer = ModelTracer(model, opt, keep=16)
    view = LiveHeatmap(tracer.run, flush=tracer.flush, min_interval=0.0)
    with tracer:
        _steps(model, opt, 40)
        pushes_while_running = view.pushes
    view.close("finished")
    assert pushes_while_running >= 2
    w = view.widget
    assert w.steps == tracer.run.steps and len(w.steps) <= 16
    expected = np.stack([tracer.run.matrix(s["key"]) for s in HEATMAP_STATS]).astype(np.float32)
    np.testing.assert_array_equal(w.values(), expected)
    assert "finished" in w.status and "40 steps" not in w.status  # it reports the retained count


def test_enable_gradient_heatmap_returns_a_live_widget():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ModelTracer(model, opt) as tracer:
        widget = tracer.enable_gradient_heatmap(display=False)
        _steps(model, opt, 5)
    tracer.views[0].close()
    assert widget.steps == [0, 1, 2, 3, 4]
    bundle = widget._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "grad norm" in bundle["text/plain"] and "0.weight" in bundle["text/plain"]
