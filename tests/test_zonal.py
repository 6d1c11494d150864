"""Zonal statistics per commune (ewarn.hazard_models.zonal): known answers on tiny grids, exactextract
agreement on the real Lào Cai communes, the disk cache, dask."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import xarray as xr
from shapely.geometry import box

from ewarn.errors import EwarnError
from ewarn.hazard_models.zonal import (
    EARTH_RADIUS_KM,
    CommuneGrid,
    CommuneGridError,
    GridMismatchError,
    cell_areas_km2,
)

# 2 × 2 grid of 1° cells: latitude rows [0, 1] and [1, 2] (south first), longitude [0, 1], [1, 2]
LAT = np.array([0.5, 1.5])
LON = np.array([0.5, 1.5])
FIELD = np.array([[1.0, 2.0], [3.0, 4.0]])  # row 0 = southern row


def communes(*items):
    return gpd.GeoDataFrame({"code": [c for c, _, _ in items], "name": [n for _, n, _ in items]},
                            geometry=[g for _, _, g in items], crs="EPSG:4326")


def band_area(lat0, lat1, dlon=1.0):
    return EARTH_RADIUS_KM**2 * np.deg2rad(dlon) * (np.sin(np.deg2rad(lat1)) - np.sin(np.deg2rad(lat0)))


def test_cell_areas_on_the_sphere():
    a = cell_areas_km2(LAT, LON)
    assert a.shape == (2, 2)
    np.testing.assert_allclose(a[0], band_area(0, 1))
    np.testing.assert_allclose(a[1], band_area(1, 2))
    assert a[1, 0] < a[0, 0]  # cells shrink towards the pole
    lat = np.arange(-89.5, 90, 1.0)
    lon = np.arange(-179.5, 180, 1.0)
    np.testing.assert_allclose(cell_areas_km2(lat, lon).sum(), 4 * np.pi * EARTH_RADIUS_KM**2, rtol=1e-12)
    # 1° × 1° at the equator ≈ 12,364 km² (111.2 km × 111.2 km)
    assert 12_300 < a[0, 0] < 12_400


def test_mean_of_known_coverage_fractions():
    g = CommuneGrid.build(LAT, LON, communes(
        ("00001", "Xã A", box(0, 0, 1.5, 1.5)),     # cells: 1, 0.5, 0.5, 0.25
        ("00002", "Xã Nam", box(0, 0, 2, 1)),       # the southern row only
        ("00003", "Xã Bắc", box(0, 1, 2, 2)),       # the northern row only
    ))
    np.testing.assert_allclose(g.coverage.toarray()[0], [1, 0.5, 0.5, 0.25])
    cov = g.mean(FIELD, weighting="coverage")
    np.testing.assert_allclose(cov, [(1 + 2 * 0.5 + 3 * 0.5 + 4 * 0.25) / 2.25, 1.5, 3.5])
    area = g.mean(FIELD)
    s, n = band_area(0, 1), band_area(1, 2)
    np.testing.assert_allclose(area[0], (1 * s + 2 * 0.5 * s + 3 * 0.5 * n + 4 * 0.25 * n)
                               / (1.5 * s + 0.75 * n))
    np.testing.assert_allclose(area[1:], [1.5, 3.5])
    np.testing.assert_allclose(g.area_km2, [1.5 * s + 0.75 * n, 2 * s, 2 * n])
    np.testing.assert_allclose(g.total(np.ones((2, 2))), [2.25, 2, 2])


def test_commune_smaller_than_a_cell_gets_values():
    g = CommuneGrid.build(LAT, LON, communes(("00010", "Xã Nhỏ", box(1.2, 1.2, 1.4, 1.3))))
    np.testing.assert_allclose(g.coverage.toarray(), [[0, 0, 0, 0.02]], atol=1e-12)
    assert g.mean(FIELD)[0] == pytest.approx(4.0)
    assert g.maximum(FIELD)[0] == 4.0
    assert g.fraction_above(FIELD, 3.5)[0] == pytest.approx(1.0)


def test_commune_outside_the_grid_is_an_error_naming_it():
    with pytest.raises(CommuneGridError) as exc:
        CommuneGrid.build(LAT, LON, communes(("00001", "Xã A", box(0, 0, 1, 1)),
                                             ("02998", "Xã Phúc Khánh", box(10, 10, 11, 11))),
                          source="communes.geojson")
    msg = str(exc.value)
    assert isinstance(exc.value, EwarnError)
    assert "02998" in msg and "Xã Phúc Khánh" in msg and "communes.geojson" in msg
    assert "00001" not in msg
    assert "outside the forecast grid" in msg


def test_maximum_over_covered_cells_only():
    g = CommuneGrid.build(LAT, LON, communes(
        ("00001", "A", box(0, 0, 1.5, 0.5)),         # cells (0,0) and a bit of (0,1)
        ("00002", "B", box(0.1, 0.1, 0.9, 1.01)),   # (0,0) and a sliver of (1,0)
        ("00003", "C", box(0, 0, 2, 2)),
    ))
    np.testing.assert_array_equal(g.maximum(FIELD), [2.0, 3.0, 4.0])
    f = FIELD.copy()
    f[1, 1] = np.nan
    m = g.maximum(f)
    assert m[0] == 2.0 and m[1] == 3.0 and np.isnan(m[2])


def test_fraction_above_is_an_area_share():
    g = CommuneGrid.build(LAT, LON, communes(("00001", "A", box(0, 0, 2, 2)),
                                             ("00002", "B", box(0, 0, 1, 1))))
    s, n = band_area(0, 1), band_area(1, 2)
    np.testing.assert_allclose(g.fraction_above(FIELD, 2.5), [n / (s + n), 0.0])
    np.testing.assert_allclose(g.fraction_above(FIELD, 0.0), [1.0, 1.0])
    # a threshold per cell
    thr = np.array([[0.0, 5.0], [5.0, 5.0]])
    np.testing.assert_allclose(g.fraction_above(FIELD, thr), [s / 2 / (s + n), 1.0])


def test_exposure_weighting_with_households_binned_on_the_grid():
    g = CommuneGrid.build(LAT, LON, communes(("00001", "A", box(0, 0, 2, 2)),
                                             ("00002", "B", box(0, 1, 1, 2))))
    lon = np.array([0.2, 0.3, 0.4, 1.7, 50.0])  # the last household is off the grid
    lat = np.array([0.2, 0.3, 0.4, 1.8, 50.0])
    hh = g.households_per_cell(lon, lat)
    np.testing.assert_array_equal(hh, [[3, 0], [0, 1]])
    ppl = g.households_per_cell(lon, lat, weights=[2, 2, 2, 5, 9])
    np.testing.assert_array_equal(ppl, [[6, 0], [0, 5]])
    w = g.exposure_weighted(FIELD, hh)
    assert w[0] == pytest.approx((3 * 1 + 1 * 4) / 4)
    assert np.isnan(w[1])  # B covers a cell with no household
    np.testing.assert_allclose(g.total(hh), [4, 0])
    with pytest.raises(GridMismatchError):
        g.exposure_weighted(FIELD, np.ones((3, 3)))


def test_leading_dims_and_dask_give_the_same_numbers():
    pytest.importorskip("dask")
    g = CommuneGrid.build(LAT, LON, communes(("00001", "A", box(0, 0, 1.5, 1.5)),
                                             ("00002", "B", box(1.2, 1.2, 1.4, 1.3))))
    rng = np.random.default_rng(0)
    x = rng.gamma(2, 5, size=(3, 4, 2, 2))
    out = g.mean(x)
    assert out.shape == (3, 4, 2)
    for i in range(3):
        for t in range(4):
            np.testing.assert_allclose(out[i, t], g.mean(x[i, t]))
    da = xr.DataArray(x, dims=("member", "time", "latitude", "longitude"),
                      coords={"latitude": LAT, "longitude": LON, "member": [0, 1, 2]})
    lazy = da.chunk({"member": 1, "time": 2})
    for name, args in (("mean", ()), ("maximum", ()), ("fraction_above", (10.0,))):
        eager = getattr(g, name)(da, *args)
        res = getattr(g, name)(lazy, *args)
        assert res.chunks is not None  # still lazy
        assert res.dims == ("member", "time", "commune")
        np.testing.assert_allclose(res.compute().values, eager.values)
        assert list(res.commune.values) == ["00001", "00002"]
    np.testing.assert_allclose(g.mean(da).values, out)


def test_field_on_another_grid_is_refused():
    g = CommuneGrid.build(LAT, LON, communes(("00001", "A", box(0, 0, 2, 2))))
    with pytest.raises(GridMismatchError, match="last two dims"):
        g.mean(np.ones((3, 3)))
    da = xr.DataArray(np.ones((2, 2)), dims=("latitude", "longitude"),
                      coords={"latitude": LAT + 1, "longitude": LON})
    with pytest.raises(GridMismatchError, match="latitude"):
        g.mean(da)
    with pytest.raises(GridMismatchError, match="irregular"):
        CommuneGrid.build([0.5, 1.5, 3.5], LON, communes(("00001", "A", box(0, 0, 2, 2))))


def test_cache_reuses_and_keys_on_grid_and_communes(tmp_path, monkeypatch):
    c = communes(("00001", "A", box(0, 0, 1.5, 1.5)), ("00002", "B", box(1.2, 1.2, 1.4, 1.3)))
    first = CommuneGrid.for_grid(LAT, LON, c, tmp_path)
    assert not first.loaded_from_cache
    files = sorted(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".json", ".npz"]
    mtimes = [f.stat().st_mtime_ns for f in files]

    def no_compute(*a, **k):
        raise AssertionError("recomputed although cached")

    with monkeypatch.context() as m:
        m.setattr(CommuneGrid, "_compute", classmethod(no_compute))
        second = CommuneGrid.for_grid(LAT, LON, c, tmp_path)
    assert second.loaded_from_cache and second.key == first.key
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert (second.coverage != first.coverage).nnz == 0
    np.testing.assert_allclose(second.mean(FIELD), first.mean(FIELD))
    assert list(second.names) == ["A", "B"]

    other_grid = CommuneGrid.for_grid(LAT, np.array([0.25, 1.25]), c, tmp_path)
    moved = c.copy()
    moved.loc[1, "geometry"] = box(1.2, 1.2, 1.4, 1.35)
    other_communes = CommuneGrid.for_grid(LAT, LON, moved, tmp_path)
    recoded = c.assign(code=["00001", "00003"])
    other_codes = CommuneGrid.for_grid(LAT, LON, recoded, tmp_path)
    keys = {first.key, other_grid.key, other_communes.key, other_codes.key}
    assert len(keys) == 4
    assert not other_grid.loaded_from_cache and not other_communes.loaded_from_cache
    assert other_grid.key.split("-")[1] == first.key.split("-")[1]  # same communes hash
    assert other_communes.key.split("-")[0] == first.key.split("-")[0]  # same grid hash
    assert len(list(tmp_path.glob("*.npz"))) == 4
    assert not list(tmp_path.glob("*.tmp"))

    # a corrupt entry is rebuilt, not trusted
    (tmp_path / f"communegrid-{first.key}.npz").write_bytes(b"garbage")
    again = CommuneGrid.for_grid(LAT, LON, c, tmp_path)
    assert not again.loaded_from_cache
    np.testing.assert_allclose(again.mean(FIELD), first.mean(FIELD))


def test_means_match_exactextract_on_real_lao_cai_communes(shared_data):
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    gdf = gpd.read_file(shared_data / "communes" / "lao_cai_2025.geojson")
    gdf = gdf.rename(columns={"ma_xa": "code", "ten_xa": "name"})
    assert len(gdf) == 99
    lat = np.round(np.arange(21.275, 22.90, 0.05), 6)
    lon = np.round(np.arange(103.475, 105.15, 0.05), 6)
    g = CommuneGrid.build(lat, lon, gdf, source="lao_cai_2025.geojson")
    LON2, LAT2 = np.meshgrid(lon, lat)
    field = 50 + 30 * np.sin(3 * LON2) * np.cos(4 * LAT2) + 2 * (LAT2 - 22)  # synthetic rain [mm]
    # exactextract wants the northern row first
    extent = (lon[0] - 0.025, lat[0] - 0.025, lon[-1] + 0.025, lat[-1] + 0.025)
    rast = NumPyRasterSource(field[::-1].copy(), *extent)
    wts = NumPyRasterSource(cell_areas_km2(lat, lon)[::-1].copy(), *extent)
    ref = exact_extract(rast, gdf, ["mean", "weighted_mean", "max"], weights=wts, output="pandas",
                        include_cols=["code"])
    assert list(ref["code"]) == list(g.codes)
    np.testing.assert_allclose(g.mean(field, weighting="coverage"), ref["mean"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(g.mean(field), ref["weighted_mean"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(g.maximum(field), ref["max"], rtol=0, atol=1e-9)
    # the communes' areas on the grid agree with their geodesic areas on the WGS84 ellipsoid (the
    # sphere of equal mean radius differs by well under 1 % at 22° N)
    geod = pyproj.Geod(ellps="WGS84")
    ellipsoid = np.array([abs(geod.geometry_area_perimeter(p)[0]) for p in gdf.geometry]) / 1e6
    np.testing.assert_allclose(g.area_km2, ellipsoid, rtol=0.01)
