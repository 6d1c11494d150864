"""A scenario's changes to the region: shelters, new settlements, road closures."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import shapely

from ewarn import demo
from ewarn.region import Region
from ewarn.scenarios.changes import apply_changes, check_closures, road_closures
from ewarn.scenarios.schema import ScenarioError, load_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios"
HEAD = '[scenario]\nname = "thay đổi"\n'
#: A small area in Phúc Khánh (02998), inside the demo region.
SQUARE = "[[104.5703, 22.1508], [104.5737, 22.1508], [104.5737, 22.1537], [104.5703, 22.1537]]"


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> Region:
    return Region.load(demo.build_demo_region(tmp_path_factory.mktemp("demo") / "region"))


@pytest.fixture(scope="module")
def land() -> demo.DemoLandscape:
    return demo.demo_landscape(demo.DEMO_SEED)


def changes_of(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(HEAD + text, encoding="utf-8")
    sc = load_scenario(path)
    return sc.changes, sc.scenario.seed, str(path)


def applied(region, tmp_path, text: str, **kw) -> Region:
    changes, seed, file = changes_of(tmp_path, text)
    return apply_changes(region, changes, seed=seed, file=file, **kw)


def refused(region, tmp_path, text: str) -> list:
    with pytest.raises(ScenarioError) as info:
        applied(region, tmp_path, text)
    return info.value.problems


# --------------------------------------------------------------------------- shelters


def test_shelters_opened_closed_and_resized_in_a_copy(region, tmp_path):
    before = region.shelters.copy()
    out = applied(region, tmp_path, """
[[changes.shelters]]
action = "open"
shelter_id = "SH-NEW-1"
name = "Nhà văn hóa thôn mới"
lon = 104.572
lat = 22.152
capacity = 300
[[changes.shelters]]
action = "close"
shelter_id = "SH-02998-3"
[[changes.shelters]]
action = "resize"
shelter_id = "SH-02998-1"
capacity = 40
""")
    sh = out.shelters.set_index("shelter_id")
    assert len(out.shelters) == len(before)  # one opened, one closed
    assert "SH-02998-3" not in sh.index
    assert sh.loc["SH-02998-1", "capacity"] == 40
    new = sh.loc["SH-NEW-1"]
    assert (new["name"], new["capacity"], new["kind"]) == ("Nhà văn hóa thôn mới", 300, "other")
    assert out.shelters.dtypes.to_dict() == before.dtypes.to_dict()
    assert region.shelters.equals(before)  # the region itself is unchanged
    assert out.households is region.households and out.communes is region.communes


def test_shelter_problems_are_all_reported_with_their_entry(region, tmp_path):
    problems = refused(region, tmp_path, """
[[changes.shelters]]
action = "close"
shelter_id = "SH-02998-9"
[[changes.shelters]]
action = "open"
shelter_id = "SH-02998-1"
name = "x"
lon = 104.5
lat = 22.2
capacity = 10
[[changes.shelters]]
action = "open"
shelter_id = "SH-FAR"
name = "xa"
lon = 105.8
lat = 21.0
capacity = 10
""")
    assert [p.where for p in problems] == [f"entry {i} of [[changes.shelters]]" for i in (1, 2, 3)]
    assert problems[0].message.startswith("shelter 'SH-02998-9' is not in the region's shelters "
                                          "(did you mean")
    assert problems[1].message.startswith("shelter 'SH-02998-1' already exists in the region")
    assert problems[2].field == "changes.shelters.lon" and "is outside the region" in problems[2].message
    assert all(p.file == str(tmp_path / "s.toml") for p in problems)


# --------------------------------------------------------------------------- settlements


def test_new_settlement_households_lie_inside_the_polygon_deterministically(region, tmp_path):
    text = f'[[changes.settlements]]\nname = "Khu mới"\npolygon = {SQUARE}\nhouseholds = 400\n'
    out = applied(region, tmp_path, text)
    new = out.households.iloc[len(region.households):]
    assert len(out.households) == len(region.households) + 400
    poly = shapely.Polygon(json.loads(SQUARE))
    assert shapely.contains_xy(poly, new["lon"].to_numpy(), new["lat"].to_numpy()).all()
    assert set(new["commune_code"]) == {"02998"}  # the commune the points lie in
    assert new["household_id"].is_unique
    assert not set(new["household_id"]) & set(region.households["household_id"])
    assert (new["people"] >= 1).all() and (new["vulnerable"] <= new["people"]).all()
    # default household size: the region's mean
    assert new["people"].mean() == pytest.approx(region.households["people"].mean(), abs=0.3)
    assert out.households.dtypes.to_dict() == region.households.dtypes.to_dict()
    again = applied(region, tmp_path, text)
    assert again.households.equals(out.households)
    other = apply_changes(region, changes_of(tmp_path, text)[0], seed=7)
    assert not other.households.iloc[len(region.households):][["lon", "lat"]].equals(new[["lon", "lat"]])


def test_settlement_size_and_vulnerable_share_follow_the_scenario(region, tmp_path):
    out = applied(region, tmp_path, f'[[changes.settlements]]\nname = "Khu"\npolygon = {SQUARE}\n'
                                    "households = 2000\npeople_per_household = 6.0\nvulnerable_share = 0.5\n"
                                    'commune_code = "04381"\n')
    new = out.households.iloc[len(region.households):]
    assert new["people"].mean() == pytest.approx(6.0, abs=0.15)
    assert new["vulnerable"].sum() / new["people"].sum() == pytest.approx(0.5, abs=0.03)
    assert set(new["commune_code"]) == {"04381"}


def test_settlement_outside_the_region_or_in_an_unknown_commune_is_refused(region, tmp_path):
    problems = refused(region, tmp_path, """
[[changes.settlements]]
name = "Hà Nội"
polygon = [[105.80, 21.00], [105.82, 21.00], [105.82, 21.02]]
households = 5
[[changes.settlements]]
name = "x"
polygon = [[104.57, 22.15], [104.572, 22.15], [104.572, 22.152]]
households = 5
commune_code = "99999"
""")
    assert problems[0].where == "entry 1 of [[changes.settlements]]"
    assert problems[0].message.startswith("5 of the 5 households fall outside the region's communes")
    assert problems[1].field == "changes.settlements.commune_code"
    assert problems[1].message.startswith("commune '99999' is not in the region")


# --------------------------------------------------------------------------- road closures


def test_road_closures_are_normalized_for_routing(tmp_path):
    changes, _, _ = changes_of(tmp_path, "[changes]\nclose_ways = [100005, 100002, 100005]\n"
                                         f'[[changes.close_polygons]]\nname = "cầu"\ncoordinates = {SQUARE}\n'
                                         f"[[changes.close_polygons]]\ncoordinates = {SQUARE}\n")
    rc = road_closures(changes)
    assert rc.way_ids == (100002, 100005)
    assert list(rc.polygons.index) == ["cầu", "polygon 2"]
    assert rc.polygons.crs.to_epsg() == 4326 and rc.polygons.is_valid.all()
    assert bool(rc) and not road_closures(changes_of(tmp_path, "")[0])


def test_closures_checked_against_the_road_graph(region, tmp_path):
    problems = refused(region, tmp_path, "[changes]\nclose_ways = [100002, 4242]\n"
                                         "[[changes.close_polygons]]\ncoordinates = "
                                         "[[104.40, 22.05], [104.401, 22.05], [104.401, 22.051]]\n")
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    assert len(errors) == 1 and errors[0].field == "changes.close_ways"
    assert errors[0].message.startswith("way id(s) 4242 are not in the region's road network")
    assert len(warnings) == 1 and "crosses no road" in warnings[0].message
    # warnings alone do not refuse the scenario; they are kept on the region
    out = applied(region, tmp_path, "[[changes.close_polygons]]\ncoordinates = "
                                    "[[104.40, 22.05], [104.401, 22.05], [104.401, 22.051]]\n")
    assert any("crosses no road" in p.message for p in out.warnings)


# --------------------------------------------------------------------------- the examples on the demo region


def test_bridge_out_cuts_the_phuc_khanh_valley_road_and_isolates_the_upper_valley(region):
    sc = load_scenario(EXAMPLES / "yagi-2024-bridge-out.toml")
    out = apply_changes(region, sc.changes, seed=sc.scenario.seed, file=str(sc.file))
    assert not [p for p in out.warnings if "crosses no road" in p.message]
    cut = road_closures(sc.changes).polygons.iloc[0]
    g = region.roads
    hit = [(u, v, k) for u, v, k, d in g.edges(keys=True, data=True) if d["geometry"].intersects(cut)]
    names = {(g.edges[e]["osmid"], g.edges[e]["name"]) for e in hit}
    assert names == {(100002, "Đường liên xã Phúc Khánh")}
    open_graph = g.copy()
    open_graph.remove_edges_from(hit)
    parts = sorted(nx.weakly_connected_components(open_graph), key=len)
    assert len(parts) == 2  # the upper valley is cut off ...
    upper = parts[0]
    node_xy = np.array([[g.nodes[n]["x"], g.nodes[n]["y"]] for n in upper])
    evac = region.shelters[region.shelters["kind"] != "resettlement"]  # not evacuation shelters
    shelters_xy = evac[["lon", "lat"]].to_numpy()
    near = np.hypot(*(shelters_xy[:, None, :] - node_xy[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    assert (near > 0.003).all()  # ... and no shelter stands there
    assert check_closures(road_closures(sc.changes), g) == []


def test_new_shelter_gives_phuc_khanh_the_places_it_lacks(region, land):
    sc = load_scenario(EXAMPLES / "yagi-2024-new-shelter.toml")
    out = apply_changes(region, sc.changes, seed=sc.scenario.seed)

    def capacity(r: Region) -> int:
        inside = r.commune_of(r.shelters["lon"].to_numpy(), r.shelters["lat"].to_numpy()) == "02998"
        return int(r.shelters.loc[inside, "capacity"].sum())

    people = int(region.households.loc[region.households["commune_code"] == "02998", "people"].sum())
    assert capacity(region) < people <= capacity(out)
    new = out.shelters.iloc[-1]
    assert not demo.hazard_exposed(land, np.array([new["lon"]]), np.array([new["lat"]]))[0]


def test_relocation_site_households_are_in_phuc_khanh_on_screened_ground(region, land):
    sc = load_scenario(EXAMPLES / "relocation-2026.toml")
    out = apply_changes(region, sc.changes, seed=sc.scenario.seed)
    new = out.households.iloc[len(region.households):]
    assert len(new) == 40 and set(new["commune_code"]) == {"02998"}
    assert not demo.hazard_exposed(land, new["lon"].to_numpy(), new["lat"].to_numpy()).any()
