"""The real quick start (notebooks/01_quickstart.ipynb) in JupyterLab + headless Chromium:
the live heatmap appears, redraws while the training cell runs, and its pixels match the
statistics the kernel recorded (read back by typing a cell, as a user would)."""
from __future__ import annotations

import json
import pathlib
import shutil
import time
from typing import Any

import numpy as np
import pytest


pytestmark = pytest.mark.browser

REPO = pathlib.Path(__file__).resolve().parents[2]
ROOT = ".dsn-heatmap"
QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"

READBACK = """import json, numpy as np
_g = _trace.run.to_dataframe("grads")
_names = [t["name"] for t in _trace.run.tensors]
_steps = sorted(_g.step.unique().tolist())
_out = {"names": _names, "modules": [t["module"] for t in _trace.run.tensors], "steps": _steps}
for _k in ("norm", "absmax", "nonfinite"):
    _p = _g.pivot(index="name", columns="step", values=_k).reindex(index=_names, columns=_steps)
    _out[_k] = _p.to_numpy(dtype=np.float32).astype(float).tolist()
print("JSON" + json.dumps(_out))"""


def _code_cells(path: pathlib.Path) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_quickstart_live_heatmap(page: Any, lab: Any, nb: Any, hm: Any) -> None:
    if not QUICKSTART.exists():
        pytest.skip("notebooks/01_quickstart.ipynb not there yet")
    cells = _code_cells(QUICKSTART)
    train = next((i for i, c in enumerate(cells) if c.lstrip().startswith("%%deepseek_trace")), None)
    assert train is not None, "the quick start has no %%deepseek_trace cell"
    shutil.copy(QUICKSTART, lab.root / "01_quickstart.ipynb")
    t0 = time.monotonic()
    nb.open("01_quickstart.ipynb")
    nb.run_all()

    draws: list[int] = []
    saw_running = False
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        prompts = nb.prompts()
        running = len(prompts) > train and "*" in prompts[train]
        saw_running |= running
        st = hm.widget_state(page)
        if running and st is not None:
            draws.append(int(st["root"].get("draws", "0")))
        if saw_running and not running:
            break
        time.sleep(0.05)
    assert saw_running, f"never saw the training cell running: {nb.prompts()}"
    t_train = time.monotonic() - t0
    increases = sum(1 for a, b in zip(draws, draws[1:]) if b > a)
    assert increases >= 2, f"heatmap redrew {increases} times while training ran: {draws[:50]}"
    nb.wait_done(len(cells), timeout=300)

    out = nb.run_new_cell(READBACK)
    assert "JSON" in out, out[-2000:]
    data = json.loads(out.split("JSON", 1)[1].strip())
    steps, names = data["steps"], data["names"]
    page.wait_for_function(
        f"() => document.querySelector('{ROOT}').dataset.columns === '{len(steps)}'", timeout=15000)
    st = hm.widget_state(page)
    assert st["root"]["rows"] == str(len(names))
    values = np.array([data["norm"], data["absmax"], data["nonfinite"]], dtype=np.float32)  # [3, R, C]
    marked = {(int(r), int(c)) for r, c in zip(*np.nonzero(values[2] > 0))}

    page.locator(ROOT).scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    nb.screenshot(page.locator(ROOT), "quickstart_heatmap.png")
    n = hm.check_pixels(page, values, 0, True, marked)
    assert n >= len(names) * int(st["canvas"]["bins"]) - len(marked)
    hm.check_marks(page, marked)

    text = hm.hover_cell(page, 0, len(steps) // 2)
    assert f"module: {data['modules'][0]}" in text, text
    assert f"step: {steps[len(steps) // 2]}" in text, text
    nb.screenshot(page.locator(ROOT), "quickstart_heatmap_tooltip.png")
    page.screenshot(path=str(REPO / "test-artifacts" / "quickstart_page.png"))

    page.select_option(".dsn-stat-select", "absmax")
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.stat === 'absmax'")
    hm.check_pixels(page, values, 1, True, marked)
    page.mouse.move(0, 0)
    nb.screenshot(page.locator(ROOT), "quickstart_heatmap_absmax.png")
    page.probe.check()
    print(f"quickstart browser test: training cell finished after {t_train:.1f}s, "
          f"{increases} live redraws, total {time.monotonic() - t0:.1f}s")
