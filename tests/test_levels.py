"""Decision 18/2021 levels: the tables, the rules, their monotonicity, region groups."""

from __future__ import annotations

import itertools
import shutil
import tomllib
import unicodedata
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from ewarn.errors import EwarnError
from ewarn.hazard_models import levels as lv
from ewarn.hazard_models.tables import CONFIDENCE, TABLES_DIR, TableError

FILLED = "ewarn: filled for monotonicity"


def _rows(doc: dict, prefix: str = ""):
    """Every table in a TOML document that carries data (has a source, or should)."""
    for key, val in doc.items():
        where = f"{prefix}{key}"
        if isinstance(val, list) and val and all(isinstance(v, dict) for v in val):
            for i, v in enumerate(val):
                yield f"{where}[{i}]", v
        elif isinstance(val, dict):
            if "source" in val or "confidence" in val:
                yield where, val
            yield from _rows(val, where + ".")


@pytest.mark.parametrize("name", ["decision18.toml", "rainfall.toml"])
def test_every_table_row_has_source_and_confidence(name):
    doc = tomllib.loads((TABLES_DIR / name).read_text(encoding="utf-8"))
    rows = list(_rows(doc))
    assert len(rows) >= 3
    for where, row in rows:
        assert isinstance(row.get("source"), str) and row["source"].strip(), where
        assert row.get("confidence") in CONFIDENCE, where


def test_decision18_rows_cover_every_section():
    doc = tomllib.loads((TABLES_DIR / "decision18.toml").read_text(encoding="utf-8"))
    assert len(doc["article44"]["rows"]) >= 18
    assert len(doc["article46"]["rows"]) >= 20
    assert {g["name"] for g in doc["region_groups"]["groups"]} == {"KV1", "KV2", "KV3", "KV4"}


def test_article46_confidence_tags_follow_science_md():
    rows = tomllib.loads((TABLES_DIR / "decision18.toml").read_text(encoding="utf-8"))["article46"]["rows"]
    for r in rows:
        if r["source"] == FILLED:
            assert r["confidence"] == "unverified"
        elif r["level"] == 1 or (r["level"] == 2 and r["rain_24h"] == "100-200" and r["regions"] == ["KV1"]):
            assert r["confidence"] == "secondary", r
        else:
            assert r["confidence"] == "unverified", r


def test_filled_cells_are_exactly_the_combinations_science_md_does_not_list():
    rows = tomllib.loads((TABLES_DIR / "decision18.toml").read_text(encoding="utf-8"))["article46"]["rows"]
    listed = {("100-200", "1-2"), ("200-400", ">2"), (">400", ">2")}
    for r in rows:
        combo = (r["rain_24h"], r["rain_days"])
        assert (combo in listed) == (r["source"] != FILLED), r


# ---------------------------------------------------------------- known cases (SCIENCE.md §1, §5)


@pytest.mark.parametrize(
    ("rain", "days", "group", "zone", "level"),
    [
        (150, 1, 1, "low", 1),        # 100-200 mm, 1-2 days, KV1 low -> level 1
        (150, 2, 1, "medium", 1),
        (150, 1, 1, "high", 2),       # "level 2 starts 100-200 mm, 1-2 days, high zones of KV1"
        (150, 1, 2, "low", 0),        # KV2 low is not listed at 100-200 mm
        (150, 1, 4, "very high", 1),
        (250, 3, 3, "medium", 1),     # 200-400 mm, > 2 days, KV3 medium -> 1
        (250, 3, 4, "high", 1),
        (450, 3, 3, "low", 1),        # > 400 mm, > 2 days, KV3 low -> 1
        (450, 3, 4, "medium", 1),
        (450, 3, 1, "medium", 3),
        (99.9, 5, 1, "very high", 0),  # below 100 mm: no level
    ],
)
def test_article46_known_cases(rain, days, group, zone, level):
    assert lv.flash_flood_landslide_level(rain, days, group, zone) == level


def test_article46_band_edges_follow_the_decision_wording():
    # "từ 100 đến 200" includes both ends, "trên 200 đến 400" excludes 200, "trên 400" excludes 400
    f = lv.flash_flood_landslide_level
    assert f(100.0, 1, 1, "low") == 1 and f(99.99, 1, 1, "low") == 0
    # KV3 low after > 2 days: nothing up to 400 mm, level 1 above
    assert f(400.0, 3, 3, "low") == 0 and f(400.01, 3, 3, "low") == 1
    # KV1 high after 1-2 days: 100-200 -> 2 ... 200 mm is still in the 100-200 band
    assert f(200.0, 1, 1, "very high") == 3 and f(200.0, 1, 3, "very high") == 2
    assert f(200.01, 1, 3, "very high") == 3


def test_lang_nu_like_case_is_level_3():
    """Làng Nủ (Phúc Khánh, Lào Cai), 2024-09-10: 633 mm in 3 days, a very high zone."""
    kv = lv.region_group("Lào Cai")
    assert kv == 1
    zone = lv.zone_class_from_susceptibility(5)
    assert zone == 4
    # however the 633 mm split into the warned 24 h and the days before, the level is 3
    for rain24, days_before in [(633 / 3, 2), (233, 2), (400, 2), (633, 0), (300, 3)]:
        assert lv.flash_flood_landslide_level(rain24, days_before, kv, zone) == 3


@pytest.mark.parametrize(
    ("rain24", "duration", "terrain", "level"),
    [
        (150, 1, "mountain", 1), (150, 1, "delta", 1), (150, 3, "mountain", 2), (150, 5, "delta", 2),
        (250, 1, "mountain", 2), (250, 5, "miền núi", 4), (250, 5, "coast", 3),
        (450, 1, "mountain", 3), (450, 3, "mountain", 4), (450, 3, "delta", 3), (450, 5, "đồng bằng", 4),
        (90, 1, "mountain", 0),
    ],
)
def test_article44_table(rain24, duration, terrain, level):
    assert lv.heavy_rain_level(rain24, duration, terrain) == level


def test_article44_twelve_hour_band_gives_level_1():
    assert lv.heavy_rain_level(40, 1, "delta", rain12_mm=49.9) == 0
    assert lv.heavy_rain_level(40, 1, "delta", rain12_mm=50) == 1
    # a 12 h total above 200 mm means the 24 h total is too
    assert lv.heavy_rain_level(0, 1, "mountain", rain12_mm=210) == 2


def test_levels_broadcast_over_arrays_of_any_shape():
    rain = np.array([[50.0, 150.0, 250.0], [450.0, np.nan, 120.0]])
    days = np.array([[1], [3]])
    out = lv.flash_flood_landslide_level(rain, days, 1, np.array([1, 2, 4]))
    assert out.dtype == np.int8 and out.shape == (2, 3)
    expected = [[lv.flash_flood_landslide_level(r, d, 1, z) for r, z in zip(row, [1, 2, 4], strict=True)]
                for row, d in zip(rain, [1, 3], strict=True)]
    assert out.tolist() == expected
    assert out[1, 1] == 0  # unknown rain gives no level


def test_levels_keep_xarray_labels_and_work_lazily_on_dask():
    rain = xr.DataArray(np.array([[120.0, 250.0, 500.0], [90.0, 180.0, 410.0]]),
                        dims=("commune", "time"), coords={"commune": ["02998", "03001"]})
    zone = xr.DataArray([4, 2], dims="commune")
    group = xr.DataArray([1, 3], dims="commune")
    eager = lv.flash_flood_landslide_level(rain, 3, group, zone)
    assert eager.dims == ("commune", "time") and eager.dtype == np.int8
    assert eager.sel(commune="02998").values.tolist() == [3, 3, 3]
    assert eager.sel(commune="03001").values.tolist() == [0, 1, 2]
    lazy = lv.flash_flood_landslide_level(rain.chunk({"time": 1}), 3, group, zone)
    assert lazy.chunks is not None
    xr.testing.assert_identical(lazy.compute(), eager)
    hr = lv.heavy_rain_level(rain, 1, "mountain")
    assert hr.values.tolist() == [[1, 2, 3], [0, 1, 3]]


# ---------------------------------------------------------------- monotonicity (properties)

rain_st = st.floats(0, 1500, allow_nan=False)
days_st = st.integers(0, 10)
group_st = st.integers(0, 4)
zone_st = st.integers(0, 4)


def _susceptibility(group: int) -> int:
    """Rank of a region group: KV1 most susceptible, 0 (no group) least."""
    return 0 if group == 0 else 5 - group


@settings(max_examples=300, deadline=None)
@given(rain_st, rain_st, days_st, days_st, group_st, group_st, zone_st, zone_st)
def test_article46_never_decreases(r1, r2, d1, d2, g1, g2, z1, z2):
    lo_r, hi_r = sorted((r1, r2))
    lo_d, hi_d = sorted((d1, d2))
    lo_g, hi_g = sorted((g1, g2), key=_susceptibility)
    lo_z, hi_z = sorted((z1, z2))
    low = lv.flash_flood_landslide_level(lo_r, lo_d, lo_g, lo_z)
    # raising any one input, or all of them, never lowers the level
    for args in [(hi_r, lo_d, lo_g, lo_z), (lo_r, hi_d, lo_g, lo_z), (lo_r, lo_d, hi_g, lo_z),
                 (lo_r, lo_d, lo_g, hi_z), (hi_r, hi_d, hi_g, hi_z)]:
        assert lv.flash_flood_landslide_level(*args) >= low
    assert 0 <= low <= 3


def test_article46_monotone_on_the_whole_grid():
    rain = np.arange(0, 1001, 5.0)[:, None, None, None]
    days = np.arange(0, 6)[None, :, None, None]
    sus = np.array([0, 4, 3, 2, 1])[None, None, :, None]  # least .. most susceptible
    zone = np.arange(0, 5)[None, None, None, :]
    grid = lv.flash_flood_landslide_level(rain, days, sus, zone).astype(int)
    for axis in range(4):
        assert (np.diff(grid, axis=axis) >= 0).all(), axis


@settings(max_examples=200, deadline=None)
@given(rain_st, rain_st, st.floats(0, 12), st.floats(0, 12), st.floats(0, 400), st.floats(0, 400),
       st.sampled_from(["mountain", "delta"]))
def test_article44_never_decreases(r1, r2, d1, d2, h1, h2, terrain):
    lo_r, hi_r = sorted((r1, r2))
    lo_d, hi_d = sorted((d1, d2))
    lo_h, hi_h = sorted((h1, h2))
    low = lv.heavy_rain_level(lo_r, lo_d, terrain, rain12_mm=lo_h)
    for args in [(hi_r, lo_d, lo_h), (lo_r, hi_d, lo_h), (lo_r, lo_d, hi_h), (hi_r, hi_d, hi_h)]:
        assert lv.heavy_rain_level(args[0], args[1], terrain, rain12_mm=args[2]) >= low
    assert 0 <= low <= 4
    # midland/mountain areas are never graded lower than delta/coast for the same rain
    assert lv.heavy_rain_level(lo_r, lo_d, "mountain") >= lv.heavy_rain_level(lo_r, lo_d, "delta")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=4), st.booleans(), st.booleans())
def test_combined_level_is_capped_and_never_below_the_highest(levels, raise_rules, serious):
    out = lv.combined_level(*levels, raise_rules=raise_rules, serious_loss=serious)
    assert max(levels) <= out <= 5
    if not raise_rules:
        assert out == max(levels)


def test_combined_level_raise_rules():
    assert lv.combined_level(2, 1, raise_rules=True) == 3          # two hazards: +1
    assert lv.combined_level(2, 0, raise_rules=True) == 2          # one hazard: no raise
    assert lv.combined_level(2, 0, raise_rules=True, serious_loss=True) == 4  # serious loss: +2
    assert lv.combined_level(2, 1, raise_rules=True, serious_loss=True) == 4  # raises do not stack
    assert lv.combined_level(4, 4, raise_rules=True, serious_loss=True) == 5  # cap
    assert lv.combined_level(0, 0, raise_rules=True, serious_loss=True) == 0  # nothing to raise
    assert lv.combined_level(2, 1, raise_rules=False, serious_loss=True) == 2
    out = lv.combined_level(np.array([0, 1, 3]), np.array([0, 1, 0]), raise_rules=True,
                           serious_loss=np.array([False, False, True]))
    assert out.tolist() == [0, 2, 5]
    with pytest.raises(lv.LevelInputError, match="level"):
        lv.combined_level(6, 1)


# ---------------------------------------------------------------- zone classes, inputs


def test_zone_class_from_susceptibility_mapping():
    out = lv.zone_class_from_susceptibility(np.array([[1, 2, 3], [4, 5, 0]]))
    assert out.tolist() == [[1, 1, 2], [3, 4, 0]]
    assert lv.zone_class_from_susceptibility(np.array([np.nan, 3.0])).tolist() == [0, 2]
    with pytest.raises(lv.LevelInputError, match="susceptibility class"):
        lv.zone_class_from_susceptibility([1, 6])
    with pytest.raises(lv.LevelInputError):
        lv.zone_class_from_susceptibility([2.5])


def test_zone_and_group_names_are_understood():
    assert lv.flash_flood_landslide_level(150, 1, "KV1", "rất cao") == 3
    assert lv.flash_flood_landslide_level(150, 1, "kv1", "very high") == 3


def test_bad_level_inputs_name_the_field():
    with pytest.raises(lv.LevelInputError, match=r"zone_class.*0\.\.4"):
        lv.flash_flood_landslide_level(150, 1, 1, np.array([1, 5]))
    with pytest.raises(lv.LevelInputError, match="region_group"):
        lv.flash_flood_landslide_level(150, 1, -1, 2)
    with pytest.raises(lv.LevelInputError, match="terrain: 'hill'"):
        lv.heavy_rain_level(150, 1, "hill")
    with pytest.raises(lv.LevelInputError, match="zone_class: 'steep'"):
        lv.flash_flood_landslide_level(150, 1, 1, "steep")
    assert issubclass(lv.LevelInputError, EwarnError)


# ---------------------------------------------------------------- region groups


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("Lào Cai", 1), ("tỉnh lào cai", 1), ("LAO CAI", 1), ("Hoà Bình", 1), ("Hòa Bình", 1),
        ("Tỉnh Yên Bái", 1), ("Bắc Kạn", 2), ("Bắc Cạn", 2), ("Thanh Hoá", 2),
        ("Thừa Thiên - Huế", 3), ("Huế", 3), ("TP. Đà Nẵng", 3), ("Thành phố Đà Nẵng", 3),
        ("Dak Lak", 3), ("Hải Phòng", 4), ("Bình Thuận", 4),
        (unicodedata.normalize("NFD", "Điện Biên"), 1),
    ],
)
def test_region_group_matches_loosely(name, group):
    assert lv.region_group(name) == group


def test_unlisted_province_gets_the_configurable_default():
    assert lv.region_group("Hà Nội") == lv.load_tables().default_group == 4
    assert lv.region_group("Hà Nội", default=0) == 0
    assert lv.flash_flood_landslide_level(150, 1, lv.region_group("Hà Nội", default=0), 4) == 0


def test_candidate_list_takes_the_most_susceptible_group_and_warns():
    with pytest.warns(lv.RegionGroupWarning, match=r"Quảng Nam \(KV3\), Quảng Ngãi \(KV2\).*KV2"):
        g = lv.region_group("Quảng Nam; Quảng Ngãi")
    assert g == 2
    with pytest.warns(lv.RegionGroupWarning, match="Yên Bái.*Hà Nội|Hà Nội.*Yên Bái"):
        assert lv.region_group(["Hà Nội", "Yên Bái"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lv.region_group("Lào Cai;Yên Bái") == 1  # same group: nothing ambiguous


def test_unknown_province_is_a_clear_error_with_suggestions():
    with pytest.raises(lv.LevelInputError, match=r"'Lao Kai' is not one of the 63 provinces.*Lào Cai"):
        lv.region_group("Lao Kai")
    with pytest.raises(lv.LevelInputError, match="no province name"):
        lv.region_group(" ; ")


def test_region_groups_vectorized_over_communes():
    names = np.array(["Lào Cai", "Hà Nội", "Lào Cai", "Quảng Nam", "Yên Bái"] * 200)
    out = lv.region_groups(names)
    assert out.dtype == np.int8 and out.shape == (1000,)
    assert out[:5].tolist() == [1, 4, 1, 3, 1]
    series = pd.Series(["Sơn La", "Cà Mau"], dtype="string")  # pandas 3 string column
    assert lv.region_groups(series).tolist() == [1, 4]
    with pytest.raises(lv.LevelInputError, match=r"no province.*entry 1"):
        lv.region_groups(pd.Series(["Sơn La", None], dtype="string"))


def test_all_63_legacy_provinces_are_known():
    t = lv.load_tables()
    provinces = {t.province_names[k] for k, g in t.province_groups.items()}
    assert len(provinces) == 63
    assert sum(1 for p in provinces if lv.region_group(p) in (1, 2, 3, 4)) == 63
    assert sum(1 for p in provinces if lv.region_group(p, default=0) > 0) == 36


# ---------------------------------------------------------------- constants


def test_level_colours_and_names():
    colours = {1: "light blue", 2: "light yellow", 3: "orange", 4: "red", 5: "purple"}
    for lvl, colour in colours.items():
        info = lv.LEVELS[lvl]
        assert info.colour_en == colour
        assert info.name_vi == f"Cấp {lvl}" and info.title_vi == f"Rủi ro thiên tai cấp {lvl}"
        assert info.colour_hex.startswith("#") and len(info.colour_hex) == 7
    for info in lv.LEVELS.values():  # Vietnamese text is precomposed (NFC), as SMS gateways expect
        for text in (info.name_vi, info.title_vi, info.colour_vi, info.risk_vi):
            assert unicodedata.normalize("NFC", text) == text
    assert "không phải cấp độ rủi ro thiên tai chính thức" in lv.LEVEL_DISCLAIMER["vi"]
    assert "not the official" in lv.LEVEL_DISCLAIMER["en"]


# ---------------------------------------------------------------- recalibrated tables


@pytest.fixture
def table_copy(tmp_path):
    dst = tmp_path / "tables"
    dst.mkdir()
    shutil.copy(TABLES_DIR / "decision18.toml", dst / "decision18.toml")
    return dst / "decision18.toml"


def _edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_recalibrated_copy_is_used(table_copy):
    # a hydrologist moves the lowest Article 44 band from 100 to 120 mm in a copy of the table
    text = table_copy.read_text(encoding="utf-8")
    text = text.replace('rain_24h_mm = [100, 200, 400]   # bands "100-200", "200-400", ">400"\nrain_12h_mm',
                        "rain_24h_mm = [120, 200, 400]\nrain_12h_mm", 1)
    text = text.replace('rain = "100-200"', 'rain = "120-200"')
    table_copy.write_text(text, encoding="utf-8")
    t = lv.load_tables(table_copy.parent)  # a folder holding decision18.toml works too
    assert t.path == table_copy.resolve()
    assert lv.heavy_rain_level(110, 1, "mountain", tables=t) == 0
    assert lv.heavy_rain_level(125, 1, "mountain", tables=t) == 1
    assert lv.heavy_rain_level(110, 1, "mountain") == 1  # the shipped table is untouched


def test_non_monotone_table_is_refused_naming_the_rows(table_copy):
    # give KV4 low zones (least susceptible group, lowest class) level 3 at 100-200 mm
    text = table_copy.read_text(encoding="utf-8")
    text += ('\n[[article46.rows]]\nlevel = 3\nrain_24h = "100-200"\nrain_days = "1-2"\nregions = ["KV4"]\n'
             'zones = ["low"]\nsource = "test"\nconfidence = "unverified"\n')
    table_copy.write_text(text, encoding="utf-8")
    with pytest.raises(TableError) as err:
        lv.load_tables(table_copy)
    msg = str(err.value)
    assert str(table_copy.resolve()) in msg
    assert "not monotone" in msg and "article46.rows[" in msg


def test_row_without_source_is_refused(table_copy):
    _edit(table_copy, 'source = "Decision 18/2021/QĐ-TTg Art. 46 level 1, row 2, via SCIENCE.md §1 '
          '(law Q&A pages)"\n', "")
    with pytest.raises(TableError, match=r"article46\.rows\[\d+\], field 'source'"):
        lv.load_tables(table_copy)


def test_unknown_band_and_bad_confidence_are_refused_together(table_copy):
    _edit(table_copy, 'rain_24h = ">400"', 'rain_24h = ">500"')
    _edit(table_copy, 'confidence = "secondary"', 'confidence = "probably"')
    with pytest.raises(TableError) as err:
        lv.load_tables(table_copy)
    assert len(err.value.errors) >= 2
    text = str(err.value)
    assert "field 'rain_24h'" in text and "'>500'" in text
    assert "field 'confidence'" in text and "'probably'" in text


def test_broken_toml_and_missing_file_are_clear_errors(table_copy, tmp_path):
    table_copy.write_text("[article44\nlevel = 1\n", encoding="utf-8")
    with pytest.raises(TableError, match="not valid TOML"):
        lv.load_tables(table_copy)
    with pytest.raises(TableError, match="not found"):
        lv.load_tables(tmp_path / "nowhere.toml")


def test_duplicate_province_is_refused(table_copy):
    _edit(table_copy, '"Phú Yên", "Ninh Thuận"', '"Phú Yên", "Khánh Hoà", "Ninh Thuận"')
    with pytest.raises(TableError, match="Khánh Hoà' is already listed"):
        lv.load_tables(table_copy)


def test_every_band_day_group_zone_combination_has_one_level():
    lut = lv.load_tables().a46_lut
    combos = list(itertools.product(range(4), range(2), range(5), range(5)))
    assert lut.shape == (4, 2, 5, 5) and len(combos) == lut.size
    assert (lut[0] == 0).all() and (lut[:, :, 0] == 0).all() and (lut[:, :, :, 0] == 0).all()
    assert set(np.unique(lut)) <= {0, 1, 2, 3}
