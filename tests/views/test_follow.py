"""Following a run directory (no browser), comparing runs, and the magics that open them."""
import time

import IPython
import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

from dsnotebook import Run, compare, follow
from dsnotebook.run.runs import RunSet
from dsnotebook.run.writer import RunWriter
from dsnotebook.views.follow import Follower

TENSORS = [{"tensor_id": i, "name": f"l{i}.weight", "module": f"l{i}", "tensor": "weight", "shape": [n],
            "dtype": "float32", "numel": n, "trainable": True, "aliases": []} for i, n in enumerate((4, 6))]


def _step(run, s):
    raw = np.zeros((2, 69))
    raw[:, 1] = [s + 1.0, 2 * s + 1.0]  # sum of squares: norm = sqrt
    raw[:, 5] = [4, 6]
    run.add_grads(s, [0, 1], raw)
    run.add_updates(s, [0, 1], np.ones((2, 3)))


def _heat_matches(follower, run):
    heat = follower.view.heat.widget
    assert heat.steps == run.steps
    np.testing.assert_array_equal(heat.values()[0], run.matrix("norm").astype(np.float32))  # [stat, row, col]


def test_a_follower_shows_new_segments_and_stops_when_the_run_finished(tmp_path):
    d = tmp_path / "log"
    f = Follower(d)
    assert f.poll() == 0 and f.state == "waiting" and f.view is None  # nothing there yet
    run = Run(TENSORS, meta={"model": "m"}, keep=16)
    w = RunWriter(run, d, interval=2.0).start()
    for s in range(5):
        _step(run, s)
    w.flush()  # steps 0..3 (4 is complete once 5 begins, or at close)
    assert f.poll() >= 2 and f.state == "live"
    assert f.view.heat.widget.steps == [0, 1, 2, 3]
    assert "live, step 3" in f.status.value and "writer pid" in f.status.value
    for s in range(5, 40):
        _step(run, s)
    w.close()
    f.poll()
    assert f.state == "finished" and "finished, step 39" in f.status.value
    assert f.run.steps == run.steps  # thinned like the writer's Run (keep 16)
    _heat_matches(f, run)
    assert f.poll() == 0  # nothing new: nothing read


def test_follow_polls_in_the_background_until_the_writer_is_done(tmp_path):
    d = tmp_path / "log"
    run = Run(TENSORS, keep=64)
    w = RunWriter(run, d, interval=0.1).start()
    f = follow(d, display=False)
    assert f.following
    deadline = time.monotonic() + 30
    for s in range(30):
        _step(run, s)
    while f.run is None or len(f.run.steps) < 10:
        assert time.monotonic() < deadline, f
        time.sleep(0.05)
    w.close()
    while f.following:
        assert time.monotonic() < deadline, f
        time.sleep(0.05)
    assert f.state == "finished" and f.run.steps == list(range(30)) and f.error is None
    assert f.polls < 40  # at most one poll a second, not a busy loop


def test_follow_refuses_to_poll_faster_than_once_a_second(tmp_path):
    with pytest.raises(ValueError, match="at most once a second"):
        Follower(tmp_path, interval=0.2)


def test_following_a_folder_of_runs_says_to_pick_one(tmp_path):
    Run(TENSORS).save(tmp_path / "a")
    with pytest.raises(ValueError, match="a folder of runs \\(a\\): follow one of them"):
        follow(tmp_path, display=False)


def test_wait_times_out_with_a_clear_message(tmp_path):
    f = Follower(tmp_path / "never")
    with pytest.raises(TimeoutError, match="waiting, 0 steps"):
        f.wait(steps=1, timeout=0)


def test_compare_shows_heatmaps_side_by_side(tmp_path):
    a, b = Run(TENSORS), Run(TENSORS)
    for s in range(6):
        _step(a, s)
    for s in range(3):
        _step(b, s)
    b.save(tmp_path / "b")
    box = compare({"first": a, "second": tmp_path / "b"}, display=False)
    left, right = box.children
    assert left.title.startswith("first") and right.title.startswith("second")
    assert left.steps == a.steps and right.steps == b.steps
    with pytest.raises(ValueError, match="at least two runs"):
        compare(a, display=False)
    with pytest.raises(TypeError, match="compare takes Runs"):
        compare(a, 3, display=False)


@pytest.fixture
def ip():
    shell = start_ipython() or IPython.get_ipython()
    shell.run_line_magic("load_ext", "dsnotebook")
    shell.user_ns.clear()
    shell.run_cell("import torch\nfrom torch import nn\nmodel = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))\n"
                   "opt = torch.optim.SGD(model.parameters(), lr=0.1)")
    yield shell
    shell.user_ns.clear()


TRAIN = """
for i in range(6):
    opt.zero_grad()
    model(torch.randn(4, 3)).pow(2).mean().backward()
    opt.step()
"""


def test_magics_write_and_open_run_directories(ip, tmp_path):
    d = tmp_path / "runs" / "x"
    ip.run_cell_magic("deepseek_trace", f"--no-widget --log-dir {d}", TRAIN)
    tracer = ip.user_ns["_trace"]
    again = Run.open(d)
    assert again.steps == tracer.run.steps == list(range(6))
    assert again.meta["command"] == f"%%deepseek_trace --no-widget --log-dir {d}"
    with pytest.raises(UsageError, match="already holds"):
        ip.run_cell_magic("deepseek_trace", f"--no-widget --log-dir {d}", TRAIN)
    ip.run_line_magic("deepseek_open", str(d))
    f = ip.user_ns["_run"]
    assert isinstance(f, Follower) and f.state == "finished" and f.run.steps == list(range(6))
    ip.run_line_magic("deepseek_open", f"{tmp_path / 'runs'} --name runs")
    assert isinstance(ip.user_ns["runs"], RunSet) and list(ip.user_ns["runs"]) == ["x"]
    with pytest.raises(UsageError, match="not a directory"):
        ip.run_line_magic("deepseek_open", str(tmp_path / "missing"))
