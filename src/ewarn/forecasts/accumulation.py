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
end[i]]`` remain; :func:`apply_plan` does the subtraction for all cells at once
(one gather along time, no loop over cells).

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


def apply_plan(amounts: xr.DataArray, plan: IntervalPlan, dim: str = "time") -> xr.DataArray:
    """Rain per interval: stored value minus the planned previous one.

    Parameters
    ----------
    amounts : DataArray
        Window amounts [mm] along ``dim`` (positional; coordinates along
        ``dim`` are dropped).
    plan : IntervalPlan

    Returns
    -------
    DataArray
        One entry per interval along ``dim``, no coordinate on ``dim``.
    """
    amounts = amounts.drop_vars([c for c in amounts.coords if dim in amounts[c].dims])
    cur = amounts.isel({dim: plan.index})
    subtract = plan.previous >= 0
    if subtract.any():
        prev = amounts.isel({dim: np.where(subtract, plan.previous, plan.index)})
        cur = cur - prev.where(xr.DataArray(subtract, dims=dim), 0)
    return cur


def clip_small_negatives(amounts: xr.DataArray, tolerance_mm: float) -> xr.DataArray:
    """Set negatives down to ``-tolerance_mm`` to 0 (differencing of packed values).

    Larger negatives are kept, for validation to refuse; NaN stays NaN.
    """
    small = (amounts < 0) & (amounts >= -tolerance_mm)
    return amounts.where(~small, 0)


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
