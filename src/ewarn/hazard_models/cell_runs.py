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
the transposes and the CSR product each cost 5.5-7.7 × one ``numpy.sum``
over the field; the run kernel does both jobs in 1.8-2.3 × on 2 threads,
3-6 × on one; see ``benchmarks/bench_hazard.py``).

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
from functools import cached_property
from itertools import pairwise

import numba as nb
import numpy as np
import scipy.sparse as sp

__all__ = ["BLOCK", "CellRuns", "default_threads"]

#: Time steps (rows of the field) reduced together by one pass over the runs.
BLOCK = 8

#: Cells per chunk of :meth:`CellRuns.window_ratio_max` (the last steps of a chunk stay in cache).
CHUNK = 4096


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

    @cached_property
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

    def window_ratio_max(self, fields: np.ndarray, steps: np.ndarray, divisor: np.ndarray,
                         threads: int | None = None, chunk: int = CHUNK) -> np.ndarray:
        """Max over each row's cells of the max over windows of trailing-window sum / divisor.

        For a field ``x`` (time, cells), windows of ``n_d`` steps and a
        divisor ``g_d`` per window (and cell): ``out[t, i] = max_{j ∈ row i}
        fmax_d (R_d(t, j) / g_d(j))`` with ``R_d(t, j) = Σ_{k=0}^{n_d-1}
        x[t-k, j]`` — the flash-flood threat ratio of SCIENCE.md §2 (rain
        over a duration / flash-flood guidance) maximized over each commune
        in one pass over the field, without grid-sized window arrays. The
        semantics are those of :func:`ewarn.hazard_models.rainfall.accumulations`
        (``partial=True``: a window reaching before the first step holds
        the steps available; ``skipna=False``: a NaN step makes its windows
        NaN), a float32 division like
        :func:`ewarn.hazard_models.flash_flood.threat_ratio`, ``numpy.fmax``
        over windows (a NaN window is ignored when another is known) and
        :meth:`maximum` over cells (a NaN cell makes its row NaN).

        Parameters
        ----------
        fields : numpy.ndarray, shape (n_series, n_times, n_cells)
            Per-step values (rain [mm per step]) of each series (members).
        steps : array_like of int, shape (n_windows,)
            Window lengths [steps], each ≥ 1.
        divisor : array_like, shape (n_windows,) or (n_windows, n_cells)
            Per window, a constant or a value per cell (guidance [mm]).
        threads : int, optional
            As :meth:`matmul`.
        chunk : int
            Cells per work item (default :data:`CHUNK`; the results do not depend on it).

        Returns
        -------
        numpy.ndarray of float32, shape (n_series, n_times, n_rows)
            −inf for a row without cells.
        """
        x = self._field(fields, ("series", "times"))
        n = np.asarray(steps, dtype=np.int64).ravel()
        if n.size == 0 or np.any(n < 1):
            raise ValueError(f"window lengths {n.tolist()} [steps]: give at least one, each >= 1")
        g = np.asarray(divisor, dtype=np.float32)
        g = g.reshape(n.size, -1) if g.size in (n.size, n.size * self.shape[1]) else None
        if g is None:
            raise ValueError(f"divisor of shape {np.shape(divisor)}: expected ({n.size},) or "
                             f"({n.size}, {self.shape[1]})")
        order = np.argsort(n, kind="stable")  # windows nested: each sum extends the shorter one
        n, g = np.ascontiguousarray(n[order]), np.ascontiguousarray(g[order])
        out = np.full((x.shape[0], x.shape[1], self.shape[0]), -np.inf, dtype=np.float32)
        if x.shape[1] == 0 or self.n_runs == 0:
            return out
        chunk = max(1, int(chunk))
        ptr, row, start, length = self._chunked(chunk)
        items = x.shape[0] * (ptr.size - 1)  # (series, chunk of cells)
        _dispatch(_window_ratio_max, x, items, 1, threads, (chunk, ptr, row, start, length, n, g, out))
        return out

    # ------------------------------------------------------------------ internals

    @cached_property
    def _chunk_cache(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        return {}

    def _chunked(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Runs split at the edges of chunks of ``size`` cells: (chunk pointers, row, start, length)."""
        if size in self._chunk_cache:
            return self._chunk_cache[size]
        n_chunks = max(1, -(-self.shape[1] // size))
        first = self.start // size
        last = (self.start + self.length - 1) // size
        pieces = last - first + 1
        idx = np.repeat(np.arange(self.n_runs), pieces)
        k = np.arange(idx.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)  # piece number in its run
        chunk = first[idx] + k
        lo = np.maximum(self.start[idx], chunk * size)
        hi = np.minimum(self.start[idx] + self.length[idx], (chunk + 1) * size)
        order = np.argsort(lo, kind="stable")
        chunk, lo, hi, row = chunk[order], lo[order], hi[order], self.row[idx][order]
        ptr = np.searchsorted(chunk, np.arange(n_chunks + 1)).astype(np.int64)
        self._chunk_cache[size] = (ptr, row, lo, hi - lo)
        return self._chunk_cache[size]

    def _field(self, fields: np.ndarray, lead: tuple[str, ...] = ("fields",)) -> np.ndarray:
        """The fields as a C-contiguous float32 or float64 array ``(*lead, cells)`` on this grid."""
        x = np.asarray(fields)
        if x.ndim != len(lead) + 1 or x.shape[-1] != self.shape[1]:
            raise ValueError(f"field of shape {x.shape}: expected ({', '.join(lead)}, {self.shape[1]}) cells")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        return np.ascontiguousarray(x)

    def _run(self, kernel: nb.core.dispatcher.Dispatcher, x: np.ndarray, out: np.ndarray,
             threads: int | None) -> None:
        if self.n_runs:
            _dispatch(kernel, x, x.shape[0], BLOCK, threads,
                      (self.row, self.start, self.length, self.offset, self.data, out))


def _dispatch(kernel: nb.core.dispatcher.Dispatcher, x: np.ndarray, items: int, unit: int,
              threads: int | None, args: tuple) -> None:
    """Run ``kernel(x, lo, hi, *args)`` over ``[0, items)`` cut into one contiguous piece per thread.

    Pieces are whole multiples of ``unit`` items (the blocks of the kernel)
    except the last; with one piece the kernel runs in the calling thread.
    """
    if items == 0:
        return
    units = -(-items // unit)
    k = max(1, min(threads if threads is not None else default_threads(), units))
    bounds = [min(items, unit * (units * i // k)) for i in range(k + 1)]
    if k == 1:
        kernel(x, 0, items, *args)
        return
    with ThreadPoolExecutor(max_workers=k, thread_name_prefix="ewarn-runs") as pool:
        futures = [pool.submit(kernel, x, lo, hi, *args) for lo, hi in pairwise(bounds) if hi > lo]
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
            e = s + length[i]
            # slices: indices from 0 need no wraparound check, so the loop compiles tight
            w_ = data[offset[i]:offset[i] + length[i]]
            y0, y1, y2, y3 = x0[s:e], x1[s:e], x2[s:e], x3[s:e]
            y4, y5, y6, y7 = x4[s:e], x5[s:e], x6[s:e], x7[s:e]
            for j in range(w_.size):
                w = w_[j]
                a0 += w * y0[j]
                a1 += w * y1[j]
                a2 += w * y2[j]
                a3 += w * y3[j]
                a4 += w * y4[j]
                a5 += w * y5[j]
                a6 += w * y6[j]
                a7 += w * y7[j]
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
            w_ = data[offset[i]:offset[i] + length[i]]
            y = xt[start[i]:start[i] + length[i]]
            for j in range(w_.size):
                a0 += w_[j] * y[j]
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
            y = xt[start[i]:start[i] + length[i]]
            for j in range(y.size):
                v = y[j]
                if v != v:
                    m = v
                    break
                if v > m:
                    m = v
            ot[r] = m


@nb.njit(nogil=True, cache=True)
def _window_ratio_max(x, lo, hi, size, ptr, row, start, length, steps, divisor, out):  # pragma: no cover
    # work items [lo, hi): (series, chunk of `size` cells). Per time step the windows' sums and ratios
    # of the chunk's cells are vectors (the loops over cells are innermost and vectorize); the rows
    # of the last w_max steps of the chunk stay in cache. Runs are split at chunk edges beforehand,
    # so the runs of a chunk are ptr[c]..ptr[c + 1].
    n_cells = x.shape[2]
    n_chunks = ptr.size - 1
    nd = steps.size
    per_cell = divisor.shape[1] > 1
    acc = np.empty(size, dtype=x.dtype)
    best = np.empty(size, dtype=np.float32)
    for item in range(lo, hi):
        m = item // n_chunks
        ch = item % n_chunks
        c0 = ch * size
        nc = min(size, n_cells - c0)
        xm = x[m]
        om = out[m]
        for t in range(x.shape[1]):
            for j in range(nc):
                acc[j] = 0.0
                best[j] = np.nan
            got = 0
            for d in range(nd):
                top = min(steps[d], t + 1)  # partial windows: the steps available
                while got < top:
                    # slices: indices from 0 need no wraparound check, so the loops vectorize
                    xr = xm[t - got, c0:c0 + nc]
                    for j in range(nc):
                        acc[j] += xr[j]
                    got += 1
                if per_cell:
                    gd = divisor[d, c0:c0 + nc]
                    for j in range(nc):
                        r = np.float32(acc[j]) / gd[j]
                        b = best[j]
                        best[j] = r if (r > b or b != b) else b  # numpy.fmax: a NaN gives way to a number
                else:
                    g0 = divisor[d, 0]
                    for j in range(nc):
                        r = np.float32(acc[j]) / g0
                        b = best[j]
                        best[j] = r if (r > b or b != b) else b
            for i in range(ptr[ch], ptr[ch + 1]):
                seg = best[start[i] - c0:start[i] - c0 + length[i]]
                mx = np.float32(-np.inf)
                for j in range(seg.size):
                    v = seg[j]
                    if v > mx or v != v:
                        mx = v
                        if v != v:
                            break
                r_ = row[i]
                cur = om[t, r_]
                if cur == cur and (mx > cur or mx != mx):  # maximum over the row: NaN wins
                    om[t, r_] = mx
