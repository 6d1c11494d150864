"""A synthetic nationwide case for the hazard benchmarks: rain grid, Voronoi communes, region folder.

Everything is seeded and vectorized, so the case is the same on every run and
builds in seconds:

* :func:`grid` — cell centres of a regular lon/lat grid over 102–110 E, 8–24 N
  (0.01°: 1600 × 800 cells; 0.1°: 160 × 80).
* :func:`storm_rain` — hourly rain [mm] of a few moving storms, each a
  Gaussian core, a wide stratiform shield and pulsing convective cells (the
  shape of :func:`ewarn.forecasts.synthetic.synthetic_storm`). Each Gaussian
  uses the cosine of latitude at its own centre, so it is separable and one
  time step is ONE matrix product ``Y @ X.T`` of ``(n_lat, k)`` by
  ``(k, n_lon)`` profiles: 72 steps on 1.28 M cells take about a second,
  where ``synthetic_storm`` would need several GB of float64 temporaries.
  Ensemble members shift every track and scale every intensity.
* :func:`voronoi_communes` — about 3,300 communes: the Voronoi cells
  (:func:`shapely.voronoi_polygons`) of a jittered 40 × 83 lattice of seeded
  points, clipped to the box (no land mask: every grid cell is covered, the
  hardest case for the zonal step). Codes are 5-digit strings; names
  ``Xã 0001``…; provinces are the 34 provinces of 2025 assigned by latitude
  rank (north to south, the order of their codes), each commune pinned to one
  pre-2025 province.
* :func:`forecast_dataset` — the rain in the forecast contract (DESIGN.md).
* :func:`nationwide_region` — the communes written once with
  :func:`ewarn.region.write_region` (no terrain, no households), then loaded.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from ewarn.region import Region, provinces_2025, write_region

__all__ = ["BOX", "forecast_dataset", "grid", "nationwide_region", "storm_rain", "voronoi_communes"]

#: (west, south, east, north) of the case [degrees].
BOX = (102.0, 8.0, 110.0, 24.0)

#: Kilometres per degree of latitude (mean Earth radius 6371 km × π/180).
_KM_PER_DEG = 111.195

#: Storm tracks: (hours after the reference time, lon, lat) at the start and end of the forecast.
_TRACKS = (
    ((0.0, 109.5, 17.0), (72.0, 104.0, 21.5)),   # a typhoon remnant crossing the north
    ((0.0, 108.8, 13.0), (72.0, 106.5, 15.5)),   # a central-coast system
    ((0.0, 104.0, 10.0), (72.0, 107.0, 11.5)),   # a southern squall line
    ((0.0, 103.0, 23.5), (72.0, 106.0, 19.0)),   # a northern trough
)


def grid(step: float = 0.01, box: tuple[float, float, float, float] = BOX) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres of a regular grid whose edges are the box.

    Returns
    -------
    lat, lon : numpy.ndarray
        Ascending centres [degrees_north], [degrees_east].
    """
    w, s, e, n = box
    nlat, nlon = round((n - s) / step), round((e - w) / step)
    lat = np.round(s + step * (np.arange(nlat) + 0.5), 6)
    lon = np.round(w + step * (np.arange(nlon) + 0.5), 6)
    return lat, lon


def storm_rain(lat: np.ndarray, lon: np.ndarray, hours: int = 72, *, members: int = 0, seed: int = 0,
               cells: int = 6) -> np.ndarray:
    """Hourly rain of a few moving storms [mm per hour], float32.

    Parameters
    ----------
    lat, lon : numpy.ndarray
        Ascending cell centres [degrees].
    hours : int
        Number of hourly steps (``time`` is the end of each hour).
    members : int
        0: one field ``(time, lat, lon)``; n: ``(member, time, lat, lon)``,
        member 0 the control.
    seed : int
        Seed of the convective cells and member perturbations.
    cells : int
        Convective cells per storm.

    Returns
    -------
    numpy.ndarray
        float32 rain [mm]; amounts below 0.05 mm are set to 0 (dry areas).
    """
    rng = np.random.default_rng(seed)
    n_storm = len(_TRACKS)
    k = n_storm * (2 + cells)  # core, shield, cells
    # per-storm and per-cell draws (shared by members)
    radius = rng.uniform(15.0, 35.0, n_storm)  # [km]
    peak = rng.uniform(8.0, 20.0, n_storm)  # [mm/h]
    shield_r = rng.uniform(120.0, 220.0, n_storm)
    shield_rate = rng.uniform(0.5, 1.5, n_storm)
    c_dx, c_dy = rng.normal(0.0, 40.0, (2, n_storm, cells))
    c_r = rng.uniform(6.0, 15.0, (n_storm, cells))
    c_rate = rng.uniform(5.0, 25.0, (n_storm, cells))
    c_per = rng.uniform(4.0, 10.0, (n_storm, cells))
    c_ph = rng.uniform(0.0, 2 * np.pi, (n_storm, cells))
    n_mem = max(members, 1)
    shift = np.zeros((n_mem, n_storm, 2))
    gain = np.ones((n_mem, n_storm))
    if members:
        mrng = np.random.default_rng([seed, 1])
        shift[1:] = mrng.normal(0.0, 30.0, (n_mem - 1, n_storm, 2))  # [km]
        gain[1:] = np.exp(mrng.normal(0.0, 0.25, (n_mem - 1, n_storm)))

    t = np.arange(hours) + 0.5  # mid-interval [h]
    (t0, x0, y0), (t1, x1, y1) = np.asarray(_TRACKS).transpose(1, 2, 0)
    frac = np.clip((t[:, None] - t0) / (t1 - t0), 0.0, 1.0)  # (time, storm)
    cx = x0 + frac * (x1 - x0)
    cy = y0 + frac * (y1 - y0)
    env = np.sin(np.pi * np.clip(t / hours, 0, 1))[:, None] ** 2 * np.ones(n_storm)  # (time, storm)

    # blob centres [deg], widths [km], amplitudes [mm/h]: (member, time, k)
    def stack(core: np.ndarray, shield: np.ndarray, cell: np.ndarray) -> np.ndarray:
        shape = (n_mem, hours, n_storm)
        parts = [np.broadcast_to(core, shape)[..., None], np.broadcast_to(shield, shape)[..., None],
                 np.broadcast_to(cell, (*shape, cells))]
        return np.concatenate(parts, axis=-1).reshape(n_mem, hours, k)

    coslat = np.cos(np.radians(cy))[None]  # (1, time, storm)
    sx = shift[:, None, :, 0] / (_KM_PER_DEG * coslat)  # (member, time, storm) [deg]
    sy = shift[:, None, :, 1] / _KM_PER_DEG
    bx = stack(cx + sx, cx + sx, (cx + sx)[..., None] + c_dx / (_KM_PER_DEG * coslat[..., None]))
    by = stack(cy + sy, cy + sy, (cy + sy)[..., None] + c_dy / _KM_PER_DEG)
    zeros = np.zeros((n_mem, hours, n_storm))
    br = stack(zeros + radius, zeros + shield_r, np.broadcast_to(c_r, (n_mem, hours, n_storm, cells)))
    pulse = 0.5 + 0.5 * np.sin(2 * np.pi * t[:, None, None] / c_per + c_ph)  # (time, storm, cells)
    g = gain[:, None, :] * env[None]  # (member, time, storm)
    ba = stack(g * peak, g * shield_rate, g[..., None] * c_rate * pulse)
    cos_b = np.repeat(coslat, 2 + cells, axis=-1)  # (1, time, k): cos of each blob's storm centre

    out = np.empty((n_mem, hours, lat.size, lon.size), np.float32)
    for m in range(n_mem):  # members × hours matrix products; nothing loops over cells
        for h in range(hours):
            ry = ((lat[:, None] - by[m, h]) * _KM_PER_DEG) / br[m, h]  # (lat, k)
            rx = ((lon[:, None] - bx[m, h]) * _KM_PER_DEG * cos_b[0, h]) / br[m, h]  # (lon, k)
            yprof = (np.exp(-0.5 * ry * ry) * ba[m, h]).astype(np.float32)
            xprof = np.exp(-0.5 * rx * rx).astype(np.float32)
            np.matmul(yprof, xprof.T, out=out[m, h])
    out[out < 0.05] = 0.0
    return out if members else out[0]


def forecast_dataset(rain: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                     reference_time: str = "2024-09-07T00:00") -> xr.Dataset:
    """Rain [mm per hour] in the forecast contract (DESIGN.md "Forecast")."""
    nt = rain.shape[-3]
    ref = pd.Timestamp(reference_time)
    times = (ref + pd.to_timedelta(np.arange(1, nt + 1), unit="h")).to_numpy().astype("datetime64[ns]")
    dims: tuple[str, ...] = ("time", "latitude", "longitude")
    coords: dict = {"time": times, "latitude": ("latitude", lat, {"units": "degrees_north"}),
                    "longitude": ("longitude", lon, {"units": "degrees_east"})}
    if rain.ndim == 4:
        dims = ("member", *dims)
        coords["member"] = np.arange(rain.shape[0], dtype=np.int32)
    attrs = {"standard_name": "lwe_thickness_of_precipitation_amount", "units": "mm",
             "cell_methods": "time: sum"}
    return xr.Dataset({"precipitation": (dims, rain, attrs)}, coords=coords,
                      attrs={"Conventions": "CF-1.8", "source": "synthetic-nationwide", "step_hours": 1,
                             "forecast_reference_time": ref.strftime("%Y-%m-%dT%H:%M:%SZ")})


def voronoi_communes(nx: int = 40, ny: int = 83, box: tuple[float, float, float, float] = BOX,
                     seed: int = 0) -> gpd.GeoDataFrame:
    """About ``nx × ny`` Voronoi communes tiling the box.

    Returns
    -------
    geopandas.GeoDataFrame
        ``code`` (5-digit str), ``name``, ``province``, ``legacy_province``,
        ``population``, polygon geometry (EPSG:4326), north to south.
    """
    rng = np.random.default_rng(seed)
    w, s, e, n = box
    dx, dy = (e - w) / nx, (n - s) / ny
    gx, gy = np.meshgrid(w + dx * (np.arange(nx) + 0.5), s + dy * (np.arange(ny) + 0.5))
    px = gx.ravel() + rng.uniform(-0.35, 0.35, gx.size) * dx
    py = gy.ravel() + rng.uniform(-0.35, 0.35, gy.size) * dy
    bbox = shapely.box(w, s, e, n)
    cells = shapely.voronoi_polygons(shapely.multipoints(np.c_[px, py]), extend_to=bbox, ordered=True)
    geoms = shapely.intersection(np.asarray(shapely.get_parts(cells)), bbox)
    order = np.lexsort((px, -py))  # north to south, then west to east
    geoms, py = geoms[order], py[order]
    nc = geoms.size
    prov = provinces_2025()
    group = np.minimum((np.arange(nc) * len(prov)) // nc, len(prov) - 1)  # latitude rank → province
    province = prov["name"].to_numpy()[group]
    legacy = prov["legacy_provinces"].str.split(";").str[0].to_numpy()[group]
    return gpd.GeoDataFrame(
        {"code": [f"{i + 1:05d}" for i in range(nc)], "name": [f"Xã {i + 1:04d}" for i in range(nc)],
         "province": province, "legacy_province": legacy,
         "population": rng.integers(2_000, 40_000, nc)},
        geometry=geoms, crs="EPSG:4326")


def nationwide_region(folder: Path, communes: gpd.GeoDataFrame | None = None) -> Region:
    """Write the communes as a region folder (no terrain, households, roads) and load it."""
    communes = voronoi_communes() if communes is None else communes
    dest = write_region(Path(folder) / "nationwide", name="Việt Nam (tổng hợp)", communes=communes,
                        description="synthetic nationwide Voronoi communes (benchmark)", overwrite=True)
    return Region.load(dest)
