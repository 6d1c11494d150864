"""Terrain derivatives: Horn slope in metres, D8 network, streams, susceptibility, cache."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from shapely.geometry import box

from ewarn.hazard_models import terrain as T  # noqa: N812
from ewarn.hazard_models.tables import TableError

R = T.EARTH_RADIUS_M


def _grid(z: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> xr.Dataset:
    return xr.Dataset({"elevation": (("latitude", "longitude"), z.astype(np.float64), {"units": "m"})},
                      coords={"latitude": lat, "longitude": lon})


# --------------------------------------------------------------------------- slope


def test_slope_of_north_south_plane_is_exact_everywhere_in_metres():
    lat = 22.0 + 0.001 * np.arange(6)
    lon = 104.0 + 0.001 * np.arange(5)
    b = 0.3  # rises 0.3 m per metre northwards
    z = b * R * np.radians(lat - lat[0])[:, None] + 0 * lon[None, :] + 500.0
    s = T.slope_degrees(_grid(z, lat, lon)["elevation"])
    assert s.dims == ("latitude", "longitude")
    np.testing.assert_allclose(s.values, math.degrees(math.atan(b)), atol=1e-4)  # edges included


def test_slope_of_east_west_plane_uses_cos_latitude_cell_width():
    # At 60 N a degree of longitude is half a degree of latitude: forgetting cos(lat) halves the slope.
    lat = 60.0 + 0.0005 * np.arange(5)
    lon = 10.0 + 0.0005 * np.arange(7)
    a = 0.5
    z = a * R * np.cos(np.radians(lat))[:, None] * np.radians(lon - lon[3])[None, :] + 100.0
    s = T.slope_degrees(_grid(z, lat, lon)["elevation"]).values
    expected = math.degrees(math.atan(a))
    np.testing.assert_allclose(s[:, 3], expected, atol=1e-4)  # column through lon0: exactly a
    np.testing.assert_allclose(s, expected, atol=0.01)       # elsewhere the cos(lat) change is tiny


def test_slope_refuses_descending_latitude():
    lat = np.array([22.002, 22.001, 22.0])
    lon = np.array([104.0, 104.001, 104.002])
    with pytest.raises(T.TerrainInputError, match="ascend"):
        T.slope_degrees(_grid(np.zeros((3, 3)), lat, lon)["elevation"])


# --------------------------------------------------------------------------- D8, streams


def _v_valley(ny: int = 7, nx: int = 5) -> xr.Dataset:
    """Walls falling 10 m per cell to the centre column, whose floor falls 1 m per cell northwards."""
    lat = 22.0 + 0.001 * np.arange(ny)
    lon = 104.0 + 0.001 * np.arange(nx)
    col = np.arange(nx)[None, :]
    row = np.arange(ny)[:, None]
    z = 100.0 + 10.0 * np.abs(col - nx // 2) + (ny - 1 - row) * 1.0
    return _grid(z, lat, lon)


def test_d8_on_v_valley_drains_everything_to_the_outlet():
    ds = _v_valley()
    d = T.derive_terrain(ds, stream_threshold_km2=1e-9)
    fd = d["flow_direction"].values
    upa = d["upstream_area"].values
    total = float(d["cell_area"].values.astype(np.float64).sum()) / 1e6
    # outlet at the north end of the valley floor: it gathers the whole grid
    assert fd[-1, 2] == 0
    assert upa[-1, 2] == pytest.approx(total, rel=1e-5)
    # the floor flows north (code 64 on a north-up map), the walls towards the floor
    assert np.all(fd[:-1, 2] == 64)
    assert np.all(np.isin(fd[:, :2], [1, 2, 128]))   # west wall: east, south-east or north-east
    assert np.all(np.isin(fd[:, 3:], [16, 8, 32]))   # east wall: west-ish
    # cell areas in m2 from the lon/lat grid (~103 m x 111 m at 22 N)
    dx = R * math.cos(math.radians(22.0)) * math.radians(0.001)
    dy = R * math.radians(0.001)
    assert d["cell_area"].values[0, 0] == pytest.approx(dx * dy, rel=5e-3)


def test_streams_where_expected_on_v_valley():
    ds = _v_valley()
    probe = T.derive_terrain(ds, stream_threshold_km2=1e-9)
    a = float(probe["cell_area"].values.mean()) / 1e6
    # pyflwdir drains each cell to its LOWEST neighbour (largest drop, no distance weighting): the
    # walls drain diagonally downstream, so floor row r >= 1 gathers its r + 1 floor cells, r cells of
    # each inner wall column and r - 1 of each outer one: 5 r - 1 cells (4, 9, 14, ...).
    thr = 12.5 * a  # floor rows >= 3 (14 cells) are streams, row 2 (9 cells) is not
    d = T.derive_terrain(ds, stream_threshold_km2=thr)
    np.testing.assert_allclose(d["upstream_area"].values[1:6, 2] / a, [4, 9, 14, 19, 24], rtol=1e-3)
    expected = np.zeros((7, 5), dtype=bool)
    expected[3:, 2] = True
    np.testing.assert_array_equal(d["stream"].values, expected)
    assert d.attrs["stream_threshold_km2"] == thr


def test_flow_network_round_trip_matches_stored_upstream_area():
    d = T.derive_terrain(_v_valley(), stream_threshold_km2=1e-9)
    flw = T.flow_network(d)
    np.testing.assert_allclose(flw.upstream_area("km2"), d["upstream_area"].values, rtol=1e-5)
    # accumulating 1 mm of runoff over each cell on the network gives the upstream volume
    vol = flw.accuflux(np.ones((7, 5)) * 1e-3 * flw.area)
    assert vol[-1, 2] == pytest.approx(float(d["upstream_area"].values[-1, 2]) * 1e6 * 1e-3, rel=1e-5)


def test_derive_terrain_errors_are_clear():
    ds = _v_valley()
    with pytest.raises(T.TerrainInputError, match="stream_threshold_km2"):
        T.derive_terrain(ds, stream_threshold_km2=-1)
    with pytest.raises(T.TerrainInputError, match="missing"):
        T.derive_terrain(ds.assign(elevation=ds["elevation"] * np.nan))
    with pytest.raises(T.TerrainInputError, match="no 'elevation'"):
        T.derive_terrain(ds.rename(elevation="height"))


# --------------------------------------------------------------------------- susceptibility


def test_susceptibility_classes_at_break_values():
    slope = np.array([0.0, 10.0, 10.001, 20.0, 20.5, 30.0, 35.0, 40.0, 40.1, 89.0, np.nan])
    np.testing.assert_array_equal(T.susceptibility_class(slope), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0])


def test_susceptibility_lithology_and_land_cover_shift_and_clip():
    slope = np.array([5.0, 25.0, 25.0, 45.0, 25.0, 25.0])
    lith = np.array([1, 1, 4, 1, 99, np.nan])      # +1, +1, -1, +1 (clipped), unknown, missing
    np.testing.assert_array_equal(T.susceptibility_class(slope, lithology=lith), [2, 4, 2, 5, 3, 3])
    cover = np.array([10, 60, 10, 10, 40, 80])      # tree -1, bare +1, tree -1, tree -1, crop +1, water 0
    np.testing.assert_array_equal(T.susceptibility_class(slope, land_cover=cover), [1, 4, 2, 4, 4, 3])
    with pytest.raises(T.TerrainInputError, match="resample"):
        T.susceptibility_class(slope, lithology=np.ones(3))


def test_parameters_table_is_checked(tmp_path):
    text = T.TERRAIN_TABLE.read_text(encoding="utf-8").replace(
        "slope_breaks_deg = [10.0, 20.0, 30.0, 40.0]", "slope_breaks_deg = [10.0, 30.0, 20.0, 40.0]")
    bad = tmp_path / "terrain.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(TableError) as err:
        T.terrain_parameters(bad)
    assert any(p.field == "slope_breaks_deg" for p in err.value.problems)
    shifted = tmp_path / "shifted.toml"
    shifted.write_text(T.TERRAIN_TABLE.read_text(encoding="utf-8").replace(
        "slope_breaks_deg = [10.0, 20.0, 30.0, 40.0]", "slope_breaks_deg = [5.0, 15.0, 25.0, 35.0]"),
        encoding="utf-8")
    p = T.terrain_parameters(shifted)
    np.testing.assert_array_equal(T.susceptibility_class(np.array([7.0, 36.0]), params=p), [2, 5])


# --------------------------------------------------------------------------- demo DEM


@pytest.fixture(scope="module")
def demo():
    from ewarn.demo import demo_landscape

    land = demo_landscape(2024)
    return land, T.derive_terrain(land.terrain)


def test_demo_streams_follow_the_valleys(demo):
    land, d = demo
    stream = d["stream"].values
    elev = d["elevation"].values
    assert 0.01 < stream.mean() < 0.2
    assert elev[stream].mean() < elev.mean() - 100.0
    # the network lies along the generator's valley lines
    assert np.median(land.dist[stream]) < 150.0
    assert np.mean(land.dist[stream] < 400.0) > 0.75


def test_demo_flash_flood_prone_cells_on_steep_tributaries(demo):
    land, d = demo
    ffp = d["flash_flood_prone"].values
    upa = d["upstream_area"].values
    assert ffp.sum() > 1000
    assert np.all(d["stream"].values[ffp])
    assert upa[ffp].min() >= 1.0 and upa[ffp].max() <= 1000.0
    assert np.all(d["upstream_slope"].values[ffp] >= 15.0)
    # along the main tributaries: channels draining tens of km2 are among them, on valley lines
    assert upa[ffp].max() > 25.0
    assert np.median(land.dist[ffp]) < 150.0
    # the main river, beyond 1000 km2 at the outlet, is not a flash-flood channel
    assert not ffp[upa == np.nanmax(upa)].any()


def test_demo_slope_close_to_generator_slope(demo):
    land, d = demo
    # the generator uses central differences; Horn's smoothing differs little on average
    diff = np.abs(d["slope"].values - land.slope)
    assert np.median(diff) < 1.5


# --------------------------------------------------------------------------- cache


def _region(tmp_path, z: np.ndarray, name: str = "r"):
    from ewarn.region import Region, write_region

    lat = 22.10 + 0.001 * np.arange(z.shape[0])
    lon = 104.50 + 0.001 * np.arange(z.shape[1])
    communes = gpd.GeoDataFrame(
        {"code": ["02998"], "name": ["Phúc Khánh"], "province": ["Lào Cai"], "population": [5000]},
        geometry=[box(lon[0], lat[0], lon[-1], lat[-1])], crs=4326)
    folder = write_region(tmp_path / name, name="test", communes=communes,
                          terrain=_grid(z, lat, lon).astype(np.float32), overwrite=True)
    return Region.load(folder)


def test_cache_second_call_loads_and_changed_dem_recomputes(tmp_path, monkeypatch):
    z = _v_valley(30, 20)["elevation"].values
    calls = []
    real = T.derive_terrain

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "derive_terrain", spy)
    cache = tmp_path / "cache"
    first = T.terrain_for_region(_region(tmp_path, z), cache)
    files = list(cache.glob("terrain-*.nc"))
    assert len(calls) == 1 and len(files) == 1
    mtime = files[0].stat().st_mtime_ns

    again = T.terrain_for_region(_region(tmp_path, z), cache)
    assert len(calls) == 1 and files[0].stat().st_mtime_ns == mtime
    xr.testing.assert_identical(again.drop_attrs(), first.drop_attrs())
    assert again["stream"].dtype == bool and again["flow_direction"].dtype == np.uint8
    assert not list(cache.glob(".*tmp"))  # no temp file left behind

    z2 = z.copy()
    z2[5, 5] += 3.0
    T.terrain_for_region(_region(tmp_path, z2, "r2"), cache)
    assert len(calls) == 2 and len(list(cache.glob("terrain-*.nc"))) == 2

    T.terrain_for_region(_region(tmp_path, z), cache, stream_threshold_km2=2.0)
    assert len(calls) == 3  # a changed setting recomputes too


def test_cache_replaces_a_corrupt_file(tmp_path):
    region = _region(tmp_path, _v_valley(30, 20)["elevation"].values)
    cache = tmp_path / "cache"
    first = T.terrain_for_region(region, cache)
    path = next(cache.glob("terrain-*.nc"))
    path.write_bytes(b"not netcdf")
    again = T.terrain_for_region(region, cache)
    np.testing.assert_array_equal(again["flow_direction"].values, first["flow_direction"].values)
    with xr.open_dataset(path) as ds:
        assert "upstream_area" in ds
