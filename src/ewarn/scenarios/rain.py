"""The rain of a scenario: a forecast file or a synthetic storm, scaled and shifted.

:func:`build_rain` turns a scenario's ``[rain]`` table into a forecast in the
contract of DESIGN.md (``precipitation`` [mm per interval] on ``(member?,
time, latitude, longitude)``, ``time`` the end of each interval, UTC,
attributes ``forecast_reference_time``, ``source``, ``step_hours``) and the
antecedent rain the hazard assessment takes (daily rain [mm] on ``(time,
latitude, longitude)``, the last day ending at the forecast start).

The steps, each a pure function over the Dataset:

1. the rain: the demo storm (:func:`ewarn.forecasts.synthetic.demo_storm`), a
   synthetic storm (:func:`~ewarn.forecasts.synthetic.synthetic_storm` with
   the ``[rain.storm]`` parameters) or a file read by
   :func:`ewarn.forecasts.open_forecast`, all normalized by
   :func:`ewarn.forecasts.normalize` so that a scenario's forecast is exactly
   what the pipeline would have archived;
2. :func:`scale_rain`: every amount multiplied by ``scale``;
3. :func:`shift_time`: ``forecast_reference_time`` and ``time`` (and the time
   bounds) moved together by ``shift_hours``;
4. :func:`shift_space`: the coordinates relabelled by (dlon, dlat), the rain
   field moves unchanged (orographic enhancement included: it is the same rain
   elsewhere). ``shift_km`` is converted to degrees at the region's central
   latitude (:func:`km_to_degrees`). The rain is made (or cut from the file)
   over the region's bounds moved back by the shift, so that after the shift
   it covers the region.

Antecedent rain: ``antecedent_mm`` spread evenly over ``antecedent_days``
(:func:`uniform_antecedent`), or the rain of a file summed into the 24-hour
windows before the forecast start (:func:`daily_antecedent`); the file is
shifted in time with the storm so the days before the storm stay the days
before the storm.

Sources: the local flat-Earth conversion of kilometres to degrees (one degree
of latitude = π R / 180 with the IUGG mean radius R = 6371.0088 km, a degree
of longitude shorter by cos φ) is the one :mod:`ewarn.forecasts.synthetic`
uses; its error is below 1 % for shifts under a few hundred kilometres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ewarn.config import ForecastSettings
from ewarn.errors import Problem
from ewarn.forecasts import ForecastError, normalize, open_forecast, resolve_profile
from ewarn.forecasts.antecedent import hourly_from_intervals
from ewarn.forecasts.normalize import iso_utc, to_utc
from ewarn.forecasts.synthetic import (
    DEMO_REFERENCE_TIME,
    DEMO_STEP_HOURS,
    DEMO_STEPS,
    EARTH_RADIUS_KM,
    VARIABLE,
    demo_grid,
    demo_storm_params,
    synthetic_storm,
)
from ewarn.scenarios.schema import RainSpec, Scenario, ScenarioError

__all__ = [
    "KM_PER_DEGREE",
    "ScenarioRain",
    "build_rain",
    "daily_antecedent",
    "km_to_degrees",
    "scale_rain",
    "scenario_rain",
    "shift_space",
    "shift_time",
    "uniform_antecedent",
]

#: Length of one degree of latitude [km] (IUGG mean Earth radius).
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0

Bounds = tuple[float, float, float, float]


@dataclass
class ScenarioRain:
    """The rain a scenario run assesses.

    Attributes
    ----------
    forecast : xarray.Dataset
        The forecast contract (DESIGN.md).
    antecedent : xarray.DataArray or None
        Daily rain before the forecast [mm], ``(time, latitude, longitude)``,
        ``time`` the end of each 24-hour window (UTC), the last one the
        forecast's reference time; None when the scenario gives none.
    notes : list of str
        What was done to the rain, for the report (English, one line each).
    """

    forecast: xr.Dataset
    antecedent: xr.DataArray | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- pure transforms


def km_to_degrees(east_km: float, north_km: float, latitude: float) -> tuple[float, float]:
    """A displacement [km] as (dlon, dlat) [degrees] at ``latitude``.

    Parameters
    ----------
    east_km, north_km : float
        Displacement towards east and north [km].
    latitude : float
        Latitude where the displacement is measured [degrees].

    Returns
    -------
    (float, float)
        dlon, dlat [degrees]; dlon = east / (KM_PER_DEGREE · cos φ),
        dlat = north / KM_PER_DEGREE (local flat-Earth approximation).
    """
    dlat = north_km / KM_PER_DEGREE
    dlon = east_km / (KM_PER_DEGREE * math.cos(math.radians(latitude)))
    return dlon, dlat


def _noted(ds: xr.Dataset, note: str) -> xr.Dataset:
    previous = ds.attrs.get("scenario_changes", "")
    ds.attrs["scenario_changes"] = f"{previous}; {note}" if previous else note
    return ds


def scale_rain(forecast: xr.Dataset, factor: float) -> xr.Dataset:
    """Every rain amount multiplied by ``factor``.

    Parameters
    ----------
    forecast : xarray.Dataset
        Forecast contract.
    factor : float
        Multiplier (> 0); 1 returns the forecast unchanged.

    Returns
    -------
    xarray.Dataset
        A new dataset; ``precipitation`` keeps its dtype and attributes.
    """
    if not factor > 0:
        raise ValueError(f"scale factor must be > 0, got {factor}")
    if factor == 1:
        return forecast
    pr = forecast[VARIABLE]
    out = forecast.assign({VARIABLE: (pr * factor).astype(pr.dtype).assign_attrs(pr.attrs)})
    return _noted(out, f"rain scaled ×{factor:g}")


def shift_time(forecast: xr.Dataset, hours: float) -> xr.Dataset:
    """The storm moved in time: reference time, ``time`` and its bounds shifted together.

    Parameters
    ----------
    forecast : xarray.Dataset
        Forecast contract.
    hours : float
        Shift [h]; positive is later.

    Returns
    -------
    xarray.Dataset
        Same rain, every time label moved by ``hours``.
    """
    if hours == 0:
        return forecast
    delta = np.timedelta64(round(hours * 3_600_000_000_000), "ns")
    out = forecast.assign_coords(time=forecast["time"].values.astype("datetime64[ns]") + delta)
    out["time"].attrs.update(forecast["time"].attrs)
    for name in ("time_bnds", "time_bounds"):
        if name in out and np.issubdtype(out[name].dtype, np.datetime64):
            out[name] = out[name] + delta
    ref = to_utc(forecast.attrs["forecast_reference_time"]) + delta
    out.attrs["forecast_reference_time"] = iso_utc(ref)
    return _noted(out, f"storm moved {hours:+g} h in time")


def shift_space(forecast: xr.Dataset, dlon: float, dlat: float) -> xr.Dataset:
    """The storm moved in space: longitude and latitude relabelled.

    Parameters
    ----------
    forecast : xarray.Dataset
        Forecast contract.
    dlon, dlat : float
        Shift [degrees] towards east and north.

    Returns
    -------
    xarray.Dataset
        Same values on coordinates moved by (dlon, dlat); the grid stays
        regular and ascending; longitudes must stay within −180..180.
    """
    if dlon == 0 and dlat == 0:
        return forecast
    lon = forecast["longitude"].values + dlon
    lat = forecast["latitude"].values + dlat
    if lon.min() < -180 or lon.max() > 180 or lat.min() < -90 or lat.max() > 90:
        raise ValueError("the shifted grid leaves −180..180 / −90..90 degrees; shift the storm less")
    out = forecast.assign_coords(longitude=lon, latitude=lat)
    for name in ("longitude", "latitude"):
        out[name].attrs.update(forecast[name].attrs)
    return _noted(out, f"storm moved {dlon:+.4f}° east, {dlat:+.4f}° north")


def uniform_antecedent(reference_time: Any, total_mm: float, days: int, *, latitude: np.ndarray,
                       longitude: np.ndarray) -> xr.DataArray:
    """Antecedent rain spread evenly over the ``days`` 24-hour windows before ``reference_time``.

    Parameters
    ----------
    reference_time : datetime, str or datetime64
        End of the last window (UTC), the forecast start.
    total_mm : float
        Rain of all the days together [mm].
    days : int
        Number of 24-hour windows (≥ 1).
    latitude, longitude : ndarray
        Grid [degrees].

    Returns
    -------
    xarray.DataArray
        ``total_mm / days`` [mm] in every cell and day, dims ``(time,
        latitude, longitude)``, ``time`` the end of each window.
    """
    end = to_utc(reference_time)
    times = end - np.arange(days - 1, -1, -1) * np.timedelta64(24, "h")
    data = np.full((days, len(latitude), len(longitude)), total_mm / days, dtype=np.float32)
    return xr.DataArray(data, dims=("time", "latitude", "longitude"),
                        coords={"time": times, "latitude": np.asarray(latitude),
                                "longitude": np.asarray(longitude)},
                        name="antecedent_rain",
                        attrs={"units": "mm", "long_name": "rain in the 24 hours ending at time",
                               "comment": f"scenario: {total_mm:g} mm spread evenly over {days} days"})


def daily_antecedent(rain: xr.Dataset, until: Any, days: int) -> xr.DataArray:
    """Rain of a forecast-contract dataset summed into the ``days`` 24-hour windows before ``until``.

    Each interval's rain is spread uniformly over its hours
    (:func:`ewarn.forecasts.antecedent.hourly_from_intervals`); ensemble
    members are averaged.

    Parameters
    ----------
    rain : xarray.Dataset
        Forecast contract (observations or a past forecast) covering the days.
    until : datetime, str or datetime64
        End of the last window (UTC).
    days : int
        Number of 24-hour windows.

    Returns
    -------
    xarray.DataArray
        Daily rain [mm], dims ``(time, latitude, longitude)``.

    Raises
    ------
    ValueError
        The data do not cover every hour of the windows.
    """
    end = to_utc(until)
    pr = rain[VARIABLE]
    if "member" in pr.dims:
        pr = pr.mean("member")
    pr = pr.transpose("time", "latitude", "longitude")
    t_end = pr["time"].values.astype("datetime64[ns]")
    if "time_bnds" in rain:
        t_start = rain["time_bnds"].values[:, 0].astype("datetime64[ns]")
    else:
        step = rain["step_hours"].values if "step_hours" in rain.coords else rain.attrs["step_hours"]
        t_start = t_end - (np.asarray(step, dtype=float) * 3600e9).astype("timedelta64[ns]")
    hour = np.timedelta64(1, "h")
    edges = np.arange(-24 * days, 1, dtype=float)
    hourly, covered = hourly_from_intervals(np.asarray(pr.values, dtype=np.float64),
                                            (t_start - end) / hour, (t_end - end) / hour, edges)
    if not covered.all():
        raise ValueError(f"the file covers {t_start.min()} to {t_end.max()} (UTC) but the {days} day(s) "
                         f"before {end} are needed")
    daily = hourly.reshape(days, 24, *hourly.shape[1:]).sum(axis=1).astype(np.float32)
    times = end - np.arange(days - 1, -1, -1) * np.timedelta64(24, "h")
    return xr.DataArray(daily, dims=("time", "latitude", "longitude"),
                        coords={"time": times, "latitude": pr["latitude"].values,
                                "longitude": pr["longitude"].values},
                        name="antecedent_rain",
                        attrs={"units": "mm", "long_name": "rain in the 24 hours ending at time"})


# --------------------------------------------------------------------------- the scenario's rain


def _moved_back(bounds: Bounds, dlon: float, dlat: float) -> Bounds:
    w, s, e, n = bounds
    return (w - dlon, s - dlat, e - dlon, n - dlat)


def _covers(forecast: xr.Dataset, bounds: Bounds) -> bool:
    lon, lat = forecast["longitude"].values, forecast["latitude"].values
    w, s, e, n = bounds
    return bool(lon.min() <= w and lon.max() >= e and lat.min() <= s and lat.max() >= n)


def _fail(file: str, key: str, message: str) -> ScenarioError:
    return ScenarioError(f"{file}: the scenario's rain cannot be built", [Problem(file, message, field=key)])


def build_rain(spec: RainSpec, *, bounds: Bounds, terrain: xr.Dataset | xr.DataArray | None = None,
               seed: int = 2024, settings: ForecastSettings | None = None,
               file: str = "scenario") -> ScenarioRain:
    """The forecast and antecedent rain of a ``[rain]`` table.

    Parameters
    ----------
    spec : RainSpec
        The validated ``[rain]`` table (paths absolute).
    bounds : (west, south, east, north)
        The region's bounds [degrees]: synthetic rain is made around them,
        file rain cut to them (plus the forecasts' margin).
    terrain : xarray.Dataset or DataArray, optional
        ``elevation`` [m] for the orographic enhancement of synthetic storms.
    seed : int
        Seed of the synthetic storm's convective cells and members.
    settings : ForecastSettings, optional
        Source profiles and margin (default: built-in).
    file : str
        The scenario file, named in errors.

    Returns
    -------
    ScenarioRain

    Raises
    ------
    ScenarioError
        The file cannot be read as a forecast, the shifted rain does not
        cover the region, or the antecedent file does not cover its days;
        the problem names the key.
    """
    settings = settings or ForecastSettings()
    lat0 = 0.5 * (bounds[1] + bounds[3])
    dlon, dlat = km_to_degrees(spec.shift_km[0], spec.shift_km[1], lat0)
    source_bounds = _moved_back(bounds, dlon, dlat)
    notes: list[str] = []
    try:
        if spec.kind == "file":
            assert spec.file is not None  # the schema guarantees it
            ds = open_forecast(spec.source, spec.file, settings=settings, bounds=source_bounds)
            notes.append(f"forecast file {spec.file.name} read with profile '{spec.source}'")
        else:
            if spec.kind == "demo":
                params, ref = demo_storm_params(), DEMO_REFERENCE_TIME
                steps, step = DEMO_STEPS, DEMO_STEP_HOURS
                source = "demo"
                notes.append("the demo storm (Yagi-like, reference 2024-09-07T12Z)")
            else:
                assert spec.storm is not None  # the schema guarantees it
                params, ref = spec.storm.params(), spec.reference_time
                steps, step = spec.steps, spec.step_hours
                source = "synthetic"
                notes.append(f"a synthetic storm of {len(params.track)} waypoint(s), peak "
                             f"{params.peak_rate:g} mm/h")
            lon, lat = demo_grid(source_bounds)
            raw = synthetic_storm(params, lon=lon, lat=lat, reference_time=ref, steps=steps, step_hours=step,
                                  terrain=terrain, members=spec.members, seed=seed, source=source)
            ds = normalize(raw, resolve_profile("demo", settings), path=f"{file} [rain]")
            ds.attrs["source"] = source
    except ForecastError as exc:
        raise _fail(file, "rain.file" if spec.kind == "file" else "rain.storm", str(exc)) from None
    ds = scale_rain(ds, spec.scale)
    ds = shift_time(ds, spec.shift_hours)
    try:
        ds = shift_space(ds, dlon, dlat)
    except ValueError as exc:
        raise _fail(file, "rain.shift_km", str(exc)) from None
    if not _covers(ds, bounds):
        lon, lat = ds["longitude"].values, ds["latitude"].values
        raise _fail(file, "rain.shift_km" if (dlon or dlat) else "rain.file",
                    f"the rain covers longitude {lon.min():.2f}..{lon.max():.2f}, latitude "
                    f"{lat.min():.2f}..{lat.max():.2f} but the region spans "
                    f"{bounds[0]:.2f}..{bounds[2]:.2f}, {bounds[1]:.2f}..{bounds[3]:.2f}; "
                    "use a forecast that covers the region or a smaller shift_km")
    notes += [n for n in ds.attrs.get("scenario_changes", "").split("; ") if n]
    ref = ds.attrs["forecast_reference_time"]
    antecedent = None
    if spec.antecedent_file is not None:
        try:
            obs = open_forecast(spec.antecedent_source, spec.antecedent_file, settings=settings,
                                bounds=source_bounds)
            obs = shift_space(shift_time(obs, spec.shift_hours), dlon, dlat)
            antecedent = daily_antecedent(obs, ref, spec.antecedent_days)
        except (ForecastError, ValueError) as exc:
            raise _fail(file, "rain.antecedent_file", str(exc)) from None
        notes.append(f"antecedent rain of {spec.antecedent_days} day(s) from {spec.antecedent_file.name}")
    elif spec.antecedent_mm > 0:
        antecedent = uniform_antecedent(ref, spec.antecedent_mm, spec.antecedent_days,
                                        latitude=ds["latitude"].values, longitude=ds["longitude"].values)
        notes.append(f"antecedent rain {spec.antecedent_mm:g} mm over {spec.antecedent_days} day(s)")
    return ScenarioRain(forecast=ds, antecedent=antecedent, notes=notes)


def scenario_rain(scenario: Scenario, region: Any, *, settings: ForecastSettings | None = None
                  ) -> ScenarioRain:
    """:func:`build_rain` for a loaded scenario over its region.

    Parameters
    ----------
    scenario : Scenario
    region : ewarn.region.Region
        The scenario's region (its bounds and terrain are used).
    settings : ForecastSettings, optional

    Returns
    -------
    ScenarioRain
    """
    terrain = region.terrain if scenario.rain.kind != "file" else None
    return build_rain(scenario.rain, bounds=region.bounds, terrain=terrain, seed=scenario.scenario.seed,
                      settings=settings, file=str(scenario.file))
