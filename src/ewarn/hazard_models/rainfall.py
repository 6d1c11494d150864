"""Rainfall accumulations and antecedent-rain indices.

Pure functions over the forecast contract (DESIGN.md "Forecast"): an
``xarray.DataArray`` of precipitation [mm per interval] with dims
``(member?, time, latitude, longitude)`` in any order, ``time`` = interval END
in UTC, regular steps. Every function works unchanged on numpy- and
dask-backed arrays; none loops over grid cells or members in Python.

Functions
---------
:func:`accumulations`
    trailing running sums over windows of 1, 3, 6, ... 72 h.
:func:`max_accumulation`, :func:`peak_time`, :func:`first_exceedance`
    per-cell summaries of the accumulations over the forecast.
:func:`daily_totals`, :func:`hydromet_daily_totals`
    daily totals on a UTC, local or Vietnamese hydro-met day.
:func:`antecedent_rainfall_index`
    LHASA v1 7-day weighted antecedent rainfall (Kirschbaum & Stanley 2018).
:func:`antecedent_precipitation_index`
    classic API with recession constant k (Kohler & Linsley 1951).
:func:`rain_days`
    consecutive rain days, the "days it has already rained" of Decision 18/2021.

Numbers that are not definitions (k, the rain-day threshold, the hydro-met
day) come from ``tables/rainfall.toml`` (:func:`rainfall_parameters`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial as partial_fn
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ewarn.errors import EwarnError, Problem
from ewarn.hazard_models.tables import (
    TABLES_DIR,
    TableReader,
    load_cached,
    raise_if_problems,
)

__all__ = [
    "ARI_WEIGHTS",
    "DEFAULT_WINDOWS_H",
    "RainfallInputError",
    "RainfallParameters",
    "accumulations",
    "antecedent_precipitation_index",
    "antecedent_rainfall_index",
    "daily_totals",
    "first_exceedance",
    "hydromet_daily_totals",
    "max_accumulation",
    "peak_time",
    "rain_days",
    "rainfall_parameters",
    "window_steps",
]

#: Accumulation windows [h] computed by default.
DEFAULT_WINDOWS_H: tuple[int, ...] = (1, 3, 6, 12, 24, 48, 72)

#: LHASA v1 antecedent rainfall weights w_i = 1/(i+1)**2, i = 0..6 days back
#: (Kirschbaum & Stanley 2018; SCIENCE.md §3 [confirmed]).
ARI_WEIGHTS: np.ndarray = 1.0 / (np.arange(7) + 1.0) ** 2

RAINFALL_TABLE = TABLES_DIR / "rainfall.toml"


class RainfallInputError(EwarnError):
    """Rainfall input these functions cannot use (no time axis, irregular steps, bad parameter)."""


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class RainfallParameters:
    """Recalibratable parameters of the rainfall indices (``tables/rainfall.toml``).

    Attributes
    ----------
    api_k : float
        Recession constant k of the antecedent precipitation index [-].
    rain_day_threshold_mm : float
        Daily total that makes a day a rain day [mm].
    hydromet_tz : str
        Time zone of Vietnam's hydro-met day (``Asia/Ho_Chi_Minh``).
    hydromet_day_end_hour : int
        Local hour at which the hydro-met day ends (19 = 19:00).
    path : pathlib.Path
        The file the values were read from.
    """

    api_k: float
    rain_day_threshold_mm: float
    hydromet_tz: str
    hydromet_day_end_hour: int
    path: Path


def rainfall_parameters(path: Path | str | None = None) -> RainfallParameters:
    """Read and check the rainfall parameters table.

    Parameters
    ----------
    path : path-like, optional
        A recalibrated copy of ``tables/rainfall.toml``; default: the shipped file.

    Returns
    -------
    RainfallParameters
        Cached per file and modification time.

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Naming the file, the section and the field of every problem.
    """
    return load_cached(_parse_rainfall_table, path, RAINFALL_TABLE)


def _parse_rainfall_table(path: Path) -> RainfallParameters:
    t = TableReader(path)
    file, problems = t.file, t.problems
    section = t.section
    number = t.number
    api = section("antecedent_precipitation_index")
    k = number(api, "antecedent_precipitation_index", "k", 0.0, 1.0, closed=False) if api else np.nan
    rd = section("rain_day")
    thr = number(rd, "rain_day", "threshold_mm", 0.0, 1000.0, closed=True) if rd else np.nan
    hd = section("hydromet_day")
    tz = hd.get("tz", "")
    if hd:
        try:
            pd.Timestamp("2000-01-01", tz=tz)
        except Exception:
            problems.append(Problem(file, f"is {tz!r}; must be an IANA time zone such as "
                                    "'Asia/Ho_Chi_Minh'", "[hydromet_day]", "tz"))
    hour = hd.get("day_end_hour")
    if hd and not (isinstance(hour, int) and not isinstance(hour, bool) and 0 <= hour <= 23):
        problems.append(Problem(file, f"is {hour!r}; must be a whole hour 0..23", "[hydromet_day]",
                                "day_end_hour"))
    raise_if_problems(problems, file)
    return RainfallParameters(api_k=k, rain_day_threshold_mm=thr, hydromet_tz=str(tz),
                              hydromet_day_end_hour=int(hour), path=path)


# --------------------------------------------------------------------------- input checks


def _as_precip(precip: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """The precipitation DataArray, with the Dataset's attrs (step_hours, ...) when given a Dataset."""
    if isinstance(precip, xr.Dataset):
        if "precipitation" not in precip.data_vars:
            raise RainfallInputError(
                f"the forecast dataset has no 'precipitation' variable (variables: "
                f"{', '.join(map(str, precip.data_vars)) or 'none'}); normalize it with ewarn.forecasts "
                "first")
        da = precip["precipitation"]
        return da.assign_attrs({**precip.attrs, **da.attrs})
    if not isinstance(precip, xr.DataArray):
        raise RainfallInputError(
            f"expected an xarray DataArray of precipitation, got {type(precip).__name__}")
    return precip


def _time_index(da: xr.DataArray, what: str) -> pd.DatetimeIndex:
    if "time" not in da.dims:
        raise RainfallInputError(
            f"{what} has no 'time' dimension (dims: {', '.join(map(str, da.dims))}); pass an array with "
            "dims (member?, time, latitude, longitude) as ewarn.forecasts produces")
    idx = da.indexes.get("time")
    if not isinstance(idx, pd.DatetimeIndex):
        raise RainfallInputError(f"{what}: the 'time' coordinate must hold datetimes (UTC), got "
                                 f"{type(idx).__name__ if idx is not None else 'no coordinate'}")
    if idx.hasnans:
        raise RainfallInputError(f"{what}: the 'time' coordinate has missing values (NaT); drop them first")
    return idx


def _step_hours(da: xr.DataArray, step_hours: float | None) -> float:
    """Step [h] of a regular time axis: from the coordinate, checked against the argument and attrs."""
    idx = _time_index(da, "precipitation")
    from_coord = None
    if len(idx) >= 2:
        d = np.diff(idx.as_unit("ns").asi8) / 3.6e12
        if np.any(d <= 0):
            i = int(np.argmax(d <= 0))
            raise RainfallInputError(
                f"precipitation: times must increase; {idx[i + 1]} follows {idx[i]}; sort by time "
                "(da.sortby('time')) and drop duplicates")
        if not np.allclose(d, d[0], rtol=0, atol=1e-9):
            i = int(np.argmax(~np.isclose(d, d[0], rtol=0, atol=1e-9)))
            raise RainfallInputError(
                f"precipitation: time steps are irregular ({d[0]:g} h, then {d[i]:g} h ending at "
                f"{idx[i + 1]}); accumulations need a regular step: resample or fill the gap first")
        from_coord = float(d[0])
    for given, origin in ((step_hours, "step_hours argument"), (da.attrs.get("step_hours"), "attribute")):
        if given is None:
            continue
        try:
            g = float(given)
        except (TypeError, ValueError):
            raise RainfallInputError(
                f"precipitation: {origin} step_hours={given!r} is not a number") from None
        if not g > 0:
            raise RainfallInputError(f"precipitation: {origin} step_hours={given!r} must be > 0")
        if from_coord is None:
            return g
        if not np.isclose(g, from_coord, rtol=0, atol=1e-9):
            raise RainfallInputError(
                f"precipitation: {origin} step_hours={g:g} disagrees with the time coordinate "
                f"({from_coord:g} h between times); fix the attribute or the argument")
    if from_coord is None:
        raise RainfallInputError("precipitation has a single time step and no 'step_hours' attribute; "
                                 "pass step_hours= (the interval length in hours)")
    return from_coord


def _check_daily(daily: xr.DataArray, what: str) -> None:
    if not isinstance(daily, xr.DataArray):
        raise RainfallInputError(f"{what}: expected an xarray DataArray of daily totals, got "
                                 f"{type(daily).__name__}")
    idx = _time_index(daily, what)
    if len(idx) >= 2:
        d = np.diff(idx.as_unit("ns").asi8)
        day = 86_400 * 10**9
        if np.any(d != day):
            i = int(np.argmax(d != day))
            raise RainfallInputError(
                f"{what}: expects daily totals one day apart; {idx[i]} is followed by {idx[i + 1]}; "
                "make them with daily_totals() and keep every day (fill missing days with NaN)")


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


# --------------------------------------------------------------------------- accumulations


def _plan(steps: Sequence[int]) -> list[tuple[int, tuple[int, ...]]]:
    """Order in which window sums are composed from shorter ones.

    Each entry ``(n, parts)`` builds the ``n``-step sum as
    ``S_n(t) = S_p0(t) + S_p1(t - p0) + S_p2(t - p0 - p1) + ...`` from windows
    already built (``1`` is the input itself). Parts are chosen greedily,
    largest first; a window that would need more than 3 parts first gets a
    helper window of ``n // 2`` steps (doubling), so any window costs
    O(log n) array passes and no subtraction is ever done.
    """
    avail = {1}
    plan: list[tuple[int, tuple[int, ...]]] = []

    def greedy(n: int) -> tuple[int, ...]:
        parts, rem = [], n
        while rem:
            v = max(a for a in avail if a <= rem)
            parts.append(v)
            rem -= v
        return tuple(parts)

    def build(n: int) -> None:
        if n in avail:
            return
        parts = greedy(n)
        if len(parts) > 3:
            build(n // 2)
            parts = greedy(n)
        plan.append((n, parts))
        avail.add(n)

    for n in sorted(set(steps)):
        build(n)
    return plan


def _compose(x: np.ndarray, steps: Sequence[int], out: np.ndarray) -> None:
    """Fill ``out[i]`` with the trailing ``steps[i]``-step sums of ``x`` along axis 0 (time first).

    ``out`` is preallocated ``(len(steps),) + x.shape``; every sum is written in
    place with ``np.add(..., out=)`` from the input and shorter windows.
    Leading times whose window reaches before the first step hold the sum of
    the steps available (partial windows).
    """
    T = x.shape[0]
    slot = {n: i for i, n in enumerate(steps)}
    sums: dict[int, np.ndarray] = {1: x}
    for n, parts in _plan(steps):
        dst = out[slot[n]] if n in slot else np.empty_like(x)
        first, off = sums[parts[0]], parts[0]
        np.copyto(dst[: min(off, T)], first[: min(off, T)])
        if off < T:
            # dst[t] = S_p0(t) + S_p1(t - p0) for t >= p0, then + S_p2(t - p0 - p1) ...
            np.add(first[off:], sums[parts[1]][: T - off], out=dst[off:])
            off += parts[1]
            for p in parts[2:]:
                if off >= T:
                    break
                np.add(dst[off:], sums[p][: T - off], out=dst[off:])
                off += p
        sums[n] = dst
    if 1 in slot:
        np.copyto(out[slot[1]], x)


def _window_sums(x: np.ndarray, axis: int, steps: tuple[int, ...], skipna: bool, partial: bool) -> np.ndarray:
    """All window sums of ``x`` along ``axis``: array ``(len(steps),) + x.shape``."""
    dtype = np.result_type(x.dtype, np.float32)
    xt = np.moveaxis(np.asarray(x), axis, 0).astype(dtype, copy=False)
    out = np.empty((len(steps), *xt.shape), dtype=dtype)
    nan = np.isnan(xt) if skipna else None
    if nan is not None and nan.any():
        _compose(np.where(nan, dtype.type(0), xt), steps, out)
        counts = np.empty((len(steps), *xt.shape), dtype=np.int32)
        _compose((~nan).astype(np.int32), steps, counts)
        out[counts == 0] = np.nan
        del counts
    else:
        _compose(xt, steps, out)
    if not partial:
        for i, n in enumerate(steps):
            out[i, : n - 1] = np.nan
    return np.moveaxis(out, 1, axis + 1)


def window_steps(windows_h: Sequence[float], step_hours: float
                 ) -> tuple[list[tuple[float, int]], list[float]]:
    """The windows that are whole multiples of the step, as ``(hours, steps)``, and those skipped.

    Parameters
    ----------
    windows_h : sequence of float
        Window lengths [h].
    step_hours : float
        Interval length [h].

    Returns
    -------
    windows : list of (float, int)
        ``(w, w / step)`` for each window that is a whole multiple (≥ 1) of
        the step, in the given order, the first of equal step counts kept.
    skipped : list of float
        The other windows [h].
    """
    windows: list[tuple[float, int]] = []
    skipped: list[float] = []
    for w in windows_h:  # a handful of windows
        n = float(w) / step_hours
        if n >= 1 - 1e-9 and abs(n - round(n)) < 1e-9:
            if round(n) not in [m for _, m in windows]:
                windows.append((float(w), round(n)))
        else:
            skipped.append(float(w))
    return windows, skipped


def accumulations(
    precip: xr.DataArray | xr.Dataset,
    windows_h: Sequence[float] = DEFAULT_WINDOWS_H,
    step_hours: float | None = None,
    *,
    skipna: bool = False,
    partial: bool = True,
) -> xr.Dataset:
    """Trailing rainfall totals over several windows.

    ``rain_{w}h(t)`` is the rain in the ``w`` hours ending at ``t`` (the time
    coordinate is the END of each window, like the forecast's intervals):
    ``R_w(t) = sum_{j=0}^{n-1} P(t - j*s)`` with step ``s`` [h] and ``n = w/s``.

    Parameters
    ----------
    precip : xarray.DataArray or xarray.Dataset
        Precipitation [mm per interval] with a ``time`` dim (any position;
        ``member`` and spatial dims broadcast), numpy or dask backed. A
        forecast Dataset is accepted (its ``precipitation`` variable).
    windows_h : sequence of float
        Window lengths [h]. A window that is not a whole multiple of the step
        (or shorter than it) is skipped and listed in the ``skipped_windows_h``
        attribute.
    step_hours : float, optional
        Interval length [h]; default: from the time coordinate, checked
        against the ``step_hours`` attribute.
    skipna : bool
        False (default): a window holding a missing (NaN) step is NaN — the
        total is unknown. True: missing steps count as 0 mm; a window with no
        valid step is NaN.
    partial : bool
        True (default): the first ``n - 1`` times, whose window reaches back
        before the first forecast step, hold the rain of the steps available
        (a lower bound: rain before the forecast is not in it). False: NaN.

    Returns
    -------
    xarray.Dataset
        Variables ``rain_{w}h`` [mm] with the input's dims, coords and dtype
        (float32 stays float32). Attributes: ``step_hours``, ``windows_h``,
        ``skipped_windows_h``, plus ``forecast_reference_time`` and ``source``
        when the input has them.

    Raises
    ------
    RainfallInputError
        No ``time`` dim, irregular or decreasing times, or a step that
        disagrees with the ``step_hours`` attribute.

    Notes
    -----
    Memory and speed: the output is preallocated once and every window is
    built in place (``np.add(..., out=)``) from the input and shorter windows
    already built — 3 h = 1+1+1 steps, 6 = 3+3, 12 = 6+6, 24 = 12+12,
    48 = 24+24, 72 = 48+24 — so the default seven windows cost nine passes
    over the array, with no per-window ``cumsum`` temporaries. Because nothing
    is subtracted (unlike a running sum that adds the new slab and subtracts
    the one leaving the window), a window without rain is exactly 0 mm and
    float32 sums carry no drift. Dask arrays are rechunked whole along
    ``time`` and processed block by block (``map_blocks``).
    """
    da = _as_precip(precip)
    step = _step_hours(da, step_hours)
    windows, skipped = window_steps(windows_h, step)
    if not windows:
        raise RainfallInputError(
            f"none of the windows {list(windows_h)} h is a whole multiple of the {step:g} h step; "
            "choose windows that are")
    steps = tuple(n for _, n in windows)
    axis = da.get_axis_num("time")
    data = da.data
    dtype = np.result_type(da.dtype, np.float32)
    if _is_dask(data):
        data = data.rechunk({axis: -1})
        stacked = data.map_blocks(
            partial_fn(_window_sums, axis=axis, steps=steps, skipna=skipna, partial=partial), new_axis=0,
            chunks=((len(steps),), *data.chunks), dtype=dtype,
            meta=np.empty((0,) * (data.ndim + 1), dtype=dtype))
    else:
        stacked = _window_sums(np.asarray(data), axis, steps, skipna, partial)
    attrs: dict[str, Any] = {
        k: da.attrs[k] for k in ("forecast_reference_time", "source") if k in da.attrs}
    attrs.update(
        step_hours=step,
        windows_h=[_h(w) for w, _ in windows],
        skipped_windows_h=[_h(w) for w in skipped],
        comment=("trailing rainfall totals; time is the END of each window. "
                 + (f"Windows {', '.join(f'{_h(w)} h' for w in skipped)} skipped: not a whole multiple "
                    f"of the {step:g} h step. " if skipped else "")
                 + ("The first times of each window hold the rain of the forecast steps available "
                    "(rain before the forecast start is not counted)."
                    if partial else "Windows reaching before the first step are NaN.")),
    )
    out = xr.Dataset(attrs=attrs)
    for i, (w, n) in enumerate(windows):
        name = f"rain_{_h(w)}h"
        out[name] = xr.DataArray(stacked[i], dims=da.dims, coords=da.coords).assign_attrs(
            units="mm",
            standard_name="lwe_thickness_of_precipitation_amount",
            long_name=f"rainfall in the {_h(w)} h ending at time",
            cell_methods="time: sum",
            window_hours=_h(w),
            window_steps=n,
        )
    return out


def _h(w: float) -> int | float:
    """Window length as a tidy number for names and attributes (24.0 -> 24)."""
    return int(w) if float(w).is_integer() else float(w)


# --------------------------------------------------------------------------- summaries


def _per_variable(acc: xr.Dataset | xr.DataArray, fn: Any) -> xr.Dataset | xr.DataArray:
    if isinstance(acc, xr.DataArray):
        return fn(acc, acc.name)
    if not isinstance(acc, xr.Dataset):
        raise RainfallInputError(f"expected accumulations (xarray Dataset or DataArray), got "
                                 f"{type(acc).__name__}")
    return xr.Dataset({k: fn(v, k) for k, v in acc.data_vars.items() if "time" in v.dims},
                      attrs=dict(acc.attrs))


def _index_to_time(idx: xr.DataArray, valid: xr.DataArray, times: np.ndarray) -> xr.DataArray:
    """Map time indices to datetimes (NaT where not valid), lazily for dask."""
    nat = np.array("NaT", dtype=times.dtype)

    def pick(i: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return np.where(ok, times[i], nat)

    return xr.apply_ufunc(pick, idx, valid, dask="parallelized", output_dtypes=[times.dtype])


def max_accumulation(acc: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Largest accumulation of each window over the forecast, per cell (and member).

    Parameters
    ----------
    acc : xarray.Dataset or xarray.DataArray
        Output of :func:`accumulations` (or one of its variables) [mm].

    Returns
    -------
    Same type without the ``time`` dim [mm]; NaN where every time is NaN.
    """

    def one(a: xr.DataArray, name: Hashable) -> xr.DataArray:
        _time_index(a, str(name))
        return a.max("time", skipna=True, keep_attrs=True).assign_attrs(
            cell_methods="time: sum time: maximum",
            long_name=f"largest {a.attrs.get('long_name', name)} over the forecast")

    return _per_variable(acc, one)


def peak_time(acc: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Time [UTC] at which each window's accumulation peaks (window end; first on ties).

    Parameters
    ----------
    acc : xarray.Dataset or xarray.DataArray
        Output of :func:`accumulations` [mm].

    Returns
    -------
    Same type without ``time``: datetime64, NaT where every time is NaN.
    """

    def one(a: xr.DataArray, name: Hashable) -> xr.DataArray:
        times = _time_index(a, str(name)).values
        valid = a.notnull().any("time")
        idx = a.fillna(-np.inf).argmax("time")
        return _index_to_time(idx, valid, times).assign_attrs(
            long_name=f"time of the largest {a.attrs.get('long_name', name)} (window end, UTC)")

    return _per_variable(acc, one)


def first_exceedance(
    acc: xr.Dataset | xr.DataArray,
    threshold: float | xr.DataArray | Mapping[Hashable, float | xr.DataArray],
) -> xr.Dataset | xr.DataArray:
    """First time [UTC] at which an accumulation reaches a threshold.

    Parameters
    ----------
    acc : xarray.Dataset or xarray.DataArray
        Output of :func:`accumulations` [mm].
    threshold : float, xarray.DataArray or mapping
        Threshold [mm]: one number for every variable, an array broadcast
        against the accumulation (e.g. a flash-flood guidance per cell), or a
        mapping from variable name to either (variables not in the mapping
        are left out).

    Returns
    -------
    Same type without ``time``: the first window END time with
    ``acc >= threshold``, datetime64; NaT where never reached (NaN never
    reaches).
    """

    def one(a: xr.DataArray, name: Hashable) -> xr.DataArray:
        thr = threshold[name] if isinstance(threshold, Mapping) else threshold
        times = _time_index(a, str(name)).values
        hit = a >= thr
        return _index_to_time(hit.argmax("time"), hit.any("time"), times).assign_attrs(
            long_name=f"first time {a.attrs.get('long_name', name)} reaches the threshold (UTC)")

    if isinstance(threshold, Mapping) and isinstance(acc, xr.Dataset):
        missing = [k for k in threshold if k not in acc.data_vars]
        if missing:
            raise RainfallInputError(f"thresholds given for {missing}, which are not in the accumulations "
                                     f"({', '.join(map(str, acc.data_vars))})")
        acc = acc[list(threshold)]
    return _per_variable(acc, one)


# --------------------------------------------------------------------------- daily indices


def daily_totals(
    precip: xr.DataArray | xr.Dataset,
    tz: str = "UTC",
    day_end_hour: int = 0,
    step_hours: float | None = None,
    *,
    skipna: bool = False,
) -> xr.DataArray:
    """Daily rainfall totals on a chosen day boundary.

    A day ends at ``day_end_hour``:00 local time in ``tz``; each interval is
    given to the day in which it ends. The default is the UTC day (00-00 UTC),
    the day of satellite products such as IMERG and hence of LHASA. Vietnam's
    hydro-met day (19:00-19:00 Asia/Ho_Chi_Minh) is
    :func:`hydromet_daily_totals`; the civil local day is
    ``tz="Asia/Ho_Chi_Minh", day_end_hour=0``.

    Parameters
    ----------
    precip : xarray.DataArray or xarray.Dataset
        Precipitation [mm per interval], regular steps, ``time`` = interval end (UTC).
    tz : str
        IANA time zone of the day boundary.
    day_end_hour : int
        Local hour (0..23) at which each day ends.
    step_hours : float, optional
        Interval length [h]; default from the time coordinate.
    skipna : bool
        False (default): a day with a missing step is NaN. True: missing steps
        count as 0; a day with no valid step is NaN.

    Returns
    -------
    xarray.DataArray
        Daily totals [mm]; ``time`` = END of each day in UTC (naive
        datetime64, like the forecast); coordinate ``hours`` = hours of the day
        the input covers (less than 24 for a day the forecast only partly
        covers: its total is then a lower bound).

    Raises
    ------
    RainfallInputError
        When an interval straddles a day boundary (e.g. 6-hourly steps ending
        at 00/06/12/18 UTC cannot be split at 17:00 UTC, the local midnight):
        choose ``day_end_hour`` so that the boundary falls on a step end.
    """
    da = _as_precip(precip)
    step = _step_hours(da, step_hours)
    if not (isinstance(day_end_hour, int | np.integer) and 0 <= day_end_hour <= 23):
        raise RainfallInputError(f"day_end_hour={day_end_hour!r}: must be a whole hour 0..23")
    try:
        ends = _time_index(da, "precipitation").tz_localize("UTC").tz_convert(tz)
    except Exception as exc:  # pytz/zoneinfo raise various types for unknown zones
        raise RainfallInputError(f"tz={tz!r} is not a known time zone ({exc}); use an IANA name such as "
                                 "'Asia/Ho_Chi_Minh' or 'UTC'") from None
    shift = pd.Timedelta(hours=int(day_end_hour))
    labels = (ends - shift).ceil("D") + shift
    starts = ends - pd.Timedelta(hours=step)
    straddle = starts < labels - pd.Timedelta(days=1)
    if straddle.any():
        i = int(np.argmax(straddle))
        raise RainfallInputError(
            f"the {step:g} h interval ending {ends[i]:%Y-%m-%d %H:%M} ({tz}) crosses the day boundary at "
            f"{day_end_hour:02d}:00 {tz}; use a day_end_hour that falls on a step end (steps end at "
            f"{sorted({t.hour for t in ends})} h local)")
    labels_utc = np.asarray(labels.tz_convert("UTC").tz_localize(None).values)
    total = da.assign_coords(_day=("time", labels_utc)).groupby("_day").sum(
        skipna=skipna, min_count=1 if skipna else None, keep_attrs=False)
    _days, counts = np.unique(labels_utc, return_counts=True)  # sorted, like groupby's groups
    total = total.rename(_day="time").assign_coords(hours=("time", counts * float(step)))
    total["time"].attrs.update(long_name="end of the day (UTC)")
    total["hours"].attrs.update(units="h", long_name="hours of the day covered by the input")
    return total.assign_attrs(
        units="mm", standard_name="lwe_thickness_of_precipitation_amount",
        long_name="daily rainfall total", cell_methods="time: sum (interval: 1 day)",
        day_boundary=f"{day_end_hour:02d}:00 {tz}", day_tz=tz, day_end_hour=int(day_end_hour),
        **{k: da.attrs[k] for k in ("forecast_reference_time", "source") if k in da.attrs})


def hydromet_daily_totals(
    precip: xr.DataArray | xr.Dataset,
    step_hours: float | None = None,
    *,
    skipna: bool = False,
    params: RainfallParameters | None = None,
) -> xr.DataArray:
    """Daily totals on Vietnam's hydro-met day (19:00-19:00 Asia/Ho_Chi_Minh = 12-12 UTC).

    The national service reports 24 h rain "from 19:00 to 19:00" local time
    (``tables/rainfall.toml`` [hydromet_day], secondary). Same parameters and
    result as :func:`daily_totals`; ``params`` overrides the table.
    """
    p = params or rainfall_parameters()
    return daily_totals(precip, tz=p.hydromet_tz, day_end_hour=p.hydromet_day_end_hour,
                        step_hours=step_hours, skipna=skipna)


def antecedent_rainfall_index(daily: xr.DataArray, *, assume_dry_before: bool = False) -> xr.DataArray:
    """LHASA v1 antecedent rainfall index.

    ``ARI_t = sum_{i=0}^{6} w_i P_{t-i} / sum_i w_i`` with ``w_i = 1/(i+1)^2``
    over daily totals ``P`` [mm] (Kirschbaum, D. & Stanley, T. (2018),
    Satellite-based assessment of rainfall-triggered landslide hazard for
    situational awareness, Earth's Future 6, 505-523; SCIENCE.md §3
    [confirmed]). LHASA v1 calls a cell wet when ARI exceeds the cell's own
    95th percentile.

    Parameters
    ----------
    daily : xarray.DataArray
        Daily totals [mm], ``time`` one day apart (e.g. from :func:`daily_totals`).
    assume_dry_before : bool
        False (default): the first 6 days, which lack 7 days of history, are
        NaN. True: days before the series count as 0 mm (the index is then a
        lower bound on those days).

    Returns
    -------
    xarray.DataArray
        ARI [mm per day] on the same grid; NaN where any of the 7 days is NaN.
    """
    _check_daily(daily, "antecedent_rainfall_index")
    fill = 0.0 if assume_dry_before else np.nan
    daily = daily.astype(np.result_type(daily.dtype, np.float32), copy=False)
    total = None
    for i, w in enumerate(ARI_WEIGHTS):
        term = daily.shift(time=i, fill_value=fill) * w
        total = term if total is None else total + term
    ari = total / ARI_WEIGHTS.sum()
    return ari.rename("antecedent_rainfall_index").assign_attrs(
        units="mm day-1", long_name="LHASA v1 antecedent rainfall index (7-day, weights 1/(i+1)^2)",
        source="Kirschbaum & Stanley (2018), Earth's Future 6:505-523 (LHASA v1)")


def antecedent_precipitation_index(
    daily: xr.DataArray,
    k: float | None = None,
    *,
    initial: float | xr.DataArray = 0.0,
) -> xr.DataArray:
    """Antecedent precipitation index ``API_t = k * API_{t-1} + P_t``.

    Kohler, M. A. & Linsley, R. K. (1951), Predicting the runoff from storm
    rainfall, U.S. Weather Bureau Research Paper 34. Computed as a first-order
    recursive filter along time (``scipy.signal.lfilter``), vectorized over
    cells and members.

    Parameters
    ----------
    daily : xarray.DataArray
        Daily totals ``P`` [mm], ``time`` one day apart.
    k : float, optional
        Recession constant, 0 < k < 1 [-]; default from ``tables/rainfall.toml``
        (0.9, unverified textbook value).
    initial : float or xarray.DataArray
        API on the day before the first day [mm] (0 = dry start).

    Returns
    -------
    xarray.DataArray
        API [mm]; a NaN day makes every later value NaN (the recursion needs it).
    """
    from scipy.signal import lfilter

    _check_daily(daily, "antecedent_precipitation_index")
    if k is None:
        k = rainfall_parameters().api_k
    if not (isinstance(k, int | float) and 0 < k < 1):
        raise RainfallInputError(f"antecedent_precipitation_index: k={k!r} must be a number with 0 < k < 1")

    def api(p: np.ndarray, init: np.ndarray) -> np.ndarray:
        p = p.astype(np.result_type(p.dtype, np.float32), copy=False)
        zi = (k * np.broadcast_to(init, p.shape[:-1]))[..., None].astype(p.dtype)
        y, _ = lfilter(np.array([1.0], p.dtype), np.array([1.0, -k], p.dtype), p, axis=-1, zi=zi)
        return y.astype(p.dtype, copy=False)

    if _is_dask(daily.data):
        daily = daily.chunk({"time": -1})
    dtype = np.result_type(daily.dtype, np.float32)
    out = xr.apply_ufunc(api, daily, xr.DataArray(initial) if not isinstance(initial, xr.DataArray)
                         else initial, input_core_dims=[["time"], []], output_core_dims=[["time"]],
                         dask="parallelized", output_dtypes=[dtype])
    return out.transpose(*daily.dims, ...).rename("antecedent_precipitation_index").assign_attrs(
        units="mm", long_name=f"antecedent precipitation index (k = {k:g})", api_k=float(k),
        source="Kohler & Linsley (1951), U.S. Weather Bureau Research Paper 34")


def rain_days(
    daily: xr.DataArray,
    threshold_mm: float | None = None,
    *,
    initial: int | xr.DataArray = 0,
) -> xr.DataArray:
    """Consecutive rain days up to and including each day.

    ``rain_days_t`` = number of consecutive days ending at day ``t`` whose
    total is at least ``threshold_mm``; 0 on a dry day. Decision 18/2021
    Article 46 keys the level on the days it has already rained BEFORE the
    warned 24 h ("mưa đã xảy ra trước đó"): use the value of the day before
    the warned window, e.g. ``rain_days(daily).shift(time=1)``.

    Parameters
    ----------
    daily : xarray.DataArray
        Daily totals [mm], ``time`` one day apart.
    threshold_mm : float, optional
        Daily total that makes a rain day [mm]; default from
        ``tables/rainfall.toml`` (16 mm, the lower bound of "mưa vừa" —
        moderate rain — in Vietnamese forecast wording; an unverified ewarn
        choice).
    initial : int or xarray.DataArray
        Consecutive rain days already counted before the first day (e.g. from
        observations); they continue the first run of rain days.

    Returns
    -------
    xarray.DataArray
        int16 counts [days]. A NaN day counts as dry (the count is then a
        lower bound).
    """
    _check_daily(daily, "rain_days")
    if threshold_mm is None:
        threshold_mm = rainfall_parameters().rain_day_threshold_mm
    if not (isinstance(threshold_mm, int | float) and threshold_mm >= 0):
        raise RainfallInputError(f"rain_days: threshold_mm={threshold_mm!r} must be a number >= 0")

    def run_length(wet: np.ndarray, init: np.ndarray) -> np.ndarray:
        n = wet.shape[-1]
        pos = np.arange(1, n + 1, dtype=np.int32)
        last_dry = np.maximum.accumulate(np.where(wet, 0, pos), axis=-1)
        run = pos - last_dry
        run = run + np.where(last_dry == 0, np.asarray(init, dtype=np.int32)[..., None], 0)
        return run.astype(np.int16)

    wet = daily >= threshold_mm
    if _is_dask(wet.data):
        wet = wet.chunk({"time": -1})
    init = initial if isinstance(initial, xr.DataArray) else xr.DataArray(int(initial))
    out = xr.apply_ufunc(run_length, wet, init, input_core_dims=[["time"], []],
                         output_core_dims=[["time"]], dask="parallelized", output_dtypes=[np.int16])
    return out.transpose(*daily.dims, ...).rename("rain_days").assign_attrs(
        units="days", long_name=f"consecutive days with at least {threshold_mm:g} mm, up to this day",
        threshold_mm=float(threshold_mm))
