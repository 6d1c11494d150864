"""GRIB 1 and 2 reader (cfgrib + ecCodes).

ECMWF IFS/ENS ``tp`` (metres from the run start; ``number`` = ensemble
member, control and perturbed members in one file), NCEP GFS ``tp``
(APCP buckets) and ``prate``. The file is first scanned with ecCodes (headers
only): a truncated file is refused, and a variable found on several grids
(the ``ecmwf_tp_two_grids`` case) is refused with the grids named unless the
profile's ``grib_filter`` picks one. The data are then opened lazily with
cfgrib, with the window of each step (``startStep``/``endStep``) kept so that
buckets can be de-accumulated.

The result is a raw dataset: one variable on ``(number, step, latitude,
longitude)`` with the scalar coordinate ``time`` (reference time) and the
window start ``window_start_h`` [h] along ``step``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ewarn.config import SourceProfile
from ewarn.forecasts.dropfolder import incomplete_reason
from ewarn.forecasts.errors import ForecastError

#: GRIB ``stepUnits`` code → hours (WMO GRIB2 code table 4.4).
STEP_UNIT_HOURS = {0: 1 / 60, 1: 1.0, 2: 24.0, 10: 3.0, 11: 6.0, 12: 12.0, 13: 1 / 3600}
#: Variables tried, in order, when the profile names none.
AUTO_VARIABLES = ("tp", "prate", "apcp", "precip")
_SCAN_KEYS = ("shortName", "cfVarName", "numberOfPoints", "gridType", "Ni", "Nj",
              "iDirectionIncrementInDegrees", "jDirectionIncrementInDegrees", "dataType")


def scan(path: Path) -> list[dict[str, Any]]:
    """Header keys of every message of a GRIB file (ecCodes, headers only)."""
    import eccodes

    out: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        while (handle := eccodes.codes_grib_new_from_file(fh, headers_only=True)) is not None:
            try:
                msg = {}
                for key in _SCAN_KEYS:
                    try:
                        msg[key] = eccodes.codes_get(handle, key)
                    except eccodes.GribInternalError:
                        msg[key] = None
                out.append(msg)
            finally:
                eccodes.codes_release(handle)
    return out


def _grid_label(msg: dict[str, Any]) -> str:
    dx = msg.get("iDirectionIncrementInDegrees")
    shape = f"{msg.get('Ni')}×{msg.get('Nj')}" if msg.get("Ni") not in (None, 0) else ""
    res = f", {dx:g}°" if isinstance(dx, int | float) and dx > 0 else ""
    return f"numberOfPoints={msg['numberOfPoints']} ({msg.get('gridType')} {shape}{res})".replace(" )", ")")


def _pick_variable(messages: list[dict[str, Any]], profile: SourceProfile, file: str) -> str:
    names = {m["shortName"] for m in messages} | {m["cfVarName"] for m in messages}
    names.discard(None)
    if profile.variable:
        if "+" in profile.variable:
            raise ForecastError("sums of variables ('A+B') are for NetCDF/WRF sources; name one GRIB "
                                "variable", file=file, variable=profile.variable)
        if profile.variable not in names:
            raise ForecastError(f"is not in the file (its variables: {', '.join(sorted(names))}); set "
                                "variable in the source profile", file=file, variable=profile.variable)
        return profile.variable
    for name in AUTO_VARIABLES:
        if name in names:
            return name
    raise ForecastError(f"holds no precipitation variable ewarn recognises (its variables: "
                        f"{', '.join(sorted(names))}); set variable in the source profile", file=file)


def _matches(msg: dict[str, Any], filt: dict[str, Any]) -> bool:
    return all(str(msg.get(k)) == str(v) for k, v in filt.items() if k in msg)


def _open_one(path: Path, messages: list[dict[str, Any]], variable: str, profile: SourceProfile,
              label: str) -> list[xr.Dataset]:
    import cfgrib

    messages = [m for m in messages if variable in (m["shortName"], m["cfVarName"])]
    messages = [m for m in messages if _matches(m, profile.grib_filter)]
    if not messages:
        raise ForecastError(f"no message matches grib_filter {profile.grib_filter}; fix grib_filter in "
                            "the source profile", file=label, variable=variable)
    grids = {m["numberOfPoints"]: m for m in messages}
    if len(grids) > 1:
        listed = "; ".join(_grid_label(m) for m in grids.values())
        first = next(iter(grids))
        raise ForecastError(
            f"is on {len(grids)} different grids in this file: {listed}. ewarn will not mix them: "
            f"choose one in the source profile, e.g. grib_filter = {{numberOfPoints = {first}}}",
            file=label, variable=variable)
    filt = {"shortName": messages[0]["shortName"], **profile.grib_filter}
    kwargs = {"indexpath": "", "squeeze": False, "filter_by_keys": filt,
              "extra_coords": {"startStep": "step", "endStep": "step"}}
    logging.getLogger("cfgrib").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = cfgrib.open_datasets(str(path), backend_kwargs=kwargs)  # lazy; normalize reads blocks
    except Exception as exc:  # cfgrib raises many kinds; all mean "this GRIB cannot be read"
        raise ForecastError(f"cannot be read by cfgrib ({type(exc).__name__}: {exc}); check the file "
                            "and the profile's grib_filter", file=label, variable=variable) from None
    return [ds for ds in found if variable in ds.data_vars]


def _tidy(ds: xr.Dataset, variable: str, label: str) -> xr.Dataset:
    """One variable on (number, time, step, latitude, longitude) with window starts."""
    da = ds[variable]
    if "number" not in da.dims:
        number = int(da.coords["number"].values) if "number" in da.coords else 0
        da = da.drop_vars("number", errors="ignore").expand_dims(number=[number])
    for dim in [d for d in da.dims if d not in ("number", "time", "step", "latitude", "longitude", "values")]:
        if da.sizes[dim] != 1:
            raise ForecastError(f"has {da.sizes[dim]} levels along '{dim}'; keep one with grib_filter",
                                file=label, variable=variable)
        da = da.isel({dim: 0}, drop=True)
    unit_h = STEP_UNIT_HOURS.get(int(da.attrs.get("GRIB_stepUnits", 1)), 1.0)
    end_h = da["step"].values / np.timedelta64(1, "h")
    if "startStep" in da.coords and "endStep" in da.coords:
        length = (np.asarray(da["endStep"].values, float) - np.asarray(da["startStep"].values, float))
        start_h = end_h - length * unit_h
    else:
        start_h = end_h.copy()
    da = da.drop_vars([c for c in ("valid_time", "startStep", "endStep") if c in da.coords])
    da = da.assign_coords(window_start_h=("step", start_h))
    out = da.to_dataset(name=variable)
    out.attrs = dict(ds.attrs)
    return out


def open_grib(paths: Sequence[Path], profile: SourceProfile, *, cycle: np.datetime64 | None = None,
              label: str = "") -> xr.Dataset:
    """Open GRIB file(s) of one forecast cycle as a raw dataset.

    Parameters
    ----------
    paths : sequence of Path
        One file, or several of one cycle (e.g. one GFS file per lead time).
    profile : SourceProfile
        ``variable`` (default: ``tp``, else ``prate``) and ``grib_filter``.
    cycle : datetime64, optional
        Reference time to keep when a file holds several cycles.
    label : str
        The file, glob or URL as the user gave it (messages).

    Raises
    ------
    ForecastError
        Truncated file, unknown variable, several grids, several cycles
        without ``cycle``, or files that do not combine.
    """
    pieces: list[xr.Dataset] = []
    variable = ""
    for path in paths:
        file = str(path) if len(paths) > 1 else label or str(path)
        reason = incomplete_reason(path, "grib")
        if reason:
            raise ForecastError(reason, file=file)
        messages = scan(path)
        variable = variable or _pick_variable(messages, profile, file)
        for ds in _open_one(path, messages, variable, profile, file):
            pieces.append(_tidy(ds, variable, file))
    if not pieces:
        raise ForecastError("no message of the variable could be opened", file=label, variable=variable)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = pieces[0] if len(pieces) == 1 else xr.combine_by_coords(
                pieces, combine_attrs="drop_conflicts", coords="different", compat="equals",
                data_vars="all", join="outer")
    except (ValueError, KeyError) as exc:
        raise ForecastError(f"the messages do not form one forecast ({exc}); ingest one cycle and one "
                            "grid at a time", file=label, variable=variable) from None
    raw = _one_cycle(raw, cycle, label, variable)
    raw[variable].attrs = pieces[0][variable].attrs
    raw.attrs = {k: v for k, v in pieces[0].attrs.items() if k != "history"}
    raw.attrs["ewarn_reader"] = "grib"
    return raw


def _one_cycle(raw: xr.Dataset, cycle: np.datetime64 | None, label: str, variable: str) -> xr.Dataset:
    times = raw["time"].values
    if times.size == 1:
        return raw.isel(time=0)
    if cycle is not None:
        hit = np.flatnonzero(times == cycle)
        if hit.size:
            return raw.isel(time=int(hit[0]))
    listed = ", ".join(f"{np.datetime_as_string(t, unit='h')}Z" for t in times)
    raise ForecastError(f"holds {times.size} forecast cycles ({listed}); choose one with --cycle",
                        file=label, variable=variable)
