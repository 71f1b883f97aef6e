"""The heatmap at large size stays right through its fast paths, in a real JupyterLab.

2,000 tensors x a thinned history (the Run's own thinning, ``StepTable``), then live pushes that
drop thinned columns and append new ones, as ``LiveHeatmap`` sends them. The view reuses its cell
image across redraws (bins moved, not recoloured; the image before the last one on zoom-out;
bin maxima cached), so every drawn cell is compared with what Python computes: after the live
pushes (bins of several columns), zoomed in (cells of one column), after pushes while zoomed,
zoomed back out, and on another statistic; plus shape, marks and the tooltip's value.
No timing here: benchmarks/heatmap_browser.py measures the redraw time.
"""
from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from dsnotebook.widgets import colors

pytestmark = pytest.mark.browser

ROOT = ".dsn-heatmap"

# Shared by the notebook (as source) and the test (exec'd here): rows, values, thinning, pushes.
GEN = '''
import numpy as np
from dsnotebook.run.steps import StepTable
R, KEEP, N0, PUSH = 2000, 2000, 100_000, 10
STATS = [{"key": "norm", "label": "grad norm", "log": True},
         {"key": "nonfinite", "label": "non-finite count", "log": False},
         {"key": "zero_frac", "label": "zero fraction", "log": False}]
ROWS = [{"name": f"h.{i // 5}.mlp.{('w', 'b', 'g', 'u', 'v')[i % 5]}", "module": f"h.{i // 5}.mlp",
         "tensor": ('w', 'b', 'g', 'u', 'v')[i % 5]} for i in range(R)]
BAD = {100_012: 321, 100_107: 1500}   # step -> row with non-finite gradients (live pushes)
PEAK = {100_055: (7, 1e5), 100_150: (1900, 1e6)}   # step -> (row, value): the range grows, every colour changes

def values_for(steps):
    out = np.zeros((len(STATS), R, len(steps)), np.float32)
    scale = np.linspace(-5, 2, R)
    for j, s in enumerate(steps):
        rng = np.random.default_rng(s)
        out[0, :, j] = np.exp(scale + rng.normal(size=R))
        out[2, :, j] = rng.uniform(size=R)
        if s in PEAK:
            out[0, PEAK[s][0], j] = PEAK[s][1]
        if s in BAD:
            out[1, BAD[s], j] = 2
            out[0, BAD[s], j] = np.inf
    out[:, ::89, :] = np.nan   # frozen tensors
    return out

class Feed:
    """The Run's thinning and LiveHeatmap's pushes (complete steps only, drops of sent steps)."""
    def __init__(self):
        self.table = StepTable(KEEP)
        for s in range(N0):
            self.table.record(s)
        self.held = list(self.table.order[:-1])
        self.step = N0

    def push(self):
        gone = []
        for _ in range(PUSH):
            gone += self.table.record(self.step)[1]
            self.step += 1
        gone = [s for s in gone if s in set(self.held)]
        new = [s for s in self.table.order[:-1] if s > self.held[-1]]
        self.held = [s for s in self.held if s not in set(gone)] + new
        return gone, new
'''

SETUP = GEN + '''
from dsnotebook.widgets import HeatmapWidget
w = HeatmapWidget(rows=ROWS, stats=STATS)
display(w)
'''


def _pushes(n: int) -> str:
    """Notebook code: ``n`` live pushes a quarter second apart (columns dropped and appended), then flush."""
    return f'''
import time
for _ in range({n}):
    gone, new = feed.push()
    w.drop(gone)
    w.append(new, values_for(new))
    time.sleep(0.25)
w.flush()
print("held", len(feed.held))
'''


# the history first (as deltas: the view then holds every column), then live pushes
HISTORY_AND_PUSHES = '''
import time
feed = Feed()
w.append(feed.held, values_for(feed.held))
w.flush()
time.sleep(1.0)
''' + _pushes(12)

MORE_PUSHES = _pushes(6)

ns: dict[str, Any] = {}
exec(GEN, ns)


def expected_after(pushes: int) -> tuple[list[int], np.ndarray]:
    feed = ns["Feed"]()
    for _ in range(pushes):
        feed.push()
    return feed.held, ns["values_for"](feed.held)


def lut_index(v: np.ndarray, lo: float, hi: float, log: bool) -> np.ndarray:
    """colors.color_index, vectorised (-1: the NaN colour)."""
    v = v.astype(np.float64)
    with np.errstate(all="ignore"):
        if hi <= lo:
            t = np.full(v.shape, 0.5)
        elif log:
            t = np.where(v > 0, (np.log10(v) - np.log10(lo)) / (np.log10(hi) - np.log10(lo)), 0.0)
        else:
            t = (v - lo) / (hi - lo)
        t = np.where(v == np.inf, 1.0, np.where(v == -np.inf, 0.0, t))
        idx = np.floor(np.clip(t, 0, 1) * 255 + 0.5).astype(np.int64)
    return np.where(np.isnan(v) | np.isnan(lo), -1, idx)


def drawn_cells(page: Any) -> tuple[dict[str, str], np.ndarray]:
    """The canvas geometry and the RGB at the centre of every drawn cell, [rows, bins, 3]."""
    got = page.evaluate(
        """() => { const c = document.querySelector('.dsn-heatmap-canvas'); const d = c.dataset;
                   const dpr = Number(d.dpr) || 1, R = Number(document.querySelector('.dsn-heatmap').dataset.rows);
                   const B = Number(d.bins), cw = Number(d.cellW), ch = Number(d.cellH);
                   const x0 = Number(d.x0), y0 = Number(d.y0);
                   const img = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   const out = new Uint8Array(R * B * 4);
                   for (let r = 0; r < R; r++) {
                     const y = Math.floor((y0 + (r + 0.5) * ch) * dpr);
                     for (let b = 0; b < B; b++) {
                       const x = Math.floor((x0 + (b + 0.5) * cw) * dpr);
                       out.set(img.subarray((y * c.width + x) * 4, (y * c.width + x) * 4 + 4), (r * B + b) * 4);
                     }
                   }
                   let s = ''; for (let i = 0; i < out.length; i += 32768) s += String.fromCharCode(...out.subarray(i, i + 32768));
                   return { canvas: Object.assign({}, d), px: btoa(s) }; }""")
    canvas = got["canvas"]
    px = np.frombuffer(base64.b64decode(got["px"]), np.uint8).reshape(-1, int(canvas["bins"]), 4)
    return canvas, px


def check_all_cells(page: Any, values: np.ndarray, si: int, log: bool) -> int:
    """Every drawn cell has the colour of its bin's max (Python's scale, +-1 LUT entry for a
    last-ulp log10 difference); cells near a non-finite mark are left to check_marks."""
    canvas, px = drawn_cells(page)
    vals = values[si]
    lo, hi = colors.value_range(vals, log)
    assert np.float32(float(canvas["vmin"])) == np.float32(lo) and np.float32(float(canvas["vmax"])) == np.float32(hi)
    col0, n_vis, agg, n_bins = (int(canvas[k]) for k in ("col0", "visible", "agg", "bins"))
    assert n_bins == -(-n_vis // agg), canvas
    starts = np.arange(col0, col0 + n_vis, agg)
    binned = np.fmax.reduceat(vals[:, col0:col0 + n_vis], starts - col0, axis=1)  # NaN-aware max per bin
    marked = np.fmax.reduceat(values[1][:, col0:col0 + n_vis], starts - col0, axis=1) > 0
    near = marked.copy()
    for dr in range(-2, 3):  # a mark's dot may spill over small neighbouring cells
        for dc in range(-2, 3):
            near |= np.roll(np.roll(marked, dr, axis=0), dc, axis=1)
    lut = np.array(list(colors.LUT) + [colors.NAN_RGB], np.int64)  # index -1 -> NaN colour
    idx = lut_index(binned, lo, hi, log)
    ok = np.zeros(idx.shape, bool)
    for d in (-1, 0, 1):
        j = np.where(idx < 0, -1, np.clip(idx + d, 0, 255))
        ok |= (px[:, :, :3] == lut[j]).all(axis=2)
    ok &= px[:, :, 3] == 255
    bad = np.argwhere(~ok & ~near)
    assert not len(bad), (f"{len(bad)} of {idx.size} cells have wrong colours, e.g. (row, bin) "
                          f"{[(tuple(b), px[b[0], b[1], :3].tolist(), idx[b[0], b[1]]) for b in bad[:4]]}")
    assert len({tuple(p) for p in px[::50, ::5, :3].reshape(-1, 3).tolist()}) > 50, "too few colours: blank?"
    return int((~near).sum())


def marked_cells(steps: list[int]) -> set[tuple[int, int]]:
    return {(row, steps.index(s)) for s, row in ns["BAD"].items() if s in steps}


def check_marks(page: Any, hm: Any, marks: set[tuple[int, int]]) -> None:
    """A non-finite cell carries the mark colour on and around it (a dot when cells are tiny)."""
    canvas = hm.widget_state(page)["canvas"]
    for r, c in marks:
        x, y = hm.cell_center(canvas, r, c)
        pts = [(x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        red = sum(1 for p in hm.read_pixels(page, pts) if abs(p[0] - 255) < 40 and p[1] < 80 and p[2] < 80)
        assert red >= 3, f"non-finite cell {(r, c)} is not marked ({red} of 9 pixels around it)"


def wait_columns(page: Any, n: int, timeout: float = 60) -> None:
    page.wait_for_function(f"() => document.querySelector('{ROOT}') && "
                           f"document.querySelector('{ROOT}').dataset.columns === '{n}'", timeout=timeout * 1000)


def test_big_heatmap_correct_through_cached_redraws(page: Any, lab: Any, nb: Any, hm: Any) -> None:
    lab.write_notebook("big_live_heatmap.ipynb", [SETUP, HISTORY_AND_PUSHES])
    nb.open("big_live_heatmap.ipynb")
    nb.run_all()
    nb.wait_done(2, timeout=240)
    steps, values = expected_after(12)
    assert nb.output_text(1).strip() == f"held {len(steps)}"
    wait_columns(page, len(steps))
    st = hm.widget_state(page)
    assert st["root"]["rows"] == "2000" and st["root"]["stale"] == "false", st["root"]
    assert int(st["canvas"]["agg"]) > 1, "expected bins of several columns at this width"
    assert int(st["canvas"]["moved"]) > 0, "live pushes should move bins, not repaint them all"
    page.locator(ROOT).scroll_into_view_if_needed()
    nb.screenshot(page.locator(ROOT), "heatmap_big_live.png")
    n = check_all_cells(page, values, 0, True)
    marks = marked_cells(steps)
    assert len(marks) == 2
    check_marks(page, hm, marks)

    # zoom in on the newest ~30% (one column per cell), then the run goes on
    canvas = hm.widget_state(page)["canvas"]
    box = page.locator(".dsn-heatmap-canvas").bounding_box()
    xa, y = hm.cell_center(canvas, 300, int(len(steps) * 0.65))
    xb, _ = hm.cell_center(canvas, 300, len(steps) - 1)
    page.mouse.move(box["x"] + xa, box["y"] + y)
    page.mouse.down()
    page.mouse.move(box["x"] + xb, box["y"] + y, steps=5)
    page.mouse.up()
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.zoomed === 'true'")
    assert hm.widget_state(page)["canvas"]["agg"] == "1"
    page.mouse.move(0, 0)
    nb.screenshot(page.locator(ROOT), "heatmap_big_live_zoomed.png")
    n += check_all_cells(page, values, 0, True)

    out = nb.run_new_cell(MORE_PUSHES, timeout=120)
    steps, values = expected_after(18)
    assert out.strip() == f"held {len(steps)}", out
    wait_columns(page, len(steps))
    assert hm.widget_state(page)["root"]["zoomed"] == "true"
    n += check_all_cells(page, values, 0, True)

    # zoom back out: the image before the zoom is reused where the pushes left it valid
    page.locator(".dsn-zoom-reset").click()
    page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.zoomed === 'false'")
    page.mouse.move(0, 0)
    n += check_all_cells(page, values, 0, True)
    check_marks(page, hm, marked_cells(steps))
    nb.screenshot(page.locator(ROOT), "heatmap_big_live_unzoomed.png")

    # another statistic (linear scale), then back: nothing of the old colours survives
    for key, si, log in (("zero_frac", 2, False), ("norm", 0, True)):
        draws = int(hm.widget_state(page)["root"]["draws"])
        page.select_option(".dsn-stat-select", key)
        page.wait_for_function(f"() => document.querySelector('{ROOT}').dataset.stat === '{key}'"
                               f" && Number(document.querySelector('{ROOT}').dataset.draws) > {draws}")
        n += check_all_cells(page, values, si, log)

    # the tooltip shows the bin's max of the cell under the pointer (rows are 1 px: the pointer's
    # sub-pixel position may pick a neighbouring row, so the value is checked for the cell shown)
    canvas = hm.widget_state(page)["canvas"]
    agg = int(canvas["agg"])
    row, col = 1234, len(steps) // 2
    page.evaluate(f"() => {{ const s = document.querySelector('.dsn-heatmap-scroll'); s.scrollTop = {row} * "
                  f"{canvas['cellH']} - 200; s.scrollIntoView({{block: 'center'}}); }}")
    box = page.locator(".dsn-heatmap-canvas").bounding_box()
    x, y = hm.cell_center(canvas, row, col)
    page.mouse.move(box["x"] + x, box["y"] + y)
    tip = page.locator(".dsn-tooltip")
    tip.wait_for(state="visible", timeout=5000)
    shown_row, c0 = (int(tip.get_attribute(f"data-{k}") or -1) for k in ("row", "col"))
    assert abs(shown_row - row) <= 1 and abs(c0 - col // agg * agg) <= agg, (shown_row, c0)
    text = tip.text_content() or ""
    want = np.nanmax(values[0, shown_row, c0:min(len(steps), c0 + agg)])
    shown = text.split("grad norm: ")[1].split("non-finite")[0].strip()
    assert np.float32(float(shown)) == np.float32(want), (text, want)
    assert f"steps: {steps[c0]}" in text and f"module: {ns['ROWS'][shown_row]['module']}" in text, text
    nb.screenshot(page.locator(ROOT), "heatmap_big_live_tooltip.png")
    page.mouse.move(0, 0)
    page.probe.check()
    print(f"big heatmap through cached redraws: {n} cells checked")
