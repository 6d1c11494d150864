"""Per-commune risk assessment (ewarn.hazard_models.assess): known answers on a tiny grid, the demo
storm over Phúc Khánh, the real Lào Cai communes, numpy vs dask, NetCDF and the database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import box

from ewarn.hazard_models import assess as A  # noqa: N812
from ewarn.hazard_models.levels import LEVEL_DISCLAIMER, flash_flood_landslide_level, heavy_rain_level
from ewarn.hazard_models.rainfall import accumulations
from ewarn.hazard_models.zonal import CommuneGrid
from ewarn.region import Region
from ewarn.store import Store

REF = np.datetime64("2024-09-08T00:00", "ns")
STEPS = 48
# 4 x 4 grid of 0.1° cells, latitude 22.0..22.4, longitude 104.0..104.4 (centres below)
LAT = np.round(22.05 + 0.1 * np.arange(4), 6)
LON = np.round(104.05 + 0.1 * np.arange(4), 6)


def tiny_region(tmp_path: Path, legacy=("Lào Cai", "Lào Cai", "Yên Bái")) -> Region:
    """Three communes aligned with the cells: A = longitude columns 0-1, B = column 2, C = column 3."""
    communes = gpd.GeoDataFrame(
        {"code": ["00001", "00002", "00003"], "name": ["Xã A", "Xã B", "Xã C"],
         "province": ["Lào Cai"] * 3, "population": [100, 200, 300], "legacy_province": list(legacy)},
        geometry=[box(104.0, 22.0, 104.2, 22.4), box(104.2, 22.0, 104.3, 22.4),
                  box(104.3, 22.0, 104.4, 22.4)],
        crs="EPSG:4326")
    empty = pd.DataFrame()
    return Region(folder=tmp_path, name="tiny", communes=communes, households=empty, shelters=empty,
                  contacts=empty, files={}, meta={})


def forecast(field: np.ndarray, members: bool = False) -> xr.Dataset:
    """Forecast contract around a (member?, time, lat, lon) array [mm/h]."""
    times = REF + np.arange(1, field.shape[-3] + 1) * np.timedelta64(1, "h")
    dims = (("member",) if members else ()) + ("time", "latitude", "longitude")
    coords = {"time": times, "latitude": LAT, "longitude": LON}
    if members:
        coords["member"] = np.arange(field.shape[0])
    da = xr.DataArray(field.astype(np.float32), dims=dims, coords=coords,
                      attrs={"units": "mm", "standard_name": "lwe_thickness_of_precipitation_amount"})
    return xr.Dataset({"precipitation": da}, attrs={
        "forecast_reference_time": "2024-09-08T00:00:00Z", "source": "test", "step_hours": 1.0})


def storm_field(rate_a=10.0, rate_b=5.0, rate_c=1.0, start=6, hours=12) -> np.ndarray:
    """Uniform rain per commune during ``hours`` hours after ``start`` hours."""
    f = np.zeros((STEPS, 4, 4))
    f[start:start + hours, :, 0:2] = rate_a
    f[start:start + hours, :, 2] = rate_b
    f[start:start + hours, :, 3] = rate_c
    return f


# --------------------------------------------------------------------------- known answers


def test_zonal_first_windows_equal_full_grid_windows_then_mean(tmp_path):
    rng = np.random.default_rng(1)
    field = rng.gamma(0.6, 6.0, size=(STEPS, 4, 4))
    fc = forecast(field)
    ds = A.assess(fc, tiny_region(tmp_path), options=A.AssessOptions(cell_indices=False))
    grid = CommuneGrid.build(LAT, LON, tiny_region(tmp_path).communes)
    acc = accumulations(fc["precipitation"], (1, 3, 6, 24))
    for w in (1, 3, 6, 24):
        ref = grid.mean(acc[f"rain_{w}h"]).transpose("time", "commune").values
        np.testing.assert_allclose(ds[f"rain_{w}h"].values, ref, rtol=2e-6, atol=1e-4)
        np.testing.assert_allclose(ds[f"rain_{w}h_max"].values, ref.max(axis=0), rtol=2e-6, atol=1e-4)
    # a cell-exact field: commune A is the mean of its two columns
    assert ds["rain_1h"].dims == ("time", "commune")
    assert list(ds["commune"].values) == ["00001", "00002", "00003"]


def test_levels_onset_and_peak_from_hand_computed_rain(tmp_path):
    # A: 10 mm/h for 12 h from hour 6 -> 24 h total 120 mm (>= 100 after the 10th hour, t = 6 + 10 h)
    # B: 5 mm/h -> 60 mm; C: 1 mm/h -> 12 mm
    ds = A.assess(forecast(storm_field()), tiny_region(tmp_path))
    times = ds["time"].values
    r24 = ds["rain_24h"].values
    np.testing.assert_allclose(r24.max(axis=0), [120, 60, 12], rtol=1e-6)
    np.testing.assert_allclose(ds["rain_12h"].values.max(axis=0), [120, 60, 12], rtol=1e-6)
    # Art. 46: KV1 (Lào Cai, Yên Bái), default zone "medium", dry before: 100-200 mm -> level 1
    assert ds["level_flash_landslide"].values.max(axis=0).tolist() == [1, 0, 0]
    assert int(flash_flood_landslide_level(120, 0, 1, "medium")) == 1
    # Art. 44: 12 h >= 100 mm -> its 12 h band; 60 mm in 12 h -> level 1 via the 12 h rule; 12 mm -> 0
    expect44 = [int(heavy_rain_level(120, 1, "mountain", 120)),
                int(heavy_rain_level(60, 0, "mountain", 60)), 0]
    assert ds["level_heavy_rain"].values.max(axis=0).tolist() == expect44
    assert expect44[1] == 1
    assert ds["level_max"].values.tolist() == [max(1, expect44[0]), 1, 0]
    # onset of A: the first time the combined level reaches 1. The 12 h total reaches 50 mm after 5 h of
    # rain (hour 6 + 5) -> Art. 44 level 1 then; B reaches 50 mm after 10 h.
    onset = ds["onset_time"].values
    assert onset[0] == REF + np.timedelta64(6 + 5, "h")
    assert onset[1] == REF + np.timedelta64(6 + 10, "h")
    assert np.isnat(onset[2])
    # the Art. 46 level of A starts when the 24 h total reaches 100 mm: after the 10th hour of rain
    l46 = ds["level_flash_landslide"].values[:, 0]
    assert times[np.argmax(l46 >= 1)] == REF + np.timedelta64(6 + 10, "h")
    # peak of the 1 h rain: the first hour of rain (uniform rate, first maximum)
    assert ds["peak_time"].values[0] == REF + np.timedelta64(7, "h")
    # days already rained before each 24 h window: A's window ending 24 h earlier holds >= 16 mm (the
    # rain-day threshold) from 2 h of rain on, i.e. from t = 6 + 2 + 24 h; dry ground before the forecast
    rd = ds["rain_days"].values[:, 0]
    assert rd.max() == 1
    assert times[np.argmax(rd >= 1)] == REF + np.timedelta64(6 + 2 + 24, "h")
    assert "dry" in ds.attrs["antecedent"]


def test_antecedent_rain_days_raise_article46(tmp_path):
    # 250 mm in 24 h in KV1 medium: 200-400 mm -> level 2 whatever the days; 150 mm: level 1 when dry,
    # level 2 after > 2 rain days (the table's row 2 fills 100-200 mm after > 2 days)
    field = storm_field(rate_a=150 / 12, rate_b=150 / 12, rate_c=0.0)
    reg = tiny_region(tmp_path)
    dry = A.assess(forecast(field), reg)
    days = REF - np.arange(5)[::-1] * np.timedelta64(24, "h")
    ante = xr.DataArray(np.full((5, 4, 4), 30.0), dims=("time", "latitude", "longitude"),
                        coords={"time": days, "latitude": LAT, "longitude": LON})
    wet = A.assess(forecast(field), reg, ante)
    assert dry["level_flash_landslide_max"].values[:2].tolist() == [1, 1]
    assert int(flash_flood_landslide_level(150, 5, 1, "medium")) == 2
    assert wet["level_flash_landslide_max"].values[:2].tolist() == [2, 2]
    rd = wet["rain_days"].values
    assert rd[0].tolist() == [5, 5, 5]  # the 5 wet antecedent days continue into the forecast
    assert rd.max() == 6  # ... plus the forecast's own wet 24 h window
    np.testing.assert_allclose(wet["antecedent_rain"].values, 150.0, rtol=1e-6)
    # wetter ground lowers the flash-flood guidance: the FFG ratio rises
    assert np.all(wet["ffg_ratio_max"].values[:2] > dry["ffg_ratio_max"].values[:2])
    with pytest.raises(A.AssessInputError, match="BEFORE the forecast"):
        A.assess(forecast(field), reg, ante.assign_coords(time=days + np.timedelta64(48, "h")))


def test_max_statistic_takes_the_wettest_cell(tmp_path):
    f = np.zeros((STEPS, 4, 4))
    f[6:18, :, 0] = 12.0  # commune A: one column 12 mm/h, the other dry -> mean 6, max 12
    mean = A.assess(forecast(f), tiny_region(tmp_path))
    mx = A.assess(forecast(f), tiny_region(tmp_path), options=A.AssessOptions(rain_statistic="max"))
    assert mean["rain_24h_max"].values[0] == pytest.approx(72.0, rel=1e-5)
    assert mx["rain_24h_max"].values[0] == pytest.approx(144.0, rel=1e-6)
    assert mean["level_flash_landslide_max"].values[0] == 0
    assert mx["level_flash_landslide_max"].values[0] == 1
    # the FFG ratio is a max over cells whatever the statistic
    assert mean["ffg_ratio_max"].values[0] == pytest.approx(mx["ffg_ratio_max"].values[0])


def test_probabilities_from_members(tmp_path):
    base = storm_field(rate_a=150 / 12, rate_b=0.0, rate_c=0.0)
    # 24 h totals of A per member: 75, 150, 300, 450 mm -> Art. 46 KV1 medium: 0, 1, 2, 3
    factors = np.array([0.5, 1.0, 2.0, 3.0])
    fc = forecast(factors[:, None, None, None] * base[None], members=True)
    ds = A.assess(fc, tiny_region(tmp_path), options=A.AssessOptions(cell_indices=True))
    assert "member" not in ds.dims
    p = [float(ds[f"probability_level_max_ge{k}"].values[0]) for k in range(1, 6)]
    lv = np.array([max(int(flash_flood_landslide_level(r, 0, 1, 2)),
                       int(heavy_rain_level(r, 1, "mountain", r))) for r in 150 * factors])
    assert p == [float((lv >= k).mean()) for k in range(1, 6)]
    assert p[:4] == [1.0, 0.5, 0.25, 0.0]  # 75 mm in 12 h: Art. 44 level 1 by the 12 h rule
    assert ds["probability_level_ge1"].values[:, 0].max() == pytest.approx(1.0)
    assert ds["probability_level_ge3"].values[:, 0].max() == pytest.approx(0.25)
    # level fields of the ensemble median: median of (75, 150, 300, 450) = 225 mm
    assert ds["rain_24h_max"].values[0] == pytest.approx(225.0, rel=1e-5)
    assert ds["probability_threat"].values.max() <= 1.0
    assert A.summarize(ds).set_index("code").loc["00001", "probability_level_ge2"] == 0.5
    assert ds.attrs["members"] == 4


def test_region_group_warning_for_ambiguous_legacy_province(tmp_path):
    reg = tiny_region(tmp_path, legacy=("Lào Cai;Yên Bái", "Hà Giang;Tuyên Quang", "Lào Cai"))
    ds = A.assess(forecast(storm_field()), reg)
    assert ds["region_group"].values.tolist() == [1, 1, 1]
    assert "Tuyên Quang" in ds.attrs["warnings"]


def test_bad_input_is_refused_with_a_clear_error(tmp_path):
    fc = forecast(storm_field())
    with pytest.raises(A.AssessInputError, match="dims"):
        A.assess(fc.rename({"latitude": "y"}), tiny_region(tmp_path))
    with pytest.raises(A.AssessInputError, match="default_zone_class"):
        A.AssessOptions(default_zone_class="extreme")
    with pytest.raises(A.AssessInputError, match="rain_statistic"):
        A.AssessOptions(rain_statistic="median")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- outputs


def test_netcdf_round_trip_is_cf_timeseries(tmp_path):
    ds = A.assess(forecast(storm_field()), tiny_region(tmp_path))
    path = A.write_assessment(ds, tmp_path / "out" / "assessment.nc")
    assert sorted(p.name for p in path.parent.iterdir()) == ["assessment.nc"]  # no temp file left
    with xr.open_dataset(path) as back:
        assert back.attrs["Conventions"] == "CF-1.8"
        assert back.attrs["featureType"] == "timeSeries"
        assert back["commune"].attrs["cf_role"] == "timeseries_id"
        assert back.attrs["disclaimer_vi"] == LEVEL_DISCLAIMER["vi"]
        assert back.attrs["forecast_reference_time"] == "2024-09-08T00:00:00Z"
        assert list(back["commune"].values) == ["00001", "00002", "00003"]
        assert back["commune_name"].values.tolist() == ["Xã A", "Xã B", "Xã C"]
        np.testing.assert_array_equal(back["level"].values, ds["level"].values)
        np.testing.assert_array_equal(back["onset_time"].values, ds["onset_time"].values)
        np.testing.assert_allclose(back["rain_24h"].values, ds["rain_24h"].values)
        pd.testing.assert_frame_equal(A.summarize(back), A.summarize(ds))


def test_summarize_sorts_by_level_then_onset(tmp_path):
    # A wettest (earliest onset), B reaches level 1 later, C none
    ds = A.assess(forecast(storm_field(rate_a=10, rate_b=20, rate_c=0.5)), tiny_region(tmp_path))
    df = A.summarize(ds)
    assert list(df.columns) == A._SUMMARY_COLUMNS
    assert df["level_max"].is_monotonic_decreasing
    assert df["code"].tolist()[-1] == "00003" and pd.isna(df["onset_time"].iloc[-1])
    top = df[df["level_max"] == df["level_max"].iloc[0]]
    assert top["onset_time"].is_monotonic_increasing
    assert str(df["onset_time"].dt.tz) == "UTC"
    assert np.isnan(df["probability_level_ge2"]).all()


def test_record_assessment_is_idempotent(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'ws.db'}")
    ds = A.assess(forecast(storm_field()), tiny_region(tmp_path))
    cycle = dt.datetime(2024, 9, 8, tzinfo=dt.UTC)
    assert A.record_assessment(store, "test", cycle, ds, tmp_path / "a.nc") == 3
    first = A.latest_assessment(store, "test")
    assert A.record_assessment(store, "test", cycle, ds, tmp_path / "a.nc") == 3
    again = A.latest_assessment(store, "test")
    assert len(again) == 3
    pd.testing.assert_frame_equal(first, again)
    with store.engine.connect() as conn:
        n = conn.execute(A.assessments_table.select()).all()
    assert len(n) == 3
    # a later cycle becomes the latest; the earlier stays stored
    A.record_assessment(store, "test", cycle + dt.timedelta(hours=6), ds, tmp_path / "b.nc")
    latest = A.latest_assessment(store)
    assert latest["cycle"].iloc[0] == pd.Timestamp(cycle + dt.timedelta(hours=6))
    assert latest["code"].tolist() == A.summarize(ds)["code"].tolist()
    assert latest["onset_time"].iloc[0] == A.summarize(ds)["onset_time"].iloc[0]
    assert A.latest_assessment(store, "other").empty


def test_commune_ffg_ratio_equals_the_per_cell_threat_ratio_maximized(tmp_path):
    # the one-pass commune FFG ratio against its definition: flash_flood.threat_ratio on every cell
    # (windows, guidance from a per-cell antecedent rain), then the maximum over the commune's cells
    rng = np.random.default_rng(11)
    field = rng.gamma(0.5, 8.0, size=(2, STEPS, 4, 4)).astype(np.float32)
    field[1, 7, 0, 3] = np.nan                    # an unknown step in commune C
    precip = forecast(field, members=True)["precipitation"]
    ante5 = xr.DataArray(rng.uniform(0, 90, (4, 4)), dims=("latitude", "longitude"),
                         coords={"latitude": LAT, "longitude": LON})
    grid = CommuneGrid.build(LAT, LON, tiny_region(tmp_path).communes)
    want = np.asarray(grid.maximum(A._threat_cells(precip, ante5, 1.0)).values, dtype=np.float64)
    got = A._ffg_ratio(precip, ante5, grid, 1.0)
    assert got.shape == (2, STEPS, 3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got).any()
    dry = A._ffg_ratio(precip, xr.zeros_like(ante5), grid, 1.0)
    assert np.all(got[~np.isnan(got)] >= dry[~np.isnan(got)])  # wetter ground, lower guidance


def test_dask_backed_forecast_gives_identical_numbers(tmp_path):
    pytest.importorskip("dask")
    rng = np.random.default_rng(3)
    field = rng.gamma(0.5, 8.0, size=(3, STEPS, 4, 4))
    fc = forecast(field, members=True)
    reg = tiny_region(tmp_path)
    for opts in (A.AssessOptions(), A.AssessOptions(rain_statistic="max")):
        a = A.assess(fc, reg, options=opts)
        b = A.assess(fc.chunk({"member": 1, "time": 24}), reg, options=opts)
        for name in a.data_vars:
            np.testing.assert_array_equal(np.asarray(b[name].values), np.asarray(a[name].values),
                                          err_msg=name)


# --------------------------------------------------------------------------- the demo storm


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from ewarn.demo import build_demo_region, build_demo_storm

    root = tmp_path_factory.mktemp("demo")
    region = Region.load(build_demo_region(root / "region"))
    fc_path = build_demo_storm(region, root / "storm.nc")
    with xr.open_dataset(fc_path) as ds:
        fc = ds.load()
    return region, fc, root


def _storm_properties(ds: xr.Dataset, centre_code: str) -> None:
    df = A.summarize(ds).set_index("code")
    wettest = df.sort_values("rain_24h_max", ascending=False).index[:3]
    assert centre_code in wettest
    for code in wettest:
        row = df.loc[code]
        assert row["level_flash_landslide_max"] >= 2, code
        # onset hours before the peak of the hourly rain
        assert row["onset_time"] <= row["peak_time"] - pd.Timedelta(hours=3), code
    dry = df[df["rain_24h_max"] < 100]
    assert not dry.empty
    assert (dry["level_flash_landslide_max"] == 0).all()
    # the combined level of a dry commune comes only from Art. 44's 12 h rule (>= 50 mm in 12 h)
    r12 = ds["rain_12h"].max("time").to_series()
    quiet = dry.index[r12.loc[dry.index] < 50]
    assert (df.loc[quiet, "level_max"] == 0).all()


def test_demo_storm_phuc_khanh_warned_hours_ahead(demo):
    region, fc, root = demo
    ds = A.assess(fc, region, cache_dir=root / "cache", options=A.AssessOptions(use_terrain=False))
    _storm_properties(ds, "02998")
    pk = A.summarize(ds).set_index("code").loc["02998"]
    assert pk["level_max"] >= 2 and pk["rain_24h_max"] > 200


def test_demo_storm_with_terrain(demo):
    region, fc, root = demo
    ds = A.assess(fc, region, cache_dir=root / "cache")
    _storm_properties(ds, "02998")
    assert ds.attrs["terrain"] == "used"
    assert set(np.unique(ds["zone_class"].values)) <= {1, 2, 3, 4}
    share = ds["landslide_share"].values
    assert np.nanmin(share) >= 0 and np.nanmax(share) <= 1
    df = A.summarize(ds).set_index("code")
    assert df.loc["02998", "landslide_share_max"] > df["landslide_share_max"].min()
    assert np.isfinite(df.loc["02998", "eric_index_max"]) and df.loc["02998", "eric_index_max"] > 1
    assert (ds["flash_flood_prone_km2"].values >= 0).all()
    # rain before the storm's onset triggers nothing
    early = ds["landslide_share"].sel(time=ds["time"].values[:12]).values
    assert early.max() == 0


# --------------------------------------------------------------------------- real communes


def test_real_lao_cai_communes_storm_on_phuc_khanh(tmp_path, shared_data):
    from ewarn.forecasts import synthetic
    from ewarn.region import import_region

    region = import_region(tmp_path / "laocai", communes=shared_data / "communes" / "lao_cai_2025.geojson",
                           code_field="ma_xa", name_field="ten_xa", population_field="dan_so",
                           province_field="ten_tinh")
    lon, lat = synthetic.demo_grid(region.bounds, margin=0.1)
    fc = synthetic.synthetic_storm(synthetic.demo_storm_params(), lon=lon, lat=lat,
                                   reference_time=synthetic.DEMO_REFERENCE_TIME, steps=72, step_hours=1,
                                   seed=2024, source="synthetic")
    ds = A.assess(fc, region, cache_dir=tmp_path / "cache")
    assert ds.sizes["commune"] == len(region.communes)
    assert set(ds["zone_class"].values.tolist()) == {2}  # no terrain: default "medium"
    assert (ds["region_group"].values == 1).all()  # Lào Cai and Yên Bái are KV1
    _storm_properties(ds, "02998")


def test_package_reexports_every_public_name():
    import importlib

    import ewarn.hazard_models as hm

    for mod in ("rainfall", "levels", "zonal", "terrain", "flash_flood", "landslide", "assess"):
        m = importlib.import_module(f"ewarn.hazard_models.{mod}")
        for name in set(m.__all__) - {"assess"}:
            assert getattr(hm, name) is getattr(m, name), (mod, name)
    assert hm.assess_forecast is A.assess
    from ewarn.hazard_models import assess as module  # the submodule, not shadowed by the function

    assert module is A
