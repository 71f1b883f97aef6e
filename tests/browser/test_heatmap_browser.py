"""The heatmap widget in a real JupyterLab, in headless Chromium.

A synthetic notebook (generated here) feeds known values to a HeatmapWidget while its
cell runs; the test checks live redraws, pixel colours against ``color_for``, the
tooltip, the hostile module name, the statistic selector and the non-finite marks.
"""
from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest


pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"

# Shared by the notebook (as source) and the test (exec'd here): the values fed.
GEN = f'''
import numpy as np
HOSTILE = {HOSTILE!r}
ROWS = [
    {{"name": "conv1.weight", "module": "conv1", "tensor": "weight", "shape": [8, 1, 3, 3]}},
    {{"name": "conv1.bias", "module": "conv1", "tensor": "bias", "shape": [8]}},
    {{"name": HOSTILE + ".weight", "module": HOSTILE, "tensor": "weight", "shape": [16, 8]}},
    {{"name": "frozen.weight", "module": "frozen", "tensor": "weight", "shape": [4, 4]}},
    {{"name": "fc.weight", "module": "fc", "tensor": "weight", "shape": [10, 16]}},
    {{"name": "fc.bias", "module": "fc", "tensor": "bias", "shape": [10]}},
]
STATS = [
    {{"key": "norm", "label": "grad norm", "log": True}},
    {{"key": "absmax", "label": "grad abs-max", "log": True}},
    {{"key": "update_ratio", "label": "update / weight", "log": True}},
    {{"key": "nonfinite", "label": "non-finite count", "log": False}},
    {{"key": "zero_frac", "label": "zero fraction", "log": False}},
]
N_STEPS = 30
BAD = (4, 12)     # (row, step) with non-finite gradients
FROZEN = 3        # row without data (NaN)

def values_for(step):
    v = np.zeros((len(STATS), len(ROWS), 1), np.float32)
    for r in range(len(ROWS)):
        base = 10.0 ** (-3 + 0.8 * r) * (1.0 + 0.5 * np.sin(0.3 * step + r))
        v[0, r, 0] = base
        v[1, r, 0] = 0.3 * base * (1 + (step % 3))
        v[2, r, 0] = 1e-3 * (1 + r) * (1 + step % 5)
        v[4, r, 0] = ((7 * step + 3 * r) % 10) / 10
    v[:, FROZEN, 0] = np.nan
    if step == BAD[1]:
        v[3, BAD[0], 0] = 3
        v[0, BAD[0], 0] = np.inf
        v[1, BAD[0], 0] = np.inf
    if step == 20:
        v[0, 1, 0] = 0.0   # an all-zero gradient: bottom of the log scale
    return v
'''

CELL = GEN + '''
import time
from dsnotebook.widgets import HeatmapWidget
w = HeatmapWidget(rows=ROWS, stats=STATS)
w.display()
for step in range(N_STEPS):
    w.append([step], values_for(step))
    w.set_status(f"running… step {step}")
    time.sleep(0.1)
w.set_status(f"finished - {N_STEPS} steps")
w.flush()
w.update_display()   # the saved output's text/plain: the final summary
'''

ns: dict[str, Any] = {}
exec(GEN, ns)
ROWS, STATS, N_STEPS, BAD, FROZEN = ns["ROWS"], ns["STATS"], ns["N_STEPS"], ns["BAD"], ns["FROZEN"]
VALUES = np.concatenate([ns["values_for"](s) for s in range(N_STEPS)], axis=2)  # [S, R, C]

ROOT = ".dsn-heatmap"


# ---------------------------------------------------------------- the tests
def test_synthetic_heatmap_live(page: Any, lab: Any, nb: Any, hm: Any) -> None:
    t_start = time.monotonic()
    lab.write_notebook("synthetic_heatmap.ipynb", [CELL, 'print("cell 2 done")'])
    nb.open("synthetic_heatmap.ipynb")
    nb.run_all()

    # live: the heatmap redraws while the first cell is still running ([*])
    draws_while_running: list[int] = []
    saw_running = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        prompts = nb.prompts()
        st = hm.widget_state(page)
        running = bool(prompts) and "*" in prompts[0]
        saw_running |= running
        if running and st is not None:
            draws_while_running.append(int(st["root"].get("draws", "0")))
            if len(draws_while_running) == 20:  # mid-run: what a user sees while it trains
                nb.screenshot(page.locator(ROOT), "heatmap_synthetic_live.png")
        if saw_running and not running:
            break
        time.sleep(0.05)
    assert saw_running, "never saw the cell running"
    assert draws_while_running, "the widget never appeared while the cell ran"
    increases = sum(1 for a, b in zip(draws_while_running, draws_while_running[1:]) if b > a)
    assert increases >= 2, f"data-draws increased only {increases} times while running: {draws_while_running}"
    nb.wait_done(2)
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.columns === '{N_STEPS}'",
                           timeout=15000)
    st = hm.widget_state(page)
    assert st["root"]["rows"] == str(len(ROWS))
    assert "finished" in (page.locator(".dsn-status").text_content() or "")
    page.locator(ROOT).scroll_into_view_if_needed()
    nb.screenshot(page.locator(ROOT), "heatmap_synthetic.png")

    marked = {(BAD[0], BAD[1])}
    # pixels: grad norm (log scale), NaN row grey, non-finite cell marked
    assert hm.check_pixels(page, VALUES, 0, True, marked) == len(ROWS) * N_STEPS - 1
    hm.check_marks(page, marked)

    # hover: module name in the tooltip, as text; the hostile name never becomes HTML
    text = hm.hover_cell(page, 2, 5)
    assert HOSTILE in text and "step: 5" in text, text
    shown = text.split("grad norm: ")[1].split("non-finite")[0].strip()
    assert np.float32(float(shown)) == VALUES[0, 2, 5], (shown, VALUES[0, 2, 5])
    text = hm.hover_cell(page, 0, 3)
    assert "module: conv1" in text and "tensor: weight" in text, text
    text = hm.hover_cell(page, BAD[0], BAD[1])
    assert "non-finite values: 3" in text, text
    nb.screenshot(page.locator(ROOT), "heatmap_synthetic_tooltip.png")
    assert page.locator(f"{ROOT} img").count() == 0
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0

    # the selector switches statistic (and redraws); marks stay
    draws = int(hm.widget_state(page)["root"]["draws"])
    page.select_option(".dsn-stat-select", "absmax")
    page.wait_for_function(
        f"() => document.querySelector('{ROOT}').dataset.stat === 'absmax'"
        f" && Number(document.querySelector('{ROOT}').dataset.draws) > {draws}")
    hm.check_pixels(page, VALUES, 1, True, marked)
    hm.check_marks(page, marked)
    page.select_option(".dsn-stat-select", "zero_frac")
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.stat === 'zero_frac'")
    hm.check_pixels(page, VALUES, 4, False, marked)
    hm.check_marks(page, marked)
    page.mouse.move(0, 0)
    nb.screenshot(page.locator(ROOT), "heatmap_synthetic_zero_frac.png")

    # the choice reached the kernel, and the text fallback is readable
    out = nb.run_new_cell("print(w.stat); print(w._repr_mimebundle_()[0]['text/plain'].splitlines()[0])")
    assert out.splitlines()[0] == "zero_frac", out
    assert f"{len(ROWS)} tensors x {N_STEPS} steps" in out, out

    # dark theme: same cells, readable labels
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=15000)
    draws = int(hm.widget_state(page)["root"]["draws"])
    page.select_option(".dsn-stat-select", "norm")
    page.wait_for_function(f"() => Number(document.querySelector('{ROOT}').dataset.draws) > {draws}")
    page.locator(ROOT).scroll_into_view_if_needed()
    hm.check_pixels(page, VALUES, 0, True, marked)
    nb.screenshot(page.locator(ROOT), "heatmap_synthetic_dark.png")
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=15000)

    # reload the page: the view is rebuilt from the kernel's snapshot trait alone
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    saved = json.loads((lab.root / "synthetic_heatmap.ipynb").read_text())
    plain = "".join("".join(o["data"].get("text/plain", "")) for o in saved["cells"][0]["outputs"] if "data" in o)
    assert f"{len(ROWS)} tensors x {N_STEPS} steps" in plain, plain  # nbconvert/terminal text
    page.reload()
    page.wait_for_function(
        f"() => document.querySelector('{ROOT}') && document.querySelector('{ROOT}').dataset.columns === '{N_STEPS}'",
        timeout=60000)
    page.locator(ROOT).first.scroll_into_view_if_needed()
    hm.check_pixels(page, VALUES, 0, True, marked)
    hm.check_marks(page, marked)
    page.probe.check()
    print(f"synthetic heatmap browser test: {time.monotonic() - t_start:.1f}s")


EARLY_CELL = GEN + '''
import time
from dsnotebook.widgets import HeatmapWidget
w = HeatmapWidget(rows=ROWS, stats=STATS)
for step in range(10):          # sent before the browser has a model for w: lost
    w.append([step], values_for(step))
    time.sleep(0.02)
display(w)
time.sleep(1.0)
for step in range(10, N_STEPS):  # deltas after a gap: ignored until a snapshot
    w.append([step], values_for(step))
    time.sleep(0.05)
w.flush()
'''


def test_data_sent_before_the_view_exists_is_recovered(page: Any, lab: Any, nb: Any, hm: Any) -> None:
    """Custom messages that reach no model are lost; the snapshot trait repairs the view."""
    lab.write_notebook("early_heatmap.ipynb", [EARLY_CELL])
    nb.open("early_heatmap.ipynb")
    nb.run_all()
    nb.wait_done(1)
    page.wait_for_function(
        f"() => document.querySelector('{ROOT}') && document.querySelector('{ROOT}').dataset.columns === '{N_STEPS}'",
        timeout=20000)
    st = hm.widget_state(page)
    assert st["root"]["stale"] == "false"
    print(f"early data: {st['root']['gaps']} deltas ignored after a gap, {st['root']['snapshots']} snapshots applied")
    hm.check_pixels(page, VALUES, 0, True, {(BAD[0], BAD[1])})
    page.probe.check()


BIG_CELLS = [
    '''
import time, numpy as np
from dsnotebook.widgets import HeatmapWidget
R, C = 2000, 5000
rows = [{"name": f"block{i // 4}.layer.{('weight', 'bias', 'gamma', 'beta')[i % 4]}",
         "module": f"block{i // 4}.layer", "tensor": ('weight', 'bias', 'gamma', 'beta')[i % 4]}
        for i in range(R)]
big = HeatmapWidget(rows=rows, stats=[{"key": "norm", "label": "grad norm", "log": True},
                                      {"key": "nonfinite", "label": "non-finite count", "log": False}])
display(big)
''',
    '''
rng = np.random.default_rng(1)
vals = np.empty((2, R, C), np.float32)
vals[0] = np.exp(rng.normal(-3, 2, size=(R, C))).astype(np.float32)
vals[1] = 0
vals[1, 100, 2500] = 1
t0 = time.perf_counter()
for a in range(0, C, 500):      # as a long run would: batches of columns
    big.append(list(range(a, a + 500)), vals[:, :, a:a + 500])
big.flush()
print(f"sent in {time.perf_counter() - t0:.2f}s, {big.series.messages} messages")
''',
]


def test_big_heatmap_stays_responsive(page: Any, lab: Any, nb: Any, hm: Any) -> None:
    """2000 tensors x 5000 steps: columns aggregate to the canvas width and draw fast."""
    lab.write_notebook("big_heatmap.ipynb", BIG_CELLS)
    nb.open("big_heatmap.ipynb")
    nb.run_all()
    nb.wait_done(2, timeout=180)
    page.wait_for_function(f"() => document.querySelector('{ROOT}') && document.querySelector('{ROOT}').dataset.columns === '5000'",
                           timeout=60000)
    # redraw a few times (switching statistic) and time it
    times = []
    for key in ("nonfinite", "norm", "nonfinite", "norm"):
        draws = int(hm.widget_state(page)["root"]["draws"])
        t0 = time.monotonic()
        page.select_option(".dsn-stat-select", key)
        page.wait_for_function(f"() => Number(document.querySelector('{ROOT}').dataset.draws) > {draws}")
        times.append(time.monotonic() - t0)
    st = hm.widget_state(page)
    draw_ms = float(st["root"]["drawMs"])
    agg = int(st["canvas"]["agg"])
    assert agg > 1 and int(st["canvas"]["bins"]) * agg >= 5000
    assert draw_ms < 1500, f"one draw of 2000x5000 took {draw_ms} ms"
    assert max(times) < 3.0, times
    text = hm.hover_cell(page, 100, 2500)
    assert "non-finite values: 1" in text and "block25.layer" in text and "(max of" in text, text
    page.mouse.move(0, 0)
    nb.screenshot(page.locator(ROOT), "heatmap_big_2000x5000.png")
    rng = np.random.default_rng(1)  # the notebook's values, regenerated
    norm = np.exp(rng.normal(-3, 2, size=(2000, 5000))).astype(np.float32)
    values = np.stack([norm, np.zeros_like(norm)])
    values[1, 100, 2500] = 1
    sample = [(r, c) for r in range(0, 2000, 53) for c in range(0, 5000, 41)]
    assert hm.check_pixels(page, values, 0, True, {(100, 2500)}, cells=sample) > 1000  # max per bin

    # zoom: drag across ~240 steps around step 2500 -> one column per step, exact values
    canvas = hm.widget_state(page)["canvas"]
    box = page.locator(".dsn-heatmap-canvas").bounding_box()
    xa, y = hm.cell_center(canvas, 50, 2380)
    xb, _ = hm.cell_center(canvas, 50, 2620)
    page.mouse.move(box["x"] + xa, box["y"] + y)
    page.mouse.down()
    page.mouse.move(box["x"] + (xa + xb) / 2, box["y"] + y, steps=4)
    page.mouse.move(box["x"] + xb, box["y"] + y, steps=4)
    page.mouse.up()
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.zoomed === 'true'")
    st = hm.widget_state(page)
    col0, nvis = int(st["canvas"]["col0"]), int(st["canvas"]["visible"])
    assert st["canvas"]["agg"] == "1" and col0 <= 2400 and col0 + nvis >= 2600, st["canvas"]
    sample = [(r, c) for r in range(0, 2000, 37) for c in range(col0, col0 + nvis, 7)]
    assert hm.check_pixels(page, values, 0, True, {(100, 2500)}, cells=sample) > 1000
    hm.check_marks(page, {(100, 2500)})
    text = hm.hover_cell(page, 100, 2500)
    assert "step: 2500" in text and "non-finite values: 1" in text, text
    text = hm.hover_cell(page, 7, 2450)
    shown = text.split("grad norm: ")[1].split("non-finite")[0].strip()
    assert np.float32(float(shown)) == norm[7, 2450], (shown, norm[7, 2450])
    page.mouse.move(0, 0)
    nb.screenshot(page.locator(ROOT), "heatmap_big_zoomed.png")
    page.locator(".dsn-zoom-reset").click()
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.zoomed === 'false'")
    page.probe.check()
    print(f"big heatmap: draw {draw_ms} ms ({st['root']['drawPhases']}), select->redraw {max(times):.2f}s, agg {agg}")
