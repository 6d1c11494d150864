"""Evacuation plan on the demo region and the demo storm (issue #5 "Must show")."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from pyproj import Geod

from ewarn.config import RoutingSettings
from ewarn.demo import build_demo_region, build_demo_storm
from ewarn.errors import WorkspaceError
from ewarn.hazard_models import assess_forecast
from ewarn.hazard_models.cells import hazard_cells
from ewarn.region import Region
from ewarn.routing import plan as rplan
from ewarn.routing.graph import region_network

PHUC_KHANH = "02998"
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    build_demo_region(root / "region")
    region = Region.load(root / "region")
    storm = build_demo_storm(region, root / "storm.nc")
    with xr.open_dataset(storm) as ds:
        forecast = ds.load()
    cache = root / "cache"
    assessment = assess_forecast(forecast, region, cache_dir=cache)
    cells = hazard_cells(forecast, region, cache_dir=cache)  # the whole forecast: who is threatened
    start = pd.Timestamp(assessment.attrs["forecast_reference_time"])
    road_cells = hazard_cells(forecast, region, cache_dir=cache, start=start,
                              end=start + pd.Timedelta(hours=24))  # the planning window: roads now
    net = region_network(region, cache / "roads")
    plan = rplan.plan_evacuation(region, assessment, cells, rplan.PlanOptions(), network=net,
                                 road_cells=road_cells)
    return {"root": root, "region": region, "assessment": assessment, "cells": cells, "net": net,
            "plan": plan, "folder": rplan.write_plan(plan, root / "plans" / "demo")}


def _distance_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def test_phuc_khanh_stream_bank_households_move(demo):
    region, cells, plan = demo["region"], demo["cells"], demo["plan"]
    assert int(demo["assessment"]["level_max"].sel(commune=PHUC_KHANH)) >= 2
    hh = region.households.reset_index(drop=True)
    pk = np.flatnonzero(hh["commune_code"].to_numpy() == PHUC_KHANH)
    # independent oracle: geodesic distance of every Phúc Khánh house to every threatened stream cell
    rows, cols = np.nonzero(cells["stream_threatened"].to_numpy())
    clat, clon = cells["latitude"].to_numpy()[rows], cells["longitude"].to_numpy()[cols]
    hlon = np.repeat(hh["lon"].to_numpy()[pk], clon.size)
    hlat = np.repeat(hh["lat"].to_numpy()[pk], clon.size)
    d = _distance_m(hlon, hlat, np.tile(clon, pk.size), np.tile(clat, pk.size)).reshape(pk.size, clon.size)
    dmin = d.min(axis=1)
    sure_in, sure_out = dmin <= 150.0 * 0.998, dmin > 150.0 * 1.002  # UTM scale (< 0.1 %) vs geodesic
    got = plan.households.iloc[pk]
    reason = got["reason_to_move"].to_numpy().astype(str)
    assert sure_in.sum() >= 50  # the Làng Nủ-like hamlet sits on a stream bank
    assert got["must_move"].to_numpy()[sure_in].all()
    assert all(r.startswith("stream_bank") for r in reason[sure_in])
    assert not any(r.startswith("stream_bank") for r in reason[sure_out])
    # everyone else moves only for a triggered landslide cell
    assert set(reason[sure_out & got["must_move"].to_numpy()]) <= {"landslide"}


def test_every_household_that_must_move_arrives_before_its_deadline_or_has_a_reason(demo):
    plan = demo["plan"]
    mv = plan.households[plan.households["must_move"]]
    assert len(mv) > 0
    ok = (mv["shelter_id"].notna() & np.isfinite(mv["travel_time_s"]) & (mv["arrival"] <= mv["deadline"])
          & (mv["unassigned_reason"] == ""))
    listed = mv["unassigned_reason"] != ""
    assert (ok | listed).all()
    assert set(mv.loc[listed, "unassigned_reason"]) <= set(rplan.UNASSIGNED_REASONS) | {rplan.LATE}
    pk = mv[mv["commune_code"] == PHUC_KHANH]
    assert len(pk) > 0 and (ok[pk.index] | listed[pk.index]).all()
    # departures are waves from the plan start; arrival = departure + door-to-door time
    a = mv[mv["shelter_id"].notna()]
    assert (a["departure"] >= plan.start).all()
    dt = (a["arrival"] - a["departure"]).dt.total_seconds()
    np.testing.assert_allclose(dt, a["travel_time_s"], atol=1.0)
    assert (a["travel_time_s"] <= plan.options.max_travel_minutes * 60 + 1).all()
    # those sheltering in place get no shelter
    stay = plan.households[~plan.households["must_move"]]
    assert stay["shelter_id"].isna().all() and (stay["route_id"] == -1).all()


def test_no_shelter_over_capacity_and_unsafe_shelters_unused(demo):
    plan = demo["plan"]
    sh = plan.shelters
    assert (sh["load"] <= sh["capacity"]).all()
    load = plan.households.groupby("shelter_id")["people"].sum()
    np.testing.assert_array_equal(sh.set_index("shelter_id")["load"].reindex(load.index), load)
    unsafe = sh.loc[~sh["usable"], "shelter_id"]
    assert len(unsafe) > 0 and set(sh.loc[~sh["usable"], "excluded_reason"]) <= {"stream_bank", "landslide",
                                                                                  "no_road_nearby"}
    assert not plan.households["shelter_id"].isin(unsafe).any()


def test_routes_geojson_is_rfc7946_and_joins_houses_to_shelters(demo):
    plan, region = demo["plan"], demo["region"]
    doc = json.loads((demo["folder"] / "routes.geojson").read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert len(doc["features"]) == len(plan.routes) > 0
    w, s, e, n = region.bounds
    for f in doc["features"]:
        assert f["geometry"]["type"] == "LineString"
        xy = np.asarray(f["geometry"]["coordinates"])
        assert xy.shape[1] == 2 and len(xy) >= 2
        assert ((xy[:, 0] >= w - 0.01) & (xy[:, 0] <= e + 0.01)).all()  # lon first
        assert ((xy[:, 1] >= s - 0.01) & (xy[:, 1] <= n + 0.01)).all()
    # each household's route starts near its house and ends at its shelter
    where = region.households[["household_id", "lon", "lat"]].astype({"household_id": "string"})
    hh = plan.households[plan.households["shelter_id"].notna()].merge(where, on="household_id")
    sh = region.shelters.set_index("shelter_id")
    geoms = plan.routes.geometry.to_numpy()[hh["route_id"].to_numpy()]
    first = shapely.get_coordinates(shapely.get_point(geoms, 0))
    last = shapely.get_coordinates(shapely.get_point(geoms, -1))
    d0 = _distance_m(hh["lon"].to_numpy(), hh["lat"].to_numpy(), first[:, 0], first[:, 1])
    assert (d0 <= plan.options.max_snap_m).all()
    np.testing.assert_allclose(last[:, 0], sh.loc[hh["shelter_id"], "lon"], atol=1e-9)
    np.testing.assert_allclose(last[:, 1], sh.loc[hh["shelter_id"], "lat"], atol=1e-9)
    assert (plan.routes["shelter_id"].to_numpy()[hh["route_id"]] == hh["shelter_id"].to_numpy()).all()


def test_routes_follow_real_road_geometry(demo):
    plan, net = demo["plan"], demo["net"]
    off, edges = plan.route_offsets, plan.route_edges
    r = int(np.argmax(np.diff(off)))  # the longest route in edges
    e = edges[off[r]:off[r + 1]]
    assert (net.edge_v[e[:-1]] == net.edge_u[e[1:]]).all()  # a connected path
    road = shapely.line_merge(shapely.MultiLineString(net.edge_lines(e)))
    line = plan.routes.geometry.iloc[r]
    # the route line holds every vertex of the edge polylines (real geometry, not straight hops)
    pts = shapely.get_coordinates(road)
    assert np.isin(pts.view("f8,f8"), shapely.get_coordinates(line).view("f8,f8")).all()
    assert len(pts) > len(e) + 1  # bends, not only node to node


def test_clearance_time_is_the_last_arrival_of_each_commune(demo):
    plan = demo["plan"]
    mv = plan.households[plan.households["must_move"] & plan.households["shelter_id"].notna()]
    last = mv.groupby("commune_code")["arrival"].max()
    c = plan.communes.set_index("commune_code")
    pd.testing.assert_series_equal(c.loc[last.index, "clearance_time"], last, check_names=False)
    in_pk = plan.households["commune_code"] == PHUC_KHANH
    assert c.loc[PHUC_KHANH, "households_to_move"] == (plan.households["must_move"] & in_pk).sum()
    totals = c[["households_to_move", "assigned", "unassigned"]].sum()
    assert totals["assigned"] + totals["unassigned"] == totals["households_to_move"]


def test_assisted_evacuation_lists_vulnerable_people_per_commune_centre(demo):
    plan = demo["plan"]
    mv = plan.households[plan.households["must_move"]]
    want = mv[mv["vulnerable"] > 0].groupby("commune_code")["vulnerable"].sum()
    got = plan.assisted.set_index("commune_code")["people"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False, check_dtype=False)
    assert (plan.assisted["vehicles"] >= 1).all()
    ok = plan.assisted[plan.assisted["reachable"]]
    assert (ok["pickup_by"] >= plan.start).all()


def test_written_files(demo):
    folder = demo["folder"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["plan.csv", "routes.geojson", "shelters.csv", "communes.csv", "assisted.csv", "closures.csv",
         "summary.json"])
    rows = pd.read_csv(folder / "plan.csv", dtype=str, keep_default_na=False)
    plan = demo["plan"]
    assert len(rows) == plan.households["must_move"].sum()
    for col in ("household_id", "commune_code", "people", "shelter_id", "travel_time_s", "distance_m",
                "departure", "arrival", "deadline", "unassigned_reason", "departure_local"):
        assert col in rows.columns
    done = rows[rows["shelter_id"] != ""]
    assert done["departure"].str.endswith("Z").all() and done["departure_local"].str.endswith("+0700").all()
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["households_to_move"] == len(rows)
    assert summary["assigned"] + summary["unassigned"] == len(rows)
    assert summary["shelters_over_capacity"] == 0
    assert PHUC_KHANH in summary["clearance_time"]
    assert "ven suối" in json.dumps(summary, ensure_ascii=False)


def test_hazard_closures_are_avoided_or_reported(demo):
    # roads closed by the hazard of the whole forecast (the storm at its peak)
    plan = rplan.plan_evacuation(demo["region"], demo["assessment"], demo["cells"], rplan.PlanOptions(),
                             network=demo["net"])
    assert plan.closed_edges.sum() > 0
    assert set(plan.closures["reason"]) <= {"flash_flood_stream", "landslide", "flash_flood_stream;landslide"}
    assert not plan.closed_edges[plan.route_edges].any()
    mv = plan.households[plan.households["must_move"]]
    bad = mv[mv["shelter_id"].isna()]
    assert len(bad) > 0 and (bad["unassigned_reason"] != "").all()
    assert "road_closed" in set(bad["unassigned_reason"])


def test_planner_closure_of_a_used_way_reroutes(demo):
    plan, net = demo["plan"], demo["net"]
    used = np.bincount(plan.route_edges, minlength=net.n_edges)
    ways = net.edge_way[np.argsort(-used)]
    way = int(ways[ways >= 0][0])
    opt = replace(plan.options, closures_way_ids=(way,))
    calm = xr.zeros_like(demo["cells"][["stream_threatened", "landslide_triggered"]])
    p2 = rplan.plan_evacuation(demo["region"], demo["assessment"], demo["cells"], opt, network=net,
                               road_cells=calm)
    closed = np.isin(np.arange(net.n_edges), net.way_edges[net.way_ids == way]) | (net.edge_way == way)
    assert closed[p2.closed_edges].all() and p2.closed_edges[closed].all()
    assert not np.isin(p2.route_edges, np.flatnonzero(closed)).any()
    assert (p2.closures["reason"] == f"planner:way {way}").all()


def test_without_terrain_every_household_of_a_commune_at_the_level_moves(demo):
    region = demo["region"]
    two = replace(region, households=region.households[region.households["commune_code"].isin(
        [PHUC_KHANH, "03103"])])  # level 3 and level 1 in the demo storm
    plan = rplan.plan_evacuation(two, demo["assessment"], None, rplan.PlanOptions(level=3),
                                 network=demo["net"])
    lvl = demo["assessment"]["level_max"].to_series()
    assert (lvl[PHUC_KHANH], lvl["03103"]) == (3, 1)
    hh = plan.households
    assert (hh["must_move"] == (hh["commune_code"] == PHUC_KHANH)).all()
    assert set(hh.loc[hh["must_move"], "reason_to_move"]) == {"commune_level"}
    assert any("no hazard grid" in w for w in plan.warnings)


def test_write_plan_is_all_or_nothing(demo, tmp_path, monkeypatch):
    folder = tmp_path / "plan"
    folder.mkdir()
    (folder / "stale.txt").write_text("old", encoding="utf-8")
    rplan.write_plan(demo["plan"], folder)
    assert not (folder / "stale.txt").exists() and (folder / "plan.csv").exists()
    before = (folder / "plan.csv").read_bytes()

    real_write = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name == "shelters.csv":  # fail half-way through the files
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(WorkspaceError, match="No space left"):
        rplan.write_plan(demo["plan"], folder)
    assert (folder / "plan.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan"]  # no temporary folder left


def test_options_mirror_settings_and_refuse_bad_values():
    s = RoutingSettings(mode="walk", evacuation_level=3, stream_buffer_m=200.0, landslide_roads="slow")
    o = rplan.PlanOptions.from_settings(s, max_snap_m=500.0)
    assert (o.mode, o.level, o.stream_buffer_m, o.landslide_roads, o.max_snap_m) == ("walk", 3, 200.0,
                                                                                      "slow", 500.0)
    assert o.max_travel_minutes == s.max_travel_minutes and o.candidate_shelters == s.candidate_shelters
    with pytest.raises(rplan.PlanInputError, match="mode='boat'"):
        rplan.PlanOptions(mode="boat")
    with pytest.raises(rplan.PlanInputError, match="level=7"):
        rplan.PlanOptions(level=7)
    with pytest.raises(rplan.PlanInputError, match="closures_polygons"):
        rplan.PlanOptions(closures_polygons=("POLYGON((0 0, 1 0, 1 1, 0 0))",))
    assert json.loads(json.dumps(rplan.PlanOptions(closures_polygons=(shapely.box(104, 22, 104.1, 22.1),))
                                 .as_dict()))["closures_polygons"][0].startswith("POLYGON")


def test_assessment_without_levels_is_refused(demo):
    bad = demo["assessment"].drop_vars("onset_time")
    with pytest.raises(rplan.PlanInputError, match="onset_time"):
        rplan.plan_evacuation(demo["region"], bad, demo["cells"], network=demo["net"])
    with pytest.raises(rplan.PlanInputError, match="stream_threatened"):
        rplan.plan_evacuation(demo["region"], demo["assessment"],
                              demo["cells"].drop_vars("stream_threatened"), network=demo["net"])


def test_hazard_zone_buffer_in_metres():
    lat = np.array([22.0, 22.001, 22.002])
    lon = np.array([104.0, 104.001, 104.002])
    thr = np.zeros((3, 3), bool)
    thr[1, 1] = True
    cells = xr.Dataset({"stream_threatened": (("latitude", "longitude"), thr),
                        "landslide_triggered": (("latitude", "longitude"), np.eye(3, dtype=bool)[::-1])},
                       coords={"latitude": lat, "longitude": lon})
    # points 50 m, 140 m and 160 m east of the threatened cell centre; one far point on a triggered cell
    m_per_deg = 111_320 * math.cos(math.radians(22.001))
    plon = 104.001 + np.array([50.0, 140.0, 160.0]) / m_per_deg
    near, slide = rplan.hazard_zone(np.r_[plon, 104.0], np.r_[np.full(3, 22.001), 22.002], cells,
                                stream_buffer_m=150.0, crs="EPSG:32648")
    assert near.tolist() == [True, True, False, False]
    # triggered cells: (row, col) = (0, 2), (1, 1), (2, 0); 50 m east is still in cell (1, 1)
    assert slide.tolist() == [True, False, False, True]


def test_households_that_cannot_arrive_in_time_keep_their_shelter_and_are_flagged(demo):
    # planning 30 min after Khánh Hòa's onset - margin: nobody there can arrive in time
    a = demo["assessment"]
    onset = pd.Timestamp(a["onset_time"].sel(commune="04342").item()).tz_localize("UTC")
    now = onset - pd.Timedelta(minutes=30)
    calm = xr.zeros_like(demo["cells"][["stream_threatened", "landslide_triggered"]])
    region = demo["region"]
    kh = replace(region, households=region.households[region.households["commune_code"] == "04342"])
    plan = rplan.plan_evacuation(kh, a, demo["cells"], rplan.PlanOptions(now=now.to_pydatetime()),
                                 network=demo["net"], road_cells=calm)
    assert plan.start == now
    kh = plan.households[plan.households["must_move"] & (plan.households["commune_code"] == "04342")]
    got = kh[kh["shelter_id"].notna()]
    assert len(got) > 0 and got["late"].all()
    assert (got["unassigned_reason"] == rplan.LATE).all()
    assert (got["arrival"] > got["deadline"]).all()
    assert plan.communes.set_index("commune_code").loc["04342", "late"] == len(got)
    assert any("before their deadline" in w for w in plan.warnings)
    assert plan.summary()["unassigned_by_reason"][rplan.LATE]["households"] >= len(got)


def test_a_plan_where_nobody_must_move_is_written_empty(demo, tmp_path):
    plan = rplan.plan_evacuation(demo["region"], demo["assessment"], demo["cells"],
                                 rplan.PlanOptions(level=5), network=demo["net"])
    assert not plan.households["must_move"].any() and len(plan.routes) == 0 and len(plan.assisted) == 0
    folder = rplan.write_plan(plan, tmp_path / "empty")
    assert json.loads((folder / "routes.geojson").read_text(encoding="utf-8")) == {
        "type": "FeatureCollection", "features": []}
    assert json.loads((folder / "summary.json").read_text(encoding="utf-8"))["households_to_move"] == 0
