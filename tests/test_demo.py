"""The embedded demo region: determinism, plausibility, and the real formats it is written in."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import osmnx as ox
import phonenumbers
import pyflwdir
import pytest
from pyproj import Geod
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree
from shapely.geometry import LineString, box

from ewarn import demo
from ewarn.region import Region, validate_region

UTM48N = "EPSG:32648"
SNAP_M = 500.0


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return demo.build_demo_region(tmp_path_factory.mktemp("demo") / "region")


@pytest.fixture(scope="module")
def region(folder) -> Region:
    return Region.load(folder)


@pytest.fixture(scope="module")
def land() -> demo.DemoLandscape:
    return demo.demo_landscape(demo.DEMO_SEED)


@pytest.fixture(scope="module")
def grid(region):
    """Terrain of the written region and its derived rasters (D8 upstream area, slope)."""
    elev = region.terrain["elevation"]
    z = elev.values.astype(np.float64)
    lat, lon = elev["latitude"].values, elev["longitude"].values
    res = float(lat[1] - lat[0])
    dy = res * 111_195.0
    dx = dy * np.cos(np.radians(lat.mean()))
    # pyflwdir wants north-up rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # affine's `*` inside pyflwdir
        flw = pyflwdir.from_dem(z[::-1].copy(), transform=(res, 0.0, lon[0] - res / 2, 0.0, -res,
                                                           lat[-1] + res / 2), latlon=True, outlets="edge")
        upa = flw.upstream_area("km2")[::-1]
    gy, gx = np.gradient(z, dy, dx)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    return {"z": z, "lat": lat, "lon": lon, "res": res, "dx": dx, "dy": dy, "upa": upa, "slope": slope}


def _cell(grid, lon, lat):
    col = np.round((np.asarray(lon) - grid["lon"][0]) / grid["res"]).astype(int)
    row = np.round((np.asarray(lat) - grid["lat"][0]) / grid["res"]).astype(int)
    return np.clip(row, 0, grid["lat"].size - 1), np.clip(col, 0, grid["lon"].size - 1)


def _utm(lon, lat) -> np.ndarray:
    pts = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs="EPSG:4326").to_crs(UTM48N)
    return np.column_stack([pts.x, pts.y])


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_another_seed_other_households(folder, tmp_path):
    from ewarn.errors import EwarnError

    again = demo.build_demo_region(tmp_path / "again")
    first = _digests(folder)
    assert set(first) >= {"region.toml", "communes.geojson", "terrain.nc", "households.csv",
                          "shelters.csv", "contacts.csv", "roads.graphml"}
    assert _digests(again) == first
    other = _digests(demo.build_demo_region(tmp_path / "other", seed=7))
    assert other["households.csv"] != first["households.csv"]
    assert other["communes.geojson"] == first["communes.geojson"]  # the communes are real
    # an existing folder is kept unless overwrite is asked for
    with pytest.raises(EwarnError):
        demo.build_demo_region(again, seed=7)
    assert _digests(again) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]  # no temp folder left
    demo.build_demo_region(again, seed=7, overwrite=True)
    assert _digests(again) == other


def test_written_region_is_valid(folder, region):
    problems = validate_region(folder)
    assert [p for p in problems if p.severity == "error"] == []
    assert region.warnings == []
    assert region.meta == {"demo": True, "seed": demo.DEMO_SEED}


# ----------------------------------------------------------------------------- terrain


def test_terrain_grid_and_range(region):
    elev = region.terrain["elevation"]
    assert elev.dims == ("latitude", "longitude")
    assert max(elev.shape) <= 800
    assert np.all(np.diff(elev["latitude"].values) > 0) and np.all(np.diff(elev["longitude"].values) > 0)
    res = float(elev["latitude"][1] - elev["latitude"][0])
    assert 0.0005 <= res <= 0.001
    assert float(elev.min()) >= 99.0
    assert float(elev.max()) <= 1801.0
    assert float(elev.max()) - float(elev.min()) > 1500.0


def test_water_drains_to_the_edge(grid):
    z = grid["z"]
    inner = z[1:-1, 1:-1]
    neighbours = ndimage.minimum_filter(z, footprint=np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]]),
                                        mode="nearest")[1:-1, 1:-1]
    assert int(np.sum(inner <= neighbours)) == 0  # no pit in the stored (float32) terrain


def test_streams_run_in_the_carved_valleys(grid, land):
    streams = grid["upa"] >= 2.0  # km²
    assert streams.sum() > 1000
    # stream cells are low and lie on the valley lines the terrain was carved along
    assert grid["z"][streams].mean() < grid["z"].mean() - 150.0
    assert np.mean(land.dist[streams] <= 250.0) > 0.9
    # the largest river leaves the box through the Chảy valley
    r, c = np.unravel_index(np.argmax(grid["upa"]), grid["upa"].shape)
    x, y = demo._to_xy(grid["lon"][c], grid["lat"][r])
    chay = next(v for v in land.valleys if v.spec.name == "Sông Chảy")
    assert chay.line.distance(gpd.points_from_xy([x], [y])[0]) < 500.0
    assert grid["upa"].max() > 300.0


def test_terrain_is_mountainous(grid):
    slope = grid["slope"]
    assert 10.0 < np.median(slope) < 35.0
    assert np.percentile(slope, 95) > 30.0


# ----------------------------------------------------------------------------- communes


def test_communes_partition_the_box(region):
    c = region.communes
    assert c.crs.to_epsg() == 4326
    assert c.geometry.is_valid.all()
    w, s, e, n = demo.DEMO_BOUNDS
    assert region.bounds == pytest.approx((w, s, e, n), abs=1e-6)
    utm = c.to_crs(UTM48N)
    frame = gpd.GeoSeries([box(w, s, e, n)], crs="EPSG:4326").to_crs(UTM48N).area.iloc[0]
    assert utm.area.sum() == pytest.approx(frame, rel=0.01)
    assert utm.union_all().area == pytest.approx(utm.area.sum(), rel=1e-6)  # no overlaps


def test_communes_are_the_real_2025_ones(region, shared_data):
    real = gpd.read_file(shared_data / "communes" / "lao_cai_2025.geojson").set_index("ma_xa")
    c = region.communes.set_index("code")
    assert len(c) == 12
    for code, row in c.iterrows():
        assert code in real.index
        assert row["name"] == real.at[code, "ten_xa"]
        assert row["population"] == int(real.at[code, "dan_so"])
    assert (c["province"] == "Lào Cai").all()
    assert c.at["02998", "name"] == "Phúc Khánh"
    assert c.at["04309", "legacy_province"] == "Yên Bái"
    assert c.at["02947", "legacy_province"] == "Lào Cai"


def test_every_commune_contains_its_real_centre_when_inside_the_box(region):
    c = region.communes.set_index("code")
    for com in demo.COMMUNES:
        w, s, e, n = demo.DEMO_BOUNDS
        if w < com.lon < e and s < com.lat < n:
            assert c.at[com.code, "geometry"].contains(gpd.points_from_xy([com.lon], [com.lat])[0])


# ----------------------------------------------------------------------------- households


def test_households_count_sizes_and_vulnerable_share(region):
    hh = region.households
    assert 4500 <= len(hh) <= 5500
    assert hh["household_id"].is_unique
    assert all(re.fullmatch(r"HH-\d{5}-\d{4}", i) for i in hh["household_id"])
    assert (hh["household_id"].str[3:8] == hh["commune_code"]).all()
    assert hh["people"].between(1, 8).all()
    assert (hh["vulnerable"] <= hh["people"]).all()
    assert 0.07 <= (hh["vulnerable"] > 0).mean() <= 0.13
    assert set(hh["commune_code"]) == set(region.communes["code"])
    # bigger communes have more households
    per = hh.groupby("commune_code").size()
    assert per["02989"] > per["02998"]  # Bảo Hà (34,115 people) vs Phúc Khánh (8,534)


def test_households_live_in_the_valleys(region, grid):
    hh = region.households
    r, c = _cell(grid, hh["lon"], hh["lat"])
    assert grid["z"][r, c].mean() < grid["z"].mean() - 200.0
    assert np.median(grid["slope"][r, c]) < np.median(grid["slope"])


def test_a_lang_nu_like_hamlet_sits_on_a_stream_bank_under_a_steep_slope(region, grid):
    hh = region.households[region.households["commune_code"] == "02998"]
    streams = grid["upa"] >= 1.0
    to_stream = ndimage.distance_transform_edt(~streams, sampling=(grid["dy"], grid["dx"]))
    steep_nearby = ndimage.maximum_filter(grid["slope"], size=7)  # within ~250 m
    r, c = _cell(grid, hh["lon"], hh["lat"])
    on_bank = (to_stream[r, c] <= 100.0) & (steep_nearby[r, c] > 25.0)
    assert on_bank.sum() >= 20
    # ... and they form one hamlet: clustered within 1 km
    pts = _utm(hh["lon"].to_numpy()[on_bank], hh["lat"].to_numpy()[on_bank])
    tree = cKDTree(pts)
    assert max(len(tree.query_ball_point(p, 1000.0)) for p in pts) >= 20


# ----------------------------------------------------------------------------- shelters


def test_resettlement_sites_on_gentle_dry_ground(region, grid):
    sites = region.shelters[region.shelters["kind"] == "resettlement"]
    assert list(sites["shelter_id"]) == ["TDC-02998", "TDC-02947", "TDC-04342"]
    assert sites["name"].str.startswith("Khu tái định cư xã ").all()
    r, c = _cell(grid, sites["lon"], sites["lat"])
    assert (grid["slope"][r, c] < 10.0).all()
    streams = grid["upa"] >= 2.0
    to_stream = ndimage.distance_transform_edt(~streams, sampling=(grid["dy"], grid["dx"]))
    assert (to_stream[r, c] >= 200.0).all()


def test_shelters_per_commune_names_and_safer_ground(region, grid):
    sh = region.shelters
    assert sh["shelter_id"].is_unique
    sh = sh[sh["kind"] != "resettlement"]
    per = sh["shelter_id"].str[3:8].value_counts()
    assert set(per.index) == set(region.communes["code"])
    assert per.between(2, 4).all()
    assert "UBND xã Phúc Khánh" in set(sh["name"])
    assert sh["name"].str.match(r"^(UBND xã|Trường THCS|Trường Tiểu học|Trạm Y tế xã) ").all()
    assert set(sh["kind"]) <= {"commune_office", "school", "health_station"}
    r, c = _cell(grid, sh["lon"], sh["lat"])
    assert (grid["slope"][r, c] < 25.0).all()
    streams = grid["upa"] >= 2.0
    to_stream = ndimage.distance_transform_edt(~streams, sampling=(grid["dy"], grid["dx"]))
    assert np.median(to_stream[r, c]) >= 150.0
    # each shelter stands higher than the households around it
    hh = region.households
    hr, hc = _cell(grid, hh["lon"], hh["lat"])
    tree = cKDTree(_utm(hh["lon"], hh["lat"]))
    higher = []
    for p, z in zip(_utm(sh["lon"], sh["lat"]), grid["z"][r, c], strict=True):
        near = tree.query_ball_point(p, 2000.0)
        if near:
            higher.append(z > grid["z"][hr[near], hc[near]].mean())
    assert len(higher) >= 0.9 * len(sh)
    assert np.mean(higher) >= 0.8


def test_shelter_capacity_is_short_of_the_people_at_risk(region, land):
    hh, sh = region.households, region.shelters
    exposed = demo.hazard_exposed(land, hh["lon"].to_numpy(), hh["lat"].to_numpy())
    at_risk = hh["people"][exposed]
    assert 0.7 <= sh["capacity"].sum() / at_risk.sum() <= 0.9
    need = hh["people"].where(exposed, 0).groupby(hh["commune_code"]).sum()
    cap = sh.groupby(sh["shelter_id"].str[3:8])["capacity"].sum()
    assert (cap < need.reindex(cap.index)).any()  # some communes cannot shelter everyone


# ----------------------------------------------------------------------------- roads


def test_roads_are_an_osmnx_graph(region):
    g = region.roads  # read back through ox.load_graphml
    assert isinstance(g, nx.MultiDiGraph)
    assert g.graph["crs"] == "EPSG:4326"
    assert all(isinstance(n, int) for n in g.nodes)
    highways = {d["highway"] for *_, d in g.edges(data=True)}
    assert {"trunk", "tertiary", "path"} <= highways and highways & {"unclassified", "track"}
    geod = Geod(ellps="WGS84")
    for u, v, k, d in g.edges(keys=True, data=True):
        assert k == 0
        assert isinstance(d["geometry"], LineString)
        assert d["geometry"].coords[0] == (g.nodes[u]["x"], g.nodes[u]["y"])
        assert d["geometry"].coords[-1] == (g.nodes[v]["x"], g.nodes[v]["y"])
        assert isinstance(d["oneway"], bool) and isinstance(d["length"], float)
        if not d["oneway"]:
            back = g.edges[v, u, 0]
            assert back["reversed"] != d["reversed"] and back["osmid"] == d["osmid"]
    lengths = np.array([d["length"] for *_, d in g.edges(data=True)])
    geodesic = np.array([geod.geometry_length(d["geometry"]) for *_, d in g.edges(data=True)])
    np.testing.assert_allclose(lengths, geodesic, rtol=5e-3, atol=0.5)
    timed = ox.routing.add_edge_travel_times(ox.routing.add_edge_speeds(g.copy()))
    assert all(d["travel_time"] > 0 for *_, d in timed.edges(data=True))
    oneway = [(u, v) for u, v, d in g.edges(data=True) if d["oneway"]]
    assert 2 <= len(oneway) <= 20
    assert all(not g.has_edge(v, u) for u, v in oneway)


def test_every_household_snaps_to_the_graph_and_reaches_every_shelter(region):
    g = region.roads
    nodes = np.array(list(g.nodes))
    xy = _utm([g.nodes[n]["x"] for n in nodes], [g.nodes[n]["y"] for n in nodes])
    tree = cKDTree(xy)
    hh, sh = region.households, region.shelters
    d_hh, i_hh = tree.query(_utm(hh["lon"], hh["lat"]))
    d_sh, i_sh = tree.query(_utm(sh["lon"], sh["lat"]))
    assert d_hh.max() <= SNAP_M
    assert d_sh.max() <= 50.0
    index = {n: i for i, n in enumerate(nodes)}
    u = np.array([index[a] for a, _ in g.edges()])
    v = np.array([index[b] for _, b in g.edges()])
    adj = sparse.coo_array((np.ones(u.size), (u, v)), shape=(nodes.size, nodes.size))
    _, label = csgraph.connected_components(adj, directed=True, connection="strong")
    assert np.unique(label[np.r_[i_hh, i_sh]]).size == 1


def test_graphml_round_trip_projection_and_routing(tmp_path, land):
    hamlets = demo.demo_hamlets(land)
    households = demo.demo_households(land, hamlets)
    shelters = demo.demo_shelters(land, hamlets, households)
    g = demo.demo_roads(land, hamlets, shelters)
    path = tmp_path / "roads.graphml"
    ox.save_graphml(g, path)
    back = ox.load_graphml(path)
    assert sorted(back.nodes) == sorted(g.nodes)
    assert sorted(back.edges(keys=True)) == sorted(g.edges(keys=True))
    e = next(iter(g.edges(keys=True)))
    assert back.edges[e]["length"] == pytest.approx(g.edges[e]["length"])
    assert back.edges[e]["geometry"].equals(g.edges[e]["geometry"])
    projected = ox.project_graph(back)
    assert projected.graph["crs"] != "EPSG:4326"
    assert ox.convert.graph_to_gdfs(projected, nodes=False).crs.is_projected
    # osmnx routing from the Làng Nủ-like hamlet to a Phúc Khánh shelter
    nu = hamlets[hamlets["kind"] == "stream_bank"].iloc[0]
    sh = shelters[shelters["commune_code"] == "02998"].iloc[0]
    nodes = np.array(list(back.nodes))
    xy = np.array([(back.nodes[n]["x"], back.nodes[n]["y"]) for n in nodes])
    _, (a, b) = cKDTree(xy).query([[nu["lon"], nu["lat"]], [sh["lon"], sh["lat"]]])
    route = ox.shortest_path(back, int(nodes[a]), int(nodes[b]), weight="length")
    assert route is not None and route[0] == nodes[a] and route[-1] == nodes[b]


# ----------------------------------------------------------------------------- contacts


def test_two_demo_officials_per_commune_and_two_province_operators(region):
    from ewarn.config import AlertSettings
    from ewarn.demo import OPERATOR_ROLE

    every = region.contacts
    assert every["demo"].all() and every["phone"].is_unique
    ops = every[every["role"] == OPERATOR_ROLE]
    assert len(ops) == 2 and sorted(ops["language"]) == ["en", "vi"]
    assert OPERATOR_ROLE in AlertSettings().operator_roles
    ct = every[every["role"] != OPERATOR_ROLE]
    assert len(ct) == 2 * len(region.communes)
    assert (ct.groupby("commune_code").size() == 2).all()
    assert (ct["language"] == "vi").all()
    assert (ct.groupby("commune_code")["unaccented"].sum() == 1).all()
    assert (ct.groupby("commune_code")["role"].first() == "Chủ tịch UBND xã").all()
    for number in every["phone"]:
        parsed = phonenumbers.parse(number)
        assert phonenumbers.is_valid_number(parsed) and parsed.country_code == 84
        assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
        assert number == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
