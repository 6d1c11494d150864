"""Pure functions: the units table, de-accumulation plans, grid ordering, hourly spreading."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ewarn.config import ForecastSettings, load_settings
from ewarn.forecasts import ForecastError, resolve_profile
from ewarn.forecasts.accumulation import (
    deaccumulate,
    plan_intervals,
    resample_intervals,
    window_starts,
)
from ewarn.forecasts.antecedent import hourly_from_intervals
from ewarn.forecasts.grid import cell_edges, covers, select_region
from ewarn.forecasts.units import conversion


@pytest.mark.parametrize(("units", "kind", "factor"), [
    ("mm", "amount", 1.0),
    ("m", "amount", 1000.0),
    ("kg m-2", "amount", 1.0),
    ("kg m**-2", "amount", 1.0),
    ("kg m^-2", "amount", 1.0),
    ("kg/m2", "amount", 1.0),
    ("Kg M-2", "amount", 1.0),
    ("kg m-2 s-1", "rate", 1.0),
    ("kg m**-2 s**-1", "rate", 1.0),
    ("kg.m-2.s-1", "rate", 1.0),
    ("mm/h", "rate", 1 / 3600),
    ("mm h-1", "rate", 1 / 3600),
    ("mm/day", "rate", 1 / 86400),
    ("mm d-1", "rate", 1 / 86400),
    ("m s-1", "rate", 1000.0),
    ("m/s", "rate", 1000.0),
])
def test_units_table(units, kind, factor):
    conv = conversion(units, variable="tp")
    assert conv.kind == kind
    assert conv.factor == pytest.approx(factor)


@pytest.mark.parametrize("units", ["inches", "mm/6h", "K", "1", "kg m-3"])
def test_unknown_units_are_errors_naming_the_variable(units):
    with pytest.raises(ForecastError) as err:
        conversion(units, variable="tp", file="f.grib")
    assert "f.grib" in str(err.value) and "'tp'" in str(err.value) and repr(units) in str(err.value)


@pytest.mark.parametrize("units", [None, "", "  "])
def test_missing_units_are_errors(units):
    with pytest.raises(ForecastError, match="no units attribute"):
        conversion(units, variable="pr", file="x.nc")


def test_since_start_plan_subtracts_the_previous_total():
    end = np.array([0.0, 1.0, 3.0, 6.0])
    start = window_starts(end, "since-start")
    plan = plan_intervals(end, start)
    assert plan.index.tolist() == [1, 2, 3]
    assert plan.previous.tolist() == [-1, 1, 2]
    assert plan.step_hours.tolist() == [1.0, 2.0, 3.0]


def test_gfs_bucket_plan_from_bucket_hours():
    end = np.array([3.0, 6.0, 9.0, 12.0, 15.0])
    start = window_starts(end, "bucket", bucket_hours=6)
    assert start.tolist() == [0, 0, 6, 6, 12]
    plan = plan_intervals(end, start)
    assert plan.previous.tolist() == [-1, 0, -1, 2, -1]
    da = xr.DataArray([[1.0], [3.0], [2.0], [7.0], [4.0]], dims=("time", "x"))
    np.testing.assert_allclose(deaccumulate(da, plan).values[:, 0], [1, 2, 2, 5, 4])


def test_bucket_without_window_information_asks_for_bucket_hours():
    with pytest.raises(ForecastError, match="bucket_hours"):
        window_starts(np.array([3.0, 6.0]), "bucket", variable="tp")


def test_missing_value_to_subtract_is_an_error():
    # 0–3 and 0–9 h buckets: the 0–6 h value needed for 6–9 h is missing
    with pytest.raises(ForecastError, match="no value from \\+0 h to \\+6 h"):
        plan_intervals(np.array([3.0, 6.0, 9.0]), np.array([0.0, 3.0, 0.0]), accumulation="bucket")


def test_gap_between_windows_is_an_error():
    with pytest.raises(ForecastError, match="between \\+6 h and \\+12 h"):
        plan_intervals(np.array([6.0, 18.0]), np.array([0.0, 12.0]))


def test_interval_first_step_from_the_second():
    assert window_starts(np.array([3.0, 6.0, 9.0]), "interval").tolist() == [0.0, 3.0, 6.0]
    assert window_starts(np.array([7.0, 8.0]), "interval").tolist() == [6.0, 7.0]
    assert window_starts(np.array([7.0, 8.0]), "interval", first_step_h=3).tolist() == [4.0, 7.0]


def test_resample_requires_whole_windows():
    da = xr.DataArray(np.arange(1.0, 5.0), dims="time")
    out, _start, e = resample_intervals(da, np.array([0.0, 1, 2, 3]), np.array([1.0, 2, 3, 4]), 2)
    assert out.values.tolist() == [3.0, 7.0] and e.tolist() == [2.0, 4.0]
    with pytest.raises(ForecastError, match="resample_hours"):
        resample_intervals(da, np.array([0.0, 3, 6, 9]), np.array([3.0, 6, 9, 12]), 2)


def test_region_cut_keeps_cells_touching_the_margin_and_orders_axes():
    lat = np.arange(30.0, 10.0, -1.0)  # north to south
    lon = np.arange(0.0, 360.0, 1.0)
    da = xr.DataArray(np.zeros((lat.size, lon.size)), dims=("latitude", "longitude"),
                      coords={"latitude": lat, "longitude": lon})
    out = select_region(da, (104.3, 22.0, 104.7, 22.4), 0.5)
    assert out["latitude"].values.tolist() == [21.0, 22.0, 23.0]
    assert out["longitude"].values.tolist() == [104.0, 105.0]  # 103 (102.5..103.5) misses 103.8
    with pytest.raises(ForecastError, match="does not cover the region"):
        select_region(da, (104.3, 42.0, 104.7, 42.4), 0.5, file="g.nc", variable="tp")


def test_coverage_uses_cell_extents():
    lat, lon = np.arange(21.0, 24.0), np.arange(103.0, 106.0)
    assert cell_edges(lat)[0][0] == 20.5
    assert covers(lat, lon, (103.0, 21.0, 105.4, 23.4))
    assert not covers(lat, lon, (103.0, 21.0, 105.6, 23.4))


def test_hourly_from_intervals_spreads_uniformly():
    amounts = np.array([[3.0], [6.0]])  # 0–3 h: 3 mm, 3–6 h: 6 mm
    hourly, covered = hourly_from_intervals(amounts, np.array([0.0, 3.0]), np.array([3.0, 6.0]),
                                            np.arange(-1.0, 8.0))
    np.testing.assert_allclose(hourly[:, 0], [0, 1, 1, 1, 2, 2, 2, 0])
    assert covered.tolist() == [False, True, True, True, True, True, True, False]


def test_builtin_profiles_and_partial_override():
    s = ForecastSettings()
    assert set(s.sources) >= {"ecmwf-ifs", "ecmwf-ens", "gfs", "cf-netcdf", "wrf", "demo"}
    assert resolve_profile("gfs", s).bucket_hours == 6
    over = load_settings(None, {"EWARN_FORECASTS__SOURCES__GFS__BUCKET_HOURS": "3"}).forecasts
    gfs = resolve_profile("gfs", over)
    assert gfs.bucket_hours == 3 and gfs.kind == "grib" and gfs.accumulation == "bucket"
    assert gfs.name == "gfs"
