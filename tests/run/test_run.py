"""The Run on its own: thinning, bounded memory, per-step readers, derived fields (files: test_rundir_*)."""
import tracemalloc

import numpy as np
import pytest
import torch

from dsnotebook import Run as FrontDoorRun
from dsnotebook.run import ACT_FIELDS, GRAD_FIELDS, ActivationRows, Run
from dsnotebook.run.fields import derive_grad_fields, derive_update_fields
from dsnotebook.stats.reference import HIST_BINS, UPDATE_COLS, TorchStatsBackend

from rundata import ONE, TENSORS  # noqa: E402 - shared fixtures of tests/run
from rundata import act_row as _act_row  # noqa: E402
from rundata import grad_raw as _grad_raw  # noqa: E402


def _recorder(run):
    heard = []
    run.subscribe(lambda kind, steps: heard.append((kind, list(steps))))
    return heard


# -- thinning ----------------------------------------------------------------------------------
def test_thinning_doubles_stride_keeps_tail_and_tells_listeners():
    run = Run(TENSORS, keep=8)  # tail: the last 2 steps at full resolution
    heard = _recorder(run)
    strides = []
    for s in range(1000):
        run.add_updates(s, ONE, np.zeros((1, UPDATE_COLS)))
        steps = run.steps
        assert len(steps) <= 8
        assert steps[-2:] == ([s - 1, s] if s else [0])
        old = steps[:-2]
        if len(old) > 1:
            stride = old[1] - old[0]
            # the past: every stride-th step from 0, up to the tail, nothing else
            assert old == list(range(0, steps[-2], stride)), (s, steps)
            assert stride & (stride - 1) == 0
            if not strides or stride != strides[-1]:
                strides.append(stride)
    assert strides == [2 ** k for k in range(len(strides))]  # 1, then it only ever doubles
    assert strides[-1] >= 128  # 1000 steps in 8 slots
    dropped = [s for kind, steps in heard if kind == "drop" for s in steps]
    assert len(dropped) == len(set(dropped)) == run.dropped_steps
    assert sorted(set(dropped) | set(run.steps)) == list(range(1000))
    assert not set(dropped) & set(run.steps)
    # a step is heard dropped only after it was heard appended, and never again after
    seen = set()
    for kind, steps in heard:
        if kind == "append":
            seen.update(steps)
        elif kind == "drop":
            assert set(steps) <= seen and steps == sorted(steps)
            seen -= set(steps)


def test_dropped_steps_are_gone_from_every_reader():
    run = Run(TENSORS, keep=4)
    for s in range(10):
        run.add_grads(s, ONE, _grad_raw([s, 1.0, 2.0, 3.0])[None])
        run.add_activations(s, [_act_row("l0", 0, s)])
    gone = sorted(set(range(10)) - set(run.steps))
    assert gone
    for s in gone:
        assert run.grads_at(s) is None and run.activations_at(s) is None and not run.has_activations(s)
        assert run.nonfinite_at(s) == 0
    assert sorted(run.to_dataframe("grads").step.unique()) == run.steps
    assert sorted(run.to_dataframe("activations").step.unique()) == run.steps
    assert np.isnan(run.matrix("norm", gone)).all()


def test_a_million_steps_in_bounded_memory():
    run = Run(TENSORS, keep=64)
    drops = []
    run.subscribe(lambda kind, steps: drops.append(len(steps)) if kind == "drop" else None)
    raw = np.ones((1, UPDATE_COLS))
    n = 1_000_000
    for s in range(n):
        run.add_updates(s, ONE, raw)
    steps = run.steps
    assert len(steps) <= 64 and steps[0] == 0 and steps[-1] == n - 1
    assert steps[-16:] == list(range(n - 16, n))
    assert run.dropped_steps == sum(drops) == n - len(steps)
    assert run.nbytes() <= 64 * (4 + 8 * UPDATE_COLS)
    assert len(run.to_dataframe("updates")) == len(steps)
    # nothing grows per step outside the arrays either (bookkeeping of steps, ordinals, records)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for s in range(n, n + 20_000):
            run.add_updates(s, ONE, raw)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, f"{grown} bytes more after 20000 steps"


def test_steps_going_back_raise_and_a_repeated_step_adds_rows():
    run = Run(TENSORS)
    run.add_grads(5, [0], _grad_raw([1.0, 2.0, 0.0, 0.0])[None])
    with pytest.raises(ValueError, match="must not go back"):
        run.add_grads(3, [0], _grad_raw([1.0, 2.0, 0.0, 0.0])[None])
    with pytest.raises(ValueError, match="must not go back"):
        run.add_activations(4, [_act_row("l0", 0, 0)])
    run.add_grads(5, [1], _grad_raw([np.nan] * 2 + [1.0] * 4)[None])  # a second optimizer, same step
    assert run.steps == [5]
    assert run.grads_at(5).tensor_ids.tolist() == [0, 1]
    assert run.nonfinite_at(5) == 2


def test_keep_below_four_is_a_clear_error():
    with pytest.raises(ValueError, match="keep must be >= 4"):
        Run(TENSORS, keep=3)


# -- per-step readers ------------------------------------------------------------------------------
def test_grads_updates_and_nonfinite_at_a_step():
    run = Run(TENSORS)
    g0, g2 = np.array([1.0, -2.0, 0.0, np.inf]), np.array([np.nan, 3.0, 0.0, 0.0, 1.0, 5.0, -np.inf, 2.0])
    run.add_grads(7, [0, 2], np.stack([_grad_raw(g0), _grad_raw(g2)]))
    run.add_updates(7, [1], np.array([[4.0, 16.0, 3.0]]))
    g = run.grads_at(7)
    assert g.tensor_ids.tolist() == [0, 2] and g.values.shape == (2, len(GRAD_FIELDS))
    assert g.hist.shape == (2, HIST_BINS)
    np.testing.assert_array_equal(g.values, derive_grad_fields(np.stack([_grad_raw(g0), _grad_raw(g2)]), [4, 8]))
    assert run.nonfinite_at(7) == 3
    u = run.updates_at(7)
    assert u.tensor_ids.tolist() == [1]
    np.testing.assert_allclose(u.values, [[0.5, 0.5]])
    assert run.grads_at(8) is None and run.updates_at(8) is None and run.nonfinite_at(8) == 0
    with pytest.raises(ValueError):
        g.values[0, 0] = 1.0  # read-only: a reader cannot change what was recorded
    with pytest.raises(ValueError):
        g.tensor_ids[0] = 1


def test_activations_at_a_step():
    run = Run(TENSORS)
    rows = [_act_row("enc", 0, 1, dead=[1, 5]), _act_row("enc", 1, 2), _act_row("head", 0, 3, dead=[0])]
    run.add_grads(2, [0], _grad_raw([1.0] * 4)[None])  # a step with gradients only
    run.add_activations(3, rows[:2])
    run.add_activations(3, rows[2:])  # a second batch of the same step
    assert not run.has_activations(2) and run.activations_at(2) is None
    assert run.has_activations(3)
    a = run.activations_at(3)
    assert isinstance(a, ActivationRows)
    assert a.modules == ("enc", "enc", "head") and a.types == ("Linear",) * 3
    assert a.calls.tolist() == [0, 1, 0]
    assert a.values.dtype == np.float32 and a.values.shape == (3, len(ACT_FIELDS))
    np.testing.assert_array_equal(a.values, np.array([[r[f] for f in ACT_FIELDS] for r in rows], np.float32))
    assert [d.tolist() for d in a.dead] == [[1, 5], [], [0]]
    with pytest.raises(ValueError):
        a.values[0, 0] = 0.0
    assert run.act_modules == [{"module": "enc", "type": "Linear"}, {"module": "head", "type": "Linear"}]


def test_front_doors_export_the_same_run():
    assert FrontDoorRun is Run


# -- derived fields against plain numpy ---------------------------------------------------------
_CASES = {
    "plain": np.random.default_rng(0).normal(size=1000) * 1e-3,
    "nonfinite": np.array([np.nan, 1.0, -np.inf, 0.0, -0.0, 1e-30, 3.0, np.inf, -2.0]),
    "all_nan": np.full(5, np.nan),
    "one": np.array([4.0]),
    "zeros": np.zeros(7),
    "empty": np.zeros(0),
}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_grad_fields_match_numpy(name):
    x = _CASES[name]
    finite = x[np.isfinite(x)]
    want = {
        "norm": np.sqrt((finite ** 2).sum()),
        "mean": finite.mean() if finite.size else np.nan,
        "std": finite.std(ddof=1) if finite.size > 1 else np.nan,
        "absmax": np.abs(finite).max(initial=0.0),
        "nonfinite": x.size - finite.size,
        "zero_frac": (x == 0).sum() / x.size if x.size else np.nan,
    }
    tensors = [dict(TENSORS[0], numel=x.size)]
    raws = {"numpy": _grad_raw(x)[None],
            "torch backend": TorchStatsBackend().grad_stats([torch.tensor(x, dtype=torch.float32)]).numpy()}
    for how, raw in raws.items():
        run = Run(tensors)
        run.add_grads(0, [0], raw)
        got = run.grads_at(0).values[0]
        for k, f in enumerate(GRAD_FIELDS):
            np.testing.assert_allclose(got[k], want[f], rtol=1e-5, atol=1e-12, equal_nan=True, err_msg=f"{how} {f}")
            np.testing.assert_allclose(run.matrix(f)[0, 0], want[f], rtol=1e-5, atol=1e-12, equal_nan=True)
        assert run.nonfinite_at(0) == want["nonfinite"]


def test_update_fields_match_numpy_including_zero_weights():
    rng = np.random.default_rng(1)
    before = [rng.normal(size=50), np.zeros(4), np.zeros(3), rng.normal(size=6)]
    after = [before[0] + rng.normal(size=50) * 1e-3, np.array([0.0, 0.5, 0.0, 0.0]), np.zeros(3), before[3].copy()]
    after[3][2] += 1.0
    want_ratio = [np.linalg.norm(a - b) / np.linalg.norm(b) if np.any(b) else (np.inf if np.any(a != b) else 0.0)
                  for a, b in zip(after, before)]
    want_changed = [np.mean(a != b) for a, b in zip(after, before)]
    assert want_ratio[1] == np.inf and want_ratio[2] == 0.0
    tensors = [dict(TENSORS[0], tensor_id=i, numel=b.size) for i, b in enumerate(before)]
    numpy_raw = np.array([[((a - b) ** 2).sum(), (b ** 2).sum(), (a != b).sum()] for a, b in zip(after, before)])
    backend = TorchStatsBackend()
    snap = backend.snapshot([torch.tensor(b, dtype=torch.float32) for b in before])
    torch_raw = backend.update_stats(snap, [torch.tensor(a, dtype=torch.float32) for a in after]).numpy()
    for how, raw in (("numpy", numpy_raw), ("torch backend", torch_raw)):
        run = Run(tensors)
        run.add_updates(0, np.arange(4), raw)
        np.testing.assert_allclose(run.matrix("update_ratio")[:, 0], want_ratio, rtol=1e-4, err_msg=how)
        np.testing.assert_allclose(run.matrix("changed_frac")[:, 0], want_changed, rtol=1e-6, err_msg=how)
        np.testing.assert_array_equal(run.updates_at(0).values,
                                      derive_update_fields(raw, [b.size for b in before]))


def test_unknown_statistic_and_table_are_clear_errors():
    run = Run(TENSORS)
    with pytest.raises(KeyError, match="unknown statistic"):
        run.matrix("nrom")
    with pytest.raises(KeyError, match="unknown table"):
        run.to_dataframe("grad")
