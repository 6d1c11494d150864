"""Rainfall accumulations, summaries, daily totals and antecedent-rain indices."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ewarn.errors import EwarnError
from ewarn.hazard_models import rainfall as rf
from ewarn.hazard_models.tables import TABLES_DIR, TableError

T0 = pd.Timestamp("2024-09-08T01:00")


def _forecast(values: np.ndarray, step_h: float = 1.0, dims=("member", "time", "latitude", "longitude"),
              start: pd.Timestamp = T0) -> xr.DataArray:
    """A forecast-contract precipitation array (time = interval end, UTC)."""
    nt = values.shape[dims.index("time")]
    coords = {"time": pd.date_range(start, periods=nt, freq=pd.Timedelta(hours=step_h))}
    if "latitude" in dims:
        coords["latitude"] = 22.0 + 0.1 * np.arange(values.shape[dims.index("latitude")])
    if "longitude" in dims:
        coords["longitude"] = 104.0 + 0.1 * np.arange(values.shape[dims.index("longitude")])
    return xr.DataArray(values, dims=dims, coords=coords, name="precipitation",
                        attrs={"units": "mm", "step_hours": step_h})


def _naive(x: np.ndarray, n: int, axis: int, skipna: bool) -> np.ndarray:
    """Reference: for each time, sum the (up to) n steps ending there."""
    x = np.moveaxis(x.astype(np.float64), axis, 0)
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        win = x[max(0, t - n + 1): t + 1]
        out[t] = np.where(np.isnan(win).all(0), np.nan, np.nansum(win, 0)) if skipna else win.sum(0)
    return np.moveaxis(out, 0, axis)


@pytest.fixture
def member_forecast() -> xr.DataArray:
    rng = np.random.default_rng(42)
    x = rng.gamma(0.4, 4.0, size=(3, 80, 6, 5)).astype(np.float32)
    x[rng.random(x.shape) < 0.4] = 0.0
    x[1, 30, 2, 3] = np.nan
    x[2, 0, 0, 0] = np.nan
    return _forecast(x)


# ---------------------------------------------------------------- accumulations


@pytest.mark.parametrize("skipna", [False, True])
def test_accumulations_match_naive_sums_with_members_and_nans(member_forecast, skipna):
    acc = rf.accumulations(member_forecast, skipna=skipna)
    assert list(acc.data_vars) == [f"rain_{w}h" for w in (1, 3, 6, 12, 24, 48, 72)]
    x = member_forecast.values
    for w in (1, 3, 6, 12, 24, 48, 72):
        got = acc[f"rain_{w}h"]
        assert got.dims == member_forecast.dims and got.dtype == np.float32
        assert got.attrs["units"] == "mm" and got.attrs["window_hours"] == w
        np.testing.assert_allclose(got.values, _naive(x, w, 1, skipna), rtol=2e-6, atol=1e-4)
    # NaN policy: by default a window holding the missing step is unknown; with skipna it counts as 0
    nan_windows = np.isnan(acc["rain_24h"].values[1, :, 2, 3])
    if skipna:
        assert not nan_windows.any()
    else:
        assert nan_windows.tolist() == [30 <= t < 54 for t in range(80)]


def test_time_axis_need_not_come_first(member_forecast):
    ref = rf.accumulations(member_forecast, (3, 24))
    moved = member_forecast.transpose("latitude", "time", "longitude", "member")
    acc = rf.accumulations(moved, (3, 24))
    assert acc["rain_24h"].dims == moved.dims
    xr.testing.assert_allclose(acc["rain_24h"].transpose(*member_forecast.dims), ref["rain_24h"])
    xr.testing.assert_allclose(acc["rain_3h"].transpose(*member_forecast.dims), ref["rain_3h"])


def test_windows_that_are_not_multiples_of_the_step_are_skipped():
    x = np.arange(1.0, 17.0).reshape(1, 16, 1, 1)
    acc = rf.accumulations(_forecast(x, step_h=3.0), windows_h=(1, 3, 6, 4.5, 24, 48))
    assert list(acc.data_vars) == ["rain_3h", "rain_6h", "rain_24h", "rain_48h"]
    assert acc.attrs["skipped_windows_h"] == [1, 4.5]
    assert "1 h, 4.5 h skipped" in acc.attrs["comment"]
    assert acc["rain_6h"].attrs["window_steps"] == 2
    np.testing.assert_array_equal(acc["rain_6h"].values.ravel()[:4], [1, 3, 5, 7])
    np.testing.assert_array_equal(acc["rain_24h"].values.ravel()[7:9], [36, 44])
    with pytest.raises(rf.RainfallInputError, match="whole multiple of the 3 h step"):
        rf.accumulations(_forecast(x, step_h=3.0), windows_h=(1, 2))


def test_window_without_rain_is_exactly_zero_after_a_downpour():
    # a running sum that adds and subtracts float32 slabs leaves residues like 1e-6 mm
    rng = np.random.default_rng(0)
    x = np.zeros((1, 60, 4, 4), np.float32)
    x[0, :12] = rng.uniform(0.01, 80.0, size=(12, 4, 4)).astype(np.float32)
    acc = rf.accumulations(_forecast(x))
    assert (acc["rain_24h"].values[0, 35:] == 0.0).all()
    assert (acc["rain_3h"].values[0, 14:] == 0.0).all()
    assert (acc["rain_72h"].values >= 0).all()


def test_partial_windows_at_the_forecast_start():
    x = np.ones((1, 10, 1, 1), np.float32)
    full = rf.accumulations(_forecast(x), (3,))["rain_3h"].values.ravel()
    assert full.tolist() == [1, 2, 3, 3, 3, 3, 3, 3, 3, 3]
    strict = rf.accumulations(_forecast(x), (3,), partial=False)["rain_3h"].values.ravel()
    assert np.isnan(strict[:2]).all() and strict[2:].tolist() == [3] * 8


def test_long_window_without_shorter_ones_and_odd_windows():
    rng = np.random.default_rng(3)
    x = rng.gamma(0.5, 2.0, size=(1, 100, 2, 3))
    acc = rf.accumulations(_forecast(x), (24, 5, 7, 97))
    for w in (24, 5, 7, 97):
        np.testing.assert_allclose(acc[f"rain_{w}h"].values, _naive(x, w, 1, False), rtol=1e-12, atol=1e-9)


def test_dataset_input_carries_attributes_and_step():
    x = np.full((4, 2, 2), 2.0, np.float32)
    ds = _forecast(x, step_h=6.0, dims=("time", "latitude", "longitude")).to_dataset()
    ds["precipitation"].attrs.pop("step_hours")
    ds.attrs.update(step_hours=6, forecast_reference_time="2024-09-08T00:00:00", source="test")
    acc = rf.accumulations(ds, (6, 12, 24))
    assert acc.attrs["forecast_reference_time"] == "2024-09-08T00:00:00"
    assert acc.attrs["step_hours"] == 6.0 and acc.attrs["source"] == "test"
    assert acc["rain_24h"].values[:, 0, 0].tolist() == [2, 4, 6, 8]


def test_bad_inputs_are_clear_errors():
    x = np.ones((1, 4, 1, 1))
    da = _forecast(x)
    with pytest.raises(rf.RainfallInputError, match="step_hours=3 disagrees"):
        rf.accumulations(da.assign_attrs(step_hours=3))
    irregular = da.assign_coords(time=pd.to_datetime(["2024-09-08T01", "2024-09-08T02", "2024-09-08T04",
                                                      "2024-09-08T05"]))
    with pytest.raises(rf.RainfallInputError, match="irregular"):
        rf.accumulations(irregular)
    with pytest.raises(rf.RainfallInputError, match="times must increase"):
        rf.accumulations(da.isel(time=[1, 0, 2, 3]))
    single = da.isel(time=[0])
    single.attrs.pop("step_hours")
    with pytest.raises(rf.RainfallInputError, match="single time step"):
        rf.accumulations(single)
    assert rf.accumulations(single, step_hours=1)["rain_1h"].size == 1
    with pytest.raises(rf.RainfallInputError, match="no 'time' dimension"):
        rf.accumulations(da.isel(time=0))
    with pytest.raises(rf.RainfallInputError, match="no 'precipitation' variable"):
        rf.accumulations(da.to_dataset(name="tp"))
    assert issubclass(rf.RainfallInputError, EwarnError)


def test_dask_backed_input_gives_identical_numbers(member_forecast):
    eager = rf.accumulations(member_forecast, skipna=True)
    lazy = rf.accumulations(member_forecast.chunk({"time": 20, "latitude": 3, "member": 1}), skipna=True)
    assert lazy["rain_24h"].chunks is not None  # still lazy
    assert lazy["rain_24h"].chunksizes["time"] == (80,)  # whole along time
    for name in eager.data_vars:
        np.testing.assert_array_equal(lazy[name].values, eager[name].values)
    xr.testing.assert_identical(rf.max_accumulation(lazy).compute(), rf.max_accumulation(eager))
    xr.testing.assert_identical(rf.first_exceedance(lazy, 30.0).compute(), rf.first_exceedance(eager, 30.0))
    xr.testing.assert_identical(rf.peak_time(lazy).compute(), rf.peak_time(eager))


# ---------------------------------------------------------------- summaries


@pytest.fixture
def storm() -> xr.Dataset:
    #            t0  t1  t2  t3  t4  t5
    x = np.array([[0, 5, 10, 0, 20, 0],      # cell 0
                  [0, 0, 0, 0, 0, 0],        # cell 1: dry
                  [np.nan] * 6], np.float32)  # cell 2: missing
    da = xr.DataArray(x, dims=("cell", "time"),
                      coords={"time": pd.date_range(T0, periods=6, freq="h")}, attrs={"step_hours": 1})
    return rf.accumulations(da, (1, 3))


def test_max_and_peak_time(storm):
    mx = rf.max_accumulation(storm)
    assert mx["rain_3h"].values[0] == 30 and mx["rain_1h"].values[0] == 20
    assert mx["rain_3h"].values[1] == 0 and np.isnan(mx["rain_3h"].values[2])
    pk = rf.peak_time(storm)
    # rain_3h of cell 0 = [0, 5, 15, 15, 30, 20]: peak at t4; the dry cell's (tied) peak is the first time
    assert pk["rain_3h"].values[0] == storm.time.values[4]
    assert pk["rain_3h"].values[1] == storm.time.values[0]
    assert np.isnat(pk["rain_3h"].values[2])


def test_first_exceedance(storm):
    fe = rf.first_exceedance(storm, 15.0)
    t = storm.time.values
    assert fe["rain_3h"].values[0] == t[2]          # reaches 15 mm (>=) at t2
    assert fe["rain_1h"].values[0] == t[4]
    assert np.isnat(fe["rain_3h"].values[1:]).all()  # dry and missing cells never reach it
    per_var = rf.first_exceedance(storm, {"rain_3h": 31.0})
    assert list(per_var.data_vars) == ["rain_3h"] and np.isnat(per_var["rain_3h"].values).all()
    per_cell = rf.first_exceedance(storm["rain_3h"], xr.DataArray([5.0, 0.0, 1.0], dims="cell"))
    assert per_cell.values[0] == t[1] and per_cell.values[1] == t[0] and np.isnat(per_cell.values[2])
    with pytest.raises(rf.RainfallInputError, match="rain_6h"):
        rf.first_exceedance(storm, {"rain_6h": 10.0})


# ---------------------------------------------------------------- daily totals


def test_daily_totals_on_utc_local_and_hydromet_days():
    # 48 hourly steps ending 2024-09-08 01:00 UTC .. 2024-09-10 00:00 UTC, 1 mm each
    da = _forecast(np.ones((48, 1, 1)), dims=("time", "latitude", "longitude"))
    utc = rf.daily_totals(da)
    assert utc.time.values.tolist() == pd.to_datetime(["2024-09-09", "2024-09-10"]).values.tolist()
    assert utc.values.ravel().tolist() == [24, 24] and utc.hours.values.tolist() == [24, 24]
    # civil day in Vietnam ends at 17:00 UTC
    local = rf.daily_totals(da, tz="Asia/Ho_Chi_Minh")
    assert local.time.values.tolist() == pd.to_datetime(
        ["2024-09-08T17:00", "2024-09-09T17:00", "2024-09-10T17:00"]).values.tolist()
    assert local.values.ravel().tolist() == [17, 24, 7] and local.hours.values.tolist() == [17, 24, 7]
    # hydro-met day: 19:00-19:00 local = 12:00-12:00 UTC
    hm = rf.hydromet_daily_totals(da)
    assert hm.time.values.tolist() == pd.to_datetime(
        ["2024-09-08T12:00", "2024-09-09T12:00", "2024-09-10T12:00"]).values.tolist()
    assert hm.values.ravel().tolist() == [12, 24, 12]
    assert hm.attrs["day_boundary"] == "19:00 Asia/Ho_Chi_Minh"


def test_daily_totals_nan_policy_and_members():
    x = np.ones((2, 24, 1, 1))
    x[0, 5] = np.nan
    da = _forecast(x, start=pd.Timestamp("2024-09-08T01:00"))
    assert np.isnan(rf.daily_totals(da).values[0, 0, 0, 0])
    assert rf.daily_totals(da).values[1, 0, 0, 0] == 24
    assert rf.daily_totals(da, skipna=True).values[0, 0, 0, 0] == 23


def test_daily_boundary_inside_a_step_is_refused():
    # 6-hourly steps end at 00/06/12/18 UTC; Vietnam's midnight is 17:00 UTC
    da = _forecast(np.ones((8, 1, 1)), step_h=6.0, dims=("time", "latitude", "longitude"),
                   start=pd.Timestamp("2024-09-08T00:00"))
    with pytest.raises(rf.RainfallInputError, match="crosses the day boundary at 00:00 Asia/Ho_Chi_Minh"):
        rf.daily_totals(da, tz="Asia/Ho_Chi_Minh")
    hm = rf.hydromet_daily_totals(da)  # 12 UTC is a step end: fine
    assert hm.values.ravel().tolist() == [3, 4, 1] and hm.hours.values.tolist() == [18, 24, 6]
    with pytest.raises(rf.RainfallInputError, match="not a known time zone"):
        rf.daily_totals(da, tz="Mars/Olympus")


# ---------------------------------------------------------------- antecedent indices


def _daily(values, extra_dims: bool = False) -> xr.DataArray:
    values = np.asarray(values, dtype=float)
    t = pd.date_range("2024-09-01T12:00", periods=values.shape[-1], freq="D")
    if extra_dims:
        return xr.DataArray(values, dims=("cell", "time"), coords={"time": t})
    return xr.DataArray(values, dims="time", coords={"time": t})


def test_ari_lhasa_weights_hand_example():
    p = [10, 0, 0, 0, 0, 0, 0, 20, 0]
    wsum = 1 + 1 / 4 + 1 / 9 + 1 / 16 + 1 / 25 + 1 / 36 + 1 / 49
    ari = rf.antecedent_rainfall_index(_daily(p))
    assert np.isnan(ari.values[:6]).all()                     # fewer than 7 days of history
    assert ari.values[6] == pytest.approx(10 / 49 / wsum)     # 10 mm six days back, weight 1/49
    assert ari.values[7] == pytest.approx(20 / wsum)          # the 10 mm is now 7 days back: out
    assert ari.values[8] == pytest.approx(20 / 4 / wsum)      # 20 mm yesterday, weight 1/4
    dry = rf.antecedent_rainfall_index(_daily(p), assume_dry_before=True)
    assert dry.values[0] == pytest.approx(10 / wsum) and dry.values[1] == pytest.approx(10 / 4 / wsum)
    assert dry.values[6:].tolist() == pytest.approx(ari.values[6:].tolist())


def test_api_recursion_and_initial_value():
    p = _daily([10, 0, 4])
    assert rf.antecedent_precipitation_index(p, k=0.5).values.tolist() == pytest.approx([10, 5, 6.5])
    assert rf.antecedent_precipitation_index(p, k=0.5, initial=2).values.tolist() == pytest.approx(
        [11, 5.5, 6.75])
    k = rf.rainfall_parameters().api_k
    default = rf.antecedent_precipitation_index(p)
    assert default.attrs["api_k"] == k
    assert default.values.tolist() == pytest.approx([10, 10 * k, 10 * k * k + 4])
    with pytest.raises(rf.RainfallInputError, match="0 < k < 1"):
        rf.antecedent_precipitation_index(p, k=1.2)


def test_api_vectorized_and_dask():
    rng = np.random.default_rng(5)
    p = _daily(rng.gamma(0.5, 10, size=(4, 30)), extra_dims=True)
    init = xr.DataArray([0.0, 5.0, 10.0, 0.0], dims="cell")
    eager = rf.antecedent_precipitation_index(p, k=0.8, initial=init)
    assert eager.dims == ("cell", "time")
    expected = np.empty_like(p.values)
    prev = init.values * 1.0
    for t in range(30):
        prev = 0.8 * prev + p.values[:, t]
        expected[:, t] = prev
    np.testing.assert_allclose(eager.values, expected, rtol=1e-12)
    lazy = rf.antecedent_precipitation_index(p.chunk({"time": 10}), k=0.8, initial=init)
    np.testing.assert_allclose(lazy.values, eager.values, rtol=1e-12)


def test_rain_days_counts_consecutive_days():
    p = _daily([20, 0, 16, 30, 5, 40, np.nan, 17])
    assert rf.rain_days(p, 16).values.tolist() == [1, 0, 1, 2, 0, 1, 0, 1]
    assert rf.rain_days(p, 16, initial=3).values.tolist() == [4, 0, 1, 2, 0, 1, 0, 1]
    assert rf.rain_days(p, 1).values.tolist() == [1, 0, 1, 2, 3, 4, 0, 1]
    thr = rf.rainfall_parameters().rain_day_threshold_mm
    assert rf.rain_days(p).attrs["threshold_mm"] == thr
    grid = _daily([[20, 20, 20], [0, 20, 20]], extra_dims=True)
    out = rf.rain_days(grid.chunk({"cell": 1}), 10)
    assert out.dtype == np.int16 and out.values.tolist() == [[1, 2, 3], [0, 1, 2]]


def test_daily_indices_refuse_non_daily_series():
    hourly = xr.DataArray(np.ones(5), dims="time",
                          coords={"time": pd.date_range("2024-09-01", periods=5, freq="h")})
    for fn in (rf.antecedent_rainfall_index, rf.antecedent_precipitation_index, rf.rain_days):
        with pytest.raises(rf.RainfallInputError, match="one day apart"):
            fn(hourly)


def test_rainfall_table_recalibration_and_errors(tmp_path):
    copy = tmp_path / "rainfall.toml"
    shutil.copy(TABLES_DIR / "rainfall.toml", copy)
    copy.write_text(copy.read_text(encoding="utf-8").replace("k = 0.9", "k = 0.85"), encoding="utf-8")
    assert rf.rainfall_parameters(copy).api_k == 0.85
    copy.write_text(copy.read_text(encoding="utf-8").replace("k = 0.85", "k = 1.5")
                    .replace('confidence = "secondary"', 'confidence = "sure"'), encoding="utf-8")
    with pytest.raises(TableError) as err:
        rf.rainfall_parameters(copy)
    text = str(err.value)
    assert str(copy.resolve()) in text
    assert "[antecedent_precipitation_index], field 'k'" in text
    assert "[hydromet_day], field 'confidence'" in text


def test_window_steps_keeps_whole_multiples_of_the_step_once():
    # 3 h steps: 1 h is shorter than a step, 4.5 h not a whole multiple; 6 h twice is kept once
    windows, skipped = rf.window_steps([1, 3, 4.5, 6, 6.0, 24], 3.0)
    assert windows == [(3.0, 1), (6.0, 2), (24.0, 8)]
    assert skipped == [1.0, 4.5]
