"""Per-commune risk assessment of one forecast: rain, Decision 18 levels, hazard indices.

:func:`assess` turns a forecast (DESIGN.md "Forecast" contract) and a region
into the "Risk assessment" dataset of DESIGN.md: for every commune and every
forecast time the commune rain over 1, 3, 6, 12 and 24 h, the Decision
18/2021/QĐ-TTg levels (Article 46 flash flood / landslide, Article 44 heavy
rain, combined), the onset (first time the level is reached) and the peak, the
flash-flood guidance ratio and, with terrain, the ERIC-style index and the
share of the susceptible area where a landslide is triggered; with ensemble
members, the probability of each level.

Design (performance): ZONAL FIRST. For the commune-mean rain the hourly field
is aggregated to communes with ONE sparse product (area-weighted mean matrix
``W`` of :class:`~ewarn.hazard_models.zonal.CommuneGrid`, ``(communes, cells)``
CSR, times the forecast reshaped ``(cells, time)``); window sums commute with
the weighted mean (both are linear), so every window, level and onset is
computed on the small ``(time, commune)`` array. The ``max`` statistic
(``rain_statistic="max"``: the wettest cell) does not commute: it needs the
windows on the full grid, then a per-commune maximum — an explicit cost (one
grid-sized array per window). The cell-based indices (FFG ratio, landslide,
ERIC) need per-cell windows too; ``AssessOptions.cell_indices=False`` skips
them.

The levels are those the rules of Decision 18/2021 imply from a forecast, NOT
the official level (:data:`~ewarn.hazard_models.levels.LEVEL_DISCLAIMER`).
The choices this module makes (zone class without a zoning map, terrain class
of Article 44, duration of heavy rain) are in ``tables/assess.toml`` with
their provenance.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import tempfile
import warnings
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
)

from ewarn import __version__
from ewarn.errors import EwarnError
from ewarn.hazard_models import flash_flood, landslide, levels, rainfall
from ewarn.hazard_models.cell_runs import CellRuns
from ewarn.hazard_models.tables import TABLES_DIR, TableReader, load_cached
from ewarn.hazard_models.zonal import CommuneGrid
from ewarn.region import Region
from ewarn.store import Store, metadata, utcnow
from ewarn.store import as_utc as _aware

__all__ = [
    "ASSESS_TABLE",
    "AssessInputError",
    "AssessOptions",
    "AssessParameters",
    "assess",
    "assess_parameters",
    "assessments_table",
    "latest_assessment",
    "record_assessment",
    "summarize",
    "write_assessment",
]

ASSESS_TABLE = TABLES_DIR / "assess.toml"

#: Commune rain windows [h] of the output (12 h feeds the Article 44 12 h band).
RAIN_WINDOWS_H: tuple[int, ...] = (1, 3, 6, 12, 24)
#: Windows written to the output and summarized.
OUTPUT_WINDOWS_H: tuple[int, ...] = (1, 3, 6, 24)
#: Antecedent days summed for the FFG curve number (5-day antecedent rain, SCS AMC).
FFG_ANTECEDENT_DAYS = 5


class AssessInputError(EwarnError):
    """The forecast, the antecedent rain or the options cannot be assessed (names the field and the fix)."""


# --------------------------------------------------------------------------- options and parameters


@dataclass(frozen=True)
class AssessOptions:
    """Options of :func:`assess`.

    Attributes
    ----------
    rain_statistic : {"mean", "max"}
        Commune rain used for the Decision 18 levels: the area-weighted mean
        over the commune (default, zonal-first, cheap) or the wettest cell
        (windows on the full grid first: one grid-sized array per window).
    raise_rules : bool
        Apply the Article 4 raises (two hazards together +1; capped at 5).
    use_terrain : bool
        Compute the terrain-based indices (ERIC, landslide share, zone class
        from susceptibility) when the region has terrain.
    default_zone_class : str
        Zoning-map class (low | medium | high | very high) of every commune
        when there is neither terrain nor a zoning map. "medium" is an
        unverified ewarn choice: the middle of the national map's classes,
        which in KV1 gives level 1 at 100-200 mm and level 2 at 200-400 mm.
    min_level : int
        The onset is the first time the combined level reaches this (1..5).
    cell_indices : bool
        Compute the per-cell indices (FFG ratio, and with terrain ERIC and
        landslide share). False skips them (NaN): the level path alone.
    """

    rain_statistic: Literal["mean", "max"] = "mean"
    raise_rules: bool = False
    use_terrain: bool = True
    default_zone_class: str = "medium"
    min_level: int = 1
    cell_indices: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.rain_statistic not in ("mean", "max"):
            problems.append(f"rain_statistic={self.rain_statistic!r}: use 'mean' or 'max'")
        if str(self.default_zone_class).strip().casefold() not in levels.ZONE_CLASSES:
            problems.append(f"default_zone_class={self.default_zone_class!r}: use one of "
                            f"{', '.join(levels.ZONE_CLASSES)}")
        if not (isinstance(self.min_level, int) and 1 <= self.min_level <= levels.MAX_LEVEL):
            problems.append(f"min_level={self.min_level!r}: use a whole number 1..{levels.MAX_LEVEL}")
        if problems:
            raise AssessInputError("invalid AssessOptions: " + "; ".join(problems))

    @property
    def zone_code(self) -> int:
        """Zone class code 1..4 of :attr:`default_zone_class`."""
        return levels.ZONE_CLASSES.index(str(self.default_zone_class).strip().casefold()) + 1


@dataclass(frozen=True)
class AssessParameters:
    """The choices of ``tables/assess.toml`` (see the file for sources)."""

    path: Path
    zone_min_area_share: float
    mountain_min_elevation_m: float
    default_terrain: str


def assess_parameters(path: Path | str | None = None) -> AssessParameters:
    """Read ``tables/assess.toml`` (or a recalibrated copy); cached per file version.

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Listing every problem of the file.
    """
    return load_cached(_assess_parameters, path, ASSESS_TABLE)


def _assess_parameters(path: Path) -> AssessParameters:
    t = TableReader(path)
    zc = t.section("zone_class")
    share = t.number(zc, "zone_class", "min_area_share", 0.0, 1.0, closed=True) if zc else np.nan
    ht = t.section("heavy_rain_terrain")
    elev = t.number(ht, "heavy_rain_terrain", "mountain_min_elevation_m", -500, 9000) if ht else np.nan
    default = ht.get("default", "mountain") if ht else "mountain"
    if default not in ("mountain", "delta"):
        t.problem(f"is {default!r}; must be 'mountain' or 'delta'", "heavy_rain_terrain", "default")
    t.section("heavy_rain_duration")
    t.done()
    return AssessParameters(path=Path(path), zone_min_area_share=share, mountain_min_elevation_m=elev,
                            default_terrain=str(default))


# --------------------------------------------------------------------------- zonal kernels


#: Decimals [mm] kept of the commune-mean rain (forecasts resolve 0.1 mm; 1e-6 mm removes the
#: floating-point noise of the weights, see :func:`_zonal_mean_kernel`).
MEAN_DECIMALS = 6


def _zonal_mean_kernel(x: np.ndarray, runs: CellRuns) -> np.ndarray:
    """``W @ x`` over the flattened last two dims of ``x`` (leading dims kept), float64 out.

    ``W`` (row-normalized area weights) is stored as runs of consecutive
    cells (:class:`ewarn.hazard_models.cell_runs.CellRuns`): the time-major
    field is read in memory order as it is, no cells-major transpose and no
    float64 copy (the float32 rain is summed in float64 as it is read).

    The means are rounded to :data:`MEAN_DECIMALS` decimals [mm]: the
    normalized weights of a commune sum to 1 only within ~1e-16, so the
    mean of a uniform 10 mm/h would come out as 9.999999999999998 and five
    such hours would miss a 50 mm threshold they reach exactly.
    """
    lead = x.shape[:-2]
    out = runs.matmul(x.reshape(-1, x.shape[-2] * x.shape[-1]))
    np.round(out, MEAN_DECIMALS, out=out)
    return out.reshape(*lead, runs.shape[0])


class _GridCache:
    """CommuneGrid per (communes object, grid) kept for the life of the communes table (no re-hashing)."""

    def __init__(self) -> None:
        self._grids: dict[tuple[int, bytes, bytes], CommuneGrid] = {}

    def grid(self, lat: np.ndarray, lon: np.ndarray, communes: Any, cache_dir: Path | None,
             source: str) -> CommuneGrid:
        key = (id(communes), np.asarray(lat, np.float64).tobytes(), np.asarray(lon, np.float64).tobytes())
        g = self._grids.get(key)
        if g is None:
            g = CommuneGrid.for_grid(lat, lon, communes, cache_dir, source=source)
            self._grids[key] = g
            weakref.finalize(communes, self._grids.pop, key, None)
        return g


_GRIDS = _GridCache()


def _zonal_mean(da: xr.DataArray, grid: CommuneGrid) -> xr.DataArray:
    """Area-weighted commune mean of ``da`` (..., latitude, longitude) → (..., commune); dask-ready."""
    runs = grid.runs("area")  # row-normalized area weights, cached on the grid (any real dtype is read)
    out = xr.apply_ufunc(
        _zonal_mean_kernel, da, kwargs={"runs": runs}, input_core_dims=[["latitude", "longitude"]],
        output_core_dims=[["commune"]], dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"commune": grid.n_communes}}, keep_attrs=False)
    return out.assign_coords(commune=grid.codes.astype(str))


# --------------------------------------------------------------------------- helpers


def _precip(forecast: xr.Dataset | xr.DataArray) -> xr.DataArray:
    da = forecast["precipitation"] if isinstance(forecast, xr.Dataset) else forecast
    if not isinstance(da, xr.DataArray):
        raise AssessInputError("forecast: give the forecast Dataset (variable 'precipitation') of "
                               "ewarn.forecasts")
    need = {"time", "latitude", "longitude"}
    missing = need - set(map(str, da.dims))
    extra = set(map(str, da.dims)) - need - {"member"}
    if missing or extra:
        raise AssessInputError(
            f"forecast precipitation has dims ({', '.join(map(str, da.dims))}); expected (member?, time, "
            "latitude, longitude) as ewarn.forecasts writes; normalize it with ewarn.forecasts")
    order = (["member"] if "member" in da.dims else []) + ["time", "latitude", "longitude"]
    return da.transpose(*order)


def _step_hours(times: np.ndarray, attrs: dict[str, Any]) -> float:
    if times.size >= 2:
        d = np.diff(times.astype("datetime64[s]").astype(np.int64)) / 3600.0
        if not np.allclose(d, d[0]) or d[0] <= 0:
            raise AssessInputError("forecast time: the steps are not regular and increasing; normalize the "
                                   "forecast with ewarn.forecasts")
        return float(d[0])
    step = attrs.get("step_hours")
    if step is None:
        raise AssessInputError("forecast has one time step and no 'step_hours' attribute; set it")
    return float(step)


def _windows(x: np.ndarray, steps: dict[int, int]) -> dict[int, np.ndarray]:
    """Trailing sums over ``n`` steps along axis -2 (time), partial at the start (lower bound).

    ``R_n(t) = Σ_{j=0}^{n-1} P(t-j)`` by ONE cumulative sum in float64 on the
    small (member?, time, commune) array (exact to ~1e-12 mm), shared by
    every window, as :func:`ewarn.hazard_models.rainfall.accumulations` with
    ``partial=True``.

    Parameters
    ----------
    x : numpy.ndarray
        Rain per step [mm], time on axis -2.
    steps : dict
        Window name (e.g. hours) -> number of steps ``n``.

    Returns
    -------
    dict
        Window name -> float64 array of ``x``'s shape [mm].
    """
    c = np.cumsum(x, axis=-2, dtype=np.float64)
    out: dict[int, np.ndarray] = {}
    for key, n in steps.items():  # a handful of windows, each a whole-array step
        r = np.empty_like(c)
        if n < x.shape[-2]:
            r[..., :n, :] = c[..., :n, :]
            np.subtract(c[..., n:, :], c[..., :-n, :], out=r[..., n:, :])
        else:
            r[...] = c
        out[key] = np.maximum(r, 0.0, out=r)
    return out


def _runs(r24: np.ndarray, thr: float, steps_per_day: int, first_lag: int,
          ante_run: np.ndarray) -> np.ndarray:
    """Consecutive 24 h windows, 24 h apart, holding at least ``thr`` mm, per (time, commune).

    Lag ``j`` (``j >= first_lag``) is the 24 h window ending ``24 j`` hours
    before ``t``. The run stops at the first dry window; when it reaches back
    before the forecast start it continues with ``ante_run``, the run of
    antecedent days ending at the forecast start. A loop over the (few) lags,
    vectorized over members, times and communes: the window ``24 j`` hours
    back is the wet mask shifted by ``j`` days along time (a slice, no copy).
    """
    nt = r24.shape[-2]
    wet_all = r24 >= thr
    run = np.zeros(r24.shape, np.int16)
    alive = np.ones(r24.shape, bool)
    ante = np.broadcast_to(np.asarray(ante_run, np.int16), r24.shape[-1:])
    for j in range(first_lag, nt // steps_per_day + 3):
        k = min(j * steps_per_day, nt)
        # times t < k: the lag reaches before the forecast; the antecedent run continues a live run
        run[..., :k, :] += np.where(alive[..., :k, :], ante, np.int16(0))
        alive[..., :k, :] = False
        # times t >= k: the window ending 24 j h before t is the one ending at t - k
        a = alive[..., k:, :]
        a &= wet_all[..., :nt - k, :]
        run[..., k:, :] += a
        if not alive.any():
            break
    return run


def _first_time(mask: np.ndarray, times: np.ndarray) -> np.ndarray:
    """First time along axis -2 where ``mask`` holds; NaT where never."""
    hit = mask.any(axis=-2)
    i = mask.argmax(axis=-2)
    return np.where(hit, times[i], np.datetime64("NaT", "ns"))


def _utc_naive(value: Any) -> np.datetime64:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


def _legacy_groups(region: Region) -> tuple[np.ndarray, list[str]]:
    if "legacy_province" not in region.communes:
        raise AssessInputError(f"region {region.name}: communes have no legacy_province; load the region "
                               "with ewarn.region (it maps each commune to its pre-2025 province)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        groups = levels.region_groups(region.communes["legacy_province"].astype(str).to_numpy(dtype=object))
    msgs = sorted({str(w.message) for w in caught})
    return groups.astype(np.int8), msgs


def _antecedent_days(antecedent: xr.DataArray | None, ref: np.datetime64) -> xr.DataArray | None:
    if antecedent is None:
        return None
    if not isinstance(antecedent, xr.DataArray) or not {"time", "latitude", "longitude"} <= set(
            map(str, antecedent.dims)):
        raise AssessInputError("antecedent: give daily rain [mm] as a DataArray (time, latitude, longitude), "
                               "e.g. ewarn.forecasts.antecedent(...).rain")
    a = antecedent.transpose("time", "latitude", "longitude")
    t = a["time"].values.astype("datetime64[ns]")
    if t.size and t.max() > ref:
        raise AssessInputError(f"antecedent: its last day ends at {t.max()}, after the forecast reference "
                               f"time {ref}; give the days BEFORE the forecast")
    return a


def _on_grid(field: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """``field`` on ``like``'s latitude/longitude (nearest neighbour; no-op when equal).

    Every target point inside the field's cells takes the value of the nearest
    cell centre, including points between the outer centres and the outer cell
    edges (half a grid step beyond them); points farther out are NaN.
    """
    same = all(field.sizes[d] == like.sizes[d] and np.allclose(field[d].values, like[d].values, atol=1e-7)
               for d in ("latitude", "longitude"))
    if same:
        return field.assign_coords(latitude=like["latitude"], longitude=like["longitude"])
    out = field
    for d in ("latitude", "longitude"):
        c = np.asarray(field[d].values, dtype=np.float64)
        half = 0.5 * float(np.abs(np.diff(c)).max()) if c.size > 1 else np.inf
        out = out.reindex({d: like[d].values}, method="nearest", tolerance=half * (1 + 1e-9))
    return out.assign_coords(latitude=like["latitude"], longitude=like["longitude"])


@lru_cache(maxsize=1)
def _rain_day_threshold() -> float:
    return float(rainfall.rainfall_parameters().rain_day_threshold_mm)


# --------------------------------------------------------------------------- assess


def assess(forecast: xr.Dataset, region: Region, antecedent: xr.DataArray | None = None, *,
           cache_dir: Path | None = None, options: AssessOptions | None = None) -> xr.Dataset:
    """Risk assessment of a forecast for every commune of a region.

    Parameters
    ----------
    forecast : xarray.Dataset
        Forecast contract (DESIGN.md): ``precipitation`` [mm per interval],
        dims ``(member?, time, latitude, longitude)``, ``time`` = interval
        end (UTC), attrs ``forecast_reference_time``, ``source``. Numpy or
        dask backed (identical numbers).
    region : ewarn.region.Region
        Communes (``code``, ``name``, ``province``, ``legacy_province``,
        polygons) and optional terrain.
    antecedent : xarray.DataArray, optional
        Daily rain [mm] of the days BEFORE the forecast, dims ``(time,
        latitude, longitude)`` (``ewarn.forecasts.antecedent(...).rain``), on
        any grid (nearest neighbour onto the forecast grid). Gives the rain
        days already counted (Article 46), the 5-day antecedent rain of the
        FFG curve number and the LHASA antecedent rainfall index. Without it
        the ground is assumed DRY before the forecast (0 days, 0 mm: levels
        are then lower bounds) and ``attrs["antecedent"]`` says so.
    cache_dir : Path, optional
        Cache folder (commune weights in ``communegrid/``, terrain
        derivatives in ``terrain/``); None: nothing cached on disk.
    options : AssessOptions, optional

    Returns
    -------
    xarray.Dataset
        Over ``commune`` (code; ``commune_name``, ``province``) and ``time``:

        * ``rain_1h``, ``rain_3h``, ``rain_6h``, ``rain_24h`` [mm] (commune
          rain per ``rain_statistic``, trailing windows) and their maxima
          ``rain_{w}h_max``; ``antecedent_rain`` [mm] (sum of the antecedent
          days), ``rain_days`` (days it has already rained before each 24 h
          window, threshold of ``tables/rainfall.toml``);
        * ``level_flash_landslide`` (Art. 46, 0..3), ``level_heavy_rain``
          (Art. 44, 0..4), ``level`` (combined), ``level_max``,
          ``onset_time`` (first time ``level >= min_level``, NaT if none),
          ``peak_time`` (time of the highest 1 h commune rain),
          ``level_peak_time`` (first time of ``level_max``), ``region_group``,
          ``zone_class``, ``heavy_rain_terrain``;
        * ``ffg_ratio`` (max over the commune's cells of the FFG threat
          ratio, max over durations), ``ffg_ratio_max``, ``threat_class``; with
          terrain ``eric_index`` (max over the commune's channel cells),
          ``landslide_share`` (share of the susceptible area triggered) and
          their maxima, ``flash_flood_prone_km2``;
        * with members: ``probability_level_ge1..5`` (per time) and
          ``probability_level_max_ge1..5`` (any time in the forecast), share
          of members; ``probability_threat`` (FFG ratio >= 1). The rain and
          level fields are then those of the ensemble MEDIAN (per window,
          time and commune, over members) — robust to one outlying member,
          unlike the control member.

        attrs: CF-1.8, ``featureType = "timeSeries"``,
        ``forecast_reference_time``, ``source``, the level disclaimer (vi,
        en), the options, the tables used, warnings.

    Raises
    ------
    AssessInputError
        A forecast not in the contract, antecedent rain after the reference
        time, bad options.
    ewarn.hazard_models.zonal.CommuneGridError
        Communes outside the forecast grid (naming them).
    """
    opts = options or AssessOptions()
    params = assess_parameters()
    tables = levels.load_tables()
    precip = _precip(forecast)
    attrs_in = dict(forecast.attrs) if isinstance(forecast, xr.Dataset) else dict(precip.attrs)
    times = precip["time"].values.astype("datetime64[ns]")
    step = _step_hours(times, attrs_in)
    spd = 24.0 / step
    if abs(spd - round(spd)) > 1e-9 or round(spd) < 1:
        raise AssessInputError(f"forecast step is {step:g} h; the 24 h windows of Decision 18 need a step "
                               "that divides 24 h (1, 3, 6, 12 or 24 h)")
    spd = round(spd)
    ref_raw = attrs_in.get("forecast_reference_time")
    ref = _utc_naive(ref_raw) if ref_raw is not None else times[0] - np.timedelta64(round(step * 3600), "s")
    members = "member" in precip.dims
    warn: list[str] = []

    communes = region.communes
    src_file = str(region.files.get("communes", region.folder))
    grid = _GRIDS.grid(precip["latitude"].values, precip["longitude"].values, communes,
                       None if cache_dir is None else Path(cache_dir) / "communegrid", src_file)
    codes = grid.codes.astype(str)
    nc = codes.size

    # ---- commune rain windows (member?, time, commune)
    wins = [w for w in RAIN_WINDOWS_H if (w / step) >= 1 - 1e-9 and abs(w / step - round(w / step)) < 1e-9]
    if opts.rain_statistic == "mean":
        hourly = _zonal_mean(precip, grid)
        hv = np.asarray(hourly.values, dtype=np.float64)  # small: (member?, time, commune)
        rain = _windows(hv, {w: round(w / step) for w in wins})
    else:
        acc = rainfall.accumulations(precip, wins, step)
        rain = {w: np.asarray(grid.maximum(acc[f"rain_{w}h"]).values, dtype=np.float64) for w in wins}
    nan = np.full(next(iter(rain.values())).shape, np.nan)
    rain_w = {w: rain.get(w, nan) for w in RAIN_WINDOWS_H}
    if any(w not in rain for w in RAIN_WINDOWS_H):
        warn.append(f"windows {[w for w in RAIN_WINDOWS_H if w not in rain]} h are not whole multiples of "
                    f"the {step:g} h step; left NaN")

    # ---- antecedent (commune daily means)
    ante = _antecedent_days(antecedent, ref)
    thr_day = _rain_day_threshold()
    heavy_thr = float(tables.a44_rain24_mm[0])
    ante_g = _antecedent_on_forecast_grid(ante, precip)
    ante5_cells = _ante5_cells(ante_g, precip)
    if ante is not None and ante_g is not None:
        ante_c = np.asarray(_zonal_mean(ante_g, grid).values, dtype=np.float64)  # (day, commune)
        ante_total = np.nansum(ante_c, axis=0)
        ante_days = _trailing_run(ante_c >= thr_day)
        ante_heavy = _trailing_run(ante_c >= heavy_thr)
        ante_note = (f"{ante.sizes['time']} antecedent day(s) given, last ending "
                     f"{pd.Timestamp(ante['time'].values[-1]).isoformat()}Z")
    else:
        ante_total = np.zeros(nc)
        ante_days = np.zeros(nc, np.int16)
        ante_heavy = np.zeros(nc, np.int16)
        ante_note = ("no antecedent rain given: the ground is assumed dry before the forecast (0 rain days, "
                     "0 mm); levels are lower bounds")

    # ---- per-commune constants
    groups, gwarn = _legacy_groups(region)
    groups = _align(groups, communes, codes)
    warn += gwarn
    derived = tgrid = None
    terrain_used = bool(opts.use_terrain and region.files.get("terrain") is not None)
    if terrain_used:
        from ewarn.hazard_models.terrain import derive_terrain, terrain_for_region

        derived = (terrain_for_region(region, Path(cache_dir) / "terrain") if cache_dir is not None
                   else derive_terrain(region.terrain))
        tgrid = _GRIDS.grid(derived["latitude"].values, derived["longitude"].values, communes,
                            None if cache_dir is None else Path(cache_dir) / "communegrid", src_file)
        zone = _zone_from_terrain(derived, tgrid, params, tables, opts.zone_code)
        elev = np.asarray(tgrid.mean(derived["elevation"].values.astype(np.float64)))
        terrain_cls = np.where(np.nan_to_num(elev, nan=np.inf) >= params.mountain_min_elevation_m,
                               "mountain", "delta")
    else:
        zone = np.full(nc, opts.zone_code, np.int8)
        terrain_cls = np.full(nc, params.default_terrain, dtype=object).astype(str)

    # ---- levels per member (probabilities) and of the ensemble median
    def levels_of(r24: np.ndarray, r12: np.ndarray) -> tuple[np.ndarray, ...]:
        days = _runs(r24, thr_day, spd, 1, ante_days)
        dur = _runs(r24, heavy_thr, spd, 0, ante_heavy)
        l46 = np.asarray(levels.flash_flood_landslide_level(r24, days, groups, zone, tables=tables), np.int8)
        # terrain_cls is per commune (last axis): it broadcasts in the table lookup, and
        # is factorized once per commune instead of once per (member, time, commune)
        l44 = np.asarray(levels.heavy_rain_level(r24, dur, terrain_cls,
                                                 None if np.isnan(r12).all() else r12, tables=tables),
                         np.int8)
        lv = np.asarray(levels.combined_level(l46, l44, raise_rules=opts.raise_rules, tables=tables), np.int8)
        return l46, l44, lv, days, dur

    out_vars: dict[str, Any] = {}
    if members:
        _, _, lv_m, _, _ = levels_of(rain_w[24], rain_w[12])
        lvmax_m = lv_m.max(axis=1)
        for k in range(1, levels.MAX_LEVEL + 1):
            out_vars[f"probability_level_ge{k}"] = (("time", "commune"), (lv_m >= k).mean(axis=0))
            out_vars[f"probability_level_max_ge{k}"] = (("commune",), (lvmax_m >= k).mean(axis=0))
        rain_w = {w: np.median(v, axis=0) for w, v in rain_w.items()}
    l46, l44, lv, days, dur = levels_of(rain_w[24], rain_w[12])

    tdim = ("time", "commune")
    for w in OUTPUT_WINDOWS_H:
        v = rain_w[w]
        out_vars[f"rain_{w}h"] = (tdim, v.astype(np.float32), _rain_attrs(w, opts.rain_statistic))
        out_vars[f"rain_{w}h_max"] = (("commune",), np.nanmax(v, axis=0).astype(np.float32),
                                      _rain_attrs(w, opts.rain_statistic, "maximum over the forecast of "))
    out_vars["rain_12h"] = (tdim, rain_w[12].astype(np.float32), _rain_attrs(12, opts.rain_statistic))
    out_vars["antecedent_rain"] = (("commune",), ante_total.astype(np.float32), {
        "units": "mm", "long_name": "commune rain of the antecedent days given (0 when none)"})
    out_vars["rain_days"] = (tdim, days.astype(np.int16), {
        "units": "days",
        "long_name": "days it has already rained before the 24 h window (Decision 18 Art. 46)",
        "threshold_mm": thr_day})
    out_vars["heavy_rain_days"] = (tdim, dur.astype(np.int16), {
        "units": "days",
        "long_name": f"24 h windows in a row with at least {heavy_thr:g} mm (Art. 44 duration)"})
    out_vars["level_flash_landslide"] = (tdim, l46, {
        "long_name": "Decision 18/2021 Art. 46 level implied by the forecast (flash flood, landslide)",
        "valid_range": [0, 3]})
    out_vars["level_heavy_rain"] = (tdim, l44, {
        "long_name": "Decision 18/2021 Art. 44 level implied by the forecast (heavy rain)",
        "valid_range": [0, 4]})
    out_vars["level"] = (tdim, lv, {"long_name": "combined Decision 18/2021 level implied by the forecast",
                                    "valid_range": [0, 5], "raise_rules": int(opts.raise_rules)})
    out_vars["level_max"] = (("commune",), lv.max(axis=0).astype(np.int8),
                             {"long_name": "highest combined level over the forecast"})
    out_vars["level_flash_landslide_max"] = (("commune",), l46.max(axis=0).astype(np.int8), {})
    out_vars["level_heavy_rain_max"] = (("commune",), l44.max(axis=0).astype(np.int8), {})
    out_vars["onset_time"] = (("commune",), _first_time(lv >= opts.min_level, times),
                              {"long_name": f"first time the level reaches {opts.min_level} (UTC)"})
    r1 = np.nan_to_num(rain_w[1] if not np.isnan(rain_w[1]).all() else rain_w[min(rain)], nan=-1.0)
    out_vars["peak_time"] = (("commune",), times[r1.argmax(axis=0)],
                             {"long_name": "time of the highest 1 h commune rain (UTC)"})
    out_vars["level_peak_time"] = (("commune",), _first_time(lv == lv.max(axis=0), times),
                                   {"long_name": "first time of the highest level (UTC)"})
    out_vars["region_group"] = (("commune",), groups, {
        "long_name": "Decision 18 Art. 46 region group (1 = KV1 ... 4 = KV4, 0 = none)"})
    out_vars["zone_class"] = (("commune",), zone.astype(np.int8), {
        "long_name": "flash-flood / landslide zoning class (1 low, 2 medium, 3 high, 4 very high)",
        "method": ("highest susceptibility class covering at least "
                   f"{params.zone_min_area_share:g} of the commune (tables/assess.toml)"
                   if terrain_used
                   else f"default_zone_class = {opts.default_zone_class} (no terrain, no map)")})
    out_vars["heavy_rain_terrain"] = (("commune",), np.asarray(terrain_cls, dtype=str), {
        "long_name": "Art. 44 terrain class (mountain = trung du, miền núi; delta = đồng bằng, ven biển)"})

    # ---- cell indices
    nan_tc = np.full((times.size, nc), np.nan, np.float32)
    ffg = eric = share = nan_tc
    prone = np.full(nc, np.nan, np.float32)
    if opts.cell_indices:
        ffg_m = _ffg_ratio(precip, ante5_cells, grid, step)
        if members:
            out_vars["probability_threat"] = (tdim, (ffg_m >= 1.0).mean(axis=0), {
                "units": "1", "long_name": "share of members whose FFG ratio reaches 1"})
            ffg_m = np.median(ffg_m, axis=0)
        ffg = ffg_m.astype(np.float32)
        if terrain_used:
            eric, share, prone = _terrain_indices(precip, ante, derived, tgrid, step, members)
    out_vars["ffg_ratio"] = (tdim, ffg, {
        "units": "1",
        "long_name": "max over the commune's cells of forecast rain / flash-flood guidance "
                     "(max over durations)"})
    out_vars["ffg_ratio_max"] = (("commune",), _nanmax0(ffg), {"units": "1"})
    out_vars["threat_class"] = (tdim, np.asarray(flash_flood.threat_class(ffg), np.int8), {
        "long_name": "QPF/FFG threat class (-1 unknown, 0 none, 1 minor, 2 moderate, 3 major)"})
    out_vars["eric_index"] = (tdim, eric, {
        "units": "1", "long_name": "max ERIC-style index over the commune's channel cells"})
    out_vars["eric_index_max"] = (("commune",), _nanmax0(eric), {"units": "1"})
    out_vars["landslide_share"] = (tdim, share, {"units": "1", "long_name": "share of the susceptible area "
                                                 "where a landslide is triggered"})
    out_vars["landslide_share_max"] = (("commune",), _nanmax0(share), {"units": "1"})
    out_vars["flash_flood_prone_km2"] = (("commune",), prone, {
        "units": "km2", "long_name": "area of flash-flood-prone channel cells"})

    ds = xr.Dataset(
        {k: xr.Variable(*v) for k, v in out_vars.items()},
        coords={"commune": ("commune", codes, {"cf_role": "timeseries_id",
                                               "long_name": "official commune code"}),
                "commune_name": ("commune", _text_column(communes, "name", codes)),
                "province": ("commune", _text_column(communes, "province", codes)),
                "time": ("time", times, {"standard_name": "time", "long_name": "end of the forecast interval "
                                         "(UTC)"})})
    ref_iso = pd.Timestamp(ref).isoformat() + "Z"
    ds.attrs.update({
        "Conventions": "CF-1.8",
        "featureType": "timeSeries",
        "title": "ewarn risk assessment per commune",
        "forecast_reference_time": ref_iso,
        "source": str(attrs_in.get("source", "")),
        "step_hours": step,
        "members": int(precip.sizes.get("member", 0)),
        "ensemble_fields": ("rain and levels of the ensemble median (per window, time and commune); "
                            "probabilities over members" if members else "deterministic forecast"),
        "region": str(region.name),
        "disclaimer_vi": levels.LEVEL_DISCLAIMER["vi"],
        "disclaimer_en": levels.LEVEL_DISCLAIMER["en"],
        "options": json.dumps(dataclasses.asdict(opts), ensure_ascii=False),
        "antecedent": ante_note,
        "terrain": "used" if terrain_used else "not used (no terrain or use_terrain=False)",
        "tables": json.dumps({"decision18": str(tables.path), "assess": str(params.path),
                              "rainfall": str(rainfall.rainfall_parameters().path),
                              "flash_flood": str(flash_flood.flash_flood_parameters().path),
                              "landslide": str(landslide.landslide_parameters().path)}, ensure_ascii=False),
        "tables_confidence": "many Decision 18 rows are secondary or unverified (see the tables' "
                             "source/confidence fields)",
        "warnings": "\n".join(warn),
        # no wall-clock time here: re-assessing a cycle gives the same file (the database
        # records when it was assessed)
        "history": f"ewarn {__version__}: ewarn.hazard_models.assess",
    })
    return ds


def _nanmax0(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(a, axis=0).astype(np.float32)


def _trailing_run(wet: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at the last row (axis 0), per column."""
    n = wet.shape[0]
    dry_after = np.where(~wet, np.arange(n)[:, None], -1).max(axis=0)
    return (n - 1 - dry_after).astype(np.int16)


def _text_column(communes: Any, column: str, codes: np.ndarray) -> np.ndarray:
    """A communes column as str in the order of ``codes`` ("" where absent), without a per-row loop."""
    if column not in communes:
        return np.full(codes.size, "", dtype=str)
    order = pd.Index(communes["code"].astype(str)).get_indexer(codes)
    values = communes[column].astype(str).to_numpy(dtype=object)
    return np.asarray(np.where(order >= 0, values[order], ""), dtype=str)


def _align(values: np.ndarray, communes: Any, codes: np.ndarray) -> np.ndarray:
    order = pd.Index(communes["code"].astype(str)).get_indexer(codes)
    return np.asarray(values)[order]


def _rain_attrs(w: int, statistic: str, prefix: str = "") -> dict[str, Any]:
    how = "area-weighted commune mean" if statistic == "mean" else "wettest cell of the commune"
    return {"units": "mm", "standard_name": "lwe_thickness_of_precipitation_amount",
            "long_name": f"{prefix}rain in the {w} h ending at time ({how})", "cell_methods": "time: sum",
            "window_hours": w}


def _zone_from_terrain(derived: xr.Dataset, tgrid: CommuneGrid, params: AssessParameters,
                       tables: levels.Decision18Tables, default: int) -> np.ndarray:
    """Zone class per commune: the highest susceptibility class covering >= the table's area share."""
    sus = np.asarray(derived["susceptibility"].values, dtype=np.float64)
    fr = np.stack([np.asarray(tgrid.fraction_above(sus, k - 0.5)) for k in range(1, 6)])  # (5, commune)
    reached = fr >= params.zone_min_area_share
    cls = np.where(reached.any(axis=0), 5 - np.argmax(reached[::-1], axis=0), 0)
    zone = np.asarray(levels.zone_class_from_susceptibility(cls, tables=tables), np.int8)
    return np.where(zone > 0, zone, default).astype(np.int8)


def _antecedent_on_forecast_grid(ante: xr.DataArray | None, precip: xr.DataArray) -> xr.DataArray | None:
    """Antecedent daily rain on the forecast grid (nearest neighbour), float64; None without days."""
    if ante is None or ante.sizes["time"] == 0:
        return None
    like = precip.isel({d: 0 for d in precip.dims if d in ("member", "time")})
    return _on_grid(ante.astype(np.float64), like)


def _ante5_cells(ante_g: xr.DataArray | None, precip: xr.DataArray) -> xr.DataArray:
    """5-day antecedent rain [mm] per forecast cell (the FFG curve-number input); zeros without days."""
    if ante_g is None:
        return xr.zeros_like(precip.isel({d: 0 for d in precip.dims if d in ("member", "time")}),
                             dtype=np.float64)
    return ante_g.isel(time=slice(-FFG_ANTECEDENT_DAYS, None)).sum("time", skipna=True)


def _ffg_antecedent(ante5: xr.DataArray) -> Any:
    """The FFG curve-number input: the per-cell 5-day antecedent rain, or the scalar 0 for a dry field."""
    return ante5 if bool(np.any(np.asarray(ante5) > 0)) else 0.0


def _threat_cells(precip: xr.DataArray, ante5: xr.DataArray, step: float) -> xr.DataArray:
    """FFG threat ratio per forecast cell: (member?, time, latitude, longitude), float32.

    :func:`ewarn.hazard_models.flash_flood.threat_ratio` (SCIENCE.md §2) with
    the 5-day antecedent rain of each cell (a dry field passes as the scalar 0).
    """
    thr = flash_flood.threat_ratio(precip, _ffg_antecedent(ante5), step_hours=step)
    return thr.transpose(*[d for d in ("member", "time") if d in thr.dims], "latitude", "longitude")


def _ffg_ratio(precip: xr.DataArray, ante5: xr.DataArray, grid: CommuneGrid, step: float) -> np.ndarray:
    """Max over each commune's cells of the FFG threat ratio: (member?, time, commune).

    The numbers of ``grid.maximum(_threat_cells(precip, ante5, step))`` —
    :func:`ewarn.hazard_models.flash_flood.threat_ratio` per cell, then the
    maximum over the cells each commune covers — computed in one pass over
    the forecast by :meth:`ewarn.hazard_models.cell_runs.CellRuns.window_ratio_max`
    (no grid-sized window or ratio arrays; float32 window sums there are
    float64 here, so ratios may differ in the last float32 digit).
    """
    p = flash_flood.flash_flood_parameters()
    wins, _ = rainfall.window_steps(p.threshold_durations_h, step)  # as threat_ratio's accumulations
    if not wins:  # the per-cell path explains the step that fits no duration
        return np.asarray(grid.maximum(_threat_cells(precip, ante5, step)).values, dtype=np.float64)
    guidance = flash_flood.ffg(_ffg_antecedent(ante5), None, p, [d for d, _ in wins])
    if "latitude" in guidance.dims:
        guidance = guidance.transpose("duration", "latitude", "longitude")
    divisor = np.asarray(guidance.values, dtype=np.float32).reshape(len(wins), -1)
    steps = np.array([n for _, n in wins], dtype=np.int64)
    runs = grid.runs("total")
    lead = ["member"] if "member" in precip.dims else []
    da = precip.transpose(*lead, "time", "latitude", "longitude")

    def kernel(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
        three = flat.reshape(-1, *flat.shape[-2:])
        out = runs.window_ratio_max(three, steps, divisor)
        return out.reshape(*flat.shape[:-1], runs.shape[0])

    out = xr.apply_ufunc(
        kernel, da, input_core_dims=[["time", "latitude", "longitude"]],
        output_core_dims=[["time", "commune"]], dask="parallelized", output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {"commune": grid.n_communes}, "allow_rechunk": True})
    return np.asarray(out.values, dtype=np.float64)


def _terrain_rain(precip: xr.DataArray, ante: xr.DataArray | None, derived: xr.Dataset, members: bool
                  ) -> tuple[xr.DataArray, Any, xr.DataArray | None]:
    """The forecast on the terrain grid, its 5-day antecedent rain and LHASA antecedent index.

    Nearest neighbour onto the terrain grid, float32, ``(time, latitude,
    longitude)`` in memory; with members the ensemble MEDIAN field (the
    terrain indices of :func:`assess` are those of the median). The 5-day
    antecedent rain [mm] (FFG curve number, 0.0 without antecedent days) and
    the antecedent rainfall index at the forecast start
    (:func:`ewarn.hazard_models.rainfall.antecedent_rainfall_index`, LHASA;
    None without antecedent days).
    """
    fine = _on_grid(precip, derived["elevation"]).astype(np.float32)
    if members:  # terrain indices of the ensemble median field (documented in assess)
        fine = fine.median("member")
    fine = fine.transpose("time", "latitude", "longitude").load()
    if ante is not None and ante.sizes["time"] > 0:
        ante_f = _on_grid(ante.astype(np.float32), derived["elevation"])
        ante5: Any = ante_f.isel(time=slice(-FFG_ANTECEDENT_DAYS, None)).sum("time")
        daily = xr.concat([ante_f, fine.resample(time="1D").sum().isel(time=slice(0, 0))], "time")
        ari = rainfall.antecedent_rainfall_index(daily, assume_dry_before=True).isel(time=-1)
    else:
        ante5 = 0.0
        ari = None
    return fine, ante5, ari


def _landslide_cells(fine: xr.DataArray, ari: xr.DataArray | None, derived: xr.Dataset, step: float,
                     keep: np.ndarray | None = None) -> xr.Dataset:
    """The landslide model per terrain cell and time (:func:`ewarn.hazard_models.landslide.landslide_hazard`).

    Accumulations over 1, 3, 6, 12, 24 h and the table's recharge window
    (``tables/landslide.toml``) of the terrain-grid rain of :func:`_terrain_rain`;
    ``keep`` (bool per time) runs the model on those times only (each time's
    class depends only on the windows ending then).
    """
    p = landslide.landslide_parameters()
    acc = rainfall.accumulations(fine, sorted({1, 3, 6, 12, 24, int(p.slope.recharge_window_h)}), step)
    if keep is not None:
        acc = acc.isel(time=np.flatnonzero(keep))
    return landslide.landslide_hazard(derived, acc, ari=ari, params=p)


def _terrain_indices(precip: xr.DataArray, ante: xr.DataArray | None, derived: xr.Dataset,
                     tgrid: CommuneGrid, step: float, members: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ERIC index and landslide share per (time, commune) on the terrain grid; prone area per commune."""
    from ewarn.hazard_models.terrain import flow_network

    fine, ante5, ari = _terrain_rain(precip, ante, derived, members)
    haz = _landslide_cells(fine, ari, derived, step)
    p = landslide.landslide_parameters()
    share = np.asarray(landslide.commune_share(tgrid.weights, landslide.susceptible(derived["susceptibility"],
                                                                                    params=p),
                                               haz["triggered"].transpose("time", "latitude", "longitude")),
                       dtype=np.float32)
    e = flash_flood.eric_index(fine, flow_network(derived), ante5, step_hours=step)
    idx = e["eric_index"].transpose("time", "latitude", "longitude").values
    chan = np.asarray(tgrid.maximum(np.asarray(e["channel"].values, dtype=np.float64))) > 0
    eric = np.asarray(tgrid.maximum(np.nan_to_num(idx, nan=0.0)), dtype=np.float32)
    eric[:, ~chan] = np.nan
    prone_cells = np.asarray(derived["flash_flood_prone"].values, dtype=np.float64) * \
        tgrid.cell_area_km2.reshape(tgrid.shape)
    prone = np.asarray(tgrid.total(prone_cells), dtype=np.float32)
    return eric, share, prone


# --------------------------------------------------------------------------- output


def write_assessment(ds: xr.Dataset, path: Path) -> Path:
    """Write an assessment as CF NetCDF (featureType timeSeries), atomically.

    Written to a temporary file in the same folder, then renamed
    (:func:`os.replace`): a reader never sees half a file.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    enc: dict[str, dict[str, Any]] = {}
    for name, v in ds.variables.items():
        if v.dtype.kind == "f":
            enc[str(name)] = {"zlib": True, "complevel": 4}
        if v.dtype.kind == "M":
            enc[str(name)] = {"units": "hours since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian",
                              "dtype": "float64"}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=enc)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_SUMMARY_COLUMNS = ["code", "name", "province", "level_max", "level_flash_landslide_max",
                    "level_heavy_rain_max", "onset_time", "peak_time", "rain_1h_max", "rain_3h_max",
                    "rain_6h_max", "rain_24h_max",
                    "antecedent_rain", "ffg_ratio_max", "eric_index_max", "landslide_share_max",
                    "probability_level_ge2"]


def _utc(values: Any) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(values, dtype="datetime64[ns]")).tz_localize("UTC"))


def summarize(ds: xr.Dataset) -> pd.DataFrame:
    """One row per commune: levels, onset, peak, driving rain, indices; most severe first.

    Columns: code, name, province, level_max, level_flash_landslide_max,
    level_heavy_rain_max, onset_time (UTC, tz-aware), peak_time (UTC),
    rain_1h_max ... rain_24h_max, antecedent_rain [mm], ffg_ratio_max,
    eric_index_max, landslide_share_max, probability_level_ge2 (share of
    members reaching level 2 at some time; NaN without members). Sorted by
    level_max descending, then onset ascending (no onset last), then code.
    """
    n = ds.sizes["commune"]

    def col(name: str, default: float = np.nan) -> np.ndarray:
        return np.asarray(ds[name].values) if name in ds else np.full(n, default)

    df = pd.DataFrame({
        "code": pd.array(ds["commune"].values.astype(str), dtype="string"),
        "name": pd.array(ds["commune_name"].values.astype(str), dtype="string"),
        "province": pd.array(ds["province"].values.astype(str), dtype="string"),
        "level_max": col("level_max").astype(int),
        "level_flash_landslide_max": col("level_flash_landslide_max").astype(int),
        "level_heavy_rain_max": col("level_heavy_rain_max").astype(int),
        "onset_time": _utc(col("onset_time")),
        "peak_time": _utc(col("peak_time")),
        **{f"rain_{w}h_max": col(f"rain_{w}h_max").astype(float) for w in OUTPUT_WINDOWS_H},
        "antecedent_rain": col("antecedent_rain").astype(float),
        "ffg_ratio_max": col("ffg_ratio_max").astype(float),
        "eric_index_max": col("eric_index_max").astype(float),
        "landslide_share_max": col("landslide_share_max").astype(float),
        "probability_level_ge2": col("probability_level_max_ge2").astype(float),
    })
    df = df.sort_values(["level_max", "onset_time", "code"], ascending=[False, True, True],
                        na_position="last", kind="stable")
    return df.reset_index(drop=True)[_SUMMARY_COLUMNS]


# --------------------------------------------------------------------------- database

#: One row per commune per (source, cycle): the summary of the latest assessment of that cycle.
assessments_table = Table(
    "assessments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("cycle", DateTime(timezone=True), nullable=False),
    Column("commune_code", String(16), nullable=False),
    Column("commune_name", Text),
    Column("province", Text),
    Column("level_max", Integer, nullable=False),
    Column("level_flash_landslide_max", Integer),
    Column("level_heavy_rain_max", Integer),
    Column("onset_time", DateTime(timezone=True)),
    Column("peak_time", DateTime(timezone=True)),
    Column("rain_1h_max", Float),
    Column("rain_3h_max", Float),
    Column("rain_6h_max", Float),
    Column("rain_24h_max", Float),
    Column("antecedent_rain", Float),
    Column("ffg_ratio_max", Float),
    Column("eric_index_max", Float),
    Column("landslide_share_max", Float),
    Column("probability_level_ge2", Float),
    Column("path", Text),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source", "cycle", "commune_code", name="uq_assessments_source_cycle_commune"),
)


def _float(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def record_assessment(store: Store, source: str, cycle: dt.datetime, ds: xr.Dataset, path: Path) -> int:
    """Store the per-commune summary of an assessment; idempotent per (source, cycle, commune).

    The rows of that (source, cycle) are replaced in one transaction (a
    re-run of a cycle leaves exactly one row per commune).

    Returns
    -------
    int
        Number of rows written (communes).
    """
    cyc = _aware(cycle)
    if cyc is None:
        raise AssessInputError("record_assessment: cycle is missing; give the forecast reference time (UTC)")
    df = summarize(ds)
    now = utcnow()
    rows = [{
        "source": str(source), "cycle": cyc, "commune_code": str(r.code), "commune_name": str(r.name),
        "province": str(r.province), "level_max": int(r.level_max),
        "level_flash_landslide_max": int(r.level_flash_landslide_max),
        "level_heavy_rain_max": int(r.level_heavy_rain_max),
        "onset_time": _aware(r.onset_time), "peak_time": _aware(r.peak_time),
        **{f"rain_{w}h_max": _float(getattr(r, f"rain_{w}h_max")) for w in OUTPUT_WINDOWS_H},
        "antecedent_rain": _float(r.antecedent_rain), "ffg_ratio_max": _float(r.ffg_ratio_max),
        "eric_index_max": _float(r.eric_index_max), "landslide_share_max": _float(r.landslide_share_max),
        "probability_level_ge2": _float(r.probability_level_ge2), "path": str(path), "recorded_at": now,
    } for r in df.itertuples(index=False)]
    t = assessments_table
    with store.engine.begin() as conn:
        conn.execute(delete(t).where(t.c.source == str(source), t.c.cycle == cyc))
        if rows:
            conn.execute(insert(t), rows)
    return len(rows)


def latest_assessment(store: Store, source: str | None = None) -> pd.DataFrame:
    """Rows of the latest recorded cycle (of ``source``, or of any source), most severe first.

    Returns
    -------
    pandas.DataFrame
        The :func:`summarize` columns plus ``source``, ``cycle`` and ``path``
        (times tz-aware UTC); empty when nothing is recorded.
    """
    t = assessments_table
    with store.engine.connect() as conn:
        q = select(t.c.source, t.c.cycle).order_by(t.c.cycle.desc(), t.c.recorded_at.desc()).limit(1)
        if source is not None:
            q = q.where(t.c.source == source)
        top = conn.execute(q).first()
        cols = ["source", "cycle", "path", *_SUMMARY_COLUMNS]
        if top is None:
            return pd.DataFrame(columns=cols)
        res = conn.execute(select(t).where(t.c.source == top.source, t.c.cycle == top.cycle))
        df = pd.DataFrame(res.mappings().all())
    df = df.rename(columns={"commune_code": "code", "commune_name": "name"})
    for c in ("cycle", "onset_time", "peak_time"):
        df[c] = pd.to_datetime(df[c])
        df[c] = df[c].dt.tz_localize("UTC") if df[c].dt.tz is None else df[c].dt.tz_convert("UTC")
    df = df.sort_values(["level_max", "onset_time", "code"], ascending=[False, True, True],
                        na_position="last")
    return df.reset_index(drop=True)[cols]

