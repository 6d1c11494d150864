"""Small forecast inputs built in code, shared by the forecasts tests.

CF NetCDF datasets (any units, accumulation, grid order, members), GRIB files
cloned from the real sample messages with ecCodes, and a snapshot of the
archive (files and database rows) to assert that a failure changed nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from sqlalchemy import select

from ewarn.config import Workspace, init_workspace
from ewarn.store import Store

REF = np.datetime64("2024-09-07T12:00", "ns")
#: The demo region (Bảo Yên – Phúc Khánh, Lào Cai): (west, south, east, north).
BOUNDS = (104.3, 22.0, 104.7, 22.4)
LAT = np.round(np.arange(21.5, 22.91, 0.1), 4)
LON = np.round(np.arange(103.8, 105.21, 0.1), 4)
NOW = REF + np.timedelta64(3, "h")
GFS = "grib/gfs_2p5deg_20111008T00_f072_precip.grib2"
ECMWF = "grib/ecmwf_tp_two_grids.grib"


def rain_field(n_time: int, lat=LAT, lon=LON, members: int = 0, seed: int = 0) -> np.ndarray:
    """Non-negative rain [mm per step], reproducible."""
    rng = np.random.default_rng(seed)
    shape = ((members,) if members else ()) + (n_time, len(lat), len(lon))
    return rng.gamma(0.8, 2.0, size=shape).astype("float32")


def cf_dataset(values: np.ndarray | None = None, *, hours=None, lat=LAT, lon=LON, ref=REF,
               units: str | None = "mm", name: str = "precipitation", members: int = 0,
               reference: str = "attr", step_hours: float | None = None) -> xr.Dataset:
    """A CF NetCDF-like forecast: ``name`` on (member?, time, lat, lon), time = valid time."""
    hours = np.arange(1, 7) if hours is None else np.asarray(hours)
    if values is None:
        values = rain_field(len(hours), lat, lon, members)
    dims = (("member",) if members else ()) + ("time", "lat", "lon")
    attrs = {"long_name": "precipitation"}
    if units is not None:
        attrs["units"] = units
    times = ref + (np.asarray(hours, dtype=float) * 3600e9).astype("timedelta64[ns]")
    coords = {"time": times, "lat": ("lat", np.asarray(lat, float), {"units": "degrees_north"}),
              "lon": ("lon", np.asarray(lon, float), {"units": "degrees_east"})}
    if members:
        coords["member"] = np.arange(members)
    ds = xr.Dataset({name: (dims, values, attrs)}, coords=coords)
    if reference == "attr":
        ds.attrs["forecast_reference_time"] = str(np.datetime_as_string(ref, unit="s")) + "Z"
    elif reference == "variable":
        ds["forecast_reference_time"] = xr.DataArray(ref, attrs={"standard_name": "forecast_reference_time"})
    if step_hours is not None:
        ds.attrs["step_hours"] = step_hours
    return ds


def write_nc(ds: xr.Dataset, path: Path, fmt: str = "NETCDF4") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, format=fmt)
    return path


def grib_messages(template: Path, short_name: str) -> bytes:
    """The raw bytes of the first message of ``short_name`` in a real GRIB file."""
    import eccodes

    with template.open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                if eccodes.codes_get(h, "shortName") == short_name:
                    return eccodes.codes_get_message(h)
            finally:
                eccodes.codes_release(h)
    raise LookupError(short_name)


def write_grib(template: Path, short_name: str, out: Path, messages: list[dict]) -> Path:
    """Clone a real message once per entry of ``messages`` (keys to set, plus 'values')."""
    import eccodes

    raw = grib_messages(template, short_name)
    with out.open("wb") as fh:
        for spec in messages:
            h = eccodes.codes_new_from_message(raw)
            try:
                for key, value in spec.items():
                    if key != "values":
                        eccodes.codes_set(h, key, value)
                n = eccodes.codes_get(h, "numberOfPoints")
                values = spec.get("values", 0.0)
                eccodes.codes_set_values(h, np.broadcast_to(np.asarray(values, float), (n,)).copy())
                eccodes.codes_write(h, fh)
            finally:
                eccodes.codes_release(h)
    return out


def eccodes_fields(path: Path, **match) -> list[dict]:
    """Every message matching ``match``: values, latitudes, longitudes and keys (ecCodes directly)."""
    import eccodes

    out = []
    with path.open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                keys = {k: eccodes.codes_get(h, k) for k in ("shortName", "numberOfPoints", "startStep",
                                                             "endStep", "units")}
                if all(keys.get(k) == v for k, v in match.items()):
                    keys["values"] = eccodes.codes_get_values(h)
                    keys["lats"] = eccodes.codes_get_array(h, "latitudes")
                    keys["lons"] = eccodes.codes_get_array(h, "longitudes")
                    out.append(keys)
            finally:
                eccodes.codes_release(h)
    return out


def make_workspace(root: Path, toml_extra: str = "") -> Workspace:
    ws = init_workspace(root)
    if toml_extra:
        cfg = root / "ewarn.toml"
        cfg.write_text(cfg.read_text(encoding="utf-8") + "\n" + toml_extra, encoding="utf-8")
        ws = Workspace.open(root)
    return ws


def archive_state(ws: Workspace) -> tuple[dict[str, str], list[tuple]]:
    """Every file under forecasts/ with its sha256, and every row of the forecasts table."""
    from ewarn.forecasts import forecasts_table

    files = {p.relative_to(ws.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(ws.path("forecasts").rglob("*")) if p.is_file()}
    store = Store.open(ws.database_url)
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(forecasts_table)).all()]
    return files, rows


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return make_workspace(tmp_path / "ws")


def test_fixture_builds_a_forecast_with_the_requested_shape():
    ds = cf_dataset(members=3)
    assert ds["precipitation"].dims == ("member", "time", "lat", "lon")
    assert ds["precipitation"].shape == (3, 6, LAT.size, LON.size)
    assert float(ds["precipitation"].min()) >= 0
