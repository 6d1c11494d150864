"""The rain of a scenario: demo / synthetic / file, scaled, shifted, with antecedent rain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ewarn.config import ForecastSettings
from ewarn.forecasts import validate
from ewarn.forecasts.synthetic import (
    StormParams,
    demo_storm,
    synthetic_storm,
    write_forecast,
)
from ewarn.scenarios.rain import (
    KM_PER_DEGREE,
    build_rain,
    daily_antecedent,
    km_to_degrees,
    scale_rain,
    shift_space,
    shift_time,
    uniform_antecedent,
)
from ewarn.scenarios.schema import RainSpec, ScenarioError, load_scenario

#: A small region inside the demo storm's path (Phúc Khánh and around) [deg].
BOUNDS = (104.45, 22.08, 104.65, 22.26)
HEAD = '[scenario]\nname = "mưa thử"\n'


def scenario(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(HEAD + text, encoding="utf-8")
    return load_scenario(path)


def rain_of(tmp_path, text: str, **kw):
    sc = scenario(tmp_path, text)
    return build_rain(sc.rain, bounds=BOUNDS, seed=sc.scenario.seed, file=str(sc.file), **kw)


def small_storm(**kw) -> xr.Dataset:
    params = StormParams(track=((0.0, 104.50, 22.15), (12.0, 104.60, 22.20)), radius_km=10.0, peak_rate=20.0,
                         onset_hours=0.0, peak_hours=6.0, duration_hours=12.0, cells=2)
    lon = np.round(np.arange(104.0, 105.01, 0.05), 6)
    lat = np.round(np.arange(21.7, 22.61, 0.05), 6)
    args = {"lon": lon, "lat": lat, "reference_time": "2024-09-08T00:00Z", "steps": 12, "step_hours": 1.0,
            "seed": 3} | kw
    return synthetic_storm(params, **args)


# --------------------------------------------------------------------------- pure transforms


def test_km_to_degrees_uses_the_local_scale():
    assert km_to_degrees(0.0, KM_PER_DEGREE, 22.0) == pytest.approx((0.0, 1.0))
    dlon, _ = km_to_degrees(KM_PER_DEGREE, 0.0, 60.0)
    assert dlon == pytest.approx(2.0)  # a degree of longitude is half as long at 60° N
    assert round(KM_PER_DEGREE, 3) == 111.195


def test_scale_multiplies_every_amount_and_keeps_the_contract():
    ds = small_storm()
    out = scale_rain(ds, 1.5)
    np.testing.assert_allclose(out["precipitation"].values, 1.5 * ds["precipitation"].values, rtol=1e-6)
    assert out["precipitation"].dtype == np.float32
    assert out["precipitation"].attrs == ds["precipitation"].attrs
    assert "scaled ×1.5" in out.attrs["scenario_changes"]
    assert scale_rain(ds, 1.0) is ds
    with pytest.raises(ValueError):
        scale_rain(ds, 0.0)


def test_shift_time_moves_reference_time_times_and_bounds_together():
    ds = build_rain(RainSpec(), bounds=BOUNDS).forecast
    out = shift_time(ds, 6)
    assert out.attrs["forecast_reference_time"] == "2024-09-07T18:00:00Z"
    six = np.timedelta64(6, "h")
    np.testing.assert_array_equal(out["time"].values, ds["time"].values + six)
    np.testing.assert_array_equal(out["time_bnds"].values, ds["time_bnds"].values + six)
    np.testing.assert_array_equal(out["precipitation"].values, ds["precipitation"].values)
    back = shift_time(out, -6)
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)


def test_shift_space_relabels_the_grid():
    ds = small_storm()
    out = shift_space(ds, 0.2, -0.1)
    np.testing.assert_allclose(out["longitude"].values, ds["longitude"].values + 0.2)
    np.testing.assert_allclose(out["latitude"].values, ds["latitude"].values - 0.1)
    np.testing.assert_array_equal(out["precipitation"].values, ds["precipitation"].values)
    assert out["longitude"].attrs["units"] == "degrees_east"
    with pytest.raises(ValueError, match="shift the storm less"):
        shift_space(ds, 80.0, 0.0)


def test_uniform_antecedent_spreads_the_total_over_the_days_before_the_start():
    a = uniform_antecedent("2024-09-07T12:00Z", 150.0, 5, latitude=np.array([22.0, 22.1]),
                           longitude=np.array([104.4, 104.5, 104.6]))
    assert a.dims == ("time", "latitude", "longitude") and a.shape == (5, 2, 3)
    assert float(a.sum("time").min()) == pytest.approx(150.0)
    assert a["time"].values[-1] == np.datetime64("2024-09-07T12:00")
    assert a["time"].values[0] == np.datetime64("2024-09-03T12:00")


def test_daily_antecedent_sums_hours_into_the_windows_before_the_start():
    ds = small_storm(reference_time="2024-09-05T00:00Z", steps=72, step_hours=1.0)
    ds["precipitation"][:] = 0.5  # 0.5 mm every hour: 12 mm a day
    daily = daily_antecedent(ds, "2024-09-08T00:00Z", 3)
    assert daily.shape[0] == 3
    np.testing.assert_allclose(daily.values, 12.0, rtol=1e-6)
    with pytest.raises(ValueError, match="the 4 day"):
        daily_antecedent(ds, "2024-09-08T00:00Z", 4)


# --------------------------------------------------------------------------- the scenario's rain


def test_demo_rain_is_the_demo_storm_in_the_forecast_contract(tmp_path):
    rain = rain_of(tmp_path, "")
    expected = demo_storm(bounds=BOUNDS, seed=2024)
    np.testing.assert_array_equal(rain.forecast["precipitation"].values, expected["precipitation"].values)
    np.testing.assert_array_equal(rain.forecast["time"].values, expected["time"].values)
    assert rain.forecast.attrs["forecast_reference_time"] == "2024-09-07T12:00:00Z"
    assert rain.forecast.attrs["source"] == "demo" and "time_bnds" in rain.forecast
    assert rain.antecedent is None
    warnings = validate(rain.forecast, bounds=BOUNDS, settings=ForecastSettings(),
                        now=pd.Timestamp("2024-09-07T13:00Z").to_pydatetime())
    assert all(w.severity == "warning" for w in warnings)


def test_scaled_and_shifted_scenario_moves_the_storm_and_covers_the_region(tmp_path):
    base = rain_of(tmp_path, "").forecast
    moved = rain_of(tmp_path, "[rain]\nscale = 2.0\nshift_hours = -3\nshift_km = [11.0, -5.5]\n").forecast
    dlon, dlat = km_to_degrees(11.0, -5.5, 0.5 * (BOUNDS[1] + BOUNDS[3]))
    assert moved.attrs["forecast_reference_time"] == "2024-09-07T09:00:00Z"
    total_b = base["precipitation"].sum("time")
    total_m = moved["precipitation"].sum("time")
    peak_b = total_b.where(total_b == total_b.max(), drop=True)
    peak_m = total_m.where(total_m == total_m.max(), drop=True)
    assert float(peak_m.longitude[0]) == pytest.approx(float(peak_b.longitude[0]) + dlon, abs=1e-6)
    assert float(peak_m.latitude[0]) == pytest.approx(float(peak_b.latitude[0]) + dlat, abs=1e-6)
    assert float(total_m.max()) == pytest.approx(2.0 * float(total_b.max()), rel=1e-5)
    lon, lat = moved["longitude"].values, moved["latitude"].values
    assert lon.min() <= BOUNDS[0] and lon.max() >= BOUNDS[2]
    assert lat.min() <= BOUNDS[1] and lat.max() >= BOUNDS[3]


def test_synthetic_storm_from_the_scenario_with_members(tmp_path):
    rain = rain_of(tmp_path, '[rain]\nkind = "synthetic"\nreference_time = 2025-10-26T00:00:00Z\nsteps = 24\n'
                             "step_hours = 3\nmembers = 3\nantecedent_mm = 100\n[rain.storm]\n"
                             "track = [[0, 104.4, 22.1], [48, 104.7, 22.3]]\npeak_rate = 30\n"
                             "onset_hours = 6\npeak_hours = 30\nduration_hours = 60\n")
    fc = rain.forecast
    assert fc["precipitation"].dims == ("member", "time", "latitude", "longitude")
    assert fc.sizes["member"] == 3 and fc.sizes["time"] == 24
    assert fc.attrs["step_hours"] == 3.0 and fc.attrs["source"] == "synthetic"
    assert fc.attrs["forecast_reference_time"] == "2025-10-26T00:00:00Z"
    assert float(fc["precipitation"].max()) > 0
    ante = rain.antecedent
    assert ante["time"].values[-1] == np.datetime64("2025-10-26T00:00")
    assert float(ante.sum("time").mean()) == pytest.approx(100.0)


def test_file_rain_is_read_through_the_forecasts_room(tmp_path):
    write_forecast(small_storm(), tmp_path / "storm.nc")
    rain = rain_of(tmp_path, '[rain]\nkind = "file"\nfile = "storm.nc"\nscale = 0.5\n')
    expected = small_storm().sel(longitude=rain.forecast.longitude, latitude=rain.forecast.latitude,
                                 method="nearest", tolerance=1e-6)
    np.testing.assert_allclose(rain.forecast["precipitation"].values, 0.5 * expected["precipitation"].values,
                               rtol=1e-6)
    assert "storm.nc" in rain.notes[0]


def test_a_shift_the_file_cannot_cover_names_the_key(tmp_path):
    write_forecast(small_storm(), tmp_path / "storm.nc")
    with pytest.raises(ScenarioError) as info:
        rain_of(tmp_path, '[rain]\nkind = "file"\nfile = "storm.nc"\nshift_km = [60, 0]\n')
    (p,) = info.value.problems
    assert p.field == "rain.shift_km" and "but the region spans" in p.message
    assert p.file == str(tmp_path / "s.toml")


def test_a_file_that_is_not_a_forecast_names_the_key(tmp_path):
    (tmp_path / "storm.nc").write_text("not netcdf", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        rain_of(tmp_path, '[rain]\nkind = "file"\nfile = "storm.nc"\n')
    (p,) = info.value.problems
    assert p.field == "rain.file" and "storm.nc" in p.message


def test_antecedent_file_is_moved_with_the_storm(tmp_path):
    obs = small_storm(reference_time="2024-09-02T00:00Z", steps=24 * 6, step_hours=1.0)
    obs["precipitation"][:] = 1.0  # 24 mm a day
    write_forecast(obs, tmp_path / "obs.nc")
    rain = rain_of(tmp_path, '[rain]\nantecedent_file = "obs.nc"\nantecedent_days = 3\nshift_hours = 12\n')
    ante = rain.antecedent
    assert ante["time"].values[-1] == np.datetime64("2024-09-08T00:00")  # 2024-09-07T12Z + 12 h
    np.testing.assert_allclose(ante.values, 24.0, rtol=1e-5)
    with pytest.raises(ScenarioError) as info:
        rain_of(tmp_path, '[rain]\nantecedent_file = "obs.nc"\nantecedent_days = 10\n')
    assert info.value.problems[0].field == "rain.antecedent_file"
