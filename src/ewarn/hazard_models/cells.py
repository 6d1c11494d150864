"""Per-cell hazard grid of one forecast window: threatened streams, triggered slopes, susceptibility.

:func:`hazard_cells` gives, on the region's terrain grid, the cells a road
planner must avoid between ``start`` and ``end`` (routing_contract.md
"HazardGrid"): flash-flood-prone stream cells whose forecast rain reaches the
flash-flood guidance, and cells whose landslide class reaches "high". It runs
the SAME per-cell computations as :func:`ewarn.hazard_models.assess.assess`
(shared helpers of that module, no second implementation of the science):

* terrain derivatives (:func:`ewarn.hazard_models.terrain.terrain_for_region`,
  cached in the workspace): ``stream``, ``flash_flood_prone``,
  ``susceptibility``;
* the FFG threat ratio (:func:`ewarn.hazard_models.flash_flood.threat_ratio`,
  SCIENCE.md §2) on the forecast grid with the 5-day antecedent rain, the
  ensemble median per time, the maximum over the window, then nearest
  neighbour onto the terrain grid (both steps commute: the ratio is per cell);
* the landslide class (:func:`ewarn.hazard_models.landslide.landslide_hazard`:
  LHASA, rainfall thresholds, infinite slope; SCIENCE.md §3) on the terrain
  grid from the forecast (ensemble median) regridded by nearest neighbour.

:func:`write_cells` and :func:`open_cells` store it as compressed CF NetCDF
(``assessments/{source}/{cycle:%Y%m%dT%H}-cells.nc`` beside the assessment).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ewarn import __version__
from ewarn.errors import EwarnError
from ewarn.hazard_models import landslide
from ewarn.hazard_models.assess import (
    _ante5_cells,
    _antecedent_days,
    _antecedent_on_forecast_grid,
    _landslide_cells,
    _nanmax0,
    _on_grid,
    _precip,
    _step_hours,
    _terrain_rain,
    _threat_cells,
    _utc_naive,
)
from ewarn.region import Region

__all__ = [
    "CELL_VARIABLES",
    "CellOptions",
    "HazardCellsError",
    "hazard_cells",
    "open_cells",
    "write_cells",
]

#: Variables of the hazard grid (routing_contract.md "HazardGrid").
CELL_VARIABLES: tuple[str, ...] = ("stream", "flash_flood_prone", "ffg_ratio_max", "stream_threatened",
                                   "landslide_index_max", "landslide_triggered", "susceptibility")
_BOOL_VARIABLES = ("stream", "flash_flood_prone", "stream_threatened", "landslide_triggered")


class HazardCellsError(EwarnError):
    """The forecast, the window, the region or a cells file cannot give a hazard grid (names the fix)."""


@dataclass(frozen=True)
class CellOptions:
    """Thresholds of :func:`hazard_cells`.

    Attributes
    ----------
    threat_ratio : float
        A flash-flood-prone stream cell is threatened when its forecast rain /
        flash-flood guidance reaches this [-]. Default 1.0: rain at the
        guidance brings a small basin to bankfull (SCIENCE.md §2; the lower
        limit of the "moderate" QPF/FFG class is 1.25, of "minor" 0.75).
    landslide_min_class : int
        A cell is triggered when its landslide class (0 none, 1 low,
        2 moderate, 3 high; :data:`ewarn.hazard_models.landslide.INDEX_CLASSES`)
        reaches this. Default 3 ("high", routing_contract.md "HazardGrid"):
        stricter than the per-commune share's ``triggered_min_class`` (2) of
        ``tables/landslide.toml``, because a closed road costs an evacuation
        route.
    """

    threat_ratio: float = 1.0
    landslide_min_class: int = 3

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.threat_ratio, int | float) and np.isfinite(self.threat_ratio)
                and self.threat_ratio > 0):
            problems.append(f"threat_ratio={self.threat_ratio!r}: use a number > 0")
        top = max(landslide.INDEX_CLASSES)
        if not (isinstance(self.landslide_min_class, int) and 1 <= self.landslide_min_class <= top):
            problems.append(f"landslide_min_class={self.landslide_min_class!r}: use a whole number 1..{top}")
        if problems:
            raise HazardCellsError("invalid CellOptions: " + "; ".join(problems))


def _iso(t: np.datetime64) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bound(value: Any, name: str) -> np.datetime64 | None:
    if value is None:
        return None
    try:
        return _utc_naive(value)
    except (TypeError, ValueError) as exc:
        raise HazardCellsError(f"hazard_cells: {name}={value!r} is not a time; give an ISO 8601 time "
                               "(UTC unless it has an offset), a datetime or a numpy datetime64") from exc


def hazard_cells(
    forecast: xr.Dataset,
    region: Region,
    *,
    antecedent: xr.DataArray | None = None,
    start: Any = None,
    end: Any = None,
    options: CellOptions | None = None,
    cache_dir: Path | None = None,
) -> xr.Dataset:
    """Hazard per terrain cell over a forecast window (routing_contract.md "HazardGrid").

    Parameters
    ----------
    forecast : xarray.Dataset
        Forecast contract (DESIGN.md): ``precipitation`` [mm per interval],
        dims ``(member?, time, latitude, longitude)``, ``time`` = interval end
        (UTC). With members, the ensemble median (per time) of the FFG ratio
        and the landslide model of the median field, as
        :func:`ewarn.hazard_models.assess.assess`.
    region : ewarn.region.Region
        A region WITH terrain (the grid of the result).
    antecedent : xarray.DataArray, optional
        Daily rain [mm] of the days before the forecast (as for ``assess``):
        the 5-day rain of the FFG curve number and the LHASA antecedent
        index. Without it the ground is assumed dry (a lower bound).
    start, end : str, datetime or numpy.datetime64, optional
        The window (UTC when naive): the forecast intervals ``(t - step, t]``
        with ``t >= start`` and ``t - step < end`` (those ending at or after
        ``start`` and beginning before ``end``, so the interval holding
        ``end`` counts); default the whole forecast. The rain windows ending
        in it still look back before ``start`` (a 6 h window ending at
        ``start`` holds the 6 h before it).
    options : CellOptions, optional
    cache_dir : Path, optional
        Workspace cache folder: terrain derivatives in ``terrain/``
        (e.g. ``Workspace.path("cache")``); None derives them in memory.

    Returns
    -------
    xarray.Dataset
        On the terrain grid (``latitude``, ``longitude`` ascending, EPSG:4326):

        * ``stream``, ``flash_flood_prone`` (bool): terrain stream cells and
          flash-flood-prone stream cells (``tables/terrain.toml``);
        * ``ffg_ratio_max`` (float32): max over the window of forecast rain /
          flash-flood guidance (max over the FFG durations); NaN where the
          rain is unknown;
        * ``stream_threatened`` (bool): ``flash_flood_prone & ffg_ratio_max
          >= options.threat_ratio``;
        * ``landslide_index_max`` (float32, classes 0..3): highest landslide
          class in the window; NaN where the susceptibility is unknown;
        * ``landslide_triggered`` (bool): ``landslide_index_max >=
          options.landslide_min_class`` ("high" by default);
        * ``susceptibility`` (int8 1..5, 0 = no data): static landslide
          susceptibility class (5 = very high: permanent relocation).

        attrs: ``start``, ``end`` (ISO UTC, the first and last forecast time
        of the window), ``source``, ``forecast_reference_time``, the
        thresholds.

    Raises
    ------
    HazardCellsError
        A region without terrain, a window holding no forecast time, bad
        options.
    ewarn.hazard_models.assess.AssessInputError
        A forecast not in the contract, antecedent rain after the reference time.
    """
    opts = options or CellOptions()
    if not isinstance(opts, CellOptions):
        raise HazardCellsError(f"hazard_cells: options is a {type(opts).__name__}; give a CellOptions")
    if region.files.get("terrain") is None or region.terrain is None:
        raise HazardCellsError(f"region {region.name} ({region.folder}) has no terrain: the hazard grid is "
                               "the terrain grid; add a DEM (terrain = \"terrain.nc\" in region.toml)")
    precip = _precip(forecast)
    attrs_in = dict(forecast.attrs) if isinstance(forecast, xr.Dataset) else dict(precip.attrs)
    times = precip["time"].values.astype("datetime64[ns]")
    step = _step_hours(times, attrs_in)
    ref_raw = attrs_in.get("forecast_reference_time")
    ref = _utc_naive(ref_raw) if ref_raw is not None else times[0] - np.timedelta64(round(step * 3600), "s")
    t0, t1 = _bound(start, "start"), _bound(end, "end")
    if t0 is not None and t1 is not None and t0 > t1:
        raise HazardCellsError(f"hazard_cells: start {_iso(t0)} is after end {_iso(t1)}; swap them")
    # intervals (t - step, t] ending at or after start and beginning before end (the one holding end)
    inside = np.ones(times.size, bool)
    if t0 is not None:
        inside &= times >= t0
    if t1 is not None:
        inside &= (times - np.timedelta64(round(step * 3600), "s")) < t1
    if not inside.any():
        raise HazardCellsError(
            f"hazard_cells: the window {_iso(t0) if t0 is not None else '…'} – "
            f"{_iso(t1) if t1 is not None else '…'} holds no forecast time (the forecast covers "
            f"{_iso(times[0])} – {_iso(times[-1])}); choose a window inside it")
    # trailing windows never look forward: the times after the window are not needed
    last = int(np.flatnonzero(inside)[-1])
    precip = precip.isel(time=slice(0, last + 1))
    inside = inside[: last + 1]
    members = "member" in precip.dims

    from ewarn.hazard_models.terrain import derive_terrain, terrain_for_region

    derived = (terrain_for_region(region, Path(cache_dir) / "terrain") if cache_dir is not None
               else derive_terrain(region.terrain))
    ante = _antecedent_days(antecedent, ref)

    # FFG threat ratio on the forecast grid (as assess), median over members, max over the window
    thr = _threat_cells(precip, _ante5_cells(_antecedent_on_forecast_grid(ante, precip), precip), step)
    thr_v = np.asarray(thr.values, dtype=np.float32)
    if members:
        thr_v = np.median(thr_v, axis=0)
    ratio = xr.DataArray(_nanmax0(thr_v[inside]), dims=("latitude", "longitude"),
                         coords={"latitude": thr["latitude"], "longitude": thr["longitude"]})
    ratio_f = np.asarray(_on_grid(ratio, derived["elevation"]).values, dtype=np.float32)

    # landslide class on the terrain grid, max over the window
    fine, _, ari = _terrain_rain(precip, ante, derived, members)
    haz = _landslide_cells(fine, ari, derived, step, keep=inside)
    index = np.asarray(haz["index"].transpose("time", "latitude", "longitude").values).max(axis=0)
    sus = np.asarray(derived["susceptibility"].values, dtype=np.int8)
    index_max = np.where(sus > 0, index, np.nan).astype(np.float32)

    stream = np.asarray(derived["stream"].values, dtype=bool)
    prone = np.asarray(derived["flash_flood_prone"].values, dtype=bool)
    dims = ("latitude", "longitude")
    wt = times[: last + 1][inside]
    ds = xr.Dataset(
        {
            "stream": (dims, stream, {"long_name": derived["stream"].attrs.get("long_name", "stream")}),
            "flash_flood_prone": (dims, prone, {
                "long_name": derived["flash_flood_prone"].attrs.get("long_name", "flash-flood-prone")}),
            "ffg_ratio_max": (dims, ratio_f, {
                "units": "1", "long_name": "max over the window of forecast rain / flash-flood guidance "
                                           "(max over durations; forecast cell, nearest neighbour)"}),
            "stream_threatened": (dims, prone & (ratio_f >= opts.threat_ratio), {
                "long_name": f"flash-flood-prone stream cell with ffg_ratio_max >= {opts.threat_ratio:g}"}),
            "landslide_index_max": (dims, index_max, {
                "units": "1", "long_name": "highest landslide class in the window (0 none, 1 low, "
                                           "2 moderate, 3 high)", "valid_range": [0, 3]}),
            "landslide_triggered": (dims, index_max >= opts.landslide_min_class, {
                "long_name": "landslide class reaches "
                             f"{landslide.INDEX_CLASSES[opts.landslide_min_class][1]} in the window"}),
            "susceptibility": (dims, sus, dict(derived["susceptibility"].attrs)),
        },
        coords={"latitude": derived["latitude"], "longitude": derived["longitude"]},
    )
    ds["latitude"].attrs.update(standard_name="latitude", units="degrees_north")
    ds["longitude"].attrs.update(standard_name="longitude", units="degrees_east")
    ds.attrs.update({
        "Conventions": "CF-1.8",
        "title": "ewarn hazard per terrain cell over a forecast window",
        "crs": "EPSG:4326",
        "start": _iso(wt[0]),
        "end": _iso(wt[-1]),
        "source": str(attrs_in.get("source", "")),
        "forecast_reference_time": _iso(ref),
        "members": int(precip.sizes.get("member", 0)),
        "threat_ratio": float(opts.threat_ratio),
        "landslide_min_class": int(opts.landslide_min_class),
        "antecedent": "given" if ante is not None and ante.sizes["time"] > 0 else
                      "none: dry ground assumed before the forecast (lower bound)",
        "region": str(region.name),
        "history": f"ewarn {__version__}: ewarn.hazard_models.cells.hazard_cells",
    })
    return ds


def write_cells(ds: xr.Dataset, path: Path) -> Path:
    """Write a hazard grid as compressed CF NetCDF, atomically.

    Booleans are stored as int8 0/1 with ``flag_values`` / ``flag_meanings``
    (NetCDF has no boolean type); :func:`open_cells` restores them. Written to
    a temporary file in the same folder, then renamed (:func:`os.replace`).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    missing = [v for v in CELL_VARIABLES if v not in ds]
    if missing:
        raise HazardCellsError(f"write_cells: the dataset has no {', '.join(missing)}; give the output of "
                               "ewarn.hazard_models.cells.hazard_cells")
    out = ds.copy()
    enc: dict[str, dict[str, Any]] = {}
    for name in out.data_vars:
        v = out[name]
        if v.dtype == bool:
            out[name] = v.astype(np.int8).assign_attrs(flag_values=np.array([0, 1], np.int8),
                                                       flag_meanings="false true")
        enc[str(name)] = {"zlib": True, "complevel": 4}
        if out[name].dtype.kind == "f":
            enc[str(name)]["_FillValue"] = np.float32("nan")
    for c in ("latitude", "longitude"):
        enc[c] = {"_FillValue": None}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=enc)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def open_cells(path: Path) -> xr.Dataset:
    """Read a hazard grid written by :func:`write_cells` (in memory, file closed, booleans restored).

    Raises
    ------
    HazardCellsError
        The file is missing, unreadable, or not a hazard grid (naming the
        missing variables).
    """
    path = Path(path)
    if not path.is_file():
        raise HazardCellsError(f"{path}: no such hazard-cells file; run the assess stage of the cycle "
                               "(ewarn assess) to write it")
    try:
        with xr.open_dataset(path, engine="netcdf4") as f:
            ds = f.load()
    except (OSError, ValueError) as exc:
        raise HazardCellsError(f"{path}: not a readable NetCDF file ({exc}); delete it and re-run the "
                               "assess stage") from exc
    missing = [v for v in CELL_VARIABLES if v not in ds]
    if missing:
        raise HazardCellsError(f"{path}: not a hazard-cells file (no {', '.join(missing)}); give a file "
                               "written by ewarn.hazard_models.cells.write_cells")
    for name in _BOOL_VARIABLES:
        attrs = {k: v for k, v in ds[name].attrs.items() if k not in ("flag_values", "flag_meanings")}
        ds[name] = (ds[name] != 0).assign_attrs(attrs)
    ds["susceptibility"] = ds["susceptibility"].astype(np.int8)
    return ds
