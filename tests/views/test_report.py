"""The standalone HTML report (views/report) of a real traced run with a hostile module name,
activations, timings, a NaN and a verified suggestion: one self-contained file, every section,
the Run's numbers (thinned as documented), names as text; and its front doors
(run.report, tracer.report, dsnotebook.report, python -m dsnotebook report)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bokeh.models import Div
from torch import nn

import dsnotebook
from dsnotebook import ModelTracer, Run
from dsnotebook.__main__ import main as cli
from dsnotebook.perf import measures
from dsnotebook.stats.reference import HIST_BINS, HIST_OFFSET
from dsnotebook.views.histograms import step_histograms
from dsnotebook.views.report import build_report, write_report
from dsnotebook.views.report.columns import reduce_max, windows
from dsnotebook.views.report.histograms import histogram_data

HOSTILE = "<img src=x onerror=alert(1)>"
SECTIONS = ["Run", "Gradient flow", "Gradient histogram over steps", "Update ratios", "Activations and dead units",
            "Non-finite values and events", "Performance", "Suggestions"]
VERIFIED = {"id": "tf32", "rule": "tf32", "title": f"Enable TF32 for {HOSTILE}", "category": "speed",
            "severity": "info", "evidence": {HOSTILE: 1.5}, "gain": "x1.5", "snippet": f"model.{HOSTILE}()",
            "verify_hint": "", "can_verify": True, "status": "verified",
            "result": {"baseline_s": 0.003, "variant_s": 0.002, "speedup": 1.5, "speedup_iqr": [1.4, 1.6],
                       "memory_change": -0.1, "loss_drift": 0.0001, "pairs": 5, "steps_per_block": 8,
                       "reason": "faster in 5 of 5 pairs"}}


ON_STEP = {**VERIFIED, "id": "mixed_precision", "rule": "mixed_precision", "title": "bf16 autocast",
           "result": {**VERIFIED["result"], "extra": {"timing": "step", "with_loading": {
               "baseline_s": 0.04161, "variant_s": 0.04292, "speedup": 0.97, "speedup_iqr": [0.95, 0.99],
               "note": f"the loop waits for its data {HOSTILE}"}}}}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.add_module(HOSTILE, nn.ReLU())
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(getattr(self, HOSTILE)(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def traced() -> ModelTracer:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ModelTracer(model, opt, activations_every=2, profile_every=3) as tracer:
        for i in range(12):
            if i == 9:
                with torch.no_grad():
                    model.fc.weight[0, 0] = float("nan")
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.randint(0, 10, (8,))).backward()
            opt.step()
    tracer.run.add_records("suggestions", [VERIFIED, ON_STEP])
    return tracer


@pytest.fixture(scope="module")
def html(traced: ModelTracer, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = traced.report(tmp_path_factory.mktemp("report") / "sub" / "run.html")
    return path.read_text(encoding="utf-8")


def _doc(html: str) -> dict:
    body = max(re.findall(r"<script type=\"application/json\"[^>]*>(.*?)</script>", html, re.S), key=len)
    return json.loads(body)


def test_one_self_contained_file(html: str) -> None:
    assert len(html) < 5_000_000
    outside = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)  # the page's own elements
    tags = re.findall(r"<[a-z]+\b[^>]*>", outside, re.I)
    assert len(tags) > 3 and not [t for t in tags if re.search(r"\b(?:src|href)\s*=", t, re.I)], tags
    assert html.count("<script") == html.count("</script>")
    assert re.search(r"Bokeh\s*=", html) or "bokeh" in html.lower()
    assert max(len(s) for s in re.findall(r"<script[^>]*>(.*?)</script>", html, re.S)) > 500_000  # BokehJS inline
    assert _doc(html)  # the document is valid JSON


def test_every_section_and_names_only_as_text(traced: ModelTracer) -> None:
    layout = build_report(traced.run)
    divs = [d.text for d in layout.select({"type": Div})]
    for title in SECTIONS:
        assert any(f">{title}</h" in t for t in divs), title
    joined = "\n".join(divs)
    assert "<img" not in joined  # every name and value went through html.escape
    assert "&lt;img src=x onerror=alert(1)&gt;" in joined  # ... and is still there, as text
    assert "verified" in joined and "speed-up x1.50 [IQR 1.40-1.60]" in joined and "memory -10.0%" in joined
    # a verdict made on the step: the loop with its loading beside it, and why it hides the gain
    assert "speed-up x1.50 on the step [IQR 1.40-1.60]" in joined
    assert ("with loading in the loop: 41.61 -&gt; 42.92 ms/step, x0.97 (the loop waits for its data "
            "&lt;img src=x onerror=alert(1)&gt;)") in joined
    med = measures.phases(traced.run)
    assert f"{med['step'] * 1e3:.2f} ms" in joined  # the performance panel's median step
    assert "nonfinite" in joined and "fc" in joined  # the event of step 9


def test_heatmaps_hold_the_runs_numbers(traced: ModelTracer) -> None:
    run = traced.run
    fig = build_report(run).select_one({"name": "dsn-grad-heatmap"})
    data = fig.renderers[0].data_source.data
    np.testing.assert_array_equal(data["norm"][0], run.matrix("norm").astype(np.float32))
    thin = build_report(run, max_columns=5).select_one({"name": "dsn-update-heatmap"})
    cols = windows(run.steps, 5)
    got = thin.renderers[0].data_source.data["update_ratio"][0]
    assert got.dtype == np.float32 and got.shape == (len(run.tensors), 5)
    np.testing.assert_array_equal(got, reduce_max(run.matrix("update_ratio"), cols))


def test_histograms_are_exact_and_keep_the_nan_step(traced: ModelTracer) -> None:
    run = traced.run
    data = histogram_data(run, run.steps, 4)
    assert 9 in data["steps"]  # the window holding the NaN step shows that step
    counts, nonfinite, _ = step_histograms(run, data["steps"])
    H = data["H"]
    for t in range(len(run.tensors)):
        lo, n = int(data["lo"][t]), int(data["nbins"][t])
        np.testing.assert_array_equal(data["blocks"][t], counts[t, :, lo:lo + n].T)
        outside = np.delete(counts[t, :, 1:], np.arange(lo - 1, lo - 1 + n), axis=1)
        assert not outside.any()  # cropping drops only empty bins
        np.testing.assert_array_equal(data["nonfinite"][t * H:(t + 1) * H], nonfinite[t])
        np.testing.assert_array_equal(data["zeros"][t * H:(t + 1) * H], counts[t, :, 0])
    assert all(b.dtype == np.uint32 for b in data["blocks"])


def test_front_doors_write_the_same_report(traced: ModelTracer, tmp_path) -> None:
    run = traced.run
    a = run.report(tmp_path / "a.html")
    b = dsnotebook.report(traced, tmp_path / "b.html")
    saved = run.save(tmp_path / "run_dir")
    assert cli(["report", str(saved)]) == 0  # default: RUN_DIR.html beside the directory
    sizes = [p.stat().st_size for p in (a, b, tmp_path / "run_dir.html")]
    assert max(sizes) - min(sizes) < 0.01 * max(sizes)
    assert cli(["report", str(tmp_path / "missing")]) == 2
    with pytest.raises(TypeError):
        write_report(object(), tmp_path / "x.html")
    with pytest.raises(IsADirectoryError):
        run.report(tmp_path)


def test_script_breaking_names_and_big_models_stay_safe_and_small(tmp_path) -> None:
    breaker = "</script><script>alert(1)</script>$$x^2$$"
    tensors = [{"name": f"{breaker}.{i}", "module": breaker, "tensor": str(i), "shape": [1000], "numel": 1000}
               for i in range(1000)]
    run = Run(tensors, {"model": breaker}, keep=1000)
    rng = np.random.default_rng(0)
    ids = np.arange(1000, dtype=np.int32)
    for s in range(100):
        raw = np.zeros((1000, HIST_OFFSET + HIST_BINS))
        raw[:, 1] = rng.random(1000)
        raw[:, HIST_OFFSET + 10:HIST_OFFSET + 40] = rng.multinomial(1000, np.full(30, 1 / 30), size=1000)
        run.add_grads(s, ids, raw)
    html = write_report(run, tmp_path / "big.html", title=breaker).read_text(encoding="utf-8")
    assert len(html) < 5_000_000  # fewer columns, not a bigger file
    assert html.count("<script") == html.count("</script>")  # no name closes a script element
    assert "<script>alert(1)" not in html


def test_report_of_a_run_directory_written_while_training(tmp_path) -> None:
    from helpers import tiny_cnn

    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    log_dir = tmp_path / "runs" / "x"
    with ModelTracer(model, opt, log_dir=log_dir) as tracer:
        for _ in range(6):
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.randint(0, 10, (4,))).backward()
            opt.step()
    assert cli(["report", str(log_dir), "-o", str(tmp_path / "x.html")]) == 0
    opened = Run.open(log_dir)
    data = build_report(opened).select_one({"name": "dsn-grad-heatmap"}).renderers[0].data_source.data
    np.testing.assert_array_equal(data["norm"][0], tracer.run.matrix("norm").astype(np.float32))
