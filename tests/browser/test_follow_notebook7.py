"""Notebook 7 (``jupyter notebook``) in headless Chromium: dsnotebook.follow shows the dashboard of a
run directory that a training script in another process writes, and keeps it updated while the
kernel is idle (no cell running), until the script finishes."""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Iterator

import pytest

from conftest import ARTIFACTS, REPO
from servers import jupyter_server

pytestmark = pytest.mark.browser
SCRIPT = REPO / "tests" / "run" / "write_script.py"


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, pathlib.Path]]:
    pytest.importorskip("notebook", reason="pip install notebook (Notebook 7)")
    with jupyter_server(tmp_path_factory.mktemp("nb7"), "notebook",
                        ["--JupyterNotebookApp.expose_app_in_browser=True"]) as srv:
        yield srv.url, srv.token, srv.root

def _write_notebook(path: pathlib.Path, cells: list[str]) -> None:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c}
                    for c in cells],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


def _notebook7_startup_error(exc: Any) -> bool:
    """Notebook 7.6 itself raises this while loading plugin settings, also for a notebook that only
    prints (seen with every lab extension disabled in turn): not ours, and nothing else is ignored."""
    return "reading 'schema'" in str(exc) and "notebook_core" in (getattr(exc, "stack", "") or "")


def _prompts(page: Any) -> list[str]:
    return page.evaluate("""() => window.jupyterapp.shell.currentWidget.content.widgets
        .filter(c => c.model.type === 'code')
        .map(c => (c.promptNode ? c.promptNode.textContent : '').trim())""")


def _columns(page: Any) -> int | None:
    return page.evaluate("""() => { const r = document.querySelector('.dsn-follow .dsn-heatmap');
                                    return r && r.dataset.columns ? Number(r.dataset.columns) : null; }""")


def test_follow_a_script_in_notebook7(notebook7: Any, browser: Any) -> None:
    url, token, root = notebook7
    log, stop = root / "runs" / "script", root / "stop"
    _write_notebook(root / "follow.ipynb", [
        "import subprocess, sys\n"
        f"proc = subprocess.Popen([sys.executable, {str(SCRIPT)!r}, {str(log)!r}, '--stop-file', {str(stop)!r},"
        " '--sleep', '0.02'], stdout=subprocess.DEVNULL)",
        f"import dsnotebook\nf = dsnotebook.follow({str(log)!r})",
    ])
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: None if _notebook7_startup_error(e) else errors.append(f"page error: {e}"))
    try:
        page.goto(f"{url}/notebooks/follow.ipynb?token={token}")
        page.wait_for_function("""() => { const a = window.jupyterapp; const w = a && a.shell.currentWidget;
            return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel); }""",
                               timeout=60000)
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        deadline = time.monotonic() + 120
        while not all(any(ch.isdigit() for ch in p) for p in _prompts(page)):  # both cells done: kernel idle
            assert time.monotonic() < deadline, _prompts(page)
            time.sleep(0.1)
        # the kernel is idle; the dashboard keeps growing while the script trains
        seen: list[int] = []
        while len(seen) < 3:
            n = _columns(page)
            if n and (not seen or n > seen[-1]):
                seen.append(n)
            assert time.monotonic() < deadline, f"heatmap columns seen: {seen}, errors: {errors}"
            time.sleep(0.2)
        status = page.locator(".dsn-follow-status")
        assert "live" in (status.text_content() or "")
        page.locator(".dsn-follow").screenshot(path=str(ARTIFACTS / "follow_notebook7_live.png"))
        stop.write_text("")
        page.wait_for_function("() => (document.querySelector('.dsn-follow-status') || {}).textContent"
                               " && document.querySelector('.dsn-follow-status').textContent.includes('finished')",
                               timeout=60000)
        from dsnotebook import Run

        run = Run.open(log)
        page.wait_for_function(f"() => document.querySelector('.dsn-follow .dsn-heatmap').dataset.columns"
                               f" === '{len(run.steps)}'", timeout=15000)
        assert f"step {run.steps[-1]}" in (status.text_content() or "")
        assert page.locator(".dsn-follow .dsn-heatmap canvas").count() >= 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".dsn-follow").screenshot(path=str(ARTIFACTS / "follow_notebook7.png"))
        assert not errors, errors
    finally:
        stop.write_text("")
        context.close()
