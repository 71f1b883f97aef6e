"""Thinning steps into report columns (views/report/columns.py): windows cover every step once,
a window shows its largest value (spikes survive), counts add up, histogram columns are real
steps and a non-finite step is never thinned away, bigger models get fewer columns."""
import numpy as np
import pytest

from dsnotebook.views.report.columns import columns_for, reduce_max, reduce_sum, representatives, windows


def test_windows_cover_every_step_once():
    steps = list(range(0, 1000, 3))
    cols = windows(steps, 40)
    assert cols.n == 40 and cols.count.sum() == len(steps)
    assert cols.first[0] == 0 and cols.last[-1] == steps[-1]
    assert (cols.first[1:] > cols.last[:-1]).all() and set(cols.count) <= {8, 9}
    small = windows([5, 7, 9], 40)
    assert small.first.tolist() == [5, 7, 9] and small.count.tolist() == [1, 1, 1]
    assert windows([], 10).n == 0
    with pytest.raises(ValueError):
        windows(steps, 0)


def test_a_window_shows_its_largest_value_and_sums_counts():
    m = np.array([[1.0, np.nan, 5.0, 2.0, np.nan, np.nan], [np.inf, 0.0, 1e-30, 3.0, 4.0, 1.0]])
    cols = windows(range(6), 3)
    out = reduce_max(m, cols)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[1, 5, np.nan], [np.inf, 3, 4]], np.float32))
    np.testing.assert_array_equal(reduce_sum(m, cols), [[1, 7, 0], [np.inf, 3, 5]])


def test_histogram_columns_are_real_steps_and_keep_nonfinite_ones():
    steps = list(range(100, 200))
    cols = windows(steps, 10)
    weight = np.zeros(100)
    weight[33] = 5  # step 133 had non-finite gradients
    chosen = representatives(steps, cols, weight)
    assert len(chosen) == 10 and 133 in chosen
    assert chosen[0] == 109 and chosen[-1] == 199  # else the window's last step
    assert set(chosen) <= set(steps)


def test_more_rows_get_fewer_columns_within_the_budget():
    assert columns_for(200 * 2, 400, 640_000) == 400
    assert columns_for(2000 * 2, 400, 640_000) == 40
    assert columns_for(10**6, 400, 640_000) == 32  # never fewer than 32
    assert columns_for(10, 5, 640_000) == 5
