"""Planners' scenario files: the TOML schema, loading and validation.

A scenario is one TOML file that says which region, which rain, which
changes to the region and which options a what-if run uses, and which
outputs it writes. Files it names are resolved relative to the scenario
file's folder and may not leave that folder (put them beside the scenario or
in a sub-folder). Every table refuses unknown keys; every error names the
file, the dotted key and what is expected (:class:`ScenarioError`, one
:class:`~ewarn.errors.Problem` per finding, all of them at once).

The keys (defaults in brackets)::

    # a comment header: the question this scenario answers
    [scenario]
    name = "Yagi 2024 – cầu chính bị cuốn trôi"  # required, free text (Vietnamese welcome)
    description = "..."                         # [""]
    seed = 2024                                 # [2024] seeds synthetic rain and new settlements

    [region]
    path = "demo"            # ["demo"] the built-in demo region, or a region folder
                             # (holding region.toml) relative to this file

    [rain]
    kind = "demo"            # ["demo"] the demo storm (Yagi-like, 2024-09-07T12Z)
                             # "synthetic": a parametric storm from [rain.storm]
                             # "file": a forecast file (NetCDF, GRIB) named by `file`
    file = "storm.nc"        # kind = "file": the forecast file, relative to this file
    source = "cf-netcdf"     # kind = "file": the source profile that reads it
                             # (cf-netcdf, ecmwf-ifs, ecmwf-ens, gfs, wrf, demo)
    reference_time = 2024-09-07T12:00:00Z  # kind = "synthetic": forecast start (UTC)
                                           # [the demo storm's 2024-09-07T12Z]
    steps = 72               # kind = "synthetic": number of intervals (1–384) [72]
    step_hours = 1           # kind = "synthetic": interval length (0–24] [h] [1]
    members = 0              # kind = "synthetic"/"demo": ensemble members (0–100), 0 = one forecast [0]
    scale = 1.0              # [1.0] multiply every rain amount (> 0, ≤ 10; 1.5 = 50 % wetter)
    shift_hours = 0          # [0] move the storm later (> 0) or earlier (< 0), at most ±240 [h]
    shift_km = [0.0, 0.0]    # [[0, 0]] move the storm [east, north] [km]
    antecedent_mm = 0        # [0] rain already fallen (≤ 5000), spread evenly over the
                             # `antecedent_days` before the forecast start [mm, total]
    antecedent_days = 5      # [5] days of antecedent rain (1–30)
    antecedent_file = "obs.nc"      # or: rain of those days from a file (instead of antecedent_mm)
    antecedent_source = "cf-netcdf" # its source profile ["cf-netcdf"]

    [rain.storm]             # kind = "synthetic" only: the storm (ewarn.forecasts.synthetic.StormParams)
    track = [[0, 107.0, 21.1], [56, 104.565, 22.178]]  # required: [hours, lon, lat] waypoints
    radius_km = 12.0         # rain core standard deviation [km]
    peak_rate = 45.0         # core rain rate at the peak [mm/h]
    onset_hours = 0.0        # envelope: rain starts [h after reference_time]
    peak_hours = 24.0        # ... peaks
    duration_hours = 48.0    # ... and ends at onset + duration
    background_rate = 0.5    # rain shield rate [mm/h]
    shield_radius_km = 150.0
    cells = 6                # embedded convective cells
    cell_spread_km = 20.0
    cell_radius_km = 5.0
    cell_rate = 12.0         # [mm/h]
    orographic_factor = 0.15 # rate × (1 + factor · height / 1000 m)
    track_spread_km = 15.0   # ensemble track spread [km]
    intensity_spread = 0.2   # ensemble log-intensity spread

    [changes]
    close_ways = [100002]    # [[]] OSM way ids closed over their whole length
    mode = "motorbike"       # travel mode: walk | motorbike | car [routing default]

    [[changes.close_polygons]]           # roads crossing this area are closed
    name = "cầu Phúc Khánh"              # [""] shown in reports
    coordinates = [[104.57, 22.20], [104.58, 22.20], [104.58, 22.21]]  # [lon, lat], >= 3 points,
                                         # the ring is closed for you

    [[changes.shelters]]
    action = "open"          # open | close | resize
    shelter_id = "SH-NEW-1"  # required; open: a new id; close/resize: an existing one
    name = "Nhà văn hóa thôn"  # open: required
    lon = 104.56             # open: required [deg]
    lat = 22.18              # open: required [deg]
    capacity = 300           # open, resize: required [people]
    kind = "community_hall"  # open: ["other"]

    [[changes.settlements]]  # a new settlement: households placed at random inside the polygon
    name = "Khu tái định cư"
    polygon = [[lon, lat], ...]         # >= 3 points, the ring is closed for you
    households = 120                    # number of households (1–100 000)
    people_per_household = 4.2          # [region mean]
    vulnerable_share = 0.1              # share of people needing help to move [region share]
    commune_code = "02998"              # [the commune at the polygon's centre]

    [options]                # defaults: ewarn.config.RoutingSettings
    evacuation_level = 2     # communes at this risk level or above evacuate (1–5)
    planning_window_hours = 24   # hours after the forecast start that close or slow roads (> 0)
    safety_margin_minutes = 60   # arrive this long before the hazard onset (>= 0)
    max_travel_minutes = 120     # longest acceptable trip (> 0)
    relocation = false       # also list the households to relocate permanently

    [outputs]
    files = ["risk.nc", "levels.csv", "plan.csv", "routes.geojson", "summary.json", "report.html"]
    language = "vi"          # vi | en

Dates are TOML dates (``2024-09-07T12:00:00Z``; a time without offset is
taken as UTC). ``shift_km`` is the one way to move a storm in space: planners
think in kilometres; the rain module converts it to degrees at the forecast's
central latitude.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import shapely
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from ewarn.config import RoutingSettings
from ewarn.errors import Problem, ValidationError
from ewarn.forecasts.synthetic import DEMO_REFERENCE_TIME, StormParams

__all__ = [
    "OUTPUT_FILES",
    "Changes",
    "ClosurePolygon",
    "Options",
    "Outputs",
    "RainSpec",
    "RegionSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioInfo",
    "Settlement",
    "ShelterChange",
    "StormSpec",
    "load_scenario",
    "parse_scenario",
]

#: The outputs a scenario run can write.
OUTPUT_FILES = ("risk.nc", "levels.csv", "plan.csv", "routes.geojson", "summary.json", "report.html",
                "relocation.csv")
#: The routing defaults every scenario option mirrors.
_ROUTING = RoutingSettings()


class ScenarioError(ValidationError):
    """A scenario file cannot be used; lists every problem (file, dotted key, what is expected)."""


# --------------------------------------------------------------------------- paths


def _folder(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    if "folder" not in ctx:
        raise RuntimeError("scenario models are validated through load_scenario/parse_scenario "
                           "(they need the scenario's folder)")
    return Path(ctx["folder"])


def _inside(text: str, folder: Path) -> Path:
    """``text`` resolved against ``folder``; refuses a path that leaves it."""
    target = (folder / Path(text).expanduser()).resolve()
    if not target.is_relative_to(folder):
        raise PydanticCustomError(
            "path_escape",
            "path '{path}' leaves the scenario's folder {folder}; put the file beside the scenario "
            "(or in a sub-folder of it) and name it relative to the scenario",
            {"path": text, "folder": str(folder)})
    return target


def _input_file(value: Any, info: ValidationInfo) -> Any:
    """A file named relative to the scenario: must exist inside the scenario's folder."""
    if not isinstance(value, str):
        return value  # the type check reports it
    if not value.strip():
        raise PydanticCustomError("path_empty", "must name a file, got an empty string")
    folder = _folder(info)
    target = _inside(value, folder)
    if not target.is_file():
        what = "is a folder, not a file" if target.is_dir() else "file not found"
        raise PydanticCustomError(
            "path_missing",
            "{what}: '{path}' (looked for {target}), relative to the scenario's folder {folder}; "
            "put the file there or fix the path",
            {"what": what, "path": value, "target": str(target), "folder": str(folder)})
    return target


#: A file path in a scenario (resolved, absolute, inside the scenario's folder).
ScenarioFile = Annotated[Path, BeforeValidator(_input_file)]


# --------------------------------------------------------------------------- geometry


def _check_lonlat(lon: float, lat: float) -> None:
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise PydanticCustomError(
            "lonlat_range",
            "point [{lon}, {lat}] is not [lon, lat] in degrees (lon −180..180, lat −90..90); "
            "write longitude first", {"lon": lon, "lat": lat})


def _ring(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A polygon ring: >= 3 distinct points, each a valid [lon, lat], closed, valid."""
    for lon, lat in points:
        _check_lonlat(lon, lat)
    if points and points[0] == points[-1]:
        points = points[:-1]
    if len(set(points)) < 3:
        raise PydanticCustomError(
            "polygon_points", "a polygon needs at least 3 distinct [lon, lat] points, got {n}",
            {"n": len(set(points))})
    poly = shapely.Polygon(points)
    if not poly.is_valid:
        raise PydanticCustomError(
            "polygon_invalid", "the polygon is not valid ({reason}); list the points in order around "
            "the area without crossing edges", {"reason": shapely.is_valid_reason(poly)})
    if poly.area <= 0:
        raise PydanticCustomError("polygon_empty", "the polygon has no area; the points lie on a line")
    return [*points, points[0]]


LonLat = tuple[float, float]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClosurePolygon(_Table):
    """``[[changes.close_polygons]]``: every road crossing the area is closed."""

    name: str = ""
    coordinates: Annotated[list[LonLat], Field(json_schema_extra={
        "expect": "a list of at least 3 [lon, lat] points"})]

    @field_validator("coordinates")
    @classmethod
    def _valid_ring(cls, v: list[LonLat]) -> list[LonLat]:
        return _ring(list(v))

    @property
    def polygon(self) -> shapely.Polygon:
        """The area (EPSG:4326)."""
        return shapely.Polygon(self.coordinates)


class ShelterChange(_Table):
    """``[[changes.shelters]]``: open a new shelter, close or resize an existing one."""

    action: Literal["open", "close", "resize"]
    shelter_id: Annotated[str, Field(min_length=1)]
    name: str | None = None
    lon: Annotated[float | None, Field(ge=-180, le=180)] = None
    lat: Annotated[float | None, Field(ge=-90, le=90)] = None
    capacity: Annotated[int | None, Field(ge=0)] = None
    kind: str | None = None

    @model_validator(mode="after")
    def _keys_of_action(self) -> ShelterChange:
        needs = {"open": ("name", "lon", "lat", "capacity"), "close": (),
                 "resize": ("capacity",)}[self.action]
        allowed = {"open": ("name", "lon", "lat", "capacity", "kind"), "close": (),
                   "resize": ("capacity",)}[self.action]
        missing = [k for k in needs if getattr(self, k) is None]
        extra = [k for k in ("name", "lon", "lat", "capacity", "kind")
                 if k not in allowed and getattr(self, k) is not None]
        if missing:
            raise PydanticCustomError(
                "shelter_keys", "action = '{action}' needs {keys}",
                {"action": self.action, "keys": ", ".join(f"'{k}'" for k in missing)})
        if extra:
            raise PydanticCustomError(
                "shelter_keys", "action = '{action}' does not use {keys}; remove them",
                {"action": self.action, "keys": ", ".join(f"'{k}'" for k in extra)})
        return self


class Settlement(_Table):
    """``[[changes.settlements]]``: a new settlement of households inside a polygon."""

    name: Annotated[str, Field(min_length=1)]
    polygon: Annotated[list[LonLat], Field(json_schema_extra={
        "expect": "a list of at least 3 [lon, lat] points"})]
    households: Annotated[int, Field(ge=1, le=100_000)]
    people_per_household: Annotated[float | None, Field(ge=1, le=30)] = None
    vulnerable_share: Annotated[float | None, Field(ge=0, le=1)] = None
    commune_code: Annotated[str | None, Field(pattern=r"^\d{5}$", json_schema_extra={
        "expect": "a 5-digit commune code in quotes, e.g. \"02998\""})] = None

    @field_validator("polygon")
    @classmethod
    def _valid_ring(cls, v: list[LonLat]) -> list[LonLat]:
        return _ring(list(v))

    @property
    def area(self) -> shapely.Polygon:
        """The settlement's polygon (EPSG:4326)."""
        return shapely.Polygon(self.polygon)


class Changes(_Table):
    """``[changes]``: what the planner changes in the region."""

    close_ways: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list, json_schema_extra={
        "expect": "a list of OSM way ids (whole numbers), e.g. [100002]"})
    close_polygons: list[ClosurePolygon] = Field(default_factory=list)
    shelters: list[ShelterChange] = Field(default_factory=list)
    settlements: list[Settlement] = Field(default_factory=list)
    mode: Literal["walk", "motorbike", "car"] = _ROUTING.mode

    @model_validator(mode="after")
    def _one_change_per_shelter(self) -> Changes:
        ids = [s.shelter_id for s in self.shelters]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise PydanticCustomError(
                "shelter_twice", "shelter(s) {ids} are changed more than once in [[changes.shelters]]; "
                "keep one entry per shelter", {"ids": ", ".join(f"'{i}'" for i in twice)})
        return self


# --------------------------------------------------------------------------- rain


class StormSpec(_Table):
    """``[rain.storm]``: a synthetic storm; the keys of :class:`ewarn.forecasts.synthetic.StormParams`."""

    track: Annotated[list[tuple[float, float, float]], Field(min_length=1, json_schema_extra={
        "expect": "a list of [hours, lon, lat] waypoints, e.g. [[0, 107.0, 21.1], [56, 104.56, 22.18]]"})]
    radius_km: Annotated[float, Field(gt=0)] = 12.0
    peak_rate: Annotated[float, Field(ge=0)] = 45.0
    onset_hours: float = 0.0
    peak_hours: float = 24.0
    duration_hours: Annotated[float, Field(gt=0)] = 48.0
    background_rate: Annotated[float, Field(ge=0)] = 0.5
    shield_radius_km: Annotated[float, Field(gt=0)] = 150.0
    cells: Annotated[int, Field(ge=0, le=50)] = 6
    cell_spread_km: Annotated[float, Field(ge=0)] = 20.0
    cell_radius_km: Annotated[float, Field(gt=0)] = 5.0
    cell_rate: Annotated[float, Field(ge=0)] = 12.0
    orographic_factor: Annotated[float, Field(ge=0)] = 0.15
    track_spread_km: Annotated[float, Field(ge=0)] = 15.0
    intensity_spread: Annotated[float, Field(ge=0)] = 0.2

    @field_validator("track")
    @classmethod
    def _waypoints(cls, v: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
        for _, lon, lat in v:
            _check_lonlat(lon, lat)
        if any(b[0] <= a[0] for a, b in itertools.pairwise(v)):
            raise PydanticCustomError("track_order", "waypoints must be in increasing time order "
                                      "(the first number of each [hours, lon, lat])")
        return v

    @model_validator(mode="after")
    def _envelope(self) -> StormSpec:
        if not self.onset_hours <= self.peak_hours <= self.onset_hours + self.duration_hours:
            raise PydanticCustomError(
                "storm_envelope", "peak_hours ({peak}) must lie between onset_hours ({onset}) and "
                "onset_hours + duration_hours ({end})",
                {"peak": self.peak_hours, "onset": self.onset_hours,
                 "end": self.onset_hours + self.duration_hours})
        return self

    def params(self) -> StormParams:
        """The storm as :class:`~ewarn.forecasts.synthetic.StormParams`."""
        values = self.model_dump()
        values["track"] = tuple(tuple(w) for w in self.track)
        return StormParams(**values)


def _utc(value: Any) -> Any:
    """TOML datetimes without an offset are UTC; aware ones are converted."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value


class RainSpec(_Table):
    """``[rain]``: the rain of the scenario and how it is modified."""

    kind: Literal["demo", "synthetic", "file"] = "demo"
    file: ScenarioFile | None = None
    source: Annotated[str, Field(min_length=1)] = "cf-netcdf"
    storm: StormSpec | None = None
    reference_time: Annotated[dt.datetime, BeforeValidator(_utc), Field(json_schema_extra={
        "expect": "a TOML date-time such as 2024-09-07T12:00:00Z"})] = DEMO_REFERENCE_TIME
    steps: Annotated[int, Field(ge=1, le=24 * 16)] = 72
    step_hours: Annotated[float, Field(gt=0, le=24)] = 1.0
    members: Annotated[int, Field(ge=0, le=100)] = 0
    scale: Annotated[float, Field(gt=0, le=10)] = 1.0
    shift_hours: Annotated[float, Field(ge=-240, le=240)] = 0.0
    shift_km: Annotated[tuple[float, float], Field(json_schema_extra={
        "expect": "[east, north] in km, e.g. [10.0, -5.0]"})] = (0.0, 0.0)
    antecedent_mm: Annotated[float, Field(ge=0, le=5000)] = 0.0
    antecedent_days: Annotated[int, Field(ge=1, le=30)] = 5
    antecedent_file: ScenarioFile | None = None
    antecedent_source: Annotated[str, Field(min_length=1)] = "cf-netcdf"

    @model_validator(mode="after")
    def _keys_of_kind(self) -> RainSpec:
        kind = self.kind
        if kind == "file" and self.file is None:
            raise PydanticCustomError("rain_kind", "kind = 'file' needs file = \"...\" (the forecast file, "
                                                   "relative to the scenario)")
        if kind != "file" and self.file is not None:
            raise PydanticCustomError("rain_kind", "file is only used with kind = 'file' (kind is '{kind}')",
                                      {"kind": kind})
        if kind == "synthetic" and self.storm is None:
            raise PydanticCustomError("rain_kind", "kind = 'synthetic' needs a [rain.storm] table with at "
                                                   "least track = [[hours, lon, lat], ...]")
        if kind != "synthetic" and self.storm is not None:
            raise PydanticCustomError("rain_kind", "[rain.storm] is only used with kind = 'synthetic' "
                                                   "(kind is '{kind}')", {"kind": kind})
        unused = [k for k in ("reference_time", "steps", "step_hours")
                  if kind != "synthetic" and k in self.model_fields_set]
        if kind == "file" and "members" in self.model_fields_set:
            unused.append("members")
        if unused:
            raise PydanticCustomError(
                "rain_kind", "{keys} only apply to kind = 'synthetic'{demo} (kind is '{kind}'); remove them",
                {"keys": ", ".join(unused), "kind": kind,
                 "demo": "" if unused != ["members"] else " or 'demo'"})
        if self.antecedent_file is not None and "antecedent_mm" in self.model_fields_set:
            raise PydanticCustomError("antecedent", "give antecedent_mm or antecedent_file, not both")
        return self


# --------------------------------------------------------------------------- the rest


def _region_path(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str) or value == "demo":
        return value
    folder = _folder(info)
    target = _inside(value, folder)
    if not (target / "region.toml").is_file():
        what = "folder not found" if not target.exists() else "not a region folder (no region.toml)"
        raise PydanticCustomError(
            "region_missing",
            "{what}: '{path}' (looked for {target}), relative to the scenario's folder {folder}; give "
            "\"demo\" or a region folder made by 'ewarn region import'",
            {"what": what, "path": value, "target": str(target), "folder": str(folder)})
    return str(target)


class RegionSpec(_Table):
    """``[region]``: the demo region or a region folder."""

    path: Annotated[str, BeforeValidator(_region_path), Field(json_schema_extra={
        "expect": "\"demo\" or a region folder relative to the scenario"})] = "demo"

    @property
    def is_demo(self) -> bool:
        """True for the built-in demo region."""
        return self.path == "demo"

    @property
    def folder(self) -> Path | None:
        """The region folder (absolute), None for the demo region."""
        return None if self.is_demo else Path(self.path)


class ScenarioInfo(_Table):
    """``[scenario]``: what the scenario is called."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 2024


class Options(_Table):
    """``[options]``: planning options (defaults: :class:`ewarn.config.RoutingSettings`)."""

    evacuation_level: Annotated[int, Field(ge=1, le=5)] = _ROUTING.evacuation_level
    planning_window_hours: Annotated[float, Field(gt=0)] = _ROUTING.planning_window_hours
    safety_margin_minutes: Annotated[float, Field(ge=0)] = _ROUTING.safety_margin_minutes
    max_travel_minutes: Annotated[float, Field(gt=0)] = _ROUTING.max_travel_minutes
    relocation: bool = False


class Outputs(_Table):
    """``[outputs]``: what the run writes."""

    files: list[Literal[OUTPUT_FILES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [f for f in OUTPUT_FILES if f != "relocation.csv"])
    language: Literal["vi", "en"] = "vi"

    @field_validator("files")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


class Scenario(_Table):
    """A validated scenario; file paths in it are absolute.

    Build it with :func:`load_scenario` (or :func:`parse_scenario`), not directly.
    """

    scenario: ScenarioInfo
    region: RegionSpec = Field(default_factory=RegionSpec)
    rain: RainSpec = Field(default_factory=RainSpec)
    changes: Changes = Field(default_factory=Changes)
    options: Options = Field(default_factory=Options)
    outputs: Outputs = Field(default_factory=Outputs)
    _file: Path = PrivateAttr(default=Path("scenario.toml"))

    @property
    def file(self) -> Path:
        """The scenario file (absolute)."""
        return self._file

    @property
    def folder(self) -> Path:
        """The scenario file's folder: every path in the scenario is relative to it."""
        return self._file.parent

    @property
    def name(self) -> str:
        return self.scenario.name

    def routing_settings(self, base: RoutingSettings | None = None) -> RoutingSettings:
        """``base`` (default: the defaults) with this scenario's mode and options."""
        base = base or RoutingSettings()
        return base.model_copy(update={
            "mode": self.changes.mode,
            "evacuation_level": self.options.evacuation_level,
            "planning_window_hours": self.options.planning_window_hours,
            "safety_margin_minutes": self.options.safety_margin_minutes,
            "max_travel_minutes": self.options.max_travel_minutes,
        })


# --------------------------------------------------------------------------- error messages


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` / ``X | None``."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


_TYPE_WORDS = {float: "a number", int: "a whole number", bool: "true or false", str: "text in quotes",
               Path: "a file path in quotes", dt.datetime: "a TOML date-time"}


def _bounds_text(metadata: list[Any]) -> str:
    lo = hi = None
    for m in metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥")):
            if getattr(m, attr, None) is not None:
                lo = (sym, getattr(m, attr))
        for attr, sym in (("lt", "<"), ("le", "≤")):
            if getattr(m, attr, None) is not None:
                hi = (sym, getattr(m, attr))
    if lo and hi and lo[0] == "≥" and hi[0] == "≤":
        return f" from {lo[1]:g} to {hi[1]:g}"
    parts = [f"{b[0]} {b[1]:g}" for b in (lo, hi) if b is not None]
    return (" " + " and ".join(parts)) if parts else ""


def _expect(model: type[BaseModel] | None, key: str) -> str:
    """What a key expects, in plain words (from its type and constraints)."""
    if model is None or key not in model.model_fields:
        return ""
    info = model.model_fields[key]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "expect" in extra:
        return str(extra["expect"])
    ann = _unwrap(info.annotation)
    if typing.get_origin(ann) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if typing.get_origin(ann) is list:
        inner = _unwrap(typing.get_args(ann)[0])
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return f"a list of [[{key}]] tables"
        if typing.get_origin(inner) is Literal:
            return "a list of " + ", ".join(repr(a) for a in typing.get_args(inner))
        return f"a list of {_TYPE_WORDS.get(inner, 'values')}s"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a table"
    words = _TYPE_WORDS.get(ann, "a value")
    if ann in (int, float):
        words += _bounds_text(list(info.metadata))
    return words


def _submodel(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    """The model of a key's table (or of its list items), if any."""
    if model is None or key not in model.model_fields:
        return None
    ann = _unwrap(model.model_fields[key].annotation)
    if typing.get_origin(ann) is list:
        ann = _unwrap(typing.get_args(ann)[0])
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _table_name(keys: list[str]) -> str:
    return "[" + ".".join(keys) + "]" if keys else "the top level"


def _problem(err: dict[str, Any], data: Any, file: str) -> Problem:
    """One pydantic error as a Problem: dotted key, entry of an array of tables, plain words."""
    model: type[BaseModel] | None = Scenario
    node: Any = data
    keys: list[str] = []
    where: list[str] = []
    item: int | None = None  # index inside a plain list (a point, a waypoint)
    item_value: Any = None
    owner: type[BaseModel] | None = Scenario
    for part in err["loc"]:
        if isinstance(part, int):
            if isinstance(node, list) and 0 <= part < len(node):
                if isinstance(node[part], dict):
                    where.append(f"entry {part + 1} of [[{'.'.join(keys)}]]")
                elif item is None:
                    item = part
                    item_value = node[part]
                else:
                    pass  # the coordinate inside a point: reported on the point
                node = node[part]
            continue
        if (isinstance(node, dict) and part in node) or (model is not None and part in model.model_fields):
            keys.append(str(part))
            owner = model
            model = _submodel(model, str(part))
            node = node.get(part) if isinstance(node, dict) else None
        # else: a pydantic tag (union member, validator name): not a key
    kind = err["type"]
    got = err.get("input")
    dotted = ".".join(keys) or None
    last = keys[-1] if keys else ""
    if item is not None:
        noun = {"track": "waypoint", "coordinates": "point", "polygon": "point"}.get(last, "item")
        where.append(f"{noun} {item + 1}")
    where_text = ", ".join(where) or None
    if kind == "extra_forbidden":
        bad = keys[-1] if keys else str(err["loc"][-1])
        table = keys[:-1]
        known = sorted(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(bad, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        msg = (f"unknown key '{bad}'{hint}; the keys of {_table_name(table)} are: "
               + ", ".join(known))
    elif kind == "missing" and item is None:
        key = keys[-1] if keys else "?"
        table = keys[:-1]
        expect = _expect(owner, key)
        if expect == "a table":
            msg = f"missing table [{dotted}]; add it"
        else:
            msg = f"missing key '{key}' in {_table_name(table)}" + (f"; give {expect}" if expect else "")
    elif kind.startswith(("path_", "region_", "lonlat_", "polygon_", "track_", "storm_", "shelter_",
                          "rain_", "antecedent")) or kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
    else:
        expect = _expect(owner, last) if last else ""
        if item is not None and last in ("coordinates", "polygon"):
            expect = "[lon, lat] with two numbers"
        elif item is not None and last == "track":
            expect = "[hours, lon, lat] with three numbers"
        if item is not None and kind in ("missing", "too_short", "too_long"):
            got = item_value
        if kind == "literal_error":
            expect = "one of " + str((err.get("ctx") or {}).get("expected", "")).replace(" or ", ", ")
        msg = f"must be {expect}, got {got!r}" if expect else f"{err['msg']}, got {got!r}"
    return Problem(file, msg, where=where_text, field=dotted)


_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse_scenario(text: str, file: Path | str) -> Scenario:
    """Validate scenario TOML text as if read from ``file`` (paths resolve beside it).

    Parameters
    ----------
    text : str
        The TOML text.
    file : Path or str
        Where the text comes from; its folder anchors relative paths.

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        Not TOML (names line and column), or any key unknown, of the wrong
        type, out of range, naming a missing file or a path outside the folder.
    """
    path = Path(file).expanduser().resolve()
    label = str(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = str(exc)
        m = _TOML_POS.search(detail)
        where = f"line {m.group(1)}, column {m.group(2)}" if m else None
        reason = _TOML_POS.sub("", detail).strip()
        raise ScenarioError(f"{label}: not valid TOML", [Problem(
            label, f"not valid TOML: {reason}; fix the syntax (text in quotes, one key = value per line, "
                   "[table] headers on their own line)", where=where)]) from None
    try:
        scenario = Scenario.model_validate(data, context={"folder": path.parent})
    except PydanticValidationError as exc:
        problems = [_problem(e, data, label) for e in exc.errors()]
        raise ScenarioError(f"{label}: the scenario is not valid ({len(problems)} problem(s)); "
                            "fix the keys below", problems) from None
    scenario._file = path
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file.

    Parameters
    ----------
    path : Path or str
        The scenario's TOML file.

    Returns
    -------
    Scenario
        With absolute paths; ``Scenario.folder`` is the file's folder.

    Raises
    ------
    ScenarioError
        The file is missing or unreadable, not TOML, or not a valid scenario;
        every problem names the file, the dotted key and what is expected.
    """
    label = str(path)
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ScenarioError(f"{label}: scenario file not found", [Problem(
            label, f"file not found (looked for {p.resolve()}); check the name, or copy one of the "
                   "examples in scenarios/")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ScenarioError(f"{label}: cannot read the scenario", [Problem(
            label, f"cannot read the file ({reason}); save it as UTF-8 text")]) from None
    return parse_scenario(text, p)
