"""From what a file stores to rain per interval.

Forecast files store precipitation in four ways (``accumulation`` of a
:class:`~ewarn.config.SourceProfile`):

``interval``
    the amount that fell in each step (the forecast contract);
``since-start``
    accumulated from the start of the run (ECMWF ``tp``, WRF ``RAINNC``);
``bucket``
    accumulated since the last reset of a bucket (NCEP GFS ``APCP``: 0–3 h,
    0–6 h, 6–9 h, 6–12 h, ...);
``rate``
    a mean rate over the step (GFS ``PRATE``, kg m-2 s-1).

Each is reduced to one rule: a stored value is the amount that fell in its
*window* ``(start, end]`` (hours after the reference time). A rate is first
multiplied by its window length. :func:`plan_intervals` then finds, for each
step, the value to subtract so that consecutive intervals ``(end[i-1],
end[i]]`` remain; and :func:`deaccumulate` does the subtraction for all cells at once
(a difference along time for all cells at once, block by block).

Sources
-------
GFS bucket layout: NCEP GFS pgrb2 inventories (APCP "0-3 hour acc", "0-6 hour
acc", "6-9 hour acc", ...). ECMWF ``tp`` accumulated from the start of the
forecast: ECMWF parameter database, paramId 228.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ewarn.forecasts.errors import ForecastError

#: Two times closer than this [h] are the same time (36 ms).
TIME_TOLERANCE_H = 1e-5


@dataclass(frozen=True)
class IntervalPlan:
    """Which stored value, minus which other one, gives each interval.

    Attributes
    ----------
    index : ndarray of int
        Position (along time) of the stored value ending each interval.
    previous : ndarray of int
        Position of the value to subtract, -1 for none.
    start_h, end_h : ndarray of float
        Interval bounds [h after the reference time].
    """

    index: np.ndarray
    previous: np.ndarray
    start_h: np.ndarray
    end_h: np.ndarray

    @property
    def step_hours(self) -> np.ndarray:
        """Length of each interval [h]."""
        return self.end_h - self.start_h


def window_starts(
    end_h: np.ndarray,
    accumulation: str,
    *,
    file_start_h: np.ndarray | None = None,
    bucket_hours: float = 0.0,
    first_step_h: float | None = None,
    file: str = "",
    variable: str = "",
) -> np.ndarray:
    """Start of the window [h] each stored value covers.

    Parameters
    ----------
    end_h : ndarray
        End of each step [h after the reference time], strictly increasing.
    accumulation : {"interval", "since-start", "bucket", "rate"}
        How the values are stored (module docstring).
    file_start_h : ndarray, optional
        Window starts carried by the file (GRIB ``startStep``, CF time
        bounds), used when they describe the accumulation.
    bucket_hours : float
        Bucket length [h] when the file carries no window start (GFS: 6).
    first_step_h : float, optional
        Length of the first interval [h] (``interval`` and ``rate`` data
        without bounds; default: the second step's length, or from the
        reference time when there is one step).

    Raises
    ------
    ForecastError
        A bucket without a known window.
    """
    end_h = np.asarray(end_h, dtype=float)
    has_windows = file_start_h is not None and bool(np.any(end_h - file_start_h > TIME_TOLERANCE_H))
    if accumulation == "since-start":
        return np.zeros_like(end_h)
    if accumulation == "bucket":
        if has_windows:
            return np.asarray(file_start_h, dtype=float)
        if bucket_hours <= 0:
            raise ForecastError(
                "is a bucket accumulation but the file does not say when each bucket starts; set "
                "bucket_hours (GFS: 6) in the source profile", file=file, variable=variable)
        return np.floor(np.maximum(end_h - TIME_TOLERANCE_H, 0.0) / bucket_hours) * bucket_hours
    if accumulation in ("interval", "rate"):
        if has_windows:
            return np.asarray(file_start_h, dtype=float)
        starts = np.empty_like(end_h)
        starts[1:] = end_h[:-1]
        if first_step_h is None:  # as long as the second step, not before the reference time
            guess = end_h[1] - end_h[0] if end_h.size > 1 else end_h[0]
            starts[:1] = np.maximum(end_h[:1] - guess, 0.0)
        else:
            starts[:1] = end_h[:1] - first_step_h
        return starts
    raise ForecastError(f"unknown accumulation {accumulation!r}; use interval, since-start, bucket "
                        "or rate", file=file, variable=variable)


def plan_intervals(end_h: np.ndarray, start_h: np.ndarray, *, accumulation: str = "",
                   file: str = "", variable: str = "") -> IntervalPlan:
    """Consecutive intervals from windows ``(start_h, end_h]``.

    Steps whose window is empty (``start == end``: step 0 of an accumulation,
    an instantaneous field at the reference time) give no interval. A window
    that starts before the previous interval's end needs the stored value of
    the same window start ending there, which is subtracted.

    Raises
    ------
    ForecastError
        A missing value to subtract (a step missing in the file, or the wrong
        accumulation in the profile), or a gap between windows.
    """
    end_h = np.asarray(end_h, dtype=float)
    start_h = np.asarray(start_h, dtype=float)
    tol = TIME_TOLERANCE_H
    by_window = {(round(s, 4), round(e, 4)): k for k, (s, e) in enumerate(zip(start_h, end_h, strict=True))}
    index: list[int] = []
    previous: list[int] = []
    starts: list[float] = []
    ends: list[float] = []
    last: float | None = None
    for i, (s, e) in enumerate(zip(start_h, end_h, strict=True)):
        if e - s <= tol:
            if s - e > tol:
                raise ForecastError(f"the step ending at +{e:g} h starts after it (+{s:g} h); the file's "
                                    "time axis is broken", file=file, variable=variable)
            continue
        if last is None or s >= last - tol:
            if last is not None and s > last + tol:
                raise ForecastError(
                    f"no rain is given between +{last:g} h and +{s:g} h (the step ending at +{e:g} h "
                    "covers only its own window); the file is missing steps: ingest a complete "
                    "forecast", file=file, variable=variable)
            index.append(i)
            previous.append(-1)
            starts.append(s if last is None else last)
        else:
            k = by_window.get((round(s, 4), round(last, 4)))
            if k is None:
                raise ForecastError(
                    f"cannot de-accumulate the step ending at +{e:g} h: it accumulates from +{s:g} h "
                    f"and the file has no value from +{s:g} h to +{last:g} h to subtract; the file is "
                    f"missing a step, or the profile's accumulation ({accumulation or '?'}) is wrong "
                    "for this source", file=file, variable=variable)
            index.append(i)
            previous.append(k)
            starts.append(last)
        ends.append(e)
        last = e
    if not index:
        raise ForecastError("has no step with rain over a time interval (only step 0?); ingest a "
                            "forecast with at least one step after the reference time",
                            file=file, variable=variable)
    return IntervalPlan(np.asarray(index), np.asarray(previous), np.asarray(starts), np.asarray(ends))


def _run(idx: np.ndarray) -> slice | None:
    """``idx`` as a slice when it is a run of consecutive positions, else None."""
    if idx.size and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return None


def _kernel(a: np.ndarray, *, axis: int, index: np.ndarray, previous: np.ndarray,
            factor: np.ndarray | float, tolerance: float, out: np.ndarray | None = None) -> np.ndarray:
    """One block: (stored[index] − stored[previous]) × factor, tiny negatives to 0, float32.

    Runs of consecutive steps (the usual case) are read as views and
    differenced straight into ``out``; every later step is in place, so a
    block that fits in the CPU cache is read from memory once.
    """
    n = index.size
    lead = (slice(None),) * axis
    f = np.asarray(factor, dtype="float64")
    if out is None:
        shape = list(a.shape)
        shape[axis] = n
        out = np.empty(shape, dtype=np.float32)
    if f.ndim:  # a factor per stored value (rates × their window): scale first, then difference
        shp = [1] * a.ndim
        shp[axis] = -1
        a = a * f.reshape(shp)
    sub = np.flatnonzero(previous >= 0)
    plain = np.flatnonzero(previous < 0)
    if plain.size:
        out[(*lead, plain)] = np.take(a, index[plain], axis=axis)
    if sub.size:
        rows, cur, prv = _run(sub), _run(index[sub]), _run(previous[sub])
        if rows is not None and cur is not None and prv is not None:
            np.subtract(a[(*lead, cur)], a[(*lead, prv)], out=out[(*lead, rows)], casting="same_kind")
        else:
            out[(*lead, sub)] = np.take(a, index[sub], axis=axis) - np.take(a, previous[sub], axis=axis)
    if not f.ndim and f != 1.0:
        np.multiply(out, float(f), out=out)  # a Python float keeps float32 arithmetic (NEP 50)
    _clip_tiny_negatives(out, tolerance)
    return out


def _kernel_in_place(b: np.ndarray, *, axis: int, index: np.ndarray, previous: np.ndarray,
                     factor: np.ndarray | float, tolerance: float) -> None:
    """:func:`_kernel` in place, for plans whose subtrahend is always the stored step before.

    ``b`` holds every stored step along ``axis``; afterwards ``b[index]`` is the
    result (``index`` a run of positions).
    """
    lead = (slice(None),) * axis
    f = np.asarray(factor, dtype="float64")
    if f.ndim:
        shape = [1] * b.ndim
        shape[axis] = -1
        np.multiply(b, f.reshape(shape), out=b, casting="same_kind")
    pos = index[previous >= 0]
    if pos.size:
        run = _run(pos)
        if run is not None:  # numpy buffers overlapping operands: b[k] − b[k−1] uses old values
            before = slice(run.start - 1, run.stop - 1)
            np.subtract(b[(*lead, run)], b[(*lead, before)], out=b[(*lead, run)])
        else:
            b[(*lead, pos)] = b[(*lead, pos)] - b[(*lead, pos - 1)]
    if not f.ndim and f != 1.0:
        np.multiply(b, float(f), out=b, casting="same_kind")
    _clip_tiny_negatives(b[(*lead, slice(int(index[0]), int(index[-1]) + 1))], tolerance)


def _clip_tiny_negatives(out: np.ndarray, tolerance: float) -> None:
    """In place: values in [−tolerance, 0) become 0; NaN and larger negatives stay."""
    low = np.fmin.reduce(out, axis=None) if out.size else 0.0  # ignores NaN
    if not low < 0:  # nothing negative (or all NaN)
        return
    if low >= -tolerance:  # every negative is tiny: one vectorised pass (NaN propagates)
        np.maximum(out, 0, out=out)
    else:  # some are too large to be noise: keep them for validation to refuse
        np.copyto(out, 0, where=(out < 0) & (out >= -tolerance))


#: Target size of a block of work [bytes]: small enough for the CPU cache to matter.
BLOCK_BYTES = 4 * 2**20
#: Inputs up to this size [bytes] are read and processed at once (numpy, in cache-sized
#: blocks into one output); larger ones stay lazy (dask, block by block).
EAGER_BYTES = 1024 * 2**20


def _has_dask() -> bool:
    try:
        import dask  # noqa: F401
    except ImportError:  # pragma: no cover - dask is an optional extra
        return False
    return True


def _block_chunks(shape: tuple[int, ...], axis: int, itemsize: int) -> list[int]:
    """Block sizes per dimension: ``axis`` whole, trailing dims whole while they fit."""
    budget = max(1, BLOCK_BYTES // max(itemsize * shape[axis], 1))
    sizes = list(shape)
    for i in reversed([i for i in range(len(shape)) if i != axis]):
        sizes[i] = min(shape[i], budget)
        budget = max(1, budget // max(shape[i], 1))
    return sizes


def deaccumulate(values: xr.DataArray, plan: IntervalPlan, *, factor: np.ndarray | float = 1.0,
                 tolerance_mm: float = 0.0, dim: str = "time") -> xr.DataArray:
    """Rain per interval [mm] from stored values, in one pass per block.

    ``out = (stored[index] − stored[previous]) × factor`` along ``dim`` (the
    previous term only where the plan has one), then negatives down to
    ``-tolerance_mm`` set to 0 (larger ones are kept for validation to
    refuse), as float32. Inputs up to :data:`EAGER_BYTES` are read at once and
    processed in cache-sized blocks into one output; larger dask inputs stay
    lazy and are processed block by block (``dim`` in one chunk).

    Parameters
    ----------
    values : DataArray
        Stored values along ``dim`` (positional; coordinates along ``dim`` are
        dropped).
    plan : IntervalPlan
    factor : float or ndarray
        Conversion to mm: a scalar, or one factor per stored value (rate ×
        window length).
    tolerance_mm : float
        Negatives this small are set to 0 [mm].
    """
    axis = values.get_axis_num(dim)
    kwargs = {"axis": axis, "index": plan.index, "previous": plan.previous, "factor": factor,
              "tolerance": tolerance_mm}
    blocks = _block_chunks(values.shape, axis, values.dtype.itemsize)
    if values.chunks is None and values.nbytes > EAGER_BYTES and _has_dask():
        values = values.chunk(dict(zip(values.dims, blocks, strict=True)))  # too big: stay lazy
    if values.chunks is not None:  # dask (``.data`` of a lazy backend array would read it all)
        data = values.data.rechunk({i: (-1 if i == axis else max(b, 1)) for i, b in enumerate(blocks)})
        out_chunks = tuple((len(plan.index),) if i == axis else c for i, c in enumerate(data.chunks))
        out = data.map_blocks(_kernel, dtype=np.float32, chunks=out_chunks, **kwargs)
    else:
        var = values.variable  # index the variable: no coordinates to carry per block
        starts = [range(0, values.shape[i], max(blocks[i], 1)) if i != axis else [0]
                  for i in range(values.ndim)]
        # blocks of work along the other dimensions (never single cells), each about BLOCK_BYTES
        pieces = [tuple(slice(None) if i == axis else slice(starts[i][k], starts[i][k] + blocks[i])
                        for i, k in enumerate(corner))
                  for corner in np.ndindex(*[len(r) for r in starts])]
        run = _run(plan.index)
        linked = plan.previous >= 0
        adjacent = bool(np.all(plan.previous[linked] == plan.index[linked] - 1))
        if not getattr(var, "_in_memory", True) and run is not None and adjacent:
            # read from the file once, like a plain load, then difference that fresh array in
            # place, block by block while each block is in the CPU cache
            whole = np.array(var[(slice(None),) * var.ndim].values, copy=None)
            if not whole.flags.writeable:
                whole = whole.copy()
            for sl in pieces:
                _kernel_in_place(whole[sl], **kwargs)
            out = whole[(slice(None),) * axis + (run,)]
            if out.dtype != np.float32:
                out = out.astype(np.float32)
        else:  # data in memory (the caller's: not modified) or an irregular plan
            shape = list(values.shape)
            shape[axis] = len(plan.index)
            out = np.empty(shape, dtype=np.float32)
            for sl in pieces:
                _kernel(np.asarray(var[sl].values), out=out[sl], **kwargs)
    coords = {k: v for k, v in values.coords.items() if dim not in v.dims}
    return xr.DataArray(out, dims=values.dims, coords=coords, attrs=values.attrs, name=values.name)


def resample_intervals(amounts: xr.DataArray, start_h: np.ndarray, end_h: np.ndarray, hours: float,
                       *, dim: str = "time", file: str = "", variable: str = ""
                       ) -> tuple[xr.DataArray, np.ndarray, np.ndarray]:
    """Sum consecutive intervals into fixed windows of ``hours``.

    Windows are ``((k-1) hours, k hours]`` after the reference time; each must
    be tiled exactly by native intervals (no native interval may straddle a
    window edge, and the first and last windows must be complete).

    Returns
    -------
    (DataArray, ndarray, ndarray)
        The sums along ``dim`` and the new interval starts and ends [h].

    Raises
    ------
    ForecastError
        The native steps do not tile the windows.
    """
    group = np.ceil(end_h / hours - TIME_TOLERANCE_H).astype(int)
    pieces = []
    new_start: list[float] = []
    new_end: list[float] = []
    for g in np.unique(group):
        pos = np.flatnonzero(group == g)
        lo, hi = (g - 1) * hours, g * hours
        if abs(start_h[pos[0]] - lo) > TIME_TOLERANCE_H or abs(end_h[pos[-1]] - hi) > TIME_TOLERANCE_H:
            raise ForecastError(
                f"cannot resample to {hours:g}-hour intervals: the native steps from "
                f"+{start_h[pos[0]]:g} h to +{end_h[pos[-1]]:g} h do not fill the window +{lo:g}..+{hi:g} h; "
                "choose resample_hours that is a multiple of every native step, or 0 to keep them",
                file=file, variable=variable)
        pieces.append(amounts.isel({dim: slice(pos[0], pos[-1] + 1)}).sum(dim, skipna=False))
        new_start.append(lo)
        new_end.append(hi)
    return xr.concat(pieces, dim=dim), np.asarray(new_start), np.asarray(new_end)
