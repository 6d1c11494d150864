"""Rainfall-triggered landslide hazard, per grid cell and per commune.

Three independent triggers, each a pure function over arrays (numpy or
xarray, dask-friendly), combined into one class per cell:

(a) :func:`lhasa_class` — NASA LHASA v1 nowcast: the antecedent rainfall
    index (:func:`ewarn.hazard_models.rainfall.antecedent_rainfall_index`)
    above the cell's 95th percentile (:func:`ari_threshold`) × the
    susceptibility class (Kirschbaum & Stanley 2018).
(b) :func:`id_exceedance`, :func:`daily_exceedance` — rainfall thresholds:
    intensity–duration curves (Caine 1980; Guzzetti et al. 2008) and the
    Vietnamese daily thresholds with antecedent rain (Hà Giang, Do & Yin
    2018; Mai Châu), as ratios rain / threshold (≥ 1 = exceeded).
(c) :func:`saturated_fraction`, :func:`factor_of_safety` — infinite-slope
    stability with SHALSTAB steady-state wetness (Montgomery & Dietrich 1994).

:func:`landslide_index` combines them into classes 0 none, 1 low, 2 moderate,
3 high; :func:`landslide_hazard` runs the whole chain on a derived terrain
(:mod:`ewarn.hazard_models.terrain`) and rainfall accumulations;
:func:`commune_share` turns cells into the share of each commune's
susceptible area that is triggered, through a sparse cell → commune weight
matrix (built by :mod:`ewarn.hazard_models.zonal`).

Every number that is not a definition lives in ``tables/landslide.toml``
with its source and confidence (:func:`landslide_parameters`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import sparse

from ewarn.errors import EwarnError, Problem
from ewarn.hazard_models.tables import (
    TABLES_DIR,
    TableReader,
    load_cached,
    raise_if_problems,
)

__all__ = [
    "INDEX_CLASSES",
    "DailyThreshold",
    "IntensityDurationThreshold",
    "LandslideInputError",
    "LandslideParameters",
    "SlopeParameters",
    "ari_threshold",
    "commune_share",
    "daily_exceedance",
    "daily_threshold_mm",
    "factor_of_safety",
    "fs_class",
    "id_exceedance",
    "id_threshold_intensity",
    "landslide_hazard",
    "landslide_index",
    "landslide_parameters",
    "lhasa_class",
    "saturated_fraction",
    "susceptible",
    "triggered",
]

LANDSLIDE_TABLE = TABLES_DIR / "landslide.toml"

#: Names of the landslide index classes (Vietnamese first).
INDEX_CLASSES: dict[int, tuple[str, str]] = {
    0: ("không", "none"),
    1: ("thấp", "low"),
    2: ("trung bình", "moderate"),
    3: ("cao", "high"),
}


class LandslideInputError(EwarnError):
    """Inputs the landslide model cannot use (wrong grid, missing window, bad parameter)."""


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class IntensityDurationThreshold:
    """``I = alpha * D**-beta`` [mm/h] for ``d_min_h <= D <= d_max_h`` [h]."""

    name: str
    alpha: float
    beta: float
    d_min_h: float
    d_max_h: float


@dataclass(frozen=True)
class DailyThreshold:
    """``max(floor_mm, intercept_mm - slope * antecedent)`` [mm/day], antecedent over ``antecedent_days``."""

    name: str
    intercept_mm: float
    slope: float
    antecedent_days: int
    floor_mm: float


@dataclass(frozen=True)
class SlopeParameters:
    """Infinite-slope / SHALSTAB parameters (units in the names; kPa = kN/m²)."""

    cohesion_kpa: float
    friction_angle_deg: float
    soil_depth_m: float
    gamma_kn_m3: float
    gamma_sat_kn_m3: float
    gamma_w_kn_m3: float
    ks_m_s: float
    recharge_window_h: int
    unstable_below: float
    marginal_below: float


@dataclass(frozen=True)
class LandslideParameters:
    """Recalibratable parameters of the landslide model (``tables/landslide.toml``).

    Attributes
    ----------
    wet_percentile : float
        Percentile of the cell's ARI climatology above which it is wet [%].
    moderate_above, high_above, low_above : int
        Susceptibility class a wet cell must exceed for each hazard class.
    default_ari_mm_day : float
        ARI threshold where no climatology is given [mm/day].
    id_thresholds : dict
        Intensity–duration thresholds by name; ``id_use`` is the one the index uses.
    daily : dict
        Vietnamese daily thresholds by name.
    slope : SlopeParameters
        Infinite-slope parameters.
    triggered_min_class, susceptible_min_class : int
        Index class counted as triggered; susceptibility class counted as susceptible.
    path : pathlib.Path
        The table file.
    """

    wet_percentile: float
    moderate_above: int
    high_above: int
    low_above: int
    default_ari_mm_day: float
    id_thresholds: dict[str, IntensityDurationThreshold]
    id_use: str
    daily: dict[str, DailyThreshold]
    slope: SlopeParameters
    triggered_min_class: int
    susceptible_min_class: int
    path: Path


def landslide_parameters(path: Path | str | None = None) -> LandslideParameters:
    """Read and check the landslide parameters table.

    Parameters
    ----------
    path : path-like, optional
        A recalibrated copy of ``tables/landslide.toml``; default: the shipped file.

    Returns
    -------
    LandslideParameters
        Cached per file and modification time.

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Naming the file, the section or row and the field of every problem.
    """
    return load_cached(_parse_landslide_table, path, LANDSLIDE_TABLE)


def _parse_landslide_table(path: Path) -> LandslideParameters:
    t = TableReader(path)
    file, problems = t.file, t.problems
    section = t.section
    rows = t.rows
    num = t.number
    lh = section("lhasa")
    wet_pct = num(lh, "[lhasa]", "wet_percentile", 50, 100)
    mod_above = num(lh, "[lhasa]", "moderate_above", 0, 5, integer=True)
    high_above = num(lh, "[lhasa]", "high_above", 0, 5, integer=True)
    dflt = section("lhasa_default_threshold")
    ari_mm = num(dflt, "[lhasa_default_threshold]", "ari_mm_per_day", 0, 1000)

    ids: dict[str, IntensityDurationThreshold] = {}
    for where, r in rows("intensity_duration"):
        t = IntensityDurationThreshold(str(r.get("name")), num(r, where, "alpha", 1e-6, 1e4),
                                       num(r, where, "beta", 0, 5), num(r, where, "d_min_h", 0, 1e5),
                                       num(r, where, "d_max_h", 0, 1e5))
        if t.d_min_h > t.d_max_h:
            problems.append(Problem(file, "d_min_h is above d_max_h", where, "d_min_h"))
        ids[t.name] = t
    use_sec = section("id")
    use = use_sec.get("use")
    if use_sec and use not in ids:
        problems.append(Problem(file, f"is {use!r}; must name an [[intensity_duration]] row "
                                f"({', '.join(ids)})", "[id]", "use"))

    daily: dict[str, DailyThreshold] = {}
    for where, r in rows("daily"):
        days = num(r, where, "antecedent_days", 1, 60, integer=True)
        d = DailyThreshold(str(r.get("name")), num(r, where, "intercept_mm", 0, 2000),
                           num(r, where, "slope", 0, 10), int(days) if np.isfinite(days) else 0,
                           num(r, where, "floor_mm", 1e-3, 2000))
        daily[d.name] = d

    sl = section("infinite_slope")
    w = "[infinite_slope]"
    window = num(sl, w, "recharge_window_h", 1, 720, integer=True)
    slope = SlopeParameters(
        cohesion_kpa=num(sl, w, "cohesion_kpa", 0, 1000),
        friction_angle_deg=num(sl, w, "friction_angle_deg", 0, 89),
        soil_depth_m=num(sl, w, "soil_depth_m", 1e-3, 100),
        gamma_kn_m3=num(sl, w, "gamma_kn_m3", 1, 50),
        gamma_sat_kn_m3=num(sl, w, "gamma_sat_kn_m3", 1, 50),
        gamma_w_kn_m3=num(sl, w, "gamma_w_kn_m3", 1, 20),
        ks_m_s=num(sl, w, "ks_m_s", 1e-12, 1),
        recharge_window_h=int(window) if np.isfinite(window) else 0,
        unstable_below=num(sl, w, "unstable_below", 0, 10),
        marginal_below=num(sl, w, "marginal_below", 0, 10))
    if slope.unstable_below > slope.marginal_below:
        problems.append(Problem(file, "unstable_below must not exceed marginal_below", w, "unstable_below"))

    ix = section("index")
    low_above = num(ix, "[index]", "low_above", 0, 5, integer=True)
    trig = num(ix, "[index]", "triggered_min_class", 1, 3, integer=True)
    sus = num(ix, "[index]", "susceptible_min_class", 1, 5, integer=True)
    if lh and ix and not (low_above <= mod_above <= high_above):
        problems.append(Problem(file, "need low_above <= moderate_above <= high_above (a more susceptible "
                                "cell never gets a lower class)", "[lhasa]", "moderate_above"))
    raise_if_problems(problems, file)
    return LandslideParameters(
        wet_percentile=wet_pct, moderate_above=int(mod_above), high_above=int(high_above),
        low_above=int(low_above), default_ari_mm_day=ari_mm, id_thresholds=ids, id_use=str(use),
        daily=daily, slope=slope, triggered_min_class=int(trig), susceptible_min_class=int(sus), path=path)


# --------------------------------------------------------------------------- helpers


def _by_susceptibility(trigger: Any, susceptibility: Any, p: LandslideParameters) -> Any:
    """Class 0..3 of a triggered cell from its susceptibility (the LHASA v1 rule, plus 'low')."""
    sus = susceptibility
    return xr.where(trigger & (sus > p.high_above), 3,
                    xr.where(trigger & (sus > p.moderate_above), 2,
                             xr.where(trigger & (sus > p.low_above), 1, 0))).astype(np.int8)


def _window_hours(da: xr.DataArray, name: str) -> float | None:
    w = da.attrs.get("window_hours")
    if isinstance(w, int | float | np.integer | np.floating):
        return float(w)
    m = re.fullmatch(r"rain_(\d+(?:\.\d+)?)h", name)
    return float(m.group(1)) if m else None


# --------------------------------------------------------------------------- (a) LHASA v1


def ari_threshold(climatology: xr.DataArray | None = None, *,
                  params: LandslideParameters | None = None) -> xr.DataArray | float:
    """The ARI above which a cell is wet [mm/day].

    LHASA v1 (Kirschbaum & Stanley 2018) takes each cell's own 95th
    percentile of the antecedent rainfall index over a long record.

    Parameters
    ----------
    climatology : xarray.DataArray, optional
        Daily ARI over many years [mm/day] with a ``time`` dim (e.g.
        ``antecedent_rainfall_index`` of a satellite or reanalysis record).
        Without it the table's ``ari_mm_per_day`` (20 mm/day, an unverified
        ewarn choice) applies everywhere.
    params : LandslideParameters, optional

    Returns
    -------
    xarray.DataArray or float
        Per-cell percentile (NaN where the record is all NaN) or the constant.
    """
    p = params or landslide_parameters()
    if climatology is None:
        return p.default_ari_mm_day
    if "time" not in climatology.dims:
        raise LandslideInputError("the ARI climatology has no 'time' dimension; give daily ARI values over "
                                  "a long record (years)")
    q = climatology.quantile(p.wet_percentile / 100.0, dim="time", skipna=True)
    return q.drop_vars("quantile").assign_attrs(
        units="mm day-1", long_name=f"{p.wet_percentile:g}th percentile of the antecedent rainfall index")


def lhasa_class(ari: Any, susceptibility: Any, threshold: Any = None, *,
                params: LandslideParameters | None = None) -> Any:
    """LHASA v1 nowcast class: 0 none, 2 moderate, 3 high.

    wet = ARI > threshold; moderate = wet and susceptibility > 2; high = wet
    and susceptibility > 4 (Kirschbaum, D. & Stanley, T. (2018), Earth's
    Future 6:505–523; SCIENCE.md §3 [confirmed]; the class limits are in
    ``tables/landslide.toml`` [lhasa]).

    Parameters
    ----------
    ari : array_like
        Antecedent rainfall index [mm/day].
    susceptibility : array_like
        Susceptibility class 1..5 (0 = unknown: never a hazard).
    threshold : float or array_like, optional
        Wet threshold [mm/day]; default :func:`ari_threshold` without climatology.
    params : LandslideParameters, optional

    Returns
    -------
    int8 array (xarray when an input is xarray)
    """
    p = params or landslide_parameters()
    thr = ari_threshold(params=p) if threshold is None else threshold
    wet = ari > thr
    sus = susceptibility
    return xr.where(wet & (sus > p.high_above), 3,
                    xr.where(wet & (sus > p.moderate_above), 2, 0)).astype(np.int8)


# --------------------------------------------------------------------------- (b) thresholds


def id_threshold_intensity(duration_h: Any, name: str | None = None, *,
                           params: LandslideParameters | None = None) -> np.ndarray:
    """Intensity threshold ``I = alpha D^-beta`` [mm/h] for durations ``D`` [h].

    Caine, N. (1980), Geografiska Annaler 62A:23–27: I = 14.82 D^-0.39,
    0.167–500 h. Guzzetti, F. et al. (2008), Landslides 5:3–17, global
    minimum: I = 2.20 D^-0.44, 0.1–1000 h (coefficients [unverified] in
    SCIENCE.md §3; ``tables/landslide.toml`` [[intensity_duration]]).

    Parameters
    ----------
    duration_h : array_like
        Rain durations [h].
    name : str, optional
        Row of the table; default the one named in [id] (``caine1980``).
    params : LandslideParameters, optional

    Returns
    -------
    numpy.ndarray
        [mm/h]; NaN outside the curve's valid duration range.
    """
    p = params or landslide_parameters()
    key = name or p.id_use
    if key not in p.id_thresholds:
        raise LandslideInputError(f"no intensity-duration threshold named {key!r}; the table has "
                                  f"{', '.join(p.id_thresholds)}")
    t = p.id_thresholds[key]
    d = np.asarray(duration_h, dtype=np.float64)
    with np.errstate(divide="ignore"):
        i = t.alpha * d ** (-t.beta)
    return np.where((d >= t.d_min_h) & (d <= t.d_max_h), i, np.nan)


def id_exceedance(acc: xr.Dataset, name: str | None = None, *,
                  params: LandslideParameters | None = None) -> xr.Dataset:
    """Ratio of mean rain intensity to the intensity–duration threshold, per window and the max.

    For a window of ``D`` hours with accumulation ``R`` [mm], the ratio is
    ``(R / D) / I(D)``; ≥ 1 means the threshold is reached.

    Parameters
    ----------
    acc : xarray.Dataset
        Output of :func:`ewarn.hazard_models.rainfall.accumulations`
        (variables ``rain_{D}h`` [mm], each with a ``window_hours`` attribute).
    name : str, optional
        Threshold row; default [id] ``use``.
    params : LandslideParameters, optional

    Returns
    -------
    xarray.Dataset
        ``ratio_{D}h`` for the windows inside the curve's duration range and
        ``ratio_max`` (largest over them, NaN only where all are NaN) [-].

    Raises
    ------
    LandslideInputError
        When no window lies in the curve's duration range.
    """
    p = params or landslide_parameters()
    key = name or p.id_use
    out: dict[str, xr.DataArray] = {}
    for var in acc.data_vars:
        w = _window_hours(acc[var], str(var))
        if w is None:
            continue
        thr = float(id_threshold_intensity(w, key, params=p))
        if not np.isfinite(thr):
            continue
        out[f"ratio_{w:g}h"] = (acc[var] / (w * thr)).assign_attrs(
            units="1", long_name=f"{w:g} h rain intensity / {key} threshold ({thr:.3g} mm/h)",
            window_hours=w)
    if not out:
        raise LandslideInputError(
            f"none of the accumulation windows ({', '.join(map(str, acc.data_vars)) or 'none'}) lies in the "
            f"{key} threshold's duration range; compute accumulations with ewarn.hazard_models.rainfall."
            "accumulations first")
    ds = xr.Dataset(out)
    ratio_max = functools.reduce(np.fmax, list(out.values()))
    ds["ratio_max"] = ratio_max.assign_attrs(units="1", long_name=f"largest rain / {key} threshold ratio")
    return ds.assign_attrs(threshold=key)


def daily_threshold_mm(antecedent_mm: Any, name: str = "ha_giang", *,
                       params: LandslideParameters | None = None) -> Any:
    """Vietnamese daily landslide threshold [mm/day] after antecedent rain.

    Hà Giang: 40.8 − 0.201 × (3-day antecedent rain) (Do, H. M. & Yin,
    K.-L. (2018)); Mai Châu: 128.41 − 0.076 × (10-day antecedent rain)
    (SCIENCE.md §3). Never below the row's ``floor_mm`` (the linear fits
    reach 0 beyond ~200 mm of antecedent rain).

    Parameters
    ----------
    antecedent_mm : array_like
        Rain of the ``antecedent_days`` days before the day [mm].
    name : str
        ``ha_giang`` or ``mai_chau`` (rows of [[daily]]).
    params : LandslideParameters, optional
    """
    p = params or landslide_parameters()
    if name not in p.daily:
        raise LandslideInputError(f"no daily threshold named {name!r}; the table has {', '.join(p.daily)}")
    t = p.daily[name]
    return np.maximum(t.intercept_mm - t.slope * antecedent_mm, t.floor_mm)


def daily_exceedance(daily: xr.DataArray, name: str = "ha_giang", *, assume_dry_before: bool = False,
                     params: LandslideParameters | None = None) -> xr.DataArray:
    """Ratio of each day's rain to the daily threshold after its antecedent rain.

    Parameters
    ----------
    daily : xarray.DataArray
        Daily totals [mm], ``time`` one day apart (e.g.
        :func:`ewarn.hazard_models.rainfall.hydromet_daily_totals`).
    name : str
        Threshold row (``ha_giang``: 3 antecedent days; ``mai_chau``: 10).
    assume_dry_before : bool
        False (default): days without the full antecedent record are NaN.
        True: days before the series count as 0 mm.
    params : LandslideParameters, optional

    Returns
    -------
    xarray.DataArray
        rain / threshold [-] (≥ 1 = exceeded).
    """
    p = params or landslide_parameters()
    if "time" not in daily.dims:
        raise LandslideInputError("daily totals need a 'time' dimension (one value per day)")
    if name not in p.daily:
        raise LandslideInputError(f"no daily threshold named {name!r}; the table has {', '.join(p.daily)}")
    n = p.daily[name].antecedent_days
    if assume_dry_before:
        ante = daily.rolling(time=n, min_periods=1).sum().shift(time=1, fill_value=0.0)
    else:
        ante = daily.rolling(time=n, min_periods=n).sum().shift(time=1)
    ratio = daily / daily_threshold_mm(ante, name, params=p)
    return ratio.rename(f"daily_ratio_{name}").assign_attrs(
        units="1", long_name=f"daily rain / {name} threshold after {n}-day antecedent rain")


# --------------------------------------------------------------------------- (c) infinite slope


def saturated_fraction(recharge_m_s: Any, upslope_area_m2: Any, cell_width_m: Any, slope_deg: Any, *,
                       params: LandslideParameters | None = None) -> Any:
    """SHALSTAB steady-state saturated fraction of the soil column ``m`` [0..1].

    ``m = min(1, q a / (b T sin θ))`` with ``T = Ks z cos θ`` (Montgomery, D.
    R. & Dietrich, W. E. (1994), Water Resources Research 30(4):1153–1171;
    SCIENCE.md §3). On flat cells (θ = 0) any recharge saturates the column
    (m = 1) and none leaves it dry (m = 0).

    Parameters
    ----------
    recharge_m_s : array_like
        Steady recharge rate q [m/s] (rain rate).
    upslope_area_m2 : array_like
        Contributing area a [m²] (``terrain.upstream_area`` × 1e6).
    cell_width_m : array_like
        Contour width b [m] (the cell width).
    slope_deg : array_like
        Slope θ [deg].
    params : LandslideParameters, optional
        ``Ks`` and ``z`` from [infinite_slope].

    Returns
    -------
    array (xarray when an input is xarray)
        m, NaN where an input is NaN.
    """
    s = (params or landslide_parameters()).slope
    theta = np.radians(slope_deg)
    transmissivity = s.ks_m_s * s.soil_depth_m * np.cos(theta)
    inflow = recharge_m_s * upslope_area_m2
    with np.errstate(divide="ignore", invalid="ignore"):
        m = inflow / (cell_width_m * transmissivity * np.sin(theta))
    m = xr.where(np.sin(theta) <= 0, xr.where(inflow > 0, 1.0, 0.0), m)
    m = np.clip(m, 0.0, 1.0)
    return xr.where(np.isnan(inflow * theta * cell_width_m), np.nan, m)


def factor_of_safety(slope_deg: Any, saturated_fraction: Any = 0.0, *,
                     params: LandslideParameters | None = None) -> Any:
    """Infinite-slope factor of safety.

    ``FS = c′ / (γ z sin θ cos θ) + (1 − m γw / γ) tan φ′ / tan θ``
    (SCIENCE.md §3; Montgomery & Dietrich 1994; the infinite-slope model of
    Skempton, A. W. & DeLory, F. A. (1957)). **γ vs γsat**: SCIENCE.md's form
    uses one unit weight γ for the whole column. Here the column's weight is
    ``γ = (1 − m) γ_dry + m γ_sat`` (the saturated part of the column at
    γ_sat), which is SCIENCE.md's formula exactly when ``gamma_sat_kn_m3``
    equals ``gamma_kn_m3`` in the table, and slightly more stable (heavier
    column, same pore pressure) otherwise.

    Parameters
    ----------
    slope_deg : array_like
        Slope θ [deg].
    saturated_fraction : array_like
        m [0..1] (:func:`saturated_fraction`); 0 = dry.
    params : LandslideParameters, optional
        c′ [kPa], φ′ [deg], z [m], γ, γsat, γw [kN/m³] from [infinite_slope].

    Returns
    -------
    array (xarray when an input is xarray)
        FS [-]; +inf on flat cells (θ = 0); FS < 1 unstable, 1–1.3 marginal.
    """
    s = (params or landslide_parameters()).slope
    theta = np.radians(slope_deg)
    m = saturated_fraction
    gamma = (1.0 - m) * s.gamma_kn_m3 + m * s.gamma_sat_kn_m3
    with np.errstate(divide="ignore", invalid="ignore"):
        cohesion = s.cohesion_kpa / (gamma * s.soil_depth_m * np.sin(theta) * np.cos(theta))
        tan_phi = np.tan(np.radians(s.friction_angle_deg))
        friction = (1.0 - m * s.gamma_w_kn_m3 / gamma) * tan_phi / np.tan(theta)
        fs = cohesion + friction
    return xr.where(np.sin(theta) <= 0, np.inf, fs)


def fs_class(fs: Any, *, params: LandslideParameters | None = None) -> Any:
    """Class of a factor of safety: 3 unstable (FS < 1), 2 marginal (1 ≤ FS < 1.3), 0 stable.

    Limits in [infinite_slope] (SCIENCE.md §3: FS < 1 unstable, 1–1.3 marginal).
    """
    s = (params or landslide_parameters()).slope
    return xr.where(fs < s.unstable_below, 3, xr.where(fs < s.marginal_below, 2, 0)).astype(np.int8)


# --------------------------------------------------------------------------- combination


def landslide_index(
    susceptibility: Any,
    *,
    wet: Any = None,
    rain_ratio: Any = None,
    fs: Any = None,
    fs_dry: Any = None,
    params: LandslideParameters | None = None,
) -> Any:
    """Landslide hazard class per cell: 0 none, 1 low, 2 moderate, 3 high.

    Combination rule (an ewarn choice, ``tables/landslide.toml`` [index]):

    1. Rainfall triggers: LHASA-wet (``wet``) or a rainfall threshold
       reached (``rain_ratio`` ≥ 1) give high where susceptibility > 4,
       moderate where > 2 (LHASA v1), low where > 1 (outside LHASA v2's
       ≤ 10° slope mask); ``base`` = the largest of them.
    2. Infinite slope: ``fs_rain`` = the class of ``fs`` (3 unstable,
       2 marginal, :func:`fs_class`) where the rain made it worse than the
       dry slope's class ``fs_dry`` (slopes unstable even when dry are a
       parameter misfit, not a rain warning), on susceptibility > 1.
       SHALSTAB's steady state saturates steep hillslopes under a few mm/h
       (T = Ks z cos θ ≈ 1e-5 m²/s drains little), so FS tells *where* more
       than *when*: it raises a rain-triggered cell by at most one class,
       ``min(fs_rain, base + 1)``, and alone gives at most "low".

    ``index = max(base, min(fs_rain, base + 1))``. Every term rises with
    rain, so more rain never lowers the class.

    Parameters
    ----------
    susceptibility : array_like
        Class 1..5 (0 = unknown: class 0).
    wet : array_like of bool, optional
        LHASA wet cells (ARI above its threshold).
    rain_ratio : array_like, optional
        Rain / threshold (:func:`id_exceedance` ``ratio_max``,
        :func:`daily_exceedance`, or their maximum).
    fs, fs_dry : array_like, optional
        Factor of safety with the rain and dry (``fs_dry`` omitted: FS class counts as is).
    params : LandslideParameters, optional

    Returns
    -------
    int8 array (xarray when an input is xarray)
    """
    p = params or landslide_parameters()
    classes = []
    if wet is not None:
        classes.append(_by_susceptibility(wet, susceptibility, p))
    if rain_ratio is not None:
        classes.append(_by_susceptibility(rain_ratio >= 1.0, susceptibility, p))
    if not classes and fs is None:
        raise LandslideInputError("landslide_index needs at least one trigger: wet, rain_ratio or fs")
    base = functools.reduce(np.maximum, classes).astype(np.int8) if classes else 0
    if fs is None:
        return base
    c = fs_class(fs, params=p)
    if fs_dry is not None:
        c = xr.where(c > fs_class(fs_dry, params=p), c, 0)
    fs_rain = xr.where(susceptibility > p.low_above, c, 0)
    return np.maximum(base, np.minimum(fs_rain, base + 1)).astype(np.int8)


def triggered(index: Any, *, params: LandslideParameters | None = None) -> Any:
    """Cells whose class reaches [index] ``triggered_min_class`` (default 2, moderate)."""
    return index >= (params or landslide_parameters()).triggered_min_class


def susceptible(susceptibility: Any, *, params: LandslideParameters | None = None) -> Any:
    """Cells whose susceptibility reaches [index] ``susceptible_min_class`` (default 3: LHASA "> 2")."""
    return susceptibility >= (params or landslide_parameters()).susceptible_min_class


def _same_grid(a: xr.DataArray | xr.Dataset, derived: xr.Dataset, what: str) -> None:
    for axis in ("latitude", "longitude"):
        if axis not in a.dims:
            raise LandslideInputError(f"{what} has no '{axis}' dimension; give it on the terrain grid")
        x, y = np.asarray(a[axis].values), np.asarray(derived[axis].values)
        if x.shape != y.shape or not np.allclose(x, y, rtol=0, atol=1e-7):
            raise LandslideInputError(
                f"{what} is not on the terrain grid ({axis}: {x.size} values vs {y.size}); regrid it first, "
                "e.g. rain.interp_like(derived, method='nearest')")


def landslide_hazard(
    derived: xr.Dataset,
    acc: xr.Dataset,
    *,
    ari: xr.DataArray | None = None,
    ari_wet_threshold: Any = None,
    params: LandslideParameters | None = None,
) -> xr.Dataset:
    """The landslide model on a terrain grid, for every time of the accumulations.

    Steps: :func:`id_exceedance` (``ratio_max``); the recharge
    ``q`` = the ``recharge_window_h`` accumulation / its duration (steady
    state, [infinite_slope]); :func:`saturated_fraction` with
    ``a`` = upstream area, ``b`` = √(cell area); :func:`factor_of_safety`
    wet and dry; LHASA wet cells when ``ari`` is given;
    :func:`landslide_index`; :func:`triggered`.

    Parameters
    ----------
    derived : xarray.Dataset
        :func:`ewarn.hazard_models.terrain.derive_terrain` output.
    acc : xarray.Dataset
        :func:`ewarn.hazard_models.rainfall.accumulations` on the terrain grid
        (dims ``(member?, time, latitude, longitude)``).
    ari : xarray.DataArray, optional
        Antecedent rainfall index [mm/day] on the terrain grid; without
        ``time``, or daily (``time`` = day end): each time of ``acc`` takes
        the day that contains it (the next day end at or after it).
    ari_wet_threshold : float or array_like, optional
        Default :func:`ari_threshold` (table constant).
    params : LandslideParameters, optional

    Returns
    -------
    xarray.Dataset
        ``index`` (int8 0..3), ``triggered`` (bool), ``rain_ratio``,
        ``factor_of_safety``, ``saturated_fraction`` and, with ``ari``,
        ``wet``; dims of ``acc``.
    """
    p = params or landslide_parameters()
    _same_grid(acc, derived, "the rainfall accumulations")
    sus = derived["susceptibility"]
    ratio = id_exceedance(acc, params=p)["ratio_max"]
    w = p.slope.recharge_window_h
    var = next((v for v in acc.data_vars if _window_hours(acc[v], str(v)) == w), None)
    if var is None:
        raise LandslideInputError(f"the accumulations have no {w} h window (recharge_window_h in "
                                  f"{p.path}); add {w} to the windows of rainfall.accumulations")
    q = acc[var] / (w * 3600.0 * 1000.0)  # mm per window -> m/s
    slope = derived["slope"]
    m = saturated_fraction(q, derived["upstream_area"] * 1e6, np.sqrt(derived["cell_area"]), slope, params=p)
    fs = factor_of_safety(slope, m, params=p)
    fs_dry = factor_of_safety(slope, 0.0, params=p)
    wet = None
    if ari is not None:
        _same_grid(ari, derived, "the antecedent rainfall index")
        if "time" in ari.dims:
            ari = ari.reindex(time=acc["time"].values, method="bfill")
        thr = ari_threshold(params=p) if ari_wet_threshold is None else ari_wet_threshold
        wet = ari > thr
    index = landslide_index(sus, wet=wet, rain_ratio=ratio, fs=fs, fs_dry=fs_dry, params=p)
    out = xr.Dataset({
        "index": index.assign_attrs(long_name="landslide hazard class (0 none, 1 low, 2 moderate, 3 high)",
                                    flag_values=np.arange(4, dtype=np.int8),
                                    flag_meanings="none low moderate high"),
        "triggered": triggered(index, params=p).assign_attrs(
            long_name=f"landslide triggered (class >= {p.triggered_min_class})"),
        "rain_ratio": ratio,
        "factor_of_safety": fs.astype(np.float32).assign_attrs(units="1", long_name="infinite-slope FS"),
        "saturated_fraction": m.astype(np.float32).assign_attrs(
            units="1", long_name="SHALSTAB saturated fraction of the soil column"),
    })
    if wet is not None:
        out["wet"] = wet.assign_attrs(long_name="LHASA wet (ARI above threshold)")
    out = out.transpose(*ratio.dims)  # the accumulations' dim order for every variable
    return out.assign_attrs(id_threshold=p.id_use, parameters=str(p.path))


# --------------------------------------------------------------------------- per commune


def commune_share(
    weights: sparse.csr_array | sparse.csr_matrix,
    susceptible_cells: Any,
    triggered_cells: Any,
    *,
    communes: Any = None,
) -> Any:
    """Share of each commune's susceptible area that is triggered.

    ``share = W @ (susceptible & triggered) / W @ susceptible``, 0 where a
    commune has no susceptible area.

    Parameters
    ----------
    weights : scipy.sparse CSR, shape (communes, cells)
        Coverage fraction × cell area of each cell in each commune
        (:mod:`ewarn.hazard_models.zonal`); cells in C order of the
        ``(latitude, longitude)`` grid.
    susceptible_cells : array_like of bool, shape (latitude, longitude) or (cells,)
        :func:`susceptible` of the terrain.
    triggered_cells : array_like of bool, shape (..., latitude, longitude)
        :func:`triggered`; leading dims (time, member) are kept. An xarray
        input keeps its leading dims and coords.
    communes : array_like, optional
        Commune codes for the ``commune`` coordinate of an xarray result.

    Returns
    -------
    numpy.ndarray (..., communes) or xarray.DataArray (..., commune)
        Shares in 0..1 [-].
    """
    W = sparse.csr_array(weights)
    n_communes, n_cells = W.shape
    s = np.asarray(susceptible_cells.values if isinstance(susceptible_cells, xr.DataArray)
                   else susceptible_cells, dtype=bool).reshape(-1)
    if s.size != n_cells:
        raise LandslideInputError(f"the weight matrix has {n_cells} cells, the susceptibility grid {s.size}; "
                                  "build the weights on the terrain grid")
    is_xr = isinstance(triggered_cells, xr.DataArray)
    if is_xr:
        grid = [d for d in ("latitude", "longitude") if d in triggered_cells.dims]
        lead = [d for d in triggered_cells.dims if d not in grid]
        t = triggered_cells.transpose(*lead, *grid)
        arr = np.asarray(t.values, dtype=bool)
    else:
        arr = np.asarray(triggered_cells, dtype=bool)
    if arr.ndim >= 1 and arr.shape[-1] == n_cells:
        lead_shape = arr.shape[:-1]
    elif arr.ndim >= 2 and arr.shape[-2] * arr.shape[-1] == n_cells:
        lead_shape = arr.shape[:-2]
    else:
        raise LandslideInputError(f"the triggered cells (shape {arr.shape}) do not match the weight matrix's "
                                  f"{n_cells} cells; give them on the terrain grid")
    flat = arr.reshape(-1, n_cells)
    den = W @ s.astype(np.float64)
    num = (W @ (flat & s[None, :]).astype(np.float64).T).T
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(den > 0, num / den, 0.0)
    share = share.reshape(*lead_shape, n_communes)
    if not is_xr:
        return share
    coords = {d: t[d] for d in lead if d in t.coords}
    if communes is not None:
        coords["commune"] = np.asarray(communes)
    return xr.DataArray(share, dims=(*lead, "commune"), coords=coords, name="landslide_share",
                        attrs={"units": "1", "long_name": "share of the susceptible area where a landslide "
                                                          "is triggered"})
