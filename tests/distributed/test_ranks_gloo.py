"""Real multi-process jobs (gloo on this CPU, 2 and 4 ranks): whole-job statistics against a
single-process reference, the straggler named, failures that never hang and leave no hooks.

Each test starts its ranks with a wall-clock limit and ``init_process_group(timeout=...)``
(see ``rank_launch``): a hang fails the test instead of blocking the suite.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rank_jobs import cnn, mlp, reference_grads
from rank_launch import run_ranks

from dsnotebook.stats.reference import GRAD_COLS, HIST_OFFSET

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def _norms(grads: list[torch.Tensor]) -> np.ndarray:
    return np.array([float(g.double().norm()) for g in grads])


def test_ddp_whole_job_equals_one_process_and_the_slow_rank_is_named(tmp_path):
    steps = 4
    res = run_ranks("ddp_job", 2, tmp_path, steps=steps, slow_rank=1, slow_s=0.08, gather_every=3)
    r0 = res[0]
    assert r0["meta"]["mode"] == "ddp" and r0["meta"]["world_size"] == 2
    assert sorted(r0["grads"]) == list(range(steps))  # every step, gathered in 2 collections + the final one
    ref = reference_grads(cnn(), 2, steps, image=True)
    for s in range(steps):
        ids, vals, hist = r0["grads"][s]
        assert ids.tolist() == list(range(len(ref[s])))
        np.testing.assert_allclose(vals[:, 0], _norms(ref[s]), rtol=1e-5)  # the averaged = full-batch gradient
        assert (hist.sum(axis=1) == [g.numel() for g in ref[s]]).all()
    # per-rank values: every rank holds the same all-reduced gradient, and said so
    rg = r0["rank_grads"]
    assert set(rg["rank"]) == {0, 1}
    wide = rg.pivot_table(index=["step", "tensor_id"], columns="rank", values="norm")
    np.testing.assert_array_equal(wide[0].to_numpy(), wide[1].to_numpy())
    assert rg.loc[rg["rank"] == 0, "contributes"].all() and not rg.loc[rg["rank"] == 1, "contributes"].any()
    assert not [e for e in r0["events"] if "differ" in e["detail"]]
    # the slow rank is the straggler, slowed in its data loading; the other waits for it
    scores = r0["scores"]
    assert r0["straggler"] == 1, scores
    assert scores.loc[1, "excess_phase"] == "data"
    assert scores.loc[0, "wait_s"] > scores.loc[1, "wait_s"]
    assert all(r["hooks"] == (0, 0) for r in res)
    assert res[1]["own_grads"] == 0  # statistics live on rank 0


def test_update_every_under_ddp(tmp_path):
    """update_every=2 on two ranks: gradients at every step, update statistics at steps 0, 2 and 4 only
    (every rank decides from the step number, so their rows merge), no warning."""
    res = run_ranks("ddp_job", 2, tmp_path, steps=5, gather_every=3, update_every=2)
    r0 = res[0]
    assert sorted(r0["grads"]) == list(range(5))
    ups = r0["updates"]
    assert sorted(ups["step"].unique()) == [0, 2, 4], ups
    assert len(ups[ups["step"] == 2]) == len(r0["names"]) and np.isfinite(ups["update_ratio"]).all()
    assert not [e for e in r0["events"] if "update" in e["detail"]], r0["events"]
    assert all(r["hooks"] == (0, 0) for r in res)


def test_fsdp2_four_ranks_whole_job_statistics_are_exact(tmp_path):
    steps = 3
    res = run_ranks("fsdp_job", 4, tmp_path, steps=steps, slow_rank=2, slow_s=0.08)
    r0 = res[0]
    assert r0["meta"]["mode"] == "fsdp2" and r0["meta"]["sharded_tensors"] == 4
    # uneven shards: 7 rows -> 2,2,2,1; 3 rows -> 1,1,1,0 (rank 3 holds nothing of l2)
    assert [r["local_numel"] for r in res] == [[16, 2, 7, 1], [16, 2, 7, 1], [16, 2, 7, 1], [8, 1, 0, 0]]
    assert r0["numel"] == [56, 7, 21, 3]  # whole tensors in the Run
    ref = reference_grads(mlp(), 4, steps, image=False)
    for s in range(steps):
        ids, vals, hist = r0["grads"][s]
        full = r0["reference"][s]["grads"]  # the backend on g.full_tensor(): one pass over the unsharded gradient
        assert full.shape == (4, GRAD_COLS)
        np.testing.assert_array_equal(hist, full[:, HIST_OFFSET:])  # histograms: count for count
        np.testing.assert_array_equal(vals[:, 3], full[:, 2])  # absmax
        np.testing.assert_array_equal(vals[:, 4], full[:, 3])  # non-finite
        np.testing.assert_allclose(vals[:, 0], np.sqrt(full[:, 1]), rtol=1e-12)  # norm: rounding of 4 partial sums
        np.testing.assert_allclose(vals[:, 0], _norms(ref[s]), rtol=1e-5)  # and it is the one-process gradient's
    ups = r0["updates"]
    for s in range(steps):
        u = r0["reference"][s]["updates"]
        np.testing.assert_allclose(ups.loc[ups["step"] == s, "update_ratio"].to_numpy(),
                                   np.sqrt(u[:, 0] / u[:, 1]), rtol=1e-5)
    # per-rank: each rank's shard norm; the shards' squares add up to the whole
    rg = r0["rank_grads"]
    assert set(rg["rank"]) == {0, 1, 2, 3} and rg["contributes"].all()
    sq = rg.assign(sq=rg["norm"] ** 2).groupby(["step", "tensor_id"])["sq"].sum()
    whole = np.concatenate([r0["grads"][s][1][:, 0] for s in range(steps)])
    np.testing.assert_allclose(np.sqrt(sq.to_numpy()), whole, rtol=1e-12)
    assert r0["straggler"] == 2, r0["scores"]
    assert all(r["hooks"] == (0, 0) for r in res)
    # FSDP2's collectives timed (time_fsdp): 2 all-gathers forward, 2 backward (resharded), 2 reduce-scatters
    assert all(r["comm_calls"] == 6 * steps for r in res)
    assert (r0["table"]["comm"] > 0).all()


@pytest.mark.parametrize("mode", ["raise", "stall"])
def test_a_failing_rank_leaves_no_hooks_anywhere_and_is_named(tmp_path, mode):
    # "raise": rank 1 raises at step 2, rank 0's all-reduce fails; "stall": rank 1 sleeps past the
    # group's timeout at step 2, rank 0's all-reduce times out, then rank 1's fails in turn
    res = run_ranks("failing_job", 2, tmp_path, timeout=90, pg_timeout=3.0, mode=mode)
    r0, r1 = res
    assert all(r["hooks"] == (0, 0) and r["global_hooks"] == 0 for r in res)
    assert r0["error"] is not None and r1["error"] is not None
    if mode == "raise":
        assert r1["error"].startswith("ValueError: rank 1 fails on purpose")
    report = next(e for e in r0["events"] if "Last phase each rank reached" in e)
    assert "rank 1:" in report and "flight recorder" in report and "torchfrtrace" in report
    assert "Ranks behind the others or stopped: 1" in report
    if mode == "raise":
        assert "raised ValueError" in report
    else:
        assert "rank 1: step 2 data loading" in report and "rank 0: step 2 backward" in report
        # the watchdog spoke first, while rank 0 was still stuck (NCCL's watchdog may kill a process silently)
        assert "no progress for 2 s (step 2, backward) on rank 0" in r0["reports"][0]

