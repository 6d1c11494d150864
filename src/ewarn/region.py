"""The region: communes, terrain, households, shelters, contacts and roads of one area.

A region is a folder. ``region.toml`` names its files (paths relative to the
folder); everything else in the folder is ignored::

    region.toml          names the files (below)
    communes.geojson     FeatureCollection, EPSG:4326 (RFC 7946): code (5-digit str),
                         name, province, population (int), Polygon/MultiPolygon geometry
    terrain.nc           optional: ``elevation`` [m] on (latitude, longitude), ascending,
                         regular grid
    households.csv       household_id, commune_code, lon, lat, people, vulnerable[, phone]
    shelters.csv         shelter_id, name, lon, lat, capacity[, kind]
    contacts.csv         commune_code, name, phone (E.164 +84...)[, role, language (vi|en),
                         unaccented (bool), demo (bool)]
    roads.graphml | roads.osm | roads.osm.bz2   optional (an osmnx MultiDiGraph)

``region.toml``::

    name = "Lào Cai"
    description = "..."
    [files]
    communes = "communes.geojson"
    terrain = "terrain.nc"          # optional keys may be absent
    households = "households.csv"
    shelters = "shelters.csv"
    contacts = "contacts.csv"
    roads = "roads.graphml"
    [legacy_province]               # optional per-commune override: code -> pre-2025 province
    "02998" = "Lào Cai"
    [meta]                          # free-form

Households, shelters and contacts files may be absent (empty tables with the
right columns). Text is UTF-8 (a byte-order mark is accepted). ``vulnerable`` is
the number of people in the household who need help to move (0 <= vulnerable <=
people). In contacts, ``role`` defaults to "", ``language`` to "vi" and the
booleans (``true/false``, ``1/0``, ``yes/no``) to false. Phone numbers are
parsed with ``phonenumbers`` (default region VN) and stored as E.164.

Every problem is reported with its file, its place and its field. Places are
``row N`` for CSV files, counted as a spreadsheet shows them (the header is
row 1, the first data row is row 2), and ``feature N`` for commune features
(1-based, in file order).

Legacy provinces: the region groups of Decision 18/2021/QĐ-TTg name the 63
provinces that existed before the merger of 1 July 2025 (Resolution
202/2025/QH15). ``Region.communes['legacy_province']`` is the ``[legacy_province]``
override of ``region.toml`` when present, else the single pre-2025 province
merged into the commune's province, else the ``;``-joined candidates (the
hazard model picks the most susceptible one and says so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import phonenumbers
import shapely
import tomli_w
import xarray as xr
from pyproj import CRS

from ewarn.errors import Problem, ValidationError

__all__ = [
    "BOUNDS_MARGIN_DEG",
    "COORD_DECIMALS",
    "Region",
    "RegionError",
    "import_contacts",
    "import_region",
    "legacy_provinces_of",
    "provinces_2025",
    "validate_region",
    "write_region",
]

REGION_FILE = "region.toml"
#: Names ``write_region`` gives the files of a canonical folder.
CANONICAL_FILES = {
    "communes": "communes.geojson",
    "terrain": "terrain.nc",
    "households": "households.csv",
    "shelters": "shelters.csv",
    "contacts": "contacts.csv",
}
FILE_KEYS = ("communes", "terrain", "households", "shelters", "contacts", "roads")
ROAD_SUFFIXES = (".graphml", ".osm.bz2", ".osm")
#: Decimal places of written coordinates [deg]: about 10 cm, the precision
#: RFC 7946 section 11.2 recommends for GeoJSON.
COORD_DECIMALS = 6
#: Margin around the communes' bounding box within which households and
#: shelters are accepted [deg] (about 5 km; a design choice so that a shelter
#: just across the border, or a house near a simplified boundary, is kept).
BOUNDS_MARGIN_DEG = 0.05
#: At most this many warnings of one kind per file are listed; the rest are counted.
MAX_WARNINGS_PER_KIND = 20

_COMMUNE_COLUMNS = ["code", "name", "province", "population", "legacy_province", "geometry"]


class RegionError(ValidationError):
    """A region folder or an import source is not valid (lists every error)."""


# --------------------------------------------------------------------------- provinces


@lru_cache(maxsize=1)
def provinces_2025() -> pd.DataFrame:
    """The 34 provinces after 1 July 2025 and the pre-2025 provinces merged into each.

    Returns
    -------
    pandas.DataFrame
        Columns ``code`` (2-digit str), ``name``, ``legacy_provinces``
        (``;``-separated) and ``source``.

    Notes
    -----
    Codes and names: Decision 19/2025/QĐ-TTg, as shipped by the
    ``vietnam-provinces`` package (cross-checked in the tests). Merger lists:
    Resolution 202/2025/QH15 of the National Assembly (12 June 2025).
    """
    text = resources.files("ewarn").joinpath("data/provinces_2025.csv").read_text(encoding="utf-8")
    from io import StringIO

    return pd.read_csv(StringIO(text), dtype=str, keep_default_na=False)


_PROVINCE_PREFIXES = ("thành phố ", "tỉnh ", "tp. ", "tp.", "tp ")


def _province_key(name: str) -> str:
    """Loose key of a province name: NFC, case-folded, no "Tỉnh"/"Thành phố" prefix."""
    s = re.sub(r"\s+", " ", unicodedata.normalize("NFC", str(name)).casefold().strip())
    s = s.replace("–", "-").replace(" - ", "-")
    for prefix in _PROVINCE_PREFIXES:
        if s.startswith(prefix):
            s = s[len(prefix):].strip()
            break
    return s


def _ascii_key(key: str) -> str:
    """The key without diacritics (matches "Lao Cai", and "Hoà" with "Hòa")."""
    s = unicodedata.normalize("NFD", key.replace("đ", "d"))
    return "".join(c for c in s if not unicodedata.combining(c))


@lru_cache(maxsize=1)
def _province_lookup() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(current name key or code -> legacy list, legacy name key -> [legacy name])."""
    table = provinces_2025()
    current: dict[str, list[str]] = {}
    legacy: dict[str, list[str]] = {}
    for code, name, merged in table[["code", "name", "legacy_provinces"]].itertuples(index=False):
        names = merged.split(";")
        key = _province_key(name)
        current[key] = current[_ascii_key(key)] = names
        for old in names:
            okey = _province_key(old)
            legacy[okey] = legacy[_ascii_key(okey)] = [old]
        current[code] = names
    return current, legacy


def _legacy_name(name: str) -> str | None:
    """The pre-2025 province a name denotes, spelled as in the table (None if unknown)."""
    _, legacy = _province_lookup()
    key = _province_key(name)
    found = legacy.get(key) or legacy.get(_ascii_key(key))
    return found[0] if found else None


def legacy_provinces_of(province: str | int) -> list[str]:
    """The pre-2025 provinces merged into a province (Resolution 202/2025/QH15).

    Parameters
    ----------
    province : str or int
        A 2025 province code (``15``, ``"15"``) or name, matched loosely:
        Unicode NFC, case-insensitive, with or without "Tỉnh"/"Thành phố",
        with or without diacritics. A pre-2025 name (``"Yên Bái"``) gives itself.

    Returns
    -------
    list of str
        The legacy province names with diacritics, the one whose name was kept
        first (``["Lào Cai", "Yên Bái"]``); empty when the name is unknown.
    """
    current, legacy = _province_lookup()
    if isinstance(province, int | np.integer) or str(province).strip().isdigit():
        return list(current.get(f"{int(province):02d}", []))
    key = _province_key(str(province))
    for table in (current, legacy):
        for k in (key, _ascii_key(key)):
            if k in table:
                return list(table[k])
    return []


# --------------------------------------------------------------------------- helpers


def _label(path: Path | str) -> str:
    return str(path)


def _rows(label: str, positions: np.ndarray, field: str | None, messages: list[str] | str,
          *, unit: str = "row", severity: str = "error") -> list[Problem]:
    """Problems for the rows at 0-based ``positions`` (rows: header is row 1)."""
    offset = 2 if unit == "row" else 1
    if isinstance(messages, str):
        messages = [messages] * len(positions)
    return [Problem(label, msg, where=f"{unit} {int(i) + offset}", field=field, severity=severity)
            for i, msg in zip(positions, messages, strict=True)]


def _cap_warnings(problems: list[Problem]) -> list[Problem]:
    """Keep at most MAX_WARNINGS_PER_KIND warnings per (file, field); count the rest."""
    out: list[Problem] = []
    seen: dict[tuple[str, str | None], int] = {}
    for p in problems:
        if p.severity != "warning" or p.where is None:
            out.append(p)
            continue
        key = (p.file, p.field)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= MAX_WARNINGS_PER_KIND:
            out.append(p)
    for (file, fld), n in seen.items():
        if n > MAX_WARNINGS_PER_KIND:
            out.append(Problem(file, f"... and {n - MAX_WARNINGS_PER_KIND} more warnings like these",
                               field=fld, severity="warning"))
    return out


def _has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)


def _text(s: pd.Series) -> pd.Series:
    """Stripped, NFC-normalised text; missing values become ""."""
    s = s.astype("object").where(s.notna(), "")
    return s.astype("str").str.strip().str.normalize("NFC")


def _numbers(s: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Floats of a column, and masks (missing, not a number)."""
    if pd.api.types.is_bool_dtype(s):
        s = s.astype("int64")
    if pd.api.types.is_numeric_dtype(s):
        values = s.astype("float64")
        return values, values.isna().to_numpy(), np.zeros(len(s), bool)
    text = _text(s)
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    missing = (text == "").to_numpy()
    return values, missing, (values.isna().to_numpy() & ~missing)


_TRUE = {"true", "1", "yes", "y", "t", "có", "co"}
_FALSE = {"false", "0", "no", "n", "f", "không", "khong", ""}


def _booleans(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Booleans of a column (true/false, 1/0, yes/no; empty = false), and the bad mask."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype(bool), np.zeros(len(s), bool)
    text = _text(s).str.lower()
    true, false = text.isin(_TRUE), text.isin(_FALSE)
    return true.astype(bool), ~(true | false).to_numpy()


def _commune_codes(s: pd.Series) -> pd.Series:
    """Commune codes as 5-digit strings (numbers and short digit strings are zero-padded)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.astype("float64")
        integral = values.notna() & (values == values.round())
        text = values.where(integral).astype("Int64").astype("str").fillna("")
        text = text.where(integral, _text(s))
    else:
        text = _text(s).str.replace(r"\.0+$", "", regex=True)  # "2998.0" from a spreadsheet
    digits = text.str.fullmatch(r"\d{1,5}")
    return text.where(~digits, text.str.zfill(5)).astype("str")


def _e164_one(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, "VN")
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(parsed):
        return ""
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_NUMBER_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
                 "voicemail", "fixed_line", "mobile")


def _e164_vn_valid(text: pd.Series) -> np.ndarray:
    """Mask of values that are valid Vietnamese numbers already written in E.164 (+84...).

    Vectorized with the patterns and possible lengths of phonenumbers' own VN
    metadata, the same tests as ``phonenumbers.is_valid_number`` (the number
    matches the general description and one number type); the tests check the
    two agree.
    """
    md = phonenumbers.PhoneMetadata.metadata_for_region("VN")
    nsn = text.str.extract(r"^\+84([1-9]\d{6,10})$", expand=False).fillna("")
    length = nsn.str.len()

    def matches(desc: Any) -> pd.Series:
        lengths = list(desc.possible_length or md.general_desc.possible_length)
        return nsn.str.fullmatch(desc.national_number_pattern) & length.isin(lengths)

    any_type = pd.Series(False, index=text.index)
    for name in _NUMBER_TYPES:
        desc = getattr(md, name)
        if desc is not None and desc.national_number_pattern:
            any_type |= matches(desc)
    return ((nsn != "") & matches(md.general_desc) & any_type).to_numpy(dtype=bool)


def _phones(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """E.164 numbers of a column ("" when empty) and the mask of invalid ones.

    Numbers already in Vietnamese E.164 are checked vectorized; the others
    (local formats, spaces, foreign numbers) are parsed by ``phonenumbers``,
    which has no vectorized API, once per distinct value.
    """
    text = _text(s)
    fast = _e164_vn_valid(text)
    slow = text[~fast & (text != "").to_numpy()]
    mapping = {number: _e164_one(number) for number in pd.unique(slow)}
    mapped = text.map(mapping).astype("object")
    out = text.where(fast, mapped.where(mapped.notna(), "")).astype("str")
    return out, ((text != "").to_numpy() & (out == "").to_numpy())


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # id | text | code | float | int | bool | phone | language
    required: bool = True
    default: Any = ""


_HOUSEHOLDS = (
    _Column("household_id", "id"), _Column("commune_code", "code"),
    _Column("lon", "float"), _Column("lat", "float"), _Column("people", "int"),
    _Column("vulnerable", "int"), _Column("phone", "phone", required=False),
)
_SHELTERS = (
    _Column("shelter_id", "id"), _Column("name", "text"), _Column("lon", "float"),
    _Column("lat", "float"), _Column("capacity", "int"), _Column("kind", "text", required=False),
)
_CONTACTS = (
    _Column("commune_code", "code"), _Column("name", "text"), _Column("role", "text", required=False),
    _Column("phone", "phone"), _Column("language", "language", required=False, default="vi"),
    _Column("unaccented", "bool", required=False, default=False),
    _Column("demo", "bool", required=False, default=False),
)
_SCHEMAS = {"households": _HOUSEHOLDS, "shelters": _SHELTERS, "contacts": _CONTACTS}
_DTYPES = {"id": "str", "text": "str", "code": "str", "phone": "str", "language": "str",
           "float": "float64", "int": "int64", "bool": "bool"}


def _empty(kind: str) -> pd.DataFrame:
    return pd.DataFrame({c.name: pd.Series([], dtype=_DTYPES[c.kind]) for c in _SCHEMAS[kind]})


def _read_csv(path: Path, label: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    """All cells of a CSV file as stripped text (nothing guessed)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         skipinitialspace=True)
    except FileNotFoundError:
        return None, [Problem(label, "file not found; check the path")]
    except UnicodeDecodeError:
        return None, [Problem(label, "not UTF-8 text; save it as 'CSV UTF-8' and try again")]
    except pd.errors.EmptyDataError:
        return None, [Problem(label, "the file is empty; it needs a header row with the column names")]
    except (pd.errors.ParserError, OSError) as exc:
        return None, [Problem(label, f"cannot read this CSV file ({exc}); check the quoting and the "
                                     "number of fields on that line")]
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df.reset_index(drop=True), []


def _parse_table(df: pd.DataFrame, kind: str, label: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Type the columns of a households/shelters/contacts table; list the bad cells.

    Works on raw text (a CSV) and on typed frames (``write_region``) alike.
    """
    schema = _SCHEMAS[kind]
    names = [c.name for c in schema]
    df = df.reset_index(drop=True)
    df.columns = [str(c).strip().lower() for c in df.columns]
    problems: list[Problem] = []
    missing = [c.name for c in schema if c.required and c.name not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns)) or "none"
        for name in missing:
            problems.append(Problem(label, f"required column '{name}' is missing (the file has: {have}); "
                                           f"the columns of {kind} are: {', '.join(names)}", field=name))
        return None, problems
    extra = [c for c in df.columns if c not in names]
    if extra:
        problems.append(Problem(label, f"column(s) {', '.join(map(str, extra))} are not used "
                                       f"(known columns: {', '.join(names)})", severity="warning"))
    out: dict[str, pd.Series] = {}
    n = len(df)
    for col in schema:
        if col.name not in df.columns:
            out[col.name] = pd.Series([col.default] * n, dtype=_DTYPES[col.kind])
            continue
        s = df[col.name]
        if col.kind in ("float", "int"):
            values, empty, bad = _numbers(s)
            problems += _rows(label, np.flatnonzero(empty), col.name, "value missing")
            bad_text = _text(s)[bad].tolist()
            problems += _rows(label, np.flatnonzero(bad), col.name,
                              [f"'{v}' is not a number" for v in bad_text])
            if col.kind == "int":
                frac = (values.notna() & (values != values.round())).to_numpy()
                problems += _rows(label, np.flatnonzero(frac), col.name,
                                  [f"{v:g} is not a whole number" for v in values[frac]])
                values = values.where(~frac)
            out[col.name] = values
        elif col.kind == "bool":
            values, bad = _booleans(s)
            bad_text = _text(s)[bad].tolist()
            problems += _rows(label, np.flatnonzero(bad), col.name,
                              [f"'{v}' is not true/false" for v in bad_text])
            out[col.name] = values
        elif col.kind == "phone":
            values, bad = _phones(s)
            bad_text = _text(s)[bad].tolist()
            problems += _rows(label, np.flatnonzero(bad), col.name,
                              [f"'{v}' is not a valid phone number (write it as +84... or 0...)"
                               for v in bad_text])
            if col.required:
                empty = (_text(s) == "").to_numpy()
                problems += _rows(label, np.flatnonzero(empty), col.name, "phone number missing")
            out[col.name] = values
        elif col.kind == "code":
            out[col.name] = _commune_codes(s)
        elif col.kind == "language":
            text = _text(s).str.lower().replace("", col.default)
            bad = ~text.isin(["vi", "en"]).to_numpy()
            problems += _rows(label, np.flatnonzero(bad), col.name,
                              [f"language '{v}' is not 'vi' or 'en'" for v in text[bad]])
            out[col.name] = text
        else:
            out[col.name] = _text(s)
        if col.kind in ("id", "code"):
            empty = (out[col.name] == "").to_numpy()
            problems += _rows(label, np.flatnonzero(empty), col.name, "value missing")
    return pd.DataFrame(out), problems


def _finalize(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Cast a checked table (no errors left) to its final dtypes."""
    return pd.DataFrame({c.name: df[c.name].astype(_DTYPES[c.kind]) for c in _SCHEMAS[kind]})


def _duplicates(label: str, ids: pd.Series, field: str) -> list[Problem]:
    """One error per repeated id, naming the row of its first occurrence."""
    valid = ids != ""
    dup = (ids.duplicated(keep="first") & valid).to_numpy()
    if not dup.any():
        return []
    first = pd.Series(np.arange(len(ids)), index=ids.index)[valid].groupby(ids[valid]).transform("min")
    first_row = first.reindex(ids.index).to_numpy()
    return _rows(label, np.flatnonzero(dup), field,
                 [f"'{v}' is a duplicate of row {int(r) + 2}" for v, r in
                  zip(ids[dup], first_row[dup], strict=True)])


@dataclass
class _CommuneIndex:
    """What the checks of the other tables need to know about the communes."""

    codes: pd.Index
    bounds: tuple[float, float, float, float]
    geometry: np.ndarray

    @classmethod
    def of(cls, communes: gpd.GeoDataFrame) -> _CommuneIndex:
        b = communes.total_bounds
        return cls(pd.Index(communes["code"]), (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                   np.asarray(communes.geometry.values))

    @cached_property
    def tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.geometry)

    def locate(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        return _locate(self.tree, self.codes.to_numpy(dtype=object), lon, lat)


def _locate(tree: shapely.STRtree, codes: np.ndarray, lon: Any, lat: Any) -> np.ndarray:
    """Code of the commune holding each point ("" outside all); ties go to the first commune."""
    lon = np.atleast_1d(np.asarray(lon, dtype="float64"))
    lat = np.atleast_1d(np.asarray(lat, dtype="float64"))
    out = np.full(lon.shape, "", dtype=object)
    if lon.size == 0 or len(codes) == 0:
        return out
    points = shapely.points(lon.ravel(), lat.ravel())
    src, hit = tree.query(points, predicate="intersects")
    if src.size:
        order = np.lexsort((hit, src))
        src, hit = src[order], hit[order]
        first = np.r_[True, src[1:] != src[:-1]]
        flat = out.ravel()
        flat[src[first]] = codes[hit[first]]
        out = flat.reshape(lon.shape)
    return out


def _check_points(label: str, df: pd.DataFrame, communes: _CommuneIndex | None,
                  what: str) -> tuple[list[Problem], np.ndarray]:
    """Errors for points outside the region's bounds (+ margin); mask of points inside."""
    lon, lat = df["lon"].to_numpy(dtype=float), df["lat"].to_numpy(dtype=float)
    known = ~(np.isnan(lon) | np.isnan(lat))
    if communes is None:
        return [], known
    minx, miny, maxx, maxy = communes.bounds
    m = BOUNDS_MARGIN_DEG

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= minx - m) & (x <= maxx + m) & (y >= miny - m) & (y <= maxy + m)

    ok = inside(lon, lat)
    outside = known & ~ok
    swapped = inside(lat, lon)
    messages = [
        f"the {what} at lon={x:g}, lat={y:g} is outside the region (lon {minx:.3f}..{maxx:.3f}, "
        f"lat {miny:.3f}..{maxy:.3f})" + ("; lon and lat look swapped" if s else
                                           "; check the coordinates (decimal degrees, WGS84)")
        for x, y, s in zip(lon[outside], lat[outside], swapped[outside], strict=True)
    ]
    return _rows(label, np.flatnonzero(outside), "lon", messages), known & ok


def _check_households(df: pd.DataFrame, label: str, communes: _CommuneIndex | None) -> list[Problem]:
    problems = _duplicates(label, df["household_id"], "household_id")
    if communes is not None:
        code = df["commune_code"]
        unknown = ((code != "") & ~code.isin(communes.codes)).to_numpy()
        problems += _rows(label, np.flatnonzero(unknown), "commune_code",
                          [f"commune code '{v}' is not in the region's communes" for v in code[unknown]])
    point_problems, located = _check_points(label, df, communes, "household")
    problems += point_problems
    people, vulnerable = df["people"].to_numpy(dtype=float), df["vulnerable"].to_numpy(dtype=float)
    bad = people <= 0
    problems += _rows(label, np.flatnonzero(bad), "people",
                      [f"people must be at least 1 (got {v:g})" for v in people[bad]])
    bad = vulnerable < 0
    problems += _rows(label, np.flatnonzero(bad), "vulnerable",
                      [f"vulnerable must be 0 or more (got {v:g})" for v in vulnerable[bad]])
    bad = vulnerable > people
    problems += _rows(label, np.flatnonzero(bad), "vulnerable",
                      [f"vulnerable ({v:g}) is more than people ({p:g})"
                       for v, p in zip(vulnerable[bad], people[bad], strict=True)])
    if communes is not None and located.any():
        where = np.full(len(df), "", dtype=object)
        where[located] = communes.locate(df["lon"].to_numpy(float)[located],
                                         df["lat"].to_numpy(float)[located])
        code = df["commune_code"].to_numpy(dtype=object)
        elsewhere = located & (where != code) & np.isin(code, communes.codes.to_numpy(dtype=object))
        problems += _rows(label, np.flatnonzero(elsewhere), "commune_code",
                          [f"the household lies in commune '{w}', not in its commune '{c}'"
                           if w else f"the household lies outside every commune (its commune is '{c}')"
                           for w, c in zip(where[elsewhere], code[elsewhere], strict=True)],
                          severity="warning")
    return problems


def _check_shelters(df: pd.DataFrame, label: str, communes: _CommuneIndex | None) -> list[Problem]:
    problems = _duplicates(label, df["shelter_id"], "shelter_id")
    empty = (df["name"] == "").to_numpy()
    problems += _rows(label, np.flatnonzero(empty), "name", "shelter name missing")
    problems += _check_points(label, df, communes, "shelter")[0]
    capacity = df["capacity"].to_numpy(dtype=float)
    bad = capacity <= 0
    problems += _rows(label, np.flatnonzero(bad), "capacity",
                      [f"capacity must be at least 1 person (got {v:g})" for v in capacity[bad]])
    return problems


def _check_contacts(df: pd.DataFrame, label: str, communes: _CommuneIndex | None) -> list[Problem]:
    problems: list[Problem] = []
    if communes is not None:
        code = df["commune_code"]
        unknown = ((code != "") & ~code.isin(communes.codes)).to_numpy()
        problems += _rows(label, np.flatnonzero(unknown), "commune_code",
                          [f"commune code '{v}' is not in the region's communes" for v in code[unknown]])
    empty = (df["name"] == "").to_numpy()
    problems += _rows(label, np.flatnonzero(empty), "name", "contact name missing", severity="warning")
    pair = df["commune_code"] + " " + df["phone"]
    repeated = (pair.duplicated(keep="first") & (df["phone"] != "")).to_numpy()
    problems += _rows(label, np.flatnonzero(repeated), "phone",
                      "the same phone number is listed twice for this commune (it would get every "
                      "message twice)", severity="warning")
    return problems


_CHECKS: dict[str, Callable[[pd.DataFrame, str, _CommuneIndex | None], list[Problem]]] = {
    "households": _check_households, "shelters": _check_shelters, "contacts": _check_contacts,
}


def _table(kind: str, df: pd.DataFrame | None, label: str,
           communes: _CommuneIndex | None) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Parse and check one table; the final frame, or None when it has errors."""
    if df is None:
        return _empty(kind), []
    parsed, problems = _parse_table(df, kind, label)
    if parsed is None:
        return None, problems
    problems += _CHECKS[kind](parsed, label, communes)
    if _has_errors(problems):
        return None, problems
    return _finalize(parsed, kind), problems


# --------------------------------------------------------------------------- communes

_FIELD_OPTIONS = {"code": "--code-field", "name": "--name-field", "population": "--population-field",
                  "province": "--province-field"}


def _read_communes(path: Path, label: str, *, code_field: str = "code", name_field: str = "name",
                   population_field: str = "population", province_field: str | None = "province",
                   province: str | None = None, layer: str | None = None,
                   ) -> tuple[gpd.GeoDataFrame | None, list[Problem]]:
    """Read a communes file (GeoJSON, GeoPackage, shapefile) and check it."""
    import pyogrio

    if not path.exists():
        return None, [Problem(label, "file not found; check the path")]
    try:
        if layer is None:
            layers = pyogrio.list_layers(path)
            if len(layers) > 1:
                names = ", ".join(str(n) for n in layers[:, 0])
                return None, [Problem(label, f"the file has several layers ({names}); choose one with "
                                             "--layer", field="layer")]
        gdf = gpd.read_file(path, layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError) as exc:
        return None, [Problem(label, f"cannot read communes ({exc}); give a GeoJSON, GeoPackage or "
                                     "shapefile")]
    return _check_communes(gdf, label, code_field=code_field, name_field=name_field,
                           population_field=population_field, province_field=province_field,
                           province=province)


def _check_crs(gdf: gpd.GeoDataFrame, label: str) -> tuple[gpd.GeoDataFrame | None, list[Problem]]:
    if gdf.crs is None:
        b = gdf.total_bounds if len(gdf) else np.zeros(4)
        if np.all(np.isfinite(b)) and -180 <= b[0] <= b[2] <= 180 and -90 <= b[1] <= b[3] <= 90:
            return gdf.set_crs(4326), [Problem(label, "the file has no CRS; its coordinates look like "
                                                      "longitude/latitude, so EPSG:4326 is assumed",
                                               severity="warning")]
        return None, [Problem(label, "the file has no CRS and its coordinates are not longitude/latitude; "
                                     "add the CRS (e.g. a .prj file) or reproject it to EPSG:4326")]
    crs = CRS.from_user_input(gdf.crs)
    if crs.to_epsg() == 4326 or crs.equals(CRS.from_user_input("OGC:CRS84")):
        return (gdf if crs.to_epsg() == 4326 else gdf.set_crs(4326, allow_override=True)), []
    name = crs.to_string()
    return gdf.to_crs(4326), [Problem(label, f"reprojected from {name} to EPSG:4326", severity="warning")]


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry | None:
    """The polygonal part of a repaired geometry (None when there is none)."""
    parts = shapely.get_parts(geom)
    polys = parts[shapely.get_type_id(parts) == 3]
    multi = parts[shapely.get_type_id(parts) == 6]
    polys = np.concatenate([polys, shapely.get_parts(multi)]) if len(multi) else polys
    polys = polys[~shapely.is_empty(polys)]
    if len(polys) == 0:
        return None
    return polys[0] if len(polys) == 1 else shapely.multipolygons(polys)


def _check_geometry(geoms: np.ndarray, label: str) -> tuple[np.ndarray, list[Problem]]:
    problems: list[Problem] = []
    geoms = geoms.copy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    problems += _rows(label, np.flatnonzero(missing), "geometry", "geometry missing or empty",
                      unit="feature")
    type_id = shapely.get_type_id(geoms)
    wrong = ~missing & ~np.isin(type_id, [3, 6])
    names = shapely.get_type_id(geoms[wrong])
    type_names = {0: "Point", 1: "LineString", 2: "LinearRing", 4: "MultiPoint", 5: "MultiLineString",
                  7: "GeometryCollection"}
    problems += _rows(label, np.flatnonzero(wrong), "geometry",
                      [f"a {type_names.get(int(t), 'non-polygon')} geometry; communes must be Polygon or "
                       "MultiPolygon" for t in names], unit="feature")
    invalid = ~missing & ~wrong & ~shapely.is_valid(geoms)
    for i in np.flatnonzero(invalid):  # only the invalid features: repair one by one
        reason = shapely.is_valid_reason(geoms[i])
        fixed = _polygonal(shapely.make_valid(geoms[i]))
        if fixed is None:
            problems += _rows(label, np.array([i]), "geometry",
                              f"invalid geometry ({reason}) that shapely.make_valid cannot repair into a "
                              "polygon; fix it in a GIS (e.g. QGIS 'Fix geometries')", unit="feature")
        else:
            geoms[i] = fixed
            problems += _rows(label, np.array([i]), "geometry",
                              f"invalid geometry ({reason}) repaired with shapely.make_valid",
                              unit="feature", severity="warning")
    return geoms, problems


def _check_communes(gdf: gpd.GeoDataFrame, label: str, *, code_field: str = "code",
                    name_field: str = "name", population_field: str = "population",
                    province_field: str | None = "province", province: str | None = None,
                    ) -> tuple[gpd.GeoDataFrame | None, list[Problem]]:
    """Map the fields of a communes layer to the canonical columns and check every feature."""
    gdf = gdf.reset_index(drop=True)
    columns = [str(c) for c in gdf.columns if c != gdf.geometry.name]
    problems: list[Problem] = []
    mapping = {"code": code_field, "name": name_field, "population": population_field}
    # a province field named by the user must exist; the canonical "province" may be absent
    if province_field is not None and (province_field != "province" or province_field in columns):
        mapping["province"] = province_field
    for role, fld in mapping.items():
        if fld not in columns:
            problems.append(Problem(
                label, f"field '{fld}' (the commune {role}) not found; the file has the fields: "
                       f"{', '.join(columns) or 'none'}; pass {_FIELD_OPTIONS[role]} with one of them",
                field=fld))
    if problems:
        return None, problems
    if len(gdf) == 0:
        return None, [Problem(label, "the file has no features; it must hold the commune polygons")]
    gdf, crs_problems = _check_crs(gdf, label)
    problems += crs_problems
    if gdf is None:
        return None, problems

    code = _commune_codes(gdf[code_field])
    empty = (code == "").to_numpy()
    problems += _rows(label, np.flatnonzero(empty), code_field, "commune code missing", unit="feature")
    bad = (~empty) & ~code.str.fullmatch(r"\d{5}").to_numpy()
    problems += _rows(label, np.flatnonzero(bad), code_field,
                      [f"'{v}' is not a 5-digit commune code (Decision 19/2025/QĐ-TTg)" for v in code[bad]],
                      unit="feature")
    dup = (code.duplicated(keep="first") & ~pd.Series(empty)).to_numpy()
    first_pos = pd.Series(np.arange(len(code))).groupby(code.to_numpy()).transform("min").to_numpy()
    problems += _rows(label, np.flatnonzero(dup), code_field,
                      [f"code '{v}' is a duplicate of feature {int(p) + 1}"
                       for v, p in zip(code[dup], first_pos[dup], strict=True)], unit="feature")

    name = _text(gdf[name_field])
    empty = (name == "").to_numpy()
    problems += _rows(label, np.flatnonzero(empty), name_field, "commune name missing", unit="feature")

    pop, missing, notnum = _numbers(gdf[population_field])
    problems += _rows(label, np.flatnonzero(missing), population_field, "population missing",
                      unit="feature")
    problems += _rows(label, np.flatnonzero(notnum), population_field,
                      [f"population '{v}' is not a number" for v in _text(gdf[population_field])[notnum]],
                      unit="feature")
    negative = (pop < 0).to_numpy()
    problems += _rows(label, np.flatnonzero(negative), population_field,
                      [f"population {v:g} is negative" for v in pop[negative]], unit="feature")
    frac = (pop.notna() & (pop != pop.round())).to_numpy()
    problems += _rows(label, np.flatnonzero(frac), population_field,
                      [f"population {v:g} rounded to a whole number" for v in pop[frac]],
                      unit="feature", severity="warning")

    if "province" in mapping:
        prov = _text(gdf[mapping["province"]])
        if province:
            prov = prov.replace("", unicodedata.normalize("NFC", province.strip()))
    else:
        prov = pd.Series([unicodedata.normalize("NFC", (province or "").strip())] * len(gdf), dtype="str")
    if (prov == "").any():
        problems.append(Problem(label, f"{int((prov == '').sum())} commune(s) have no province, so their "
                                       "pre-2025 province (Decision 18/2021 region group) is unknown; pass "
                                       "--province-field or --province", field="province",
                                severity="warning"))
    for unknown in sorted(set(prov[prov != ""]) - {p for p in set(prov) if legacy_provinces_of(p)}):
        problems.append(Problem(label, f"province '{unknown}' is not one of the 34 provinces of 2025 nor a "
                                       "pre-2025 province; check its spelling or set [legacy_province] in "
                                       "region.toml", field=mapping.get("province", "province"),
                                severity="warning"))

    geoms, geom_problems = _check_geometry(np.asarray(gdf.geometry.values), label)
    problems += geom_problems
    if _has_errors(problems):
        return None, problems
    out = gpd.GeoDataFrame(
        {"code": code.astype("str"), "name": name.astype("str"), "province": prov.astype("str"),
         "population": pop.round().astype("int64")},
        geometry=gpd.GeoSeries(geoms, crs=4326), crs=4326,
    )
    return out, problems


def _with_legacy(communes: gpd.GeoDataFrame, override: Mapping[str, str], label: str,
                 ) -> tuple[gpd.GeoDataFrame, list[Problem]]:
    """Add the ``legacy_province`` column (override, else single merged province, else candidates)."""
    problems: list[Problem] = []
    distinct = pd.unique(communes["province"])
    candidates = {p: ";".join(legacy_provinces_of(p)) for p in distinct}
    legacy = communes["province"].map(candidates).fillna("").astype("str")
    if override:
        ov = pd.Series({str(k): unicodedata.normalize("NFC", str(v).strip()) for k, v in override.items()})
        unknown_codes = sorted(set(ov.index) - set(communes["code"]))
        for code in unknown_codes:
            problems.append(Problem(label, f"code '{code}' is not in the region's communes",
                                    where="[legacy_province]", field=code, severity="warning"))
        canonical = ov.map(_legacy_name)
        for code, name in ov[canonical.isna()].items():
            problems.append(Problem(label, f"'{name}' is not one of the 63 pre-2025 province names",
                                    where="[legacy_province]", field=str(code), severity="warning"))
        ov = canonical.fillna(ov)
        mapped = communes["code"].map(ov)
        legacy = mapped.where(mapped.notna(), legacy).astype("str")
    ambiguous = legacy.str.contains(";", regex=False)
    for prov, n in communes.loc[ambiguous.to_numpy(), "province"].value_counts(sort=False).items():
        problems.append(Problem(
            label, f"{n} commune(s) of {prov} may lie in any of the pre-2025 provinces "
                   f"{candidates.get(prov, '')}; the hazard model uses the most susceptible region group "
                   "— pin them with a [legacy_province] table in region.toml", field="legacy_province",
            severity="warning"))
    communes = communes.assign(legacy_province=legacy)
    return communes[_COMMUNE_COLUMNS], problems


# --------------------------------------------------------------------------- terrain

_ELEVATION_NAMES = ("elevation", "elev", "z", "band1", "height", "altitude", "dem", "band_data", "hgt",
                    "orography", "topo")
_ELEVATION_STANDARD = ("surface_altitude", "height_above_mean_sea_level", "altitude", "height",
                       "height_above_reference_ellipsoid")


#: Units that mark latitude / longitude coordinates (CF-1.8 sections 4.1 and 4.2).
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}


def _find_axis(ds: xr.Dataset, which: str) -> str | None:
    """Name of the latitude or longitude coordinate, by CF attributes, then by name."""
    std, units = ("latitude", _LAT_UNITS) if which == "lat" else ("longitude", _LON_UNITS)
    names = ("latitude", "lat") if which == "lat" else ("longitude", "lon", "long")
    candidates = [str(n) for n in ds.variables if ds[n].ndim == 1]
    for n in candidates:
        attrs = ds[n].attrs
        if attrs.get("standard_name") == std or str(attrs.get("units", "")).lower() in units:
            return n
    for n in candidates:
        if n.lower() in names:
            return n
    fallback = "y" if which == "lat" else "x"
    return fallback if fallback in candidates else None


def _normalize_terrain(ds: xr.Dataset, label: str) -> tuple[xr.Dataset | None, list[Problem]]:
    """``elevation`` [m] on ascending (latitude, longitude) axes, or the problems."""
    problems: list[Problem] = []
    data_vars = [str(v) for v in ds.data_vars]
    var = next((v for v in data_vars if ds[v].attrs.get("standard_name") in _ELEVATION_STANDARD), None)
    var = var or next((v for v in data_vars if v.lower() in _ELEVATION_NAMES), None)
    if var is None:
        two_d = [v for v in data_vars if ds[v].squeeze().ndim == 2]
        if len(two_d) != 1:
            return None, [Problem(label, f"no elevation variable (looked for {', '.join(_ELEVATION_NAMES)} "
                                         "or a CF standard_name surface_altitude); the file has: "
                                         f"{', '.join(data_vars) or 'none'}; rename it to 'elevation'",
                                  field="elevation")]
        var = two_d[0]
        problems.append(Problem(label, f"variable '{var}' taken as the elevation", field=var,
                                severity="warning"))
    lat, lon = _find_axis(ds, "lat"), _find_axis(ds, "lon")
    if lat is None or lon is None:
        return None, [Problem(label, "no latitude/longitude coordinates found (need 1-D coordinates with "
                                     "CF standard_name latitude/longitude); the grid must be a regular "
                                     "lat/lon grid in EPSG:4326", field=var)]
    da = ds[var]
    extra = [d for d in da.dims if d not in (lat, lon)]
    if any(da.sizes[d] != 1 for d in extra) or lat not in da.dims or lon not in da.dims:
        return None, [Problem(label, f"'{var}' has dimensions {tuple(da.dims)}; it must be 2-D "
                                     f"({lat}, {lon})", field=var)]
    da = da.squeeze(extra, drop=True).transpose(lat, lon)
    units = str(da.attrs.get("units", "m")).strip().lower()
    if units not in ("m", "meter", "meters", "metre", "metres", "m asl", ""):
        problems.append(Problem(label, f"elevation units are '{units}'; ewarn expects metres",
                                field=var, severity="warning"))
    da = da.rename({lat: "latitude", lon: "longitude"}).sortby(["latitude", "longitude"])
    for axis in ("latitude", "longitude"):
        values = da[axis].to_numpy().astype("float64")
        step = np.diff(values)
        if len(values) < 2 or np.any(step <= 0) or not np.allclose(step, step[0], rtol=1e-3, atol=0):
            problems.append(Problem(label, f"the {axis} axis is not a regular grid (steps "
                                           f"{np.unique(np.round(step, 9))[:5].tolist()}); resample the DEM "
                                           "to a regular EPSG:4326 grid", field=axis))
    if _has_errors(problems):
        return None, problems
    da = da.astype("float32")
    da.attrs = {"units": "m", "standard_name": "surface_altitude", "long_name": "elevation above sea level"}
    out = xr.Dataset({"elevation": da})
    out["latitude"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    out["longitude"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    return out, problems


def _open_terrain(path: Path, label: str) -> tuple[xr.Dataset | None, list[Problem]]:
    """Open a NetCDF or GeoTIFF DEM lazily and normalise it."""
    if not path.exists():
        return None, [Problem(label, "file not found; check the path")]
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        try:
            import rioxarray
        except ImportError:
            return None, [Problem(label, "reading GeoTIFF needs rioxarray: pip install 'ewarn[geotiff]' "
                                         "(or convert it with: gdal_translate -of netCDF dem.tif dem.nc)")]
        try:
            da = rioxarray.open_rasterio(path, masked=True)
        except Exception as exc:  # rasterio raises many kinds
            return None, [Problem(label, f"cannot read this GeoTIFF ({exc})")]
        crs = da.rio.crs
        crs_problems: list[Problem] = []
        if crs is None:
            crs_problems.append(Problem(label, "the GeoTIFF has no CRS; EPSG:4326 is assumed",
                                        severity="warning"))
        elif crs.to_epsg() != 4326:
            return None, [Problem(label, f"the GeoTIFF is in {crs}; reproject it to EPSG:4326 "
                                         "(gdalwarp -t_srs EPSG:4326 in.tif out.tif)")]
        da = da.squeeze("band", drop=True) if "band" in da.dims else da
        ds = da.to_dataset(name="elevation").rename({"y": "latitude", "x": "longitude"})
        out, problems = _normalize_terrain(ds, label)
        return out, crs_problems + problems
    try:
        ds = xr.open_dataset(path)
    except (OSError, ValueError) as exc:
        return None, [Problem(label, f"cannot read terrain ({exc}); give a NetCDF or GeoTIFF DEM")]
    out, problems = _normalize_terrain(ds, label)
    if out is None:
        ds.close()
    else:
        out.set_close(ds.close)  # closing the normalised dataset closes the file
    return out, problems


def _check_terrain(ds: xr.Dataset, bounds: tuple[float, float, float, float] | None, label: str,
                   *, full: bool) -> list[Problem]:
    """Coverage of the communes' bounds; with ``full``, the values (reads the whole grid)."""
    problems: list[Problem] = []
    lat, lon = ds["latitude"].to_numpy(), ds["longitude"].to_numpy()
    dlat, dlon = (lat[1] - lat[0]) / 2, (lon[1] - lon[0]) / 2
    if bounds is not None:
        minx, miny, maxx, maxy = bounds
        eps = 1e-9
        if (lon[0] - dlon > minx + eps or lon[-1] + dlon < maxx - eps or lat[0] - dlat > miny + eps
                or lat[-1] + dlat < maxy - eps):
            problems.append(Problem(
                label, f"the terrain covers lon {lon[0] - dlon:.4f}..{lon[-1] + dlon:.4f}, lat "
                       f"{lat[0] - dlat:.4f}..{lat[-1] + dlat:.4f} but the communes extend over lon "
                       f"{minx:.4f}..{maxx:.4f}, lat {miny:.4f}..{maxy:.4f}; use a larger DEM extract",
                field="elevation"))
    if full and bool(ds["elevation"].isnull().all()):
        problems.append(Problem(label, "every elevation value is missing (NaN / fill value)",
                                field="elevation"))
    return problems


def _write_terrain(ds: xr.Dataset, path: Path) -> None:
    ds = ds.copy()
    ds.attrs = {"Conventions": "CF-1.8", "title": "ewarn region terrain"}
    ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding={
        "elevation": {"zlib": True, "complevel": 4, "dtype": "float32", "_FillValue": np.float32("nan")},
        "latitude": {"_FillValue": None}, "longitude": {"_FillValue": None},
    })


# --------------------------------------------------------------------------- roads


def _roads_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in ROAD_SUFFIXES if name.endswith(s)), None)


def _load_roads(path: Path) -> nx.MultiDiGraph:
    """Load an osmnx graph: GraphML (``ox.load_graphml``) or OSM XML (``ox.graph_from_xml``)."""
    import osmnx as ox

    if _roads_suffix(path) == ".graphml":
        return ox.load_graphml(path)
    # retain_all: keep every connected piece; routing decides what is reachable
    graph = ox.graph_from_xml(path, retain_all=True)
    # graph_from_xml turns every OSM way into edges, buildings and land use too: keep the roads
    not_roads = [(u, v, k) for u, v, k, hw in graph.edges(keys=True, data="highway") if not hw]
    graph.remove_edges_from(not_roads)
    graph.remove_nodes_from([n for n in list(graph.nodes) if graph.degree(n) == 0])
    return graph


def _check_roads(path: Path, label: str, *, parse: bool) -> list[Problem]:
    if not path.exists():
        return [Problem(label, "file not found; check the path")]
    if _roads_suffix(path) is None:
        return [Problem(label, "roads must be a .graphml, .osm or .osm.bz2 file")]
    if parse:
        try:
            graph = _load_roads(path)
        except Exception as exc:  # osmnx/networkx/xml raise many kinds
            return [Problem(label, f"cannot read the road network ({exc.__class__.__name__}: {exc})")]
        if graph.number_of_edges() == 0:
            return [Problem(label, "the road network has no roads", severity="warning")]
    return []


# --------------------------------------------------------------------------- the folder


@dataclass
class _Parts:
    name: str
    description: str
    files: dict[str, Path]
    communes: gpd.GeoDataFrame
    households: pd.DataFrame
    shelters: pd.DataFrame
    contacts: pd.DataFrame
    meta: dict
    legacy: dict[str, str]


def _read_manifest(folder: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    label = _label(folder / REGION_FILE)
    if not folder.is_dir():
        return None, [Problem(_label(folder), "region folder not found; create one with 'ewarn region "
                                              "import' or 'ewarn demo'")]
    path = folder / REGION_FILE
    if not path.exists():
        return None, [Problem(label, "region.toml missing; this is not a region folder (create one with "
                                     "'ewarn region import')")]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return None, [Problem(label, f"not valid TOML ({exc})")]
    problems: list[Problem] = []
    for key in sorted(set(data) - {"name", "description", "files", "legacy_province", "meta"}):
        problems.append(Problem(label, "unknown key (ignored)", field=key, severity="warning"))
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        problems.append(Problem(label, "the region needs a name (name = \"...\")", field="name"))
    files = data.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("communes"), str):
        problems.append(Problem(label, "[files] must name the communes file (communes = "
                                       "\"communes.geojson\")", field="files.communes"))
        files = {}
    for key in sorted(k for k in files if k in FILE_KEYS and not isinstance(files[k], str)):
        problems.append(Problem(label, "must be a file name in quotes", field=f"files.{key}"))
    for key in sorted(set(files) - set(FILE_KEYS)):
        problems.append(Problem(label, f"unknown file key (known: {', '.join(FILE_KEYS)})",
                                field=f"files.{key}", severity="warning"))
    for key in ("legacy_province", "meta"):
        if not isinstance(data.get(key, {}), dict):
            problems.append(Problem(label, f"[{key}] must be a table", field=key))
    return data, problems


def _collect(folder: Path, *, full: bool, parse_roads: bool) -> tuple[_Parts | None, list[Problem]]:
    """Read and check a region folder; every problem, and the parts when there is no error."""
    folder = Path(folder).expanduser().resolve()
    data, problems = _read_manifest(folder)
    if data is None or _has_errors(problems):
        return None, problems
    files = {k: (folder / v) for k, v in data["files"].items() if k in FILE_KEYS and isinstance(v, str)}
    communes, found = _read_communes(files["communes"], _label(files["communes"]))
    problems += found
    index = _CommuneIndex.of(communes) if communes is not None else None
    tables: dict[str, pd.DataFrame | None] = {}
    for kind in ("households", "shelters", "contacts"):
        if kind not in files:
            tables[kind] = _empty(kind)
            continue
        label = _label(files[kind])
        raw, found = _read_csv(files[kind], label)
        problems += found
        tables[kind], found = _table(kind, raw, label, index) if raw is not None else (None, [])
        problems += found
    if "terrain" in files:
        label = _label(files["terrain"])
        ds, found = _open_terrain(files["terrain"], label)
        problems += found
        if ds is not None:
            problems += _check_terrain(ds, index.bounds if index else None, label, full=full)
            ds.close()
    if "roads" in files:
        problems += _check_roads(files["roads"], _label(files["roads"]), parse=parse_roads)
    legacy = {str(k): str(v) for k, v in data.get("legacy_province", {}).items()}
    if communes is not None:
        communes, found = _with_legacy(communes, legacy, _label(folder / REGION_FILE))
        problems += found
    problems = _cap_warnings(problems)
    if _has_errors(problems):
        return None, problems
    parts = _Parts(name=data["name"].strip(), description=str(data.get("description", "")), files=files,
                   communes=communes, households=tables["households"], shelters=tables["shelters"],
                   contacts=tables["contacts"], meta=dict(data.get("meta", {})), legacy=legacy)
    return parts, problems


def validate_region(folder: Path | str) -> list[Problem]:
    """Every problem of a region folder, errors and warnings (never raises for bad content).

    Reads every file, including every terrain value and the road network.

    Parameters
    ----------
    folder : path
        The region folder (holding ``region.toml``).

    Returns
    -------
    list of Problem
        Empty when the region is valid; ``severity == "error"`` ones refuse it.
    """
    return _collect(Path(folder), full=True, parse_roads=True)[1]


@dataclass(eq=False)
class Region:
    """The data of one area, read from a region folder and validated.

    Attributes
    ----------
    folder : Path
        The region folder.
    name : str
        Region name (``region.toml``).
    communes : geopandas.GeoDataFrame
        ``code`` (5-digit str), ``name``, ``province``, ``population`` (int),
        ``legacy_province`` (pre-2025 province, or ``;``-joined candidates),
        ``geometry`` (EPSG:4326).
    households : pandas.DataFrame
        ``household_id``, ``commune_code`` (str), ``lon``, ``lat`` [deg],
        ``people``, ``vulnerable`` (int), ``phone`` (E.164 or "").
    shelters : pandas.DataFrame
        ``shelter_id``, ``name``, ``lon``, ``lat`` [deg], ``capacity`` [people], ``kind``.
    contacts : pandas.DataFrame
        ``commune_code``, ``name``, ``role``, ``phone`` (E.164), ``language``
        (vi | en), ``unaccented``, ``demo`` (bool).
    files : dict of str to Path
        Absolute paths of the files ``region.toml`` names.
    meta : dict
        The ``[meta]`` table.
    warnings : list of Problem
        What the validation found that did not refuse the region.
    """

    folder: Path
    name: str
    communes: gpd.GeoDataFrame
    households: pd.DataFrame
    shelters: pd.DataFrame
    contacts: pd.DataFrame
    files: dict[str, Path]
    meta: dict
    warnings: list[Problem] = field(default_factory=list)
    description: str = ""

    @classmethod
    def load(cls, folder: Path | str) -> Region:
        """Read and validate a region folder.

        The terrain's values and the road network are read when first used
        (``Region.terrain``, ``Region.roads``); use :func:`validate_region` to
        check them too.

        Raises
        ------
        RegionError
            Listing every error of every file.
        """
        folder = Path(folder).expanduser().resolve()
        parts, problems = _collect(folder, full=False, parse_roads=False)
        if parts is None:
            n = sum(p.severity == "error" for p in problems)
            raise RegionError(f"region {folder} is not valid ({n} error(s)); fix them and run "
                              "'ewarn region validate'", problems)
        return cls(folder=folder, name=parts.name, communes=parts.communes, households=parts.households,
                   shelters=parts.shelters, contacts=parts.contacts, files=parts.files, meta=parts.meta,
                   warnings=[p for p in problems if p.severity != "error"], description=parts.description)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) of the communes [deg]."""
        b = self.communes.total_bounds
        return float(b[0]), float(b[1]), float(b[2]), float(b[3])

    @cached_property
    def terrain(self) -> xr.Dataset | None:
        """``elevation`` [m] on ascending (latitude, longitude), opened lazily; None without terrain."""
        path = self.files.get("terrain")
        if path is None:
            return None
        ds, problems = _open_terrain(path, _label(path))
        if ds is None:
            raise RegionError(f"cannot read the terrain of region {self.name}", problems)
        return ds

    @cached_property
    def roads(self) -> nx.MultiDiGraph | None:
        """The road network (an osmnx MultiDiGraph, EPSG:4326); None without roads."""
        path = self.files.get("roads")
        if path is None:
            return None
        try:
            return _load_roads(path)
        except Exception as exc:  # osmnx/networkx/xml raise many kinds
            raise RegionError(f"cannot read the roads of region {self.name}", [Problem(
                _label(path), f"cannot read the road network ({exc.__class__.__name__}: {exc})")]) from None

    @cached_property
    def _tree(self) -> shapely.STRtree:
        return shapely.STRtree(np.asarray(self.communes.geometry.values))

    def commune_of(self, lon: Any, lat: Any) -> np.ndarray:
        """Code of the commune each point lies in ("" outside every commune).

        Parameters
        ----------
        lon, lat : array_like
            Coordinates [deg, EPSG:4326], any matching shape.

        Returns
        -------
        numpy.ndarray of str (object dtype)
            Same shape as ``lon``; a point on a shared border goes to the
            commune listed first.
        """
        return _locate(self._tree, self.communes["code"].to_numpy(dtype=object), lon, lat)


# --------------------------------------------------------------------------- writing


def _geojson(communes: gpd.GeoDataFrame) -> str:
    """RFC 7946 FeatureCollection text, coordinates to COORD_DECIMALS places, one feature per line."""
    scale = 10.0 ** -COORD_DECIMALS
    geoms = shapely.set_precision(np.asarray(communes.geometry.values), scale)
    geoms = shapely.transform(geoms, lambda xy: np.round(xy, COORD_DECIMALS))
    frame = gpd.GeoDataFrame(communes[["code", "name", "province", "population"]].copy(),
                             geometry=gpd.GeoSeries(geoms, crs=4326), crs=4326)
    features = frame.to_geo_dict(drop_id=True)["features"]
    lines = [json.dumps(f, ensure_ascii=False, sort_keys=True, separators=(",", ":")) for f in features]
    return '{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n"


def _csv_text(df: pd.DataFrame) -> str:
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map({True: "true", False: "false"})
    return out.to_csv(index=False, lineterminator="\n", float_format=f"%.{COORD_DECIMALS}f")


def _sorted(value: Any) -> Any:
    """A TOML-ready copy: keys sorted, numpy scalars as Python ones."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _replace_label(problems: list[Problem], old: Path, new: Path) -> list[Problem]:
    return [replace(p, file=p.file.replace(str(old), str(new))) for p in problems]


def _swap_in(tmp: Path, dest: Path) -> None:
    """Move the finished folder into place; an old one is moved away first, then deleted."""
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
        try:
            os.replace(tmp, dest)
        except OSError:
            os.replace(old, dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _refuse_existing(dest: Path, overwrite: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise RegionError(f"{dest} exists and is not a folder; choose another destination", [])
    if dest.exists() and not overwrite:
        raise RegionError(f"region folder {dest} already exists; pass --overwrite (overwrite=True) to "
                          "replace it", [])


def _write(dest: Path, *, name: str, communes: gpd.GeoDataFrame, labels: dict[str, str],
           households: pd.DataFrame | None, shelters: pd.DataFrame | None,
           contacts: pd.DataFrame | None, terrain: xr.Dataset | None,
           roads: nx.MultiDiGraph | Path | None, legacy_province: Mapping[str, str] | None,
           meta: Mapping[str, Any] | None, description: str, overwrite: bool,
           problems: list[Problem]) -> list[Problem]:
    """Check the parts, write them to a temp sibling folder, validate it, move it into place."""
    dest = Path(dest).expanduser().resolve()
    _refuse_existing(dest, overwrite)
    if not name or not str(name).strip():
        problems.append(Problem(_label(dest / REGION_FILE), "the region needs a name", field="name"))
    index = _CommuneIndex.of(communes) if communes is not None else None
    tables: dict[str, pd.DataFrame | None] = {}
    for kind, df in (("households", households), ("shelters", shelters), ("contacts", contacts)):
        tables[kind], found = _table(kind, df, labels.get(kind, kind), index)
        problems += found
    if terrain is not None:
        terrain, found = _normalize_terrain(terrain, labels.get("terrain", "terrain"))
        problems += found
        if terrain is not None:
            problems += _check_terrain(terrain, index.bounds if index else None,
                                       labels.get("terrain", "terrain"), full=True)
    roads_name = None
    if isinstance(roads, str | Path):
        roads = Path(roads)
        problems += _check_roads(roads, labels.get("roads", str(roads)), parse=False)
        roads_name = "roads" + (_roads_suffix(roads) or "")
    elif roads is not None:
        if not isinstance(roads, nx.MultiDiGraph):
            problems.append(Problem(labels.get("roads", "roads"), "roads must be an osmnx MultiDiGraph "
                                                                  "or a .graphml/.osm/.osm.bz2 file"))
        roads_name = "roads.graphml"
    manifest: dict[str, Any] = {"name": str(name).strip(), "description": description, "files": {}}
    try:
        tomli_w.dumps(_sorted(dict(meta or {})))
    except TypeError as exc:
        problems.append(Problem(_label(dest / REGION_FILE), f"meta cannot be written as TOML ({exc})",
                                field="meta"))
    problems = _cap_warnings(problems)
    if _has_errors(problems) or communes is None:
        n = sum(p.severity == "error" for p in problems)
        raise RegionError(f"region not written: {n} error(s); nothing was changed at {dest}", problems)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = manifest["files"]
        files["communes"] = CANONICAL_FILES["communes"]
        (tmp / files["communes"]).write_text(_geojson(communes), encoding="utf-8")
        if terrain is not None:
            files["terrain"] = CANONICAL_FILES["terrain"]
            _write_terrain(terrain, tmp / files["terrain"])
        given = {"households": households, "shelters": shelters, "contacts": contacts}
        for kind, df in tables.items():
            if df is not None and given[kind] is not None:  # an absent table stays absent
                files[kind] = CANONICAL_FILES[kind]
                (tmp / files[kind]).write_text(_csv_text(df), encoding="utf-8")
        if roads_name is not None:
            files["roads"] = roads_name
            if isinstance(roads, Path):
                shutil.copyfile(roads, tmp / roads_name)
            else:
                import osmnx as ox

                ox.save_graphml(roads, tmp / roads_name)
        if legacy_province:
            manifest["legacy_province"] = {str(k): str(v) for k, v in sorted(legacy_province.items())}
        if meta:
            manifest["meta"] = _sorted(dict(meta))
        (tmp / REGION_FILE).write_text(tomli_w.dumps(manifest), encoding="utf-8")
        _, final = _collect(tmp, full=False, parse_roads=False)
        final = _replace_label(final, tmp, dest)
        if _has_errors(final):
            raise RegionError(f"region not written: the written folder does not validate; nothing was "
                              f"changed at {dest}", final)
        _swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return problems


def write_region(dest: Path | str, *, name: str, communes: gpd.GeoDataFrame,
                 households: pd.DataFrame | None = None, shelters: pd.DataFrame | None = None,
                 contacts: pd.DataFrame | None = None, terrain: xr.Dataset | None = None,
                 roads: nx.MultiDiGraph | Path | None = None,
                 legacy_province: dict[str, str] | None = None, meta: dict | None = None,
                 description: str = "", overwrite: bool = False) -> Path:
    """Write a canonical region folder, atomically and byte-deterministically.

    The parts are checked like :func:`validate_region` checks a folder, written
    into a temporary sibling folder, validated again, then renamed into place
    (an existing folder is replaced only with ``overwrite``). On any error
    nothing is left behind. The same inputs always give the same bytes:
    coordinates have :data:`COORD_DECIMALS` decimals, keys are sorted, and no
    time stamp is written.

    Parameters
    ----------
    dest : path
        The region folder to create.
    name : str
        Region name.
    communes : geopandas.GeoDataFrame
        Columns ``code``, ``name``, ``population``, optionally ``province`` and
        ``legacy_province`` (a single pre-2025 province name there is written
        as the ``[legacy_province]`` override); polygons (reprojected to
        EPSG:4326 when needed).
    households, shelters, contacts : pandas.DataFrame, optional
        Tables with the columns of the folder format (module docstring).
    terrain : xarray.Dataset, optional
        A DEM with an elevation variable [m] on a regular lat/lon grid.
    roads : networkx.MultiDiGraph or Path, optional
        An osmnx graph (saved as GraphML) or a .graphml/.osm/.osm.bz2 file (copied).
    legacy_province : dict, optional
        Commune code -> pre-2025 province name (``[legacy_province]``); wins
        over the ``legacy_province`` column of ``communes``.
    meta : dict, optional
        Free-form ``[meta]`` table (TOML types only).
    description : str
        One line about the region.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    Path
        The absolute region folder.

    Raises
    ------
    RegionError
        Listing every error; the destination is untouched.
    """
    dest = Path(dest).expanduser().resolve()
    _refuse_existing(dest, overwrite)
    problems: list[Problem] = []
    checked = None
    if not isinstance(communes, gpd.GeoDataFrame):
        problems.append(Problem("communes", "communes must be a GeoDataFrame"))
    else:
        has_province = "province" in communes.columns
        checked, found = _check_communes(communes, "communes", province_field="province" if has_province
                                          else None)
        problems += found
        if checked is not None and "legacy_province" in communes.columns:
            # a single pre-2025 name per commune becomes the override; candidate lists are derived anyway
            given = _text(communes["legacy_province"].reset_index(drop=True))
            single = ((given != "") & ~given.str.contains(";", regex=False)).to_numpy()
            legacy_province = dict(zip(checked["code"][single], given[single], strict=True)) | dict(
                legacy_province or {})
    labels = {k: k for k in ("households", "shelters", "contacts", "terrain", "roads")}
    _write(dest, name=name, communes=checked, labels=labels, households=households, shelters=shelters,
           contacts=contacts, terrain=terrain, roads=roads, legacy_province=legacy_province, meta=meta,
           description=description, overwrite=overwrite, problems=problems)
    return dest


def import_region(dest: Path | str, *, communes: Path, code_field: str = "code", name_field: str = "name",
                  population_field: str = "population", province_field: str | None = None,
                  province: str | None = None, terrain: Path | None = None,
                  households: Path | None = None, shelters: Path | None = None,
                  contacts: Path | None = None, roads: Path | None = None, fetch_roads: bool = False,
                  name: str | None = None, overwrite: bool = False, layer: str | None = None) -> Region:
    """Build a region folder from real files, all or nothing.

    Parameters
    ----------
    dest : path
        The region folder to create (replaced only with ``overwrite``).
    communes : Path
        GeoJSON, GeoPackage (``layer``) or shapefile of the commune polygons.
    code_field, name_field, population_field : str
        Fields holding the official commune code (zero-padded to 5 digits when
        numeric), the name and the population.
    province_field : str, optional
        Field holding the province name ("Lào Cai" or "Tỉnh Lào Cai").
    province : str, optional
        Province of the communes whose province is not in the file.
    terrain : Path, optional
        DEM as NetCDF (an elevation variable found by name or CF attributes) or
        GeoTIFF (needs the ``geotiff`` extra).
    households, shelters, contacts : Path, optional
        CSV files (UTF-8) with the columns of the folder format.
    roads : Path, optional
        .osm, .osm.bz2 or .graphml road network (copied as is).
    fetch_roads : bool
        Fetch the roads of the communes' area once from OpenStreetMap with
        ``osmnx.graph_from_polygon(..., network_type="all")`` (needs the network).
    name : str, optional
        Region name (default: the province, else the communes file name).
    overwrite : bool
        Replace an existing region folder.
    layer : str, optional
        Layer of a multi-layer communes file.

    Returns
    -------
    Region
        The imported region; its warnings include those of the import
        (repairs, reprojection).

    Raises
    ------
    RegionError
        Listing every error of every file; nothing is written.
    """
    dest = Path(dest).expanduser().resolve()
    _refuse_existing(dest, overwrite)
    communes = Path(communes)
    gdf, problems = _read_communes(communes, _label(communes), code_field=code_field,
                                   name_field=name_field, population_field=population_field,
                                   province_field=province_field, province=province, layer=layer)
    index = _CommuneIndex.of(gdf) if gdf is not None else None
    if gdf is not None:
        problems += official_code_problems(gdf, _label(communes))
    labels: dict[str, str] = {}
    frames: dict[str, pd.DataFrame | None] = {}
    for kind, path in (("households", households), ("shelters", shelters), ("contacts", contacts)):
        frames[kind] = None
        if path is not None:
            labels[kind] = _label(path)
            frames[kind], found = _read_csv(Path(path), labels[kind])
            problems += found
    ds = None
    if terrain is not None:
        labels["terrain"] = _label(terrain)
        ds, found = _open_terrain(Path(terrain), labels["terrain"])
        problems += found
    if roads is not None and fetch_roads:
        problems.append(Problem(_label(roads), "give either a roads file or fetch_roads, not both",
                                field="roads"))
    if roads is not None:
        labels["roads"] = _label(roads)
    roads_value: nx.MultiDiGraph | Path | None = Path(roads) if roads is not None else None
    if fetch_roads and index is not None and not _has_errors(problems):
        roads_value = _fetch_roads(gdf, problems)
    region_name = name or _default_name(gdf, communes)
    sources = {k: Path(v).name for k, v in (("communes", communes), ("terrain", terrain),
                                            ("households", households), ("shelters", shelters),
                                            ("contacts", contacts), ("roads", roads)) if v is not None}
    meta: dict[str, Any] = {"imported_from": sources}
    if fetch_roads:
        meta["roads_fetched_from"] = "OpenStreetMap (osmnx.graph_from_polygon, network_type=all)"
    try:
        problems = _write(dest, name=region_name, communes=gdf, labels=labels,
                          households=frames["households"], shelters=frames["shelters"],
                          contacts=frames["contacts"], terrain=ds, roads=roads_value,
                          legacy_province=None, meta=meta, description=f"imported from {communes.name}",
                          overwrite=overwrite, problems=problems)
    finally:
        if ds is not None:
            ds.close()
    region = Region.load(dest)
    region.warnings = [p for p in problems if p.severity != "error"] + region.warnings
    return region


def _default_name(gdf: gpd.GeoDataFrame | None, path: Path) -> str:
    if gdf is not None:
        provinces = [p for p in pd.unique(gdf["province"]) if p]
        if len(provinces) == 1:
            return str(provinces[0])
    return path.name.split(".")[0]


_COMMUNE_PREFIXES = ("xã ", "phường ", "đặc khu ", "thị trấn ")


def _commune_key(name: str) -> str:
    """Loose key of a commune name: NFC, case-folded, no "Xã"/"Phường"/"Đặc khu" prefix."""
    s = re.sub(r"\s+", " ", unicodedata.normalize("NFC", str(name)).casefold().strip())
    for prefix in _COMMUNE_PREFIXES:
        if s.startswith(prefix):
            return s[len(prefix):].strip()
    return s


@lru_cache(maxsize=1)
def official_communes() -> pd.DataFrame:
    """The official 2025 communes (code, name, province_code) from ``vietnam-provinces``.

    Source: the ``vietnam-provinces`` package (data of Decision 19/2025/QĐ-TTg,
    3,321 commune-level units after 2025-07-01).
    """
    from vietnam_provinces import Ward

    wards = list(Ward.iter_all())
    return pd.DataFrame({
        "code": [f"{int(w.code):05d}" for w in wards],
        "name": [w.name for w in wards],
        "province_code": [int(w.province_code) for w in wards],
    })


def official_code_problems(communes: gpd.GeoDataFrame, label: str) -> list[Problem]:
    """Warnings for commune codes or names that differ from the official 2025 list.

    A code that is not in the list, or whose official name differs from the
    file's, is a warning (sources disagree on a few codes; the file is kept
    as it is) that names the official code of a commune of the same name.
    """
    official = official_communes()
    by_code = dict(zip(official["code"], official["name"].map(_commune_key), strict=True))
    codes_by_name = official.groupby(official["name"].map(_commune_key))["code"].agg(list)
    keys = communes["name"].map(_commune_key)
    official_name = communes["code"].map(by_code)
    bad = official_name.isna() | (official_name != keys)
    problems: list[Problem] = []
    for pos in np.flatnonzero(bad.to_numpy()):
        code, name = communes["code"].iat[pos], communes["name"].iat[pos]
        known = official_name.iat[pos]
        same_name = codes_by_name.get(keys.iat[pos], [])
        hint = f"; the official list has '{name}' as {', '.join(same_name)}" if same_name else ""
        what = (f"code {code} is '{known}' in the official 2025 list, not '{name}'"
                if isinstance(known, str) else f"code {code} ('{name}') is not in the official 2025 list")
        problems.append(Problem(
            label, f"{what} (vietnam-provinces {_vp_version()}){hint}; check the code, the file is "
            "kept as it is", where=f"feature {pos + 1}", field="code", severity="warning"))
    return problems


def _vp_version() -> str:
    from importlib.metadata import version

    return version("vietnam-provinces")


def _fetch_roads(gdf: gpd.GeoDataFrame, problems: list[Problem]) -> nx.MultiDiGraph | None:
    """Fetch the road network of the communes' area from OpenStreetMap (network)."""
    import osmnx as ox

    try:
        return ox.graph_from_polygon(gdf.union_all(), network_type="all")
    except Exception as exc:  # network and Overpass errors come in many kinds
        problems.append(Problem("OpenStreetMap", f"could not fetch the roads ({exc.__class__.__name__}: "
                                                 f"{exc}); retry later or pass --roads with a .osm export",
                                field="roads"))
        return None


# --------------------------------------------------------------------------- contacts


def import_contacts(region_dir: Path | str, csv_path: Path | str) -> tuple[pd.DataFrame, list[Problem]]:
    """Replace a region's contacts with a validated CSV file (atomically).

    The file is checked like the region's own ``contacts.csv`` (E.164 phone
    numbers of Vietnam, commune codes of the region, language, unaccented);
    any error refuses the whole file and leaves the current contacts in
    place. The region's ``region.toml`` is updated when it named no
    contacts file yet.

    Parameters
    ----------
    region_dir : Path
        The region folder.
    csv_path : Path
        ``commune_code, name, role, phone, language, unaccented`` (UTF-8 CSV).

    Returns
    -------
    (DataFrame, list of Problem)
        The contacts now in force and the warnings found.

    Raises
    ------
    RegionError
        Listing every bad row and field of the file.
    """
    region = Region.load(region_dir)
    src = Path(csv_path).expanduser().resolve()
    label = _label(src)
    raw, problems = _read_csv(src, label)
    table = None
    if raw is not None:
        table, more = _table("contacts", raw, label, _CommuneIndex.of(region.communes))
        problems += more
    if table is None or _has_errors(problems):
        n = sum(p.severity == "error" for p in problems)
        raise RegionError(f"contacts file {label} is not valid ({n} error(s)); nothing was changed: fix "
                          "the rows listed and import it again", problems)
    dest = region.files.get("contacts") or region.folder / CANONICAL_FILES["contacts"]
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(_csv_text(table), encoding="utf-8")
    os.replace(tmp, dest)
    if "contacts" not in region.files:
        manifest = region.folder / REGION_FILE
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        data.setdefault("files", {})["contacts"] = dest.name
        tmp = manifest.with_name(f".{manifest.name}.tmp")
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
        os.replace(tmp, manifest)
    return table, [p for p in problems if p.severity != "error"]
