"""The parametric storm generator (forecasts.synthetic) and the demo storm."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ewarn.config import ForecastSettings, SourceProfile
from ewarn.demo import COMMUNES, DEMO_SEED, commune_of, synthetic_dem
from ewarn.forecasts import open_forecast, validate
from ewarn.forecasts.errors import ForecastError
from ewarn.forecasts.synthetic import (
    DEMO_BOUNDS,
    DEMO_REFERENCE_TIME,
    StormParams,
    demo_grid,
    demo_storm,
    demo_storm_params,
    envelope,
    synthetic_storm,
    track_position,
    write_forecast,
)

PHUC_KHANH = (104.565, 22.178)


@pytest.fixture(scope="module")
def terrain() -> xr.Dataset:
    return synthetic_dem(DEMO_SEED)


@pytest.fixture(scope="module")
def storm(terrain) -> xr.Dataset:
    return demo_storm(terrain=terrain, seed=DEMO_SEED)


@pytest.fixture(scope="module")
def ensemble(terrain) -> xr.Dataset:
    return demo_storm(terrain=terrain, members=6, seed=DEMO_SEED)


def _small(**kw) -> xr.Dataset:
    params = StormParams(track=((0.0, 104.0, 22.0), (12.0, 104.5, 22.2)), onset_hours=0.0, peak_hours=6.0,
                         duration_hours=12.0)
    args = {"lon": np.arange(103.5, 105.01, 0.1), "lat": np.arange(21.5, 22.71, 0.1),
            "reference_time": "2024-09-07T12:00Z", "steps": 12} | kw
    return synthetic_storm(params, **args)


def test_contract_dims_attrs_and_interval_end_times(storm):
    p = storm["precipitation"]
    assert p.dims == ("time", "latitude", "longitude")
    assert p.dtype == np.float32
    assert p.attrs["standard_name"] == "lwe_thickness_of_precipitation_amount"
    assert p.attrs["units"] == "mm"
    assert p.attrs["cell_methods"] == "time: sum"
    assert storm.attrs["forecast_reference_time"] == "2024-09-07T12:00:00Z"
    assert storm.attrs["Conventions"] == "CF-1.8"
    assert storm.attrs["step_hours"] == 1
    assert storm.attrs["source"] == "demo"
    assert "history" not in storm.attrs
    # time is the END of each interval: the first step ends one hour after the reference time
    assert storm["time"].dtype == np.dtype("datetime64[ns]")
    expected = pd.date_range("2024-09-07T13:00", periods=72, freq="h").to_numpy()
    np.testing.assert_array_equal(storm["time"].values, expected)
    assert storm["latitude"].attrs["units"] == "degrees_north"
    assert storm["longitude"].attrs["standard_name"] == "longitude"
    assert storm["time"].attrs["standard_name"] == "time"
    assert np.all(np.diff(storm["latitude"].values) > 0) and np.all(np.diff(storm["longitude"].values) > 0)
    assert "member" not in storm.dims
    assert float(p.min()) >= 0.0


def test_demo_grid_covers_the_box_with_half_a_degree_margin(storm):
    lon, lat = storm["longitude"].values, storm["latitude"].values
    w, s, e, n = DEMO_BOUNDS
    assert lon[0] <= w - 0.5 + 1e-9 and lon[-1] >= e + 0.5 - 1e-9
    assert lat[0] <= s - 0.5 + 1e-9 and lat[-1] >= n + 0.5 - 1e-9
    np.testing.assert_allclose(np.diff(lon), 0.05, atol=1e-9)
    assert np.array_equal(demo_grid()[0], lon)


def test_demo_storm_totals_and_peak_over_phuc_khanh(storm):
    pk = storm["precipitation"].sel(longitude=PHUC_KHANH[0], latitude=PHUC_KHANH[1], method="nearest")
    total = float(pk.sum())
    assert 400.0 <= total <= 650.0
    peak = float(pk.max())
    assert 50.0 <= peak <= 60.0
    when = pd.Timestamp(pk["time"].values[int(np.argmax(pk.values))])
    # the night of 9→10 September local time (UTC+7): interval ending 17:00–23:00 UTC on the 9th
    assert pd.Timestamp("2024-09-09T17:00") <= when <= pd.Timestamp("2024-09-09T23:00")
    # rain starts well after the reference time: the first day over the area is nearly dry
    assert float(pk.sel(time=slice(None, "2024-09-08T12:00")).sum()) < 20.0


def test_demo_storm_is_far_weaker_away_from_the_track(storm):
    total = storm["precipitation"].sum("time")
    ring = np.concatenate([total.values[0], total.values[-1], total.values[:, 0], total.values[:, -1]])
    assert ring.max() < 100.0
    # commune means on a fine sample of the box
    lon = np.linspace(DEMO_BOUNDS[0], DEMO_BOUNDS[2], 81)
    lat = np.linspace(DEMO_BOUNDS[1], DEMO_BOUNDS[3], 81)
    fine = total.interp(longitude=lon, latitude=lat).values
    label = commune_of(*np.meshgrid(lon, lat))
    means = np.array([fine[label == i].mean() for i in range(len(COMMUNES))])
    assert means.min() < 150.0
    assert 400.0 <= means.max() <= 650.0
    assert COMMUNES[int(np.argmax(means))].name in ("Phúc Khánh", "Bảo Yên", "Khánh Hòa")


def test_terrain_enhances_rain_by_the_orographic_factor():
    flat = _small()
    lon, lat = flat["longitude"].values, flat["latitude"].values
    hill = xr.Dataset({"elevation": (("latitude", "longitude"), np.full((lat.size, lon.size), 1000.0))},
                      coords={"latitude": lat, "longitude": lon})
    raised = _small(terrain=hill)
    factor = StormParams(track=((0.0, 0.0, 0.0),)).orographic_factor
    np.testing.assert_allclose(raised["precipitation"].values,
                               flat["precipitation"].values * (1.0 + factor), rtol=1e-5)


def test_three_hour_steps_hold_the_sum_of_the_hourly_steps():
    hourly = _small(steps=12, step_hours=1)["precipitation"]
    three = _small(steps=4, step_hours=3)["precipitation"]
    summed = hourly.coarsen(time=3).sum()
    np.testing.assert_allclose(three.values, summed.values, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(three["time"].values, hourly["time"].values[2::3])


def test_ensemble_members_spread_and_are_deterministic(ensemble, storm, terrain):
    p = ensemble["precipitation"]
    assert p.dims == ("member", "time", "latitude", "longitude")
    assert ensemble.sizes["member"] == 6
    assert ensemble["member"].attrs["standard_name"] == "realization"
    pk = p.sel(longitude=PHUC_KHANH[0], latitude=PHUC_KHANH[1], method="nearest").sum("time")
    assert float(pk.std()) > 10.0  # members differ
    # member 0 is the control: the deterministic forecast
    np.testing.assert_array_equal(p.isel(member=0).values, storm["precipitation"].values)
    again = demo_storm(terrain=terrain, members=6, seed=DEMO_SEED)
    xr.testing.assert_identical(again, ensemble)
    other = demo_storm(terrain=terrain, members=6, seed=DEMO_SEED + 1)
    assert not np.array_equal(other["precipitation"].values, p.values)


def test_written_forecast_reopens_identical_and_bytes_are_stable(tmp_path, storm, ensemble):
    a = write_forecast(storm, tmp_path / "a" / "storm.nc")
    b = write_forecast(storm, tmp_path / "b" / "storm.nc")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert sorted(p.name for p in a.parent.iterdir()) == ["storm.nc"]  # no temp file left
    with xr.open_dataset(a) as back:
        back.load()
        xr.testing.assert_identical(back, storm)
        # xarray may write the ISO "T" separator; both are valid UDUNITS
        assert back["time"].encoding["units"].replace("T", " ") == "hours since 2024-09-07 12:00:00"
        assert back["time"].encoding["calendar"] == "proleptic_gregorian"
        assert back["precipitation"].encoding["zlib"]
    e = write_forecast(ensemble, tmp_path / "ens.nc")
    with xr.open_dataset(e) as back:
        xr.testing.assert_identical(back.load(), ensemble)


def test_written_demo_storm_passes_the_forecasts_room(tmp_path, storm):
    path = write_forecast(storm, tmp_path / "demo.nc")
    ds = open_forecast(SourceProfile(), path, bounds=DEMO_BOUNDS)
    now = DEMO_REFERENCE_TIME + pd.Timedelta(hours=3)
    problems = validate(ds, bounds=DEMO_BOUNDS, settings=ForecastSettings(), now=now, path=str(path))
    assert [p for p in problems if p.severity == "error"] == []
    total = ds["precipitation"].sum("time").max()
    assert float(total) == pytest.approx(float(storm["precipitation"].sum("time").max()), rel=1e-5)


def test_write_refuses_what_is_not_a_forecast_and_unwritable_places(tmp_path, storm):
    with pytest.raises(ForecastError, match="precipitation"):
        write_forecast(xr.Dataset({"rain": ("x", [1.0])}), tmp_path / "x.nc")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ForecastError, match="writable"):
        write_forecast(storm, blocker / "storm.nc")


def test_bad_parameters_and_grids_are_refused():
    with pytest.raises(ForecastError, match="radius_km"):
        StormParams(track=((0.0, 104.0, 22.0),), radius_km=0.0)
    with pytest.raises(ForecastError, match="increasing time"):
        StormParams(track=((5.0, 104.0, 22.0), (1.0, 104.0, 22.0)))
    with pytest.raises(ForecastError, match="ascending"):
        _small(lat=np.array([22.5, 22.0]))
    with pytest.raises(ForecastError, match="steps"):
        _small(steps=0)


def test_envelope_and_track():
    h = np.array([0.0, 10.0, 20.0, 30.0, 60.0, 80.0])
    env = envelope(h, onset=10.0, peak=30.0, duration=50.0)
    np.testing.assert_allclose(env, [0.0, 0.0, 0.5, 1.0, 0.0, 0.0], atol=1e-12)
    lon, lat = track_position(((0.0, 104.0, 22.0), (10.0, 105.0, 23.0)), np.array([-5.0, 5.0, 15.0]))
    np.testing.assert_allclose(lon, [104.0, 104.5, 105.0])
    np.testing.assert_allclose(lat, [22.0, 22.5, 23.0])


def test_demo_storm_params_follow_yagi():
    p = demo_storm_params()
    lon, lat = track_position(p.track, np.array([p.peak_hours]))
    # the storm is over Phúc Khánh at the peak of its envelope
    assert math.hypot(lon[0] - PHUC_KHANH[0], lat[0] - PHUC_KHANH[1]) < 0.02
