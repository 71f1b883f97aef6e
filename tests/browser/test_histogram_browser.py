"""The dashboard's histogram-over-steps view in a real JupyterLab (headless Chromium): with
``--histogram`` it grows while the traced cell runs; a click on a heatmap row while the cell runs
opens the panel at once for that tensor (waiting for the busy kernel), and its data arrive when the
cell ends; its pixels have the colours Python computes from the exact counts; hover shows the exact
count; the NaN steps are marked in the separate non-finite row; a hostile tensor name is text; the
close button hides it (Python sees the tensor cleared)."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from dsnotebook.widgets import colors

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"
ROOT = ".dsn-histogram"

SETUP = f'''%load_ext dsnotebook
import time, json
import torch, torch.nn.functional as F
from torch import nn
HOSTILE = {HOSTILE!r}
torch.manual_seed(0)
model = nn.Sequential()
model.add_module("conv", nn.Conv2d(1, 4, 3, padding=1))
model.add_module("relu", nn.ReLU())
model.add_module("flat", nn.Flatten())
model.add_module(HOSTILE, nn.Linear(4 * 8 * 8, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
data = [(torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))) for _ in range(4)]
'''

TRAIN = '''%%deepseek_trace --histogram conv.weight
for i in range(70):
    if i == 60:
        with torch.no_grad():
            model[3].weight[0, 0] = float("nan")
    xb, yb = data[i % 4]
    opt.zero_grad()
    F.cross_entropy(model(xb), yb).backward()
    opt.step()
    time.sleep(0.08)
'''

STATE = '''h = _trace.dashboard.histogram
print("STATE" + json.dumps({"tensor": h.tensor, "steps": h.steps, "counts": h.counts().tolist(),
      "numel": h.numel, "run_steps": _trace.run.steps}))'''


def _data(page: Any) -> dict[str, str]:
    return page.evaluate(f"() => {{ const r = document.querySelector('{ROOT}'); return r ? Object.assign({{}}, r.dataset) : null; }}")


def _state(nb: Any) -> dict[str, Any]:
    out = nb.run_new_cell(STATE)
    return json.loads(next(line for line in out.splitlines() if line.startswith("STATE"))[5:])


def _pixel(page: Any, x: float, y: float) -> list[int]:
    return page.evaluate(
        """([x, y]) => { const c = document.querySelector('.dsn-hist-canvas'); const d = Number(
             document.querySelector('.dsn-histogram').dataset.dpr) || 1;
           return Array.from(c.getContext('2d').getImageData(Math.floor(x * d), Math.floor(y * d), 1, 1).data); }""",
        [x, y])


def test_histogram_view_in_the_dashboard(page: Any, lab: Any, nb: Any, hm: Any) -> None:
    lab.write_notebook("histogram.ipynb", [SETUP, TRAIN])
    nb.open("histogram.ipynb")
    nb.run_all()
    # live: the panel follows conv.weight (--histogram) and gains columns while the cell runs
    page.wait_for_function(f"() => (document.querySelector('{ROOT}') || {{dataset: {{}}}}).dataset.columns >= 3",
                           timeout=120000)
    seen = []
    for _ in range(15):
        seen.append(int(_data(page).get("columns") or 0))
        time.sleep(0.1)
    assert "*" in nb.prompts()[1], "the training cell ended too early"
    print(f"\nhistogram columns seen while the cell ran: {sorted(set(seen))}")
    assert len(set(seen)) >= 3 and _data(page)["tensor"] == "conv.weight", seen
    nb.screenshot(page.locator(".dsn-dashboard"), "dashboard_histogram_live.png")
    # a click on the hostile layer's weight row while the cell runs: the panel switches at once and
    # says it waits for the kernel (busy with the cell); the data come when the cell ends
    row = 2  # conv.weight, conv.bias, <hostile>.weight
    canvas = hm.widget_state(page)["canvas"]
    x, y = hm.cell_center(canvas, row, 1)
    box = page.locator(".dsn-heatmap-canvas").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.tensor === {json.dumps(HOSTILE + '.weight')}")
    if "*" in nb.prompts()[1]:
        assert _data(page)["ready"] == "false" and page.locator(f"{ROOT} .dsn-hist-empty").is_visible()
    nb.wait_done(2, timeout=120)
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.ready === 'true'", timeout=20000)
    page.wait_for_function(f"() => Number(document.querySelector('{ROOT}').dataset.columns) === 70", timeout=20000)
    nb.screenshot(page.locator(".dsn-dashboard"), "dashboard_histogram.png")

    st = _state(nb)
    assert st["tensor"] == HOSTILE + ".weight" and st["steps"] == st["run_steps"] == list(range(70))
    counts = st["counts"]  # [steps][65]: 64 bins then non-finite
    d = _data(page)
    b0, b1 = int(d["bin0"]), int(d["bin1"])
    used = [b for b in range(1, 64) if any(c[b] for c in counts)]
    assert (b0, b1) == (used[0], used[-1])
    positive = [c[b] for c in counts for b in range(b0, b1 + 1) if c[b] > 0]
    vmin, vmax = min(positive), max(positive)
    assert float(d["vmin"]) == vmin and float(d["vmax"]) == vmax

    # pixels: each drawn cell of a few columns has the colour of its exact count (log scale)
    agg, cw, ch = int(d["agg"]), float(d["cellW"]), float(d["cellH"])
    x0, bins_y, nf_y = float(d["x0"]), float(d["binsY"]), float(d["nfY"])
    bad = []
    for col in (0, 17, 33, 59):
        i = col // agg
        cols = range(i * agg, min(70, (i + 1) * agg))
        for b in range(b0, b1 + 1):
            v = max(counts[c][b] for c in cols)
            px = _pixel(page, x0 + (i + 0.5) * cw, bins_y + (b1 - b + 0.5) * ch)
            if v == 0:
                ok = px[3] == 0
            else:
                idx = colors.color_index(v, vmin, vmax, True)
                ok = tuple(px[:3]) in [colors.LUT[j] for j in range(max(0, idx - 1), min(255, idx + 1) + 1)]
            if not ok:
                bad.append((col, b, v, px))
    assert not bad, bad[:5]
    # the non-finite row: red from the NaN step on, empty before
    assert all(counts[s][64] > 0 for s in range(60, 70)) and not any(counts[s][64] for s in range(60))
    assert tuple(_pixel(page, x0 + (65 // agg + 0.5) * cw, nf_y + ch / 2)[:3]) == colors.MARK_RGB
    assert _pixel(page, x0 + (10 // agg + 0.5) * cw, nf_y + ch / 2)[3] == 0

    # hover: the exact count of that step and bin, as text
    b = max(range(b0, b1 + 1), key=lambda k: counts[5][k])
    page.locator(".dsn-hist-canvas").scroll_into_view_if_needed()
    cbox = page.locator(".dsn-hist-canvas").bounding_box()
    hx, hy = cbox["x"] + x0 + (5 // agg + 0.5) * cw, cbox["y"] + bins_y + (b1 - b + 0.5) * ch
    page.mouse.move(hx - 2, hy - 2)
    page.mouse.move(hx, hy)
    tip = page.locator(".dsn-hist-tooltip")
    tip.wait_for(state="visible", timeout=5000)
    text = tip.text_content() or ""
    want = max(counts[c][b] for c in range(5 // agg * agg, min(70, (5 // agg + 1) * agg)))
    assert f"count: {want:,}" in text, text
    assert f"({100 * want / st['numel']:#.3g}% of {st['numel']:,})" in text, text  # share of the tensor
    nb.screenshot(page.locator(ROOT), "histogram_hover.png")

    # the hostile name is text, nothing was made from it
    assert page.locator(f"{ROOT} .dsn-hist-tensor").text_content() == HOSTILE + ".weight"
    assert page.evaluate(f"() => document.querySelectorAll('{ROOT} img').length") == 0

    # close: the panel goes, Python's selection is cleared
    page.locator(f"{ROOT} .dsn-hist-close").click()
    page.wait_for_function(f"() => !document.querySelector('{ROOT}').checkVisibility()", timeout=10000)
    assert _state(nb)["tensor"] == ""
    assert page.evaluate("() => document.querySelector('.dsn-heatmap').dataset.selectedModule") == HOSTILE
