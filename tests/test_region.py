"""The region folder: write_region, Region.load, validation, provinces, terrain, roads.

Run as a script (``python tests/test_region.py DEST``) it writes the small test
region to DEST: the determinism test does that in fresh interpreters.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from shapely.geometry import box

from ewarn.errors import Problem
from ewarn.region import (
    Region,
    RegionError,
    legacy_provinces_of,
    provinces_2025,
    validate_region,
    write_region,
)

# two adjacent communes around Phúc Khánh (Lào Cai); the codes are real 2025 codes
A = box(104.50, 22.10, 104.55, 22.20)
B = box(104.55, 22.10, 104.60, 22.20)


def small_inputs() -> dict:
    communes = gpd.GeoDataFrame(
        {"code": ["02998", "03001"], "name": ["Phúc Khánh", "Xuân Hòa"],
         "province": ["Lào Cai", "Tỉnh Lào Cai"], "population": [8534, 9000]},
        geometry=[A, B], crs=4326)
    households = pd.DataFrame({
        "household_id": ["H1", "H2", "H3"], "commune_code": ["02998", "02998", "03001"],
        "lon": [104.52, 104.5212345678, 104.57], "lat": [22.15, 22.16, 22.12],
        "people": [4, 5, 2], "vulnerable": [1, 0, 2], "phone": ["0912 345 678", "", "+84 98 765 43 21"],
    })
    shelters = pd.DataFrame({
        "shelter_id": ["S1", "S2"], "name": ["Trường tiểu học Phúc Khánh", "Nhà văn hóa thôn Làng Nủ"],
        "lon": [104.53, 104.58], "lat": [22.17, 22.11], "capacity": [300, 80], "kind": ["school", "hall"],
    })
    contacts = pd.DataFrame({
        "commune_code": ["02998", "03001"], "name": ["Nguyễn Văn A", "Trần Thị B"],
        "role": ["Chủ tịch UBND xã", "Phó chủ tịch"], "phone": ["0912345678", "+84987654321"],
        "language": ["vi", "en"], "unaccented": [False, True], "demo": [True, True],
    })
    lat = np.arange(22.05, 22.2501, 0.01)[::-1]  # descending: must be sorted on write
    lon = np.arange(104.45, 104.6501, 0.01)
    elev = (300 + 1000 * np.add.outer(lat - 22.05, lon - 104.45)).astype("float64")
    terrain = xr.Dataset({"z": (("lat", "lon"), elev, {"units": "m"})},
                         coords={"lat": ("lat", lat, {"standard_name": "latitude"}),
                                 "lon": ("lon", lon, {"standard_name": "longitude"})})
    return dict(name="Phúc Khánh thử", communes=communes, households=households, shelters=shelters,
                contacts=contacts, terrain=terrain, roads=tiny_graph(),
                legacy_province={"02998": "Lào Cai"}, meta={"seed": 7, "demo": True},
                description="test region")


def tiny_graph() -> nx.MultiDiGraph:
    g = nx.MultiDiGraph(crs="EPSG:4326")
    g.add_node(1, x=104.52, y=22.15)
    g.add_node(2, x=104.53, y=22.17)
    g.add_node(3, x=104.58, y=22.11)
    g.add_edge(1, 2, length=2400.5, highway="track", oneway=False)
    g.add_edge(2, 1, length=2400.5, highway="track", oneway=False)
    g.add_edge(2, 3, length=8000.0, highway="primary", oneway=True)
    return g


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def region_dir(tmp_path) -> Path:
    return write_region(tmp_path / "region", **small_inputs())


# --------------------------------------------------------------------------- provinces


def test_provinces_table_matches_vietnam_provinces_package():
    from vietnam_provinces import Province

    table = provinces_2025()
    official = {f"{int(p.code):02d}": p.name for p in Province.iter_all()}
    assert len(table) == 34 == len(official)
    assert dict(zip(table["code"], table["name"], strict=True)) == official
    legacy = [n for names in table["legacy_provinces"] for n in names.split(";")]
    assert len(legacy) == 63 == len(set(legacy))  # the 63 provinces before 1 July 2025
    assert (table["source"].str.contains("202/2025/QH15")).all()


@pytest.mark.parametrize(("query", "expected"), [
    ("Lào Cai", ["Lào Cai", "Yên Bái"]),
    ("Tỉnh Lào Cai", ["Lào Cai", "Yên Bái"]),
    ("  lào   cai ", ["Lào Cai", "Yên Bái"]),
    ("Lao Cai", ["Lào Cai", "Yên Bái"]),
    (15, ["Lào Cai", "Yên Bái"]),
    ("15", ["Lào Cai", "Yên Bái"]),
    ("Tuyên Quang", ["Tuyên Quang", "Hà Giang"]),
    ("Thành phố Đà Nẵng", ["Đà Nẵng", "Quảng Nam"]),
    ("Đà Nẵng", ["Đà Nẵng", "Quảng Nam"]),
    ("Phú Thọ", ["Phú Thọ", "Vĩnh Phúc", "Hòa Bình"]),
    ("Sơn La", ["Sơn La"]),
    ("Yên Bái", ["Yên Bái"]),           # a pre-2025 name gives itself
    ("Hoà Bình", ["Hòa Bình"]),         # old tone placement
    ("Huế", ["Thừa Thiên Huế"]),
    ("Atlantis", []),
])
def test_legacy_provinces_of(query, expected):
    assert legacy_provinces_of(query) == expected


def test_legacy_provinces_of_nfd_input():
    import unicodedata

    assert legacy_provinces_of(unicodedata.normalize("NFD", "Tỉnh Lào Cai")) == ["Lào Cai", "Yên Bái"]


# --------------------------------------------------------------------------- write / load


def test_write_then_load_round_trip(region_dir):
    region = Region.load(region_dir)
    assert region.folder == region_dir
    assert region.name == "Phúc Khánh thử" and region.description == "test region"
    assert region.meta == {"demo": True, "seed": 7}
    c = region.communes
    assert list(c.columns) == ["code", "name", "province", "population", "legacy_province", "geometry"]
    assert c.crs.to_epsg() == 4326
    assert c["code"].tolist() == ["02998", "03001"]
    assert c["name"].tolist() == ["Phúc Khánh", "Xuân Hòa"]
    assert c["population"].dtype == np.int64 and c["population"].tolist() == [8534, 9000]
    # override for 02998; the other keeps the candidates of its merged province
    assert c["legacy_province"].tolist() == ["Lào Cai", "Lào Cai;Yên Bái"]
    assert region.bounds == pytest.approx((104.50, 22.10, 104.60, 22.20))

    h = region.households
    assert h["household_id"].tolist() == ["H1", "H2", "H3"]
    assert h["people"].dtype == np.int64 and h["vulnerable"].dtype == np.int64
    assert h["phone"].tolist() == ["+84912345678", "", "+84987654321"]  # E.164, empty kept empty
    assert h["lon"].iloc[1] == pytest.approx(104.521235, abs=1e-9)  # fixed precision on disk

    s = region.shelters
    assert s["capacity"].tolist() == [300, 80] and s["name"].iloc[1] == "Nhà văn hóa thôn Làng Nủ"
    ct = region.contacts
    assert ct["phone"].tolist() == ["+84912345678", "+84987654321"]
    assert ct["unaccented"].dtype == bool and ct["unaccented"].tolist() == [False, True]
    assert ct["demo"].tolist() == [True, True]
    assert set(region.files) == {"communes", "terrain", "households", "shelters", "contacts", "roads"}
    assert all(p.is_absolute() and p.exists() for p in region.files.values())
    assert region.files["roads"].name == "roads.graphml"


def test_legacy_province_column_becomes_the_override(tmp_path):
    inputs = small_inputs()
    inputs["communes"]["legacy_province"] = ["Lào Cai", "Lào Cai;Yên Bái"]
    inputs["legacy_province"] = None
    region = Region.load(write_region(tmp_path / "a", **inputs))
    assert region.communes["legacy_province"].tolist() == ["Lào Cai", "Lào Cai;Yên Bái"]
    assert tomllib.loads((tmp_path / "a" / "region.toml").read_text(encoding="utf-8"))[
        "legacy_province"] == {"02998": "Lào Cai"}
    inputs["communes"]["legacy_province"] = ["Lào Cai", "Yên Bái"]
    inputs["legacy_province"] = {"02998": "Yên Bái"}  # the keyword wins over the column
    region = Region.load(write_region(tmp_path / "b", **inputs))
    assert region.communes["legacy_province"].tolist() == ["Yên Bái", "Yên Bái"]


def test_written_files_are_canonical(region_dir):
    text = (region_dir / "region.toml").read_text(encoding="utf-8")
    assert 'name = "Phúc Khánh thử"' in text
    assert tomllib.loads(text)["legacy_province"] == {"02998": "Lào Cai"}
    header = (region_dir / "contacts.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "commune_code,name,role,phone,language,unaccented,demo"
    assert "true" in (region_dir / "contacts.csv").read_text(encoding="utf-8")
    feature = (region_dir / "communes.geojson").read_text(encoding="utf-8")
    assert '"Phúc Khánh"' in feature  # UTF-8, not \\u escapes
    assert '"crs"' not in feature  # RFC 7946: WGS 84 lon/lat, no crs member
    # households CSV carries 6 decimals, no float noise
    row = (region_dir / "households.csv").read_text(encoding="utf-8").splitlines()[2]
    assert "104.521235,22.160000" in row


def test_write_region_is_byte_deterministic(tmp_path):
    one = write_region(tmp_path / "one", **small_inputs())
    two = write_region(tmp_path / "two", **small_inputs())
    assert digest(one) == digest(two)
    assert set(digest(one)) == {"region.toml", "communes.geojson", "terrain.nc", "households.csv",
                                "shelters.csv", "contacts.csv", "roads.graphml"}


def test_write_region_is_deterministic_across_interpreters(tmp_path):
    """Fresh processes with different hash seeds give the same bytes (the demo checksums them)."""
    digests = []
    for seed in ("1", "2"):
        dest = tmp_path / f"run{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        r = subprocess.run([sys.executable, __file__, str(dest)], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        digests.append(digest(dest))
    assert digests[0] == digests[1]


def test_absent_tables_are_empty_with_columns(tmp_path):
    inputs = small_inputs()
    dest = write_region(tmp_path / "r", name="x", communes=inputs["communes"])
    region = Region.load(dest)
    assert set(region.files) == {"communes"}
    assert list(region.households.columns) == ["household_id", "commune_code", "lon", "lat", "people",
                                               "vulnerable", "phone"]
    assert len(region.households) == 0 and region.households["people"].dtype == np.int64
    assert list(region.shelters.columns) == ["shelter_id", "name", "lon", "lat", "capacity", "kind"]
    assert region.contacts["unaccented"].dtype == bool
    assert region.terrain is None and region.roads is None


def test_write_region_refuses_bad_input_and_leaves_nothing(tmp_path):
    inputs = small_inputs()
    inputs["households"].loc[1, "people"] = 0
    inputs["shelters"].loc[0, "capacity"] = -5
    inputs["contacts"].loc[0, "phone"] = "12345"
    with pytest.raises(RegionError) as exc:
        write_region(tmp_path / "bad", **inputs)
    errors = {(p.file, p.where, p.field) for p in exc.value.errors}
    assert ("households", "row 3", "people") in errors
    assert ("shelters", "row 2", "capacity") in errors
    assert ("contacts", "row 2", "phone") in errors
    assert list(tmp_path.iterdir()) == []  # no folder, no temp sibling


def test_existing_folder_untouched_unless_overwrite(tmp_path):
    dest = write_region(tmp_path / "r", **small_inputs())
    before = digest(dest)
    inputs = small_inputs()
    inputs["name"] = "khác"
    with pytest.raises(RegionError, match="already exists"):
        write_region(dest, **inputs)
    bad = small_inputs()
    bad["households"].loc[0, "commune_code"] = "99999"
    with pytest.raises(RegionError, match="nothing was changed"):
        write_region(dest, overwrite=True, **bad)
    assert digest(dest) == before
    write_region(dest, overwrite=True, **inputs)
    assert Region.load(dest).name == "khác"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # old copy and temp folder removed


def test_roads_given_as_file_are_copied_verbatim(tmp_path, shared_data):
    src = shared_data / "osm" / "west_oakland.osm.bz2"
    inputs = small_inputs()
    inputs["roads"] = src
    dest = write_region(tmp_path / "r", **inputs)
    assert (dest / "roads.osm.bz2").read_bytes() == src.read_bytes()
    graph = Region.load(dest).roads
    assert isinstance(graph, nx.MultiDiGraph) and graph.number_of_edges() > 100


def test_roads_graph_round_trip(region_dir):
    graph = Region.load(region_dir).roads
    assert isinstance(graph, nx.MultiDiGraph)
    assert graph.graph["crs"] == "EPSG:4326"
    assert sorted(graph.nodes) == [1, 2, 3]
    assert graph.nodes[3]["x"] == pytest.approx(104.58) and graph.nodes[3]["y"] == pytest.approx(22.11)
    edge = graph.edges[2, 3, 0]
    assert edge["length"] == pytest.approx(8000.0) and edge["highway"] == "primary"
    assert edge["oneway"] is True and graph.edges[1, 2, 0]["oneway"] is False
    assert graph.number_of_edges() == 3


def test_real_osm_roads_load(tmp_path, shared_data):
    dong_da = box(105.80, 21.00, 105.85, 21.04)  # a commune-sized box over Đống Đa, Hà Nội
    communes = gpd.GeoDataFrame({"code": ["00100"], "name": ["Đống Đa"], "province": ["Hà Nội"],
                                 "population": [100000]}, geometry=[dong_da], crs=4326)
    dest = write_region(tmp_path / "hn", name="Đống Đa", communes=communes,
                        roads=shared_data / "osm" / "hanoi_dong_da.osm")
    graph = Region.load(dest).roads
    assert graph.number_of_nodes() > 800  # 905 road nodes (buildings and land use are not roads)
    assert all(hw for _, _, hw in graph.edges(data="highway"))
    lengths = np.array([d["length"] for _, _, d in graph.edges(data=True)])
    assert (lengths > 0).all()
    xs = np.array([d["x"] for _, d in graph.nodes(data=True)])
    assert 105.7 < np.median(xs) < 105.9


def test_terrain_is_normalised_on_write(region_dir):
    ds = Region.load(region_dir).terrain
    assert list(ds.data_vars) == ["elevation"]
    assert ds["elevation"].dims == ("latitude", "longitude")
    assert ds["elevation"].attrs["units"] == "m"
    assert np.all(np.diff(ds["latitude"].to_numpy()) > 0)  # ascending although given descending
    # the lowest corner (south-west) holds the lowest value, as built
    assert float(ds["elevation"].isel(latitude=0, longitude=0)) == pytest.approx(300.0)
    assert float(ds["elevation"].max()) > 600


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda ds: ds.rename({"z": "precip"}).assign(other=ds["z"]), "no elevation variable"),
    (lambda ds: ds.isel(lon=[0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]),
     "not a regular grid"),
    (lambda ds: ds.isel(lon=slice(0, 8)), "use a larger DEM extract"),
    (lambda ds: ds.assign(z=ds["z"] * np.nan), "every elevation value is missing"),
])
def test_bad_terrain_is_refused(tmp_path, mutate, message):
    inputs = small_inputs()
    inputs["terrain"] = mutate(inputs["terrain"])
    with pytest.raises(RegionError) as exc:
        write_region(tmp_path / "r", **inputs)
    assert any(message in p.message and p.file == "terrain" for p in exc.value.errors), exc.value
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- validation of a folder


def test_commune_of_is_vectorised(region_dir):
    region = Region.load(region_dir)
    lon = np.array([[104.52, 104.57], [104.70, np.nan]])
    lat = np.array([[22.15, 22.15], [22.15, 22.15]])
    codes = region.commune_of(lon, lat)
    assert codes.shape == (2, 2)
    assert codes.tolist() == [["02998", "03001"], ["", ""]]
    # a point on the shared border goes to the first commune listed
    assert region.commune_of(104.55, 22.15).tolist() == ["02998"]
    assert region.commune_of([], []).shape == (0,)


def test_load_reports_every_error_of_every_file(region_dir):
    hh = region_dir / "households.csv"
    lines = hh.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("H1", "H2")                   # duplicate id (row 2 vs row 3)
    lines.append("H9,02998,abc,22.15,3,4,")                   # lon not a number, vulnerable > people
    hh.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sh = region_dir / "shelters.csv"
    sh.write_text(sh.read_text(encoding="utf-8") + "S3,Xa,110.0,10.0,50,school\n", encoding="utf-8")
    with pytest.raises(RegionError) as exc:
        Region.load(region_dir)
    found = {(Path(p.file).name, p.where, p.field) for p in exc.value.errors}
    assert ("households.csv", "row 3", "household_id") in found
    assert ("households.csv", "row 5", "lon") in found
    assert ("households.csv", "row 5", "vulnerable") in found
    assert ("shelters.csv", "row 4", "lon") in found
    assert "households.csv, row 3, field 'household_id'" in str(exc.value)
    problems = validate_region(region_dir)  # the same, without raising
    assert {(Path(p.file).name, p.where, p.field) for p in problems if p.severity == "error"} == found


def test_household_outside_its_commune_is_a_warning(tmp_path):
    inputs = small_inputs()
    inputs["households"].loc[2, "commune_code"] = "02998"  # it lies in 03001
    region = Region.load(write_region(tmp_path / "r", **inputs))
    warnings = [p for p in region.warnings if p.field == "commune_code"]
    assert len(warnings) == 1 and warnings[0].where == "row 4" and "03001" in warnings[0].message


def test_validate_region_never_raises(tmp_path):
    assert "not found" in validate_region(tmp_path / "nope")[0].message
    (tmp_path / "r").mkdir()
    assert "region.toml missing" in validate_region(tmp_path / "r")[0].message
    (tmp_path / "r" / "region.toml").write_text("name = [unclosed", encoding="utf-8")
    assert "not valid TOML" in validate_region(tmp_path / "r")[0].message
    (tmp_path / "r" / "region.toml").write_text('name = "x"\n[files]\ncommunes = "c.geojson"\n'
                                                 'households = "h.csv"\n', encoding="utf-8")
    problems = validate_region(tmp_path / "r")
    assert {Path(p.file).name for p in problems} == {"c.geojson", "h.csv"}
    assert all(isinstance(p, Problem) and "not found" in p.message for p in problems)


def test_validate_region_reads_roads_and_terrain_values(region_dir):
    assert [p for p in validate_region(region_dir) if p.severity == "error"] == []
    (region_dir / "roads.graphml").write_text("<graphml><broken", encoding="utf-8")
    problems = validate_region(region_dir)
    assert any(Path(p.file).name == "roads.graphml" and p.severity == "error" for p in problems)
    Region.load(region_dir)  # load does not parse roads until they are used
    with pytest.raises(RegionError, match="roads"):
        _ = Region.load(region_dir).roads


def test_contacts_booleans_and_languages_are_checked(region_dir):
    (region_dir / "contacts.csv").write_text(
        "commune_code,name,role,phone,language,unaccented\n"
        "2998,Lò Văn C,Trưởng thôn,091 234 5678,VI,yes\n"        # code padded, language case, yes
        "02998,Lò Văn D,,0912345679,fr,maybe\n", encoding="utf-8")
    with pytest.raises(RegionError) as exc:
        Region.load(region_dir)
    found = {(p.where, p.field) for p in exc.value.errors}
    assert found == {("row 3", "language"), ("row 3", "unaccented")}
    (region_dir / "contacts.csv").write_text(
        "commune_code,name,role,phone,language,unaccented\n"
        "2998,Lò Văn C,Trưởng thôn,091 234 5678,VI,yes\n", encoding="utf-8")
    ct = Region.load(region_dir).contacts
    assert ct.iloc[0].to_dict() == {"commune_code": "02998", "name": "Lò Văn C", "role": "Trưởng thôn",
                                    "phone": "+84912345678", "language": "vi", "unaccented": True,
                                    "demo": False}


def test_vectorized_phone_check_agrees_with_phonenumbers():
    import phonenumbers

    from ewarn.region import _phones

    rng = np.random.default_rng(3)
    digits = rng.integers(6, 13, 20000)
    numbers = pd.Series(["+84" + str(rng.integers(10 ** (k - 1), 10 ** k)) for k in digits]
                        + ["0912 345 678", "+1 202 555 0143", "84912345678", "", "abc"])
    out, bad = _phones(numbers)
    expected = [x != "" and x != "abc" and phonenumbers.is_valid_number(phonenumbers.parse(x, "VN"))
                for x in numbers]
    assert ((~bad & (numbers != "").to_numpy()) == np.array(expected)).all()
    assert 500 < sum(expected) < 19000  # both outcomes are exercised
    assert out.iloc[-5:].tolist() == ["+84912345678", "+12025550143", "+84912345678", "", ""]


def test_bow_tie_commune_is_repaired_with_a_warning(tmp_path):
    inputs = small_inputs()
    bow_tie = shapely.Polygon([(104.50, 22.10), (104.55, 22.20), (104.55, 22.10), (104.50, 22.20)])
    inputs["communes"].loc[0, "geometry"] = bow_tie
    inputs["households"] = inputs["shelters"] = None
    region = Region.load(write_region(tmp_path / "r", **{k: v for k, v in inputs.items()
                                                         if k not in ("roads", "terrain")}))
    geom = region.communes.geometry.iloc[0]
    assert geom.is_valid and geom.geom_type == "MultiPolygon"
    assert geom.area == pytest.approx(0.5 * 0.05 * 0.10, rel=1e-3)


if __name__ == "__main__":  # used by test_write_region_is_deterministic_across_interpreters
    write_region(Path(sys.argv[1]), **small_inputs())
