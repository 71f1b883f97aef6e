"""Run directories across processes: a real script writes while this process reads, is killed
with SIGKILL mid-run, or holds the directory against a second writer."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from rundata import TENSORS, assert_same_run
from write_script import build, train_step

from dsnotebook import ModelTracer, Run
from dsnotebook.run.lock import RunDirBusy, read_lock
from dsnotebook.run.reader import RunDirReader
from dsnotebook.run.rundir_format import LOCK, MANIFEST, list_segments
from dsnotebook.run.writer import RunWriter

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = pathlib.Path(__file__).with_name("write_script.py")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Writer:
    """write_script.py in a subprocess; its stdout goes to a file (a pipe could fill up and block it)."""

    def __init__(self, tmp: pathlib.Path, log_dir: pathlib.Path, *args: str) -> None:
        self.out = tmp / f"writer-{log_dir.name}.out"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), str(log_dir), *args], env=env,
                                     stdout=open(self.out, "w"), stderr=subprocess.STDOUT)

    def steps_printed(self) -> int:
        return sum(1 for line in self.out.read_text().splitlines() if line.startswith("step "))

    def wait(self, timeout: float = 60) -> int:
        rc = self.proc.wait(timeout=timeout)
        assert rc == 0 or rc == -signal.SIGKILL, self.out.read_text()[-3000:]
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _wait_for(cond, what: str, writer: Writer, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if writer.proc.poll() is not None and not cond():
            raise AssertionError(f"writer exited before {what}: {writer.out.read_text()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _check_complete_steps(run: Run) -> None:
    """Every step from 0 has a gradient and an update row per tensor, histograms that add up."""
    assert run.steps == list(range(len(run.steps)))
    numel = np.array([t["numel"] for t in run.tensors])
    for s in run.steps:
        g, u = run.grads_at(s), run.updates_at(s)
        assert g.tensor_ids.tolist() == list(range(len(numel))) and u.tensor_ids.tolist() == g.tensor_ids.tolist()
        assert (g.hist.sum(axis=1) + g.values[:, 4] == numel).all()


def test_kill_9_mid_run_opens_with_every_complete_segment(tmp_path):
    d = tmp_path / "log"
    w = Writer(tmp_path, d, "--sleep", "0.005")
    try:
        _wait_for(lambda: len(list_segments(d)) >= 3, "three segments", w)
        os.kill(w.proc.pid, signal.SIGKILL)
        w.wait()
    finally:
        w.stop()
    printed = w.steps_printed()
    info = read_lock(d)
    assert info is not None and info.pid == w.proc.pid and not info.alive  # stale: the pid is gone
    run = Run.open(d, keep=10**6)
    assert run.source["state"] == "crashed"
    assert 0 < len(run.steps) <= printed
    _check_complete_steps(run)
    # nothing corrupt: the same training in this process gives the same numbers, step by step
    threads = torch.get_num_threads()
    try:
        model, opt, x, y = build()
        with ModelTracer(model, opt, keep=10**6) as tr:
            for _ in range(len(run.steps)):
                train_step(model, opt, x, y)
    finally:
        torch.set_num_threads(threads)
    assert_same_run(tr.run, run, tables=("grads", "updates", "hist"), lists=False)
    # the crashed run's directory is not taken by a new writer
    with pytest.raises(FileExistsError, match="already holds"):
        ModelTracer(build()[0], log_dir=d)


def test_a_reader_sees_the_step_count_grow_while_a_subprocess_writes(tmp_path):
    d, stop = tmp_path / "log", tmp_path / "stop"
    w = Writer(tmp_path, d, "--stop-file", str(stop), "--sleep", "0.01")
    reader = RunDirReader(d)
    seen: list[int] = []
    try:
        def grew_three_times() -> bool:
            if reader.poll() and reader.run is not None and (not seen or len(reader.run.steps) > seen[-1]):
                seen.append(len(reader.run.steps))
                assert reader.state() == "live" and not reader.closed
            return len([n for n in seen if n > 0]) >= 3
        _wait_for(grew_three_times, "the step count to grow three times", w)
        assert w.proc.poll() is None  # all of that while the writer was still training
        stop.write_text("")
        w.wait()
    finally:
        w.stop()
    reader.poll()
    assert reader.closed and reader.state() == "finished"
    assert reader.run.steps[-1] == w.steps_printed() - 1
    _check_complete_steps(Run.open(d, keep=10**6))
    assert not (d / LOCK).exists()


def test_two_writers_are_refused_and_nothing_is_overwritten(tmp_path):
    d, stop = tmp_path / "log", tmp_path / "stop"
    w = Writer(tmp_path, d, "--stop-file", str(stop), "--sleep", "0.01")
    try:
        _wait_for(lambda: len(list_segments(d)) >= 2, "two segments", w)
        run_id = json.loads((d / MANIFEST).read_text())["run_id"]
        with pytest.raises(RunDirBusy, match=f"another writer holds it \\(pid {w.proc.pid} on this machine"):
            ModelTracer(build()[0], log_dir=d)
        with pytest.raises(RunDirBusy, match=f"pid {w.proc.pid}"):
            Run(TENSORS).save(d)
        with pytest.raises(RunDirBusy):
            RunWriter(Run(TENSORS), d).start()
        assert Run.open(d).source["state"] == "live"  # reading while it is written is fine
        stop.write_text("")
        w.wait()
    finally:
        w.stop()
    assert json.loads((d / MANIFEST).read_text())["run_id"] == run_id
    run = Run.open(d, keep=10**6)
    assert run.source["state"] == "finished" and run.steps[-1] == w.steps_printed() - 1
    _check_complete_steps(run)


def _lock(d: pathlib.Path, pid: int, host: str, age: float = 0.0) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / LOCK).write_text(json.dumps({"pid": pid, "host": host, "token": "t", "started": "then"}))
    if age:
        t = time.time() - age
        os.utime(d / LOCK, (t, t))


def test_a_stale_lock_is_taken_over_a_live_one_is_not(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _lock(tmp_path / "dead", gone.pid, socket.gethostname())
    Run(TENSORS).save(tmp_path / "dead")  # the pid no longer runs: taken over
    _lock(tmp_path / "far-old", 12345, "another-host", age=600)
    Run(TENSORS).save(tmp_path / "far-old")  # no heartbeat for 10 minutes: taken over
    _lock(tmp_path / "far-live", 12345, "another-host")
    with pytest.raises(RunDirBusy, match="pid 12345 on host another-host"):
        Run(TENSORS).save(tmp_path / "far-live")
    assert not (tmp_path / "far-live" / MANIFEST).exists()
    for name in ("dead", "far-old"):
        assert Run.open(tmp_path / name).steps == [] and not (tmp_path / name / LOCK).exists()
