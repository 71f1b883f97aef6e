"""Run directories in one process: every table round-trips, saves, versions, errors, append-only."""
import hashlib
import json
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from rundata import GRAPH, SUGGESTION, TENSORS, assert_same_run, full_run, record_step

from helpers import tiny_cnn

import dsnotebook.run.writer as writer_mod
from dsnotebook import ModelTracer, Run
from dsnotebook.run.frames import TABLES
from dsnotebook.run.runs import RunSet
from dsnotebook.run.rundir_format import HEAD, MANIFEST, dumps, list_segments
from dsnotebook.run.steps import StepTable
from dsnotebook.run.writer import RunWriter


def _wait_for(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _digest(d):
    """Every file of every segment, with its bytes' hash."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for _, seg in list_segments(d) for p in sorted(seg.iterdir())}


# -- snapshots (Run.save) ------------------------------------------------------------------------
def test_save_and_open_round_trip_every_table(tmp_path):
    run = full_run()
    assert run.dropped_steps > 0  # thinned: the thinning state travels too
    for table in TABLES:
        assert len(run.to_dataframe(table)), f"{table} is not exercised"
    again = Run.open(run.save(tmp_path / "run"))
    assert_same_run(run, again)
    assert again.source["state"] == "finished"
    # the opened run goes on exactly as the original would have
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for s in range(40, 60):
        record_step(run, s, rng_a)
        record_step(again, s, rng_b)
    assert_same_run(run, again)


def test_save_and_open_an_empty_run(tmp_path):
    again = Run.open(Run(TENSORS, keep=16).save(tmp_path / "empty"))
    assert again.steps == [] and again.keep == 16
    for table in TABLES:
        assert len(again.to_dataframe(table)) == (3 if table == "tensors" else 0), table


def test_saving_again_replaces_the_save_and_leaves_no_temporary_files(tmp_path):
    run = full_run()
    d = run.save(tmp_path / "run")
    record_step(run, 100, np.random.default_rng(0))
    run.save(d)
    assert sorted(p.name for p in d.iterdir()) == [MANIFEST, "seg-000001"]
    assert Run.open(d).steps[-1] == 100


def test_saved_metadata_keeps_numpy_numbers_as_numbers(tmp_path):
    """Regression: ``default=str`` once wrote numpy ints and float32s (medians, counts) as strings."""
    run = Run(TENSORS, meta={"n": np.int64(3), "x": np.float32(0.5), "shape": np.array([2, 3]), "t": (1, 2),
                             "missing": float("nan")})
    run.add_records("timings", [{"step": 0, "module": "l0", "phase": "fwd", "seconds": np.float32(0.25),
                                 "calls": np.int64(2)}])
    d = run.save(tmp_path / "run")
    for p in [d / MANIFEST, d / "seg-000000" / HEAD]:
        json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    again = Run.open(d)
    assert again.meta == {"n": 3, "x": 0.5, "shape": [2, 3], "t": [1, 2], "missing": None}
    assert again.to_dataframe("timings")[["seconds", "calls"]].values.tolist() == [[0.25, 2]]


def test_save_refuses_a_training_log_and_a_folder_of_other_files(tmp_path):
    log = tmp_path / "log"
    w = RunWriter(Run(TENSORS), log).start()
    w.close()
    with pytest.raises(FileExistsError, match="run log written while training"):
        Run(TENSORS).save(log)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty and is not a run directory"):
        Run(TENSORS).save(other)
    assert (other / "todo.txt").read_text() == "keep me"


def test_format_version_2_saves_still_open(tmp_path):
    """The earlier layout (run.json + stats.npz) opens; saving over it converts it."""
    run = full_run()
    d = tmp_path / "v2"
    d.mkdir()
    state, arrays = run.state_arrays()
    head = {"format": 2, **state, "tensors": run.tensors, "meta": run.meta, "events": run.events,
            "graph": run.graph, "act_modules": run.act_modules, "records": run.records.to_json()}
    (d / "run.json").write_bytes(dumps(head))
    with open(d / "stats.npz", "wb") as f:
        np.savez_compressed(f, **arrays)
    assert_same_run(run, Run.open(d))
    run.save(d)
    assert sorted(p.name for p in d.iterdir()) == [MANIFEST, "seg-000000"]
    assert_same_run(run, Run.open(d))


def test_open_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        Run.open(tmp_path / "missing")
    d = full_run().save(tmp_path / "run")
    man = json.loads((d / MANIFEST).read_text())
    (d / MANIFEST).write_text(json.dumps({**man, "version": 4, "min_reader": 4}))
    with pytest.raises(ValueError, match="version 4.*upgrade dsnotebook"):
        Run.open(d)
    (d / MANIFEST).write_text(json.dumps({**man, "version": 4, "min_reader": 3}))  # additive: still readable
    assert Run.open(d).steps == full_run().steps
    (d / MANIFEST).write_text(json.dumps({**man, "format": "something-else"}))
    with pytest.raises(ValueError, match="not a dsnotebook run manifest"):
        Run.open(d)
    (d / MANIFEST).write_text(json.dumps(man))
    (d / "seg-000000" / "grads.arrow").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="seg-000000.*damaged"):
        Run.open(d)


# -- streaming (RunWriter, log_dir) --------------------------------------------------------------
def test_a_streamed_run_equals_the_in_memory_run(tmp_path):
    run = Run(TENSORS, meta={"model": "m"}, keep=8)
    w = RunWriter(run, tmp_path / "log", interval=0.05).start()
    rng = np.random.default_rng(2)
    for s in range(0, 40, 2):
        record_step(run, s, rng)
        if s == 10:
            run.set_graph(GRAPH)
            run.add_event(10, "nonfinite", "l1", "<b>not html</b>")
            run.meta["backends"] = {"cpu": "torch"}  # metadata changes are written too
        if s == 20:
            run.add_records("suggestions", [SUGGESTION])
            run.add_records("profile", [{"module": "l0", "phase": "fwd", "cpu_s": 0.1, "device_s": 0.0, "ops": 3,
                                         "top_ops": []}])
            run.add_records("suggestions", [{**SUGGESTION, "status": "verified", "result": {"speedup": 1.5}}])
        if s % 8 == 0:
            w.flush()  # several segments
    w.close()
    assert w.error is None and w.segments > 3
    again = Run.open(tmp_path / "log")
    assert again.source["state"] == "finished" and again.run_id == run.run_id
    assert_same_run(run, again)
    # every recorded step is in the directory at full resolution
    whole = Run.open(tmp_path / "log", keep=1000)
    assert whole.steps == list(range(0, 40, 2))
    assert_same_run(full_run(keep=1000), whole, tables=("grads", "updates", "hist", "activations"),
                    lists=False)


def test_segments_are_written_off_the_training_thread_and_never_change(tmp_path, monkeypatch):
    threads = []
    real = writer_mod.commit_segment
    monkeypatch.setattr(writer_mod, "commit_segment",
                        lambda *a, **k: (threads.append(threading.current_thread().name), real(*a, **k))[1])
    run = Run(TENSORS, keep=8)
    d = tmp_path / "log"
    w = RunWriter(run, d, interval=0.05).start()
    rng = np.random.default_rng(0)
    for s in range(3):
        record_step(run, s, rng)
    _wait_for(lambda: len(list_segments(d)) >= 2)  # the reset segment and one written by the thread
    first = _digest(d)
    for s in range(3, 30):
        record_step(run, s, rng)
    w.close()
    assert threads[0] == threading.current_thread().name  # the start: the run so far
    assert threads[1].startswith("dsnotebook-writer") and threads[-1] == threading.current_thread().name  # close
    after = _digest(d)
    assert {k: after[k] for k in first} == first  # append-only: earlier segments untouched
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_a_failing_disk_stops_the_writer_not_the_training(tmp_path, monkeypatch):
    run = Run(TENSORS, keep=8)
    w = RunWriter(run, tmp_path / "log", interval=0.05).start()

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_mod, "commit_segment", full)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for s in range(20):
            record_step(run, s, rng)
        w.flush()
        w.close()
    assert isinstance(w.error, OSError) and run.steps[-1] == 19
    assert any("No space left" in str(c.message) for c in caught)
    assert not (tmp_path / "log" / "writer.lock").exists()


def test_tracer_log_dir_round_trip(tmp_path):
    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with ModelTracer(model, opt, keep=8, activations_every=2, profile_every=3, log_dir=tmp_path / "log") as tr:
        for _ in range(25):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert tr.hook_count == 0
    again = Run.open(tmp_path / "log")
    assert again.meta["log_dir"] == str(tmp_path / "log")
    assert_same_run(tr.run, again)
    assert len(again.to_dataframe("timings")) and len(again.to_dataframe("activations"))
    assert Run.open(tmp_path / "log", keep=100).steps == list(range(25))


def test_log_dir_must_be_new_or_empty(tmp_path):
    model = tiny_cnn()
    done = full_run().save(tmp_path / "saved")
    with pytest.raises(FileExistsError, match="already holds a saved run"):
        ModelTracer(model, log_dir=done)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("1,2")
    with pytest.raises(FileExistsError, match="not empty"):
        ModelTracer(model, log_dir=tmp_path / "other")
    tr = ModelTracer(model, log_dir=tmp_path / "empty")  # missing: created at attach
    tr.attach()
    with pytest.warns(UserWarning, match="no training step"):
        tr.detach()
    with pytest.raises(FileExistsError, match="run log written while training"):
        ModelTracer(model, log_dir=tmp_path / "empty")


# -- a folder of runs ----------------------------------------------------------------------------
def test_open_a_parent_folder_lists_and_compares_its_runs(tmp_path):
    a, b = full_run(), full_run(steps=range(0, 20))
    a.save(tmp_path / "runs" / "a")
    b.save(tmp_path / "runs" / "b")
    (tmp_path / "runs" / "not-a-run").mkdir()
    runs = Run.open(tmp_path / "runs")
    assert isinstance(runs, RunSet) and list(runs) == ["a", "b"]
    listing = runs.list()
    assert listing["run"].tolist() == ["a", "b"] and listing["state"].tolist() == ["finished", "finished"]
    assert listing["last_step"].tolist() == [a.steps[-1], b.steps[-1]]
    df = runs.to_dataframe("grads")
    assert df.columns[0] == "run" and set(df["run"]) == {"a", "b"}
    for name, run in (("a", a), ("b", b)):
        mine = df[df["run"] == name].drop(columns="run").reset_index(drop=True)
        assert mine.astype(str).equals(run.to_dataframe("grads").astype(str))
    assert "a: finished" in repr(runs)
    with pytest.raises(KeyError, match="no run 'c'"):
        runs["c"]


def test_thinning_replays_exactly(tmp_path):
    """Steps replayed with their ordinals keep what the recording Run kept, whatever the block sizes."""
    table, replay = StepTable(8), StepTable(8)
    for s in range(0, 300, 3):
        table.record(s)
    whole = StepTable(1000)
    for s in range(0, 300, 3):
        whole.record(s)
    arrays = whole.to_arrays()
    for lo in range(0, 100, 7):
        part = {k: (v[lo:lo + 7] if k in ("steps", "ordinals") or k.endswith("_len") else v)
                for k, v in arrays.items()}
        replay.extend(part)
    assert replay.order == table.order and replay.stride == table.stride and replay.dropped == table.dropped


def test_a_tracer_attached_twice_goes_on_in_the_same_directory(tmp_path):
    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    tr = ModelTracer(model, opt, log_dir=tmp_path / "log")
    for _ in range(2):
        with tr:
            for _ in range(3):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        assert Run.open(tmp_path / "log").source["state"] == "finished"
    again = Run.open(tmp_path / "log")
    assert again.steps == tr.run.steps == list(range(6))
    assert_same_run(tr.run, again)
