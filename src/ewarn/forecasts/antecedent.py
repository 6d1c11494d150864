"""Antecedent rain: the rain of the days before a cycle, from the archive.

Without gauges, the best estimate of the rain that has fallen is the first
hours of each past forecast cycle: for every hour, the most recent cycle
issued before that hour (a short lead time is the most skilful). An
observation source (``observed = true`` in its profile: a satellite or gauge
product ingested like a forecast) is used the same way, the most recently
ingested file first.

Each cycle's intervals are spread uniformly over their hours (cumulative rain
interpolated linearly in time, one gather for all cells), hours are taken
from the most recent cycle that covers them, and the hours are summed into
24-hour windows ending at ``until``. Ensemble forecasts contribute their
member mean. Hours no cycle covers are gaps: a day with some missing hours
is the sum of the hours known (a lower bound) and is listed in ``gaps``; a
day with none is NaN.

Sources
-------
Using the first hours of successive forecasts as a rain estimate where
observations are missing follows the "short-range forecast as first guess"
practice of nowcasting systems; the 24-hour windows feed the antecedent
rainfall index of NASA LHASA (Kirschbaum & Stanley 2018), which uses daily
rain of the 7 previous days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ewarn.config import Workspace
from ewarn.forecasts.archive import list_archived
from ewarn.forecasts.errors import ForecastError
from ewarn.forecasts.normalize import VARIABLE, to_utc

_HOUR = np.timedelta64(1, "h")


@dataclass
class AntecedentRain:
    """Daily rain before a time.

    Attributes
    ----------
    rain : DataArray
        Rain per 24-hour window [mm], dims ``(time, latitude, longitude)``;
        ``time`` is the END of each window (UTC), the last one ``until``.
    gaps : list of datetime
        Ends of the windows with missing hours (UTC, aware).
    method : str
        How the estimate was made (for reports).
    coverage : DataArray
        Fraction of each window's hours that are known, dims ``(time,)``.
    cycles : list of datetime
        The cycles that contributed hours.
    """

    rain: xr.DataArray
    gaps: list[dt.datetime]
    method: str
    coverage: xr.DataArray = field(repr=False)
    cycles: list[dt.datetime] = field(default_factory=list)


def hourly_from_intervals(amounts: np.ndarray, start_h: np.ndarray, end_h: np.ndarray,
                          hour_edges_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rain per hour from rain per interval, uniform within each interval.

    Parameters
    ----------
    amounts : ndarray (n, ...)
        Rain per interval [mm]; intervals contiguous and ascending.
    start_h, end_h : ndarray (n,)
        Interval bounds [h].
    hour_edges_h : ndarray (m + 1,)
        Hour boundaries [h].

    Returns
    -------
    (ndarray (m, ...), ndarray (m,) of bool)
        Rain per hour [mm] and whether the hour lies within the intervals.
    """
    t = np.concatenate([start_h[:1], end_h])
    cum = np.concatenate([np.zeros_like(amounts[:1]), np.cumsum(amounts, axis=0)], axis=0)
    b = np.clip(hour_edges_h, t[0], t[-1])
    j = np.clip(np.searchsorted(t, b, side="right"), 1, t.size - 1)
    w = ((b - t[j - 1]) / (t[j] - t[j - 1])).reshape((-1,) + (1,) * (amounts.ndim - 1))
    at_edges = cum[j - 1] + w * (cum[j] - cum[j - 1])
    hourly = np.diff(at_edges, axis=0)
    covered = (hour_edges_h[:-1] >= t[0] - 1e-9) & (hour_edges_h[1:] <= t[-1] + 1e-9)
    return hourly, covered


def antecedent(workspace: Workspace, source: str, until: dt.datetime, days: int = 7) -> AntecedentRain:
    """Daily rain of the ``days`` 24-hour windows before ``until``, from the archive.

    Parameters
    ----------
    workspace : Workspace
    source : str
        Source whose archived cycles are used (a forecast, or an
        ``observed`` profile).
    until : datetime
        End of the last window (UTC), usually the reference time of the
        forecast being assessed. Cycles issued at or after it are not used.
    days : int
        Number of 24-hour windows.

    Returns
    -------
    AntecedentRain
    """
    if days < 1:
        raise ForecastError(f"days must be at least 1 (got {days})")
    end = to_utc(until)
    start = end - np.timedelta64(24 * days, "h")
    hour_edges = start + np.arange(24 * days + 1) * _HOUR
    profile = workspace.settings.forecasts.sources.get(source)
    observed = bool(profile and profile.observed)
    items = [a for a in list_archived(workspace, source)
             if to_utc(a.cycle) < end and to_utc(a.valid_to) > start and a.path.exists()]
    items.sort(key=lambda a: a.cycle, reverse=True)  # most recent first
    rain_h: np.ndarray | None = None
    filled = np.zeros(24 * days, dtype=bool)
    grid: tuple[np.ndarray, np.ndarray] | None = None
    used: list[dt.datetime] = []
    regridded = False
    ensemble = False
    for item in items:
        if filled.all():
            break
        with xr.open_dataset(item.path, engine="netcdf4") as ds:
            precip = ds[VARIABLE]
            if "member" in precip.dims:
                precip = precip.mean("member", skipna=False)
                ensemble = True
            if grid is None:
                grid = (ds["latitude"].values, ds["longitude"].values)
            elif not (np.array_equal(grid[0], ds["latitude"].values)
                      and np.array_equal(grid[1], ds["longitude"].values)):
                precip = precip.interp(latitude=grid[0], longitude=grid[1], method="nearest")
                regridded = True
            bnds = ds["time_bnds"].values
            s_h = (bnds[:, 0] - start) / _HOUR
            e_h = (bnds[:, 1] - start) / _HOUR
            hourly, covered = hourly_from_intervals(
                precip.transpose("time", "latitude", "longitude").values.astype("float64"),
                s_h, e_h, np.arange(24 * days + 1, dtype=float))
        take = covered & ~filled
        if not take.any():
            continue
        if rain_h is None:
            rain_h = np.zeros((24 * days, *hourly.shape[1:]), dtype="float64")
        rain_h[take] = hourly[take]
        filled |= take
        used.append(item.cycle)
    day_ends = hour_edges[24::24]
    coverage = filled.reshape(days, 24).mean(axis=1)
    if rain_h is None or grid is None:
        rain = xr.DataArray(np.full((days, 0, 0), np.nan), dims=("time", "latitude", "longitude"),
                            coords={"time": day_ends, "latitude": [], "longitude": []})
    else:
        daily = rain_h.reshape(days, 24, *rain_h.shape[1:]).sum(axis=1)
        daily[coverage == 0] = np.nan
        rain = xr.DataArray(daily.astype("float32"), dims=("time", "latitude", "longitude"),
                            coords={"time": day_ends, "latitude": grid[0], "longitude": grid[1]})
    rain.name = "antecedent_rain"
    rain.attrs = {"long_name": "rain per 24-hour window ending at time", "units": "mm",
                  "standard_name": "lwe_thickness_of_precipitation_amount", "cell_methods": "time: sum"}
    gaps = [pd.Timestamp(t).tz_localize("UTC").to_pydatetime()
            for t, c in zip(day_ends, coverage, strict=True) if c < 1]
    kind = "observations" if observed else "first hours of each forecast cycle"
    method = (f"archive of source '{source}': {kind}, most recent cycle first, "
              f"{len(used)} cycle(s) used; intervals spread uniformly over their hours"
              + ("; ensemble mean" if ensemble else "")
              + ("; some cycles regridded to the latest grid (nearest)" if regridded else ""))
    if not used:
        method = f"archive of source '{source}': no cycle covers the {days} days before {until}"
    return AntecedentRain(rain=rain, gaps=gaps, method=method,
                          coverage=xr.DataArray(coverage, dims="time", coords={"time": day_ends}),
                          cycles=used)
