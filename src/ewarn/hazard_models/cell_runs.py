"""Commune × cell weight products on a time-major field, streamed in memory order.

A commune covers consecutive cells along each grid row it crosses: at 0.01°
a commune of ~400 km² is ~18 cells wide, so the ~1.4 M stored weights of
the nationwide communes × cells matrix fall in ~80 k runs of consecutive
cells. :class:`CellRuns` stores a sparse weight matrix ``W`` (communes ×
cells) as those runs — (commune, first cell, length) with the weights laid
out run after run — sorted by first cell, so that ``W @ x`` for each time
step of a forecast reads the field and the weights front to back.

scipy's CSR × dense kernel instead wants the field cells-major, that is a
transpose of every time-major forecast (measured on the nationwide case:
the transposes and the CSR product each cost ~5.5 × one ``numpy.sum`` over
the field; the run kernel here does both jobs in ~3 ×, see
``benchmarks/bench_hazard.py``).

The kernels take 8 time steps at a time (each weight is read once per 8
steps, the 8 sums are independent chains) and are compiled with numba
(``nogil``: the blocks of 8 steps are shared between threads). They use no
fast-math reassociation: each output is summed over its cells in the same
order whatever the blocking, so the same row of a field gives the same bits
whether it is computed alone, in a block, in a dask chunk or in another
thread.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numba as nb
import numpy as np
import scipy.sparse as sp

__all__ = ["BLOCK", "CellRuns", "default_threads"]

#: Time steps (rows of the field) reduced together by one pass over the runs.
BLOCK = 8


def default_threads() -> int:
    """Threads for one product: the CPUs this process may run on, at most 8 [-].

    ``EWARN_THREADS`` (an integer ≥ 1) overrides it, e.g. 1 in a dask worker
    that already runs one task per core.
    """
    env = os.environ.get("EWARN_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


@dataclass(frozen=True, eq=False)
class CellRuns:
    """A sparse (rows × cells) matrix as runs of consecutive cells, sorted by first cell.

    Attributes
    ----------
    row : numpy.ndarray of int64, shape (n_runs,)
        Output row (commune) of each run.
    start : numpy.ndarray of int64, shape (n_runs,)
        First cell of each run (flat index over ``(latitude, longitude)``).
    length : numpy.ndarray of int64, shape (n_runs,)
        Number of consecutive cells in each run (≥ 1).
    offset : numpy.ndarray of int64, shape (n_runs,)
        Index in :attr:`data` of each run's first weight.
    data : numpy.ndarray of float64, shape (nnz,)
        The stored weights, run after run.
    shape : tuple of int
        ``(n_rows, n_cells)`` of the matrix.
    """

    row: np.ndarray
    start: np.ndarray
    length: np.ndarray
    offset: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def from_sparse(cls, m: sp.spmatrix | sp.sparray) -> CellRuns:
        """Runs of a scipy sparse matrix (any format; duplicates summed, explicit zeros kept).

        Parameters
        ----------
        m : scipy.sparse matrix or array
            Rows × cells weights, e.g. :attr:`ewarn.hazard_models.zonal.CommuneGrid.weights`
            or a row-normalized copy.

        Returns
        -------
        CellRuns
        """
        csr = sp.csr_matrix(m, dtype=np.float64, copy=True)
        csr.sum_duplicates()  # also sorts the column indices of each row
        n_rows, n_cells = csr.shape
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(csr.indptr))
        cells = csr.indices.astype(np.int64)
        brk = np.ones(cells.size, dtype=bool)
        brk[1:] = (rows[1:] != rows[:-1]) | (cells[1:] != cells[:-1] + 1)
        first = np.flatnonzero(brk)
        length = np.diff(np.append(first, cells.size)).astype(np.int64)
        order = np.argsort(cells[first], kind="stable")  # memory order of the field
        first, length = first[order], length[order]
        offset = np.zeros(first.size, dtype=np.int64)
        np.cumsum(length[:-1], out=offset[1:])
        # weights run after run in the new order: entry j of run i comes from first[i] + j
        gather = np.repeat(first - offset, length) + np.arange(cells.size, dtype=np.int64)
        return cls(row=rows[first], start=cells[first], length=length, offset=offset,
                   data=np.ascontiguousarray(csr.data[gather]), shape=(int(n_rows), int(n_cells)))

    @property
    def n_runs(self) -> int:
        """Number of runs [-]."""
        return int(self.row.size)

    @property
    def empty_rows(self) -> np.ndarray:
        """Boolean mask of the rows without any stored weight, shape ``(n_rows,)``."""
        has = np.zeros(self.shape[0], dtype=bool)
        has[self.row] = True
        return ~has

    def matmul(self, flat: np.ndarray, threads: int | None = None) -> np.ndarray:
        """``(W @ flat.T).T``: each row of a time-major field reduced to the matrix rows.

        Parameters
        ----------
        flat : numpy.ndarray, shape (n_fields, n_cells)
            Fields (time steps, members × times) over the flattened grid,
            any real dtype (float32 and float64 are read as they are, other
            types converted to float64).
        threads : int, optional
            Threads sharing the blocks of :data:`BLOCK` fields
            (default :func:`default_threads`).

        Returns
        -------
        numpy.ndarray of float64, shape (n_fields, n_rows)
            ``out[f, i] = Σ_j W_ij flat[f, j]`` summed in float64; 0 for a row
            without weights; NaN where a weighted cell is NaN.
        """
        x = self._field(flat)
        out = np.zeros((x.shape[0], self.shape[0]), dtype=np.float64)
        self._run(_matmul_rows, x, out, threads)
        return out

    def maximum(self, flat: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Maximum of each row of a field over the stored cells of each matrix row.

        Parameters
        ----------
        flat : numpy.ndarray, shape (n_fields, n_cells)
            As :meth:`matmul`.
        threads : int, optional
            As :meth:`matmul`.

        Returns
        -------
        numpy.ndarray, shape (n_fields, n_rows)
            In the field's float dtype; NaN where a stored cell is NaN, −inf
            for a row without weights.
        """
        x = self._field(flat)
        out = np.full((x.shape[0], self.shape[0]), -np.inf, dtype=x.dtype)
        self._run(_max_rows, x, out, threads)
        return out

    # ------------------------------------------------------------------ internals

    def _field(self, flat: np.ndarray) -> np.ndarray:
        x = np.asarray(flat)
        if x.ndim != 2 or x.shape[1] != self.shape[1]:
            raise ValueError(f"field of shape {x.shape}: expected (fields, {self.shape[1]}) cells")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        return np.ascontiguousarray(x)

    def _run(self, kernel: nb.core.dispatcher.Dispatcher, x: np.ndarray, out: np.ndarray,
             threads: int | None) -> None:
        n = x.shape[0]
        if n == 0 or self.n_runs == 0:
            return
        blocks = -(-n // BLOCK)
        k = max(1, min(threads if threads is not None else default_threads(), blocks))
        bounds = [min(n, BLOCK * (blocks * i // k)) for i in range(k + 1)]
        args = (self.row, self.start, self.length, self.offset, self.data)
        if k == 1:
            kernel(x, 0, n, *args, out)
            return
        with ThreadPoolExecutor(max_workers=k, thread_name_prefix="ewarn-runs") as pool:
            futures = [pool.submit(kernel, x, lo, hi, *args, out)
                       for lo, hi in pairwise(bounds) if hi > lo]
            for f in futures:
                f.result()


# --------------------------------------------------------------------------- kernels
#
# Fields [lo, hi) of x, BLOCK at a time then one at a time; each output
# element is summed (or maximized) over its runs in run order and, within a
# run, cell after cell: the same order in both loops, so the results do not
# depend on the blocking.


@nb.njit(nogil=True, cache=True)
def _matmul_rows(x, lo, hi, row, start, length, offset, data, out):  # pragma: no cover - compiled
    t = lo
    while t + BLOCK <= hi:
        x0, x1, x2, x3 = x[t], x[t + 1], x[t + 2], x[t + 3]
        x4, x5, x6, x7 = x[t + 4], x[t + 5], x[t + 6], x[t + 7]
        for i in range(row.size):
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            s = start[i]
            p = offset[i]
            for j in range(length[i]):
                w = data[p + j]
                c = s + j
                a0 += w * x0[c]
                a1 += w * x1[c]
                a2 += w * x2[c]
                a3 += w * x3[c]
                a4 += w * x4[c]
                a5 += w * x5[c]
                a6 += w * x6[c]
                a7 += w * x7[c]
            r = row[i]
            out[t, r] += a0
            out[t + 1, r] += a1
            out[t + 2, r] += a2
            out[t + 3, r] += a3
            out[t + 4, r] += a4
            out[t + 5, r] += a5
            out[t + 6, r] += a6
            out[t + 7, r] += a7
        t += BLOCK
    while t < hi:
        xt = x[t]
        for i in range(row.size):
            a0 = 0.0
            s = start[i]
            p = offset[i]
            for j in range(length[i]):
                a0 += data[p + j] * xt[s + j]
            out[t, row[i]] += a0
        t += 1


@nb.njit(nogil=True, cache=True)
def _max_rows(x, lo, hi, row, start, length, offset, data, out):  # pragma: no cover - compiled
    for t in range(lo, hi):
        xt = x[t]
        ot = out[t]
        for i in range(row.size):
            r = row[i]
            m = ot[r]
            if m != m:  # already NaN: stays NaN
                continue
            s = start[i]
            for j in range(length[i]):
                v = xt[s + j]
                if v != v:
                    m = v
                    break
                if v > m:
                    m = v
            ot[r] = m
