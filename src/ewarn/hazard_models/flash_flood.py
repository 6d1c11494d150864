"""Flash-flood indices per grid cell: an FFG-style threat and an ERIC-style upstream runoff index.

Two complementary indices, both pure functions over xarray (numpy or dask
backed), per cell; per-commune values come from
:class:`ewarn.hazard_models.zonal.CommuneGrid`.

1. **FFG-style threat** (SCIENCE.md §2). Flash-flood guidance FFG(d) is the
   rain over duration d (1, 3, 6 h) that brings a small basin to bankfull
   (Georgakakos 2006, J. Hydrol. 317, 81-103; Carpenter et al. 1999). ewarn's
   stand-in inverts the SCS curve-number runoff equation
   (USDA NEH-630 ch. 10; Chow, Maidment & Mays 1988 §5.5)::

       Q = (P - Ia)² / (P - Ia + S),  Ia = 0.2 S,  S = 25400 / CN - 254  [mm]

   for the threshold runoff ``R_thr(d)``: with ``x = P - 0.2 S``,
   ``x² = R (x + S)``, i.e. ``x² - R x - R S = 0``, whose positive root gives
   the closed form (:func:`flash_flood_guidance`)::

       FFG = 0.2 S + (R + sqrt(R² + 4 R S)) / 2

   The curve number follows antecedent wetness (5-day antecedent rain,
   :func:`curve_number`); drier soil → larger S → higher FFG. Threat ratio =
   forecast rain(d) / FFG(d), classed 0.75-1.25 minor, 1.25-2 moderate,
   > 2 major [confirmed] (:func:`threat_class`).

2. **ERIC-style index** (SCIENCE.md §4; EFAS ERIC, Raynaud et al. 2015,
   Nat. Hazards Earth Syst. Sci. 15, 1851-1869; Alfieri & Thielen 2015,
   Meteorol. Appl. 22, 3-13). Rain over 6, 12, 24 h becomes runoff through a
   wetness-dependent coefficient, is accumulated upstream along the flow
   network (pyflwdir ``FlwdirRaster.accuflux`` of runoff × cell area, divided
   by upstream area → upstream runoff depth [mm]), divided by a reference
   (climatology grid, or thresholds per upstream-area class), max over
   durations, on channel cells only; with ensemble members → probability of
   exceeding the reference (:func:`eric_index`).

Every number that is not a definition comes from ``tables/flash_flood.toml``
(:func:`flash_flood_parameters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ewarn.errors import EwarnError, Problem
from ewarn.hazard_models.rainfall import accumulations
from ewarn.hazard_models.tables import (
    TABLES_DIR,
    TableReader,
    load_cached,
    raise_if_problems,
)

__all__ = [
    "FlashFloodInputError",
    "FlashFloodParameters",
    "curve_number",
    "curve_number_dry",
    "curve_number_wet",
    "eric_index",
    "eric_reference",
    "ffg",
    "ffg_threat",
    "flash_flood_guidance",
    "flash_flood_parameters",
    "flow_grid_coords",
    "runoff_coefficient",
    "scs_retention",
    "scs_runoff",
    "threat_class",
    "threat_ratio",
    "to_flow_grid",
    "upstream_runoff",
]

FLASH_FLOOD_TABLE = TABLES_DIR / "flash_flood.toml"


class FlashFloodInputError(EwarnError):
    """Input the flash-flood indices cannot use (bad curve number, grid mismatch, missing duration)."""


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class FlashFloodParameters:
    """Recalibratable parameters of the flash-flood indices (``tables/flash_flood.toml``).

    Attributes
    ----------
    cn_ii : float
        Default curve number for average antecedent moisture (AMC II) [-].
    amc_mm : tuple of float
        5-day antecedent rain [mm] at which CN = CN_I, CN_II, CN_III.
    threshold_durations_h : tuple of float
        FFG durations [h].
    threshold_runoff_mm : tuple of float
        Threshold runoff per duration [mm].
    class_lower : tuple of float
        Lower QPF/FFG ratio of each threat class (minor, moderate, major) [-].
    class_names, class_names_vi : tuple of str
        Class names in English and Vietnamese.
    coef_antecedent_mm, coef_values : tuple of float
        Runoff coefficient [-] against 5-day antecedent rain [mm].
    eric_min_area_km2, eric_max_area_km2 : float
        Upstream-area range of the channel cells of the ERIC index [km²].
    eric_durations_h : tuple of float
        ERIC accumulation durations [h].
    reference_area_upper_km2 : tuple of float
        Upper bounds of the upstream-area classes of the reference [km²].
    reference_mm : dict
        ``{duration_h: (reference per area class)}`` [mm].
    path : pathlib.Path
        The file the values were read from.
    """

    cn_ii: float
    amc_mm: tuple[float, float, float]
    threshold_durations_h: tuple[float, ...]
    threshold_runoff_mm: tuple[float, ...]
    class_lower: tuple[float, ...]
    class_names: tuple[str, ...]
    class_names_vi: tuple[str, ...]
    coef_antecedent_mm: tuple[float, ...]
    coef_values: tuple[float, ...]
    eric_min_area_km2: float
    eric_max_area_km2: float
    eric_durations_h: tuple[float, ...]
    reference_area_upper_km2: tuple[float, ...]
    reference_mm: dict[float, tuple[float, ...]]
    path: Path


def flash_flood_parameters(path: Path | str | None = None) -> FlashFloodParameters:
    """Read and check the flash-flood parameter table.

    Parameters
    ----------
    path : path-like, optional
        A recalibrated copy of ``tables/flash_flood.toml``; default: the shipped file.

    Returns
    -------
    FlashFloodParameters
        Cached per file and modification time.

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Naming the file, the section and the field of every problem.
    """
    return load_cached(_parse_flash_flood_table, path, FLASH_FLOOD_TABLE)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _parse_flash_flood_table(path: Path) -> FlashFloodParameters:
    t = TableReader(path)
    file, problems = t.file, t.problems
    section = t.section
    number = t.number
    numbers = t.numbers
    cn = section("curve_number")
    cn_ii = number(cn, "curve_number", "cn_ii", 1.0, 100.0) if cn else np.nan
    amc = section("antecedent_moisture")
    anchors = tuple(number(amc, "antecedent_moisture", k, 0.0, 1000.0)
                    for k in ("dry_mm", "normal_mm", "wet_mm")) if amc else (np.nan,) * 3
    if amc and not (anchors[0] < anchors[1] < anchors[2]):
        problems.append(Problem(file, f"dry_mm < normal_mm < wet_mm is required, got {anchors}",
                                "[antecedent_moisture]"))
    thr = section("threshold_runoff")
    thr_d = numbers(thr, "threshold_runoff", "durations_h", 0.01, 1000.0, increasing=True) if thr else ()
    thr_r = numbers(thr, "threshold_runoff", "runoff_mm", 0.01, 1000.0, nondecreasing=True,
                    n=len(thr_d) or None) if thr else ()
    cls = section("threat_classes")
    lower = numbers(cls, "threat_classes", "lower", 0.0, 1000.0, increasing=True) if cls else ()
    names, names_vi = (), ()
    for key in ("names", "names_vi"):
        v = cls.get(key) if cls else None
        if cls and not (isinstance(v, list) and len(v) == len(lower) and all(isinstance(x, str) for x in v)):
            problems.append(Problem(file, f"is {v!r}; must be a list of {len(lower)} names (one per "
                                    "'lower')", "[threat_classes]", key))
        elif cls:
            if key == "names":
                names = tuple(v)
            else:
                names_vi = tuple(v)
    rc = section("runoff_coefficient")
    rc_a = numbers(rc, "runoff_coefficient", "antecedent_mm", 0.0, 10000.0, increasing=True) if rc else ()
    rc_c = numbers(rc, "runoff_coefficient", "coefficient", 0.0, 1.0, nondecreasing=True,
                   n=len(rc_a) or None) if rc else ()
    er = section("eric")
    e_min = number(er, "eric", "min_area_km2", 0.0, 1e7) if er else np.nan
    e_max = number(er, "eric", "max_area_km2", 0.0, 1e7) if er else np.nan
    if er and not e_min < e_max:
        problems.append(Problem(file, f"min_area_km2 ({e_min}) must be below max_area_km2 ({e_max})",
                                "[eric]"))
    e_d = numbers(er, "eric", "durations_h", 0.01, 1000.0, increasing=True) if er else ()
    ref = section("eric_reference")
    upper = numbers(ref, "eric_reference", "area_upper_km2", 0.0, 1e7, increasing=True) if ref else ()
    ref_mm: dict[float, tuple[float, ...]] = {}
    if ref:
        for d in e_d:
            key = f"reference_{int(d) if float(d).is_integer() else d}h_mm"
            ref_mm[d] = numbers(ref, "eric_reference", key, 1e-3, 1e5, n=len(upper) or None)
        if upper and _is_num(e_max) and upper[-1] < e_max:
            problems.append(Problem(file, f"the last class ends at {upper[-1]} km², below [eric] "
                                    f"max_area_km2 ({e_max}); extend it", "[eric_reference]",
                                    "area_upper_km2"))
    raise_if_problems(problems, file)
    return FlashFloodParameters(
        cn_ii=cn_ii, amc_mm=anchors, threshold_durations_h=thr_d, threshold_runoff_mm=thr_r,  # type: ignore[arg-type]
        class_lower=lower, class_names=names, class_names_vi=names_vi, coef_antecedent_mm=rc_a,
        coef_values=rc_c, eric_min_area_km2=e_min, eric_max_area_km2=e_max, eric_durations_h=e_d,
        reference_area_upper_km2=upper, reference_mm=ref_mm, path=path)


def _params(params: FlashFloodParameters | None) -> FlashFloodParameters:
    return params if params is not None else flash_flood_parameters()


# --------------------------------------------------------------------------- SCS curve number


def _check_cn(cn: Any) -> None:
    a = np.asarray(cn.data if isinstance(cn, xr.DataArray) else cn)
    if type(a).__module__.split(".")[0] == "dask":
        return  # checked lazily would cost a compute; S stays NaN/inf for bad values
    bad = ~((a > 0) & (a <= 100))
    if np.any(bad & ~np.isnan(a)):
        raise FlashFloodInputError(
            f"curve number must lie in (0, 100]; got values from {np.nanmin(a):g} to {np.nanmax(a):g}. "
            "Use the SCS curve number of the land cover and soil group (USDA TR-55 table 2-2)")


def scs_retention(cn: Any) -> Any:
    """Potential maximum retention S of the SCS curve-number method.

    ``S = 25400 / CN - 254`` [mm] (USDA NRCS National Engineering Handbook
    part 630 ch. 10, eq. 10-12, metric form; Chow, Maidment & Mays 1988 eq. 5.5.6).

    Parameters
    ----------
    cn : float, array_like or xarray.DataArray
        Curve number, 0 < CN ≤ 100 [-].

    Returns
    -------
    same type as ``cn``
        S [mm] (0 for CN = 100).
    """
    _check_cn(cn)
    return 25400.0 / cn - 254.0


def curve_number_dry(cn_ii: Any) -> Any:
    """Curve number for dry antecedent conditions (AMC I) from CN_II.

    ``CN_I = 4.2 CN_II / (10 - 0.058 CN_II)`` (Chow, Maidment & Mays 1988,
    Applied Hydrology, eq. 5.5.4; USDA NEH-630 ch. 10).
    """
    return 4.2 * cn_ii / (10.0 - 0.058 * cn_ii)


def curve_number_wet(cn_ii: Any) -> Any:
    """Curve number for wet antecedent conditions (AMC III) from CN_II.

    ``CN_III = 23 CN_II / (10 + 0.13 CN_II)`` (Chow, Maidment & Mays 1988,
    Applied Hydrology, eq. 5.5.5; USDA NEH-630 ch. 10).
    """
    return 23.0 * cn_ii / (10.0 + 0.13 * cn_ii)


def curve_number(antecedent_mm: Any, cn_ii: Any = None, params: FlashFloodParameters | None = None) -> Any:
    """Curve number adjusted continuously for antecedent wetness.

    Piecewise-linear in the 5-day antecedent rain ``a``: CN_I for
    ``a ≤ dry_mm``, CN_II at ``normal_mm``, CN_III for ``a ≥ wet_mm``
    (anchors from NEH-4 table 4.2 in ``tables/flash_flood.toml``; the
    continuous interpolation between AMC classes is an ewarn choice so the
    guidance does not jump at class limits).

    Parameters
    ----------
    antecedent_mm : float, array_like or xarray.DataArray
        Rain of the 5 days before the forecast window [mm].
    cn_ii : float, array_like or xarray.DataArray, optional
        AMC II curve number per cell; default ``[curve_number] cn_ii`` of the table.
    params : FlashFloodParameters, optional
        Default: the shipped table.

    Returns
    -------
    same type as the inputs
        Curve number [-], in [CN_I, CN_III].
    """
    p = _params(params)
    cn2 = p.cn_ii if cn_ii is None else cn_ii
    _check_cn(cn2)
    dry, normal, wet = p.amc_mm
    t1 = np.clip((antecedent_mm - dry) / (normal - dry), 0.0, 1.0)
    t2 = np.clip((antecedent_mm - normal) / (wet - normal), 0.0, 1.0)
    cn1, cn3 = curve_number_dry(cn2), curve_number_wet(cn2)
    return cn1 + (cn2 - cn1) * t1 + (cn3 - cn2) * t2


def scs_runoff(rain_mm: Any, retention_mm: Any) -> Any:
    """Direct runoff of the SCS curve-number method.

    ``Q = (P - 0.2 S)² / (P + 0.8 S)`` for ``P > 0.2 S``, else 0 [mm]
    (initial abstraction Ia = 0.2 S; USDA NEH-630 ch. 10 eq. 10-11).

    Parameters
    ----------
    rain_mm : array_like
        Rain P over the event [mm].
    retention_mm : array_like
        Potential maximum retention S [mm] (:func:`scs_retention`).

    Returns
    -------
    array_like
        Runoff Q [mm].
    """
    x = rain_mm - 0.2 * retention_mm
    pos = np.maximum(x, 0.0)
    return pos * pos / np.maximum(rain_mm + 0.8 * retention_mm, np.finfo(float).tiny)


def flash_flood_guidance(threshold_runoff_mm: Any, retention_mm: Any) -> Any:
    """Rain that produces the threshold runoff: the SCS equation solved for P.

    From ``(P - 0.2 S)² / (P + 0.8 S) = R`` with ``x = P - 0.2 S``:
    ``x² = R (x + S)`` → ``x = (R + sqrt(R² + 4 R S)) / 2`` (the root with
    ``x ≥ 0``, i.e. rain above the initial abstraction), so
    ``FFG = 0.2 S + (R + sqrt(R² + 4 R S)) / 2`` [mm]. SCIENCE.md §2 (FFG as the
    rain bringing a small basin to bankfull; Georgakakos 2006).

    Parameters
    ----------
    threshold_runoff_mm : array_like
        Threshold runoff R [mm] (> 0).
    retention_mm : array_like
        Potential maximum retention S [mm] (≥ 0).

    Returns
    -------
    array_like
        Flash-flood guidance [mm], rain over the same duration as R.
    """
    r, s = threshold_runoff_mm, retention_mm
    return 0.2 * s + (r + np.sqrt(r * r + 4.0 * r * s)) / 2.0


# --------------------------------------------------------------------------- FFG-style threat


def ffg(antecedent_mm: Any, cn_ii: Any = None, params: FlashFloodParameters | None = None,
        durations_h: Sequence[float] | None = None) -> xr.DataArray:
    """Flash-flood guidance per duration from antecedent wetness.

    Parameters
    ----------
    antecedent_mm : float or xarray.DataArray
        5-day antecedent rain [mm] per cell (any dims, e.g. latitude, longitude).
    cn_ii : float or xarray.DataArray, optional
        AMC II curve number per cell; default from the table.
    params : FlashFloodParameters, optional
        Default: the shipped table.
    durations_h : sequence of float, optional
        Subset of the table's durations [h]; default all (1, 3, 6 h).

    Returns
    -------
    xarray.DataArray
        ``ffg`` [mm] with a leading ``duration`` dim (coordinate in hours).

    Raises
    ------
    FlashFloodInputError
        A duration with no threshold runoff in the table, or a bad curve number.
    """
    p = _params(params)
    table = dict(zip(p.threshold_durations_h, p.threshold_runoff_mm, strict=True))
    ds = p.threshold_durations_h if durations_h is None else tuple(float(d) for d in durations_h)
    missing = [d for d in ds if d not in table]
    if missing:
        raise FlashFloodInputError(
            f"no threshold runoff for duration(s) {missing} h in {p.path} [threshold_runoff]; add them or "
            f"use {list(p.threshold_durations_h)}")
    s = scs_retention(curve_number(antecedent_mm, cn_ii, p))
    r = xr.DataArray(np.array([table[d] for d in ds]), dims="duration",
                     coords={"duration": np.array(ds)})
    out = flash_flood_guidance(r, s if isinstance(s, xr.DataArray) else xr.DataArray(s))
    out = out.transpose("duration", ...)
    out.coords["duration"].attrs.update(units="h", long_name="duration of the rain")
    return out.rename("ffg").assign_attrs(
        units="mm", long_name="flash-flood guidance: rain over the duration that brings a small basin "
        "to bankfull (SCS curve number, moisture-dependent)")


def threat_class(ratio: Any, params: FlashFloodParameters | None = None) -> Any:
    """Threat class of a QPF/FFG ratio: 0 none, 1 minor, 2 moderate, 3 major; -1 unknown (NaN).

    Classes 0.75-1.25 minor, 1.25-2 moderate, > 2 major, the QPF/FFG ratio
    classes used by US forecasters (SCIENCE.md §2 [confirmed]); limits from
    ``[threat_classes]`` of the table. A ratio equal to a lower limit belongs
    to that class.

    Parameters
    ----------
    ratio : array_like or xarray.DataArray
        Forecast rain / FFG over the same duration [-].
    params : FlashFloodParameters, optional

    Returns
    -------
    same type
        int8 class.
    """
    p = _params(params)
    r = ratio if isinstance(ratio, xr.DataArray) else np.asarray(ratio)
    cls = sum((r >= lo).astype(np.int8) for lo in p.class_lower)
    if isinstance(r, xr.DataArray):
        return xr.where(r.isnull(), np.int8(-1), cls).astype(np.int8)
    return np.where(np.isnan(r), -1, cls).astype(np.int8)


def ffg_threat(precip: xr.DataArray | xr.Dataset, antecedent_mm: Any, cn_ii: Any = None,
               params: FlashFloodParameters | None = None, step_hours: float | None = None) -> xr.Dataset:
    """FFG-style flash-flood threat per cell, time (and member).

    For each FFG duration d the forecast can resolve (a whole multiple of its
    step): ``ratio_d = rain_d / FFG(d)`` with ``rain_d`` the trailing d-hour
    total (:func:`ewarn.hazard_models.rainfall.accumulations`); the threat
    ratio is the maximum over d and the threat ``rain_d − FFG(d)`` [mm] the
    maximum over d (SCIENCE.md §2: threat where > 0).

    Parameters
    ----------
    precip : xarray.DataArray or xarray.Dataset
        Forecast precipitation [mm per interval], dims ``(member?, time,
        latitude, longitude)`` (DESIGN.md forecast contract).
    antecedent_mm : float or xarray.DataArray
        5-day antecedent rain [mm], broadcastable to ``precip`` (per cell, or
        per cell and time).
    cn_ii : float or xarray.DataArray, optional
        AMC II curve number per cell; default from the table.
    params : FlashFloodParameters, optional
    step_hours : float, optional
        Passed to :func:`~ewarn.hazard_models.rainfall.accumulations`.

    Returns
    -------
    xarray.Dataset
        ``ffg`` (duration, ...) [mm]; ``ratio`` (duration, precip dims) [-];
        ``threat_ratio`` and ``threat_mm`` (max over durations);
        ``threat_class`` (int8, :func:`threat_class`); ``duration`` in hours.

    Raises
    ------
    ewarn.hazard_models.rainfall.RainfallInputError
        When no FFG duration is a whole multiple of the forecast step.
    """
    p = _params(params)
    acc = accumulations(precip, p.threshold_durations_h, step_hours)
    # accumulations() skips durations that are not whole multiples of the step and raises
    # RainfallInputError (naming the step) when none is
    ds = [d for d in p.threshold_durations_h if f"rain_{_h(d)}h" in acc]
    guidance = ffg(antecedent_mm, cn_ii, p, ds)
    rain = xr.concat([acc[f"rain_{_h(d)}h"] for d in ds], dim=xr.DataArray(np.array(ds), dims="duration",
                                                                            name="duration"))
    ratio = (rain / guidance).rename("ratio")
    threat = (rain - guidance).max("duration").rename("threat_mm")
    tr = ratio.max("duration")
    out = xr.Dataset({
        "ffg": guidance,
        "ratio": ratio.assign_attrs(units="1", long_name="forecast rain / flash-flood guidance"),
        "threat_ratio": tr.assign_attrs(units="1", long_name="max over durations of rain / FFG"),
        "threat_mm": threat.assign_attrs(units="mm", long_name="max over durations of rain - FFG "
                                         "(threat where > 0)"),
        "threat_class": threat_class(tr, p).assign_attrs(
            long_name="QPF/FFG threat class", flag_values=list(range(-1, len(p.class_lower) + 1)),
            flag_meanings="unknown none " + " ".join(p.class_names)),
    })
    out["duration"].attrs.update(units="h")
    out.attrs.update(source_table=str(p.path), method="SCS curve number FFG (SCIENCE.md §2)")
    return out


def threat_ratio(precip: xr.DataArray | xr.Dataset, antecedent_mm: Any, cn_ii: Any = None,
                 params: FlashFloodParameters | None = None, step_hours: float | None = None
                 ) -> xr.DataArray:
    """Only the threat ratio of :func:`ffg_threat`: max over durations of rain_d / FFG(d) [-].

    The same numbers as ``ffg_threat(...)["threat_ratio"]`` (SCIENCE.md §2),
    computed duration by duration into one float32 array, so a national grid
    needs one grid-sized array per duration and no duration-stacked copies.

    Parameters
    ----------
    precip, antecedent_mm, cn_ii, params, step_hours
        As for :func:`ffg_threat`.

    Returns
    -------
    xarray.DataArray
        float32, dims of ``precip``; NaN where the rain is unknown.
    """
    p = _params(params)
    acc = accumulations(precip, p.threshold_durations_h, step_hours)
    ds = [d for d in p.threshold_durations_h if f"rain_{_h(d)}h" in acc]
    guidance = ffg(antecedent_mm, cn_ii, p, ds)
    out: xr.DataArray | None = None
    for d in ds:  # a handful of durations, each a whole-grid vectorized step
        rain = acc[f"rain_{_h(d)}h"]
        # divide in float32 (cast the small guidance, not the grid-sized result)
        r = rain.astype(np.float32, copy=False) / guidance.sel(duration=d, drop=True).astype(np.float32)
        out = r if out is None else np.fmax(out, r)
        del acc[f"rain_{_h(d)}h"]
    assert out is not None  # accumulations() raised if no duration fits the step
    return out.rename("threat_ratio").assign_attrs(units="1", long_name="max over durations of rain / FFG")


def _h(w: float) -> int | float:
    return int(w) if float(w).is_integer() else float(w)


# --------------------------------------------------------------------------- ERIC-style index


def runoff_coefficient(antecedent_mm: Any, params: FlashFloodParameters | None = None) -> Any:
    """Runoff coefficient [-] from 5-day antecedent rain, linear in ``[runoff_coefficient]`` of the table.

    Parameters
    ----------
    antecedent_mm : float, array_like or xarray.DataArray
        5-day antecedent rain [mm]; constant beyond the table's ends.
    params : FlashFloodParameters, optional

    Returns
    -------
    same type
        Share of rain that runs off [-].
    """
    p = _params(params)
    xp, fp = np.asarray(p.coef_antecedent_mm), np.asarray(p.coef_values)
    if isinstance(antecedent_mm, xr.DataArray):
        return xr.apply_ufunc(np.interp, antecedent_mm, kwargs={"xp": xp, "fp": fp}, dask="parallelized",
                              output_dtypes=[np.float64])
    return np.interp(antecedent_mm, xp, fp)


def flow_grid_coords(flwdir: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates ``(y, x)`` of a pyflwdir raster, in its row/column order.

    Parameters
    ----------
    flwdir : pyflwdir.FlwdirRaster
        A flow network with an (unrotated) affine ``transform``.

    Returns
    -------
    y, x : numpy.ndarray
        ``y = f + e (row + 0.5)``, ``x = c + a (col + 0.5)`` (degrees when
        ``flwdir.latlon``).
    """
    t = flwdir.transform
    if t.b != 0 or t.d != 0:
        raise FlashFloodInputError("the flow network's transform is rotated; use a north-up grid")
    ny, nx = flwdir.shape
    return t.f + t.e * (np.arange(ny) + 0.5), t.c + t.a * (np.arange(nx) + 0.5)


def to_flow_grid(field: xr.DataArray, flwdir: Any) -> xr.DataArray:
    """A field on the forecast grid, sampled at the cells of the flow network (nearest neighbour).

    Parameters
    ----------
    field : xarray.DataArray
        Dims ``(..., latitude, longitude)`` on the forecast grid, or already
        on the flow grid (same shape as ``flwdir``, any coordinates) when the
        flow network is not in lon/lat.
    flwdir : pyflwdir.FlwdirRaster

    Returns
    -------
    xarray.DataArray
        Dims ``(..., latitude, longitude)`` with the flow grid's cell centres
        in raster order (latitude descending for a north-up raster).

    Raises
    ------
    FlashFloodInputError
        When the flow grid reaches beyond the forecast grid, or the shapes differ.
    """
    dims = field.dims[-2:]
    if not flwdir.latlon:
        if field.shape[-2:] != tuple(flwdir.shape):
            raise FlashFloodInputError(
                f"the flow network is projected (not lon/lat) and the field's grid {field.shape[-2:]} is not "
                f"its grid {tuple(flwdir.shape)}; resample the field onto the terrain grid first")
        return field
    if dims != ("latitude", "longitude"):
        raise FlashFloodInputError(f"the field's last dims are {dims}; expected ('latitude', 'longitude') "
                                   "as ewarn.forecasts produces")
    y, x = flow_grid_coords(flwdir)
    lat, lon = field["latitude"].values, field["longitude"].values
    half_y = abs(np.diff(lat).min()) / 2 if lat.size > 1 else abs(flwdir.transform.e)
    half_x = abs(np.diff(lon).min()) / 2 if lon.size > 1 else abs(flwdir.transform.a)
    if (y.min() < lat.min() - half_y - 1e-9 or y.max() > lat.max() + half_y + 1e-9
            or x.min() < lon.min() - half_x - 1e-9 or x.max() > lon.max() + half_x + 1e-9):
        raise FlashFloodInputError(
            f"the flow network (lon {x.min():g}..{x.max():g}, lat {y.min():g}..{y.max():g}) reaches "
            f"beyond the forecast grid (lon {lon.min():g}..{lon.max():g}, lat {lat.min():g}..{lat.max():g}); "
            "use a forecast that covers the terrain")
    out = field.sel(latitude=y, longitude=x, method="nearest")
    return out.assign_coords(latitude=y, longitude=x)


def _accumulate(q: np.ndarray, flwdir: Any, area: np.ndarray, upa: np.ndarray) -> np.ndarray:
    """Upstream mean depth of ``q`` (..., ny, nx): one compiled accuflux per leading slice."""
    lead = q.shape[:-2]
    flat = np.asarray(q, dtype=np.float64).reshape(-1, *q.shape[-2:])
    out = np.empty_like(flat)
    for k in range(flat.shape[0]):  # one per (member, time, window) field, never per cell
        out[k] = flwdir.accuflux(flat[k] * area, nodata=np.nan)
    out /= upa
    return out.reshape(*lead, *q.shape[-2:])


def upstream_runoff(runoff_mm: xr.DataArray, flwdir: Any) -> xr.DataArray:
    """Area-weighted mean runoff depth over each cell's upstream area.

    ``U_i = Σ_{j ∈ up(i)} q_j A_j / Σ_{j ∈ up(i)} A_j`` [mm], with ``up(i)``
    the cells draining through i (itself included) along the D8 network and
    ``A_j`` the cell area: runoff depth × area → volume, accumulated
    downstream with pyflwdir ``FlwdirRaster.accuflux`` (Eilander et al. 2021,
    HESS 25, 5287-5313), divided by the upstream area → depth (EFAS ERIC,
    Raynaud et al. 2015).

    Parameters
    ----------
    runoff_mm : xarray.DataArray
        Runoff depth [mm] with dims ``(..., latitude, longitude)``, on the
        forecast grid (sampled onto the flow grid, :func:`to_flow_grid`) or on
        the flow grid.
    flwdir : pyflwdir.FlwdirRaster
        The flow network (e.g. ``terrain.flow_network`` or ``pyflwdir.from_dem``).

    Returns
    -------
    xarray.DataArray
        Upstream runoff depth [mm] on the flow grid, leading dims kept
        (dask-backed input stays lazy: one block per leading chunk).
    """
    q = to_flow_grid(runoff_mm, flwdir)
    area = np.asarray(flwdir.area, dtype=np.float64)
    upa = flwdir.accuflux(area)
    core = list(q.dims[-2:])
    out = xr.apply_ufunc(
        _accumulate, q, kwargs={"flwdir": flwdir, "area": area, "upa": upa},
        input_core_dims=[core], output_core_dims=[core], dask="parallelized",
        output_dtypes=[np.float64], dask_gufunc_kwargs={"allow_rechunk": True})
    return out.rename("upstream_runoff").assign_attrs(
        units="mm", long_name="area-weighted mean runoff depth over the upstream area")


def eric_reference(upstream_area_km2: np.ndarray, params: FlashFloodParameters | None = None,
                   durations_h: Sequence[float] | None = None) -> xr.DataArray:
    """Reference upstream runoff per duration from the upstream-area classes of the table.

    Parameters
    ----------
    upstream_area_km2 : numpy.ndarray
        ``(ny, nx)`` upstream area [km²].
    params : FlashFloodParameters, optional
    durations_h : sequence of float, optional
        Default: the table's ERIC durations.

    Returns
    -------
    xarray.DataArray
        ``(duration, y, x)`` reference depth [mm]; a cell with upstream area
        ≤ ``area_upper_km2[k]`` (and above the previous bound) takes class k;
        cells beyond the last bound take the last class.
    """
    p = _params(params)
    ds = p.eric_durations_h if durations_h is None else tuple(float(d) for d in durations_h)
    upper = np.asarray(p.reference_area_upper_km2)
    k = np.minimum(np.searchsorted(upper, upstream_area_km2, side="left"), upper.size - 1)
    ref = np.stack([np.asarray(p.reference_mm[d])[k] for d in ds])
    return xr.DataArray(ref, dims=("duration", "y", "x"), coords={"duration": np.array(ds)},
                        name="reference", attrs={"units": "mm"})


def eric_index(precip: xr.DataArray | xr.Dataset, flwdir: Any, antecedent_mm: Any, *,
               climatology: xr.DataArray | None = None, params: FlashFloodParameters | None = None,
               step_hours: float | None = None, threshold: float = 1.0) -> xr.Dataset:
    """ERIC-style flash-flood index: upstream runoff over 6/12/24 h relative to a reference.

    ``index = max_d U_d / ref_d`` on channel cells (upstream area in
    ``[min_area_km2, max_area_km2]`` of the table, SCIENCE.md §4), with
    ``U_d`` the upstream runoff (:func:`upstream_runoff`) of the runoff
    ``c(antecedent) × rain_d`` and ``ref_d`` the climatology (mean annual
    maximum of U_d) when given, else the table's reference per upstream-area
    class (:func:`eric_reference`). With a ``member`` dim,
    ``probability = P(index > threshold)`` over members (EFAS ERIC,
    Raynaud et al. 2015; Alfieri & Thielen 2015).

    Parameters
    ----------
    precip : xarray.DataArray or xarray.Dataset
        Forecast precipitation [mm per interval], ``(member?, time, latitude, longitude)``.
    flwdir : pyflwdir.FlwdirRaster
        Flow network (lon/lat, or projected with ``precip`` on its grid).
    antecedent_mm : float or xarray.DataArray
        5-day antecedent rain [mm] on the forecast grid (for the runoff coefficient).
    climatology : xarray.DataArray, optional
        Reference upstream runoff [mm], dims ``(duration, y, x)`` on the flow
        grid in raster order (``duration`` coordinate in hours).
    params : FlashFloodParameters, optional
    step_hours : float, optional
        Passed to :func:`~ewarn.hazard_models.rainfall.accumulations`.
    threshold : float
        Index value whose exceedance the probability counts [-] (1 = the reference).

    Returns
    -------
    xarray.Dataset
        On the flow grid sorted to latitude ascending (the forecast contract,
        ready for :class:`~ewarn.hazard_models.zonal.CommuneGrid`):
        ``upstream_runoff`` (duration, ...) [mm], ``reference`` [mm],
        ``eric_index`` [-] (NaN off the channel cells), ``channel`` (bool),
        ``upstream_area`` [km²] and, with members, ``probability`` [-].

    Raises
    ------
    ewarn.hazard_models.rainfall.RainfallInputError
        When no ERIC duration is a whole multiple of the forecast step.
    FlashFloodInputError
        When the climatology has the wrong shape or durations, or the flow
        grid reaches beyond the forecast.
    """
    p = _params(params)
    acc = accumulations(precip, p.eric_durations_h, step_hours)
    ds = [d for d in p.eric_durations_h if f"rain_{_h(d)}h" in acc]
    rain = xr.concat([acc[f"rain_{_h(d)}h"] for d in ds],
                     dim=xr.DataArray(np.array(ds), dims="duration", name="duration"))
    runoff = rain * runoff_coefficient(antecedent_mm, p)
    runoff = runoff.transpose(..., "latitude", "longitude") if "latitude" in runoff.dims else runoff
    up = upstream_runoff(runoff, flwdir)
    upa_km2 = flwdir.accuflux(np.asarray(flwdir.area, dtype=np.float64)) / 1e6
    ydim, xdim = up.dims[-2:]
    if climatology is not None:
        if climatology.shape[-2:] != tuple(flwdir.shape) or "duration" not in climatology.dims:
            raise FlashFloodInputError(
                f"climatology has dims {climatology.dims} and shape {climatology.shape}; expected "
                f"(duration, y, x) with y, x = {tuple(flwdir.shape)} of the flow grid")
        miss = [d for d in ds if d not in set(np.asarray(climatology["duration"].values, float))]
        if miss:
            raise FlashFloodInputError(f"climatology has no duration(s) {miss} h; give one per duration {ds}")
        ref = xr.DataArray(np.asarray(climatology.sel(duration=ds).transpose("duration", ...).values,
                                      dtype=np.float64), dims=("duration", "y", "x"),
                           coords={"duration": np.array(ds)})
        ref = ref.where(ref > 0)  # a zero or negative reference gives no index
    else:
        ref = eric_reference(upa_km2, p, ds)
    ref = ref.rename({"y": ydim, "x": xdim}).assign_coords({ydim: up[ydim], xdim: up[xdim]})
    channel = (upa_km2 >= p.eric_min_area_km2) & (upa_km2 <= p.eric_max_area_km2)
    channel_da = xr.DataArray(channel, dims=(ydim, xdim), coords={ydim: up[ydim], xdim: up[xdim]})
    index = (up / ref).max("duration").where(channel_da)
    out = xr.Dataset({
        "upstream_runoff": up,
        "reference": ref.assign_attrs(units="mm", long_name="reference upstream runoff"),
        "eric_index": index.assign_attrs(units="1", long_name="max over durations of upstream runoff / "
                                         "reference, on channel cells"),
        "channel": channel_da.assign_attrs(long_name="channel cell within the ERIC upstream-area range"),
        "upstream_area": xr.DataArray(upa_km2, dims=(ydim, xdim)).assign_attrs(units="km2"),
    })
    if "member" in index.dims:
        out["probability"] = ((index > threshold).where(index.notnull()).mean("member")).assign_attrs(
            units="1", long_name=f"share of members whose ERIC index exceeds {threshold:g}")
    out["duration"].attrs.update(units="h")
    out.attrs.update(source_table=str(p.path), method="ERIC-style upstream runoff index (SCIENCE.md §4)",
                     reference="climatology" if climatology is not None else "table by upstream-area class")
    if ydim == "latitude" and out.sizes[ydim] > 1 and out[ydim].values[0] > out[ydim].values[-1]:
        out = out.isel({ydim: slice(None, None, -1)})
    return out
