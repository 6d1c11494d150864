"""Road network arrays: osmnx graphs (GraphML, OSM XML) → RoadNetwork, speeds, CSR, cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import scipy.sparse.csgraph as csgraph
from shapely.geometry import LineString

from ewarn.hazard_models.tables import TableError
from ewarn.routing import graph as rg
from ewarn.routing.graph import (
    RoadNetwork,
    RoadNetworkError,
    load_network,
    network_from_arrays,
    parse_maxspeed,
    read_speeds,
    region_network,
)

# toy network near Lào Cai (0.01° ≈ 1.03 km east-west, 1.11 km north-south)
NODES = {1: (104.00, 22.00), 2: (104.01, 22.00), 3: (104.01, 22.01), 4: (104.00, 22.01),
         5: (104.02, 22.00), 6: (104.02, 22.01)}
TRACK_BEND = (104.015, 22.002)


def toy_graph() -> nx.MultiDiGraph:
    """osmnx-style MultiDiGraph: a one-way street, parallel edges, maxspeed, tracktype, path, footway."""
    g = nx.MultiDiGraph(crs="EPSG:4326")
    for n, (x, y) in NODES.items():
        g.add_node(n, x=x, y=y, street_count=2)

    def add(u: int, v: int, way: int, highway: str, length: float, *, oneway: bool = False,
            geometry: LineString | None = None, **tags: str) -> None:
        pairs = [(u, v, geometry)] if oneway else [
            (u, v, geometry), (v, u, None if geometry is None else LineString(geometry.coords[::-1]))]
        for a, b, geom in pairs:
            attrs = dict(osmid=way, highway=highway, length=length, oneway=oneway, reversed=False, **tags)
            if geom is not None:
                attrs["geometry"] = geom
            g.add_edge(a, b, **attrs)

    add(1, 2, 10, "tertiary", 1000.0)
    add(2, 3, 11, "residential", 1100.0, oneway=True)
    add(3, 4, 12, "tertiary", 1000.0)
    add(4, 1, 13, "tertiary", 1100.0)
    add(2, 5, 14, "primary", 1000.0, maxspeed="20")
    add(2, 5, 15, "track", 600.0, tracktype="grade3",
        geometry=LineString([NODES[2], TRACK_BEND, NODES[5]]))
    add(5, 6, 16, "path", 1100.0)
    add(6, 3, 17, "footway", 1000.0)
    return g


@pytest.fixture(scope="module")
def toy_graphml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import osmnx as ox

    path = tmp_path_factory.mktemp("roads") / "roads.graphml"
    ox.save_graphml(toy_graph(), path)
    return path


@pytest.fixture(scope="module")
def net(toy_graphml: Path) -> RoadNetwork:
    return load_network(toy_graphml)


def osm_index(net: RoadNetwork, osmid: int) -> int:
    return int(np.flatnonzero(net.node_osmid == osmid)[0])


def edge_row(net: RoadNetwork, u: int, v: int, way: int, *, walk_reverse: bool = False) -> int:
    hit = ((net.node_osmid[net.edge_u] == u) & (net.node_osmid[net.edge_v] == v) & (net.edge_way == way)
           & (net.edge_walk_reverse == walk_reverse))
    (rows,) = np.nonzero(hit)
    assert rows.size == 1, (u, v, way, rows)
    return int(rows[0])


def shortest(net: RoadNetwork, mode: str, a: int, b: int, **kw: np.ndarray) -> float:
    d = csgraph.dijkstra(net.csr(mode, **kw), indices=[osm_index(net, a)])
    return float(d[0, osm_index(net, b)])


# --------------------------------------------------------------------------- building


def test_arrays_follow_the_contract(net: RoadNetwork) -> None:
    # 7 two-way roads x 2 + 1 one-way + its walk-only reverse
    assert net.n_nodes == 6 and net.n_edges == 16
    assert net.crs == "EPSG:32648"  # UTM 48N for 104°E 22°N
    assert net.edge_u.dtype == np.int32 and net.edge_v.dtype == np.int32
    assert net.node_osmid.dtype == np.int64 and net.edge_way.dtype == np.int64
    assert net.edge_geometry_offsets.shape == (net.n_edges + 1,)
    assert set(net.edge_time_s) == set(RoadNetwork.MODES) == {"walk", "motorbike", "car"}
    # projected coordinates are metres: 0.01° of longitude at 22°N is about 1,031 m
    i1, i2 = osm_index(net, 1), osm_index(net, 2)
    assert np.hypot(net.x[i2] - net.x[i1], net.y[i2] - net.y[i1]) == pytest.approx(1031, rel=0.01)


def test_one_way_binds_vehicles_not_walkers(net: RoadNetwork) -> None:
    fwd = edge_row(net, 2, 3, 11)
    back = edge_row(net, 3, 2, 11, walk_reverse=True)
    assert net.edge_oneway[fwd] and net.edge_walk_reverse[back]
    assert np.isinf(net.edge_time_s["car"][back]) and np.isinf(net.edge_time_s["motorbike"][back])
    assert net.edge_time_s["walk"][back] == net.edge_time_s["walk"][fwd]
    # a car from 3 to 2 goes round by 4 and 1; a walker takes the one-way street backwards
    car = shortest(net, "car", 3, 2)
    assert car == pytest.approx((1000 + 1100 + 1000) / (30 / 3.6))
    assert shortest(net, "car", 2, 3) == pytest.approx(1100 / (20 / 3.6))
    assert shortest(net, "walk", 3, 2) == pytest.approx(1100 / (4 / 3.6))
    # the reverse row runs the street's polyline backwards
    (line,) = net.edge_lines(np.array([back]))
    assert np.allclose(line.coords[0], NODES[3]) and np.allclose(line.coords[-1], NODES[2])


def test_speeds_by_class_maxspeed_and_tracktype(net: RoadNetwork) -> None:
    primary = edge_row(net, 2, 5, 14)
    track = edge_row(net, 2, 5, 15)
    path = edge_row(net, 5, 6, 16)
    footway = edge_row(net, 6, 3, 17)
    kmh = read_speeds()
    # maxspeed=20 caps the primary road's 40 km/h (motorbike) and 45 km/h (car); walking is not capped
    assert net.edge_maxspeed_kmh[primary] == 20
    assert net.edge_time_s["motorbike"][primary] == pytest.approx(1000 / (20 / 3.6))
    assert net.edge_time_s["car"][primary] == pytest.approx(1000 / (20 / 3.6))
    assert net.edge_time_s["walk"][primary] == pytest.approx(1000 / (4 / 3.6))
    # tracks: motorbikes at the table's track speed; cars not on a grade3 track
    track_mb = kmh.kmh[kmh.classes.index("track"), 1]
    assert net.edge_time_s["motorbike"][track] == pytest.approx(600 / (track_mb / 3.6))
    assert np.isinf(net.edge_time_s["car"][track])
    # paths: walk and motorbike, no car; footways: walk only
    assert np.isfinite(net.edge_time_s["motorbike"][path]) and np.isinf(net.edge_time_s["car"][path])
    assert np.isfinite(net.edge_time_s["walk"][footway])
    assert np.isinf(net.edge_time_s["motorbike"][footway]) and np.isinf(net.edge_time_s["car"][footway])


def test_csr_keeps_the_fastest_parallel_edge_and_names_it(net: RoadNetwork) -> None:
    a, b = osm_index(net, 2), osm_index(net, 5)
    for mode, way in (("motorbike", 15), ("walk", 15), ("car", 14)):
        mat, edges = net.csr_with_edges(mode)
        assert mat.has_sorted_indices and edges.shape == mat.data.shape
        k = mat.indptr[a] + int(np.flatnonzero(mat.indices[mat.indptr[a]:mat.indptr[a + 1]] == b)[0])
        chosen = edges[k]
        assert net.edge_way[chosen] == way
        assert mat.data[k] == net.edge_time_s[mode][chosen]
        assert mat[a, b] == min(net.edge_time_s[mode][edge_row(net, 2, 5, 14)],
                                net.edge_time_s[mode][edge_row(net, 2, 5, 15)])
        # every stored entry is the time of the edge it names, between that edge's nodes
        rows = np.repeat(np.arange(net.n_nodes), np.diff(mat.indptr))
        assert (net.edge_u[edges] == rows).all() and (net.edge_v[edges] == mat.indices).all()
        assert np.array_equal(mat.data, net.edge_time_s[mode][edges])


def test_reverse_csr_is_the_transpose(net: RoadNetwork) -> None:
    for mode in RoadNetwork.MODES:
        fwd = net.csr(mode).toarray()
        rev, edges = net.csr_with_edges(mode, reverse=True)
        assert np.array_equal(rev.toarray(), fwd.T)
        rows = np.repeat(np.arange(net.n_nodes), np.diff(rev.indptr))
        assert (net.edge_v[edges] == rows).all() and (net.edge_u[edges] == rev.indices).all()
    # distances TO node 2 on the reversed graph equal distances FROM each node on the forward graph
    d_to = csgraph.dijkstra(net.csr("car", reverse=True), indices=[osm_index(net, 2)])[0]
    d_from = csgraph.dijkstra(net.csr("car"))[:, osm_index(net, 2)]
    assert np.allclose(d_to, d_from)


def test_length_weights_follow_the_mode(net: RoadNetwork) -> None:
    d = csgraph.dijkstra(net.csr("car", weight="length"), indices=[osm_index(net, 3)])[0]
    assert d[osm_index(net, 2)] == pytest.approx(1000 + 1100 + 1000)  # one-way street not usable
    d = csgraph.dijkstra(net.csr("walk", weight="length"), indices=[osm_index(net, 3)])[0]
    assert d[osm_index(net, 2)] == pytest.approx(1100)
    mat, edges = net.csr_with_edges("motorbike", weight="length")
    assert np.array_equal(mat.data, net.edge_length_m[edges])
    assert "6 nodes, 16 edges" in repr(net)


def test_closed_edges_are_removed_and_factor_slows(net: RoadNetwork) -> None:
    closed = np.zeros(net.n_edges, bool)
    closed[edge_row(net, 2, 3, 11)] = True
    # the one-way street closed: round by 1 and 4
    assert shortest(net, "car", 2, 3, closed=closed) == pytest.approx((1000 + 1100 + 1000) / (30 / 3.6))
    mat = net.csr("car", closed=closed)
    assert mat[osm_index(net, 2), osm_index(net, 3)] == 0  # no entry
    factor = np.full(net.n_edges, 2.0)
    assert shortest(net, "car", 1, 2, factor=factor) == pytest.approx(2 * 1000 / (30 / 3.6))
    with pytest.raises(ValueError, match="one value per edge"):
        net.csr("car", closed=np.zeros(3, bool))
    with pytest.raises(RoadNetworkError, match="unknown travel mode"):
        net.csr("bicycle")


def test_nearest_nodes_with_usable_mask(net: RoadNetwork) -> None:
    lon, lat = np.array([104.0201, 104.0001]), np.array([22.0099, 22.0001])
    node, dist = net.nearest_nodes(lon, lat)
    assert net.node_osmid[node].tolist() == [6, 1]
    assert (dist < 30).all()
    # node 6 only has a path and a footway: no car may reach it
    usable = net.usable_nodes("car")
    assert not usable[osm_index(net, 6)] and usable[osm_index(net, 5)]
    node, dist = net.nearest_nodes(lon, lat, usable=usable)
    assert net.node_osmid[node[0]] in (3, 5) and dist[0] > 1000
    with pytest.raises(RoadNetworkError, match="no road node is usable"):
        net.nearest_nodes(lon, lat, usable=np.zeros(net.n_nodes, bool))


def test_edge_lines_are_the_real_geometries(net: RoadNetwork) -> None:
    there, back = edge_row(net, 2, 5, 15), edge_row(net, 5, 2, 15)
    a, b = net.edge_lines(np.array([there, back]))
    assert np.allclose(np.asarray(a.coords), [NODES[2], TRACK_BEND, NODES[5]])
    assert np.allclose(np.asarray(b.coords), [NODES[5], TRACK_BEND, NODES[2]])
    (straight,) = net.edge_lines(np.array([edge_row(net, 1, 2, 10)]))
    assert len(straight.coords) == 2
    assert net.edge_lines(np.array([], dtype=np.int64)) == []


# --------------------------------------------------------------------------- OSM XML

OSM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="ewarn-test">
  <node id="101" lat="22.000" lon="104.000" version="1"/>
  <node id="102" lat="22.000" lon="104.010" version="1"/>
  <node id="103" lat="22.010" lon="104.010" version="1"/>
  <node id="104" lat="22.010" lon="104.000" version="1"/>
  <node id="105" lat="22.005" lon="104.020" version="1"/>
  <node id="201" lat="22.002" lon="104.002" version="1"/>
  <node id="202" lat="22.002" lon="104.003" version="1"/>
  <node id="203" lat="22.003" lon="104.003" version="1"/>
  <way id="1" version="1">
    <nd ref="101"/><nd ref="102"/><nd ref="103"/>
    <tag k="highway" v="tertiary"/><tag k="maxspeed" v="25"/><tag k="name" v="Đường liên xã"/>
  </way>
  <way id="2" version="1">
    <nd ref="103"/><nd ref="104"/><nd ref="101"/>
    <tag k="highway" v="residential"/><tag k="oneway" v="yes"/>
  </way>
  <way id="3" version="1">
    <nd ref="102"/><nd ref="105"/>
    <tag k="highway" v="track"/><tag k="tracktype" v="grade1"/>
  </way>
  <way id="4" version="1">
    <nd ref="201"/><nd ref="202"/><nd ref="203"/><nd ref="201"/>
    <tag k="building" v="house"/>
  </way>
</osm>
"""


@pytest.fixture(scope="module")
def osm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("osm") / "roads.osm"
    path.write_text(OSM_XML, encoding="utf-8")
    return path


def test_osm_xml_loads_roads_only_with_one_way_and_tags(osm_file: Path) -> None:
    net = load_network(osm_file)
    # the building is not a road
    assert set(net.node_osmid.tolist()) <= {101, 102, 103, 104, 105}
    assert 201 not in net.node_osmid
    assert set(net.edge_way.tolist()) == {1, 2, 3}
    one_way = np.flatnonzero((net.edge_way == 2) & ~net.edge_walk_reverse)
    assert one_way.size >= 1 and net.edge_oneway[one_way].all()
    # the one-way way runs 103 → 104 → 101: a car from 101 to 103 uses way 1 only
    car = net.csr("car")
    d = csgraph.dijkstra(car, indices=[osm_index(net, 101)])[0]
    assert np.isfinite(d[osm_index(net, 103)])
    back = csgraph.dijkstra(car, indices=[osm_index(net, 103)])[0]
    assert np.isfinite(back[osm_index(net, 101)])
    assert np.all(net.edge_u[one_way] != osm_index(net, 101))  # no vehicle row leaves 101 on way 2
    walk_back = np.flatnonzero((net.edge_way == 2) & net.edge_walk_reverse)
    assert walk_back.size == one_way.size
    assert np.isinf(net.edge_time_s["car"][walk_back]).all()
    assert np.isfinite(net.edge_time_s["walk"][walk_back]).all()
    # maxspeed 25 caps the tertiary road (30 km/h); tracktype grade1 lets cars on the track at 20 km/h
    tert = np.flatnonzero(net.edge_way == 1)
    assert np.allclose(net.edge_time_s["motorbike"][tert], net.edge_length_m[tert] / (25 / 3.6))
    track = np.flatnonzero(net.edge_way == 3)
    assert np.allclose(net.edge_time_s["car"][track], net.edge_length_m[track] / (20 / 3.6))


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RoadNetworkError, match="not found"):
        load_network(tmp_path / "missing.osm")
    bad = tmp_path / "broken.osm"
    bad.write_text("<osm><node id=", encoding="utf-8")
    with pytest.raises(RoadNetworkError, match=r"broken\.osm: cannot read"):
        load_network(bad)
    other = tmp_path / "roads.csv"
    other.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(RoadNetworkError, match=r"\.graphml, \.osm or \.osm\.bz2"):
        load_network(other)


def test_graphs_osmnx_cannot_route_are_refused() -> None:
    projected = toy_graph()
    projected.graph["crs"] = "EPSG:32648"
    with pytest.raises(RoadNetworkError, match="EPSG:4326"):
        load_network(projected)
    named = nx.MultiDiGraph()
    named.add_node("a", x=104.0, y=22.0)
    named.add_node("b", x=104.01, y=22.0)
    named.add_edge("a", "b", highway="primary")
    with pytest.raises(RoadNetworkError, match="integers"):
        load_network(named)
    no_roads = nx.MultiDiGraph(crs="EPSG:4326")
    no_roads.add_node(1, x=104.0, y=22.0)
    no_roads.add_node(2, x=104.01, y=22.0)
    no_roads.add_edge(1, 2, building="yes")  # a way that is not a road
    with pytest.raises(RoadNetworkError, match="no roads"):
        load_network(no_roads)
    # a plain networkx graph without a crs attribute is taken as lon/lat and left as it was
    plain = toy_graph()
    del plain.graph["crs"]
    assert load_network(plain).n_edges == 16 and "crs" not in plain.graph


# --------------------------------------------------------------------------- cache


def test_cache_hit_returns_identical_arrays_and_a_changed_file_misses(
        toy_graphml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "roads.graphml"
    shutil.copyfile(toy_graphml, src)
    cache = tmp_path / "cache"
    first = load_network(src, cache_dir=cache)
    files = list(cache.glob("roads-*.npz"))
    assert len(files) == 1

    def no_osmnx(path: Path) -> nx.MultiDiGraph:
        raise AssertionError("a cache hit must not read the source with osmnx")

    monkeypatch.setattr(rg, "_read_graph", no_osmnx)
    again = load_network(src, cache_dir=cache)
    a, b = first.to_arrays(), again.to_arrays()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
        assert a[k].dtype == b[k].dtype, k
    assert again.crs == first.crs and again.source_checksum == first.source_checksum
    monkeypatch.undo()

    # a changed source file (one more road) misses the cache and is read again
    import osmnx as ox

    g = toy_graph()
    g.add_node(7, x=104.03, y=22.0, street_count=1)
    g.add_edge(5, 7, osmid=18, highway="unclassified", length=1000.0, oneway=False, reversed=False)
    g.add_edge(7, 5, osmid=18, highway="unclassified", length=1000.0, oneway=False, reversed=False)
    ox.save_graphml(g, src)
    changed = load_network(src, cache_dir=cache)
    assert changed.n_nodes == 7 and changed.source_checksum != first.source_checksum
    assert len(list(cache.glob("roads-*.npz"))) == 2


def test_corrupt_cache_is_rebuilt(toy_graphml: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_network(toy_graphml, cache_dir=cache)
    (path,) = cache.glob("roads-*.npz")
    path.write_bytes(path.read_bytes()[:200])  # truncated
    again = load_network(toy_graphml, cache_dir=cache)
    assert np.array_equal(again.edge_time_s["car"], first.edge_time_s["car"])
    with np.load(path, allow_pickle=False) as z:  # rewritten whole
        assert "meta_json" in z.files and z["edge_u"].shape == (first.n_edges,)
    assert not list(cache.glob("*.tmp"))


def test_speeds_table_change_misses_the_cache(toy_graphml: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = load_network(toy_graphml, cache_dir=cache)
    table = tmp_path / "speeds.toml"
    text = rg.SPEEDS_FILE.read_text(encoding="utf-8")
    marker = "[classes.tertiary]\nwalk = 4.0\nmotorbike = 30.0\ncar = 30.0"
    assert marker in text
    table.write_text(text.replace(marker, "[classes.tertiary]\nwalk = 4.0\nmotorbike = 30.0\ncar = 60.0"),
                     encoding="utf-8")
    fast = load_network(toy_graphml, cache_dir=cache, speeds=table)
    row = edge_row(base, 1, 2, 10)
    assert fast.edge_time_s["car"][row] == pytest.approx(base.edge_time_s["car"][row] / 2)


def test_a_wrong_speeds_table_lists_its_problems(tmp_path: Path) -> None:
    table = tmp_path / "speeds.toml"
    text = rg.SPEEDS_FILE.read_text(encoding="utf-8")
    table.write_text(text.replace("walk = 2.0", "walk = -2.0").replace(
        'confidence = "secondary"', 'confidence = "sure"'), encoding="utf-8")
    with pytest.raises(TableError) as err:
        read_speeds(table)
    msg = str(err.value)
    assert "classes.steps" in msg and "walk" in msg and "confidence" in msg


# --------------------------------------------------------------------------- arrays, tags


def test_network_from_arrays_infers_one_way_and_lengths() -> None:
    lon = np.array([104.0, 104.01, 104.01])
    lat = np.array([22.0, 22.0, 22.01])
    # 0 <-> 1 two-way, 1 -> 2 one-way (no reverse row given)
    net = network_from_arrays(np.array([7, 8, 9]), lon, lat, np.array([0, 1, 1]), np.array([1, 0, 2]),
                              highway=["unclassified", "unclassified", "tertiary_link"])
    assert net.n_edges == 4 and net.edge_walk_reverse.tolist() == [False, False, False, True]
    assert net.edge_oneway.tolist() == [False, False, True, True]
    assert net.edge_length_m[0] == pytest.approx(1031, rel=0.01)
    assert net.edge_length_m[2] == pytest.approx(1107, rel=0.01)
    # tertiary_link uses the tertiary row
    assert net.edge_time_s["car"][2] == pytest.approx(net.edge_length_m[2] / (30 / 3.6))
    assert net.source_checksum and net.edge_way.tolist() == [-1, -1, -1, -1]


def test_parse_maxspeed() -> None:
    out = parse_maxspeed(["50", "30 mph", "40;60", ["60", "40"], None, float("nan"), "VN:urban", "walk", "0"])
    assert out[:4] == pytest.approx([50, 30 * 1.609344, 40, 40])
    assert np.isnan(out[4:]).all()


def test_region_without_roads_needs_fetch(tmp_path: Path) -> None:
    region = SimpleNamespace(name="Thử", folder=tmp_path, files={})
    with pytest.raises(RoadNetworkError, match="has no road network"):
        region_network(region)  # type: ignore[arg-type]


def test_region_network_reads_and_caches_the_roads_file(toy_graphml: Path, tmp_path: Path) -> None:
    region = SimpleNamespace(name="Thử", folder=tmp_path, files={"roads": toy_graphml})
    net = region_network(region)  # type: ignore[arg-type]
    assert net.n_nodes == 6
    assert len(list((tmp_path / ".cache" / "roads").glob("roads-*.npz"))) == 1


# --------------------------------------------------------------------------- real OSM extract


def test_real_hanoi_extract_loads_caches_and_routes(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "osm" / "hanoi_dong_da.osm"
    net = load_network(src, cache_dir=tmp_path)
    assert net.crs == "EPSG:32648"  # Hà Nội, 105.8°E
    assert 500 < net.n_nodes < 6629  # road nodes only (buildings dropped, ways simplified)
    assert {"primary", "secondary", "tertiary", "residential", "footway"} <= set(net.edge_highway.tolist())
    assert net.edge_oneway.any()
    assert net.edge_walk_reverse.sum() == (net.edge_oneway & ~net.edge_walk_reverse).sum()
    assert (net.edge_length_m > 0).all()
    # two far-apart nodes of the largest strongly connected piece of the motorbike graph
    mat = net.csr("motorbike")
    _, label = csgraph.connected_components(mat, directed=True, connection="strong")
    piece = np.flatnonzero(label == np.bincount(label).argmax())
    assert piece.size > 300
    a = piece[np.argmin(net.x[piece] + net.y[piece])]
    b = piece[np.argmax(net.x[piece] + net.y[piece])]
    crow = np.hypot(net.x[a] - net.x[b], net.y[a] - net.y[b])
    assert crow > 1000
    d, pred = csgraph.dijkstra(mat, indices=[a], return_predecessors=True)
    t = d[0, b]
    assert np.isfinite(t)
    # the path is made of vehicle edges (never a walk-only reverse row) and its times add up
    _, edges = net.csr_with_edges("motorbike")
    steps, q = [], b
    while q != a:
        p = pred[0, q]
        k = mat.indptr[p] + int(np.flatnonzero(mat.indices[mat.indptr[p]:mat.indptr[p + 1]] == q)[0])
        steps.append(edges[k])
        q = p
    assert not net.edge_walk_reverse[steps].any()
    assert net.edge_time_s["motorbike"][steps].sum() == pytest.approx(t)
    assert len(net.edge_lines(np.array(steps))) == len(steps)
    assert crow / (40 / 3.6) < t < 20 * crow / (15 / 3.6)  # no faster than the fastest class
    # the cached copy routes the same
    cached = load_network(src, cache_dir=tmp_path)
    assert csgraph.dijkstra(cached.csr("motorbike"), indices=[a])[0, b] == t


def test_real_bz2_extract_loads(shared_data: Path) -> None:
    net = load_network(shared_data / "osm" / "west_oakland.osm.bz2")
    assert net.crs == "EPSG:32610"  # Oakland, California: UTM 10N
    assert net.n_edges > 50 and (net.edge_way > 0).all()
    assert np.isfinite(net.edge_time_s["walk"]).all()  # every road there is walkable
