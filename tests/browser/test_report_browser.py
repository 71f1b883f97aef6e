"""The standalone report (views/report) opened from disk in headless Chromium with the network
off: nothing is fetched, no console error or dialog, every plot drawn, hover shows the Run's
numbers, the histogram view switches tensors and shows exact counts, and hostile module names
(an <img onerror> and a TeX-looking "$$x^2$$", which BokehJS would typeset with MathJax from a
CDN) are shown as text."""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer
from dsnotebook.views.histograms import step_histograms
from dsnotebook.views.report.histograms import EXP0, histogram_data

from conftest import ARTIFACTS

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"
TEX = "math $$x^2$$"
FIGURES = ["dsn-grad-heatmap", "dsn-global-norm", "dsn-hist", "dsn-hist-apart", "dsn-update-heatmap",
           "dsn-update-median", "dsn-activation-heatmap", "dsn-step-split", "dsn-layer-times"]

# every element below the document, through open shadow roots (bokeh renders into them)
DEEP = """() => { const out = []; const walk = (root) => { for (const e of root.querySelectorAll('*')) {
  out.push(e); if (e.shadowRoot) walk(e.shadowRoot); } }; walk(document); return out; }"""
VIEW = "(name) => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(name))"
# the text of each tooltip on screen (its content lives in the tooltip's shadow root, beside a <style>)
TOOLTIP = f"""() => ({DEEP})().filter(e => e.classList.contains('bk-Tooltip') && e.shadowRoot
    && getComputedStyle(e).display !== 'none' && e.getBoundingClientRect().width > 0).map(e => {{
  const t = []; const walk = (n) => {{ if (n.nodeType === 3) t.push(n.textContent);
    else if (n.tagName !== 'STYLE') for (const c of [...(n.shadowRoot ? n.shadowRoot.childNodes : []), ...n.childNodes]) walk(c); }};
  walk(e); return t.join(' ').replace(/\\s+/g, ' ').trim(); }}).filter(s => s.length > 0)"""


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.add_module(TEX, nn.Conv2d(1, 4, 3, padding=1))
        self.relu = nn.ReLU()
        self.add_module(HOSTILE, nn.Linear(4 * 8 * 8, 16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(getattr(self, TEX)(x)).flatten(1)
        return self.fc(torch.relu(getattr(self, HOSTILE)(x)))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ModelTracer(model, opt, activations_every=2, profile_every=3) as tracer:
        for i in range(14):
            if i == 11:
                with torch.no_grad():
                    model.fc.weight[0, 0] = float("nan")
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.randint(0, 10, (8,))).backward()
            opt.step()
    path = tracer.report(tmp_path_factory.mktemp("report") / "run.html")
    return tracer.run, path


@pytest.fixture
def offline(browser: Any) -> Any:
    """A page with the network off (every non-file request recorded and refused), collecting errors."""
    context = browser.new_context(viewport={"width": 1300, "height": 900}, offline=True)
    fetched: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            fetched.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.errors, page.dialogs, page.fetched = [], [], fetched
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    try:
        yield page
    finally:
        context.close()


def _hover(page: Any, name: str, x: float, y: float) -> str:
    """Move the pointer to data point (x, y) of figure ``name``; the visible tooltip's text."""
    page.evaluate(f"(n) => ({VIEW})(n).el.scrollIntoView({{block: 'center'}})", name)
    px, py = page.evaluate(f"""([n, x, y]) => {{ const v = ({VIEW})(n); const f = v.frame;
        const r = v.canvas_view.events_el.getBoundingClientRect();
        return [r.left + f.x_scale.compute(x), r.top + f.y_scale.compute(y)]; }}""", [name, x, y])
    page.mouse.move(px - 3, py - 3)
    page.mouse.move(px, py)
    page.wait_for_function(f"() => ({TOOLTIP})().length > 0", timeout=5000)
    return " | ".join(page.evaluate(f"() => ({TOOLTIP})()"))


def test_report_opens_offline_with_plots_hover_and_names_as_text(report: tuple[Any, Any], offline: Any) -> None:
    run, path = report
    page = offline
    page.goto(path.as_uri())
    page.wait_for_function(f"""() => window.Bokeh && Bokeh.documents.length > 0
        && Bokeh.documents[0].is_idle
        && {FIGURES!r}.every(n => {{ const v = ({VIEW})(n); return v && v.frame && v.canvas_view; }})""", timeout=30000)
    page.wait_for_timeout(300)
    ARTIFACTS.mkdir(exist_ok=True)

    # every plot drew something besides its white background
    for name in FIGURES:
        inked = page.evaluate(f"""(n) => {{ const c = ({VIEW})(n).canvas_view.primary.canvas;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let k = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235)) k++;
            return k; }}""", name)
        assert inked > 500, (name, inked)

    # gradient heatmap: the hostile tensor's row, as text, with its value
    r = [t["name"] for t in run.tensors].index(f"{HOSTILE}.weight")
    c = 4
    tip = _hover(page, "dsn-grad-heatmap", c + 0.5, r + 0.5)
    assert f"{HOSTILE}.weight" in tip and re.search(r"step:\s*4\b", tip), tip
    value = float(run.matrix("norm")[r, c].astype(np.float32))
    shown = float(re.search(r"grad norm:\s*([-0-9.e+]+)", tip).group(1))
    assert shown == pytest.approx(value, rel=1e-4), (tip, value)

    # histogram: choose the hostile-named linear layer, hover one bin of one step: the exact count
    select = page.evaluate_handle(f"(n) => ({VIEW})(n).shadow_el.querySelector('select')", "dsn-hist-select")
    select.as_element().select_option(label=f"{HOSTILE}.weight")
    page.wait_for_function(f"""() => Bokeh.documents[0].get_model_by_name('dsn-hist-select').value === '{r}'""")
    data = histogram_data(run, run.steps, 100, 2_000_000)
    counts, _, _ = step_histograms(run, data["steps"])
    col = 2
    b = 1 + int(np.argmax(counts[r, col, 1:]))  # the fullest bin on the log2 axis at that step
    tip = _hover(page, "dsn-hist", col + 0.5, b + EXP0 + 0.5)
    shown = int(re.search(r"count:\s*([0-9,]+)", tip).group(1).replace(",", ""))
    assert shown == counts[r, col, b] and shown > 0, tip
    page.screenshot(path=str(ARTIFACTS / "report_hist_hover.png"))

    # names are text: present verbatim, no element made from them, nothing fetched, no errors
    texts = page.evaluate(f"() => ({DEEP})().map(e => e.shadowRoot ? '' : e.textContent).join('\\n')")
    assert HOSTILE in texts and TEX in texts
    imgs = page.evaluate(f"() => ({DEEP})().filter(e => e.tagName === 'IMG').map(e => e.getAttribute('src'))")
    assert "x" not in imgs
    assert not page.evaluate(f"() => ({DEEP})().some(e => e.tagName.startsWith('MJX'))"), "TeX was typeset"
    assert page.fetched == [], page.fetched
    assert page.dialogs == [], page.dialogs
    assert page.errors == [], page.errors
    # last: a full-page capture resizes the viewport, and bokeh redraws while it is taken
    page.screenshot(path=str(ARTIFACTS / "report_full.png"), full_page=True)
