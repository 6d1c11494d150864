"""The forecast grid: find latitude/longitude, order them, cut the region.

Every reader's grid ends as 1-D ``latitude`` and ``longitude`` coordinates,
both ascending, longitude in −180..180, cut to the region's bounds plus a
margin. A 0..360 grid crossing the region is rolled by index (no copy of the
globe), a north-to-south grid is reversed, and only the cells whose extent
touches the region (plus margin) are read.

Curvilinear grids (WRF Lambert conformal, rotated poles) and unstructured
ones (ECMWF reduced Gaussian) are refused with the fix: regrid to regular
latitude/longitude first.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from ewarn.forecasts.errors import ForecastError

Bounds = tuple[float, float, float, float]
"""(west, south, east, north) [degrees], longitude in −180..180 (as shapely's ``total_bounds``)."""

_LAT_NAMES = ("latitude", "lat", "nav_lat", "XLAT", "XLAT_M", "g0_lat_0", "lat_0")
_LON_NAMES = ("longitude", "lon", "nav_lon", "XLONG", "XLONG_M", "g0_lon_1", "lon_0")
_LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen"}
_LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese", "degreee"}
#: 2-D coordinates that vary less than this [degrees] along the other axis are rectilinear.
RECTILINEAR_TOLERANCE_DEG = 1e-3


def _candidates(ds: xr.Dataset | xr.DataArray) -> dict[Hashable, xr.DataArray]:
    out: dict[Hashable, xr.DataArray] = dict(ds.coords)
    if isinstance(ds, xr.Dataset):
        out.update(ds.data_vars)
    return out


def find_axis(sources: Sequence[xr.Dataset | xr.DataArray], axis: str) -> Hashable | None:
    """Name of the latitude (``axis='lat'``) or longitude variable, or None.

    Looks at CF ``standard_name``, then usual names, then ``units``.
    """
    std = "latitude" if axis == "lat" else "longitude"
    units = _LAT_UNITS if axis == "lat" else _LON_UNITS
    names = _LAT_NAMES if axis == "lat" else _LON_NAMES
    for src in sources:
        found = _candidates(src)
        for name, var in found.items():
            if var.attrs.get("standard_name") == std:
                return name
        for name in names:
            if name in found:
                return name
        for name, var in found.items():
            if str(var.attrs.get("units", "")).lower().replace(" ", "_") in units:
                return name
    return None


def wrap_longitude(lon: np.ndarray) -> np.ndarray:
    """Longitudes in [−180, 180) [degrees]."""
    return (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0


def cell_edges(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edges of cells around ascending ``centres`` (midpoints)."""
    c = np.asarray(centres, dtype=float)
    if c.size < 2:
        return c.copy(), c.copy()
    mid = (c[1:] + c[:-1]) / 2
    lo = np.concatenate([[c[0] - (c[1] - c[0]) / 2], mid])
    hi = np.concatenate([mid, [c[-1] + (c[-1] - c[-2]) / 2]])
    return lo, hi


def covers(lat: np.ndarray, lon: np.ndarray, bounds: Bounds, tol: float = 1e-6) -> bool:
    """Whether cells centred on ascending ``lat``/``lon`` cover ``bounds`` entirely."""
    west, south, east, north = bounds
    lat_lo, lat_hi = cell_edges(lat)
    lon_lo, lon_hi = cell_edges(lon)
    if lat.size == 0 or lon.size == 0:
        return False
    return bool(lat_lo[0] <= south + tol and lat_hi[-1] >= north - tol
                and lon_lo[0] <= west + tol and lon_hi[-1] >= east - tol)


def to_rectilinear(da: xr.DataArray, raw: xr.Dataset, *, file: str = "", variable: str = ""
                   ) -> xr.DataArray:
    """``da`` on dims ``latitude``/``longitude`` with 1-D coordinates of those names.

    Parameters
    ----------
    da : DataArray
        The precipitation variable as read.
    raw : Dataset
        The dataset it came from (for coordinates stored as variables).

    Raises
    ------
    ForecastError
        No latitude/longitude, or a curvilinear or unstructured grid.
    """
    if all(d in da.dims and d in da.coords and da[d].dims == (d,) for d in ("latitude", "longitude")):
        return da  # already on the contract's axes (cfgrib, CF files that use these names)
    lat_name = find_axis([da, raw], "lat")
    lon_name = find_axis([da, raw], "lon")
    if lat_name is None or lon_name is None:
        raise ForecastError(
            "has no latitude/longitude coordinates (looked for standard_name latitude/longitude, "
            "units degrees_north/degrees_east, names lat/lon); fix the file's coordinates",
            file=file, variable=variable)
    lat = da.coords[lat_name] if lat_name in da.coords else raw[lat_name]
    lon = da.coords[lon_name] if lon_name in da.coords else raw[lon_name]
    # 2-D coordinates may repeat over time (WRF XLAT(Time, y, x)): take the first
    if lat.ndim > 2:
        lat = lat.isel({d: 0 for d in lat.dims[:-2]})
    if lon.ndim > 2:
        lon = lon.isel({d: 0 for d in lon.dims[:-2]})
    if lat.ndim == 1 and lon.ndim == 1:
        ydim, xdim = lat.dims[0], lon.dims[0]
        if ydim == xdim:
            raise ForecastError(
                f"is on an unstructured grid (latitude and longitude both along '{ydim}', e.g. a "
                "reduced Gaussian grid); regrid it to regular latitude/longitude first (e.g. "
                "'cdo remapbil,r3600x1800' or grid=0.1/0.1 in a MARS request)",
                file=file, variable=variable)
        lat_v, lon_v = np.asarray(lat.values, dtype=float), np.asarray(lon.values, dtype=float)
    elif lat.ndim == 2 and lon.ndim == 2 and lat.dims == lon.dims:
        ydim, xdim = lat.dims
        lat2, lon2 = np.asarray(lat.values, dtype=float), np.asarray(lon.values, dtype=float)
        d_lat = np.nanmax(np.abs(lat2 - lat2[:, :1]))
        d_lon = np.nanmax(np.abs(wrap_longitude(lon2 - lon2[:1, :])))
        if d_lat > RECTILINEAR_TOLERANCE_DEG or d_lon > RECTILINEAR_TOLERANCE_DEG:
            raise ForecastError(
                f"is on a curvilinear grid (latitude varies by up to {d_lat:.3g}° along '{xdim}', "
                f"longitude by {d_lon:.3g}° along '{ydim}', e.g. a Lambert conformal WRF domain); "
                "regrid it to regular latitude/longitude first (e.g. 'cdo remapbil' or xesmf)",
                file=file, variable=variable)
        lat_v, lon_v = lat2[:, 0], lon2[0, :]
    else:
        raise ForecastError(
            f"has latitude {tuple(lat.dims)} and longitude {tuple(lon.dims)} that do not form a "
            "grid; regrid it to regular latitude/longitude first", file=file, variable=variable)
    if ydim not in da.dims or xdim not in da.dims:
        raise ForecastError(f"is not on the latitude/longitude grid (dims {tuple(da.dims)}); "
                            "choose the precipitation variable with 'variable' in the profile",
                            file=file, variable=variable)
    drop = [c for c in da.coords if set(da[c].dims) & {ydim, xdim} or c in (lat_name, lon_name)]
    da = da.drop_vars(drop).rename({ydim: "latitude", xdim: "longitude"})
    return da.assign_coords(latitude=("latitude", lat_v), longitude=("longitude", lon_v))


def _runs(idx: np.ndarray) -> list[slice]:
    """``idx`` (positions along one axis) as slices of consecutive positions (step +1 or −1)."""
    out: list[slice] = []
    i, n = 0, idx.size
    while i < n:
        j = i
        if i + 1 < n and abs(int(idx[i + 1]) - int(idx[i])) == 1:
            step = int(idx[i + 1]) - int(idx[i])
            j = i + 1
            while j + 1 < n and int(idx[j + 1]) - int(idx[j]) == step:
                j += 1
        a, b = int(idx[i]), int(idx[j])
        out.append(slice(a, b + 1) if b >= a else slice(a, b - 1 if b > 0 else None, -1))
        i = j + 1
    return out


def _take(da: xr.DataArray, dim: str, idx: np.ndarray) -> xr.DataArray:
    """``da.isel({dim: idx})`` read as a few slices (cheap on lazy files)."""
    runs = _runs(idx)
    if len(runs) == 1:
        return da.isel({dim: runs[0]})
    if len(runs) <= 4:
        return xr.concat([da.isel({dim: r}) for r in runs], dim=dim)
    return da.isel({dim: idx})


def _at_least_two(keep: np.ndarray) -> np.ndarray:
    """``keep`` widened to two cells when it holds one (so cell sizes stay known)."""
    hit = np.flatnonzero(keep)
    if hit.size == 1 and keep.size > 1:
        keep = keep.copy()
        keep[hit[0] + 1 if hit[0] + 1 < keep.size else hit[0] - 1] = True
    return keep


def select_region(da: xr.DataArray, bounds: Bounds | None, margin_deg: float, *, file: str = "",
                  variable: str = "") -> xr.DataArray:
    """Order the grid ascending (longitude in −180..180) and cut it to the region.

    Parameters
    ----------
    da : DataArray
        On 1-D ``latitude``/``longitude`` (from :func:`to_rectilinear`).
    bounds : (west, south, east, north), optional
        Region bounds [degrees]; None keeps the whole grid.
    margin_deg : float
        Kept around the bounds [degrees]; every cell whose extent touches the
        widened box is kept, so a coarse grid still covers a small region,
        and at least two cells per axis (the cell size stays known).

    Raises
    ------
    ForecastError
        Repeated latitudes, or no cell near the region.
    """
    lat = np.asarray(da["latitude"].values, dtype=float)
    lon = wrap_longitude(da["longitude"].values)
    lat_order = np.argsort(lat, kind="stable")
    if np.any(np.diff(lat[lat_order]) <= 0):
        raise ForecastError("has repeated latitudes; fix the file's grid", file=file, variable=variable)
    lon_order = np.argsort(lon, kind="stable")
    keep_lon = np.concatenate([[True], np.diff(lon[lon_order]) > 1e-9])  # 0 and 360 are one column
    lon_order = lon_order[keep_lon]
    lat_s, lon_s = lat[lat_order], lon[lon_order]
    if bounds is not None:
        west, south, east, north = bounds
        if not (west <= east and south <= north):
            raise ForecastError(f"region bounds {bounds} are not (west, south, east, north)",
                                file=file, variable=variable)
        lat_lo, lat_hi = cell_edges(lat_s)
        lon_lo, lon_hi = cell_edges(lon_s)
        m = margin_deg
        in_lat = (lat_hi >= south - m) & (lat_lo <= north + m)
        in_lon = (lon_hi >= west - m) & (lon_lo <= east + m)
        if not in_lat.any() or not in_lon.any():
            raise ForecastError(
                f"does not cover the region: the grid spans longitude {lon_s.min():g}..{lon_s.max():g}, "
                f"latitude {lat_s.min():g}..{lat_s.max():g}; the region is longitude {west:g}..{east:g}, "
                f"latitude {south:g}..{north:g}. This forecast is for another area: ingest one for the "
                "region (or check the workspace's region)", file=file, variable=variable)
        lat_order, lon_order = lat_order[_at_least_two(in_lat)], lon_order[_at_least_two(in_lon)]
    identity_lat = np.array_equal(lat_order, np.arange(lat.size))
    identity_lon = np.array_equal(lon_order, np.arange(lon.size))
    if identity_lat and identity_lon and np.array_equal(lon, da["longitude"].values):
        return da  # already ascending, in −180..180 and inside the region: nothing to cut
    out = _take(_take(da, "latitude", lat_order), "longitude", lon_order)
    return out.assign_coords(latitude=("latitude", lat[lat_order]), longitude=("longitude", lon[lon_order]))
