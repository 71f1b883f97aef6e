"""The rank x phase panel in a real JupyterLab (headless Chromium): the dashboard of a distributed
run grows a "ranks" tab; the table shows one row per rank with the straggler marked and its slow
phase shaded; a click on a rank reaches Python; hostile text stays text."""
from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"

SETUP = f'''from dsnotebook.run import Run
from dsnotebook.views.live_dashboard import LiveDashboard

def rows(step, rank, **sec):
    base = {{"data": 0.002, "fwd": 0.02, "bwd": 0.04, "opt": 0.004, "comm": 0.005, "tracer": 0.0005, "other": 0.001,
            "fwd_compute": 0.02, "bwd_compute": 0.04}}
    base.update(sec)
    base["step"] = sum(base[k] for k in ("data", "fwd", "bwd", "opt", "tracer", "other"))
    return [{{"step": step, "rank": rank, "phase": k, "seconds": v}} for k, v in base.items()]

run = Run([{{"tensor_id": 0, "name": "w", "module": "m", "tensor": "weight", "shape": [2], "dtype": "float32",
            "numel": 2, "trainable": True, "aliases": []}}], {{"ranks": {{"world_size": 3}}}})
live = LiveDashboard(run, perf_interval=0.0, graph=False)
live.ranks.status = {HOSTILE!r}
live.display()
'''

FEED = '''for s in range(5):
    run.add_records("rank_phases", rows(s, 0, bwd=0.07) + rows(s, 1, data=0.032) + rows(s, 2, bwd=0.07))
print("TABS" + json.dumps(list(live.widget.tabs.titles)))
'''


def test_rank_x_phase_panel(page: Any, lab: Any, nb: Any) -> None:
    lab.write_notebook("ranks.ipynb", ["import json", SETUP])
    nb.open("ranks.ipynb")
    nb.run_all()
    nb.wait_done(2)
    out = nb.run_new_cell(FEED)
    assert json.loads(next(l for l in out.splitlines() if l.startswith("TABS"))[4:]) == ["ranks"]
    page.locator(".lm-TabBar-tab", has_text="ranks").first.click()
    page.wait_for_selector(".dsn-ranks[data-ranks='3']", timeout=30000)
    root = page.locator(".dsn-ranks").first
    assert root.get_attribute("data-straggler") == "1"
    line = page.locator(".dsn-ranks-line").first.text_content()
    assert line.startswith("straggler: rank 1 - the job waits for it") and "(its data loading)" in line
    assert page.locator(".dsn-ranks-status").first.text_content() == HOSTILE  # text, not markup
    assert page.locator(".dsn-ranks img").count() == 0
    assert page.locator(".dsn-ranks-rank.dsn-ranks-row-straggler").first.text_content() == "rank 1 ◀"
    # the straggler's data loading is shaded strongest, rank 0's not at all
    alpha = page.evaluate(
        """() => Array.from(document.querySelectorAll('.dsn-ranks-cell[data-phase="data"]'))
                  .map(e => getComputedStyle(e).backgroundColor)""")
    assert len(alpha) == 3
    a = [float(c.rstrip(")").split(",")[-1]) for c in alpha]
    assert a[1] > 0.5 and a[0] < 0.1 and a[2] < 0.1, alpha
    nb.screenshot(page.locator(".dsn-ranks").first, "ranks_panel.png")
    page.locator(".dsn-ranks-rank[data-rank='2']").first.click()
    page.wait_for_selector(".dsn-ranks-rank.dsn-ranks-sel[data-rank='2']", timeout=10000)
    state = nb.run_new_cell('print("SEL", live.ranks.selected_rank)')
    assert "SEL 2" in state
