"""Normalize any reader's output to the forecast contract (DESIGN.md).

The contract: ``precipitation`` in mm per interval on dims ``(member?, time,
latitude, longitude)``; ``time`` is the END of each interval, UTC;
latitude/longitude ascending, longitude in −180..180; global attributes
``forecast_reference_time`` (ISO UTC), ``source``, ``step_hours``; CF-1.8
metadata (``standard_name: lwe_thickness_of_precipitation_amount``,
``units: mm``, ``cell_methods: time: sum``), with ``time_bnds`` and a
``step_hours`` coordinate giving each interval. When the steps are uneven
(ECMWF: 1-hourly, then 3-hourly, then 6-hourly) the attribute ``step_hours``
is NaN and the ``step_hours`` coordinate holds the length of each interval,
unless the profile resamples (``resample_hours``).

Everything stays lazy (dask) when the reader is lazy: the grid is cut by
slices, units and de-accumulation are element-wise or one gather along time.
Negative rain beyond the profile's tolerance is kept for :func:`validate
<ewarn.forecasts.validate.validate>` to refuse (checking it here would read
the whole forecast twice).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ewarn.config import SourceProfile
from ewarn.forecasts.accumulation import (
    deaccumulate,
    plan_intervals,
    resample_intervals,
    window_starts,
)
from ewarn.forecasts.errors import ForecastError
from ewarn.forecasts.grid import Bounds, select_region, to_rectilinear
from ewarn.forecasts.units import Conversion, conversion

#: Output variable name and CF metadata.
VARIABLE = "precipitation"
CF_ATTRS = {
    "standard_name": "lwe_thickness_of_precipitation_amount",
    "long_name": "precipitation amount per interval",
    "units": "mm",
    "cell_methods": "time: sum",
}
#: CF standard names of precipitation variables, tried when the profile names none.
PRECIP_STANDARD_NAMES = (
    "lwe_thickness_of_precipitation_amount", "precipitation_amount", "precipitation_flux",
    "lwe_precipitation_rate", "thickness_of_rainfall_amount", "rainfall_amount", "rainfall_flux",
    "lwe_thickness_of_rainfall_amount", "rainfall_rate",
)
#: Variable names tried after the standard names.
PRECIP_NAMES = ("precipitation", "precip", "pr", "tp", "apcp", "prate", "rain", "rainfall", "RAIN",
                "APCP_surface", "PRATE_surface", "tot_prec", "TOT_PREC")
#: Dimension names that hold ensemble members.
MEMBER_DIMS = ("member", "number", "realization", "ensemble_member", "ensemble", "ens", "mem")
#: Attributes / variables holding the reference time.
REFERENCE_NAMES = ("forecast_reference_time", "reftime", "reference_time", "analysis_time")


def to_utc(value: Any) -> np.datetime64:
    """A time (str, datetime, datetime64, Timestamp) as naive UTC ``datetime64[ns]``.

    Naive inputs are taken as UTC; aware ones are converted. WRF's
    ``2024-09-07_12:00:00`` is accepted.
    """
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        value = value.strip().replace("_", "T")
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.as_unit("ns").to_datetime64(), "ns")


def iso_utc(value: np.datetime64 | dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``."""
    return f"{pd.Timestamp(to_utc(value)):%Y-%m-%dT%H:%M:%S}Z"


# --------------------------------------------------------------------------- variable


def _find_variable(raw: xr.Dataset, profile: SourceProfile, file: str) -> list[Hashable]:
    if profile.variable:
        names = [n.strip() for n in profile.variable.split("+") if n.strip()]
        missing = [n for n in names if n not in raw.data_vars]
        if missing:
            raise ForecastError(
                f"is not in the file (its variables: {', '.join(map(str, raw.data_vars))}); set "
                "variable in the source profile", file=file, variable="+".join(missing))
        return list(names)
    by_std = [n for n, v in raw.data_vars.items() if v.attrs.get("standard_name") in PRECIP_STANDARD_NAMES]
    if len(by_std) == 1:
        return by_std
    if len(by_std) > 1:
        raise ForecastError(
            f"has several precipitation variables ({', '.join(map(str, by_std))}); choose one with "
            "variable = \"...\" in the source profile", file=file)
    for name in PRECIP_NAMES:
        if name in raw.data_vars:
            return [name]
    raise ForecastError(
        f"has no precipitation variable (no CF standard_name such as "
        f"lwe_thickness_of_precipitation_amount, none of the usual names; its variables: "
        f"{', '.join(map(str, raw.data_vars)) or 'none'}); set variable in the source profile",
        file=file)


def select_variable(raw: xr.Dataset, profile: SourceProfile, file: str = ""
                    ) -> tuple[str, xr.DataArray]:
    """The precipitation variable (or the sum of the profile's ``A+B``) and its name."""
    names = _find_variable(raw, profile, file)
    label = "+".join(map(str, names))
    da = raw[names[0]]
    if len(names) > 1:
        units = {str(raw[n].attrs.get("units", "")).strip() for n in names}
        if len(units) > 1:
            raise ForecastError(f"the variables summed have different units ({', '.join(sorted(units))})"
                                "; sum variables of one unit", file=file, variable=label)
        attrs = dict(da.attrs)
        for n in names[1:]:
            da = da + raw[n]
        da.attrs = attrs
        # WRF bucket counters: I_RAINNC counts how many times RAINNC was reset by bucket_mm
        counters = [f"I_{n}" for n in names if f"I_{n}" in raw.data_vars]
        if counters:
            bucket = raw.attrs.get("BUCKET_MM")
            if bucket is None or float(bucket) <= 0:
                raise ForecastError("has bucket counters (I_RAINNC) but no positive BUCKET_MM attribute; "
                                    "the totals cannot be rebuilt", file=file, variable=label)
            for c in counters:
                da = da + raw[c] * float(bucket)
            da.attrs = attrs
    return label, da.rename(label)


# --------------------------------------------------------------------------- time


def _reference_from(raw: xr.Dataset, da: xr.DataArray) -> np.datetime64 | None:
    for attrs in (da.attrs, raw.attrs):
        for key in REFERENCE_NAMES:
            if attrs.get(key) not in (None, ""):
                return to_utc(attrs[key])
    for src in (da.coords, raw.coords, raw.data_vars):
        for name, var in src.items():
            if (name in REFERENCE_NAMES or var.attrs.get("standard_name") == "forecast_reference_time") \
                    and var.size == 1 and np.issubdtype(var.dtype, np.datetime64):
                return to_utc(var.values.reshape(-1)[0])
    for key in ("SIMULATION_START_DATE", "START_DATE"):  # WRF
        if raw.attrs.get(key):
            return to_utc(raw.attrs[key])
    return None


def _time_dim(raw: xr.Dataset, da: xr.DataArray) -> tuple[Hashable | None, np.ndarray | None]:
    """The dimension of valid times and their values (datetime64), or (None, None)."""
    if "Time" in da.dims:  # WRF
        for name in ("XTIME", "Time"):
            var = da.coords.get(name, raw.get(name))
            if var is not None and var.dims == ("Time",) and np.issubdtype(var.dtype, np.datetime64):
                return "Time", var.values
        if "Times" in raw:
            text = [b"".join(np.atleast_1d(r)).decode() if r.dtype.kind == "S" else str(r)
                    for r in raw["Times"].values]
            return "Time", np.array([to_utc(t) for t in text])
    for name, var in list(da.coords.items()) + list(raw.coords.items()):
        is_ref = name in REFERENCE_NAMES or var.attrs.get("standard_name") == "forecast_reference_time"
        if var.ndim == 1 and var.dims[0] in da.dims and np.issubdtype(var.dtype, np.datetime64) \
                and not is_ref:
            return var.dims[0], var.values
    return None, None


def _hours(delta: np.ndarray) -> np.ndarray:
    return np.asarray(delta, dtype="timedelta64[ns]") / np.timedelta64(1, "h")


def hours_to_timedelta(hours: np.ndarray) -> np.ndarray:
    """Hours (float) as ``timedelta64[ns]``, rounded to the nanosecond."""
    return np.round(np.asarray(hours, dtype=float) * 3.6e12).astype("int64").astype("timedelta64[ns]")


def _time_axis(raw: xr.Dataset, da: xr.DataArray, profile: SourceProfile, file: str, name: str,
               cycle: np.datetime64 | None
               ) -> tuple[np.datetime64, xr.DataArray, np.ndarray, np.ndarray | None, float | None]:
    """Reference time, data on a positional ``time`` dim, end hours, file window starts, first step."""
    file_start: np.ndarray | None = None
    first_step: float | None = None
    if "step" in da.dims or "step" in da.coords:  # cfgrib: reference time + lead time
        if "step" not in da.dims:
            da = da.expand_dims("step")
        if "time" not in da.coords or da["time"].size != 1:
            raise ForecastError("has lead times (step) but no single reference time", file=file,
                                variable=name)
        ref = to_utc(da["time"].values.reshape(-1)[0])
        if cycle is not None and ref != cycle:
            raise ForecastError(
                f"is the cycle {iso_utc(ref)}, not the requested {iso_utc(cycle)}; drop --cycle or "
                "ingest the file of that cycle", file=file, variable=name)
        end = _hours(da["step"].values)
        if "window_start_h" in da.coords:
            file_start = np.asarray(da["window_start_h"].values, dtype=float)
        da = da.drop_vars([c for c in ("time", "valid_time", "window_start_h") if c in da.coords])
        dim: Hashable = "step"
    else:
        dim, valid = _time_dim(raw, da)
        if dim is None:
            scalar = [c for c, v in da.coords.items() if v.ndim == 0 and np.issubdtype(v.dtype, np.datetime64)
                      and c not in REFERENCE_NAMES]
            if not scalar:
                raise ForecastError("has no time coordinate; add one (CF: time with units "
                                    "'hours since ...')", file=file, variable=name)
            valid = np.atleast_1d(da[scalar[0]].values)
            da = da.drop_vars(scalar[0]).expand_dims("time")
            dim = "time"
        if valid.dtype.kind == "O":
            try:
                valid = np.asarray([to_utc(str(v)) for v in valid])
            except (TypeError, ValueError):
                raise ForecastError("has times in a calendar ewarn cannot convert; convert the file to "
                                    "the standard (Gregorian) calendar", file=file, variable=name) from None
        valid = valid.astype("datetime64[ns]")
        ref = _reference_from(raw, da)
        if cycle is not None:
            if ref is not None and ref != cycle:
                raise ForecastError(
                    f"is the cycle {iso_utc(ref)}, not the requested {iso_utc(cycle)}; drop --cycle "
                    "or ingest the file of that cycle", file=file, variable=name)
            ref = cycle
        bounds = _time_bounds(raw, da, dim)
        if ref is None and profile.observed:  # observations: from the start of the first interval
            ref = bounds[:, 0].min() if bounds is not None else _first_start(raw, da, valid, file, name)
        if ref is None:
            raise ForecastError(
                "has no forecast reference time (a forecast_reference_time attribute or variable); "
                "pass the cycle (ewarn ingest SOURCE FILE --cycle 2024-09-07T12) or fix the file",
                file=file, variable=name)
        end = _hours(valid - ref)
        if bounds is not None:
            file_start = _hours(bounds[:, 0] - ref)
        elif "step_hours" in da.coords and da["step_hours"].dims == (dim,):
            file_start = end - np.asarray(da["step_hours"].values, dtype=float)
        else:
            attr = raw.attrs.get("step_hours", da.attrs.get("step_hours"))
            try:
                first_step = float(attr) if attr is not None and np.isfinite(float(attr)) else None
            except (TypeError, ValueError):
                first_step = None
    da = da.drop_vars([c for c in da.coords if dim in da[c].dims])
    da = da.rename({dim: "time"}) if dim != "time" else da
    order = np.argsort(end, kind="stable")
    end = end[order]
    if np.any(np.diff(end) <= 0):
        dup = end[1:][np.diff(end) <= 0][0]
        raise ForecastError(
            f"has the time +{dup:g} h ({iso_utc(ref + hours_to_timedelta(dup))}) twice; "
            "the file was assembled wrong: fix it (e.g. 'cdo sorttimestamp' removes duplicates)",
            file=file, variable=name)
    if np.any(order != np.arange(order.size)):
        da = da.isel(time=order)
        file_start = None if file_start is None else file_start[order]
    if end[0] < -1e-6 and not profile.observed:
        raise ForecastError(
            f"has times before its reference time {iso_utc(ref)} (first at {end[0]:+g} h); the "
            "reference time is wrong: fix the file or pass --cycle", file=file, variable=name)
    return ref, da, end, file_start, first_step


def _first_start(raw: xr.Dataset, da: xr.DataArray, valid: np.ndarray, file: str, name: str
                 ) -> np.datetime64:
    """Start of the first interval of observations without time bounds."""
    first = np.sort(valid)
    attr = raw.attrs.get("step_hours", da.attrs.get("step_hours"))
    if attr is not None:
        return first[0] - hours_to_timedelta(float(attr))
    if first.size > 1:
        return first[0] - (first[1] - first[0])
    raise ForecastError("holds one observation time and no time bounds, so its interval is unknown; "
                        "add time bounds (CF time_bnds) or a step_hours attribute", file=file, variable=name)


def _time_bounds(raw: xr.Dataset, da: xr.DataArray, dim: Hashable) -> np.ndarray | None:
    """CF time bounds (n, 2) as datetime64, if the file has them."""
    coord = da.coords.get(dim, raw.coords.get(dim))
    name = coord.attrs.get("bounds") if coord is not None else None
    if not name:
        name = next((n for n in ("time_bnds", "time_bounds") if n in raw), None)
    if not name or name not in raw:
        return None
    b = raw[name]
    if b.ndim != 2 or not np.issubdtype(b.dtype, np.datetime64) or b.dims[0] != dim:
        return None
    return np.asarray(b.values, dtype="datetime64[ns]")


# --------------------------------------------------------------------------- members, units


def _members(da: xr.DataArray, file: str, name: str) -> xr.DataArray:
    dims = [d for d in da.dims if d in MEMBER_DIMS]
    if len(dims) > 1:
        raise ForecastError(f"has several member dimensions ({', '.join(map(str, dims))})", file=file,
                            variable=name)
    if dims:
        d = dims[0]
        values = da[d].values if d in da.coords else np.arange(da.sizes[d])
        da = da.drop_vars([c for c in da.coords if d in da[c].dims and c != d])
        da = da.rename({d: "member"}) if d != "member" else da
        da = da.assign_coords(member=("member", np.asarray(values).astype("int64")))
        if da.sizes["member"] == 1:
            da = da.isel(member=0, drop=True)
    da = da.drop_vars([c for c in da.coords if c not in da.dims and c != "member"])
    extra = [d for d in da.dims if d not in ("member", "time", "latitude", "longitude")]
    for d in extra:
        if da.sizes[d] != 1:
            raise ForecastError(
                f"has an extra dimension '{d}' of size {da.sizes[d]} (levels?); keep one level "
                "(e.g. 'cdo sellevel' or grib_filter) or name the member dimension 'member'",
                file=file, variable=name)
        da = da.isel({d: 0}, drop=True)
    return da


def _accumulation(profile: SourceProfile, conv: Conversion, attrs: dict[str, Any],
                  file_start: np.ndarray | None, end: np.ndarray, file: str, name: str) -> str:
    acc = profile.accumulation
    if acc == "auto":
        if conv.kind == "rate":
            acc = "rate"
        elif attrs.get("GRIB_stepType") == "accum" and file_start is not None \
                and np.any(end - file_start > 1e-6):
            acc = "bucket"
        else:
            acc = "interval"
    if conv.kind == "rate" and acc != "rate":
        raise ForecastError(
            f"has units of a rate but the profile says accumulation = {acc!r}; set accumulation = "
            "\"rate\" (or fix the units)", file=file, variable=name)
    if conv.kind == "amount" and acc == "rate":
        raise ForecastError(
            "has units of an amount (a depth) but the profile says accumulation = \"rate\"; set the "
            "accumulation (interval, since-start, bucket) or fix the units", file=file, variable=name)
    return acc


# --------------------------------------------------------------------------- assemble


def _assemble(out: xr.DataArray, ref: np.datetime64, start_h: np.ndarray, end_h: np.ndarray,
              profile: SourceProfile, file: str, name: str, accumulation: str,
              raw_attrs: dict[str, Any]) -> xr.Dataset:
    end_t = ref + hours_to_timedelta(end_h)
    start_t = ref + hours_to_timedelta(start_h)
    step = np.round(end_h - start_h, 6)
    dims = [d for d in ("member", "time", "latitude", "longitude") if d in out.dims]
    out = out.transpose(*dims)
    if out.dtype != np.float32:
        out = out.astype("float32")
    coords: dict[str, Any] = {
        "time": ("time", end_t, {"standard_name": "time", "axis": "T", "bounds": "time_bnds",
                                 "long_name": "end of the accumulation interval (UTC)"}),
        "step_hours": ("time", step, {"long_name": "length of the accumulation interval",
                                      "units": "hours"}),
        "latitude": ("latitude", out["latitude"].values, {"standard_name": "latitude", "axis": "Y",
                                                          "long_name": "latitude",
                                                          "units": "degrees_north"}),
        "longitude": ("longitude", out["longitude"].values, {"standard_name": "longitude", "axis": "X",
                                                             "long_name": "longitude",
                                                             "units": "degrees_east"}),
    }
    if "member" in out.dims:
        coords["member"] = ("member", out["member"].values,
                            {"standard_name": "realization", "long_name": "ensemble member"})
    uniform = bool(np.allclose(step, step[0]))
    attrs = {
        "Conventions": "CF-1.8",
        "title": f"precipitation forecast, source {profile.name}",
        "source": profile.name,
        "forecast_reference_time": iso_utc(ref),
        "step_hours": float(step[0]) if uniform else float("nan"),
        "institution": str(raw_attrs.get("institution", "")),
        "history": f"normalized by ewarn from {file or 'a dataset'} ({name}, {accumulation})",
        "source_file": file,
    }
    if profile.observed:
        attrs["featureType"] = "grid"
        attrs["ewarn_observed"] = 1
    var_attrs = {**CF_ATTRS, "ewarn_source_variable": name, "ewarn_accumulation": accumulation}
    return xr.Dataset(
        {VARIABLE: (dims, out.variable.data, var_attrs),
         "time_bnds": (("time", "bnds"), np.stack([start_t, end_t], axis=1))},
        coords=coords, attrs=attrs)


def normalize(
    raw: xr.Dataset,
    profile: SourceProfile,
    *,
    bounds: Bounds | None = None,
    margin_deg: float = 0.5,
    path: str = "",
    cycle: dt.datetime | np.datetime64 | str | None = None,
) -> xr.Dataset:
    """Turn a reader's raw dataset into the forecast contract.

    Parameters
    ----------
    raw : Dataset
        As opened by a reader (CF NetCDF, WRF, cfgrib).
    profile : SourceProfile
        How the source stores precipitation (variable, accumulation, units,
        bucket_hours, resample_hours, negative_tolerance_mm).
    bounds : (west, south, east, north), optional
        Region bounds [degrees]; the grid is cut to them plus ``margin_deg``.
    margin_deg : float
        Margin around the bounds [degrees].
    path : str
        The file or URL as the user named it (messages, ``source_file``).
    cycle : datetime, optional
        Reference time (UTC) when the file has none, or to check it.

    Returns
    -------
    Dataset
        The contract (module docstring); lazy when ``raw`` is.

    Raises
    ------
    ForecastError
        No precipitation variable, unknown or missing units, no reference
        time, duplicate times, a grid that is not regular lat/lon or does not
        reach the region, windows that cannot be de-accumulated.
    """
    file = path or str(raw.encoding.get("source", ""))
    ref_cycle = to_utc(cycle) if cycle is not None else None
    name, da = select_variable(raw, profile, file)
    ref, da, end, file_start, first_step = _time_axis(raw, da, profile, file, name, ref_cycle)
    da = to_rectilinear(da, raw, file=file, variable=name)
    da = select_region(da, bounds, margin_deg, file=file, variable=name)
    da = _members(da, file, name)
    conv = conversion(profile.units or da.attrs.get("units"), variable=name, file=file)
    acc = _accumulation(profile, conv, da.attrs, file_start, end, file, name)
    start = window_starts(end, acc, file_start_h=file_start, bucket_hours=profile.bucket_hours,
                          first_step_h=first_step, file=file, variable=name)
    # mm, or mean rate [mm s-1] × window length [s] = amount [mm]
    factor = conv.factor * (end - start) * 3600.0 if conv.kind == "rate" else conv.factor
    plan = plan_intervals(end, start, accumulation=acc, file=file, variable=name)
    out = deaccumulate(da, plan, factor=factor, tolerance_mm=profile.negative_tolerance_mm)
    start_h, end_h = plan.start_h, plan.end_h
    if profile.resample_hours > 0:
        out, start_h, end_h = resample_intervals(out, start_h, end_h, profile.resample_hours,
                                                 file=file, variable=name)
    return _assemble(out, ref, start_h, end_h, profile, file, name, acc, raw.attrs)
