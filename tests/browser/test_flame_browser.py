"""The flame view in a real JupyterLab (headless Chromium): it renders a traced fusion step, hover
shows times and shapes, click shows the input/output statistics and selects the module in
Python, the mode buttons answer, hostile function and module names stay text; and under
``%%deepseek_trace`` the dashboard grows a "functions" tab."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"

SETUP = f'''%load_ext dsnotebook
import json, torch, dsnotebook
import torch.nn.functional as F
from torch import nn
HOSTILE = {HOSTILE!r}

class Fusion(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.add_module(HOSTILE, nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4)))
        self.gate = nn.Linear(8, 2)

    @dsnotebook.trace(level="debug")
    def forward(self, x):
        a = self.conv(x).mean(-1)
        b = slow_branch(self, x)
        w = torch.softmax(self.gate(torch.cat([a, b], -1)), -1)
        return w[:, :1] * a + w[:, 1:] * b

@dsnotebook.trace(level="debug", name=HOSTILE)
def slow_branch(m, x):
    for _ in range(20):
        y = getattr(m, HOSTILE)(x.mean(-1))
    return y

torch.manual_seed(0)
model = Fusion()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
dsnotebook.trace.clear()
for _ in range(3):
    model(torch.randn(8, 4, 6))
w = dsnotebook.trace.flame()
w
'''

NODES = '''print("NODES" + json.dumps({"nodes": [{k: n[k] for k in ("id", "name", "kind", "depth", "x", "w", "module")}
                                   for n in w.nodes], "total": w.total}))'''
STATE = '''print("STATE" + json.dumps({"selected": w.selected, "module": w.selected_module, "mode": w.mode,
                              "shown": w.shown_call}))'''

TRAIN = '''%%deepseek_trace
for i in range(4):
    opt.zero_grad()
    F.mse_loss(model(torch.randn(8, 4, 6)), torch.zeros(8, 4)).backward()
    opt.step()
'''


def _json(nb: Any, code: str, tag: str) -> dict[str, Any]:
    out = nb.run_new_cell(code)
    line = next(l for l in out.splitlines() if l.startswith(tag))
    return json.loads(line[len(tag):])


def _box_point(page: Any, node: dict[str, Any], root: str = ".dsn-flame") -> tuple[float, float]:
    """Page coordinates of the middle of a box (from the canvas's x range, width and row height)."""
    canvas = page.locator(f"{root} .dsn-flame-canvas")
    canvas.scroll_into_view_if_needed()
    box, deadline = canvas.bounding_box(), time.monotonic() + 10
    while time.monotonic() < deadline:  # new cell outputs move the page: wait until it stands still
        time.sleep(0.15)
        again = canvas.bounding_box()
        if again == box:
            break
        box = again
    d = page.evaluate(f"() => Object.assign({{}}, document.querySelector('{root} .dsn-flame-canvas').dataset)")
    x0, x1, width, row = float(d["x0"]), float(d["x1"]), float(d["plotW"]), float(d["rowH"])
    mid = (max(node["x"], x0) + min(node["x"] + node["w"], x1)) / 2
    return box["x"] + (mid - x0) / (x1 - x0) * width, box["y"] + node["depth"] * row + row / 2


def test_flame_view(page: Any, lab: Any, nb: Any) -> None:
    lab.write_notebook("flame.ipynb", [SETUP])
    nb.open("flame.ipynb")
    nb.run_all()
    nb.wait_done(1, timeout=120)
    page.wait_for_function("() => { const c = document.querySelector('.dsn-flame .dsn-flame-canvas');"
                           " return c && Number(c.dataset.draws) >= 1 && Number(c.dataset.nodes) >= 5; }", timeout=30000)
    data = _json(nb, NODES, "NODES")
    nodes = data["nodes"]
    root = next(n for n in nodes if n["depth"] == 0)
    hostile = next(n for n in nodes if n["name"] == HOSTILE)
    assert root["name"] == "Fusion.forward" and hostile["depth"] == 1

    # the canvas shows the boxes: the root box's middle is painted, not background
    x, y = _box_point(page, root)
    canvas = page.locator(".dsn-flame .dsn-flame-canvas").bounding_box()
    px = page.evaluate("""([x, y]) => { const c = document.querySelector('.dsn-flame .dsn-flame-canvas');
        const d = Number(c.dataset.dpr) || 1; return Array.from(c.getContext('2d').getImageData(x * d, y * d, 1, 1).data); }""",
                       [x - canvas["x"], y - canvas["y"]])
    assert px[3] == 255 and px[:3] != [255, 255, 255], px
    nb.screenshot(page.locator(".dsn-flame"), "flame_view.png")

    # hover the hostile function: its name, time and shapes in the tooltip, as text
    page.mouse.move(*_box_point(page, hostile))
    tip = page.locator(".dsn-flame .dsn-flame-tip")
    tip.wait_for(state="visible", timeout=5000)
    assert tip.get_attribute("data-id") == hostile["id"]
    text = tip.text_content() or ""
    assert text.startswith(f"{HOSTILE} (function)") and "wall" in text and "out: 8×4 float32" in text, text
    nb.screenshot(page.locator(".dsn-flame"), "flame_hover.png")

    # click: the details panel lists inputs and outputs with statistics; Python sees the selection
    page.mouse.click(*_box_point(page, hostile))
    page.wait_for_selector(".dsn-flame .dsn-flame-row", timeout=5000)
    assert page.locator(".dsn-flame .dsn-flame-details-title").text_content() == f"{HOSTILE} (function)"
    cells = page.locator(".dsn-flame .dsn-flame-row").first.locator("td").all_text_contents()
    assert cells[0] == "in" and cells[2] == "8×4×6" and cells[5] not in ("", "NaN"), cells
    st = _json(nb, STATE, "STATE")
    assert st["selected"] == hostile["id"], st

    # a module box (the hostile Sequential, called inside the hostile function): selects the module
    mod = max((n for n in nodes if n["kind"] == "module" and n["name"] == HOSTILE), key=lambda n: n["w"])
    page.mouse.click(*_box_point(page, mod))
    page.wait_for_function(f"() => {{ const t = document.querySelector('.dsn-flame .dsn-flame-details-title');"
                           f" return t && t.textContent === {json.dumps(HOSTILE + ' (module)')}; }}")
    st = _json(nb, STATE, "STATE")
    assert st["module"] == HOSTILE and st["selected"] == mod["id"], st
    assert page.evaluate("() => document.querySelectorAll('.dsn-flame img').length") == 0

    # controls: previous call, then "all calls" merges the three calls
    page.locator(".dsn-flame .dsn-flame-prev").click()
    page.wait_for_function("() => document.querySelector('.dsn-flame .dsn-flame-head').textContent.includes('call 2 of 3')")
    page.locator(".dsn-flame button.dsn-flame-mode", has_text="all calls").click()
    page.wait_for_function("() => document.querySelector('.dsn-flame button.dsn-on').dataset.mode === 'all'")
    st = _json(nb, STATE, "STATE")
    assert st["mode"] == "all" and st["shown"] == -1, st
    page.mouse.move(*_box_point(page, root))
    tip.wait_for(state="visible", timeout=5000)
    assert "in 3 calls" in (tip.text_content() or "")
    nb.screenshot(page.locator(".dsn-flame"), "flame_all_calls.png")

    # under %%deepseek_trace: a "functions" tab in the dashboard, per-step view available
    nb.run_new_cell(TRAIN, timeout=120)
    page.locator(".dsn-dashboard .lm-TabBar-tab", has_text="functions").click()
    sel = ".dsn-dashboard .dsn-flame"
    page.wait_for_function(f"() => {{ const c = document.querySelector('{sel} .dsn-flame-canvas');"
                           " return c && Number(c.dataset.nodes) >= 5; }", timeout=30000)
    assert page.locator(f"{sel} button.dsn-flame-mode", has_text="per step").count() == 1
    assert page.evaluate("() => document.querySelectorAll('.dsn-dashboard img').length") == 0
    nb.screenshot(page.locator(".dsn-dashboard"), "flame_dashboard_tab.png")
