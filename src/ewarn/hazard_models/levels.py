"""Risk levels of Decision 18/2021/QĐ-TTg, computed from a forecast.

Decision 18/2021/QĐ-TTg (in force since 2021-07-01) grades each natural hazard
in up to five risk levels, each with a colour (1 light blue, 2 light yellow,
3 orange, 4 red, 5 purple) [confirmed]. This module applies two of its
articles to forecast rainfall, vectorized over numpy (or xarray / dask) arrays
of any shape — no loop over communes:

* Article 44, heavy rain, levels 1-4: :func:`heavy_rain_level` from the 24 h
  (and 12 h) rain band, the duration of the rain and the terrain.
* Article 46, flash flood / landslide / subsidence from rain or flow,
  levels 1-3: :func:`flash_flood_landslide_level` from the 24 h rain band, the
  days it has already rained, the region group KV1-KV4 of the (pre-2025)
  province (:func:`region_group`) and the commune's class on the national
  zoning map (:func:`zone_class_from_susceptibility`).
* Article 4: :func:`combined_level` raises the level for several hazards
  together (+1) or a risk of serious loss (+2), capped at 5.

The rules are DATA, in ``tables/decision18.toml``, each row with its source
and confidence (many rows are only [secondary] or [unverified], see
SCIENCE.md §1). :func:`load_tables` reads a recalibrated copy and refuses a
table whose rule is not monotone (more rain, more rain days, a higher zone
class or a more susceptible region group never lowers the level).

The level computed here is the level those rules imply from a forecast, not
the official level the national hydro-meteorological service declares
(:data:`LEVEL_DISCLAIMER`).
"""

from __future__ import annotations

import difflib
import itertools
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ewarn.errors import EwarnError, Problem
from ewarn.hazard_models.tables import TABLES_DIR, provenance_problems, raise_if_problems, read_toml

__all__ = [
    "LEVELS",
    "LEVEL_COLOURS",
    "LEVEL_DISCLAIMER",
    "MAX_LEVEL",
    "REGION_GROUP_NAMES",
    "ZONE_CLASSES",
    "ZONE_NAMES_VI",
    "Decision18Tables",
    "LevelInputError",
    "RegionGroupWarning",
    "RiskLevel",
    "combined_level",
    "flash_flood_landslide_level",
    "heavy_rain_level",
    "load_tables",
    "normalize_province_name",
    "region_group",
    "region_groups",
    "zone_class_from_susceptibility",
]

DECISION18_TABLE = TABLES_DIR / "decision18.toml"

#: Highest risk level of Decision 18/2021 [confirmed].
MAX_LEVEL = 5


@dataclass(frozen=True)
class RiskLevel:
    """One risk level: its names, the risk it stands for and its colour.

    Names and colours are Decision 18/2021/QĐ-TTg Art. 5 [confirmed: colours;
    secondary: the risk words "thấp, trung bình, lớn, rất lớn, thảm họa"].
    ``colour_hex`` is an ewarn display choice, not from the decision.
    """

    level: int
    name_vi: str
    name_en: str
    title_vi: str
    title_en: str
    risk_vi: str
    risk_en: str
    colour_vi: str
    colour_en: str
    colour_hex: str


#: Risk levels 0 (below level 1) to 5.
LEVELS: Mapping[int, RiskLevel] = {
    0: RiskLevel(0, "Dưới cấp 1", "Below level 1", "Chưa đến cấp độ rủi ro thiên tai",
                 "No disaster risk level", "không đáng kể", "negligible", "không màu", "none", "#E6E6E6"),
    1: RiskLevel(1, "Cấp 1", "Level 1", "Rủi ro thiên tai cấp 1", "Disaster risk level 1",
                 "rủi ro thấp", "low risk", "xanh dương nhạt", "light blue", "#9DC3E6"),
    2: RiskLevel(2, "Cấp 2", "Level 2", "Rủi ro thiên tai cấp 2", "Disaster risk level 2",
                 "rủi ro trung bình", "medium risk", "vàng nhạt", "light yellow", "#FFF2A0"),
    3: RiskLevel(3, "Cấp 3", "Level 3", "Rủi ro thiên tai cấp 3", "Disaster risk level 3",
                 "rủi ro lớn", "high risk", "da cam", "orange", "#FFA500"),
    4: RiskLevel(4, "Cấp 4", "Level 4", "Rủi ro thiên tai cấp 4", "Disaster risk level 4",
                 "rủi ro rất lớn", "very high risk", "đỏ", "red", "#FF0000"),
    5: RiskLevel(5, "Cấp 5", "Level 5", "Rủi ro thiên tai cấp 5", "Disaster risk level 5",
                 "thảm họa", "disaster", "tím", "purple", "#800080"),
}

#: Display colour of each level (hex RGB).
LEVEL_COLOURS: Mapping[int, str] = {k: v.colour_hex for k, v in LEVELS.items()}

#: Said wherever a level computed by ewarn is shown: it is not the official level.
LEVEL_DISCLAIMER: Mapping[str, str] = {
    "vi": ("Cấp độ rủi ro này do ewarn tính từ dự báo mưa theo các tiêu chí của Quyết định "
           "18/2021/QĐ-TTg; đây không phải cấp độ rủi ro thiên tai chính thức. Cấp độ chính thức do "
           "cơ quan khí tượng thủy văn quốc gia công bố."),
    "en": ("This risk level is computed by ewarn from the rainfall forecast with the criteria of "
           "Decision 18/2021/QĐ-TTg; it is not the official disaster risk level. The official level "
           "is declared by the national hydro-meteorological service."),
}

#: Zoning-map classes of Article 46, as integers 1..4 (0 = unknown / not mapped).
ZONE_CLASSES: tuple[str, ...] = ("low", "medium", "high", "very high")
#: Vietnamese names of the zoning-map classes ("vùng có nguy cơ thấp" ...).
ZONE_NAMES_VI: Mapping[int, str] = {1: "thấp", 2: "trung bình", 3: "cao", 4: "rất cao"}
#: Region groups of Article 46, as integers 1..4 (KV1 most susceptible; 0 = no level).
REGION_GROUP_NAMES: tuple[str, ...] = ("KV1", "KV2", "KV3", "KV4")

_TERRAIN_ALIASES = {
    "mountain": "mountain", "mountains": "mountain", "midland": "mountain", "midlands": "mountain",
    "highland": "mountain", "trung du": "mountain", "miền núi": "mountain", "mien nui": "mountain",
    "delta": "delta", "coast": "delta", "coastal": "delta", "lowland": "delta",
    "đồng bằng": "delta", "dong bang": "delta", "ven biển": "delta", "ven bien": "delta",
}
_ZONE_ALIASES = {"thấp": 1, "trung bình": 2, "cao": 3, "rất cao": 4, "very_high": 4, "veryhigh": 4}


class LevelInputError(EwarnError):
    """An input of a level function is outside what the rules define (the message names it)."""


class RegionGroupWarning(UserWarning):
    """A commune's legacy province is ambiguous: its candidates fall in different region groups."""


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Decision18Tables:
    """The Decision 18/2021 rules compiled to lookup arrays (see ``tables/decision18.toml``).

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    a44_rain24_mm, a44_rain12_mm, a44_duration_days : numpy.ndarray
        Band edges of Article 44 [mm], [mm], [days].
    a44_terrains : tuple of str
        Terrain classes, in lookup order.
    a44_lut24, a44_lut12 : numpy.ndarray of int8
        Level by (24 h or 12 h band index, duration class, terrain); band 0 = below the first edge.
    a46_rain24_mm, a46_rain_days : numpy.ndarray
        Band edges of Article 46 [mm] and day-class edges [days].
    a46_lut : numpy.ndarray of int8
        Level by (band, days class, region group 0..4, zone class 0..4); index 0 of band,
        group and zone means "no level".
    province_groups : mapping
        Normalized legacy province name (:func:`normalize_province_name`) → group (0 = not listed).
    province_names : mapping
        Normalized name → the name as written in the table.
    default_group : int
        Group used for a province listed in no group (0 = no Article 46 level).
    susceptibility_zone : numpy.ndarray of int8
        Zone class by susceptibility class 0..5 (0 → 0).
    raise_multiple, raise_serious, raise_cap : int
        Article 4 raises and the cap.
    raise_stacking : str
        "max" or "sum": how both raises combine.
    rows : dict
        The parsed TOML document (for reports).
    """

    path: Path
    a44_rain24_mm: np.ndarray
    a44_rain12_mm: np.ndarray
    a44_duration_days: np.ndarray
    a44_terrains: tuple[str, ...]
    a44_lut24: np.ndarray
    a44_lut12: np.ndarray
    a46_rain24_mm: np.ndarray
    a46_rain_days: np.ndarray
    a46_lut: np.ndarray
    province_groups: Mapping[str, int]
    province_names: Mapping[str, str]
    default_group: int
    susceptibility_zone: np.ndarray
    raise_multiple: int
    raise_serious: int
    raise_cap: int
    raise_stacking: str
    rows: dict[str, Any] = field(repr=False, compare=False)


def load_tables(path: Path | str | None = None) -> Decision18Tables:
    """Read, check and compile the Decision 18/2021 tables.

    Parameters
    ----------
    path : path-like, optional
        A recalibrated copy of ``decision18.toml`` or a folder holding one;
        default: the table shipped in ``ewarn/hazard_models/tables``. Results
        are cached per file and modification time.

    Returns
    -------
    Decision18Tables

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Every problem found at once, each naming the file, the row (e.g.
        ``article46.rows[3]``) and the field: missing source/confidence, an
        unknown band or zone name, two rows giving one cell different levels,
        a rule that is not monotone, an unknown or duplicated province.
    """
    p = Path(path) if path is not None else DECISION18_TABLE
    if p.is_dir():
        p = p / "decision18.toml"
    p = p.resolve()
    try:
        st = p.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (-1, -1)  # read_toml reports the missing file
    return _load_tables(p, stamp)


def _band_labels(edges: Sequence[float]) -> list[str]:
    return [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)] + [f">{edges[-1]:g}"]


def _class_labels(edges: Sequence[float]) -> list[str]:
    return [f"1-{edges[0]:g}", *_band_labels(edges)[:-1], f">{edges[-1]:g}"] if edges else ["any"]


class _Checker:
    """Collects problems while reading one table file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, message: str, where: str | None = None, fld: str | None = None) -> None:
        self.problems.append(Problem(self.file, message, where, fld))

    def section(self, doc: Mapping[str, Any], name: str) -> dict[str, Any]:
        sec = doc.get(name)
        if not isinstance(sec, dict):
            self.add("section missing; copy it from the shipped table", f"[{name}]")
            return {}
        return sec

    def edges(self, sec: Mapping[str, Any], where: str, key: str, allow_empty: bool = False) -> list[float]:
        v = sec.get(key)
        ok = (isinstance(v, list) and (allow_empty or v)
              and all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in v)
              and all(a < b for a, b in itertools.pairwise(v)))
        if not ok:
            self.add(f"is {v!r}; must be a list of increasing positive numbers", where, key)
            return []
        return [float(x) for x in v]

    def names(self, row: Mapping[str, Any], where: str, key: str, allowed: Sequence[str]) -> list[str]:
        v = row.get(key)
        vals = [v] if isinstance(v, str) else v
        if not isinstance(vals, list) or not vals or not all(isinstance(x, str) for x in vals):
            self.add(f"is {v!r}; must be one of {list(allowed)} or a list of them", where, key)
            return []
        bad = [x for x in vals if x not in allowed]
        if bad:
            self.add(f"{bad} not known; use {list(allowed)}", where, key)
            return []
        return vals

    def integer(self, row: Mapping[str, Any], where: str, key: str, lo: int, hi: int) -> int | None:
        v = row.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi):
            self.add(f"is {v!r}; must be a whole number {lo}..{hi}", where, key)
            return None
        return v

    def provenance(self, row: Mapping[str, Any], where: str) -> None:
        self.problems.extend(provenance_problems(row, self.file, where))

    def rows(self, sec: Mapping[str, Any], name: str, key: str = "rows") -> list[tuple[str, dict[str, Any]]]:
        rows = sec.get(key)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            self.add(f"must be a list of tables ([[{name}.{key}]])", f"[{name}]", key)
            return []
        return [(f"{name}.{key}[{i}]", r) for i, r in enumerate(rows)]


def _fill(lut: np.ndarray, owner: dict[tuple[int, ...], str], cells: Iterable[tuple[int, ...]], level: int,
          where: str, ck: _Checker) -> None:
    for cell in cells:
        if cell in owner and lut[cell] != level:
            ck.add(f"gives level {level} to a cell {owner[cell]} already sets to {lut[cell]}; "
                   "keep one level per cell", where, "level")
            continue
        lut[cell] = level
        owner[cell] = where


def _monotone(lut: np.ndarray, axis: int, increasing: bool, what: str, labels: Sequence[Sequence[str]],
              owner: Mapping[tuple[int, ...], str], ck: _Checker, start: int = 0) -> None:
    """Report cells where the level drops along ``axis`` (or rises, for ``increasing=False``)."""
    sub = np.moveaxis(lut, axis, 0)[start:]
    step = np.diff(sub.astype(np.int16), axis=0)
    bad = np.argwhere(step < 0 if increasing else step > 0)
    for b in bad[:10]:
        i = int(b[0]) + start
        rest = [int(x) for x in b[1:]]
        lo = [*rest[:axis], i, *rest[axis:]]
        hi = [*rest[:axis], i + 1, *rest[axis:]]
        desc = lambda c: ", ".join(lab[k] for lab, k in zip(labels, c, strict=True))  # noqa: E731
        ck.add(f"not monotone in {what}: level {lut[tuple(lo)]} at ({desc(lo)}) but {lut[tuple(hi)]} at "
               f"({desc(hi)}); more {what} must never lower the level — fix the rows "
               f"{owner.get(tuple(lo), '(none)')} / {owner.get(tuple(hi), '(none)')}")


def normalize_province_name(name: str) -> str:
    """Key for loose matching of province names.

    NFC-normalizes, ignores case, accents (and hence old/new tone placement:
    "Hoà Bình" = "Hòa Bình"), đ/d, spaces and punctuation, and the prefixes
    "Tỉnh", "Thành phố", "TP.".

    Examples
    --------
    >>> normalize_province_name("Tỉnh Hoà Bình") == normalize_province_name("hòa bình")
    True
    """
    s = unicodedata.normalize("NFC", str(name)).strip().casefold().replace("đ", "d")
    s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
    s = re.sub(r"^(tinh|thanh pho|tp\.?)\s*", "", s)
    return re.sub(r"[^0-9a-z]", "", s)


@lru_cache(maxsize=8)
def _load_tables(path: Path, stamp: tuple[int, int]) -> Decision18Tables:
    doc = read_toml(path)
    ck = _Checker(str(path))

    # ---- Article 44
    a44 = ck.section(doc, "article44")
    ck.provenance(a44, "[article44]")
    e24 = ck.edges(a44, "[article44]", "rain_24h_mm")
    e12 = ck.edges(a44, "[article44]", "rain_12h_mm")
    edur = ck.edges(a44, "[article44]", "duration_days")
    terrains = a44.get("terrains")
    if terrains != ["mountain", "delta"]:
        ck.add(f"is {terrains!r}; must be [\"mountain\", \"delta\"] (midland/mountain, delta/coast)",
               "[article44]", "terrains")
        terrains = ["mountain", "delta"]
    dur_labels = _class_labels(edur)
    lut24 = np.zeros((len(e24) + 1, len(dur_labels), 2), np.int8)
    lut12 = np.zeros((len(e12) + 1, len(dur_labels), 2), np.int8)
    own24: dict[tuple[int, ...], str] = {}
    own12: dict[tuple[int, ...], str] = {}
    for where, row in ck.rows(a44, "article44") if a44 else []:
        ck.provenance(row, where)
        level = ck.integer(row, where, "level", 1, MAX_LEVEL)
        window = row.get("window_h")
        if window not in (12, 24):
            ck.add(f"is {window!r}; must be 24 or 12", where, "window_h")
            continue
        edges, lut, own = (e24, lut24, own24) if window == 24 else (e12, lut12, own12)
        bands = ck.names(row, where, "rain", _band_labels(edges) if edges else [])
        durs = ck.names(row, where, "duration", dur_labels)
        ters = ck.names(row, where, "terrain", terrains)
        if level is None or not (bands and durs and ters):
            continue
        cells = [(_band_labels(edges).index(b) + 1, dur_labels.index(d), terrains.index(t))
                 for b in bands for d in durs for t in ters]
        _fill(lut, own, cells, level, where, ck)
    if e24 and edur:
        for lut, edges, own, what in ((lut24, e24, own24, "24 h rain"), (lut12, e12, own12, "12 h rain")):
            if not edges:
                continue
            labels = [["below " + f"{edges[0]:g}", *_band_labels(edges)], dur_labels, terrains]
            _monotone(lut, 0, True, what, labels, own, ck)
            _monotone(lut, 1, True, "duration", labels, own, ck)

    # ---- Article 46
    a46 = ck.section(doc, "article46")
    ck.provenance(a46, "[article46]")
    e46 = ck.edges(a46, "[article46]", "rain_24h_mm")
    edays = ck.edges(a46, "[article46]", "rain_days", allow_empty=True)
    zones = a46.get("zones")
    if zones != list(ZONE_CLASSES):
        ck.add(f"is {zones!r}; must be {list(ZONE_CLASSES)}", "[article46]", "zones")
    regions = a46.get("regions")
    if regions != list(REGION_GROUP_NAMES):
        ck.add(f"is {regions!r}; must be {list(REGION_GROUP_NAMES)}", "[article46]", "regions")
    day_labels = _class_labels(edays)
    b46 = _band_labels(e46) if e46 else []
    lut46 = np.zeros((len(e46) + 1, len(day_labels), len(REGION_GROUP_NAMES) + 1, len(ZONE_CLASSES) + 1),
                     np.int8)
    own46: dict[tuple[int, ...], str] = {}
    for where, row in ck.rows(a46, "article46") if a46 else []:
        ck.provenance(row, where)
        level = ck.integer(row, where, "level", 1, MAX_LEVEL)
        bands = ck.names(row, where, "rain_24h", b46)
        days = ck.names(row, where, "rain_days", day_labels)
        regs = ck.names(row, where, "regions", REGION_GROUP_NAMES)
        zs = ck.names(row, where, "zones", ZONE_CLASSES)
        if level is None or not (bands and days and regs and zs):
            continue
        cells = [(b46.index(b) + 1, day_labels.index(d), REGION_GROUP_NAMES.index(r) + 1,
                  ZONE_CLASSES.index(z) + 1) for b in bands for d in days for r in regs for z in zs]
        _fill(lut46, own46, cells, level, where, ck)
    if e46:
        labels = [[f"below {e46[0]:g} mm", *[f"{b} mm" for b in b46]], [f"{d} days" for d in day_labels],
                  ["no group", *REGION_GROUP_NAMES], ["no zone", *[f"{z} zone" for z in ZONE_CLASSES]]]
        _monotone(lut46, 0, True, "24 h rain", labels, own46, ck)
        _monotone(lut46, 1, True, "rain days", labels, own46, ck)
        _monotone(lut46, 3, True, "zone class", labels, own46, ck)
        # KV1 is the most susceptible: the level must not rise from KV1 to KV4.
        _monotone(lut46, 2, False, "region group number (KV1 most susceptible)", labels, own46, ck, start=1)

    # ---- region groups
    rg = ck.section(doc, "region_groups")
    ck.provenance(rg, "[region_groups]")
    default_group = ck.integer(rg, "[region_groups]", "default_group", 0, len(REGION_GROUP_NAMES)) or 0
    groups: dict[str, int] = {}
    names: dict[str, str] = {}
    origin: dict[str, str] = {}

    def add_province(name: Any, group: int, where: str) -> None:
        if not isinstance(name, str) or not name.strip():
            ck.add(f"{name!r} is not a province name", where, "provinces")
            return
        key = normalize_province_name(name)
        if key in groups:
            ck.add(f"'{name}' is already listed in {origin[key]}; list each province once "
                   "(a province in two groups is ambiguous)", where, "provinces")
            return
        groups[key], names[key], origin[key] = group, name, where

    for where, row in ck.rows(rg, "region_groups", "groups") if rg else []:
        ck.provenance(row, where)
        g = ck.integer(row, where, "group", 1, len(REGION_GROUP_NAMES))
        if g is not None and row.get("name") != REGION_GROUP_NAMES[g - 1]:
            ck.add(f"is {row.get('name')!r}; group {g} is named {REGION_GROUP_NAMES[g - 1]}", where, "name")
        provs = row.get("provinces")
        if g is None or not isinstance(provs, list):
            if not isinstance(provs, list):
                ck.add("must be a list of province names", where, "provinces")
            continue
        for name in provs:
            add_province(name, g, where)
    for where, row in ck.rows(rg, "region_groups", "unlisted") if rg and "unlisted" in rg else []:
        ck.provenance(row, where)
        provs = row.get("provinces")
        if not isinstance(provs, list):
            ck.add("must be a list of province names", where, "provinces")
            continue
        for name in provs:
            add_province(name, 0, where)
    for where, row in ck.rows(rg, "region_groups", "aliases") if rg and "aliases" in rg else []:
        ck.provenance(row, where)
        alias, target = row.get("alias"), row.get("province")
        tkey = normalize_province_name(target) if isinstance(target, str) else None
        if tkey not in groups:
            ck.add(f"{target!r} is not a province listed in the groups or 'unlisted'", where, "province")
            continue
        if not isinstance(alias, str) or not alias.strip():
            ck.add(f"{alias!r} is not a name", where, "alias")
            continue
        akey = normalize_province_name(alias)
        if akey in groups and groups[akey] != groups[tkey]:
            ck.add(f"'{alias}' already names {names[akey]}", where, "alias")
            continue
        groups[akey], names[akey] = groups[tkey], names[tkey]

    # ---- zone classes from susceptibility
    zc = ck.section(doc, "zone_classes")
    szone = np.full(6, -1, np.int8)
    szone[0] = 0
    for where, row in ck.rows(zc, "zone_classes", "from_susceptibility") if zc else []:
        ck.provenance(row, where)
        sus = row.get("susceptibility")
        zone = ck.names(row, where, "zone", ZONE_CLASSES)
        if not (isinstance(sus, list) and sus and all(isinstance(s, int) and 1 <= s <= 5 for s in sus)):
            ck.add(f"is {sus!r}; must be a list of susceptibility classes 1..5", where, "susceptibility")
            continue
        if not zone:
            continue
        for s in sus:
            if szone[s] != -1:
                ck.add(f"susceptibility class {s} is mapped twice", where, "susceptibility")
            szone[s] = ZONE_CLASSES.index(zone[0]) + 1
    if zc:
        missing = [s for s in range(1, 6) if szone[s] == -1]
        if missing:
            ck.add(f"susceptibility classes {missing} are not mapped to a zone class",
                   "[zone_classes]", "from_susceptibility")
        elif np.any(np.diff(szone) < 0):
            ck.add(f"mapping {szone[1:].tolist()} is not monotone: a higher susceptibility must never "
                   "give a lower zone class", "[zone_classes]", "from_susceptibility")

    # ---- raise rules
    rr = ck.section(doc, "raise_rules")
    ck.provenance(rr, "[raise_rules]")
    cap = ck.integer(rr, "[raise_rules]", "cap", 1, MAX_LEVEL) or MAX_LEVEL
    raises: dict[str, int] = {}
    for where, row in ck.rows(rr, "raise_rules") if rr else []:
        ck.provenance(row, where)
        rule = row.get("rule")
        if rule not in ("multiple_hazards", "serious_loss"):
            ck.add(f"is {rule!r}; must be 'multiple_hazards' or 'serious_loss'", where, "rule")
            continue
        r = ck.integer(row, where, "raise", 0, MAX_LEVEL)
        if r is not None:
            raises[rule] = r
    for rule in ("multiple_hazards", "serious_loss"):
        if rr and rule not in raises:
            ck.add(f"no row for rule '{rule}'", "[raise_rules]", "rows")
    stacking = rr.get("stacking", {}) if rr else {}
    if not isinstance(stacking, dict) or stacking.get("mode") not in ("max", "sum"):
        ck.add(f"is {stacking!r}; must be a table with mode = \"max\" or \"sum\", source and confidence",
               "[raise_rules.stacking]", "mode")
        stacking = {"mode": "max"}
    else:
        ck.provenance(stacking, "[raise_rules.stacking]")

    raise_if_problems(ck.problems, ck.file)
    return Decision18Tables(
        path=path,
        a44_rain24_mm=np.asarray(e24), a44_rain12_mm=np.asarray(e12), a44_duration_days=np.asarray(edur),
        a44_terrains=tuple(terrains), a44_lut24=lut24, a44_lut12=lut12,
        a46_rain24_mm=np.asarray(e46), a46_rain_days=np.asarray(edays), a46_lut=lut46,
        province_groups=groups, province_names=names, default_group=int(default_group),
        susceptibility_zone=szone,
        raise_multiple=raises.get("multiple_hazards", 1), raise_serious=raises.get("serious_loss", 2),
        raise_cap=int(cap), raise_stacking=str(stacking["mode"]), rows=doc,
    )


# --------------------------------------------------------------------------- helpers


def _xarray_aware(fn: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` on numpy arrays; through ``xr.apply_ufunc`` (dask-parallelized) when any arg is xarray."""
    if any(isinstance(a, xr.DataArray) for a in args):
        return xr.apply_ufunc(partial(fn, **kwargs), *args, dask="parallelized", output_dtypes=[np.int8])
    out = fn(*args, **kwargs)
    return out[()] if out.ndim == 0 else out


def _count_above(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Number of ``edges`` strictly below each ``x`` (``numpy.searchsorted(edges, x, "left")`` for
    sorted edges; 0 for NaN): one vectorized comparison per edge, as the tables have a handful of
    edges and the fields (members × times × communes) millions of values."""
    out = np.zeros(x.shape, dtype=np.intp)
    for e in np.asarray(edges, dtype=float).ravel():
        out += x > e
    return out


def _band(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band index: 0 below ``edges[0]``, 1 for [e0, e1], 2 for (e1, e2], ..., len(edges) above the last."""
    x = np.asarray(x, dtype=float)
    return np.where(x >= edges[0], 1 + _count_above(x, edges[1:]), 0)


def _class(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Class index: 0 for x <= e0 (and NaN), 1 for (e0, e1], ..., len(edges) above the last."""
    x = np.asarray(x, dtype=float)
    return _count_above(x, edges)


def _codes(x: Any, name: str, hi: int, names: Mapping[str, int]) -> np.ndarray:
    """Integer class codes 0..hi from ints, integer-valued floats (NaN → 0) or names."""
    a = np.asarray(x)
    if a.dtype.kind in "UO":
        uniq, inv = np.unique(a.astype(str), return_inverse=True)
        codes = []
        for u in uniq:
            key = u.strip().casefold()
            if key in names:
                codes.append(names[key])
            elif key.isdigit() and int(key) <= hi:
                codes.append(int(key))
            else:
                raise LevelInputError(f"{name}: '{u}' is not known; use 0..{hi} or one of "
                                      f"{sorted(set(names))}")
        return np.asarray(codes, dtype=np.intp)[inv].reshape(a.shape)
    if a.dtype.kind == "f":
        nan = np.isnan(a)
        a = np.where(nan, 0, a)
        bad = (a != np.round(a)) | (a < 0) | (a > hi)
    elif a.dtype.kind in "iub":
        bad = (a < 0) | (a > hi)
    else:
        raise LevelInputError(f"{name}: values of type {a.dtype} cannot be read; use integers 0..{hi}")
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
        raise LevelInputError(f"{name}: {int(bad.sum())} value(s) outside the whole numbers 0..{hi} "
                              f"(first: {a[i]!r} at index {tuple(int(j) for j in i)}); fix the input")
    return a.astype(np.intp)


# --------------------------------------------------------------------------- region groups


def region_group(
    legacy_provinces: str | Sequence[str],
    *,
    tables: Decision18Tables | None = None,
    default: int | None = None,
) -> int:
    """Article 46 region group (1 = KV1 ... 4 = KV4; 0 = no level) of a legacy province.

    A commune is grouped by the province it belonged to before the July 2025
    merger. When that is uncertain (a 2025 province merged several legacy
    provinces), pass all candidates: the MOST susceptible group is returned
    (KV1 before KV2 ...; a missed warning costs more than a false alarm) and a
    :class:`RegionGroupWarning` names the candidates so that the caller can
    set the commune's group by hand.

    Parameters
    ----------
    legacy_provinces : str or sequence of str
        One name, a ";"-joined list of candidates, or a list of them. Matched
        loosely (:func:`normalize_province_name`).
    tables : Decision18Tables, optional
        Default: :func:`load_tables`.
    default : int, optional
        Group for a known province that no group lists; default: the table's
        ``default_group`` (4 = KV4, an unverified ewarn choice; 0 = no level).

    Returns
    -------
    int

    Raises
    ------
    LevelInputError
        An empty name or a name that is no pre-2025 province (with the
        closest matches).
    """
    t = tables or load_tables()
    dflt = t.default_group if default is None else int(default)
    if not 0 <= dflt <= len(REGION_GROUP_NAMES):
        raise LevelInputError(f"default={default!r}: must be 0..{len(REGION_GROUP_NAMES)}")
    items = [legacy_provinces] if isinstance(legacy_provinces, str) else list(legacy_provinces)
    cands = [c.strip() for item in items for c in str(item).split(";") if c.strip()]
    if not cands:
        raise LevelInputError(f"region_group: no province name in {legacy_provinces!r}; give the commune's "
                              "province as it was before July 2025")
    found: list[tuple[str, int]] = []
    for c in cands:
        key = normalize_province_name(c)
        if key not in t.province_groups:
            close = difflib.get_close_matches(key, list(t.province_groups), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(t.province_names[k] for k in close)}?" if close else ""
            raise LevelInputError(
                f"region_group: '{c}' is not one of the 63 provinces before the July 2025 merger{hint} "
                f"(names are listed in {t.path}, [region_groups])")
        g = t.province_groups[key]
        found.append((t.province_names[key], g if g > 0 else dflt))

    def susceptibility(g: int) -> int:
        return g if g > 0 else len(REGION_GROUP_NAMES) + 1

    best = min((g for _, g in found), key=susceptibility)
    if len({g for _, g in found}) > 1:
        listed = ", ".join(f"{n} ({REGION_GROUP_NAMES[g - 1] if g else 'no group'})" for n, g in found)
        warnings.warn(RegionGroupWarning(
            f"legacy province is ambiguous: {listed}; using the most susceptible, "
            f"{REGION_GROUP_NAMES[best - 1] if best else 'no group'}; set the commune's group by hand "
            "if you know its legacy province"), stacklevel=2)
    return int(best)


def region_groups(
    legacy_provinces: Sequence[str] | np.ndarray,
    *,
    tables: Decision18Tables | None = None,
    default: int | None = None,
) -> np.ndarray:
    """:func:`region_group` for many communes at once (each distinct value looked up once).

    Parameters
    ----------
    legacy_provinces : sequence of str
        One entry per commune (a name or ";"-joined candidates); e.g. a
        GeoDataFrame column.

    Returns
    -------
    numpy.ndarray of int8
        Group per commune (0..4).
    """
    a = np.asarray(legacy_provinces, dtype=object)
    if a.size == 0:
        return np.zeros(a.shape, np.int8)
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA
                        for v in a.ravel()]).reshape(a.shape)
    if missing.any():
        i = int(np.argmax(missing.ravel()))
        raise LevelInputError(f"region_groups: {int(missing.sum())} entries have no province (first: entry "
                              f"{i}); give every commune its province as it was before July 2025")
    uniq, inv = np.unique(a.astype(str), return_inverse=True)
    codes = np.array([region_group(u, tables=tables, default=default) for u in uniq], dtype=np.int8)
    return codes[inv].reshape(a.shape)


# --------------------------------------------------------------------------- levels


def _a46(rain24: Any, days: Any, group: Any, zone: Any, *, t: Decision18Tables) -> np.ndarray:
    b = _band(rain24, t.a46_rain24_mm)
    d = _class(days, t.a46_rain_days) if t.a46_rain_days.size else np.zeros_like(b)
    g = _codes(group, "region_group", len(REGION_GROUP_NAMES),
               {n.casefold(): i + 1 for i, n in enumerate(REGION_GROUP_NAMES)} | {"none": 0})
    z = _codes(zone, "zone_class", len(ZONE_CLASSES),
               {n: i + 1 for i, n in enumerate(ZONE_CLASSES)} | _ZONE_ALIASES | {"none": 0})
    return t.a46_lut[b, d, g, z]


def flash_flood_landslide_level(
    rain24_mm: Any,
    rain_days: Any,
    region_group: Any,
    zone_class: Any,
    *,
    tables: Decision18Tables | None = None,
) -> Any:
    """Article 46 level (0..3) of flash flood, landslide or subsidence from rain.

    Decision 18/2021/QĐ-TTg Art. 46 (levels 1 and the first level-2 row
    [secondary], the rest [unverified], gaps filled for monotonicity —
    ``tables/decision18.toml``): the level follows from the warned 24 h rain,
    the days it has already rained before, the province's region group and
    the commune's zoning-map class. Arguments broadcast against each other
    (numpy rules; by dimension name for xarray, lazily for dask).

    Parameters
    ----------
    rain24_mm : array_like
        Forecast rain in 24 h [mm]. Bands: [100, 200], (200, 400], > 400; NaN
        gives 0.
    rain_days : array_like
        Days it has already rained before the warned 24 h [days] (e.g.
        :func:`ewarn.hazard_models.rainfall.rain_days` of the day before). At
        most 2 (including 0) is the "1-2 days" class; NaN counts as 0.
    region_group : array_like
        1..4 for KV1..KV4 (or the names "KV1"...), 0 = no Article 46 level
        (:func:`region_group`).
    zone_class : array_like
        1..4 for low, medium, high, very high (or those names, English or
        Vietnamese), 0 / NaN = unknown → level 0
        (:func:`zone_class_from_susceptibility`).
    tables : Decision18Tables, optional
        Default: :func:`load_tables`.

    Returns
    -------
    numpy.ndarray of int8 (numpy scalar for scalar inputs; DataArray for xarray inputs)

    Raises
    ------
    LevelInputError
        A group or zone class outside 0..4 (naming the first bad value).

    Examples
    --------
    >>> int(flash_flood_landslide_level(150, 1, 1, "low"))
    1
    """
    t = tables or load_tables()
    return _xarray_aware(_a46, rain24_mm, rain_days, region_group, zone_class, t=t)


def _terrain_codes(terrain: Any) -> np.ndarray:
    a = np.asarray(terrain)
    uniq, inv = np.unique(a.astype(str), return_inverse=True)
    codes = []
    for u in uniq:
        key = unicodedata.normalize("NFC", u).strip().casefold()
        if key not in _TERRAIN_ALIASES:
            raise LevelInputError(f"terrain: '{u}' is not known; use 'mountain' (midland, mountain) or "
                                  "'delta' (delta, coast)")
        codes.append(0 if _TERRAIN_ALIASES[key] == "mountain" else 1)
    return np.asarray(codes, dtype=np.intp)[inv].reshape(a.shape)


def _a44(rain24: Any, duration: Any, terrain: Any, rain12: Any = None, *, t: Decision18Tables) -> np.ndarray:
    r24 = np.asarray(rain24, dtype=float)
    if rain12 is not None:
        # a 24 h window holding the 12 h one holds at least as much rain
        r24 = np.fmax(r24, np.asarray(rain12, dtype=float))
    d = _class(duration, t.a44_duration_days)
    ter = _terrain_codes(terrain)
    level = t.a44_lut24[_band(r24, t.a44_rain24_mm), d, ter]
    if rain12 is not None:
        level = np.maximum(level, t.a44_lut12[_band(rain12, t.a44_rain12_mm), d, ter])
    return np.asarray(level, dtype=np.int8)


def heavy_rain_level(
    rain24_mm: Any,
    duration_days: Any,
    terrain: Any,
    rain12_mm: Any = None,
    *,
    tables: Decision18Tables | None = None,
) -> Any:
    """Article 44 level (0..4) of heavy rain.

    Decision 18/2021/QĐ-TTg Art. 44 (level 1 and level 4 rows [secondary],
    the band × duration × terrain table of levels 2-3 [unverified] —
    ``tables/decision18.toml``).

    Parameters
    ----------
    rain24_mm : array_like
        Forecast rain in 24 h [mm]. Bands [100, 200], (200, 400], > 400.
    duration_days : array_like
        How long the heavy rain lasts [days]: at most 2 (incl. NaN) = "1-2",
        (2, 4] = "2-4", more = "> 4".
    terrain : str or array_like of str
        "mountain" (midland, mountain; "trung du", "miền núi") or "delta"
        (delta, coast; "đồng bằng", "ven biển").
    rain12_mm : array_like, optional
        Forecast rain in 12 h [mm]: 50 mm or more gives at least level 1; the
        24 h total used is at least the 12 h total.
    tables : Decision18Tables, optional
        Default: :func:`load_tables`.

    Returns
    -------
    numpy.ndarray of int8 (numpy scalar for scalar inputs; DataArray for xarray inputs)

    Examples
    --------
    >>> int(heavy_rain_level(450, 3, "mountain"))
    4
    """
    t = tables or load_tables()
    args = (rain24_mm, duration_days, terrain) + (() if rain12_mm is None else (rain12_mm,))
    return _xarray_aware(_a44, *args, t=t)


def _combined(*levels: Any, raise_rules: bool, serious_loss: Any, t: Decision18Tables) -> np.ndarray:
    arrs = np.broadcast_arrays(*[_codes(lv, "level", MAX_LEVEL, {}) for lv in levels])
    stack = np.stack(arrs) if arrs else np.zeros((1,), np.intp)
    base = stack.max(axis=0)
    if raise_rules:
        multi = np.where((stack >= 1).sum(axis=0) >= 2, t.raise_multiple, 0)
        serious = np.where(np.asarray(serious_loss, dtype=bool), t.raise_serious, 0)
        up = np.maximum(multi, serious) if t.raise_stacking == "max" else multi + serious
        base = np.where(base >= 1, np.minimum(base + up, t.raise_cap), base)
    return np.asarray(base, dtype=np.int8)


def combined_level(
    *levels: Any,
    raise_rules: bool = False,
    serious_loss: Any = False,
    tables: Decision18Tables | None = None,
) -> Any:
    """One level from several hazards' levels, optionally with the Article 4 raises.

    The base is the highest of the given levels. With ``raise_rules=True``
    (Decision 18/2021/QĐ-TTg Art. 4 [confirmed]): two or more hazards at level
    1 or more together (or in sequence, as the caller aligned them) raise it
    by 1, a risk of serious loss of life or property by 2; the two raises do
    not stack (the larger applies; ``[raise_rules.stacking]``, an unverified
    ewarn choice); the result is capped at 5. The decision says the level
    "may" be raised: the raises are off by default.

    Parameters
    ----------
    *levels : array_like
        Levels 0..5 of each hazard (e.g. Article 46 and Article 44 levels).
    raise_rules : bool
        Apply the Article 4 raises.
    serious_loss : bool or array_like of bool
        Where a risk of serious loss of life or property is judged (used only
        with ``raise_rules``).
    tables : Decision18Tables, optional
        Default: :func:`load_tables`.

    Returns
    -------
    numpy.ndarray of int8, 0..5 (numpy scalar for scalar inputs; DataArray for xarray inputs)

    Examples
    --------
    >>> int(combined_level(2, 1, raise_rules=True))
    3
    """
    if not levels:
        raise LevelInputError("combined_level: give at least one level")
    t = tables or load_tables()
    if isinstance(serious_loss, xr.DataArray):
        def fn(*a: Any) -> np.ndarray:
            return _combined(*a[:-1], raise_rules=raise_rules, serious_loss=a[-1], t=t)

        return _xarray_aware(fn, *levels, serious_loss)
    return _xarray_aware(_combined, *levels, raise_rules=raise_rules, serious_loss=serious_loss, t=t)


def _zone(classes: Any, *, t: Decision18Tables) -> np.ndarray:
    return t.susceptibility_zone[_codes(classes, "susceptibility class", 5, {})]


def zone_class_from_susceptibility(classes_1_to_5: Any, *, tables: Decision18Tables | None = None) -> Any:
    """Zoning-map class (1 low .. 4 very high) from a 5-class susceptibility (1 very low .. 5 very high).

    Mapping from ``tables/decision18.toml`` [zone_classes] (an unverified ewarn
    choice): 1-2 → low, 3 → medium, 4 → high, 5 → very high. Use it where the
    national flash-flood/landslide zoning map is not at hand and a
    susceptibility model on the LHASA v1 1-5 scale is (SCIENCE.md §3).

    Parameters
    ----------
    classes_1_to_5 : array_like
        Susceptibility classes 1..5; 0 or NaN = unknown.
    tables : Decision18Tables, optional
        Default: :func:`load_tables`.

    Returns
    -------
    numpy.ndarray of int8, 0..4 (0 where unknown)

    Examples
    --------
    >>> zone_class_from_susceptibility([1, 3, 5]).tolist()
    [1, 2, 4]
    """
    t = tables or load_tables()
    return _xarray_aware(_zone, classes_1_to_5, t=t)
