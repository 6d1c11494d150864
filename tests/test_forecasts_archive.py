"""The archive: ingest, list, load, force, failures leaving nothing, antecedent rain."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
import xarray as xr

from ewarn.forecasts import (
    ForecastError,
    antecedent,
    ingest,
    list_archived,
    load_archived,
    open_forecast,
)
from test_forecasts_fixtures import (
    BOUNDS,
    GFS,
    LAT,
    LON,
    REF,
    archive_state,
    cf_dataset,
    eccodes_fields,
    make_workspace,
    rain_field,
    write_nc,
)

NOW = dt.datetime(2024, 9, 7, 15, tzinfo=dt.UTC)
CYCLE = dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC)


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path / "ws")


def test_ingest_archives_cf_netcdf_with_a_row(ws, tmp_path):
    raw = cf_dataset(members=3)
    a = ingest(ws, "cf-netcdf", write_nc(raw, tmp_path / "f.nc"), bounds=BOUNDS, now=NOW)
    assert a.status == "archived" and a.warnings == []
    assert a.path == ws.path("forecasts", "cf-netcdf", "20240907T12.nc") and a.path.exists()
    assert a.cycle == CYCLE and a.cycle.tzinfo is not None
    assert a.valid_from == CYCLE and a.valid_to == CYCLE + dt.timedelta(hours=6)
    assert a.members == 3
    assert a.checksum == hashlib.sha256(a.path.read_bytes()).hexdigest()
    (listed,) = list_archived(ws)
    assert (listed.source, listed.cycle, listed.path, listed.checksum, listed.status) == \
        ("cf-netcdf", CYCLE, a.path, a.checksum, "archived")
    with xr.open_dataset(a.path) as ds:
        p = ds["precipitation"]
        assert p.dims == ("member", "time", "latitude", "longitude")
        assert p.encoding["zlib"] and p.encoding["complevel"] == 4
        assert p.attrs["standard_name"] == "lwe_thickness_of_precipitation_amount"
        assert p.attrs["units"] == "mm" and p.attrs["cell_methods"] == "time: sum"
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["source"] == "cf-netcdf"
        assert ds.attrs["forecast_reference_time"] == "2024-09-07T12:00:00Z"
        assert ds.attrs["step_hours"] == 1.0
        assert ds["time"].attrs["bounds"] == "time_bnds"
        np.testing.assert_array_equal(p.values, raw["precipitation"].values)  # whole grid within margin
    assert not [f for f in a.path.parent.iterdir() if f.name.startswith(".")]


def test_load_archived_latest_and_by_cycle(ws, tmp_path):
    for h in (0, 6, 12):
        ref = REF - np.timedelta64(12 - h, "h")
        values = np.full((6, LAT.size, LON.size), h, "f4")
        ingest(ws, "cf-netcdf", write_nc(cf_dataset(values, ref=ref), tmp_path / f"c{h}.nc"),
               bounds=BOUNDS, now=NOW)
    assert [a.cycle.hour for a in list_archived(ws, "cf-netcdf")] == [0, 6, 12]
    with load_archived(ws, "cf-netcdf") as latest:
        assert latest.attrs["forecast_reference_time"] == "2024-09-07T12:00:00Z"
        assert float(latest["precipitation"].max()) == 12
    with load_archived(ws, "cf-netcdf", dt.datetime(2024, 9, 7, 6, tzinfo=dt.UTC)) as six:
        assert float(six["precipitation"].max()) == 6
    with pytest.raises(ForecastError, match=r"not archived.*2024-09-07T06Z"):
        load_archived(ws, "cf-netcdf", dt.datetime(2024, 9, 8, tzinfo=dt.UTC))
    with pytest.raises(ForecastError, match="ewarn ingest gfs"):
        load_archived(ws, "gfs")


def test_archived_contract_file_reingests_identically_with_the_demo_profile(ws, tmp_path):
    """The demo profile reads a file already in the contract: nothing changes."""
    a = ingest(ws, "cf-netcdf", write_nc(cf_dataset(hours=[3, 6, 9], step_hours=3.0), tmp_path / "f.nc"),
               bounds=BOUNDS, now=NOW)
    with xr.open_dataset(a.path) as archived:
        again = open_forecast("demo", a.path, bounds=BOUNDS).load()
        xr.testing.assert_allclose(again["precipitation"], archived["precipitation"])
        assert again["step_hours"].values.tolist() == [3.0, 3.0, 3.0]
        assert again.attrs["forecast_reference_time"] == archived.attrs["forecast_reference_time"]


def test_failure_while_moving_into_place_leaves_the_archive_unchanged(ws, tmp_path, monkeypatch):
    first = ingest(ws, "cf-netcdf", write_nc(cf_dataset(), tmp_path / "a.nc"), bounds=BOUNDS, now=NOW)
    before = archive_state(ws)
    import ewarn.forecasts.archive as archive_mod

    real_replace = archive_mod.os.replace

    def failing_replace(src, dst):
        if str(src).endswith(".nc.tmp"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(archive_mod.os, "replace", failing_replace)
    other = write_nc(cf_dataset(rain_field(6, seed=5)), tmp_path / "b.nc")
    with pytest.raises(ForecastError, match="No space left on device"):
        ingest(ws, "cf-netcdf", other, bounds=BOUNDS, now=NOW, force=True)
    assert archive_state(ws) == before
    assert first.path.exists()
    assert sorted(p.name for p in first.path.parent.iterdir()) == [first.path.name]


def test_failure_writing_the_file_leaves_no_temporary(ws, tmp_path, monkeypatch):
    path = write_nc(cf_dataset(), tmp_path / "a.nc")  # the input, written before the writer breaks
    before = archive_state(ws)

    def broken(self, target, **kwargs):
        with open(target, "wb") as fh:
            fh.write(b"partial")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(ForecastError, match="cannot write the archive file"):
        ingest(ws, "cf-netcdf", path, bounds=BOUNDS, now=NOW)
    assert archive_state(ws) == before
    assert [p for p in ws.path("forecasts").rglob("*") if p.is_file()] == []


def test_new_source_is_configuration_not_code(tmp_path, shared_data):
    """A GFS precipitation-rate source defined in ewarn.toml only."""
    ws = make_workspace(tmp_path / "ws", toml_extra=(
        "[forecasts.sources.gfs-prate]\nkind = \"grib\"\nvariable = \"prate\"\naccumulation = \"rate\"\n"))
    vietnam = (102.0, 8.0, 117.0, 24.0)
    a = ingest(ws, "gfs-prate", shared_data / GFS, bounds=vietnam,
               now=dt.datetime(2011, 10, 8, 5, tzinfo=dt.UTC))
    assert a.status == "archived" and a.path.name == "20111008T00.nc"
    assert a.valid_from == dt.datetime(2011, 10, 10, 18, tzinfo=dt.UTC)
    (msg,) = eccodes_fields(shared_data / GFS, shortName="prate")
    with xr.open_dataset(a.path) as ds:
        lon = (msg["lons"] + 180) % 360 - 180
        inside = np.isin(msg["lats"], ds["latitude"].values) & np.isin(lon, ds["longitude"].values)
        got = ds["precipitation"].isel(time=0).sel(
            latitude=xr.DataArray(msg["lats"][inside], dims="p"),
            longitude=xr.DataArray(lon[inside], dims="p")).values
        assert inside.sum() == ds.sizes["latitude"] * ds.sizes["longitude"] == 8 * 7
        np.testing.assert_allclose(got, msg["values"][inside] * 21600, rtol=1e-5, atol=1e-4)


def test_coarse_global_grid_covers_a_small_region(ws, shared_data):
    """GFS 2.5° over the 40 km demo region: one cell covers it; two per axis are kept."""
    a = ingest(ws, "gfs", shared_data / GFS, bounds=BOUNDS, now=dt.datetime(2011, 10, 8, 4, tzinfo=dt.UTC))
    with xr.open_dataset(a.path) as ds:
        assert ds["latitude"].values.tolist() == [22.5, 25.0]
        assert ds["longitude"].values.tolist() == [105.0, 107.5]
        (msg,) = eccodes_fields(shared_data / GFS, shortName="tp")
        i = np.flatnonzero((msg["lats"] == 22.5) & (msg["lons"] == 105.0))[0]
        assert float(ds["precipitation"].isel(time=0).sel(latitude=22.5, longitude=105.0)) == \
            pytest.approx(msg["values"][i], abs=1e-6)


# ------------------------------------------------------------------ antecedent rain


def _cycle_file(tmp_path, ref_hour_offset: int, rate: float, n_steps: int = 12):
    ref = REF + np.timedelta64(ref_hour_offset, "h")
    values = np.full((n_steps, LAT.size, LON.size), rate, "f4")
    raw = cf_dataset(values, hours=np.arange(1, n_steps + 1), ref=ref)
    return write_nc(raw, tmp_path / f"c{ref_hour_offset}.nc")


def test_antecedent_takes_the_first_hours_of_each_cycle_most_recent_first(ws, tmp_path):
    # cycles every 6 h from −24 h to −6 h before REF, 12 hourly steps each, rain = 1, 2, 3, 4 mm/h
    for k, off in enumerate((-24, -18, -12, -6)):
        ingest(ws, "cf-netcdf", _cycle_file(tmp_path, off, rate=k + 1.0), bounds=BOUNDS,
               now=dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC))
    result = antecedent(ws, "cf-netcdf", until=CYCLE, days=1)
    # the last 24 h: 6 h of each cycle (1+2+3+4) × 6 = 60 mm
    assert result.rain.dims == ("time", "latitude", "longitude")
    np.testing.assert_allclose(result.rain.values, 60.0)
    assert result.gaps == [] and float(result.coverage[0]) == 1.0
    assert len(result.cycles) == 4 and "most recent cycle first" in result.method
    # two days: the first day is not covered at all → NaN, listed as a gap
    two = antecedent(ws, "cf-netcdf", until=CYCLE, days=2)
    assert np.isnan(two.rain.values[0]).all()
    np.testing.assert_allclose(two.rain.values[1], 60.0)
    assert two.gaps == [dt.datetime(2024, 9, 6, 12, tzinfo=dt.UTC)]


def test_antecedent_fills_a_missing_cycle_from_the_previous_one_and_reports_gaps(ws, tmp_path):
    ingest(ws, "cf-netcdf", _cycle_file(tmp_path, -24, rate=1.0, n_steps=12), bounds=BOUNDS,
           now=dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC))
    ingest(ws, "cf-netcdf", _cycle_file(tmp_path, -6, rate=4.0, n_steps=12), bounds=BOUNDS,
           now=dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC))
    result = antecedent(ws, "cf-netcdf", until=CYCLE, days=1)
    # hours −24..−12 from the first cycle (12 × 1), −12..−6 uncovered, −6..0 from the last (6 × 4)
    np.testing.assert_allclose(result.rain.values, 36.0)
    assert result.gaps == [CYCLE] and float(result.coverage[0]) == pytest.approx(18 / 24)


def test_antecedent_ignores_cycles_issued_after_until(ws, tmp_path):
    ingest(ws, "cf-netcdf", _cycle_file(tmp_path, 0, rate=5.0), bounds=BOUNDS,
           now=dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC))
    result = antecedent(ws, "cf-netcdf", until=CYCLE, days=1)
    assert result.cycles == [] and result.gaps == [CYCLE] and "no cycle" in result.method


def test_glob_of_netcdf_files_split_in_time(ws, tmp_path):
    raw = cf_dataset(hours=np.arange(1, 7))
    write_nc(raw.isel(time=slice(0, 3)), tmp_path / "parts" / "a_000.nc")
    write_nc(raw.isel(time=slice(3, 6)), tmp_path / "parts" / "a_003.nc")
    a = ingest(ws, "cf-netcdf", str(tmp_path / "parts" / "a_*.nc"), bounds=BOUNDS, now=NOW)
    with xr.open_dataset(a.path) as ds:
        assert ds.sizes["time"] == 6
        np.testing.assert_array_equal(ds["precipitation"].values, raw["precipitation"].values)


def test_antecedent_from_an_observation_source(tmp_path):
    """An observed product (no reference time in its files) used as it is, newest file first."""
    ws = make_workspace(tmp_path / "ws", toml_extra=(
        "[forecasts.sources.obs]\nkind = \"cf-netcdf\"\nvariable = \"precipitation\"\n"
        "accumulation = \"interval\"\nobserved = true\n"))
    start = REF - np.timedelta64(24, "h")
    hourly = np.full((24, LAT.size, LON.size), 0.5, "f4")
    raw = cf_dataset(hourly, hours=np.arange(1, 25), ref=start, reference="none")
    a = ingest(ws, "obs", write_nc(raw, tmp_path / "obs.nc"), bounds=BOUNDS,
               now=dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC))
    assert a.cycle == CYCLE - dt.timedelta(hours=24)  # the start of the first interval
    result = antecedent(ws, "obs", until=CYCLE, days=1)
    np.testing.assert_allclose(result.rain.values, 12.0)
    assert result.gaps == [] and "observations" in result.method
