"""Roads against the hazard grid: threatened streams, landslide cells, planners' closures."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import scipy.sparse.csgraph as csgraph
import xarray as xr
from shapely.geometry import LineString, Polygon, box

from ewarn.routing.graph import RoadNetwork, RoadNetworkError, network_from_arrays
from ewarn.routing.hazard_edges import (
    REASONS,
    EdgeHazards,
    HazardGridError,
    combine,
    edge_cells,
    hazard_closures,
    planner_closures,
    reason_label,
)

CELL = 0.001  # grid spacing [deg], about 100 m
LAT = np.round(21.990 + CELL * np.arange(30), 6)  # 21.990 .. 22.019
LON = np.round(103.995 + CELL * np.arange(25), 6)  # 103.995 .. 104.019
STREAM_LON = 104.005  # a stream runs north-south in this cell column ...
STREAM_LAT_MAX = 22.005  # ... up to this cell row
SLIDE = (104.012, 104.014, 22.012, 22.014)  # landslide cells (centres, inclusive box)

# nodes (lon, lat)
NODES = np.array([
    [104.000, 22.0003], [104.010, 22.0003],  # 0-1 road "A": crosses the stream, with two vertices only
    [104.000, 22.0062], [104.010, 22.0062],  # 2-3 road "B": passes 120 m north of the stream head, open
    [104.000, 22.0030], [104.010, 22.0040],  # 4-5 road "C": one long diagonal segment across the stream
    [104.010, 22.0130], [104.016, 22.0130],  # 6-7 road "D": through the landslide cells
    [104.005, 22.0130],                       # 8   road "E": 7 → 8 one-way, crosses both hazards
])
#          u  v  way  two-way  geometry
ROADS = [(0, 1, 1, True, None),
         (2, 3, 2, True, None),
         (4, 5, 3, True, None),
         (6, 7, 4, True, None),
         (7, 8, 5, False, LineString([(104.016, 22.013), (104.013, 22.013), (104.013, 22.003),
                                      (104.005, 22.003), (104.005, 22.013)])),
         (1, 3, 6, True, None), (3, 6, 7, True, None)]  # links, no hazard


def make_net() -> RoadNetwork:
    u, v, way, geom = [], [], [], []
    for a, b, w, two_way, g in ROADS:
        u.append(a), v.append(b), way.append(w), geom.append(g)
        if two_way:
            u.append(b), v.append(a), way.append(w), geom.append(None if g is None else g.reverse())
    return network_from_arrays(np.arange(100, 100 + len(NODES)), NODES[:, 0], NODES[:, 1], np.array(u),
                               np.array(v), highway=["tertiary"] * len(u), way=np.array(way), geometry=geom)


def make_cells(*, dims: tuple[str, str] = ("latitude", "longitude")) -> xr.Dataset:
    lat2, lon2 = np.meshgrid(LAT, LON, indexing="ij")
    stream = np.isclose(lon2, STREAM_LON) & (lat2 <= STREAM_LAT_MAX + 1e-9)
    slide = ((lon2 >= SLIDE[0] - 1e-9) & (lon2 <= SLIDE[1] + 1e-9)
             & (lat2 >= SLIDE[2] - 1e-9) & (lat2 <= SLIDE[3] + 1e-9))
    ratio = np.where(stream, 1.4, np.nan).astype(np.float32)
    ds = xr.Dataset(
        {"stream": (("latitude", "longitude"), stream),
         "flash_flood_prone": (("latitude", "longitude"), stream),
         "ffg_ratio_max": (("latitude", "longitude"), ratio),
         "stream_threatened": (("latitude", "longitude"), stream & (ratio >= 1)),
         "landslide_index_max": (("latitude", "longitude"), np.where(slide, 3.0, 0.0).astype(np.float32)),
         "landslide_triggered": (("latitude", "longitude"), slide),
         "susceptibility": (("latitude", "longitude"), np.full(stream.shape, 2, np.int8))},
        coords={"latitude": LAT, "longitude": LON},
        attrs={"start": "2024-09-07T12:00:00", "end": "2024-09-08T12:00:00", "source": "test"})
    return ds.transpose(*dims)


@pytest.fixture(scope="module")
def net() -> RoadNetwork:
    return make_net()


def rows_of(net: RoadNetwork, way: int) -> np.ndarray:
    return np.flatnonzero(net.edge_way == way)


def test_road_crossing_a_threatened_stream_is_closed_and_one_passing_near_is_open(net: RoadNetwork) -> None:
    h = hazard_closures(net, make_cells())
    assert h.closed[rows_of(net, 1)].all()  # both directions
    assert set(h.reason[rows_of(net, 1)]) == {"flash_flood_stream"}
    assert not h.closed[rows_of(net, 2)].any() and set(h.reason[rows_of(net, 2)]) == {""}
    assert not h.closed[rows_of(net, 6)].any() and not h.closed[rows_of(net, 7)].any()
    # one straight segment across the stream: found by sampling along it, not only at its vertices
    assert h.closed[rows_of(net, 3)].all()
    assert (h.factor == 1.0).all()


def test_landslide_cells_close_or_slow(net: RoadNetwork) -> None:
    closed = hazard_closures(net, make_cells())
    assert closed.closed[rows_of(net, 4)].all() and set(closed.reason[rows_of(net, 4)]) == {"landslide"}
    slow = hazard_closures(net, make_cells(), landslide="slow", slow_factor=2.5)
    assert not slow.closed[rows_of(net, 4)].any()
    assert (slow.factor[rows_of(net, 4)] == 2.5).all() and slow.slowed[rows_of(net, 4)].all()
    assert (slow.reason[rows_of(net, 4)] == "landslide").all()
    # the stream still closes its roads, and a road with both hazards stays closed with both reasons
    assert slow.closed[rows_of(net, 1)].all()
    both = rows_of(net, 5)
    assert slow.closed[both].all() and set(slow.reason[both]) == {"flash_flood_stream;landslide"}
    # floods may slow instead of close
    soft = hazard_closures(net, make_cells(), flood="slow", slow_factor=4.0)
    assert not soft.closed[rows_of(net, 1)].any() and (soft.factor[rows_of(net, 1)] == 4.0).all()


def test_one_way_road_and_its_walk_reverse_row_close_together(net: RoadNetwork) -> None:
    rows = rows_of(net, 5)
    assert rows.size == 2 and net.edge_walk_reverse[rows].sum() == 1
    h = hazard_closures(net, make_cells())
    assert h.closed[rows].all()


def test_closures_change_the_routes(net: RoadNetwork) -> None:
    h = hazard_closures(net, make_cells())
    src = 0
    free = csgraph.dijkstra(net.csr("car"), indices=[src])[0]
    cut = csgraph.dijkstra(net.csr("car", closed=h.closed, factor=h.factor), indices=[src])[0]
    assert np.isfinite(free[1]) and np.isinf(cut[1])  # road A was the only way out of node 0
    slow = hazard_closures(net, make_cells(), landslide="slow", slow_factor=3.0)
    mat = net.csr("car", closed=slow.closed, factor=slow.factor)
    d = csgraph.dijkstra(mat, indices=[6])[0]
    assert d[7] == pytest.approx(3.0 * net.edge_time_s["car"][rows_of(net, 4)[0]])


def test_grid_in_longitude_latitude_order_and_float_flags(net: RoadNetwork) -> None:
    ref = hazard_closures(net, make_cells())
    ds = make_cells(dims=("longitude", "latitude"))
    assert np.array_equal(hazard_closures(net, ds).closed, ref.closed)
    # a float flag with NaN (undefined) counts as not flagged
    f = make_cells()
    f["stream_threatened"] = f["stream_threatened"].astype(np.float32).where(f["stream_threatened"])
    assert np.array_equal(hazard_closures(net, f).closed, ref.closed)


def test_edges_outside_the_grid_are_untouched() -> None:
    far = network_from_arrays(np.array([1, 2]), np.array([105.0, 105.01]), np.array([21.0, 21.0]),
                              np.array([0, 1]), np.array([1, 0]), highway=["tertiary", "tertiary"])
    h = hazard_closures(far, make_cells())
    assert not h.closed.any() and (h.reason == "").all()
    edge, _, _ = edge_cells(far, LAT, LON)
    assert edge.size == 0


def test_edge_cells_samples_at_half_a_cell(net: RoadNetwork) -> None:
    edge, i, j = edge_cells(net, LAT, LON)
    a = rows_of(net, 1)[0]
    cols = np.unique(j[edge == a])
    # road A runs from lon 104.000 to 104.010 at lat 22.0003: every cell column in between, one row
    assert np.array_equal(LON[cols], np.round(104.0 + CELL * np.arange(11), 6))
    assert LAT[np.unique(i[edge == a])].tolist() == [22.0]
    # the long diagonal road C meets the rows 22.003 and 22.004 only
    assert sorted(LAT[np.unique(i[edge == rows_of(net, 3)[0]])].tolist()) == [22.003, 22.004]


def test_bad_grids_are_refused(net: RoadNetwork) -> None:
    with pytest.raises(HazardGridError, match="landslide_triggered"):
        hazard_closures(net, make_cells().drop_vars("landslide_triggered"))
    with pytest.raises(HazardGridError, match="ascending"):
        hazard_closures(net, make_cells().isel(latitude=slice(None, None, -1)))
    with pytest.raises(ValueError, match="close"):
        hazard_closures(net, make_cells(), landslide="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slow_factor"):
        hazard_closures(net, make_cells(), slow_factor=0.5)


# --------------------------------------------------------------------------- planners


def test_planner_closes_ways_and_polygons(net: RoadNetwork) -> None:
    by_way = planner_closures(net, way_ids=[2])
    assert by_way.closed[rows_of(net, 2)].all() and by_way.closed.sum() == rows_of(net, 2).size
    assert set(by_way.reason[rows_of(net, 2)]) == {"planner:way 2"}
    # the one-way road's walk reverse row closes with its way
    assert planner_closures(net, way_ids=[5]).closed[rows_of(net, 5)].all()
    area = box(104.0145, 22.0125, 104.0175, 22.0135)  # around node 7: roads D and E touch it
    by_poly = planner_closures(net, polygons=[area])
    assert by_poly.closed[rows_of(net, 4)].all() and by_poly.closed[rows_of(net, 5)].all()
    assert not by_poly.closed[rows_of(net, 1)].any()
    assert set(by_poly.reason[by_poly.closed]) == {"planner:polygon"}
    # a GeoDataFrame in a projected CRS is converted to lon/lat first
    gdf = gpd.GeoDataFrame(geometry=[area], crs=4326).to_crs(32648)
    assert np.array_equal(planner_closures(net, polygons=gdf).closed, by_poly.closed)
    assert np.array_equal(planner_closures(net, polygons=area).closed, by_poly.closed)  # one polygon alone
    both = planner_closures(net, way_ids=[4], polygons=[area])
    assert set(both.reason[rows_of(net, 4)]) == {"planner:way 4;planner:polygon"}


def test_unknown_way_id_is_an_error_unless_lenient(net: RoadNetwork) -> None:
    with pytest.raises(RoadNetworkError, match="99999"):
        planner_closures(net, way_ids=[2, 99999])
    h = planner_closures(net, way_ids=[2, 99999], strict=False)
    assert h.closed[rows_of(net, 2)].all()
    empty = planner_closures(net, polygons=[Polygon([(0, 0), (1, 0), (1, 1)])])
    assert not empty.closed.any()


def test_combine_merges_closures_factors_and_reasons(net: RoadNetwork) -> None:
    hz = hazard_closures(net, make_cells(), landslide="slow", slow_factor=2.0)
    pl = planner_closures(net, way_ids=[1, 4])
    c = combine(hz, pl, EdgeHazards.none(net.n_edges))
    assert np.array_equal(c.closed, hz.closed | pl.closed)
    assert (c.factor[rows_of(net, 4)] == 2.0).all()  # slowed by the hazard, closed by the planner
    assert c.closed[rows_of(net, 4)].all()
    assert set(c.reason[rows_of(net, 1)]) == {"flash_flood_stream;planner:way 1"}
    assert set(c.reason[rows_of(net, 4)]) == {"landslide;planner:way 4"}
    # combining twice repeats no reason
    assert set(combine(c, pl).reason[rows_of(net, 1)]) == {"flash_flood_stream;planner:way 1"}
    with pytest.raises(ValueError, match="same road network"):
        combine(hz, EdgeHazards.none(3))


def test_reasons_read_in_vietnamese(net: RoadNetwork) -> None:
    assert reason_label("flash_flood_stream") == REASONS["flash_flood_stream"][0]
    assert "lũ quét" in reason_label("flash_flood_stream") and "sạt lở" in reason_label("landslide")
    assert "way 123" in reason_label("planner:way 123") and "way 123" in reason_label("planner:way 123", "en")
    assert reason_label("flash_flood_stream;landslide", "en").count(";") == 1
    h = combine(hazard_closures(net, make_cells()), planner_closures(net, way_ids=[2]))
    frame = h.to_frame(net)
    assert set(frame["way_id"]) == {1, 2, 3, 4, 5}
    assert frame.loc[frame["way_id"] == 2, "label"].str.contains("cán bộ lập kế hoạch").all()
    assert (frame["closed"]).all() and (frame["edge"].to_numpy() < net.n_edges).all()
