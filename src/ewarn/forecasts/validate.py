"""Validate a normalized forecast before it replaces anything.

Errors refuse the forecast (:class:`~ewarn.forecasts.errors.ForecastError`
listing every problem); warnings are returned and archived with it.

Checks
------
- structure: ``precipitation`` in mm on ``(member?, time, latitude,
  longitude)``; time strictly increasing; latitude/longitude strictly
  ascending, longitude in −180..180; reference time present;
- region: the grid covers the region's bounds;
- age: the reference time is at most ``max_age_hours`` before ``now``;
- values (one pass over the data): missing values (NaN) above
  ``max_nan_fraction`` refuse, fewer are reported and stay masked (NaN, the
  CF fill value) for later stages to skip; negative rain refuses; a rate
  above ``warn_rate_mm_h`` is reported, above ``max_rate_mm_h`` refuses.

Thresholds are settings (:class:`~ewarn.config.ForecastSettings`): 300 mm/h
is about the world-record 1-h rainfall (305 mm, Holt, Missouri, 22 June
1947; WMO archive of weather and climate extremes), 1000 mm/h three times it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import xarray as xr

from ewarn.config import ForecastSettings
from ewarn.errors import Problem
from ewarn.forecasts.errors import ForecastError
from ewarn.forecasts.grid import Bounds, cell_edges, covers
from ewarn.forecasts.normalize import VARIABLE, iso_utc, to_utc
from ewarn.store import utcnow

_DIMS = ("member", "time", "latitude", "longitude")


def _where(da: xr.DataArray, flat_index: dict[str, xr.DataArray]) -> str:
    parts = []
    for dim in da.dims:
        i = int(flat_index[dim])
        value = da[dim].values[i] if dim in da.coords else i
        if dim == "time":
            parts.append(f"time {iso_utc(value)}")
        elif dim in ("latitude", "longitude"):
            parts.append(f"{dim[:3]} {float(value):.3f}")
        else:
            parts.append(f"{dim} {value}")
    return ", ".join(parts)


def _structure(ds: xr.Dataset, file: str, field: str) -> list[Problem]:
    problems: list[Problem] = []

    def err(msg: str) -> None:
        problems.append(Problem(file, msg, field=field))

    da = ds[VARIABLE]
    missing = [d for d in ("time", "latitude", "longitude") if d not in da.dims or d not in ds.coords]
    extra = [d for d in da.dims if d not in _DIMS]
    if missing or extra:
        err(f"dims are {tuple(da.dims)}; a forecast has (member?, time, latitude, longitude) with "
            "coordinates; pass the file through normalize()")
        return problems
    if da.attrs.get("units") != "mm":
        err(f"units are {da.attrs.get('units')!r}, not 'mm'; pass the file through normalize()")
    t = ds["time"].values
    if not np.issubdtype(t.dtype, np.datetime64):
        err("time is not a date-time coordinate")
    elif t.size and np.any(np.diff(t) <= np.timedelta64(0, "ns")):
        k = int(np.flatnonzero(np.diff(t) <= np.timedelta64(0, "ns"))[0])
        err(f"time is not strictly increasing ({iso_utc(t[k + 1])} after {iso_utc(t[k])})")
    for dim in ("latitude", "longitude"):
        c = np.asarray(ds[dim].values, dtype=float)
        if c.size == 0:
            err(f"{dim} is empty")
        elif np.any(np.diff(c) <= 0):
            err(f"{dim} is not strictly ascending")
    lon = np.asarray(ds["longitude"].values, dtype=float)
    if lon.size and (lon.min() < -180 or lon.max() > 180):
        err(f"longitude spans {lon.min():g}..{lon.max():g}, outside −180..180")
    if "step_hours" in ds.coords and np.any(np.asarray(ds["step_hours"].values) <= 0):
        err("an interval has zero or negative length (step_hours ≤ 0)")
    ref = ds.attrs.get("forecast_reference_time")
    if not ref:
        err("has no forecast_reference_time attribute")
    else:
        try:
            to_utc(ref)
        except (ValueError, TypeError):
            err(f"forecast_reference_time {ref!r} is not a time")
    return problems


def _step_hours(ds: xr.Dataset) -> xr.DataArray | float:
    if "step_hours" in ds.coords:
        return ds["step_hours"]
    value = float(ds.attrs.get("step_hours", "nan"))
    if np.isfinite(value) and value > 0:
        return value
    t = ds["time"].values
    steps = np.diff(t) / np.timedelta64(1, "h")
    first = steps[0] if steps.size else 1.0
    return xr.DataArray(np.concatenate([[first], steps]), dims="time")


def validate(
    ds: xr.Dataset,
    *,
    bounds: Bounds | None = None,
    settings: ForecastSettings,
    now: dt.datetime | None = None,
    path: str = "",
) -> list[Problem]:
    """Check a normalized forecast; raise on errors, return warnings.

    Parameters
    ----------
    ds : Dataset
        A forecast in the contract (output of :func:`normalize`).
    bounds : (west, south, east, north), optional
        Region bounds [degrees] the forecast must cover.
    settings : ForecastSettings
        ``max_age_hours``, ``max_nan_fraction``, ``warn_rate_mm_h``,
        ``max_rate_mm_h``.
    now : datetime, optional
        Time the forecast is used at (UTC; default the clock). A replay of a
        past storm sets it.
    path : str
        The file or URL as the user named it (messages).

    Returns
    -------
    list of Problem
        Warnings (severity ``warning``).

    Raises
    ------
    ForecastError
        Any error; the message lists every problem found.
    """
    file = path or str(ds.attrs.get("source_file", ""))
    src_var = ds[VARIABLE].attrs.get("ewarn_source_variable") if VARIABLE in ds else None
    field = VARIABLE
    if VARIABLE not in ds:
        raise ForecastError(f"has no variable '{VARIABLE}'; it is not a normalized forecast: read it "
                            "with open_forecast()", file=file)
    problems = _structure(ds, file, field)
    if problems:
        raise ForecastError("is not a valid forecast", file=file, variable=field, problems=problems)
    da = ds[VARIABLE]
    from_src = f" (from '{src_var}')" if src_var and src_var != VARIABLE else ""

    def add(msg: str, severity: str = "error", where: str | None = None) -> None:
        problems.append(Problem(file, msg + from_src, where=where, field=field, severity=severity))

    lat = np.asarray(ds["latitude"].values, dtype=float)
    lon = np.asarray(ds["longitude"].values, dtype=float)
    if bounds is not None and not covers(lat, lon, bounds):
        (lat_lo, lat_hi), (lon_lo, lon_hi) = cell_edges(lat), cell_edges(lon)
        w, s, e, n = bounds
        add(f"does not cover the region: the grid spans longitude {lon_lo[0]:g}..{lon_hi[-1]:g}, "
            f"latitude {lat_lo[0]:g}..{lat_hi[-1]:g}; the region is longitude {w:g}..{e:g}, latitude "
            f"{s:g}..{n:g}. Ingest a forecast for this region")

    ref = to_utc(ds.attrs["forecast_reference_time"])
    now_utc = to_utc(now if now is not None else utcnow())
    age_h = float((now_utc - ref) / np.timedelta64(1, "h"))
    if age_h > settings.max_age_hours:
        add(f"the forecast of {iso_utc(ref)} is stale: {age_h:.0f} h old at {iso_utc(now_utc)} (limit "
            f"{settings.max_age_hours:g} h, forecasts.max_age_hours in ewarn.toml); ingest a newer cycle")
    elif age_h < -1:
        add(f"the reference time {iso_utc(ref)} is {-age_h:.0f} h in the future; check the clock "
            "or the --cycle given", severity="warning")

    step = _step_hours(ds)
    rate = da / step
    stats = xr.Dataset({
        "nan": da.isnull().sum(),
        "min": da.min(),
        "max_rate": rate.max(),
        "n_high": (rate > settings.warn_rate_mm_h).sum(),
    }).compute()
    n_nan, total = int(stats["nan"]), int(da.size)
    if total == 0:
        add("holds no values")
    elif n_nan == total:
        add("is entirely missing (every value is NaN); the source produced no data: ingest another "
            "file or cycle")
    else:
        share = n_nan / total
        if share > settings.max_nan_fraction:
            add(f"{share:.1%} of the values are missing (NaN), more than the limit "
                f"{settings.max_nan_fraction:.1%} (forecasts.max_nan_fraction in ewarn.toml); the file "
                "is damaged or does not cover the region: ingest another file")
        elif n_nan:
            add(f"{n_nan} of {total} values ({share:.2%}) are missing (NaN); they stay masked and "
                "later stages skip them", severity="warning")
        vmin = float(stats["min"])
        if vmin < 0:
            acc = da.attrs.get("ewarn_accumulation", "")
            hint = (f"; de-accumulating '{acc}' values gave this, so the profile's accumulation is "
                    "probably wrong for this source (since-start vs bucket), or a step is missing"
                    if acc in ("since-start", "bucket") else "; rain cannot be negative: fix the file")
            add(f"has negative rain down to {vmin:.3g} mm{hint}",
                where=_where(da, da.argmin(dim=list(da.dims))))
        rmax = float(stats["max_rate"])
        if rmax > settings.max_rate_mm_h:
            add(f"has a rain rate of {rmax:.0f} mm/h, above the physical limit "
                f"{settings.max_rate_mm_h:g} mm/h (forecasts.max_rate_mm_h in ewarn.toml); the units or the "
                "accumulation are wrong (a factor of 1000?)",
                where=_where(rate, rate.argmax(dim=list(rate.dims))))
        elif rmax > settings.warn_rate_mm_h:
            add(f"{int(stats['n_high'])} value(s) exceed {settings.warn_rate_mm_h:g} mm/h (max "
                f"{rmax:.0f} mm/h), near the world record; check the forecast",
                severity="warning", where=_where(rate, rate.argmax(dim=list(rate.dims))))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        read_from = f" in the rain read from '{src_var}'" if from_src else ""
        raise ForecastError(f"forecast refused: {len(errors)} error(s){read_from}", file=file,
                            variable=field, problems=problems)
    return problems
