"""A corpus of bad and tricky forecast inputs, built in code.

Every bad input is refused by ``ingest`` with a message naming the file (and
the variable when there is one), and the archive — files and database rows —
is exactly as before. Every tricky but valid input is normalized to exactly
the values it should have.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ewarn.config import Workspace
from ewarn.forecasts import ForecastError, ingest, list_archived, open_forecast
from test_forecasts_fixtures import (
    BOUNDS,
    ECMWF,
    LAT,
    LON,
    REF,
    archive_state,
    cf_dataset,
    make_workspace,
    rain_field,
    write_nc,
)

NOW_DT = dt.datetime(2024, 9, 7, 15, tzinfo=dt.UTC)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    """A workspace whose archive already holds one good cycle (12 h before REF)."""
    ws = make_workspace(tmp_path / "ws", toml_extra=(
        "[forecasts.sources.acc]\nkind = \"cf-netcdf\"\nvariable = \"precipitation\"\n"
        "accumulation = \"since-start\"\n"))
    good = write_nc(cf_dataset(ref=REF - np.timedelta64(12, "h")), tmp_path / "good.nc")
    first = ingest(ws, "cf-netcdf", good, bounds=BOUNDS, now=NOW_DT)
    assert first.status == "archived"
    return ws


def _truncated_classic(tmp: Path) -> Path:
    full = write_nc(cf_dataset(), tmp / "full3.nc", fmt="NETCDF3_64BIT")
    data = full.read_bytes()
    out = tmp / "truncated3.nc"
    out.write_bytes(data[: len(data) // 2])
    return out


def _truncated_hdf5(tmp: Path) -> Path:
    full = write_nc(cf_dataset(), tmp / "full4.nc")
    data = full.read_bytes()
    out = tmp / "truncated4.nc"
    out.write_bytes(data[: len(data) * 2 // 3])
    return out


def _html_as_nc(tmp: Path) -> Path:
    out = tmp / "error-page.nc"
    out.write_text("<html><body>502 Bad Gateway</body></html>")
    return out


def _since_start(totals: np.ndarray, tmp: Path, name: str) -> Path:
    """Totals since the run start (hours 1..n) on the test grid, every cell equal."""
    values = np.broadcast_to(np.asarray(totals, "float32")[:, None, None],
                             (len(totals), LAT.size, LON.size)).copy()
    return write_nc(cf_dataset(values, hours=np.arange(1, len(totals) + 1)), tmp / name)


def _two_grids(tmp: Path, shared: Path) -> Path:
    out = tmp / "two_grids.grib"
    shutil.copy(shared / ECMWF, out)
    return out


def _truncated_grib(tmp: Path, shared: Path) -> Path:
    data = (shared / ECMWF).read_bytes()
    out = tmp / "cut.grib"
    out.write_bytes(data[:5000])
    return out


def _curvilinear_wrf(tmp: Path) -> Path:
    y, x = np.meshgrid(np.linspace(21.5, 23, 12), np.linspace(103.8, 105.2, 14), indexing="ij")
    lat = y + 0.05 * (x - 104.5)  # rotated: Lambert-like
    lon = x + 0.05 * (y - 22.0)
    dims = ("Time", "south_north", "west_east")
    ds = xr.Dataset(
        {"RAINC": (dims, np.zeros((3, 12, 14), "f4"), {"units": "mm"}),
         "RAINNC": (dims, np.cumsum(np.ones((3, 12, 14), "f4"), 0), {"units": "mm"}),
         "XLAT": (dims, np.repeat(lat[None], 3, 0), {"units": "degree_north"}),
         "XLONG": (dims, np.repeat(lon[None], 3, 0), {"units": "degree_east"})},
        coords={"XTIME": ("Time", REF + np.arange(1, 4) * np.timedelta64(1, "h"))},
        attrs={"SIMULATION_START_DATE": "2024-09-07_12:00:00"})
    return write_nc(ds, tmp / "wrfout_d01_2024-09-07_12:00:00")


Build = Callable[[Path, Path], tuple[str, Path, dict]]

#: id → (builder(tmp, shared) → (source, path, ingest kwargs), words the message must hold, variable)
BAD: dict[str, tuple[Build, tuple[str, ...], str | None]] = {
    "truncated classic netcdf": (lambda t, s: ("cf-netcdf", _truncated_classic(t), {}),
                                 ("truncated",), None),
    "truncated netcdf4": (lambda t, s: ("cf-netcdf", _truncated_hdf5(t), {}), ("truncated",), None),
    "html page named .nc": (lambda t, s: ("cf-netcdf", _html_as_nc(t), {}), ("cannot be read as NetCDF",),
                            None),
    "wrong units string": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(units="inches"), t / "u.nc"), {}),
                           ("'inches'", "units"), "precipitation"),
    "missing units": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(units=None), t / "nu.nc"), {}),
                      ("no units",), "precipitation"),
    "nan-filled field": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(np.full((6, LAT.size, LON.size),
                                                                                np.nan, "f4")),
                                                             t / "nan.nc"), {}),
                         ("entirely missing",), "precipitation"),
    "too many nans": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(np.where(
        np.arange(LON.size) < 5, np.nan, rain_field(6)).astype("f4")), t / "nans.nc"), {}),
        ("missing (NaN)", "max_nan_fraction"), "precipitation"),
    "negative rain after de-accumulation": (lambda t, s: ("acc", _since_start([2, 5, 9, 4, 6, 8], t,
                                                                              "neg.nc"), {}),
                                            ("negative rain", "-5", "since-start"), "precipitation"),
    "negative interval rain": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(-rain_field(6) - 1),
                                                                   t / "negi.nc"), {}),
                               ("negative rain",), "precipitation"),
    "duplicate times": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(hours=[1, 2, 2, 3, 4, 5]),
                                                            t / "dup.nc"), {}),
                        ("twice",), "precipitation"),
    "wrong region": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(lat=np.arange(45, 48, 0.25),
                                                                    lon=np.arange(5, 9, 0.25)),
                                                         t / "alps.nc"), {}),
                     ("does not cover the region",), "precipitation"),
    "partly covered region": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(lon=np.arange(104.5, 106, 0.1)),
                                                                  t / "half.nc"), {}),
                              ("does not cover the region",), "precipitation"),
    "stale run": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(ref=REF - np.timedelta64(72, "h")),
                                                      t / "old.nc"), {}),
                  ("stale", "max_age_hours"), "precipitation"),
    "over 1000 mm/h": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(np.where(
        np.arange(LAT.size)[:, None] == 7, 1500.0, rain_field(6)).astype("f4")), t / "huge.nc"), {}),
        ("1500 mm/h", "max_rate_mm_h"), "precipitation"),
    "rain mislabelled as mm s-1": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(units="mm s-1"),
                                                                        t / "rate.nc"), {}),
                                   ("mm/h",), "precipitation"),
    "grib with two grids": (lambda t, s: ("ecmwf-ifs", _two_grids(t, s), {}),
                            ("2 different grids", "numberOfPoints=2664", "numberOfPoints=4140"), "tp"),
    "truncated grib": (lambda t, s: ("ecmwf-ifs", _truncated_grib(t, s), {}), ("truncated",), None),
    "curvilinear wrf": (lambda t, s: ("wrf", _curvilinear_wrf(t), {}), ("curvilinear", "regrid"),
                        "RAINC+RAINNC"),
    "no reference time": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(reference="none"), t / "noref.nc"),
                                        {}), ("no forecast reference time", "--cycle"), "precipitation"),
    "cycle differs from the file": (lambda t, s: ("cf-netcdf", write_nc(cf_dataset(), t / "c.nc"),
                                                  {"cycle": dt.datetime(2024, 9, 7, 6, tzinfo=dt.UTC)}),
                                    ("not the requested",), "precipitation"),
    "rate units with since-start profile": (lambda t, s: ("acc", write_nc(cf_dataset(units="kg m-2 s-1"),
                                                                          t / "r.nc"), {}),
                                            ("rate", "accumulation"), "precipitation"),
    "missing file": (lambda t, s: ("cf-netcdf", t / "nowhere.nc", {}), ("does not exist",), None),
    "unknown source": (lambda t, s: ("no-such-source", write_nc(cf_dataset(), t / "x.nc"), {}),
                       ("unknown forecast source", "forecasts.sources.no-such-source"), None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_and_the_archive_is_unchanged(case, ws, tmp_path, shared_data):
    build, words, variable = BAD[case]
    source, path, kwargs = build(tmp_path, shared_data)
    before = archive_state(ws)
    with pytest.raises(ForecastError) as err:
        ingest(ws, source, path, bounds=BOUNDS, now=NOW_DT, **kwargs)
    msg = str(err.value)
    if source != "no-such-source":
        assert str(path) in msg, msg
    if variable:
        assert f"'{variable}'" in msg, msg
    for word in words:
        assert word in msg, msg
    assert "Traceback" not in msg
    assert archive_state(ws) == before
    assert not list(ws.path("forecasts").rglob("*.tmp"))


def test_corpus_has_at_least_fifteen_bad_inputs():
    assert len(BAD) >= 15


# ------------------------------------------------------------------ tricky but valid


def _open(ds: xr.Dataset, tmp: Path, source: str = "cf-netcdf", **kw) -> xr.Dataset:
    return open_forecast(source, write_nc(ds, tmp / "in.nc"), bounds=BOUNDS, **kw).load()


def test_descending_latitudes_are_flipped(tmp_path):
    raw = cf_dataset()
    flipped = raw.isel(lat=slice(None, None, -1))
    assert flipped["lat"].values[0] > flipped["lat"].values[-1]
    a, b = _open(raw, tmp_path), _open(flipped, tmp_path / "f")
    assert np.all(np.diff(b["latitude"].values) > 0)
    xr.testing.assert_identical(a["precipitation"], b["precipitation"])
    cell = raw["precipitation"].sel(time=REF + np.timedelta64(2, "h"), lat=22.2, lon=104.5)
    assert float(b["precipitation"].sel(time=cell.time, latitude=22.2, longitude=104.5)) == float(cell)


def test_0_360_grid_crossing_the_region_is_rolled(tmp_path):
    """A 0..360 global grid and a region across the Greenwich meridian (−1..1 E)."""
    lon = np.arange(0, 360, 0.5)
    lat = np.arange(49, 53, 0.5)
    values = np.broadcast_to(lon[None, None, :], (2, lat.size, lon.size)).astype("f4").copy()
    raw = cf_dataset(values, hours=[1, 2], lat=lat, lon=lon)
    ds = open_forecast("cf-netcdf", write_nc(raw, tmp_path / "g.nc"), bounds=(-1.0, 50.0, 1.0, 51.0),
                       settings=None).load()
    lon_out = ds["longitude"].values
    assert lon_out.tolist() == [-1.75, -1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75,
                                1.0, 1.25, 1.5, 1.75] or lon_out.tolist() == list(np.arange(-1.5, 1.51, 0.5))
    # each column carries its original 0..360 longitude as its value
    np.testing.assert_array_equal(ds["precipitation"].isel(time=0, latitude=0).values, lon_out % 360)
    assert ds["latitude"].values.tolist() == [49.5, 50.0, 50.5, 51.0, 51.5]


def test_0_360_global_grid_over_vietnam(tmp_path):
    lon = np.arange(0, 360, 0.25)
    lat = np.arange(-10, 40, 0.25)[::-1]
    values = (lat[:, None] * 1000 + lon[None, :]).astype("f8")[None].repeat(2, 0)
    raw = cf_dataset(values, hours=[1, 2], lat=lat, lon=lon)
    ds = _open(raw, tmp_path)
    la, lo = np.meshgrid(ds["latitude"].values, ds["longitude"].values, indexing="ij")
    np.testing.assert_allclose(ds["precipitation"].isel(time=1).values, la * 1000 + lo, rtol=1e-6)
    assert ds["longitude"].values.min() >= 103.5 and ds["longitude"].values.max() <= 105.5


def test_a_few_nans_are_warned_and_stay_masked(ws, tmp_path):
    values = rain_field(6)
    values[2, 3, 4] = np.nan
    values[4, 5, 6] = np.nan
    path = write_nc(cf_dataset(values), tmp_path / "fewnan.nc")
    a = ingest(ws, "cf-netcdf", path, bounds=BOUNDS, now=NOW_DT)
    assert a.status == "archived"
    assert len(a.warnings) == 1 and a.warnings[0].severity == "warning"
    assert "2 of" in a.warnings[0].message and "masked" in a.warnings[0].message
    with xr.open_dataset(a.path) as ds:
        assert int(ds["precipitation"].isnull().sum()) == 2
    assert list_archived(ws, "cf-netcdf")[-1].warnings == a.warnings


def test_tiny_negative_from_deaccumulation_is_clipped(tmp_path):
    settings_src = {"acc": {"kind": "cf-netcdf", "variable": "precipitation", "accumulation": "since-start"}}
    from ewarn.config import ForecastSettings

    s = ForecastSettings(sources=settings_src)
    path = _since_start([2.0, 5.0, 4.95, 7.0], tmp_path, "tiny.nc")  # −0.05 at +3 h: packing noise
    ds = open_forecast("acc", path, settings=s, bounds=BOUNDS).load()
    np.testing.assert_allclose(ds["precipitation"].values[:, 0, 0], [2.0, 3.0, 0.0, 2.05], atol=1e-5)


def test_unsorted_unique_times_are_sorted_with_their_values(tmp_path):
    values = rain_field(4)
    raw = cf_dataset(values, hours=[3, 1, 4, 2])
    ds = _open(raw, tmp_path)
    assert ds["time"].values.tolist() == (REF + np.arange(1, 5) * np.timedelta64(1, "h")).tolist()
    assert ds.sizes["latitude"] == LAT.size and ds.sizes["longitude"] == LON.size  # all within the margin
    np.testing.assert_array_equal(ds["precipitation"].values, raw["precipitation"].sortby("time").values)


def test_uneven_steps_keep_each_interval_length(tmp_path):
    """ECMWF-like: since-start totals at +1, +2, +3, +6, +9, +12, +18 h."""
    from ewarn.config import ForecastSettings

    hours = [1, 2, 3, 6, 9, 12, 18]
    totals = np.array([1, 3, 6, 10, 11, 20, 32], "f4")
    values = np.broadcast_to(totals[:, None, None], (7, LAT.size, LON.size)).copy()
    path = write_nc(cf_dataset(values, hours=hours), tmp_path / "uneven.nc")
    s = ForecastSettings(sources={"ec": {"kind": "cf-netcdf", "variable": "precipitation",
                                         "accumulation": "since-start"},
                                  "ec6": {"kind": "cf-netcdf", "variable": "precipitation",
                                          "accumulation": "since-start", "resample_hours": 6}})
    ds = open_forecast("ec", path, settings=s, bounds=BOUNDS).load()
    assert ds["step_hours"].values.tolist() == [1, 1, 1, 3, 3, 3, 6]
    assert np.isnan(ds.attrs["step_hours"])
    np.testing.assert_allclose(ds["precipitation"].values[:, 0, 0], [1, 2, 3, 4, 1, 9, 12])
    six = open_forecast("ec6", path, settings=s, bounds=BOUNDS).load()
    assert six["step_hours"].values.tolist() == [6, 6, 6] and six.attrs["step_hours"] == 6.0
    np.testing.assert_allclose(six["precipitation"].values[:, 0, 0], [10, 10, 12])
    assert six["time"].values[-1] == REF + np.timedelta64(18, "h")


def test_rain_over_300_mm_per_hour_is_a_warning(ws, tmp_path):
    values = rain_field(6)
    values[3, 7, 7] = 420.0
    a = ingest(ws, "cf-netcdf", write_nc(cf_dataset(values), tmp_path / "w.nc"), bounds=BOUNDS, now=NOW_DT)
    assert a.status == "archived"
    (w,) = a.warnings
    assert "420 mm/h" in w.message and w.where and "lat 22.200" in w.where


def test_duplicate_cycle_is_unchanged_even_with_other_content(ws, tmp_path):
    path = write_nc(cf_dataset(), tmp_path / "a.nc")
    first = ingest(ws, "cf-netcdf", path, bounds=BOUNDS, now=NOW_DT)
    before = archive_state(ws)
    other = write_nc(cf_dataset(rain_field(6, seed=9)), tmp_path / "b.nc")
    again = ingest(ws, "cf-netcdf", other, bounds=BOUNDS, now=NOW_DT)
    assert again.status == "unchanged" and again.checksum == first.checksum
    assert archive_state(ws) == before
    forced = ingest(ws, "cf-netcdf", other, bounds=BOUNDS, now=NOW_DT, force=True)
    assert forced.status == "archived" and forced.checksum != first.checksum
    assert forced.path == first.path
    files, rows = archive_state(ws)
    assert len(rows) == len(before[1]) and files != before[0]


def test_rates_in_kg_m2_s1_become_mm_per_interval(tmp_path):
    values = np.full((3, LAT.size, LON.size), 1.0 / 3600, "f4")  # 1 mm/h
    ds = _open(cf_dataset(values, hours=[3, 6, 9], units="kg m**-2 s**-1"), tmp_path)
    np.testing.assert_allclose(ds["precipitation"].values, 3.0, rtol=1e-6)
    assert ds["step_hours"].values.tolist() == [3, 3, 3]


def test_ensemble_realization_dimension_becomes_member(tmp_path):
    raw = cf_dataset(members=4).rename(member="realization")
    ds = _open(raw, tmp_path)
    assert ds["precipitation"].dims == ("member", "time", "latitude", "longitude")
    assert ds["member"].values.tolist() == [0, 1, 2, 3]


def test_reference_time_from_a_variable_and_from_cycle(tmp_path):
    ds = _open(cf_dataset(reference="variable"), tmp_path)
    assert ds.attrs["forecast_reference_time"] == "2024-09-07T12:00:00Z"
    ds2 = _open(cf_dataset(reference="none"), tmp_path / "n",
                cycle=dt.datetime(2024, 9, 7, 19, tzinfo=dt.timezone(dt.timedelta(hours=7))))
    assert ds2.attrs["forecast_reference_time"] == "2024-09-07T12:00:00Z"  # 19h ICT = 12Z


def test_rectilinear_wrf_since_start_is_deaccumulated(tmp_path):
    lat = np.linspace(21.5, 23, 12)
    lon = np.linspace(103.8, 105.2, 14)
    y, x = np.meshgrid(lat, lon, indexing="ij")
    hours = np.arange(4, dtype="f4")[:, None, None]  # outputs at +0..+3 h; totals 0 at the start
    rainnc = np.broadcast_to(2.0 * hours, (4, 12, 14)).copy()
    rainc = np.broadcast_to(0.5 * hours, (4, 12, 14)).copy()
    ds = xr.Dataset(
        {"RAINC": (("Time", "south_north", "west_east"), rainc, {"units": "mm"}),
         "RAINNC": (("Time", "south_north", "west_east"), rainnc, {"units": "mm"}),
         "XLAT": (("Time", "south_north", "west_east"), np.repeat(y[None], 4, 0), {"units": "degree_north"}),
         "XLONG": (("Time", "south_north", "west_east"), np.repeat(x[None], 4, 0), {"units": "degree_east"})},
        coords={"XTIME": ("Time", REF + np.arange(0, 4) * np.timedelta64(1, "h"))},
        attrs={"SIMULATION_START_DATE": "2024-09-07_12:00:00"})
    out = open_forecast("wrf", write_nc(ds, tmp_path / "wrfout_d01"), bounds=BOUNDS).load()
    assert out.sizes["time"] == 3  # step 0 gives no interval
    np.testing.assert_allclose(out["precipitation"].values, 2.5)
    assert out["time"].values[0] == REF + np.timedelta64(1, "h")


def test_in_memory_lazy_and_dask_paths_agree_and_leave_the_input_alone(tmp_path, monkeypatch):
    """normalize() on a caller's in-memory dataset, on a file, and through dask: same numbers."""
    from ewarn.config import SourceProfile
    from ewarn.forecasts import accumulation, normalize

    totals = np.cumsum(rain_field(8, members=3), axis=1)
    raw = cf_dataset(totals, hours=np.arange(1, 9), members=3)
    before = raw["precipitation"].values.copy()
    profile = SourceProfile(name="acc", variable="precipitation", accumulation="since-start")
    in_memory = normalize(raw, profile, bounds=BOUNDS)
    np.testing.assert_array_equal(raw["precipitation"].values, before)  # the caller's data untouched
    expected = np.diff(totals, axis=1, prepend=0)
    np.testing.assert_allclose(in_memory["precipitation"].values, expected, rtol=1e-5, atol=1e-5)
    path = write_nc(raw, tmp_path / "acc.nc")
    from_file = open_forecast(profile, path, bounds=BOUNDS).load()
    xr.testing.assert_allclose(from_file["precipitation"], in_memory["precipitation"])
    monkeypatch.setattr(accumulation, "EAGER_BYTES", 0)  # as if it were too big for memory
    lazy = open_forecast(profile, path, bounds=BOUNDS)
    assert lazy["precipitation"].chunks is not None
    xr.testing.assert_allclose(lazy.load()["precipitation"], in_memory["precipitation"])


def test_wrf_bucket_counters_rebuild_the_totals(tmp_path):
    """WRF with bucket_mm: RAINNC resets every BUCKET_MM and I_RAINNC counts the resets."""
    lat, lon = np.linspace(21.5, 23, 6), np.linspace(103.8, 105.2, 7)
    y, x = np.meshgrid(lat, lon, indexing="ij")
    totals = np.array([0.0, 60.0, 130.0, 210.0])[:, None, None] * np.ones((4, 6, 7))  # since start
    dims = ("Time", "south_north", "west_east")
    ds = xr.Dataset(
        {"RAINNC": (dims, (totals % 100).astype("f4"), {"units": "mm"}),
         "I_RAINNC": (dims, (totals // 100).astype("i4"), {"units": ""}),
         "RAINC": (dims, np.zeros((4, 6, 7), "f4"), {"units": "mm"}),
         "I_RAINC": (dims, np.zeros((4, 6, 7), "i4"), {"units": ""}),
         "XLAT": (dims, np.repeat(y[None], 4, 0), {"units": "degree_north"}),
         "XLONG": (dims, np.repeat(x[None], 4, 0), {"units": "degree_east"})},
        coords={"XTIME": ("Time", REF + np.arange(4) * np.timedelta64(1, "h"))},
        attrs={"SIMULATION_START_DATE": "2024-09-07_12:00:00", "BUCKET_MM": 100.0})
    out = open_forecast("wrf", write_nc(ds, tmp_path / "wrfout_d02"), bounds=BOUNDS).load()
    np.testing.assert_allclose(out["precipitation"].values[:, 0, 0], [60, 70, 80])
