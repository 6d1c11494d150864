"""GRIB: the real NCEP GFS and ECMWF sample files, cross-checked against ecCodes.

Each normalized value is compared with the value ecCodes itself decodes for
the same message at the same latitude/longitude (ecCodes' own coordinate
arrays, wrapped to −180..180), so a wrong factor (1000, 2, 21600), a wrong
flip or a wrong roll of the grid fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ewarn.config import ForecastSettings, SourceProfile
from ewarn.forecasts import ForecastError, open_forecast
from test_forecasts_fixtures import ECMWF, GFS, eccodes_fields, write_grib

pytest.importorskip("cfgrib")


def _at(ds: xr.Dataset, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Normalized precipitation of the only step at ecCodes' points (exact coordinates)."""
    lon = (lons + 180.0) % 360.0 - 180.0
    da = ds["precipitation"].isel(time=0)
    return da.sel(latitude=xr.DataArray(lats, dims="p"), longitude=xr.DataArray(lon, dims="p")).values


def test_gfs_tp_6h_bucket_is_the_raw_kg_m2_value(shared_data):
    path = shared_data / GFS
    (msg,) = eccodes_fields(path, shortName="tp")
    assert (msg["startStep"], msg["endStep"], msg["units"]) == (66, 72, "kg m**-2")
    ds = open_forecast("gfs", path)  # whole globe: every cell is checked
    assert ds["precipitation"].dims == ("time", "latitude", "longitude")
    assert ds.sizes["latitude"] * ds.sizes["longitude"] == msg["numberOfPoints"] == 10512
    got = _at(ds, msg["lats"], msg["lons"])
    np.testing.assert_allclose(got, msg["values"], rtol=1e-6, atol=1e-6)
    # the interval is 66–72 h after 2011-10-08T00Z and the time is its end
    assert ds["time"].values[0] == np.datetime64("2011-10-11T00:00")
    np.testing.assert_array_equal(ds["time_bnds"].values[0],
                                  np.array(["2011-10-10T18:00", "2011-10-11T00:00"], "datetime64[ns]"))
    assert ds.attrs["step_hours"] == 6.0 and ds["step_hours"].values.tolist() == [6.0]
    assert ds.attrs["forecast_reference_time"] == "2011-10-08T00:00:00Z"
    assert ds.attrs["source"] == "gfs"
    assert ds["precipitation"].attrs["units"] == "mm"
    assert ds["precipitation"].attrs["standard_name"] == "lwe_thickness_of_precipitation_amount"
    assert ds["precipitation"].attrs["cell_methods"] == "time: sum"
    assert np.all(np.diff(ds["latitude"].values) > 0) and np.all(np.diff(ds["longitude"].values) > 0)
    assert ds["longitude"].values.min() == -180.0 and ds["longitude"].values.max() == 177.5
    assert float(ds["precipitation"].max()) == pytest.approx(89.8, abs=0.01)


def test_gfs_prate_is_rate_times_interval_seconds(shared_data):
    path = shared_data / GFS
    (msg,) = eccodes_fields(path, shortName="prate")
    assert msg["units"] == "kg m**-2 s**-1"
    profile = SourceProfile(name="gfs-prate", kind="grib", variable="prate", accumulation="rate")
    ds = open_forecast(profile, path)
    got = _at(ds, msg["lats"], msg["lons"])
    np.testing.assert_allclose(got, msg["values"] * 6 * 3600, rtol=1e-5, atol=1e-4)
    assert float(ds["precipitation"].max()) == pytest.approx(0.00415 * 21600, rel=1e-5)


def test_gfs_cut_to_vietnam_keeps_the_covering_cells(shared_data):
    ds = open_forecast("gfs", shared_data / GFS, bounds=(102.0, 8.0, 110.0, 24.0))
    # 2.5° cells whose extent touches 101.5..110.5 E, 7.5..24.5 N
    assert ds["longitude"].values.tolist() == [102.5, 105.0, 107.5, 110.0]
    assert ds["latitude"].values.tolist() == [7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0]


@pytest.mark.parametrize("points", [2664, 4140])
def test_ecmwf_tp_metres_since_start_times_1000(shared_data, points):
    path = shared_data / ECMWF
    (msg,) = eccodes_fields(path, shortName="tp", numberOfPoints=points)
    assert msg["units"] == "m"
    settings = ForecastSettings(sources={"ec": {"kind": "grib", "variable": "tp",
                                                "accumulation": "since-start",
                                                "grib_filter": {"numberOfPoints": points}}})
    ds = open_forecast("ec", path, settings=settings)
    got = _at(ds, msg["lats"], msg["lons"])
    np.testing.assert_allclose(got, msg["values"] * 1000.0, rtol=1e-6, atol=1e-4)
    assert ds["step_hours"].values.tolist() == [12.0]  # 0–12 h since the run start


def test_ecmwf_two_grids_refused_naming_the_grids(shared_data):
    path = shared_data / ECMWF
    with pytest.raises(ForecastError) as err:
        open_forecast("ecmwf-ifs", path)
    msg = str(err.value)
    assert str(path) in msg and "'tp'" in msg
    assert "numberOfPoints=2664" in msg and "numberOfPoints=4140" in msg
    assert "grib_filter" in msg


def test_gfs_alternating_buckets_are_deaccumulated(shared_data, tmp_path):
    """0–3, 0–6, 6–9, 6–12 h buckets (real GFS layout) → four 3-hour intervals."""
    rng = np.random.default_rng(1)
    inc = rng.gamma(0.7, 3.0, size=(4, 10512)).round(1)  # true 3-hourly rain [kg m-2]
    acc = [inc[0], inc[0] + inc[1], inc[2], inc[2] + inc[3]]
    path = write_grib(shared_data / GFS, "tp", tmp_path / "gfs.grib2", [
        {"stepRange": r, "values": v} for r, v in zip(["0-3", "0-6", "6-9", "6-12"], acc, strict=True)])
    msgs = eccodes_fields(path, shortName="tp")
    ds = open_forecast("gfs", path)
    assert ds["step_hours"].values.tolist() == [3.0, 3.0, 3.0, 3.0]
    for k in range(4):
        lon = (msgs[0]["lons"] + 180) % 360 - 180
        got = ds["precipitation"].isel(time=k).sel(
            latitude=xr.DataArray(msgs[0]["lats"], dims="p"), longitude=xr.DataArray(lon, dims="p"))
        direct = msgs[k]["values"] - (msgs[k - 1]["values"] if k in (1, 3) else 0.0)
        # differencing packed values gives tiny negatives (−0.03): clipped to 0, nothing else
        assert direct.min() < 0 if k in (1, 3) else direct.min() >= 0
        np.testing.assert_allclose(got.values, np.maximum(direct, 0.0), atol=1e-5)
        np.testing.assert_allclose(got.values, inc[k], atol=0.06)


def test_ecmwf_ensemble_control_and_perturbed_members(shared_data, tmp_path):
    """cf (number 0) + pf (1, 2) since-start at 0, 6, 12 h → 3 members × 2 six-hour steps."""
    specs = []
    for dtype, num in (("cf", 0), ("pf", 1), ("pf", 2)):
        for step, total in ((0, 0.0), (6, 0.004 * (num + 1)), (12, 0.010 * (num + 1))):
            specs.append({"dataType": dtype, "number": num, "endStep": step, "values": total})
    path = write_grib(shared_data / ECMWF, "tp", tmp_path / "ens.grib", specs)
    ds = open_forecast("ecmwf-ens", path)  # the built-in profile; one grid in this file
    assert ds["precipitation"].dims == ("member", "time", "latitude", "longitude")
    assert ds["member"].values.tolist() == [0, 1, 2]
    assert ds["step_hours"].values.tolist() == [6.0, 6.0]
    per_member = ds["precipitation"].max(["latitude", "longitude"]).values
    np.testing.assert_allclose(per_member, [[4, 6], [8, 12], [12, 18]], atol=0.01)


def test_truncated_grib_refused(shared_data, tmp_path):
    data = (shared_data / GFS).read_bytes()
    cut = tmp_path / "cut.grib2"
    cut.write_bytes(data[: len(data) - 3000])
    with pytest.raises(ForecastError) as err:
        open_forecast("gfs", cut)
    assert "truncated" in str(err.value) and str(cut) in str(err.value)


def test_glob_of_gfs_files_one_per_lead_time(shared_data, tmp_path):
    """Real GFS delivery: one file per lead time (f003, f006, ...), read as one forecast."""
    for rng_, end in (("0-3", 3), ("0-6", 6), ("6-9", 9)):
        write_grib(shared_data / GFS, "tp", tmp_path / f"gfs.t00z.pgrb2.2p50.f{end:03d}",
                   [{"stepRange": rng_, "values": float(end)}])
    ds = open_forecast("gfs", str(tmp_path / "gfs.t00z.pgrb2.2p50.f*"))
    assert ds["step_hours"].values.tolist() == [3.0, 3.0, 3.0]
    np.testing.assert_allclose(ds["precipitation"].max(["latitude", "longitude"]).values, [3, 3, 9])


def test_grib_with_two_cycles_needs_a_cycle(shared_data, tmp_path):
    import datetime as dt

    path = write_grib(shared_data / ECMWF, "tp", tmp_path / "two_cycles.grib", [
        {"dataDate": 20171017, "endStep": 12, "values": 0.001},
        {"dataDate": 20171018, "endStep": 12, "values": 0.002}])
    settings = ForecastSettings(sources={"ec": {"kind": "grib", "variable": "tp",
                                                "accumulation": "since-start"}})
    with pytest.raises(ForecastError, match=r"2 forecast cycles.*2017-10-17T12Z.*--cycle"):
        open_forecast("ec", path, settings=settings)
    ds = open_forecast("ec", path, settings=settings, cycle=dt.datetime(2017, 10, 18, 12, tzinfo=dt.UTC))
    assert ds.attrs["forecast_reference_time"] == "2017-10-18T12:00:00Z"
    assert float(ds["precipitation"].max()) == pytest.approx(2.0, abs=1e-3)
