"""Permanent relocation of the households on very-high landslide susceptibility ground."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from ewarn.demo import build_demo_region
from ewarn.hazard_models.terrain import terrain_for_region
from ewarn.region import Region, write_region
from ewarn.routing import plan as rplan
from ewarn.routing.graph import network_from_arrays, region_network

# A 10 x 10 grid of 0.001 deg cells (~100 m) at 22.000..22.009 N, 104.000..104.009 E.
LAT = 22.0 + 0.001 * np.arange(10)
LON = 104.0 + 0.001 * np.arange(10)


def _susceptibility() -> xr.DataArray:
    s = np.ones((10, 10), dtype=np.int8)
    s[6:, :5] = 5  # very high: the north-west corner
    s[:3, 7:] = 4  # high, not relocated
    return xr.DataArray(s, dims=("latitude", "longitude"), coords={"latitude": LAT, "longitude": LON},
                        name="susceptibility")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("reloc")
    communes = gpd.GeoDataFrame(
        {"code": ["02998", "03001"], "name": ["Phúc Khánh", "Việt Tiến"], "province": ["Lào Cai"] * 2,
         "population": [500, 400]},
        geometry=[shapely.box(103.999, 21.999, 104.0045, 22.010),
                  shapely.box(104.0045, 21.999, 104.010, 22.010)],
        crs="EPSG:4326")
    households = pd.DataFrame({
        "household_id": ["H1", "H2", "H3", "H4", "H5", "H6"],
        "commune_code": ["02998", "02998", "02998", "03001", "03001", "02998"],
        "lon": [104.001, 104.002, 104.003, 104.008, 104.007, 104.0],
        "lat": [22.007, 22.008, 22.009, 22.001, 22.005, 22.002],
        "people": [3, 4, 5, 6, 2, 3], "vulnerable": [1, 0, 2, 0, 0, 0]})
    write_region(root / "region", name="thử nghiệm", communes=communes, households=households)
    region = Region.load(root / "region")
    # a road along 22.005 N from 104.000 to 104.009 E, two-way, plus a spur north to 22.008 N
    lon = np.r_[LON, 104.002]
    lat = np.r_[np.full(10, 22.005), 22.008]
    u = np.r_[np.arange(9), 2]
    v = np.r_[np.arange(1, 10), 10]
    net = network_from_arrays(np.arange(11) + 100, lon, lat, np.r_[u, v], np.r_[v, u],
                              highway=["residential"] * 20)
    return region, net


def test_relocation_picks_exactly_the_very_high_class_households(tiny):
    region, net = tiny
    sites = pd.DataFrame({"site_id": ["TDC-1"], "name": ["Khu tái định cư Bản Mạ"], "lon": [104.009],
                          "lat": [22.005], "capacity": [100]})
    r = rplan.permanent_relocation(region, susceptibility=_susceptibility(), sites=sites, network=net)
    assert r.households["household_id"].tolist() == ["H1", "H2", "H3"]  # not H4 (class 4), not the others
    assert (r.households["susceptibility"] == 5).all()
    assert (r.households["site_id"] == "TDC-1").all()
    assert (r.households["unassigned_reason"] == "").all()
    assert (r.households["travel_time_s"] > 0).all() and (r.households["distance_m"] > 600).all()
    assert r.sites.loc[0, "load"] == 12 and r.sites.loc[0, "households"] == 3
    c = r.communes.set_index("commune_code")
    assert (c.loc["02998", "households"], c.loc["02998", "people"]) == (3, 12)
    assert c.loc["03001", "households"] == 0


def test_site_capacity_is_respected_and_unsafe_sites_unused(tiny):
    region, net = tiny
    sites = pd.DataFrame({"site_id": ["TDC-1", "TDC-2"], "name": ["Bản Mạ", "Nậm Tông"],
                          "lon": [104.009, 104.002], "lat": [22.005, 22.008], "capacity": [8, 100]})
    r = rplan.permanent_relocation(region, susceptibility=_susceptibility(), sites=sites, network=net)
    s = r.sites.set_index("site_id")
    assert s.loc["TDC-2", "excluded_reason"] == "very_high_susceptibility" and s.loc["TDC-2", "load"] == 0
    assert s.loc["TDC-1", "load"] <= 8
    hh = r.households
    placed = hh[hh["site_id"].notna()]
    assert placed["people"].sum() == s.loc["TDC-1", "load"] == 8  # 3 + 5: the optimum fills the site
    assert (hh.loc[hh["site_id"].isna(), "unassigned_reason"] == "no_capacity").all()
    assert r.summary()["unassigned"] == 1


def test_without_sites_every_household_is_listed_with_the_reason(tiny, tmp_path):
    region, net = tiny
    r = rplan.permanent_relocation(region, susceptibility=_susceptibility(), network=net)
    assert len(r.households) == 3 and (r.households["unassigned_reason"] == "no_site").all()
    assert any("resettlement" in w for w in r.warnings)
    folder = rplan.write_relocation(r, tmp_path / "reloc")
    rows = pd.read_csv(folder / "relocation.csv", dtype=str, keep_default_na=False)
    assert rows["household_id"].tolist() == ["H1", "H2", "H3"]
    assert (rows["unassigned_reason"] == "no_site").all()
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["unassigned_by_reason"]["no_site"]["households"] == 3
    assert "tái định cư" in summary["unassigned_by_reason"]["no_site"]["vi"]


def test_malformed_site_table_is_refused(tiny):
    region, net = tiny
    with pytest.raises(rplan.PlanInputError, match="capacity"):
        rplan.permanent_relocation(region, susceptibility=_susceptibility(), network=net,
                                   sites=pd.DataFrame({"site_id": ["X"], "name": ["x"], "lon": [104.0]}))
    bad = pd.DataFrame({"site_id": ["X"], "name": ["x"], "lon": [104.0], "lat": [22.0], "capacity": [-3]})
    with pytest.raises(rplan.PlanInputError, match="row 1"):
        rplan.permanent_relocation(region, susceptibility=_susceptibility(), network=net, sites=bad)


def test_a_region_without_terrain_needs_a_susceptibility_grid(tiny):
    region, net = tiny
    with pytest.raises(rplan.PlanInputError, match="no terrain"):
        rplan.permanent_relocation(region, network=net)


def test_demo_region_relocates_its_class_5_households(tmp_path):
    build_demo_region(tmp_path / "region")
    region = Region.load(tmp_path / "region")
    terrain = terrain_for_region(region, tmp_path / "cache" / "terrain")
    sites = pd.DataFrame({"site_id": ["TDC-PR"], "name": ["Khu tái định cư Phố Ràng"], "lon": [104.47],
                          "lat": [22.24], "capacity": [10_000]})
    r = rplan.permanent_relocation(region, sites=sites, network=region_network(region, tmp_path / "roads"),
                                   terrain_cache_dir=tmp_path / "cache" / "terrain", max_travel_minutes=600)
    hh = region.households
    cls = terrain["susceptibility"].sel(latitude=xr.DataArray(hh["lat"].to_numpy()),
                                        longitude=xr.DataArray(hh["lon"].to_numpy()), method="nearest")
    want = set(hh.loc[cls.to_numpy() == 5, "household_id"])
    assert len(want) > 0
    assert set(r.households["household_id"]) == want
    ok = r.households["site_id"].notna() | (r.households["unassigned_reason"] != "")
    assert ok.all()
