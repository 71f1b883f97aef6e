"""One tensor's log2|g| histogram over steps: the numbers (views/histograms) and the live feeder
(views/live_histogram) against the Run and against a plain computation of the gradients."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsnotebook import ModelTracer, Run
from dsnotebook.stats.reference import HIST_BINS, HIST_OFFSET
from dsnotebook.views.histograms import NONFINITE_ROW, bin_label, bin_rows, step_histograms, tensor_histograms
from dsnotebook.views.live_histogram import LiveHistogram, columns
from helpers import plain_grad_stats, tiny_cnn


def _train(model, opt, n, seen=None):
    for i in range(n):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.randint(0, 10, (4,))).backward()
        if seen is not None:
            seen.append(plain_grad_stats(model[3].weight.grad))
        opt.step()


def test_histograms_are_the_gradients_exact_counts():
    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    with ModelTracer(model, opt) as tracer:
        _train(model, opt, 5, seen)
    run = tracer.run
    tid = [t["name"] for t in run.tensors].index("3.weight")
    series = tensor_histograms(run, tid)
    assert series.steps == [0, 1, 2, 3, 4] and series.numel == 4 * 8 * 8 * 10
    for j, ref in enumerate(seen):
        np.testing.assert_array_equal(series.counts[j], ref["hist"])
        assert series.counts[j].sum() + series.nonfinite[j] == series.numel
    counts, nonfinite, present = step_histograms(run, [1, 3])
    np.testing.assert_array_equal(counts[tid], series.counts[[1, 3]])
    assert present.all() and not nonfinite.any()


def test_bin_rows_name_the_ranges_the_statistics_use():
    rows = bin_rows()
    assert len(rows) == HIST_BINS + 1 and rows[NONFINITE_ROW]["name"] == "non-finite"
    assert [r["name"] for r in rows[:2]] == ["0", "< 2^-45"] and rows[HIST_BINS - 1]["name"] == ">= 2^16"
    # a value lands in the bin whose label's range holds it (the reference statistics decide the bin)
    for v in (3e-9, 0.75, 1.0, 6.0, 2.0 ** -20, 2.0 ** 15 * 1.5):
        b = int(np.flatnonzero(plain_grad_stats(torch.tensor([v]))["hist"])[0])
        e = rows[b]["exp"]
        assert 2.0 ** e <= v < 2.0 ** (e + 1), (v, bin_label(b))
        assert bin_label(b) == f"[2^{e}, 2^{e + 1})"


def test_nonfinite_elements_are_counted_apart():
    run = Run([{"name": "w", "module": "", "tensor": "w", "shape": [10], "numel": 10}])
    raw = np.zeros((1, HIST_OFFSET + HIST_BINS))
    raw[0, 3] = 3  # non-finite elements
    raw[0, HIST_OFFSET + 40] = 7
    run.add_grads(0, np.array([0]), raw)
    cols = columns(tensor_histograms(run, 0))
    assert cols.shape == (1, HIST_BINS + 1)
    assert cols[0, 40] == 7 and cols[0, NONFINITE_ROW] == 3 and cols[0].sum() == 10
    with pytest.raises(IndexError):
        tensor_histograms(run, 1)


def test_live_histogram_follows_training_and_thinning():
    torch.manual_seed(1)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracer = ModelTracer(model, opt, keep=8)
    view = LiveHistogram(tracer.run, min_interval=0.0)
    view.show("0.weight")
    with tracer:
        _train(model, opt, 3)
        assert view.widget.steps == [0, 1]  # the last step is not complete yet
        _train(model, opt, 27)
        pushes = view.pushes
    view.close()
    w, run = view.widget, tracer.run
    assert pushes >= 2
    assert w.steps == run.steps and len(w.steps) <= 8 and w.steps[-1] == 29  # thinned columns were dropped
    tid = [t["name"] for t in run.tensors].index("0.weight")
    np.testing.assert_array_equal(w.counts(), columns(tensor_histograms(run, tid)))
    assert w.tensor == "0.weight" and w.numel == 36 and w.shape == [4, 1, 3, 3]
    view.show("3.bias")  # another tensor: the panel is replaced, not appended to
    assert w.tensor == "3.bias" and w.steps == run.steps
    np.testing.assert_array_equal(w.counts()[:, :HIST_BINS].sum(axis=1), np.full(len(run.steps), 10))
    w.tensor = "no.such"
    assert w.steps == [] and "no tensor named 'no.such'" in w.status


def test_counts_beyond_float32_reach_the_widget_exactly():
    big = 2 ** 24 + 1  # float32 alone would read 2**24
    run = Run([{"name": "emb.weight", "module": "emb", "tensor": "weight", "shape": [3 * big], "numel": 3 * big}])
    for s in range(3):
        raw = np.zeros((1, HIST_OFFSET + HIST_BINS))
        raw[0, HIST_OFFSET + 20] = big + s
        raw[0, HIST_OFFSET + 21] = 2 * big - s
        run.add_grads(s, np.array([0]), raw)
    view = LiveHistogram(run)
    view.close()
    view.show("emb.weight")
    got = view.widget.counts()
    assert got[:, 20].tolist() == [big, big + 1, big + 2] and got[:, 21].tolist() == [2 * big, 2 * big - 1, 2 * big - 2]
    assert float(np.float32(big)) != big and not math.isnan(got.sum())


MAGIC_SETUP = ("import torch\nfrom torch import nn\nmodel = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))\n"
               "opt = torch.optim.SGD(model.parameters(), lr=0.1)")
MAGIC_TRAIN = """
for i in range(6):
    opt.zero_grad()
    model(torch.randn(4, 3)).pow(2).mean().backward()
    opt.step()
"""


def test_magic_histogram_option_follows_a_tensor_from_the_first_step():
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import start_ipython
    import IPython

    ip = start_ipython() or IPython.get_ipython()
    ip.run_line_magic("load_ext", "dsnotebook")
    ip.run_cell(MAGIC_SETUP)
    ip.run_cell_magic("deepseek_trace", "--histogram 2.weight", MAGIC_TRAIN)
    tracer = ip.user_ns["_trace"]
    h = tracer.dashboard.histogram
    assert h.tensor == h.shown == "2.weight" and h.steps == tracer.run.steps == list(range(6))
    np.testing.assert_array_equal(h.counts()[:, :HIST_BINS].sum(axis=1), np.full(6, 5))
    for line, message in (("--histogram nope", "has no tensor 'nope' (e.g. 0.weight, 0.bias"),
                          ("--histogram 0.weight --no-widget", "drop --no-graph")):
        ip.user_ns.pop("_trace", None)
        with pytest.raises(UsageError, match=message.replace("(", r"\(")):
            ip.run_cell_magic("deepseek_trace", line, MAGIC_TRAIN)
        assert "_trace" not in ip.user_ns  # refused before anything was hooked
