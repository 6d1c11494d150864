"""Terrain derivatives: slope, D8 flow network, upstream area, streams, susceptibility.

Derived once per region from its elevation grid (``Region.terrain``:
``elevation`` [m] on ascending ``(latitude, longitude)``, EPSG:4326) and
cached in the workspace as NetCDF (:func:`terrain_for_region`).

Functions
---------
:func:`slope_degrees`
    Horn (1981) 3×3 slope with cell sizes in metres on a lon/lat grid.
:func:`derive_terrain`
    every derivative at once, as an ``xarray.Dataset``.
:func:`flow_network`
    the ``pyflwdir.FlwdirRaster`` rebuilt from a derived dataset, for
    accumulating runoff along the network (flash flood model).
:func:`susceptibility_class`
    landslide susceptibility 1..5 from slope (and optional lithology and
    land-cover rasters).
:func:`terrain_for_region`
    the derived dataset of a region, cached and keyed by the DEM and settings.

Orientation of the flow directions
----------------------------------
``flow_direction`` holds pyflwdir's D8 codes **as on a north-up map**
(1 E, 2 SE, 4 S, 8 SW, 16 W, 32 NW, 64 N, 128 NE, 0 pit/outlet, 247 nodata), so
any GIS reading the NetCDF sees the documented meaning. Because the grid's
latitude ascends (row 0 = south), :func:`flow_network` swaps north and south
codes when it rebuilds the network, so that the returned ``FlwdirRaster``
works directly on arrays in the dataset's ``(latitude, longitude)`` order.

Numbers that are not definitions (stream threshold, flash-flood-prone basin
range, susceptibility breaks) come from ``tables/terrain.toml``
(:func:`terrain_parameters`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyflwdir
import xarray as xr

from ewarn.errors import EwarnError, Problem
from ewarn.hazard_models.tables import (
    TABLES_DIR,
    TableReader,
    load_cached,
    raise_if_problems,
)

if TYPE_CHECKING:
    from ewarn.region import Region

__all__ = [
    "D8_NODATA",
    "EARTH_RADIUS_M",
    "TerrainInputError",
    "TerrainParameters",
    "derive_terrain",
    "flow_network",
    "slope_degrees",
    "susceptibility_class",
    "terrain_cache_key",
    "terrain_for_region",
    "terrain_parameters",
]

TERRAIN_TABLE = TABLES_DIR / "terrain.toml"

#: Mean Earth radius [m] (IUGG R1 = 6,371,008.8 m, Moritz 2000, Geodetic Reference System 1980).
EARTH_RADIUS_M = 6_371_008.8

#: pyflwdir's D8 nodata code.
D8_NODATA = 247

#: Version of the derivation; part of the cache key (bump when the algorithm changes).
DERIVATION_VERSION = "1"

# pyflwdir D8 codes on a north-up grid ↔ the same directions on a south-up (latitude ascending)
# array: east/west stay, north and south swap (1 E, 2 SE, 4 S, 8 SW, 16 W, 32 NW, 64 N, 128 NE).
_FLIP_NS = np.arange(256, dtype=np.uint8)
_FLIP_NS[[2, 4, 8, 32, 64, 128]] = [128, 64, 32, 8, 4, 2]


class TerrainInputError(EwarnError):
    """A terrain grid or an optional raster these functions cannot use."""


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class TerrainParameters:
    """Recalibratable parameters of the terrain derivatives (``tables/terrain.toml``).

    Attributes
    ----------
    stream_threshold_km2 : float
        Upstream area at which a cell is on the stream network [km²].
    ffp_min_area_km2, ffp_max_area_km2 : float
        Upstream-area range of flash-flood-prone channels [km²].
    ffp_mean_slope_deg : float
        Least mean slope of the contributing area of a flash-flood-prone channel [deg].
    slope_breaks_deg : tuple of float
        Four increasing slope breaks of the susceptibility classes [deg]; a
        slope equal to a break takes the lower class.
    lithology_adjust, land_cover_adjust : dict of int to int
        Class shift per raster code (optional rasters).
    digest : str
        SHA-256 of the table file (part of the cache key).
    path : pathlib.Path
        The file the values were read from.
    """

    stream_threshold_km2: float
    ffp_min_area_km2: float
    ffp_max_area_km2: float
    ffp_mean_slope_deg: float
    slope_breaks_deg: tuple[float, ...]
    lithology_adjust: dict[int, int]
    land_cover_adjust: dict[int, int]
    digest: str
    path: Path


def terrain_parameters(path: Path | str | None = None) -> TerrainParameters:
    """Read and check the terrain parameters table.

    Parameters
    ----------
    path : path-like, optional
        A recalibrated copy of ``tables/terrain.toml``; default: the shipped file.

    Returns
    -------
    TerrainParameters
        Cached per file and modification time.

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Naming the file, the section and the field of every problem.
    """
    return load_cached(_parse_terrain_table, path, TERRAIN_TABLE)


def _parse_terrain_table(path: Path) -> TerrainParameters:
    t = TableReader(path)
    file, problems = t.file, t.problems
    section = t.section
    number = t.number
    def code_map(name: str) -> dict[int, int]:
        sec = section(name)
        codes, adjust = sec.get("codes", []), sec.get("adjust", [])
        ok = (isinstance(codes, list) and isinstance(adjust, list) and len(codes) == len(adjust)
              and all(isinstance(c, int) and not isinstance(c, bool) for c in codes)
              and all(isinstance(a, int) and not isinstance(a, bool) and -4 <= a <= 4 for a in adjust))
        if sec and not ok:
            problems.append(Problem(file, "codes and adjust must be lists of integers of the same length "
                                    "(adjust between -4 and 4)", f"[{name}]", "adjust"))
            return {}
        return dict(zip(codes, adjust, strict=True)) if sec else {}

    streams = section("streams")
    thr = number(streams, "streams", "threshold_km2", 1e-6, 1e6) if streams else np.nan
    ffp = section("flash_flood_prone")
    lo = number(ffp, "flash_flood_prone", "min_area_km2", 0.0, 1e7) if ffp else np.nan
    hi = number(ffp, "flash_flood_prone", "max_area_km2", 0.0, 1e7) if ffp else np.nan
    if ffp and lo > hi:
        problems.append(Problem(file, f"min_area_km2 ({lo:g}) is above max_area_km2 ({hi:g})",
                                "[flash_flood_prone]", "min_area_km2"))
    slope = number(ffp, "flash_flood_prone", "mean_slope_deg", 0.0, 90.0) if ffp else np.nan
    sus = section("susceptibility")
    breaks = sus.get("slope_breaks_deg")
    if sus and not (isinstance(breaks, list) and len(breaks) == 4
                    and all(isinstance(b, int | float) and not isinstance(b, bool) for b in breaks)
                    and all(0 <= a < b <= 90 for a, b in itertools.pairwise(breaks))
                    and breaks[0] >= 0):
        problems.append(Problem(file, f"is {breaks!r}; must be 4 increasing slopes in degrees (0..90)",
                                "[susceptibility]", "slope_breaks_deg"))
        breaks = [np.nan] * 4
    lith = code_map("lithology")
    land = code_map("land_cover")
    raise_if_problems(problems, file)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return TerrainParameters(stream_threshold_km2=thr, ffp_min_area_km2=lo, ffp_max_area_km2=hi,
                             ffp_mean_slope_deg=slope, slope_breaks_deg=tuple(float(b) for b in breaks),
                             lithology_adjust=lith, land_cover_adjust=land, digest=digest, path=path)


# --------------------------------------------------------------------------- grid geometry


def _axes(da: xr.DataArray | xr.Dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Ascending, regular latitude and longitude of a terrain grid [deg], checked."""
    for axis in ("latitude", "longitude"):
        if axis not in da.dims:
            raise TerrainInputError(
                f"{what} has no '{axis}' dimension (dims: {', '.join(map(str, da.dims))}); give the "
                "terrain as Region.terrain provides it: elevation on ascending (latitude, longitude)")
    lat = np.asarray(da["latitude"].values, dtype=np.float64)
    lon = np.asarray(da["longitude"].values, dtype=np.float64)
    for name, v in (("latitude", lat), ("longitude", lon)):
        d = np.diff(v)
        if v.size < 2 or np.any(d <= 0) or not np.allclose(d, d[0], rtol=1e-3, atol=0):
            raise TerrainInputError(
                f"{what}: the {name} axis must ascend in regular steps with at least 2 cells; sort it "
                f"(ds.sortby('{name}')) or resample the DEM to a regular EPSG:4326 grid")
    if np.any(np.abs(lat) > 90):
        raise TerrainInputError(f"{what}: latitudes outside -90..90; the terrain must be in EPSG:4326")
    return lat, lon


def _cell_metres(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, float]:
    """Cell width east–west per row and cell height north–south [m] on a spherical Earth.

    dx = R cos(φ) Δλ, dy = R Δφ (angles in radians), R = :data:`EARTH_RADIUS_M`.
    """
    dlat = float(np.mean(np.diff(lat)))
    dlon = float(np.mean(np.diff(lon)))
    dx = EARTH_RADIUS_M * np.cos(np.radians(lat)) * np.radians(dlon)
    dy = EARTH_RADIUS_M * np.radians(dlat)
    return dx, dy


# --------------------------------------------------------------------------- slope


def slope_degrees(elevation: xr.DataArray) -> xr.DataArray:
    """Slope [deg] of a lon/lat elevation grid by Horn's 3×3 method.

    With the 3×3 window ``a b c / d e f / g h i`` (rows north to south),

    ``∂z/∂x = ((c + 2f + i) − (a + 2d + g)) / (8 dx)``,
    ``∂z/∂y = ((a + 2b + c) − (g + 2h + i)) / (8 dy)``,
    ``slope = atan(hypot(∂z/∂x, ∂z/∂y))``

    (Horn, B. K. P. (1981), Hill shading and the reflectance map, Proc. IEEE
    69(1), 14–47). The cell sizes are in metres: ``dx = R cos(φ) Δλ`` per row
    and ``dy = R Δφ`` with ``R`` = 6,371,008.8 m, the mean Earth radius (a
    spherical Earth: under 0.5 % error in dx against the WGS84 ellipsoid).
    Edges are extended linearly (odd reflection), so a plane keeps its exact
    slope up to the border. NaN cells make their neighbours NaN.

    Parameters
    ----------
    elevation : xarray.DataArray
        Elevation [m] on ascending, regular ``(latitude, longitude)`` [deg].

    Returns
    -------
    xarray.DataArray
        Slope [deg], float32, same grid.

    Raises
    ------
    TerrainInputError
        When the grid is not an ascending regular lon/lat grid.
    """
    lat, lon = _axes(elevation, "elevation")
    if elevation.ndim != 2:
        raise TerrainInputError(f"elevation must be 2-D (latitude, longitude); it has dims "
                                f"{tuple(elevation.dims)}")
    z = np.asarray(elevation.transpose("latitude", "longitude").values, dtype=np.float64)
    dx, dy = _cell_metres(lat, lon)
    p = np.pad(z, 1, mode="reflect", reflect_type="odd")
    # Rows ascend in latitude: row r+1 is NORTH of row r.
    south, mid, north = p[:-2], p[1:-1], p[2:]
    east_col = slice(2, None)
    west_col = slice(None, -2)
    centre = slice(1, -1)
    gx = ((north[:, east_col] + 2 * mid[:, east_col] + south[:, east_col])
          - (north[:, west_col] + 2 * mid[:, west_col] + south[:, west_col])) / (8.0 * dx[:, None])
    gy = ((north[:, west_col] + 2 * north[:, centre] + north[:, east_col])
          - (south[:, west_col] + 2 * south[:, centre] + south[:, east_col])) / (8.0 * dy)
    slope = np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)
    coords = {"latitude": elevation["latitude"], "longitude": elevation["longitude"]}
    return xr.DataArray(slope, coords=coords,
                        dims=("latitude", "longitude"), name="slope",
                        attrs={"units": "degree", "long_name": "terrain slope (Horn 1981, 3x3)",
                               "source": "Horn (1981), Proc. IEEE 69(1):14-47; cell sizes on a sphere "
                                         "of radius 6371008.8 m"})


# --------------------------------------------------------------------------- susceptibility


def _code_shift(raster: xr.DataArray | np.ndarray, table: dict[int, int], what: str,
                shape: tuple[int, int]) -> np.ndarray:
    """Class shift per cell from an integer-coded raster (codes not in the table shift 0)."""
    arr = np.asarray(raster.values if isinstance(raster, xr.DataArray) else raster)
    if arr.shape != shape:
        raise TerrainInputError(f"the {what} raster has shape {arr.shape}, the terrain {shape}; resample "
                                f"it to the terrain grid (nearest neighbour) first")
    codes = np.where(np.isfinite(arr), arr, -1).astype(np.int64)
    keys = np.array(sorted(table), dtype=np.int64)
    vals = np.array([table[k] for k in sorted(table)], dtype=np.int64)
    if keys.size == 0:
        return np.zeros(shape, dtype=np.int64)
    pos = np.clip(np.searchsorted(keys, codes), 0, keys.size - 1)
    return np.where(keys[pos] == codes, vals[pos], 0)


def susceptibility_class(
    slope: xr.DataArray | np.ndarray,
    *,
    lithology: xr.DataArray | np.ndarray | None = None,
    land_cover: xr.DataArray | np.ndarray | None = None,
    params: TerrainParameters | None = None,
) -> np.ndarray:
    """Landslide susceptibility class 1 (very low) .. 5 (very high).

    The slope class comes from the breaks in ``tables/terrain.toml``
    [susceptibility] (default 10/20/30/40°; a slope equal to a break takes the
    lower class, so slopes ≤ 10° — LHASA v2's mask — are class 1). Optional
    lithology and land-cover rasters (integer codes on the same grid) shift
    the class by the table's ``adjust`` per code; the result is clipped to
    1..5. Cells with NaN slope are 0 (unknown).

    Parameters
    ----------
    slope : xarray.DataArray or numpy.ndarray
        Slope [deg].
    lithology, land_cover : array_like, optional
        Integer-coded rasters of the same shape ([lithology], [land_cover] codes).
    params : TerrainParameters, optional
        Default: :func:`terrain_parameters`.

    Returns
    -------
    numpy.ndarray of int8
        Classes 0..5, same shape as ``slope``.
    """
    p = params or terrain_parameters()
    s = np.asarray(slope.values if isinstance(slope, xr.DataArray) else slope, dtype=np.float64)
    cls = np.searchsorted(np.asarray(p.slope_breaks_deg), s, side="left").astype(np.int64) + 1
    if lithology is not None:
        cls = cls + _code_shift(lithology, p.lithology_adjust, "lithology", s.shape)
    if land_cover is not None:
        cls = cls + _code_shift(land_cover, p.land_cover_adjust, "land cover", s.shape)
    return np.where(np.isfinite(s), np.clip(cls, 1, 5), 0).astype(np.int8)


# --------------------------------------------------------------------------- flow network


def _transform(lat: np.ndarray, lon: np.ndarray) -> tuple[float, ...]:
    """Affine transform (a, b, c, d, e, f) of the ascending grid: row 0 is the SOUTHERN row."""
    dlat = float(np.mean(np.diff(lat)))
    dlon = float(np.mean(np.diff(lon)))
    return (dlon, 0.0, float(lon[0]) - dlon / 2, 0.0, dlat, float(lat[0]) - dlat / 2)


def flow_network(derived: xr.Dataset) -> pyflwdir.FlwdirRaster:
    """The D8 flow network of a derived terrain, as a ``pyflwdir.FlwdirRaster``.

    Rebuilt from ``flow_direction`` (milliseconds, no DEM processing). The
    raster works on arrays in the dataset's ``(latitude, longitude)`` order
    (latitude ascending), with cell areas in m² from the lon/lat transform
    (``latlon=True``), e.g. ``flw.accuflux(runoff_mm * flw.area)`` for
    upstream runoff volumes, ``flw.upstream_area("km2")``.

    Parameters
    ----------
    derived : xarray.Dataset
        Output of :func:`derive_terrain` (or :func:`terrain_for_region`).

    Returns
    -------
    pyflwdir.FlwdirRaster
    """
    if "flow_direction" not in derived:
        raise TerrainInputError("the dataset has no 'flow_direction'; derive it with "
                                "ewarn.hazard_models.terrain.derive_terrain first")
    lat, lon = _axes(derived["flow_direction"], "flow_direction")
    d8 = np.asarray(derived["flow_direction"].transpose("latitude", "longitude").values, dtype=np.uint8)
    return pyflwdir.from_array(_FLIP_NS[d8], ftype="d8", check_ftype=False,
                               transform=_transform(lat, lon), latlon=True)


# --------------------------------------------------------------------------- derivation


def derive_terrain(
    terrain: xr.Dataset | xr.DataArray,
    *,
    stream_threshold_km2: float | None = None,
    lithology: xr.DataArray | np.ndarray | None = None,
    land_cover: xr.DataArray | np.ndarray | None = None,
    params: TerrainParameters | None = None,
) -> xr.Dataset:
    """Every terrain derivative the hazard models need, from the elevation grid.

    * ``slope`` [deg]: :func:`slope_degrees` (Horn 1981).
    * ``flow_direction``: D8 from the depression-filled DEM (pyflwdir
      ``from_dem``: priority-flood filling of Wang & Liu 2006, every
      depression filled, outlets at the grid edge; each cell drains to the
      neighbour the flood reached it from, on sloping ground its lowest
      neighbour — the largest drop, diagonals not weighted by distance),
      codes as on a north-up map (module docstring); uint8.
    * ``cell_area`` [m²] and ``upstream_area`` [km²] (pyflwdir, lon/lat cell
      areas; the upstream area includes the cell itself).
    * ``upstream_slope`` [deg]: area-weighted mean slope of the contributing
      area (cell included), accumulated along the network.
    * ``stream``: upstream area ≥ ``stream_threshold_km2``.
    * ``flash_flood_prone``: stream cells whose upstream area lies in the
      table's range (1–1,000 km²) and whose ``upstream_slope`` reaches the
      table's mean slope (15°) — small steep basins.
    * ``susceptibility``: :func:`susceptibility_class`, 1..5 (0 = no data).

    Parameters
    ----------
    terrain : xarray.Dataset or xarray.DataArray
        ``elevation`` [m] on ascending, regular ``(latitude, longitude)``.
    stream_threshold_km2 : float, optional
        Channel-initiation area [km²]; default from ``tables/terrain.toml`` (0.5).
    lithology, land_cover : array_like, optional
        Integer-coded rasters on the terrain grid (see :func:`susceptibility_class`).
    params : TerrainParameters, optional
        Default: :func:`terrain_parameters`.

    Returns
    -------
    xarray.Dataset
        The variables above plus ``elevation``, on the terrain's grid; attrs
        ``stream_threshold_km2`` and the parameters table digest.

    Raises
    ------
    TerrainInputError
        When the grid is not an ascending regular lon/lat grid, has no
        elevation, or every elevation is missing.
    """
    p = params or terrain_parameters()
    if stream_threshold_km2 is not None:
        if not (isinstance(stream_threshold_km2, int | float) and stream_threshold_km2 > 0):
            raise TerrainInputError(f"stream_threshold_km2={stream_threshold_km2!r}: must be a number > 0 "
                                    "[km²]")
        p = replace(p, stream_threshold_km2=float(stream_threshold_km2))
    if isinstance(terrain, xr.Dataset):
        if "elevation" not in terrain:
            raise TerrainInputError(f"the terrain has no 'elevation' variable (variables: "
                                    f"{', '.join(map(str, terrain.data_vars)) or 'none'})")
        elev = terrain["elevation"]
    else:
        elev = terrain
    lat, lon = _axes(elev, "elevation")
    elev = elev.transpose("latitude", "longitude")
    z = np.asarray(elev.values, dtype=np.float64)
    valid = np.isfinite(z)
    if not valid.any():
        raise TerrainInputError("every elevation value is missing (NaN); check the terrain file")

    slope = slope_degrees(elev)
    nodata = -9999.0
    flw = pyflwdir.from_dem(np.where(valid, z, nodata), nodata=nodata,
                            transform=_transform(lat, lon), latlon=True)
    d8 = flw.to_array()
    area_m2 = np.asarray(flw.area, dtype=np.float64)
    upa = flw.upstream_area(unit="km2")
    upa = np.where(valid & (upa >= 0), upa, np.nan)
    s = np.asarray(slope.values, dtype=np.float64)
    w = np.where(valid & np.isfinite(s), area_m2, 0.0)
    up_slope = flw.accuflux(w * np.nan_to_num(s), nodata=np.nan) / np.where(
        valid, flw.accuflux(w, nodata=np.nan), np.nan)
    stream = valid & (upa >= p.stream_threshold_km2)
    ffp = (stream & (upa >= p.ffp_min_area_km2) & (upa <= p.ffp_max_area_km2)
           & (up_slope >= p.ffp_mean_slope_deg))
    sus = susceptibility_class(slope, lithology=lithology, land_cover=land_cover, params=p)

    dims = ("latitude", "longitude")
    out = xr.Dataset(
        {
            "elevation": (dims, z.astype(np.float32), {"units": "m", "standard_name": "surface_altitude",
                                                       "long_name": "elevation above sea level"}),
            "slope": slope.variable,
            "flow_direction": (dims, _FLIP_NS[d8], {
                "long_name": "D8 flow direction (pyflwdir codes as on a north-up map)",
                "flag_values": np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, D8_NODATA], dtype=np.uint8),
                "flag_meanings": "outlet east southeast south southwest west northwest north northeast "
                                 "nodata",
                "comment": "rebuild the network with ewarn.hazard_models.terrain.flow_network(ds)",
                "source": "pyflwdir.from_dem (Wang & Liu 2006 depression filling, steepest descent)"}),
            "cell_area": (dims, area_m2.astype(np.float32), {"units": "m2", "long_name": "cell area"}),
            "upstream_area": (dims, upa.astype(np.float32), {
                "units": "km2", "long_name": "upstream (contributing) area, cell included"}),
            "upstream_slope": (dims, up_slope.astype(np.float32), {
                "units": "degree", "long_name": "area-weighted mean slope of the contributing area"}),
            "stream": (dims, stream, {
                "long_name": f"stream network (upstream area >= {p.stream_threshold_km2:g} km2)"}),
            "flash_flood_prone": (dims, ffp, {
                "long_name": f"flash-flood-prone channel (upstream area {p.ffp_min_area_km2:g}-"
                             f"{p.ffp_max_area_km2:g} km2, mean upstream slope >= "
                             f"{p.ffp_mean_slope_deg:g} deg)"}),
            "susceptibility": (dims, sus, {
                "long_name": "landslide susceptibility class (1 very low .. 5 very high, 0 no data)",
                "flag_values": np.arange(6, dtype=np.int8),
                "flag_meanings": "no_data very_low low moderate high very_high",
                "comment": f"slope breaks {list(p.slope_breaks_deg)} deg"
                           + ("; lithology-adjusted" if lithology is not None else "")
                           + ("; land-cover-adjusted" if land_cover is not None else "")}),
        },
        coords={"latitude": elev["latitude"], "longitude": elev["longitude"]},
        attrs={"Conventions": "CF-1.8", "title": "ewarn terrain derivatives",
               "stream_threshold_km2": p.stream_threshold_km2,
               "terrain_table_sha256": p.digest, "derivation_version": DERIVATION_VERSION},
    )
    return out


# --------------------------------------------------------------------------- cache


def terrain_cache_key(elevation: xr.DataArray, *, stream_threshold_km2: float | None = None,
                      params: TerrainParameters | None = None) -> str:
    """Hex key of a derivation: the elevation values and axes, the settings and the table.

    Parameters
    ----------
    elevation : xarray.DataArray
        Elevation [m] on (latitude, longitude).
    stream_threshold_km2 : float, optional
        As given to :func:`derive_terrain`.
    params : TerrainParameters, optional
        Default: :func:`terrain_parameters`.

    Returns
    -------
    str
        24 hex digits (SHA-256 prefix).
    """
    p = params or terrain_parameters()
    h = hashlib.sha256()
    h.update(f"ewarn-terrain-{DERIVATION_VERSION}|{stream_threshold_km2!r}|{p.digest}|".encode())
    h.update(repr(p).encode())  # a params object edited in code (dataclasses.replace) changes the key too
    elev = elevation.transpose("latitude", "longitude")
    for a in (elev["latitude"].values, elev["longitude"].values, elev.values):
        arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:24]


def _write_atomic(ds: xr.Dataset, path: Path) -> None:
    """Write a NetCDF file to a temp file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".nc.tmp", dir=path.parent)
    os.close(fd)
    encoding = {str(v): {"zlib": True, "complevel": 4} for v in ds.data_vars}
    encoding["latitude"] = {"_FillValue": None}
    encoding["longitude"] = {"_FillValue": None}
    for v in ("elevation", "slope", "cell_area", "upstream_area", "upstream_slope"):
        encoding[v]["_FillValue"] = np.float32("nan")
    try:
        ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def terrain_for_region(
    region: Region,
    cache_dir: Path | str,
    *,
    stream_threshold_km2: float | None = None,
    params: TerrainParameters | None = None,
) -> xr.Dataset:
    """The terrain derivatives of a region, from the workspace cache when up to date.

    The cache file is ``cache_dir/terrain-<key>.nc`` where the key hashes the
    elevation values and axes, ``stream_threshold_km2`` and the parameters
    table (:func:`terrain_cache_key`): a changed DEM or setting computes and
    writes a new file (temp file + ``os.replace``, so a crash never leaves a
    half-written cache); an unchanged one is read back without recomputing.
    Older cache files of the region are left in place (they are small; delete
    the folder to reclaim them).

    Parameters
    ----------
    region : ewarn.region.Region
        A region with terrain.
    cache_dir : path-like
        Folder of the cache (e.g. ``Workspace.path("cache", "terrain")``).
    stream_threshold_km2 : float, optional
        As in :func:`derive_terrain`.
    params : TerrainParameters, optional
        Default: :func:`terrain_parameters`.

    Returns
    -------
    xarray.Dataset
        As :func:`derive_terrain`, loaded in memory (the file is closed).

    Raises
    ------
    TerrainInputError
        When the region has no terrain.
    """
    terrain = region.terrain
    if terrain is None:
        raise TerrainInputError(f"region {region.name} ({region.folder}) has no terrain; add a DEM "
                                "(terrain = \"terrain.nc\" in region.toml) to derive slopes and streams")
    p = params or terrain_parameters()
    key = terrain_cache_key(terrain["elevation"], stream_threshold_km2=stream_threshold_km2, params=p)
    path = Path(cache_dir) / f"terrain-{key}.nc"
    if path.exists():
        try:
            with xr.open_dataset(path, engine="netcdf4") as ds:
                cached = ds.load()
            if cached.attrs.get("cache_key") == key:
                cached["stream"] = cached["stream"].astype(bool)
                cached["flash_flood_prone"] = cached["flash_flood_prone"].astype(bool)
                return cached
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign file: recompute and replace it
    derived = derive_terrain(terrain, stream_threshold_km2=stream_threshold_km2, params=p)
    derived.attrs["cache_key"] = key
    _write_atomic(derived, path)
    return derived
