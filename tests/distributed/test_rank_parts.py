"""The pieces of distributed tracing in one process: packets, the exact combination of shards,
rank 0's merge, hang reports, straggler scores, and the probe itself in a job of one."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsnotebook import ModelTracer
from dsnotebook.distributed import RankStatsProbe, describe_hang, straggler, straggler_scores
from dsnotebook.distributed.combine import combine
from dsnotebook.distributed.hang import Heartbeat, is_collective_failure
from dsnotebook.distributed.merge import Merger
from dsnotebook.distributed.packing import FLAG_CONTRIBUTES, FLAG_SHARDED, PHASE_KEYS, RECORD, Layout
from dsnotebook.distributed.timings import phase_values, rows_of_step
from dsnotebook.run import Run
from dsnotebook.stats.reference import GRAD_COLS, HIST_OFFSET, TorchStatsBackend

B = TorchStatsBackend()


def _records(tensors: list[torch.Tensor], flags: int) -> np.ndarray:
    raw = B.grad_stats_exact(tensors).numpy()
    rec = np.zeros(len(tensors), RECORD)
    rec["id"] = np.arange(len(tensors))
    rec["flags"] = flags
    rec["numel"] = [t.numel() for t in tensors]
    rec["grad"] = raw[:, :HIST_OFFSET]
    rec["hist"] = raw[:, HIST_OFFSET:]
    return rec


def _adversarial(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(37, 5, generator=g) * 1e-3
    a[3, 1], a[7, 2], a[9, 0] = float("nan"), float("inf"), 0.0
    b = torch.randn(11, generator=g) * 1e6
    c = torch.zeros(3)  # shorter than the number of shards: some ranks hold nothing
    return [a, b, c]


@pytest.mark.parametrize("ranks", [2, 4])
def test_shards_combine_exactly_into_the_whole_tensor(ranks):
    full = _adversarial(ranks)
    per_rank = [_records([t.tensor_split(ranks)[r] for t in full], FLAG_CONTRIBUTES | FLAG_SHARDED)
                for r in range(ranks)]
    ids, grads, _, _ = combine(per_rank, len(full))
    ref = B.grad_stats_exact(full).numpy()
    assert ids.tolist() == [0, 1, 2] and grads.shape == (3, GRAD_COLS)
    np.testing.assert_array_equal(grads[:, HIST_OFFSET:], ref[:, HIST_OFFSET:])  # histograms, count for count
    np.testing.assert_array_equal(grads[:, 2:5], ref[:, 2:5])  # absmax, non-finite, zeros
    np.testing.assert_allclose(grads[:, :2], ref[:, :2], rtol=1e-12)  # float64 sums: a few partial sums


def test_replicas_count_once():
    t = _adversarial(0)
    per_rank = [_records(t, FLAG_CONTRIBUTES)] + [_records(t, 0) for _ in range(3)]
    _, grads, _, _ = combine(per_rank, 3)
    np.testing.assert_array_equal(grads, B.grad_stats_exact(t).numpy())


def test_packet_views_share_one_buffer_and_reject_a_wrong_one():
    lay = Layout(3, grad_slots=2, phase_slots=4)
    buf = np.zeros(lay.nbytes, np.uint8)
    head, slots, records, phases = lay.views(buf)
    assert records.shape == (2, 3) and phases.shape == (4,) and len(PHASE_KEYS) == phases["seconds"].shape[1]
    records[1, 2]["hist"][5] = 7
    slots[1] = (42, 3)
    head[0] = (1, 0, 2, 0, 43)
    again = lay.views(buf.copy())
    assert again[2][1, 2]["hist"][5] == 7 and again[1][1]["step"] == 42 and again[0][0]["rank"] == 1
    with pytest.raises(ValueError, match="uint8"):
        lay.views(np.zeros(lay.nbytes - 1, np.uint8))


def _packet(lay: Layout, rank: int, steps: list[int], rec: np.ndarray, phase_steps=()) -> tuple:
    buf = np.zeros(lay.nbytes, np.uint8)
    head, slots, records, phases = lay.views(buf)
    for i, s in enumerate(steps):
        slots[i] = (s, len(rec))
        records[i, :len(rec)] = rec
    for i, s in enumerate(phase_steps):
        phases[i] = (s, np.arange(len(PHASE_KEYS), dtype=float) + rank)
    head[0] = (rank, 0, len(steps), len(phase_steps), 0)
    return head, slots, records, phases


def _run(n: int) -> Run:
    return Run([{"tensor_id": i, "name": f"t{i}", "module": "m", "tensor": "weight", "shape": [4], "dtype": "float32",
                 "numel": 4, "trainable": True, "aliases": []} for i in range(n)])


def test_merge_writes_complete_steps_in_order_and_drops_a_step_a_rank_never_sent():
    lay, run = Layout(2, grad_slots=3, phase_slots=2), _run(2)
    t = [torch.tensor([1.0, -2.0, 0.0, 4.0]), torch.tensor([0.5, 0.5, 0.5, 0.5])]
    rec0, rec1 = _records(t, FLAG_CONTRIBUTES), _records(t, 0)
    m = Merger(run, 2, 2)
    m.merge([_packet(lay, 0, [0, 1], rec0, [0]), _packet(lay, 1, [0], rec1, [0])])
    assert run.steps == [0]  # step 1 waits for rank 1
    m.merge([_packet(lay, 0, [2], rec0), _packet(lay, 1, [1, 2], rec1)])
    assert run.steps == [0, 1, 2] and m.written == 3
    np.testing.assert_allclose(run.grads_at(2).values[:, 0], [float(x.norm()) for x in t])
    assert len(run.records.tables["rank_grads"]) == 6
    assert sorted({(r["step"], r["rank"]) for r in run.records.tables["rank_phases"]}) == [(0, 0), (0, 1)]
    m.merge([_packet(lay, 0, [3, 4], rec0), _packet(lay, 1, [4], rec1)])  # rank 1 never sends step 3
    assert run.steps == [0, 1, 2, 4]
    assert [e["detail"] for e in run.events if "never arrived from rank(s) [1]" in e["detail"]]


def test_merge_names_a_replica_that_drifted():
    lay, run = Layout(2, grad_slots=1, phase_slots=1), _run(2)
    t = [torch.ones(4), torch.ones(4)]
    other = [torch.ones(4), torch.full((4,), 1.001)]
    Merger(run, 2, 2).merge([_packet(lay, 0, [0], _records(t, FLAG_CONTRIBUTES)), _packet(lay, 1, [0], _records(other, 0))])
    [event] = [e["detail"] for e in run.events]
    assert "differ from rank 0's at step 0 (rank 1: t1)" in event


def test_merge_keeps_a_late_step_out_of_the_grads_table():
    lay, run = Layout(1, grad_slots=1, phase_slots=1), _run(1)
    run.add_activations(5, [{"module": "m", "type": "Linear", "mean": 0, "std": 0, "absmax": 0, "zero_frac": 0,
                             "nonfinite": 0, "dead_units": 0, "units": 0, "call": 0}])
    rec = _records([torch.ones(4)], FLAG_CONTRIBUTES)
    Merger(run, 1, 1).merge([_packet(lay, 0, [3], rec)])
    assert run.grads_at(3) is None and len(run.records.tables["rank_grads"]) == 1
    assert "arrived after step 5" in run.events[-1]["detail"]


def test_hang_report_names_the_ranks_behind_and_the_flight_recorder():
    now = 1000.0
    states = {0: {"step": 7, "phase": "backward", "since": now - 30, "heard": now, "status": "running"},
              1: {"step": 7, "phase": "data loading", "since": now - 31, "heard": now - 29, "status": "running"},
              2: {"step": 6, "phase": "optimizer", "since": now - 40, "heard": now - 40,
                  "status": "raised ValueError: boom"},
              3: None}
    text = describe_hang("a collective timed out", 0, 4, states, now=now)
    assert "rank 0: step 7 backward (for 30.0 s)" in text
    assert "rank 1: step 7 data loading (for 31.0 s), last heard 29 s ago" in text
    assert "rank 2: step 6 optimizer (for 40.0 s), last heard 40 s ago - raised ValueError: boom" in text
    assert "rank 3: never heard from" in text
    assert "Ranks behind the others or stopped: 1, 2, 3" in text and "torchfrtrace" in text


def test_what_counts_as_a_failed_collective():
    assert is_collective_failure(RuntimeError("[gloo] Timed out waiting 3000ms for recv operation to complete"))
    assert is_collective_failure(torch.distributed.DistBackendError("NCCL communicator was aborted"))
    assert not is_collective_failure(ValueError("timed out"))  # the user's own error
    assert not is_collective_failure(RuntimeError("shape mismatch")) and not is_collective_failure(None)


class _Store:
    def __init__(self) -> None:
        self.d: dict[str, bytes] = {}

    def set(self, k: str, v: str) -> None:
        self.d[k] = v.encode()

    def check(self, keys: list[str]) -> bool:
        return all(k in self.d for k in keys)

    def get(self, k: str) -> bytes:
        return self.d[k]


def test_heartbeat_reaches_the_store_and_its_watchdog_speaks_once():
    store, heard = _Store(), []
    other = Heartbeat(store, "p", 1, 2)
    other.mark(3, "forward")
    other.write()
    beat = Heartbeat(store, "p", 0, 2, interval=0.02, hang_after=0.05, on_hang=heard.append).start()
    beat.mark(4, "backward")
    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        time.sleep(0.02)
    beat.stop()
    assert len(heard) == 1 and "no progress" in heard[0]
    assert "rank 1: step 3 forward" in heard[0] and "Ranks behind the others or stopped: 1" in heard[0]
    assert b'"status": "detached"' in store.d["p/0"]


def _phase_rows(step: int, rank: int, **sec: float) -> list[dict]:
    base = {"data": 0.001, "fwd": 0.01, "bwd": 0.02, "opt": 0.001, "comm": 0.0, "tracer": 0.001, "other": 0.0,
            "fwd_compute": 0.01, "bwd_compute": 0.02}
    base.update(sec)
    base["step"] = sum(base[k] for k in ("data", "fwd", "bwd", "opt", "tracer", "other"))
    return [{"step": step, "rank": rank, "phase": k, "seconds": v} for k, v in base.items()]


def test_the_rank_that_works_longest_is_the_straggler_not_the_ones_that_wait():
    run = _run(1)
    for s in range(4):
        rows = _phase_rows(s, 0, bwd=0.05) + _phase_rows(s, 1, data=0.031) + _phase_rows(s, 2, bwd=0.05)
        run.add_records("rank_phases", rows)
    scores = straggler_scores(run)
    assert straggler(run) == 1 and scores.loc[1, "excess_phase"] == "data"
    assert scores.loc[1, "score"] == pytest.approx(0.030 / 0.063, rel=1e-6)  # every rank's step: 63 ms
    assert scores.loc[0, "wait_s"] == pytest.approx(0.03)
    # equal ranks: nobody is named
    even = _run(1)
    for s in range(3):
        even.add_records("rank_phases", _phase_rows(s, 0) + _phase_rows(s, 1, data=0.0012))
    assert straggler(even) is None and straggler(_run(1)) is None


def test_phase_values_sum_leaf_modules_only():
    rows = [{"step": 3, "module": "(root)", "phase": "fwd", "seconds": 9.0, "calls": 1},
            {"step": 3, "module": "net", "phase": "fwd", "seconds": 5.0, "calls": 1},
            {"step": 3, "module": "net.0", "phase": "fwd", "seconds": 1.0, "calls": 1},
            {"step": 3, "module": "net.1", "phase": "bwd", "seconds": 2.0, "calls": 1},
            {"step": 3, "module": "(step)", "phase": "data", "seconds": 0.5, "calls": 1},
            {"step": 3, "module": "(step)", "phase": "step", "seconds": 12.0, "calls": 1}]
    table = [{"step": 2, "module": "(step)", "phase": "step", "seconds": 1.0}] + rows
    assert rows_of_step(table, 3) == rows
    v = dict(zip(PHASE_KEYS, phase_values(rows)))
    assert v["fwd_compute"] == 1.0 and v["bwd_compute"] == 2.0 and v["data"] == 0.5 and v["step"] == 12.0
    assert phase_values(rows[:4]) is None  # no whole-step row


def test_the_probe_in_a_job_of_one_records_what_the_plain_tracer_records():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))

    def train(probes: list) -> ModelTracer:
        m = torch.nn.Sequential(*[torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)])
        m.load_state_dict(model.state_dict())
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        with ModelTracer(m, opt, probes=probes, capture_graph=False, profile_every=2) as tr:
            for _ in range(7):
                opt.zero_grad()
                F.cross_entropy(m(x), y).backward()
                opt.step()
        return tr

    plain, ranked = train([]), train([RankStatsProbe(3)])
    assert [type(p).__name__ for p in ranked.probes][0] == "RankStatsProbe"
    assert ranked.run.steps == plain.run.steps == list(range(7))
    for table in ("grads", "updates"):
        a, b = plain.to_dataframe(table), ranked.to_dataframe(table)
        np.testing.assert_allclose(b.select_dtypes("number").to_numpy(), a.select_dtypes("number").to_numpy(),
                                   rtol=1e-12)
    assert ranked.to_dataframe("hist")["count"].tolist() == plain.to_dataframe("hist")["count"].tolist()
    phases = ranked.run.records.tables["rank_phases"]
    assert sorted({r["step"] for r in phases}) == [0, 2, 4, 6] and {r["rank"] for r in phases} == {0}
    assert ranked.hook_count == 0 and ranked.module_hook_count == 0


def test_the_probe_unscales_a_fused_optimizers_gradients_like_the_plain_tracer():
    def run(probes: list) -> ModelTracer:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
        with ModelTracer(model, opt, probes=probes, capture_graph=False) as tr:
            for i in range(3):
                opt.zero_grad()
                scaler.scale(model(torch.randn(8, 16, generator=torch.Generator().manual_seed(i))).square().mean()).backward()
                scaler.step(opt)
                scaler.update()
        return tr

    plain, ranked = run([]), run([RankStatsProbe(2)])
    a, b = plain.to_dataframe("grads"), ranked.to_dataframe("grads")
    assert len(a) == len(b) == 12
    np.testing.assert_allclose(b["norm"], a["norm"], rtol=1e-12)
    assert ranked.to_dataframe("hist")["count"].tolist() == plain.to_dataframe("hist")["count"].tolist()
    assert float(b["norm"].max()) < 100  # not 2**16 times the true gradient's


def test_a_probe_that_cannot_set_up_its_group_stays_quiet(monkeypatch):
    import dsnotebook.distributed.probe as probe_mod

    def no_group(*a, **k):
        raise RuntimeError("timed out waiting for rank 1")

    monkeypatch.setattr(probe_mod, "Collector", no_group)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(RuntimeWarning, match="create the tracer on every rank"):
        with ModelTracer(model, opt, probes=[RankStatsProbe()], capture_graph=False) as tr:
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(4, 3)).sum().backward()
                opt.step()
    assert len([e for e in tr.run.events if "statistics are off" in e["detail"]]) == 1  # once, not per step
    assert tr.hook_count == 0 and tr.module_hook_count == 0


def test_activation_sampling_does_not_push_whole_job_rows_out_of_the_run():
    # activation rows of step 3 used to be recorded before the gathered gradient rows of steps 1-2
    # arrived, which the Run (steps only move forward) then refused
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt, activations_every=3, probes=[RankStatsProbe(5)], capture_graph=False) as tr:
        for _ in range(8):
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(4, 6)), torch.randint(0, 3, (4,))).backward()
            opt.step()
    grads = tr.to_dataframe("grads")
    assert sorted(grads["step"].unique()) == list(range(8))
    assert sorted(tr.to_dataframe("activations")["step"].unique()) == [0, 3, 6]
    assert not [e for e in tr.run.events if "arrived after" in e["detail"]]
