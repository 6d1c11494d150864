"""Parametric synthetic storms: the forecasts room's synthetic source.

A storm is a Gaussian rain core moving along a track (waypoints linearly
interpolated in time), with embedded convective cells that pulse, a wide
background rain shield, a smooth time envelope (raised-cosine rise from onset
to peak and decay to the end) and orographic enhancement proportional to the
terrain height. Ensemble members shift the track by a constant offset and
scale the intensity (log-normal); member 0 is the unperturbed control.

The output is the forecast contract of DESIGN.md: ``precipitation`` [mm per
interval] on ``(member?, time, latitude, longitude)``, ``time`` the END of each
interval (UTC, naive ``datetime64[ns]``), latitude/longitude ascending, CF-1.8
attributes. Everything is numpy broadcasting over (member, time, sub-step,
latitude, longitude); the only loop is over the few convective cells.

Sources: the shape (Gaussian core, moving cells, orographic factor
1 + k·z) is a textbook parametric rain model, not calibrated; the demo storm's
numbers follow the Yagi observations of SCIENCE.md §5 (57 mm/h and ~633 mm at
Làng Nủ, Phúc Khánh, in the night of 9→10 September 2024).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ewarn.forecasts.errors import ForecastError

#: Name of the precipitation variable of the forecast contract.
VARIABLE = "precipitation"
#: Mean Earth radius [km] (IUGG) for the local distance approximation.
EARTH_RADIUS_KM = 6371.0088
_KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180.0

#: (west, south, east, north) of the demo region [degrees]: Bảo Yên / Phúc Khánh, Lào Cai.
DEMO_BOUNDS = (104.30, 22.00, 104.70, 22.40)
#: Forecast reference time of the demo storm (UTC).
DEMO_REFERENCE_TIME = dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC)
#: Demo forecast: hourly steps, number of steps, grid spacing and margin [degrees].
DEMO_STEP_HOURS = 1
DEMO_STEPS = 72
DEMO_GRID_DEG = 0.05
DEMO_MARGIN_DEG = 0.5


@dataclass(frozen=True)
class StormParams:
    """Parameters of a synthetic storm.

    Parameters
    ----------
    track : tuple of (hours, lon, lat)
        Waypoints of the storm centre: hours after the reference time,
        longitude and latitude [degrees]; linearly interpolated, held constant
        before the first and after the last.
    radius_km : float
        Standard deviation of the Gaussian rain core [km].
    peak_rate : float
        Rain rate at the core centre at the peak of the envelope [mm/h].
    onset_hours, peak_hours, duration_hours : float
        Time envelope [h after the reference time]: zero before onset, rising
        (raised cosine) to 1 at the peak, falling to zero at onset + duration.
    background_rate : float
        Rate of the wide stratiform rain shield at its centre [mm/h] (same
        envelope).
    shield_radius_km : float
        Standard deviation of the rain shield [km].
    cells : int
        Number of embedded convective cells.
    cell_spread_km : float
        Standard deviation of the cells' offsets from the centre [km].
    cell_radius_km : float
        Mean standard deviation of a cell [km].
    cell_rate : float
        Mean peak rate of a cell [mm/h]; cells pulse with 4–10 h periods.
    orographic_factor : float
        Enhancement per 1000 m of terrain height: rate × (1 + factor · z/1000).
    track_spread_km : float
        Ensemble: standard deviation of a member's track offset [km].
    intensity_spread : float
        Ensemble: standard deviation of the log of a member's intensity factor.
    """

    track: tuple[tuple[float, float, float], ...]
    radius_km: float = 12.0
    peak_rate: float = 45.0
    onset_hours: float = 0.0
    peak_hours: float = 24.0
    duration_hours: float = 48.0
    background_rate: float = 0.5
    shield_radius_km: float = 150.0
    cells: int = 6
    cell_spread_km: float = 20.0
    cell_radius_km: float = 5.0
    cell_rate: float = 12.0
    orographic_factor: float = 0.15
    track_spread_km: float = 15.0
    intensity_spread: float = 0.2

    def __post_init__(self) -> None:
        problems = []
        if len(self.track) < 1 or any(len(w) != 3 for w in self.track):
            problems.append("track must be a list of (hours, lon, lat) waypoints")
        elif any(b[0] <= a[0] for a, b in zip(self.track[:-1], self.track[1:], strict=True)):
            problems.append("track waypoints must be in increasing time order")
        for name in ("radius_km", "shield_radius_km", "cell_radius_km", "duration_hours"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        for name in ("peak_rate", "background_rate", "cell_rate", "cell_spread_km", "track_spread_km",
                     "intensity_spread", "cells"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be ≥ 0 (got {getattr(self, name)})")
        if not self.onset_hours <= self.peak_hours <= self.onset_hours + self.duration_hours:
            problems.append("peak_hours must lie between onset_hours and onset_hours + duration_hours")
        if problems:
            raise ForecastError("invalid storm parameters: " + "; ".join(problems)
                                + "; fix the StormParams values", file="StormParams")


def envelope(hours: np.ndarray, onset: float, peak: float, duration: float) -> np.ndarray:
    """Raised-cosine time envelope: 0 before onset, 1 at peak, 0 at onset + duration.

    Parameters
    ----------
    hours : ndarray
        Time [h after the reference time].
    onset, peak, duration : float
        [h].

    Returns
    -------
    ndarray
        Factor in [0, 1].
    """
    h = np.asarray(hours, dtype=float)
    end = onset + duration
    rise = 0.5 * (1.0 - np.cos(np.pi * np.clip((h - onset) / max(peak - onset, 1e-9), 0.0, 1.0)))
    fall = 0.5 * (1.0 + np.cos(np.pi * np.clip((h - peak) / max(end - peak, 1e-9), 0.0, 1.0)))
    return np.where(h <= peak, rise, fall)


def track_position(track: tuple[tuple[float, float, float], ...], hours: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Storm centre (lon, lat) [degrees] at ``hours``, linear between waypoints."""
    t = np.array([w[0] for w in track], dtype=float)
    return (np.interp(hours, t, [w[1] for w in track]), np.interp(hours, t, [w[2] for w in track]))


def _to_utc_naive(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _terrain_on(terrain: xr.Dataset | xr.DataArray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Terrain height [m] averaged to the forecast grid; 0 outside the terrain."""
    elev = terrain["elevation"] if isinstance(terrain, xr.Dataset) else terrain
    if elev.sizes.get("latitude", 0) > 1 and lat.size > 1:
        t_res = float(abs(elev["latitude"][1] - elev["latitude"][0]))
        factor = max(1, round(float(abs(lat[1] - lat[0])) / t_res / 2))
        elev = elev.coarsen(latitude=factor, longitude=factor, boundary="trim").mean()
    out = elev.interp(latitude=lat, longitude=lon, method="linear").fillna(0.0)
    return np.clip(out.transpose("latitude", "longitude").values.astype(float), 0.0, None)


def synthetic_storm(params: StormParams, *, lon: np.ndarray, lat: np.ndarray, reference_time,
                    steps: int, step_hours: float = 1, terrain: xr.Dataset | xr.DataArray | None = None,
                    members: int = 0, seed: int = 0, source: str = "synthetic") -> xr.Dataset:
    """Rain of a parametric storm on a regular grid, in the forecast contract.

    Parameters
    ----------
    params : StormParams
        The storm.
    lon, lat : array_like
        Grid longitudes and latitudes [degrees], ascending, longitude in −180..180.
    reference_time : datetime, str or datetime64
        Forecast reference time (UTC; timezone-aware values are converted).
    steps : int
        Number of intervals.
    step_hours : float
        Interval length [h]; ``time`` is the end of each interval.
    terrain : xarray.Dataset or DataArray, optional
        ``elevation`` [m] on (latitude, longitude) for orographic enhancement.
    members : int
        0: one deterministic forecast, no ``member`` dim; n > 0: n members
        (member 0 the control, equal to the deterministic forecast).
    seed : int
        Seed of the convective cells and the ensemble perturbations.
    source : str
        The ``source`` attribute.

    Returns
    -------
    xarray.Dataset
        ``precipitation`` [mm per interval], float32, dims ``(member?, time,
        latitude, longitude)``.

    Raises
    ------
    ForecastError
        Bad grid, steps or parameters.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    problems = []
    if lon.ndim != 1 or lat.ndim != 1 or lon.size < 1 or lat.size < 1:
        problems.append("lon and lat must be non-empty 1-D arrays")
    elif np.any(np.diff(lon) <= 0) or np.any(np.diff(lat) <= 0):
        problems.append("lon and lat must be strictly ascending")
    elif lon.min() < -180 or lon.max() > 180 or abs(lat).max() > 90:
        problems.append("lon must be in −180..180 and lat in −90..90")
    if int(steps) < 1 or not step_hours > 0:
        problems.append(f"steps must be ≥ 1 and step_hours > 0 (got {steps}, {step_hours})")
    if int(members) < 0:
        problems.append(f"members must be ≥ 0 (got {members})")
    if problems:
        raise ForecastError("; ".join(problems), file="synthetic storm")
    ref = _to_utc_naive(reference_time)
    n_mem = max(int(members), 1)
    # sub-steps per interval: midpoint rule at ≤ 30 min resolution
    n_sub = max(1, math.ceil(step_hours * 2))
    ends = (np.arange(int(steps)) + 1.0) * step_hours
    hours = ends[:, None] - step_hours + (np.arange(n_sub) + 0.5) * step_hours / n_sub  # (time, sub)

    # per-member perturbations and convective cells (member 0: control; each member its own stream)
    dx = np.zeros(n_mem)
    dy = np.zeros(n_mem)
    gain = np.ones(n_mem)
    k = int(params.cells)
    cx, cy, cr, ca, cp, cph = (np.zeros((n_mem, k)) for _ in range(6))
    for m in range(n_mem):  # a handful of members; draws only
        rng = np.random.default_rng([int(seed), m])
        cx[m] = rng.normal(0.0, params.cell_spread_km, k)
        cy[m] = rng.normal(0.0, params.cell_spread_km, k)
        cr[m] = params.cell_radius_km * rng.uniform(0.6, 1.4, k)
        ca[m] = params.cell_rate * rng.uniform(0.5, 1.5, k)
        cp[m] = rng.uniform(4.0, 10.0, k)
        cph[m] = rng.uniform(0.0, 2.0 * np.pi, k)
        if m > 0:
            dx[m], dy[m] = rng.normal(0.0, params.track_spread_km, 2)
            gain[m] = float(np.exp(rng.normal(0.0, params.intensity_spread)))

    clon, clat = track_position(params.track, hours)  # (time, sub)
    coslat = np.cos(np.radians(lat))[:, None]  # (lat, 1)
    # distances [km] of every cell from the (perturbed) centre: (member, time, sub, lat, lon)
    ex = ((lon[None, :] - clon[..., None, None]) * _KM_PER_DEG * coslat)[None] - dx[:, None, None, None, None]
    ey = ((lat[:, None] - clat[..., None, None]) * _KM_PER_DEG)[None] - dy[:, None, None, None, None]
    ey = np.broadcast_to(ey, np.broadcast_shapes(ex.shape, ey.shape))
    r2 = ex * ex + ey * ey
    rate = params.peak_rate * np.exp(-0.5 * r2 / params.radius_km ** 2)
    h5 = hours[None, :, :, None, None]
    for j in range(k):  # the few convective cells
        pulse = 0.5 + 0.5 * np.sin(2.0 * np.pi * h5 / cp[:, j, None, None, None, None]
                                   + cph[:, j, None, None, None, None])
        d2 = (ex - cx[:, j, None, None, None, None]) ** 2 + (ey - cy[:, j, None, None, None, None]) ** 2
        rate = rate + ca[:, j, None, None, None, None] * pulse * np.exp(
            -0.5 * d2 / cr[:, j, None, None, None, None] ** 2)
    rate = rate * gain[:, None, None, None, None]
    rate = rate + params.background_rate * np.exp(-0.5 * r2 / params.shield_radius_km ** 2)
    rate = rate * envelope(hours, params.onset_hours, params.peak_hours, params.duration_hours)[
        None, :, :, None, None]
    if terrain is not None:
        z = _terrain_on(terrain, lon, lat)
        rate = rate * (1.0 + params.orographic_factor * z / 1000.0)
    amount = (rate.mean(axis=2) * step_hours).astype(np.float32)  # (member, time, lat, lon)

    times = (ref + pd.to_timedelta(ends, unit="h")).to_numpy().astype("datetime64[ns]")
    coords = {
        "time": ("time", times, {"standard_name": "time", "long_name": "end of the interval",
                                 "axis": "T"}),
        "latitude": ("latitude", lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "longitude": ("longitude", lon, {"standard_name": "longitude", "units": "degrees_east",
                                         "axis": "X"}),
    }
    dims: tuple[str, ...] = ("time", "latitude", "longitude")
    data = amount[0]
    if members > 0:
        coords["member"] = ("member", np.arange(n_mem, dtype=np.int32),
                            {"standard_name": "realization", "long_name": "ensemble member (0: control)"})
        dims = ("member", *dims)
        data = amount
    var_attrs = {"standard_name": "lwe_thickness_of_precipitation_amount",
                 "long_name": "precipitation amount in the interval ending at time", "units": "mm",
                 "cell_methods": "time: sum"}
    step_attr: int | float = int(step_hours) if float(step_hours).is_integer() else float(step_hours)
    return xr.Dataset(
        {VARIABLE: (dims, data, var_attrs)}, coords=coords,
        attrs={"Conventions": "CF-1.8",
               "title": "synthetic storm (parametric; not a real forecast)",
               "forecast_reference_time": ref.strftime("%Y-%m-%dT%H:%M:%SZ"),
               "source": source, "step_hours": step_attr},
    )


def write_forecast(ds: xr.Dataset, path: Path | str) -> Path:
    """Write a contract forecast as compressed CF NetCDF, atomically and byte-deterministically.

    ``time`` is encoded as hours since the reference time (proleptic
    Gregorian), ``precipitation`` as zlib-compressed float32 with fixed
    chunks (one time step per chunk); no history or time stamp is written,
    so the same dataset always gives the same bytes. The file is written to a
    temporary file in the same folder and renamed into place.

    Parameters
    ----------
    ds : xarray.Dataset
        A forecast in the contract (see :func:`synthetic_storm`).
    path : Path or str
        Destination (parent folders are created).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ForecastError
        The dataset lacks the contract's variable or reference time, or the
        file cannot be written.
    """
    path = Path(path)
    if VARIABLE not in ds or "forecast_reference_time" not in ds.attrs:
        raise ForecastError(f"the dataset has no '{VARIABLE}' variable or no forecast_reference_time "
                            "attribute; build it with synthetic_storm() or forecasts.normalize()",
                            file=str(path))
    ref = _to_utc_naive(ds.attrs["forecast_reference_time"])
    hours = (ds["time"].values - ref.to_datetime64()) / np.timedelta64(1, "h")
    whole = bool(np.all(np.asarray(hours) == np.round(hours)))
    chunks = tuple(1 if d in ("member", "time") else ds.sizes[d] for d in ds[VARIABLE].dims)
    encoding: dict[str, dict] = {
        VARIABLE: {"zlib": True, "complevel": 4, "shuffle": True, "dtype": "float32",
                   "_FillValue": np.float32(np.nan), "chunksizes": chunks},
        "time": {"units": f"hours since {ref:%Y-%m-%d %H:%M:%S}", "calendar": "proleptic_gregorian",
                 "dtype": "int32" if whole else "float64", "_FillValue": None},
        "latitude": {"_FillValue": None}, "longitude": {"_FillValue": None},
    }
    if "member" in ds.coords:
        encoding["member"] = {"_FillValue": None}
    out = ds.copy()
    for var in out.variables.values():
        var.encoding = {}
    out.attrs.pop("history", None)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise ForecastError(f"cannot write here ({exc.strerror}); choose a writable folder",
                            file=str(path)) from None
    tmp = Path(name)
    try:
        out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ForecastError(f"cannot write the forecast ({exc.strerror or exc}); check the free space "
                            "and permissions of the folder", file=str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def demo_grid(bounds: tuple[float, float, float, float] = DEMO_BOUNDS, *, margin: float = DEMO_MARGIN_DEG,
              res: float = DEMO_GRID_DEG) -> tuple[np.ndarray, np.ndarray]:
    """A regular grid [degrees] covering ``bounds`` with at least ``margin`` on each side.

    Points sit on multiples of ``res``; returns (lon, lat), ascending.
    """
    w, s, e, n = bounds
    lon = np.arange(math.floor(round((w - margin) / res, 6)), math.ceil(round((e + margin) / res, 6)) + 1)
    lat = np.arange(math.floor(round((s - margin) / res, 6)), math.ceil(round((n + margin) / res, 6)) + 1)
    return np.round(lon * res, 6), np.round(lat * res, 6)


def demo_storm_params() -> StormParams:
    """The Yagi-like demo storm over Bảo Yên / Phúc Khánh (reference 2024-09-07T12Z).

    The remnant of typhoon Yagi comes in from the Gulf of Tonkin coast, slows
    down over the demo area and crosses Phúc Khánh (104.565 E, 22.178 N) in
    the night of 9→10 September local time (≈ 2024-09-09T20Z, 56 h after the
    reference time), then drifts north-west and dies out. Peak hourly rain
    over Phúc Khánh 50–60 mm/h (57 mm/h observed at Làng Nủ), 3-day totals
    400–650 mm along the track (633 mm observed) and far less away from it
    (SCIENCE.md §5).
    """
    return StormParams(
        track=((0.0, 107.00, 21.10), (24.0, 105.90, 21.45), (36.0, 105.30, 21.78),
               (44.0, 104.87, 22.02), (56.0, 104.565, 22.178), (68.0, 104.26, 22.34),
               (72.0, 104.19, 22.38)),
        radius_km=12.0, peak_rate=50.0, onset_hours=30.0, peak_hours=56.0, duration_hours=42.0,
        background_rate=0.6, shield_radius_km=120.0, cells=6, cell_spread_km=18.0, cell_radius_km=5.0,
        cell_rate=10.0, orographic_factor=0.12, track_spread_km=12.0, intensity_spread=0.15,
    )


def demo_storm(*, bounds: tuple[float, float, float, float] = DEMO_BOUNDS,
               terrain: xr.Dataset | xr.DataArray | None = None, members: int = 0, seed: int = 2024,
               source: str = "demo") -> xr.Dataset:
    """The demo forecast: 72 hourly steps from 2024-09-07T12Z on a 0.05° grid around ``bounds``."""
    lon, lat = demo_grid(bounds)
    return synthetic_storm(demo_storm_params(), lon=lon, lat=lat, reference_time=DEMO_REFERENCE_TIME,
                           steps=DEMO_STEPS, step_hours=DEMO_STEP_HOURS, terrain=terrain, members=members,
                           seed=seed, source=source)
