"""Landslide model: LHASA v1, ID and daily thresholds, infinite slope + SHALSTAB, index, commune share."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse

from ewarn.hazard_models import landslide as L  # noqa: N812
from ewarn.hazard_models import rainfall
from ewarn.hazard_models.tables import TableError
from ewarn.hazard_models.terrain import derive_terrain


@pytest.fixture(scope="module")
def params():
    return L.landslide_parameters()


def _hourly(values: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    t = pd.date_range("2024-09-08T01:00", periods=values.shape[0], freq="h")
    return xr.DataArray(values.astype(np.float32), dims=("time", "latitude", "longitude"),
                        coords={"time": t, "latitude": lat, "longitude": lon},
                        attrs={"units": "mm", "step_hours": 1.0})


# --------------------------------------------------------------------------- table


def test_shipped_table_reads_and_bad_table_names_the_field(tmp_path, params):
    assert params.id_use == "caine1980"
    assert params.daily["ha_giang"].antecedent_days == 3
    text = L.LANDSLIDE_TABLE.read_text(encoding="utf-8").replace('use = "caine1980"', 'use = "nowhere"')
    text = text.replace("friction_angle_deg = 30.0", "friction_angle_deg = 95.0")
    bad = tmp_path / "landslide.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(TableError) as err:
        L.landslide_parameters(bad)
    fields = {p.field for p in err.value.problems}
    assert {"use", "friction_angle_deg"} <= fields


# --------------------------------------------------------------------------- (b) thresholds


def test_intensity_duration_thresholds_at_known_points(params):
    # Caine 1980: I = 14.82 D^-0.39, 0.167-500 h
    assert L.id_threshold_intensity(1.0, "caine1980", params=params) == pytest.approx(14.82)
    assert L.id_threshold_intensity(24.0, "caine1980", params=params) == pytest.approx(4.29107, rel=1e-5)
    # Guzzetti et al. 2008 global minimum: I = 2.20 D^-0.44, 0.1-1000 h
    assert L.id_threshold_intensity(10.0, "guzzetti2008_global", params=params) == pytest.approx(0.79873,
                                                                                                   rel=1e-4)
    out = L.id_threshold_intensity([0.1, 600.0], "caine1980", params=params)
    assert np.isnan(out).all()  # outside 0.167-500 h
    assert np.isfinite(L.id_threshold_intensity([0.1, 600.0], "guzzetti2008_global", params=params)).all()
    with pytest.raises(L.LandslideInputError, match="no intensity-duration threshold"):
        L.id_threshold_intensity(1.0, "nope", params=params)


def test_id_exceedance_ratios_from_accumulations(params):
    lat, lon = np.array([22.0, 22.001]), np.array([104.0, 104.001])
    p = np.zeros((24, 2, 2))
    p[:, 0, 0] = 10.0  # 10 mm/h for 24 h
    p[-1, 1, 1] = 20.0  # one 20 mm hour
    acc = rainfall.accumulations(_hourly(p, lat, lon), windows_h=(1, 24))
    r = L.id_exceedance(acc, params=params)
    end = r.isel(time=-1)
    assert float(end["ratio_1h"][0, 0]) == pytest.approx(10.0 / 14.82, rel=1e-5)
    assert float(end["ratio_24h"][0, 0]) == pytest.approx(240.0 / (24 * 14.82 * 24 ** -0.39), rel=1e-5)
    assert float(end["ratio_max"][0, 0]) == pytest.approx(10.0 / 4.29107, rel=1e-5)  # the 24 h window exceeds
    assert float(end["ratio_max"][1, 1]) == pytest.approx(20.0 / 14.82, rel=1e-5)  # the 1 h window
    assert float(end["ratio_max"][0, 1]) == 0.0


def test_vietnam_daily_thresholds(params):
    # Hà Giang: 40.8 - 0.201 x (3-day antecedent)
    assert L.daily_threshold_mm(0.0, "ha_giang", params=params) == pytest.approx(40.8)
    assert L.daily_threshold_mm(100.0, "ha_giang", params=params) == pytest.approx(20.7)
    assert L.daily_threshold_mm(500.0, "ha_giang", params=params) == pytest.approx(10.0)  # floor
    # Mai Châu: 128.41 - 0.076 x (10-day antecedent)
    assert L.daily_threshold_mm(100.0, "mai_chau", params=params) == pytest.approx(120.81)
    t = pd.date_range("2024-09-05T12:00", periods=5, freq="D")
    daily = xr.DataArray([10.0, 30.0, 60.0, 41.4, 5.0], dims="time", coords={"time": t})
    ratio = L.daily_exceedance(daily, "ha_giang", params=params)
    assert np.isnan(ratio.values[:3]).all()  # no full 3-day antecedent record
    assert ratio.values[3] == pytest.approx(41.4 / 20.7)  # antecedent 10 + 30 + 60 = 100 mm
    assert ratio.values[4] == pytest.approx(5.0 / (40.8 - 0.201 * 131.4))
    dry = L.daily_exceedance(daily, "ha_giang", assume_dry_before=True, params=params)
    assert dry.values[0] == pytest.approx(10.0 / 40.8)
    assert dry.values[2] == pytest.approx(60.0 / (40.8 - 0.201 * 40.0))


# --------------------------------------------------------------------------- (c) infinite slope


def _slope_params(params, **kw):
    base = dict(cohesion_kpa=10.0, friction_angle_deg=30.0, soil_depth_m=2.0, gamma_kn_m3=17.0,
                gamma_sat_kn_m3=20.0, gamma_w_kn_m3=9.81, ks_m_s=1e-5)
    base.update(kw)
    return replace(params, slope=replace(params.slope, **base))


def test_factor_of_safety_hand_computed_dry_and_saturated(params):
    p = _slope_params(params)
    # dry, 35 deg: 10 / (17 * 2 * sin35 cos35) + tan30 / tan35 = 0.62599 + 0.82454
    assert L.factor_of_safety(35.0, 0.0, params=p) == pytest.approx(1.45049, rel=1e-4)
    # saturated (m = 1, column at gamma_sat = 20): 10 / (40 sin35 cos35) + (1 - 9.81/20) tan30/tan35
    assert L.factor_of_safety(35.0, 1.0, params=p) == pytest.approx(0.53209 + 0.42010, rel=1e-4)
    # with gamma_sat = gamma the formula is SCIENCE.md's: c'/(g z sin cos) + (1 - m gw/g) tan/tan
    same = _slope_params(params, gamma_sat_kn_m3=17.0)
    expected = 10 / (34 * math.sin(math.radians(35)) * math.cos(math.radians(35))) + (
        1 - 0.5 * 9.81 / 17) * math.tan(math.radians(30)) / math.tan(math.radians(35))
    assert L.factor_of_safety(35.0, 0.5, params=same) == pytest.approx(expected, rel=1e-9)
    # flat: infinitely safe; classes at the limits
    assert np.isinf(L.factor_of_safety(np.array([0.0]), 1.0, params=p)).all()
    np.testing.assert_array_equal(L.fs_class(np.array([0.95, 1.0, 1.29, 1.3, np.inf]), params=p),
                                  [3, 2, 2, 0, 0])


def test_shalstab_saturated_fraction_hand_computed_and_capped(params):
    p = _slope_params(params)
    # T = Ks z cos30 = 1.7321e-5 m2/s; m = q a / (b T sin30)
    m = L.saturated_fraction(1e-8, 1000.0, 10.0, 30.0, params=p)
    assert m == pytest.approx(1e-5 / (10 * 1.7320508e-5 * 0.5), rel=1e-6)  # 0.11547
    assert L.saturated_fraction(1e-6, 1000.0, 10.0, 30.0, params=p) == 1.0  # 11.5 -> capped at 1
    flat = L.saturated_fraction(np.array([1e-9, 0.0]), 1000.0, 10.0, 0.0, params=p)
    np.testing.assert_array_equal(flat, [1.0, 0.0])
    assert np.isnan(L.saturated_fraction(np.nan, 1000.0, 10.0, 30.0, params=p))


# --------------------------------------------------------------------------- (a) LHASA, index


def test_lhasa_classes_hand_example(params):
    ari = np.array([5.0, 25.0, 25.0, 25.0, 25.0, 25.0])
    sus = np.array([5, 2, 3, 4, 5, 0])
    np.testing.assert_array_equal(L.lhasa_class(ari, sus, 20.0, params=params), [0, 0, 2, 2, 3, 0])
    # the table's default threshold (20 mm/day) when none is given
    np.testing.assert_array_equal(L.lhasa_class(ari, sus, params=params), [0, 0, 2, 2, 3, 0])
    # per-cell 95th percentile of a climatology: cell 0 has a wet climate, cell 1 a dry one
    t = pd.date_range("2000-01-01", periods=101, freq="D")
    clim = xr.DataArray(np.stack([np.linspace(0, 100, 101), np.linspace(0, 10, 101)], axis=1),
                        dims=("time", "cell"), coords={"time": t})
    thr = L.ari_threshold(clim, params=params)
    np.testing.assert_allclose(thr.values, [95.0, 9.5])
    now = xr.DataArray([50.0, 12.0], dims="cell")
    np.testing.assert_array_equal(L.lhasa_class(now, xr.DataArray([5, 5], dims="cell"), thr,
                                                params=params).values, [0, 3])


def test_landslide_index_combination_rule(params):
    sus = np.array([1, 2, 3, 5, 5, 4, 0, 3, 2])
    ratio = np.array([5.0, 1.0, 1.2, 0.5, 0.5, 0.5, 9.0, 1.5, 1.0])
    fs = np.array([0.5, 2.0, 2.0, 0.9, 1.2, 0.9, 0.5, 0.8, 0.8])
    fs_dry = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 0.9, 2.0, 1.5, 2.0])
    idx = L.landslide_index(sus, rain_ratio=ratio, fs=fs, fs_dry=fs_dry, params=params)
    # slope mask (class 1) and unknown (0) never; threshold on sus 2 -> low, sus 3 -> moderate;
    # a rain-made FS < 1 or marginal FS without a rain trigger -> only low; unstable even when dry ->
    # not a rain warning; a rain-made FS < 1 raises a triggered cell by one class (2 -> 3, 1 -> 2)
    np.testing.assert_array_equal(idx, [0, 1, 2, 1, 1, 0, 0, 3, 2])
    np.testing.assert_array_equal(L.landslide_index(sus, fs=fs, fs_dry=fs_dry, params=params),
                                  [0, 0, 0, 1, 1, 0, 0, 1, 1])
    wet = np.array([True] * 9)
    np.testing.assert_array_equal(L.landslide_index(sus, wet=wet, params=params), [0, 1, 2, 3, 3, 2, 0, 2, 1])
    np.testing.assert_array_equal(L.triggered(idx, params=params), idx >= 2)
    with pytest.raises(L.LandslideInputError, match="at least one trigger"):
        L.landslide_index(sus, params=params)


# --------------------------------------------------------------------------- per commune


def test_commune_share_with_sparse_weights():
    # 2 x 3 grid (6 cells, C order); commune A = cells 0-2 (cell 2 half), commune B = cells 2-5
    area = 100.0
    rows = [0, 0, 0, 1, 1, 1, 1]
    cols = [0, 1, 2, 2, 3, 4, 5]
    frac = [1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0]
    W = sparse.csr_array((np.array(frac) * area, (rows, cols)), shape=(3, 6))  # commune C covers nothing
    sus = np.array([[True, True, True], [False, False, False]])
    trig = np.array([[True, False, True], [True, True, True]])
    share = L.commune_share(W, sus, trig)
    # A: susceptible 1 + 1 + 0.5 = 2.5, triggered & susceptible 1 + 0.5 -> 0.6
    # B: susceptible only cell 2 (0.5), triggered -> 1.0; C: no susceptible area -> 0
    np.testing.assert_allclose(share, [0.6, 1.0, 0.0])
    # leading time dim, xarray in and out, commune codes attached
    t = pd.date_range("2024-09-09", periods=2, freq="h")
    da = xr.DataArray(np.stack([trig, np.zeros_like(trig)]), dims=("time", "latitude", "longitude"),
                      coords={"time": t})
    out = L.commune_share(W, sus, da, communes=["02998", "03001", "03004"])
    assert out.dims == ("time", "commune")
    np.testing.assert_allclose(out.values, [[0.6, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert list(out["commune"].values) == ["02998", "03001", "03004"]
    with pytest.raises(L.LandslideInputError, match="cells"):
        L.commune_share(W, sus, np.ones((4, 4), dtype=bool))


# --------------------------------------------------------------------------- whole chain


def _tiny_terrain() -> xr.Dataset:
    lat = 22.0 + 0.0008 * np.arange(6)
    lon = 104.0 + 0.0008 * np.arange(5)
    col = np.arange(5)[None, :]
    row = np.arange(6)[:, None]
    z = 200.0 + 60.0 * np.abs(col - 2) + 15.0 * (5 - row) + 3.0 * np.sin(row * col)
    return derive_terrain(xr.Dataset({"elevation": (("latitude", "longitude"), z)},
                                     coords={"latitude": lat, "longitude": lon}))


@pytest.fixture(scope="module")
def tiny():
    return _tiny_terrain()


def test_landslide_hazard_no_rain_no_hazard_heavy_rain_triggers(tiny, params):
    lat, lon = tiny["latitude"].values, tiny["longitude"].values
    dry = rainfall.accumulations(_hourly(np.zeros((24, 6, 5)), lat, lon), windows_h=(1, 3, 24))
    out = L.landslide_hazard(tiny, dry, params=params)
    assert int(out["index"].max()) == 0 and not bool(out["triggered"].any())
    wet = rainfall.accumulations(_hourly(np.full((24, 6, 5), 8.0), lat, lon), windows_h=(1, 3, 24))
    out = L.landslide_hazard(tiny, wet, params=params)
    assert all(v.dims == ("time", "latitude", "longitude") for v in out.data_vars.values())
    last = out.isel(time=-1)
    sus = tiny["susceptibility"].values
    assert bool(last["triggered"].values[sus >= 3].all())  # 192 mm in 24 h on steep cells
    # the first hour (8 mm, below Caine's 14.82 mm/h) triggers nothing, whatever SHALSTAB says
    assert not bool(out["triggered"].isel(time=0).any())
    assert not bool(last["triggered"].values[sus <= 1].any())
    assert float(last["saturated_fraction"].max()) == 1.0
    # LHASA wet from a daily ARI (each hour takes the day containing it)
    ari = xr.DataArray(np.full((1, 6, 5), 30.0), dims=("time", "latitude", "longitude"),
                       coords={"time": [np.datetime64("2024-09-09T00:00")], "latitude": lat,
                               "longitude": lon})
    out = L.landslide_hazard(tiny, dry, ari=ari, params=params)
    assert bool(out["wet"].all())
    np.testing.assert_array_equal(out["index"].isel(time=0).values,
                                  L.landslide_index(sus, wet=np.ones_like(sus, bool), params=params))


def test_landslide_hazard_refuses_rain_on_another_grid(tiny, params):
    lat, lon = np.array([21.0, 21.1]), np.array([104.0, 104.1])
    acc = rainfall.accumulations(_hourly(np.zeros((24, 2, 2)), lat, lon), windows_h=(1, 24))
    with pytest.raises(L.LandslideInputError, match="interp_like"):
        L.landslide_hazard(tiny, acc, params=params)
    acc = rainfall.accumulations(_hourly(np.zeros((6, 6, 5)), tiny["latitude"].values,
                                         tiny["longitude"].values), windows_h=(1, 3))
    with pytest.raises(L.LandslideInputError, match="24 h window"):
        L.landslide_hazard(tiny, acc, params=params)


rain_fields = hnp.arrays(np.float64, (12, 6, 5), elements=st.floats(0.0, 40.0, width=32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=rain_fields, extra=rain_fields, ari=st.floats(0.0, 60.0), more_ari=st.floats(0.0, 30.0))
def test_more_rain_never_lowers_the_landslide_index(tiny, params, base, extra, ari, more_ari):
    lat, lon = tiny["latitude"].values, tiny["longitude"].values

    def index(p: np.ndarray, a: float) -> np.ndarray:
        acc = rainfall.accumulations(_hourly(p, lat, lon), windows_h=(1, 3, 6, 12, 24))
        ari_da = xr.DataArray(np.full((6, 5), a), dims=("latitude", "longitude"),
                              coords={"latitude": lat, "longitude": lon})
        return L.landslide_hazard(tiny, acc, ari=ari_da, params=params)["index"].values

    low = index(base, ari)
    high = index(base + extra, ari + more_ari)
    assert np.all(high >= low)
