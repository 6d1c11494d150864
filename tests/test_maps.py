"""The inline SVG map renderer (shared by the scenario report and the status page)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from lxml import etree
from shapely.geometry import LineString, Polygon

from ewarn.hazard_models.levels import LEVELS
from ewarn.maps import SVG_NS, MapLayers, render_map

SVG = f"{{{SVG_NS}}}"


def _parse(svg: str) -> etree._Element:
    return etree.fromstring(svg.encode(), etree.XMLParser(resolve_entities=False, no_network=True))


def _squares() -> gpd.GeoDataFrame:
    polys = [Polygon([(104 + i * 0.1, 22), (104.1 + i * 0.1, 22), (104.1 + i * 0.1, 22.1),
                      (104 + i * 0.1, 22.1)]) for i in range(3)]
    return gpd.GeoDataFrame({"code": ["00001", "00002", "00003"], "name": ["Phúc Khánh", "Bảo Hà", "A&B"]},
                            geometry=polys, crs="EPSG:4326")


def test_one_path_per_commune_coloured_by_level_with_tooltip():
    root = _parse(render_map(_squares(), {"00001": 3, "00002": 1}, title="Cấp độ rủi ro"))
    paths = root.findall(f".//{SVG}path[@class='commune']")
    assert [p.get("data-code") for p in paths] == ["00001", "00002", "00003"]
    assert [p.get("fill") for p in paths] == [LEVELS[k].colour_hex for k in (3, 1, 0)]
    tips = [p.find(f"{SVG}title").text for p in paths]
    assert tips[0] == "Phúc Khánh (xã 00001): Cấp 3"
    assert tips[2].startswith("A&B")  # escaped in the markup, intact once parsed
    en = _parse(render_map(_squares(), {"00001": 3}, language="en"))
    assert en.find(f".//{SVG}path[@class='commune']/{SVG}title").text == "Phúc Khánh (commune 00001): Level 3"


def test_geometry_maps_west_to_left_north_to_top():
    root = _parse(render_map(_squares(), {}, width=600, labels=False))
    first = root.findall(f".//{SVG}path[@class='commune']")
    xs = []
    for p in first:
        pts = np.array([list(map(float, xy.split(","))) for xy in p.get("d").strip("MZ").split()])
        xs.append(pts[:, 0].min())
        assert pts[:, 1].min() >= 0
    assert xs == sorted(xs)  # communes laid out west → east
    vb = [float(v) for v in root.get("viewBox").split()]
    assert vb[2] == 600


def test_layers_are_drawn():
    layers = MapLayers(streams=[LineString([(104.0, 22.0), (104.3, 22.1)])],
                       closed_roads=[LineString([(104.05, 22.05), (104.15, 22.05)])],
                       routes=[LineString([(104.02, 22.02), (104.2, 22.08)])],
                       shelters=[(104.05, 22.05), (104.25, 22.05)], shelter_fill=[0.5, 1.2],
                       shelter_labels=["Trường A: 50/100", "Nhà văn hoá B: 120/100"])
    root = _parse(render_map(_squares(), {}, layers=layers))
    for cls in ("streams", "closed-roads", "routes"):
        assert root.find(f".//{SVG}path[@class='{cls}']") is not None, cls
    circles = root.findall(f".//{SVG}circle[@class='shelter']")
    assert len(circles) == 2
    assert circles[1].get("fill") == "#d62728"  # over capacity shows red
    assert float(circles[1].get("r")) > float(circles[0].get("r"))


def test_real_lao_cai_communes(shared_data):
    path = shared_data / "communes" / "lao_cai_2025.geojson"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    gdf = gpd.read_file(path)
    code = next(c for c in gdf.columns if c.lower() in ("code", "ma_xa", "commune_code", "ma"))
    name = next(c for c in gdf.columns if c.lower() in ("name", "ten_xa", "ten"))
    gdf = gdf.rename(columns={code: "code", name: "name"})
    svg = render_map(gdf, {str(gdf["code"].iloc[0]): 2})
    root = _parse(svg)
    assert len(root.findall(f".//{SVG}path[@class='commune']")) == len(gdf)
    assert "<script" not in svg and "http://" not in svg.replace(SVG_NS, "")
