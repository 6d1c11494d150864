"""CellRuns: a sparse weight matrix as runs of consecutive cells, products on time-major fields."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ewarn.hazard_models.cell_runs import BLOCK, CellRuns, default_threads


def _labels_matrix(n_lat: int = 12, n_lon: int = 17, n_rows: int = 7, seed: int = 0) -> sp.csr_matrix:
    """Communes as bands of a label image plus shared boundary cells with fractional weights."""
    rng = np.random.default_rng(seed)
    lab = (np.arange(n_lat)[:, None] // 3 * 3 + np.arange(n_lon)[None, :] // 6) % n_rows
    cells = np.arange(n_lat * n_lon)
    w = rng.uniform(0.5, 2.0, cells.size)
    m = sp.coo_matrix((w, (lab.ravel(), cells)), shape=(n_rows, cells.size)).tocsr()
    # shared cells: a second commune takes part of every 5th cell
    share = cells[::5]
    extra = sp.coo_matrix((rng.uniform(0.1, 0.5, share.size), ((lab.ravel()[share] + 1) % n_rows, share)),
                          shape=m.shape)
    return sp.csr_matrix(m + extra)


def test_runs_rebuild_the_matrix_and_are_in_memory_order():
    m = _labels_matrix()
    runs = CellRuns.from_sparse(m)
    assert runs.shape == m.shape
    assert np.all(np.diff(runs.start) >= 0)                 # sorted by first cell
    assert np.all(runs.length >= 1)
    assert runs.n_runs < m.nnz                              # bands of 6 cells: runs, not single cells
    rows = np.repeat(runs.row, runs.length)
    cols = np.concatenate([np.arange(s, s + n) for s, n in zip(runs.start, runs.length, strict=True)])
    rebuilt = sp.coo_matrix((runs.data, (rows, cols)), shape=m.shape).toarray()
    np.testing.assert_array_equal(rebuilt, m.toarray())


def test_matmul_equals_the_sparse_product_for_any_number_of_fields_and_threads():
    m = _labels_matrix()
    runs = CellRuns.from_sparse(m)
    rng = np.random.default_rng(1)
    for n in (1, BLOCK - 1, BLOCK, 2 * BLOCK + 3):          # tails, one block, blocks + tail
        for dtype in (np.float32, np.float64):
            x = rng.gamma(0.5, 4.0, (n, m.shape[1])).astype(dtype)
            want = (m @ x.astype(np.float64).T).T
            for threads in (1, 2, 3):
                got = runs.matmul(x, threads=threads)
                assert got.dtype == np.float64 and got.shape == (n, m.shape[0])
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_row_gives_the_same_bits_alone_in_a_block_or_in_another_thread():
    m = _labels_matrix(seed=3)
    runs = CellRuns.from_sparse(m)
    x = np.random.default_rng(2).gamma(0.5, 4.0, (2 * BLOCK + 5, m.shape[1])).astype(np.float32)
    whole = runs.matmul(x, threads=1)
    threaded = runs.matmul(x, threads=3)
    one_by_one = np.concatenate([runs.matmul(x[i:i + 1], threads=1) for i in range(x.shape[0])])
    shifted = runs.matmul(x[3:], threads=2)                 # rows move between blocks and the tail
    assert np.array_equal(whole, threaded)
    assert np.array_equal(whole, one_by_one)
    assert np.array_equal(whole[3:], shifted)


def test_nan_cells_propagate_to_their_rows_only_and_empty_rows_are_zero():
    m = sp.csr_matrix(np.array([[1.0, 1.0, 0, 0, 0, 0],
                                [0, 0, 0.5, 0.5, 0, 0],
                                [0, 0, 0, 0, 0, 0],     # no cells
                                [0, 0, 0, 0, 0, 2.0]]))
    runs = CellRuns.from_sparse(m)
    assert runs.empty_rows.tolist() == [False, False, True, False]
    x = np.array([[1.0, 2.0, np.nan, 4.0, 5.0, 6.0]])
    got = runs.matmul(x)
    assert got[0, 0] == 3.0 and np.isnan(got[0, 1]) and got[0, 2] == 0.0 and got[0, 3] == 12.0
    mx = runs.maximum(x)
    assert mx[0, 0] == 2.0 and np.isnan(mx[0, 1]) and mx[0, 2] == -np.inf and mx[0, 3] == 6.0


def test_maximum_over_stored_cells_matches_a_dense_masked_maximum():
    m = _labels_matrix(seed=5)
    runs = CellRuns.from_sparse(m)
    x = np.random.default_rng(4).normal(0, 10, (BLOCK + 2, m.shape[1])).astype(np.float32)
    mask = m.toarray() > 0
    want = np.where(mask[None, :, :], x[:, None, :], -np.inf).max(axis=2)
    got = runs.maximum(x, threads=2)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_duplicates_are_summed_and_integer_fields_are_read_as_float():
    m = sp.coo_matrix(([1.0, 2.0, 3.0], ([0, 0, 1], [1, 1, 2])), shape=(2, 3))
    runs = CellRuns.from_sparse(m)
    got = runs.matmul(np.array([[10, 20, 30]], dtype=np.int16))
    np.testing.assert_array_equal(got, [[60.0, 90.0]])


def test_a_field_on_another_grid_is_refused():
    runs = CellRuns.from_sparse(sp.eye(4, format="csr"))
    with pytest.raises(ValueError, match=r"expected \(fields, 4\) cells"):
        runs.matmul(np.zeros((2, 5)))


def test_threads_follow_the_environment(monkeypatch):
    monkeypatch.setenv("EWARN_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("EWARN_THREADS", "zero")
    assert 1 <= default_threads() <= 8


def _window_ratio_reference(x: np.ndarray, steps, divisor: np.ndarray, m: sp.csr_matrix) -> np.ndarray:
    """Trailing windows (partial at the start, NaN-propagating), float32 ratio, fmax, masked max."""
    t = x.shape[1]
    best = None
    for d, n in enumerate(steps):
        win = np.zeros_like(x, dtype=np.float64)
        for k in range(n):  # window ending at t holds x[t-k] for t-k >= 0
            win[:, k:] += x[:, :t - k]
        r = win.astype(np.float32) / divisor[d].astype(np.float32)
        best = r if best is None else np.fmax(best, r)
    mask = m.toarray() > 0
    out = np.where(mask[None, None], best[:, :, None, :], -np.inf)
    with np.errstate(invalid="ignore"):
        return out.max(axis=-1).astype(np.float32)


def test_window_ratio_max_matches_windows_ratios_and_a_masked_maximum():
    m = _labels_matrix(seed=7)
    runs = CellRuns.from_sparse(m)
    rng = np.random.default_rng(8)
    x = rng.gamma(0.6, 5.0, (3, 2 * BLOCK + 5, m.shape[1])).astype(np.float32)
    x[1, 4, 10] = np.nan                 # one unknown step: its windows are NaN, the row's max too
    steps = [6, 1, 3]                    # any order
    per_cell = rng.uniform(20, 60, (3, m.shape[1])).astype(np.float32)
    for divisor in (np.array([30.0, 12.0, 20.0]), per_cell):
        want = _window_ratio_reference(x, steps, np.broadcast_to(
            np.asarray(divisor, np.float32).reshape(3, -1), (3, m.shape[1])), m)
        for threads, chunk in ((1, 4096), (2, 4096), (5, 4096), (2, 5), (1, 64)):  # runs cut at chunk edges
            got = runs.window_ratio_max(x, steps, divisor, threads=threads, chunk=chunk)
            assert got.dtype == np.float32 and got.shape == (3, x.shape[1], m.shape[0])
            np.testing.assert_allclose(got, want, rtol=1e-6)
            assert np.array_equal(np.isnan(got), np.isnan(want))
    nan_rows = np.isnan(runs.window_ratio_max(x, steps, [30.0, 12.0, 20.0]))
    # the NaN step of cell 10 makes the rows covering it NaN only at step 4, where all three windows
    # hold it; from step 5 the 1-step window is known and fmax takes it
    rows_of_cell = np.flatnonzero(m[:, 10].toarray().ravel() > 0)
    assert nan_rows[1, 4, rows_of_cell].all()
    assert not nan_rows[1, 5, rows_of_cell].any()     # the 1-step window is known again: fmax ignores NaN
    assert not nan_rows[0].any() and not nan_rows[2].any()


def test_window_ratio_max_refuses_bad_windows_and_divisors():
    runs = CellRuns.from_sparse(sp.eye(4, format="csr"))
    x = np.ones((1, 3, 4))
    with pytest.raises(ValueError, match="each >= 1"):
        runs.window_ratio_max(x, [0], [1.0])
    with pytest.raises(ValueError, match="divisor"):
        runs.window_ratio_max(x, [1, 2], np.ones((2, 3)))
