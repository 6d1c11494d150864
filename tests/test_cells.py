"""Per-cell hazard grid (ewarn.hazard_models.cells): threatened streams where the rain exceeds the
flash-flood guidance, the window, susceptibility, NetCDF round trip, errors, the demo storm."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from shapely.geometry import box

from ewarn.hazard_models import cells as C  # noqa: N812
from ewarn.hazard_models import flash_flood, landslide, rainfall
from ewarn.hazard_models.terrain import derive_terrain
from ewarn.region import Region, write_region

REF = np.datetime64("2024-09-08T00:00", "ns")
STEPS = 24
N = 60  # terrain cells per side, 0.001° (~100 m)
T_LAT = np.round(22.0005 + 0.001 * np.arange(N), 6)
T_LON = np.round(104.0005 + 0.001 * np.arange(N), 6)
# forecast grid: 3 x 3 cells of 0.02° over the terrain; column 0 (lon < 104.02) holds the west valley's
# flash-flood-prone streams, column 2 (lon > 104.04) the east valley's; the outer terrain cells lie
# between the outer forecast centres and the outer forecast cell edges (nearest neighbour still applies)
F_LAT = np.array([22.01, 22.03, 22.05])
F_LON = np.array([104.01, 104.03, 104.05])


def _elevation() -> xr.Dataset:
    """Two valleys draining south (floors at columns 15 and 45), side slopes steepening to the north."""
    col = np.arange(N)[None, :]
    row = np.arange(N)[:, None]
    z = 300.0 + (4.0 + 2.0 * row) * np.minimum(np.abs(col - 15), np.abs(col - 45)) + 8.0 * row
    return xr.Dataset({"elevation": (("latitude", "longitude"), z.astype(np.float32), {"units": "m"})},
                      coords={"latitude": T_LAT, "longitude": T_LON})


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> Region:
    communes = gpd.GeoDataFrame(
        {"code": ["00001", "00002"], "name": ["Xã Tây", "Xã Đông"], "province": ["Lào Cai"] * 2,
         "population": [100, 200], "legacy_province": ["Lào Cai"] * 2},
        geometry=[box(104.0, 22.0, 104.03, 22.06), box(104.03, 22.0, 104.06, 22.06)], crs="EPSG:4326")
    folder = write_region(tmp_path_factory.mktemp("cells") / "region", name="hai thung lũng",
                          communes=communes, terrain=_elevation())
    return Region.load(folder)


def forecast(west: float, east: float, start: int = 6, hours: int = 3, members: int = 0) -> xr.Dataset:
    """Uniform hourly rain [mm/h] on the west (forecast columns 0-1) and east (column 2) during ``hours``."""
    f = np.zeros((STEPS, 3, 3), np.float32)
    f[start:start + hours, :, :2] = west
    f[start:start + hours, :, 2] = east
    times = REF + np.arange(1, STEPS + 1) * np.timedelta64(1, "h")
    dims: tuple[str, ...] = ("time", "latitude", "longitude")
    coords: dict = {"time": times, "latitude": F_LAT, "longitude": F_LON}
    if members:
        f = np.stack([f * k for k in (1.0, 1.1, 0.0)][:members])  # one dry outlier member
        dims = ("member", *dims)
        coords["member"] = np.arange(members)
    da = xr.DataArray(f, dims=dims, coords=coords, attrs={"units": "mm"})
    return xr.Dataset({"precipitation": da}, attrs={"forecast_reference_time": "2024-09-08T00:00:00Z",
                                                   "source": "test", "step_hours": 1.0})


def _west(ds: xr.Dataset) -> np.ndarray:
    """Terrain cells whose nearest forecast cell is in the west columns 0-1 (longitude < 104.04)."""
    return np.broadcast_to(ds["longitude"].values[None, :] < 104.04, ds["stream"].shape)


def test_streams_threatened_where_rain_exceeds_guidance(region):
    # dry ground: FFG(1 h) ~ 90 mm, FFG(3 h) ~ 103 mm. West: 50 mm/h for 3 h = 150 mm in 3 h (ratio ~1.45);
    # east: 5 mm/h (ratio ~0.26)
    fc = forecast(west=50.0, east=5.0)
    ds = C.hazard_cells(fc, region)
    prone = ds["flash_flood_prone"].values
    assert prone[_west(ds)].any() and prone[~_west(ds)].any()  # both valleys have prone streams
    thr = ds["stream_threatened"].values
    assert thr.dtype == bool and ds["stream"].dtype == bool
    np.testing.assert_array_equal(thr, prone & _west(ds))
    assert not (thr & ~ds["stream"].values).any()
    # the ratio is flash_flood.threat_ratio on the forecast grid, max over time, at the nearest cell
    ref = flash_flood.threat_ratio(fc["precipitation"], 0.0, step_hours=1.0).max("time")
    near = ref.sel(latitude=ds["latitude"], longitude=ds["longitude"], method="nearest").values
    np.testing.assert_allclose(ds["ffg_ratio_max"].values, near, rtol=1e-6)
    ffg3 = float(flash_flood.ffg(0.0).sel(duration=3.0))
    assert float(ds["ffg_ratio_max"].values[_west(ds)].min()) == pytest.approx(150.0 / ffg3, rel=1e-5)
    assert float(ds["ffg_ratio_max"].values[~_west(ds)].max()) < 1.0
    assert ds["ffg_ratio_max"].dtype == np.float32
    # wetter antecedent ground lowers the guidance: the east valley (ratio ~0.26 dry) is threatened once the
    # curve number is wet and the rain is heavier
    wet_days = xr.DataArray(np.full((5, 3, 3), 60.0), dims=("time", "latitude", "longitude"),
                            coords={"time": REF - np.arange(5)[::-1] * np.timedelta64(1, "D"),
                                    "latitude": F_LAT, "longitude": F_LON})
    moist = C.hazard_cells(forecast(west=50.0, east=30.0), region, antecedent=wet_days)
    dry = C.hazard_cells(forecast(west=50.0, east=30.0), region)
    assert (moist["ffg_ratio_max"].values > dry["ffg_ratio_max"].values).all()
    assert moist["stream_threatened"].values.sum() > dry["stream_threatened"].values.sum()
    assert moist.attrs["antecedent"] == "given"


def test_window_restricts_the_maximum(region):
    fc = forecast(west=50.0, east=5.0, start=6, hours=3)  # rain in the intervals ending 07:00..09:00
    times = fc["time"].values
    before = C.hazard_cells(fc, region, end=times[5])
    assert not before["stream_threatened"].values.any()
    assert np.nanmax(before["ffg_ratio_max"].values) == 0.0
    during = C.hazard_cells(fc, region, start="2024-09-08T07:00", end="2024-09-08T09:00Z")
    assert during["stream_threatened"].values.any()
    assert during.attrs["start"] == "2024-09-08T07:00:00Z" and during.attrs["end"] == "2024-09-08T09:00:00Z"
    # 7 h after the rain stopped every FFG window (1, 3, 6 h) is dry again
    after = C.hazard_cells(fc, region, start=times[15])
    assert not after["stream_threatened"].values.any()
    assert np.nanmax(after["ffg_ratio_max"].values) == 0.0
    # the interval holding ``end`` counts: 08:30 is inside the one ending 09:00
    half = C.hazard_cells(fc, region, start="2024-09-08T07:00", end="2024-09-08T08:30")
    assert half.attrs["end"] == "2024-09-08T09:00:00Z"
    # a tz-aware bound is converted to UTC (07:00+07:00 = 00:00Z: the start of the forecast)
    whole = C.hazard_cells(fc, region, start="2024-09-08T07:00+07:00")
    assert whole.attrs["start"] == "2024-09-08T01:00:00Z"
    assert whole.attrs["forecast_reference_time"] == "2024-09-08T00:00:00Z"
    assert whole.attrs["source"] == "test"
    # the window's maximum of the hourly ratio is that of the window alone
    ref = flash_flood.threat_ratio(fc["precipitation"], 0.0, step_hours=1.0).isel(time=slice(6, 9))
    ref = ref.max("time")
    np.testing.assert_allclose(np.unique(during["ffg_ratio_max"].values), np.unique(ref.values), rtol=1e-6)


def test_susceptibility_and_landslide_classes_match_the_terrain_models(region):
    fc = forecast(west=40.0, east=2.0, start=2, hours=12)
    ds = C.hazard_cells(fc, region, end=fc["time"].values[15])
    derived = derive_terrain(region.terrain)
    np.testing.assert_array_equal(ds["susceptibility"].values, derived["susceptibility"].values)
    assert ds["susceptibility"].dtype == np.int8
    assert set(np.unique(ds["susceptibility"].values)) == {1, 2, 3, 4, 5}
    # the landslide class is landslide_hazard's on the rain regridded to the terrain, max over the window
    fine = fc["precipitation"].sel(latitude=derived["latitude"], longitude=derived["longitude"],
                                   method="nearest").assign_coords(latitude=derived["latitude"],
                                                                   longitude=derived["longitude"])
    acc = rainfall.accumulations(fine.isel(time=slice(0, 16)), (1, 3, 6, 12, 24), 1.0)
    index = landslide.landslide_hazard(derived, acc)["index"].max("time").values
    np.testing.assert_array_equal(ds["landslide_index_max"].values, index.astype(np.float32))
    trig = ds["landslide_triggered"].values
    np.testing.assert_array_equal(trig, ds["landslide_index_max"].values >= 3)
    assert trig[_west(ds)].any() and not trig[~_west(ds)].any()
    # "high" needs a rain trigger on susceptibility > 2 (LHASA v1 moderate, raised one class by the
    # infinite slope) or > 4: never on gentle slopes
    assert (ds["susceptibility"].values[trig] >= 3).all()
    # a lower class threshold is an option
    moderate = C.hazard_cells(fc, region, end=fc["time"].values[15],
                              options=C.CellOptions(landslide_min_class=2))
    assert moderate["landslide_triggered"].values.sum() > trig.sum()
    # no rain: nothing threatened, nothing triggered
    calm = C.hazard_cells(forecast(0.0, 0.0), region)
    assert not calm["stream_threatened"].values.any() and not calm["landslide_triggered"].values.any()


def test_ensemble_uses_the_median_member(region):
    ens = C.hazard_cells(forecast(west=50.0, east=5.0, members=3), region)
    # members x1.0, x1.1, x0 (dry outlier): the median is the x1.0 member
    det = C.hazard_cells(forecast(west=50.0, east=5.0), region)
    np.testing.assert_allclose(ens["ffg_ratio_max"].values, det["ffg_ratio_max"].values, rtol=1e-6)
    np.testing.assert_array_equal(ens["stream_threatened"].values, det["stream_threatened"].values)
    np.testing.assert_array_equal(ens["landslide_index_max"].values, det["landslide_index_max"].values)
    assert ens.attrs["members"] == 3


def test_netcdf_round_trip_and_cache(region, tmp_path):
    ds = C.hazard_cells(forecast(west=50.0, east=5.0), region, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "terrain").glob("terrain-*.nc"))  # terrain derived once, cached
    path = C.write_cells(ds, tmp_path / "assessments" / "test" / "20240908T00-cells.nc")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    with xr.open_dataset(path, decode_cf=False) as raw:
        assert raw["stream_threatened"].dtype == np.int8
        assert raw["stream_threatened"].attrs["flag_meanings"] == "false true"
        assert raw["ffg_ratio_max"].encoding["zlib"]
    back = C.open_cells(path)
    for name in C.CELL_VARIABLES:
        assert back[name].dtype == ds[name].dtype, name
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=name)
    assert back.attrs["start"] == ds.attrs["start"] and back.attrs["end"] == ds.attrs["end"]
    np.testing.assert_array_equal(back["latitude"].values, T_LAT)


def test_bad_input_is_refused_with_a_clear_error(region, tmp_path):
    fc = forecast(west=50.0, east=5.0)
    with pytest.raises(C.HazardCellsError, match=r"holds no forecast time.*2024-09-08T01:00:00Z"):
        C.hazard_cells(fc, region, start="2024-09-10T00:00")
    with pytest.raises(C.HazardCellsError, match="after end"):
        C.hazard_cells(fc, region, start="2024-09-08T10:00", end="2024-09-08T05:00")
    with pytest.raises(C.HazardCellsError, match="start='soon'"):
        C.hazard_cells(fc, region, start="soon")
    with pytest.raises(C.HazardCellsError, match="landslide_min_class"):
        C.CellOptions(landslide_min_class=4)
    flat = Region(folder=tmp_path, name="no terrain", communes=region.communes, households=region.households,
                  shelters=region.shelters, contacts=region.contacts, files={}, meta={})
    with pytest.raises(C.HazardCellsError, match="has no terrain"):
        C.hazard_cells(fc, flat)
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("y", [1.0])}).to_netcdf(other)
    with pytest.raises(C.HazardCellsError, match=r"other\.nc.*not a hazard-cells file.*stream"):
        C.open_cells(other)
    with pytest.raises(C.HazardCellsError, match="no such hazard-cells file"):
        C.open_cells(tmp_path / "missing.nc")


def test_package_reexports_cells():
    import ewarn.hazard_models as hm

    for name in C.__all__:
        assert getattr(hm, name) is getattr(C, name)


def test_demo_storm_threatens_streams_in_phuc_khanh(tmp_path):
    from ewarn.demo import build_demo_region, build_demo_storm

    region = Region.load(build_demo_region(tmp_path / "region"))
    with xr.open_dataset(build_demo_storm(region, tmp_path / "storm.nc")) as f:
        fc = f.load()
    ds = C.hazard_cells(fc, region, cache_dir=tmp_path / "cache")
    assert ds.sizes["latitude"] == region.terrain.sizes["latitude"]
    lon, lat = np.meshgrid(ds["longitude"].values, ds["latitude"].values)
    geoms = region.communes.set_index("code").geometry
    inside = shapely.contains_xy(geoms["02998"], lon, lat)
    threatened = ds["stream_threatened"].values
    assert (threatened & inside).sum() > 0
    assert (ds["landslide_triggered"].values & inside).sum() > 0
    # the storm's edge: Khánh Yên (03103, commune FFG ratio < 1 in the assessment) has fewer
    ky = shapely.contains_xy(geoms["03103"], lon, lat)
    assert (threatened & ky).sum() / ky.sum() < (threatened & inside).sum() / inside.sum()
    # before the storm reaches the region nothing is threatened
    early = C.hazard_cells(fc, region, end=fc["time"].values[5], cache_dir=tmp_path / "cache")
    assert not early["stream_threatened"].values.any()
