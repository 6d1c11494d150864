"""import_region on the real Lào Cai and Đà Nẵng communes, and on corrupted copies of each input."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely
import xarray as xr

from ewarn.region import Region, RegionError, import_region

LAO_CAI_FIELDS = dict(code_field="ma_xa", name_field="ten_xa", population_field="dan_so",
                      province_field="ten_tinh")
# the centre of Phúc Khánh (02998) as given in the file
PK_LON, PK_LAT = 104.56504, 22.17805

HOUSEHOLDS = ("household_id,commune_code,lon,lat,people,vulnerable,phone\n"
              f"H1,02998,{PK_LON},{PK_LAT},5,1,0912 345 678\n"
              f"H2,2998,{PK_LON + 0.001},{PK_LAT},3,0,\n")
SHELTERS = ("shelter_id,name,lon,lat,capacity,kind\n"
            f"S1,Trường THCS Phúc Khánh,{PK_LON},{PK_LAT + 0.002},250,school\n")
CONTACTS = ("commune_code,name,role,phone,language,unaccented\n"
            "02998,Hoàng Văn Nam,Chủ tịch UBND xã,0987654321,vi,false\n")


@pytest.fixture(scope="module")
def lao_cai_path(shared_data) -> Path:
    return shared_data / "communes" / "lao_cai_2025.geojson"


@pytest.fixture(scope="module")
def lao_cai_json(lao_cai_path) -> dict:
    return json.loads(lao_cai_path.read_text(encoding="utf-8"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def corrupted(tmp_path: Path, collection: dict, edit) -> Path:
    """A copy of a FeatureCollection with ``edit(features)`` applied."""
    data = json.loads(json.dumps(collection))
    edit(data["features"])
    path = tmp_path / "communes_bad.geojson"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def errors_of(exc: pytest.ExceptionInfo) -> set[tuple[str, str | None, str | None]]:
    return {(Path(p.file).name, p.where, p.field) for p in exc.value.errors}


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- real files


def test_real_lao_cai_imports_cleanly(tmp_path, lao_cai_path):
    hh, sh, ct = (write(tmp_path / n, t) for n, t in
                  (("households.csv", HOUSEHOLDS), ("shelters.csv", SHELTERS), ("contacts.csv", CONTACTS)))
    region = import_region(tmp_path / "region", communes=lao_cai_path, households=hh, shelters=sh,
                           contacts=ct, **LAO_CAI_FIELDS)
    assert region.folder == (tmp_path / "region").resolve()
    assert region.name == "Lào Cai"
    c = region.communes
    assert len(c) == 99 and c.crs.to_epsg() == 4326
    pk = c.set_index("code").loc["02998"]
    assert pk["name"] == "Phúc Khánh" and pk["population"] == 8534 and pk["province"] == "Lào Cai"

    source = gpd.read_file(lao_cai_path)
    assert c["code"].tolist() == source["ma_xa"].tolist()
    # names intact, in Unicode NFC (the file spells one name decomposed: "Tằng Loỏng")
    assert c["name"].tolist() == source["ten_xa"].str.normalize("NFC").tolist()
    assert (source["ten_xa"] != source["ten_xa"].str.normalize("NFC")).sum() == 1
    assert c["population"].tolist() == source["dan_so"].tolist()
    # geometry intact: areas agree to 1e-6 relative, every polygon valid
    assert np.allclose(shapely.area(c.geometry.values), shapely.area(source.geometry.values), rtol=1e-6)
    assert c.geometry.is_valid.all()
    # the province merged two pre-2025 provinces: the candidates, and one warning saying so
    assert (c["legacy_province"] == "Lào Cai;Yên Bái").all()
    # ... and six codes that differ from the official 2025 list (see the test below)
    assert sorted(p.field for p in region.warnings) == ["code"] * 6 + ["legacy_province"]

    assert region.households["commune_code"].tolist() == ["02998", "02998"]
    assert region.households["phone"].tolist() == ["+84912345678", ""]
    assert region.shelters["capacity"].tolist() == [250]
    assert region.contacts["phone"].tolist() == ["+84987654321"]
    assert region.commune_of(PK_LON, PK_LAT).tolist() == ["02998"]

    again = Region.load(region.folder)  # the written folder round-trips
    assert again.communes.drop(columns="geometry").equals(c.drop(columns="geometry"))
    assert again.households.equals(region.households) and again.contacts.equals(region.contacts)


def test_legacy_province_override_from_region_toml(tmp_path, lao_cai_path):
    region = import_region(tmp_path / "r", communes=lao_cai_path, **LAO_CAI_FIELDS)
    toml = region.folder / "region.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + '\n[legacy_province]\n"02998" = "yên bái"\n',
                    encoding="utf-8")
    c = Region.load(region.folder).communes.set_index("code")
    assert c.loc["02998", "legacy_province"] == "Yên Bái"  # spelled as in the province table
    assert (c.drop(index="02998")["legacy_province"] == "Lào Cai;Yên Bái").all()


def test_real_da_nang_imports(tmp_path, shared_data):
    region = import_region(tmp_path / "dn", communes=shared_data / "communes" / "da_nang_2025.geojson",
                           name="Đà Nẵng", **LAO_CAI_FIELDS)
    c = region.communes
    assert len(c) == 94
    assert (c["legacy_province"] == "Đà Nẵng;Quảng Nam").all()
    assert (c.geom_type == "MultiPolygon").sum() == 6  # islands kept
    assert c["code"].str.fullmatch(r"\d{5}").all()


# --------------------------------------------------------------------------- communes refused


def test_wrong_field_mapping_lists_the_fields(tmp_path, lao_cai_path):
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=lao_cai_path, code_field="commune_code",
                      name_field="ten_xa", population_field="dan_so")
    (problem,) = exc.value.errors
    assert problem.file == str(lao_cai_path) and problem.field == "commune_code"
    assert "--code-field" in problem.message
    for field in ("ma_xa", "ten_xa", "dan_so", "before_merger"):
        assert field in problem.message
    assert not (tmp_path / "r").exists()


def test_unrepairable_geometry_is_refused(tmp_path, lao_cai_json):
    def flatten(features):  # a ring with no area: make_valid gives a line, not a polygon
        features[4]["geometry"] = {"type": "Polygon", "coordinates": [
            [[104.0, 22.0], [104.01, 22.0], [104.02, 22.0], [104.0, 22.0]]]}

    path = corrupted(tmp_path, lao_cai_json, flatten)
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=path, **LAO_CAI_FIELDS)
    assert errors_of(exc) == {("communes_bad.geojson", "feature 5", "geometry")}
    assert "make_valid" in exc.value.errors[0].message
    assert not (tmp_path / "r").exists()


def test_bow_tie_is_repaired_with_a_warning(tmp_path, lao_cai_json):
    def bow_tie(features):
        features[2]["geometry"] = {"type": "Polygon", "coordinates": [
            [[104.30, 22.50], [104.35, 22.55], [104.35, 22.50], [104.30, 22.55], [104.30, 22.50]]]}

    region = import_region(tmp_path / "r", communes=corrupted(tmp_path, lao_cai_json, bow_tie),
                           **LAO_CAI_FIELDS)
    (warning,) = [p for p in region.warnings if p.field == "geometry"]
    assert warning.where == "feature 3" and "Self-intersection" in warning.message
    geom = region.communes.geometry.iloc[2]
    assert geom.is_valid and geom.geom_type == "MultiPolygon"
    # and the written folder is clean: no repair needed when it is loaded again
    assert not [p for p in Region.load(region.folder).warnings if p.field == "geometry"]


def test_every_error_of_the_communes_file_is_reported(tmp_path, lao_cai_json):
    def spoil(features):
        features[3]["properties"]["ma_xa"] = features[0]["properties"]["ma_xa"]  # duplicate code
        features[5]["properties"]["ten_xa"] = ""                               # empty name
        features[6]["properties"]["dan_so"] = -10                              # negative population
        features[7]["properties"]["dan_so"] = None                             # missing population
        features[8]["geometry"] = {"type": "Point", "coordinates": [104.5, 22.1]}  # not a polygon
        features[9]["properties"]["ma_xa"] = "29-98"                           # not a code

    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=corrupted(tmp_path, lao_cai_json, spoil),
                      **LAO_CAI_FIELDS)
    f = "communes_bad.geojson"
    assert errors_of(exc) == {(f, "feature 4", "ma_xa"), (f, "feature 6", "ten_xa"),
                              (f, "feature 7", "dan_so"), (f, "feature 8", "dan_so"),
                              (f, "feature 9", "geometry"), (f, "feature 10", "ma_xa")}
    dup = next(p for p in exc.value.errors if p.where == "feature 4")
    assert "duplicate of feature 1" in dup.message
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- tables refused


def test_every_household_error_is_reported(tmp_path, lao_cai_path):
    hh = write(tmp_path / "households.csv", HOUSEHOLDS
               + f"H1,02998,{PK_LON},{PK_LAT},2,0,\n"            # row 4: duplicate id
               + f"H4,02998,{PK_LON},{PK_LAT},3,0,12345\n"       # row 5: bad phone
               + "H5,02998,106.9,10.8,3,0,\n"                    # row 6: outside the region
               + f"H6,02998,{PK_LON},{PK_LAT},0,0,\n"            # row 7: people <= 0
               + f"H7,99999,{PK_LON},{PK_LAT},3,0,\n"            # row 8: unknown commune
               + f"H8,02998,{PK_LON},{PK_LAT},2,3,\n"            # row 9: vulnerable > people
               + f"H9,02998,{PK_LAT},{PK_LON},2,0,\n"            # row 10: lon/lat swapped
               + f",02998,{PK_LON},{PK_LAT},2.5,0,\n")           # row 11: no id, people not whole
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=lao_cai_path, households=hh, **LAO_CAI_FIELDS)
    f = "households.csv"
    assert errors_of(exc) == {
        (f, "row 4", "household_id"), (f, "row 5", "phone"), (f, "row 6", "lon"), (f, "row 7", "people"),
        (f, "row 8", "commune_code"), (f, "row 9", "vulnerable"), (f, "row 10", "lon"),
        (f, "row 11", "household_id"), (f, "row 11", "people"),
    }
    by_row = {p.where: p.message for p in exc.value.errors}
    assert "duplicate of row 2" in by_row["row 4"]
    assert "99999" in by_row["row 8"]
    assert "swapped" in by_row["row 10"]
    assert str(hh) in str(exc.value)
    assert not (tmp_path / "r").exists()


def test_shelter_errors_are_reported(tmp_path, lao_cai_path):
    sh = write(tmp_path / "shelters.csv", SHELTERS
               + f"S1,Nhà văn hóa,{PK_LON},{PK_LAT},40,hall\n"   # row 3: duplicate id
               + f"S3,Trạm y tế,{PK_LON},{PK_LAT},0,clinic\n"    # row 4: capacity 0
               + "S4,Đình làng,0,0,30,hall\n")                   # row 5: outside the region
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=lao_cai_path, shelters=sh, **LAO_CAI_FIELDS)
    f = "shelters.csv"
    assert errors_of(exc) == {(f, "row 3", "shelter_id"), (f, "row 4", "capacity"), (f, "row 5", "lon")}
    assert not (tmp_path / "r").exists()


def test_contact_errors_are_reported(tmp_path, lao_cai_path):
    ct = write(tmp_path / "contacts.csv", CONTACTS
               + "02998,Lò Thị Mai,Cán bộ,0123,vi,false\n"            # row 3: bad phone
               + "88888,Vàng A Sử,Trưởng bản,0912345670,vi,false\n")  # row 4: unknown commune
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=lao_cai_path, contacts=ct, **LAO_CAI_FIELDS)
    assert errors_of(exc) == {("contacts.csv", "row 3", "phone"), ("contacts.csv", "row 4", "commune_code")}


def test_missing_column_and_bad_encoding(tmp_path, lao_cai_path):
    hh = write(tmp_path / "households.csv", "household_id,commune_code,lon,lat\nH1,02998,104.5,22.1\n")
    sh = tmp_path / "shelters.csv"
    sh.write_bytes(SHELTERS.encode("utf-16"))
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=lao_cai_path, households=hh, shelters=sh, **LAO_CAI_FIELDS)
    by_field = {(Path(p.file).name, p.field): p.message for p in exc.value.errors}
    assert set(by_field) == {("households.csv", "people"), ("households.csv", "vulnerable"),
                             ("shelters.csv", None)}
    assert "the file has: household_id, commune_code, lon, lat" in by_field["households.csv", "people"]
    assert "UTF-8" in by_field["shelters.csv", None]


def test_failed_import_leaves_existing_region_unchanged(tmp_path, lao_cai_path):
    dest = import_region(tmp_path / "r", communes=lao_cai_path, **LAO_CAI_FIELDS).folder
    before = digest(dest)
    bad = write(tmp_path / "households.csv", HOUSEHOLDS + f"H3,02998,{PK_LON},{PK_LAT},-1,0,\n")
    with pytest.raises(RegionError):
        import_region(dest, communes=lao_cai_path, households=bad, overwrite=True, **LAO_CAI_FIELDS)
    with pytest.raises(RegionError, match="already exists"):
        import_region(dest, communes=lao_cai_path, **LAO_CAI_FIELDS)
    assert digest(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["households.csv", "r"]  # no temp folders
    good = write(tmp_path / "households.csv", HOUSEHOLDS)
    region = import_region(dest, communes=lao_cai_path, households=good, overwrite=True, **LAO_CAI_FIELDS)
    assert len(region.households) == 2 and digest(dest) != before


# --------------------------------------------------------------------------- other formats


def subset(lao_cai_path: Path, codes=("02998", "02947", "04309")) -> gpd.GeoDataFrame:
    gdf = gpd.read_file(lao_cai_path)
    return gdf[gdf["ma_xa"].isin(codes)].reset_index(drop=True)


def test_geopackage_numeric_codes_province_and_reprojection(tmp_path, lao_cai_path):
    gdf = subset(lao_cai_path)
    out = gpd.GeoDataFrame({"MA": gdf["ma_xa"].astype(int), "TEN": gdf["ten_xa"], "DS": gdf["dan_so"]},
                           geometry=gdf.geometry, crs=4326).to_crs(32648)  # UTM 48N, metres
    gpkg = tmp_path / "xa.gpkg"
    out.to_file(gpkg, layer="xa")
    out.iloc[:1].to_file(gpkg, layer="other")
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=gpkg, code_field="MA", name_field="TEN",
                      population_field="DS", province="Tỉnh Lào Cai")
    assert "--layer" in str(exc.value) and "other" in str(exc.value)
    region = import_region(tmp_path / "r", communes=gpkg, code_field="MA", name_field="TEN",
                           population_field="DS", province="Tỉnh Lào Cai", layer="xa")
    c = region.communes
    assert sorted(c["code"]) == sorted(gdf["ma_xa"])  # zero-padded again
    assert (c["province"] == "Tỉnh Lào Cai").all() and (c["legacy_province"] == "Lào Cai;Yên Bái").all()
    assert any("reprojected from EPSG:32648" in p.message for p in region.warnings)
    assert np.allclose(c.total_bounds, gdf.total_bounds, atol=1e-5)


def test_shapefile_without_crs(tmp_path, lao_cai_path):
    gdf = subset(lao_cai_path)[["ma_xa", "ten_xa", "dan_so", "geometry"]].set_crs(None,
                                                                                    allow_override=True)
    with pytest.warns(UserWarning, match="crs"):
        gdf.to_file(tmp_path / "xa.shp")
    assert not (tmp_path / "xa.prj").exists()
    region = import_region(tmp_path / "r", communes=tmp_path / "xa.shp", province="Lào Cai",
                           **{k: v for k, v in LAO_CAI_FIELDS.items() if k != "province_field"})
    assert any("no CRS" in p.message and p.severity == "warning" for p in region.warnings)
    assert region.communes.crs.to_epsg() == 4326 and len(region.communes) == 3

    metres = gdf.set_crs(4326).to_crs(32648).set_crs(None, allow_override=True)
    with pytest.warns(UserWarning, match="crs"):
        metres.to_file(tmp_path / "m.shp")
    with pytest.raises(RegionError, match="not longitude/latitude"):
        import_region(tmp_path / "m", communes=tmp_path / "m.shp", **LAO_CAI_FIELDS | {
            "province_field": None})


def test_netcdf_terrain_is_found_and_normalised(tmp_path, lao_cai_path):
    gdf = subset(lao_cai_path)
    minx, miny, maxx, maxy = gdf.total_bounds
    lat = np.arange(maxy + 0.02, miny - 0.02, -0.005)  # north-up, like most DEMs
    lon = np.arange(minx - 0.02, maxx + 0.02, 0.005)
    band = 200 + 10 * np.arange(lat.size)[:, None] + np.zeros(lon.size)
    ds = xr.Dataset({"Band1": (("lat", "lon"), band.astype("float32"))},
                    coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                            "lon": ("lon", lon, {"units": "degrees_east"})})
    gdf.to_file(tmp_path / "xa.geojson")
    ds.to_netcdf(tmp_path / "dem.nc")
    region = import_region(tmp_path / "r", communes=tmp_path / "xa.geojson", terrain=tmp_path / "dem.nc",
                           **LAO_CAI_FIELDS)
    t = region.terrain
    assert t["elevation"].dims == ("latitude", "longitude")
    assert np.all(np.diff(t["latitude"].to_numpy()) > 0)
    # the northernmost row had the lowest values; it is now last
    assert float(t["elevation"][-1, 0]) == pytest.approx(200.0)

    small = ds.isel(lat=slice(0, 5))
    small.to_netcdf(tmp_path / "small.nc")
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r2", communes=tmp_path / "xa.geojson", terrain=tmp_path / "small.nc",
                      **LAO_CAI_FIELDS)
    assert errors_of(exc) == {("small.nc", None, "elevation")}
    assert "larger DEM" in str(exc.value) and not (tmp_path / "r2").exists()


def test_geotiff_without_rioxarray_says_what_to_install(tmp_path, lao_cai_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rioxarray", None)  # import fails as if not installed
    tif = tmp_path / "dem.tif"
    tif.write_bytes(b"II*\x00")
    with pytest.raises(RegionError) as exc:
        import_region(tmp_path / "r", communes=lao_cai_path, terrain=tif, **LAO_CAI_FIELDS)
    assert errors_of(exc) == {("dem.tif", None, None)}
    assert "ewarn[geotiff]" in str(exc.value)


def test_fetch_roads_calls_osmnx_once_with_the_communes_polygon(tmp_path, lao_cai_path, monkeypatch):
    import osmnx as ox

    calls = []

    def fake(polygon, **kwargs):
        calls.append((polygon, kwargs))
        g = nx.MultiDiGraph(crs="EPSG:4326")
        g.add_node(1, x=PK_LON, y=PK_LAT)
        g.add_node(2, x=PK_LON + 0.01, y=PK_LAT)
        g.add_edge(1, 2, length=1030.0, highway="unclassified", oneway=False)
        return g

    monkeypatch.setattr(ox, "graph_from_polygon", fake)
    gdf = subset(lao_cai_path)
    gdf.to_file(tmp_path / "xa.geojson")
    region = import_region(tmp_path / "r", communes=tmp_path / "xa.geojson", fetch_roads=True,
                           **LAO_CAI_FIELDS)
    (polygon, kwargs), = calls
    assert kwargs == {"network_type": "all"}
    assert polygon.area == pytest.approx(gdf.union_all().area, rel=1e-9)
    assert region.files["roads"].name == "roads.graphml"
    assert region.roads.edges[1, 2, 0]["length"] == pytest.approx(1030.0)
    assert "roads_fetched_from" in region.meta


def test_codes_cross_checked_against_official_2025_list(tmp_path, lao_cai_path):
    """Codes that differ from vietnam-provinces are warnings naming the official code; kept as is."""
    region = import_region(tmp_path / "r", communes=lao_cai_path, code_field="ma_xa",
                           name_field="ten_xa", population_field="dan_so")
    code_warnings = [p for p in region.warnings if p.field == "code"]
    lam_thuong = [p for p in code_warnings if "Lâm Thượng" in p.message]
    assert len(lam_thuong) == 1
    assert "04309" in lam_thuong[0].message and "04318" in lam_thuong[0].message
    assert lam_thuong[0].severity == "warning"
    assert "04309" in set(region.communes["code"])  # the file's code is kept
    # Phúc Khánh's code agrees with the official list: no warning for it
    assert not any("Phúc Khánh" in p.message for p in code_warnings)


def test_official_name_mismatch_is_reported(tmp_path, lao_cai_json):
    collection = json.loads(json.dumps(lao_cai_json))
    for f in collection["features"]:
        if f["properties"]["ma_xa"] == "02998":
            f["properties"]["ten_xa"] = "Bảo Yên"  # wrong name on Phúc Khánh's code
    path = tmp_path / "wrong_name.geojson"
    path.write_text(json.dumps(collection, ensure_ascii=False), encoding="utf-8")
    region = import_region(tmp_path / "r", communes=path, code_field="ma_xa", name_field="ten_xa",
                           population_field="dan_so")
    msgs = [p.message for p in region.warnings if p.field == "code" and "02998" in p.message]
    assert msgs and "phúc khánh" in msgs[0]
