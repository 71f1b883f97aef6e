"""JupyterLab + headless Debian Chromium (Playwright) fixtures for widget tests.

One JupyterLab server per session (own config/runtime/settings dirs, random token, free
port on 127.0.0.1), one Chromium per session, a fresh browser context per test. Console
errors and JavaScript dialogs are collected; any console error fails the test.
Screenshots go to ``test-artifacts/`` at the repository root.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import time
import types
import urllib.request
from typing import Any, Iterator

import numpy as np
import pytest

from dsnotebook.widgets import colors
from servers import REPO, jupyter_server

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("DSN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Lab:
    """A running JupyterLab: where it is and where its notebooks live."""

    def __init__(self, url: str, token: str, root: pathlib.Path, proc: subprocess.Popen) -> None:
        self.url = url
        self.token = token
        self.root = root
        self.proc = proc

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def write_notebook(self, name: str, cells: list[str]) -> pathlib.Path:
        nb = {
            "cells": [
                {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                 "source": src}
                for src in cells
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        path = self.root / name
        path.write_text(json.dumps(nb, indent=1))
        return path

    def shutdown_kernels(self) -> None:
        """Stop every kernel (tests leave none running into the next one)."""
        try:
            req = urllib.request.Request(f"{self.url}/api/kernels?token={self.token}")
            with urllib.request.urlopen(req, timeout=5) as r:
                kernels = json.load(r)
            for k in kernels:
                req = urllib.request.Request(
                    f"{self.url}/api/kernels/{k['id']}?token={self.token}", method="DELETE")
                urllib.request.urlopen(req, timeout=10).close()
        except OSError:
            pass


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with jupyter_server(tmp_path_factory.mktemp("lab"), "jupyterlab",
                        ["--LabApp.expose_app_in_browser=True",
                         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]) as srv:
        server = Lab(srv.url, srv.token, srv.root, srv.proc)
        try:
            yield server
        finally:
            server.shutdown_kernels()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


class PageProbe:
    """What a page said: console errors, dialogs (alert/confirm...), page errors."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []

    def check(self) -> None:
        assert not self.dialogs, f"unexpected JavaScript dialogs: {self.dialogs}"
        assert not self.console_errors, "console errors:\n" + "\n".join(self.console_errors)


@pytest.fixture
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    probe = PageProbe()

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            probe.console_errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    def on_dialog(dialog: Any) -> None:
        if dialog.type == "beforeunload":  # "leave page?" on reload: yes
            dialog.accept()
            return
        probe.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: probe.console_errors.append(f"page error: {exc}"))
    pg.on("dialog", on_dialog)
    pg.probe = probe
    try:
        yield pg
        probe.check()  # also for tests that did not check themselves
    finally:
        context.close()
        lab.shutdown_kernels()


# ---------------------------------------------------------------- notebook driver
class NotebookDriver:
    """Drives one notebook in JupyterLab the way a user would (plus reading the DOM)."""

    def __init__(self, page: Any, lab: Lab) -> None:
        self.page = page
        self.lab = lab

    def open(self, name: str, timeout: float = 60) -> None:
        """Open a notebook and wait until its kernel is ready and idle."""
        page = self.page
        page.goto(self.lab.notebook_url(name))
        page.wait_for_function(
            """() => { const a = window.jupyterapp; const w = a && a.shell.currentWidget;
                       return !!(w && w.sessionContext && w.sessionContext.session
                                 && w.sessionContext.session.kernel); }""",
            timeout=timeout * 1000,
        )
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
            timeout=timeout * 1000,
        )

    def run_all(self) -> None:
        """Fire 'run all' without awaiting it (its promise resolves when execution ends)."""
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def prompts(self) -> list[str]:
        """Input prompts of the code cells, e.g. ['[1]:', '[*]:', '[ ]:']."""
        # from the cell widgets, not the DOM: windowed notebooks may detach offscreen cells
        return self.page.evaluate(
            """() => window.jupyterapp.shell.currentWidget.content.widgets
                 .filter(c => c.model.type === 'code')
                 .map(c => (c.promptNode ? c.promptNode.textContent : '').trim())"""
        )

    def wait_done(self, n: int | None = None, timeout: float = 120) -> None:
        """Wait until no cell shows [*] and the first n cells carry a number."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prompts = self.prompts()
            busy = any("*" in p for p in prompts)
            numbered = all(any(ch.isdigit() for ch in p) for p in prompts[: n or 0])
            if not busy and numbered:
                return
            time.sleep(0.1)
        raise AssertionError(f"cells still running after {timeout}s: {self.prompts()}")

    def output_text(self, idx: int) -> str:
        return self.page.evaluate(
            f"""() => {{ const c = window.jupyterapp.shell.currentWidget.content.widgets
                    .filter(c => c.model.type === 'code')[{idx}];
                  return Array.from(c.node.querySelectorAll('.jp-OutputArea-output'))
                    .map(e => e.textContent).join(''); }}"""
        )

    def run_new_cell(self, code: str, timeout: float = 60) -> str:
        """Add a cell at the end as a user would (Esc, b, Enter, type, Shift+Enter); its text output."""
        page = self.page
        page.evaluate(
            """() => { if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
                       const nb = window.jupyterapp.shell.currentWidget.content;
                       nb.activeCellIndex = nb.widgets.length - 1; nb.mode = 'command';
                       nb.node.focus(); }"""
        )
        before = len(self.prompts())
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.content.widgets"
            f".filter(c => c.model.type === 'code').length > {before}")
        page.keyboard.press("Enter")
        page.keyboard.insert_text(code)
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prompts = self.prompts()
            if len(prompts) > before and any(ch.isdigit() for ch in prompts[before]):
                return self.output_text(before)
            time.sleep(0.1)
        raise AssertionError(f"typed cell did not finish: {self.prompts()}")

    def screenshot(self, target: Any, name: str) -> pathlib.Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        # A panel may redraw a card between Playwright's lookup and its capture (a late progress or
        # verdict message): take the element again rather than fail on a screenshot.
        for attempt in range(5):
            try:
                target.screenshot(path=str(path), timeout=10000)
                return path
            except Exception as e:  # playwright's Error; the browser tests import no playwright types
                if attempt == 4 or "not attached" not in str(e) and "not stable" not in str(e):
                    raise
                time.sleep(0.5)
        return path


@pytest.fixture
def nb(page: Any, lab: Lab) -> NotebookDriver:
    return NotebookDriver(page, lab)


# ---------------------------------------------------------------- heatmap checks
def widget_state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => { const r = document.querySelector('.dsn-heatmap');
                   if (!r) return null;
                   const c = r.querySelector('.dsn-heatmap-canvas');
                   return { root: Object.assign({}, r.dataset), canvas: Object.assign({}, c.dataset) }; }"""
    )


def read_pixels(page: Any, points: list[tuple[float, float]]) -> list[list[int]]:
    """RGBA at CSS-pixel points of the heatmap canvas."""
    return page.evaluate(
        """(pts) => { const c = document.querySelector('.dsn-heatmap-canvas');
                      const dpr = Number(c.dataset.dpr) || 1;
                      const ctx = c.getContext('2d');
                      return pts.map(([x, y]) => Array.from(
                          ctx.getImageData(Math.floor(x * dpr), Math.floor(y * dpr), 1, 1).data)); }""",
        points,
    )


def cell_box(canvas: dict[str, str], row: int, col: int) -> tuple[float, float, float, float]:
    """CSS-px box of data cell (row, col) on the canvas (of its bin when aggregated)."""
    cw, ch = float(canvas["cellW"]), float(canvas["cellH"])
    x0, y0 = float(canvas["x0"]), float(canvas["y0"])
    b = (col - int(canvas.get("col0", "0"))) // int(canvas.get("agg", "1"))
    return x0 + b * cw, y0 + row * ch, cw, ch


def cell_center(canvas: dict[str, str], row: int, col: int) -> tuple[float, float]:
    x, y, w, h = cell_box(canvas, row, col)
    return x + w / 2, y + h / 2


def acceptable_colors(value: float, vmin: float, vmax: float, log: bool) -> list[tuple[int, int, int]]:
    """color_for(value) - and its LUT neighbours, for a last-ulp log10 difference JS/Python."""
    idx = colors.color_index(value, vmin, vmax, log)
    if idx is None:
        return [colors.NAN_RGB]
    return [colors.LUT[i] for i in range(max(0, idx - 1), min(255, idx + 1) + 1)]


def check_pixels(page: Any, values: np.ndarray, stat_index: int, log: bool,
                 marked: set[tuple[int, int]], cells: list[tuple[int, int]] | None = None) -> int:
    """Every drawn cell's centre (or those holding the data cells ``cells``) has the colour
    Python computes with ``color_for``; cells holding a ``marked`` (row, col) are skipped.

    When columns are aggregated (``data-agg`` > 1) a drawn cell shows the max of the
    non-NaN values of its columns (NaN when none). Returns how many cells were checked.
    """
    canvas = widget_state(page)["canvas"]
    vals = values[stat_index]
    n_cols = vals.shape[1]
    vmin, vmax = colors.value_range(vals, log)
    assert np.float32(float(canvas["vmin"])) == np.float32(vmin), (canvas["vmin"], vmin)
    assert np.float32(float(canvas["vmax"])) == np.float32(vmax), (canvas["vmax"], vmax)
    agg, col0 = int(canvas.get("agg", "1")), int(canvas.get("col0", "0"))
    end = col0 + int(canvas.get("visible", str(n_cols)))
    first_cols = range(col0, end, agg)
    if cells is not None:  # the drawn cells that hold them
        wanted = {(r, col0 + (c - col0) // agg * agg) for r, c in cells}
        todo = sorted(wanted)
    else:
        todo = [(r, c) for r in range(vals.shape[0]) for c in first_cols]
    bad_bins = {(r, col0 + (c - col0) // agg * agg) for r, c in marked}
    todo = [rc for rc in todo if rc not in bad_bins]
    pixels = read_pixels(page, [cell_center(canvas, r, c) for r, c in todo])
    bad = []
    for (r, c), px in zip(todo, pixels):
        block = vals[r, c:min(end, c + agg)]
        block = block[~np.isnan(block)]
        v = float(block.max()) if block.size else math.nan
        if v == -math.inf:
            v = math.nan
        ok = acceptable_colors(v, vmin, vmax, log)
        if tuple(px[:3]) not in ok or px[3] != 255:
            bad.append(((r, c), v, px, colors.color_for(v, vmin, vmax, log)))
    assert not bad, f"{len(bad)} cells with wrong colours, e.g. {bad[:5]}"
    return len(todo)


def check_marks(page: Any, marked: set[tuple[int, int]]) -> None:
    """Non-finite cells carry red (the mark colour) whatever statistic is shown."""
    canvas = widget_state(page)["canvas"]
    for r, c in marked:
        x, y, w, h = cell_box(canvas, r, c)
        found = page.evaluate(
            """([x, y, w, h, mark]) => { const c = document.querySelector('.dsn-heatmap-canvas');
                 const dpr = Number(c.dataset.dpr) || 1;
                 const d = c.getContext('2d').getImageData(Math.floor(x * dpr), Math.floor(y * dpr),
                                                           Math.max(1, Math.floor(w * dpr)), Math.max(1, Math.floor(h * dpr))).data;
                 let n = 0;
                 for (let i = 0; i < d.length; i += 4)
                   if (Math.abs(d[i] - mark[0]) < 40 && Math.abs(d[i+1] - mark[1]) < 40 && Math.abs(d[i+2] - mark[2]) < 40) n++;
                 return n; }""",
            [x, y, w, h, list(colors.MARK_RGB)],
        )
        assert found >= 3, f"non-finite cell {(r, c)} is not marked ({found} mark pixels)"


def hover_cell(page: Any, row: int, col: int) -> str:
    """Move the mouse over data cell (row, col) (its bin when aggregated); the tooltip text."""
    canvas = widget_state(page)["canvas"]
    agg, col0 = int(canvas["agg"]), int(canvas.get("col0", "0"))
    first_col = col0 + (col - col0) // agg * agg
    box = page.locator(".dsn-heatmap-canvas").bounding_box()
    x, y = cell_center(canvas, row, col)
    page.mouse.move(box["x"] + x, box["y"] + y)
    tip = page.locator(".dsn-tooltip")
    tip.wait_for(state="visible", timeout=5000)
    page.wait_for_function(
        f"() => document.querySelector('.dsn-tooltip').dataset.row === '{row}'"
        f" && document.querySelector('.dsn-tooltip').dataset.col === '{first_col}'")
    return tip.text_content() or ""


@pytest.fixture
def hm() -> types.SimpleNamespace:
    """Heatmap DOM/pixel checks shared by the browser tests."""
    return types.SimpleNamespace(
        widget_state=widget_state, read_pixels=read_pixels, cell_box=cell_box, cell_center=cell_center,
        acceptable_colors=acceptable_colors, check_pixels=check_pixels, check_marks=check_marks,
        hover_cell=hover_cell)
