"""The rank x phase view: its feeder's numbers, the widget's traits, the dashboard's "ranks" tab."""
from __future__ import annotations

import json

import pytest

from dsnotebook.run import Run
from dsnotebook.views.live_dashboard import LiveDashboard
from dsnotebook.views.rank_panel import COLUMNS, panel_state, rank_text
from dsnotebook.widgets.ranks import RanksWidget


def _rows(step: int, rank: int, **sec: float) -> list[dict]:
    base = {"data": 0.002, "fwd": 0.02, "bwd": 0.04, "opt": 0.004, "comm": 0.005, "tracer": 0.0005, "other": 0.001,
            "fwd_compute": 0.02, "bwd_compute": 0.04}
    base.update(sec)
    base["step"] = sum(base[k] for k in ("data", "fwd", "bwd", "opt", "tracer", "other"))
    return [{"step": step, "rank": rank, "phase": k, "seconds": v} for k, v in base.items()]


def _run() -> Run:
    return Run([{"tensor_id": 0, "name": "w", "module": "m", "tensor": "weight", "shape": [2], "dtype": "float32",
                 "numel": 2, "trainable": True, "aliases": []}], {"ranks": {"world_size": 3}})


def _straggling(run: Run, steps: int = 4) -> Run:
    for s in range(steps):
        run.add_records("rank_phases", _rows(s, 0, bwd=0.07) + _rows(s, 1, data=0.032) + _rows(s, 2, bwd=0.07))
    return run


def test_panel_state_names_the_straggler_and_its_extra_data_loading():
    st = panel_state(_straggling(_run()))
    json.dumps(st, allow_nan=False)
    keys = [k for k, _, _ in COLUMNS]
    assert st["ranks"] == [0, 1, 2] and st["straggler"] == 1 and st["steps"] == 3  # warm-up step left out
    assert st["matrix"][1][keys.index("data")] == pytest.approx(0.032)
    assert st["matrix"][0][keys.index("wait")] == pytest.approx(0.031)  # ranks 0, 2 wait (and "other")
    assert st["skew"][keys.index("data")] == pytest.approx(0.030)
    assert st["excess"][1] == "data" and st["scores"][1] > 0.3 and st["scores"][0] == 0
    text = rank_text(_straggling(_run()))
    assert "<- straggler" in text.splitlines()[3] and text.splitlines()[3].startswith("1 ")


def test_an_empty_run_gives_an_empty_panel():
    st = panel_state(_run())
    assert st["ranks"] == [] and st["straggler"] == -1 and rank_text(_run()) == ""
    w = RanksWidget()
    w.set_data(st)
    assert not w.has_data
    with pytest.raises(KeyError, match="unknown keys"):
        w.set_data({"nope": 1})


def test_a_click_from_the_browser_reaches_python():
    # ipywidgets applies browser updates through Widget.set_state: the panel must not shadow it
    w = RanksWidget()
    w.set_data({"ranks": [0, 1]})
    w._handle_msg({"content": {"data": {"method": "update", "state": {"selected_rank": 1}, "buffer_paths": []}},
                   "buffers": []})
    assert w.selected_rank == 1 and w.ranks == [0, 1]


def test_the_dashboard_grows_a_ranks_tab_when_the_ranks_phases_arrive():
    run = _run()
    live = LiveDashboard(run, perf_interval=0.0, graph=False)
    assert "ranks" not in [t for t, _ in live.widget.panels()]
    _straggling(run)
    assert "ranks" in live.widget.tabs.titles
    assert live.ranks.straggler == 1 and live.ranks.ranks == [0, 1, 2]
    live.close()


def test_the_report_has_a_ranks_section_for_a_distributed_run(tmp_path):
    from bokeh.models import Div

    from dsnotebook.views.report import build_report, write_report

    def divs(run):
        return "\n".join(d.text for d in build_report(run).select({"type": Div}))

    text = divs(_straggling(_run()))
    assert ">Ranks</h2>" in text and "straggler: rank 1</b>" in text and "waiting for others" in text
    assert "extra time in its data phase" in text
    assert ">Ranks</h" not in divs(_run())  # one process: no section
    assert write_report(_straggling(_run()), tmp_path / "r.html").stat().st_size > 0


def test_the_text_summary_shows_the_ranks():
    from dsnotebook.views.text import text_summary

    assert "<- straggler" in text_summary(_straggling(_run()))
    assert "rank x phase" not in text_summary(_run())
