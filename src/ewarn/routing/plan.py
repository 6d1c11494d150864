"""The evacuation plan: who must move, to which shelter, by which road, when; and permanent relocation.

:func:`plan_evacuation` ties the routing room together for one risk
assessment (issue #5):

1. **Who must move.** A household must move when its commune's
   ``level_max`` reaches ``options.level`` (Decision 18/2021/QĐ-TTg risk
   level) AND it lies in a hazard zone of the forecast window
   (:func:`hazard_zone`, from the hazard grid of
   ``ewarn.hazard_models.cells.hazard_cells``):

   * ``stream_bank``: within ``stream_buffer_m`` of the centre of a
     threatened stream cell (flash-flood-prone and forecast rain ≥ flash-flood
     guidance), measured in metres in the region's UTM zone (KD-tree);
   * ``landslide``: on a cell whose landslide class reaches "high".

   Everyone else shelters in place. Without a hazard grid (region without
   terrain) every household of a commune at the level must move
   (``commune_level``) and the plan says so in its warnings.
2. **Which roads.** Hazard closures and slow-downs of the edges
   (:mod:`ewarn.routing.hazard_edges`: roads through threatened stream cells
   are closed, through triggered landslide cells closed or slowed by
   ``slow_factor``) plus the planner's closures (OSM way ids, polygons).
   Shelters inside a hazard zone are not used.
3. **Where to.** Households are snapped to the nearest usable road node,
   shortest travel times to the candidate shelters
   (:mod:`ewarn.routing.paths`, scipy Dijkstra on the CSR graph) and the
   optimal capacity-respecting assignment (:mod:`ewarn.routing.assign`,
   min-cost flow) within ``max_travel_minutes``.
4. **When.** :mod:`ewarn.routing.schedule` (simplified CCRP) gives departure
   waves on capacity-limited roads; deadline = commune onset − safety
   margin; late groups are flagged; assisted evacuation of the vulnerable
   from the commune centres.

:func:`write_plan` writes ``plan.csv``, ``routes.geojson`` (RFC 7946),
``shelters.csv``, ``communes.csv``, ``assisted.csv``, ``closures.csv`` and
``summary.json`` into a folder, all or nothing.

:func:`permanent_relocation` lists the households on very-high landslide
susceptibility ground (class 5 of
:func:`ewarn.hazard_models.terrain.susceptibility_class`), whatever the
forecast, and assigns them to resettlement sites with capacities.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from pyproj import Transformer
from scipy.spatial import cKDTree

from ewarn.config import LOCAL_TZ, RoutingSettings
from ewarn.errors import EwarnError, WorkspaceError
from ewarn.region import Region
from ewarn.routing import assign as assignment
from ewarn.routing import hazard_edges, paths
from ewarn.routing import schedule as sched
from ewarn.routing.graph import RoadNetwork, read_speeds, region_network

__all__ = [
    "REASONS_TO_MOVE",
    "UNASSIGNED_REASONS",
    "EvacuationPlan",
    "PlanInputError",
    "PlanOptions",
    "RelocationPlan",
    "hazard_zone",
    "must_move",
    "permanent_relocation",
    "plan_evacuation",
    "write_plan",
    "write_relocation",
]

log = logging.getLogger(__name__)

#: Why a household must move (codes in plan.csv) and their Vietnamese labels (summary.json).
REASONS_TO_MOVE = {
    "stream_bank": "ven suối có nguy cơ lũ quét",
    "landslide": "vùng có nguy cơ sạt lở đất",
    "stream_bank+landslide": "ven suối có nguy cơ lũ quét và vùng sạt lở",
    "commune_level": "xã ở cấp độ rủi ro cần sơ tán (không có dữ liệu địa hình)",
    "very_high_susceptibility": "vùng nguy cơ sạt lở rất cao (di dời lâu dài)",
}
#: Why a household that must move has no shelter (codes in plan.csv) and their Vietnamese labels.
UNASSIGNED_REASONS = {
    "no_road_nearby": "không có đường trong phạm vi cho phép quanh nhà",
    "road_closed": "đường gần nhà bị đóng do nguy cơ lũ quét, sạt lở hoặc theo lệnh phong tỏa",
    assignment.NO_ROAD: assignment.REASONS[assignment.NO_ROAD][0],
    assignment.NO_CAPACITY: assignment.REASONS[assignment.NO_CAPACITY][0],
    "no_site": "không có khu tái định cư",
}

#: Households and shelters farther than this from any usable road node are not snapped [m]
#: (ewarn choice: 1 km on foot with belongings is ~15-20 min on a mountain path).
DEFAULT_MAX_SNAP_M = 1000.0


class PlanInputError(EwarnError):
    """The assessment, hazard grid, options or region cannot give a plan (names the fix)."""


@dataclass(frozen=True)
class PlanOptions:
    """Options of :func:`plan_evacuation` (mirror of ``[routing]`` in ``ewarn.toml``).

    Attributes
    ----------
    level : int
        Communes whose ``level_max`` reaches this evacuate their hazard zones (1..5).
    mode : {"walk", "motorbike", "car"}
        Travel mode.
    max_travel_minutes : float
        Shelters farther than this [min] are not offered.
    safety_margin_minutes : float
        Arrive this long before the commune's onset [min].
    planning_window_hours : float
        Hours after the plan start whose hazard closes or slows roads (the
        window of the hazard grid the caller builds).
    stream_buffer_m : float
        Households this close to a threatened stream cell centre must move [m].
    landslide_roads : {"close", "slow"}
        What a triggered landslide cell does to the roads through it.
    slow_factor : float
        Travel time factor of a slowed road [-].
    candidate_shelters : int
        Nearest reachable shelters offered to each household.
    closures_way_ids : tuple of int
        OSM way ids the planner closes.
    closures_polygons : tuple of shapely geometries
        Areas (lon/lat) whose roads the planner closes.
    now : datetime, optional
        Start of the plan (UTC when naive); default the assessment's
        ``forecast_reference_time``.
    max_snap_m : float
        Farthest a household or shelter may be from its road node [m].
    bucket_minutes : float
        Time step of the departure schedule [min].
    """

    level: int = 2
    mode: str = "motorbike"
    max_travel_minutes: float = 120.0
    safety_margin_minutes: float = 60.0
    planning_window_hours: float = 24.0
    stream_buffer_m: float = 150.0
    landslide_roads: str = "close"
    slow_factor: float = 3.0
    candidate_shelters: int = 8
    closures_way_ids: tuple[int, ...] = ()
    closures_polygons: tuple[Any, ...] = ()
    now: dt.datetime | None = None
    max_snap_m: float = DEFAULT_MAX_SNAP_M
    bucket_minutes: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.level, int) and 1 <= self.level <= 5):
            problems.append(f"level={self.level!r}: use a whole number 1..5")
        if self.mode not in RoadNetwork.MODES:
            problems.append(f"mode={self.mode!r}: use one of {', '.join(RoadNetwork.MODES)}")
        if self.landslide_roads not in ("close", "slow"):
            problems.append(f"landslide_roads={self.landslide_roads!r}: use 'close' or 'slow'")
        for name, lo in (("max_travel_minutes", 0.0), ("planning_window_hours", 0.0),
                         ("max_snap_m", 0.0), ("bucket_minutes", 0.0)):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > lo):
                problems.append(f"{name}={v!r}: use a number > {lo:g}")
        for name in ("safety_margin_minutes", "stream_buffer_m"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                problems.append(f"{name}={v!r}: use a number >= 0")
        if not (isinstance(self.slow_factor, int | float) and self.slow_factor >= 1):
            problems.append(f"slow_factor={self.slow_factor!r}: use a number >= 1")
        if not all(isinstance(g, shapely.Geometry) for g in self.closures_polygons):
            problems.append("closures_polygons: give shapely polygons in lon/lat (EPSG:4326)")
        if not all(isinstance(w, int | np.integer) and not isinstance(w, bool)
                   for w in self.closures_way_ids):
            problems.append(f"closures_way_ids={self.closures_way_ids!r}: give OSM way ids (whole numbers)")
        if not (isinstance(self.candidate_shelters, int) and self.candidate_shelters >= 1):
            problems.append(f"candidate_shelters={self.candidate_shelters!r}: use a whole number >= 1")
        if problems:
            raise PlanInputError("invalid plan options: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: RoutingSettings, **overrides: Any) -> PlanOptions:
        """Options from ``[routing]`` settings (``Settings.routing``), with overrides."""
        base = {"level": settings.evacuation_level, "mode": settings.mode,
                "max_travel_minutes": settings.max_travel_minutes,
                "safety_margin_minutes": settings.safety_margin_minutes,
                "planning_window_hours": settings.planning_window_hours,
                "stream_buffer_m": settings.stream_buffer_m, "landslide_roads": settings.landslide_roads,
                "slow_factor": settings.slow_factor, "candidate_shelters": settings.candidate_shelters}
        return cls(**{**base, **overrides})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready options (polygons as WKT, ``now`` as ISO UTC)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "closures_polygons":
                v = [shapely.to_wkt(g, rounding_precision=6) for g in v]
            elif f.name == "closures_way_ids":
                v = [int(w) for w in v]
            elif f.name == "now":
                v = None if v is None else _iso(_utc(v))
            out[f.name] = v
        return out


# --------------------------------------------------------------------------- time helpers


def _utc(t: Any) -> pd.Timestamp:
    """A time as a tz-aware UTC Timestamp (naive = UTC)."""
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _iso(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_times(start: pd.Timestamp, seconds: np.ndarray | pd.Series) -> pd.Series:
    """Seconds from ``start`` → tz-aware UTC times (NaT where NaN or infinite), second precision."""
    s = np.asarray(seconds, dtype=np.float64)
    s = np.where(np.isfinite(s), np.round(s), np.nan)
    return pd.Series(start + pd.to_timedelta(s, unit="s"))


# --------------------------------------------------------------------------- hazard zones


def _grid_index(axis: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell index of each value on an ascending regular axis of cell centres, and whether inside."""
    axis = np.asarray(axis, dtype=np.float64)
    if axis.size < 2:
        return np.zeros(values.shape, dtype=np.int64), np.zeros(values.shape, dtype=bool)
    half = 0.5 * (axis[1] - axis[0])
    mid = 0.5 * (axis[1:] + axis[:-1])
    idx = np.searchsorted(mid, values)
    inside = (values >= axis[0] - half) & (values <= axis[-1] + half)
    return idx.astype(np.int64), inside


def _check_cells(cells: xr.Dataset) -> None:
    need = ("stream_threatened", "landslide_triggered")
    missing = [v for v in need if v not in cells]
    if missing or "latitude" not in cells.dims or "longitude" not in cells.dims:
        raise PlanInputError(
            f"hazard grid lacks {', '.join(missing) or 'the latitude/longitude dims'}; give the dataset of "
            "ewarn.hazard_models.cells.hazard_cells (assessments/<source>/<cycle>-cells.nc)")


def hazard_zone(lon: np.ndarray, lat: np.ndarray, cells: xr.Dataset, *, stream_buffer_m: float,
                crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Which points lie in a hazard zone of the forecast window.

    Parameters
    ----------
    lon, lat : array of float, shape (p,)
        Points [deg, EPSG:4326].
    cells : xarray.Dataset
        Hazard grid (routing_contract.md "HazardGrid"): ``stream_threatened``
        and ``landslide_triggered`` (bool) on ascending ``(latitude, longitude)``.
    stream_buffer_m : float
        A point within this distance [m] of the centre of a threatened stream
        cell is on the stream bank (``[routing] stream_buffer_m``, 150 m by
        default: an ewarn choice of the order of the run-out width of the
        2024-09-10 Làng Nủ debris flow along its stream, SCIENCE.md §5).
    crs : str
        Projected CRS [m] for the distances (the region's UTM zone,
        ``RoadNetwork.crs``).

    Returns
    -------
    near_stream : numpy.ndarray of bool, shape (p,)
        Within ``stream_buffer_m`` of a threatened stream cell centre
        (KD-tree over the cell centres, in metres).
    on_landslide : numpy.ndarray of bool, shape (p,)
        In a cell whose landslide class reached "high" (points outside the
        grid: False).
    """
    _check_cells(cells)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    glat = cells["latitude"].to_numpy()
    glon = cells["longitude"].to_numpy()
    thr = cells["stream_threatened"].transpose("latitude", "longitude").to_numpy().astype(bool)
    slide = cells["landslide_triggered"].transpose("latitude", "longitude").to_numpy().astype(bool)
    to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    near = np.zeros(lon.shape, dtype=bool)
    rows, cols = np.nonzero(thr)
    if rows.size and lon.size:
        cx, cy = to_xy.transform(glon[cols], glat[rows])
        px, py = to_xy.transform(lon, lat)
        d, _ = cKDTree(np.column_stack([cx, cy])).query(np.column_stack([px, py]),
                                                        distance_upper_bound=stream_buffer_m * (1 + 1e-12))
        near = np.isfinite(d)
    r, in_r = _grid_index(glat, lat)
    c, in_c = _grid_index(glon, lon)
    inside = in_r & in_c
    on = np.zeros(lon.shape, dtype=bool)
    on[inside] = slide[r[inside], c[inside]]
    return near, on


def _assessment_frame(assessment: xr.Dataset) -> pd.DataFrame:
    need = [v for v in ("level_max", "onset_time") if v not in assessment]
    if need or "commune" not in assessment.coords:
        raise PlanInputError(
            f"assessment lacks {', '.join(need) or 'the commune coordinate'}; give the dataset of "
            "ewarn.hazard_models.assess (assessments/<source>/<cycle>.nc)")
    codes = pd.Index(assessment["commune"].to_numpy().astype(str), name="commune_code")
    onset = pd.to_datetime(assessment["onset_time"].to_numpy())
    onset = onset.tz_localize("UTC") if onset.tz is None else onset.tz_convert("UTC")
    return pd.DataFrame({"level_max": assessment["level_max"].to_numpy().astype(np.int64),
                         "onset": onset}, index=codes)


def must_move(households: pd.DataFrame, assessment: xr.Dataset, cells: xr.Dataset | None, *,
              level: int, stream_buffer_m: float, crs: str) -> pd.DataFrame:
    """Which households must move, and why.

    Parameters
    ----------
    households : pandas.DataFrame
        ``Region.households``.
    assessment : xarray.Dataset
        Risk assessment: ``level_max`` and ``onset_time`` over ``commune``.
    cells : xarray.Dataset or None
        Hazard grid; None: every household of a commune at the level moves.
    level : int
        Evacuation level (Decision 18/2021 risk level).
    stream_buffer_m : float
        See :func:`hazard_zone`.
    crs : str
        Projected CRS for distances.

    Returns
    -------
    pandas.DataFrame
        Aligned with ``households``: ``level_max`` (commune's, 0 when the
        commune is not assessed), ``onset`` (UTC, NaT when none),
        ``near_stream``, ``on_landslide``, ``must_move`` (bool) and
        ``reason_to_move`` (a :data:`REASONS_TO_MOVE` code, "" when staying).
    """
    a = _assessment_frame(assessment)
    codes = households["commune_code"].astype(str).to_numpy()
    lvl = a["level_max"].reindex(codes).fillna(0).to_numpy(np.int64)
    onset = pd.DatetimeIndex(a["onset"].reindex(codes))
    at_level = lvl >= level
    if cells is None:
        near = np.zeros(len(households), dtype=bool)
        slide = np.zeros(len(households), dtype=bool)
        move = at_level
        reason = np.where(move, "commune_level", "")
    else:
        near, slide = hazard_zone(households["lon"].to_numpy(), households["lat"].to_numpy(), cells,
                                  stream_buffer_m=stream_buffer_m, crs=crs)
        move = at_level & (near | slide)
        reason = np.select([near & slide, near, slide], ["stream_bank+landslide", "stream_bank", "landslide"],
                           "")
        reason = np.where(move, reason, "")
    return pd.DataFrame({"level_max": lvl, "onset": onset, "near_stream": near, "on_landslide": slide,
                         "must_move": move, "reason_to_move": pd.array(reason, dtype="string")},
                        index=households.index)


# --------------------------------------------------------------------------- closures


def _edge_effects(net: RoadNetwork, cells: xr.Dataset | None, opt: PlanOptions
                  ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Closed edges, travel-time factors and the closures table (hazard + planner)."""
    parts = []
    if cells is not None:
        landslide = "slow" if opt.landslide_roads == "slow" else "close"
        parts.append(hazard_edges.hazard_closures(net, cells, landslide=landslide,
                                                  slow_factor=opt.slow_factor))
    if opt.closures_way_ids or opt.closures_polygons:
        parts.append(hazard_edges.planner_closures(net, way_ids=opt.closures_way_ids,
                                                   polygons=opt.closures_polygons))
    h = hazard_edges.combine(*parts) if parts else hazard_edges.EdgeHazards.none(net.n_edges)
    frame = h.to_frame(net)
    frame.insert(frame.columns.get_loc("closed"), "action",
                 pd.array(np.where(frame["closed"], "closed", "slowed"), dtype="string"))
    return h.closed, h.factor, frame.drop(columns=["closed"])


# --------------------------------------------------------------------------- the plan


@dataclass
class EvacuationPlan:
    """An evacuation plan (routing_contract.md "Plan outputs").

    Attributes
    ----------
    households : pandas.DataFrame
        One row per household of the region: ``household_id``,
        ``commune_code``, ``people``, ``vulnerable``, ``must_move`` (bool),
        ``reason_to_move`` (:data:`REASONS_TO_MOVE` code, "" when sheltering
        in place), ``shelter_id`` (<NA> when none), ``route_id`` (row of
        :attr:`routes`, -1 when none), ``travel_time_s``, ``distance_m``
        (door to door), ``departure``, ``arrival``, ``deadline`` (tz-aware
        UTC; NaT when none), ``late`` (bool: arrives after the deadline),
        ``unassigned_reason`` (:data:`UNASSIGNED_REASONS` code, or
        ``arrives_after_deadline`` for a late household that keeps its
        shelter; "" when none).
    shelters : pandas.DataFrame
        ``shelter_id``, ``name``, ``kind``, ``capacity``, ``load`` [people],
        ``households``, ``usable`` (bool), ``excluded_reason``.
    communes : pandas.DataFrame
        ``commune_code``, ``name``, ``level_max``, ``onset``, ``deadline``,
        ``households_to_move``, ``people_to_move``, ``assigned``,
        ``unassigned``, ``late``, ``clearance_time`` (UTC, last arrival).
    routes : geopandas.GeoDataFrame
        One LineString per (origin node, shelter) group, EPSG:4326, from the
        origin node along the real edge geometries to the shelter:
        ``route_id``, ``origin_osmid``, ``shelter_id``, ``households``,
        ``people``, ``travel_time_s``, ``distance_m``, ``first_departure``,
        ``last_departure``, ``arrival``, ``deadline``, ``late``.
    closures : pandas.DataFrame
        ``edge``, ``way_id``, ``highway``, ``action`` (closed | slowed),
        ``factor``, ``reason``.
    assisted : pandas.DataFrame
        People needing help to move, per commune centre
        (:func:`ewarn.routing.schedule.assisted_pickups` plus ``name``,
        ``centre_lon``, ``centre_lat``, ``shelter_id``, ``pickup_by``
        (UTC)).
    start : pandas.Timestamp
        Plan start (UTC): time 0 of the schedule.
    options : PlanOptions
    warnings : list of str
    """

    households: pd.DataFrame
    shelters: pd.DataFrame
    communes: pd.DataFrame
    routes: gpd.GeoDataFrame
    closures: pd.DataFrame
    assisted: pd.DataFrame
    start: pd.Timestamp
    options: PlanOptions
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    #: Routes as edge rows of the road network: route ``i`` is
    #: ``route_edges[route_offsets[i]:route_offsets[i + 1]]`` (for maps and checks).
    route_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    route_edges: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: bool (m,): edges closed for this plan (hazard and planner).
    closed_edges: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def summary(self) -> dict[str, Any]:
        """Counts, travel times, clearance per commune and unassigned by reason (JSON-ready)."""
        hh = self.households
        mv = hh[hh["must_move"]]
        ok = mv["shelter_id"].notna()
        tt = mv.loc[ok, "travel_time_s"].to_numpy(np.float64) / 60.0
        reasons = mv.loc[mv["unassigned_reason"] != "", "unassigned_reason"].value_counts()
        moves = mv["reason_to_move"].value_counts()

        def stat(f: Any) -> float | None:
            return round(float(f(tt)), 1) if tt.size else None

        clearance = {str(r.commune_code): (_iso(r.clearance_time) if pd.notna(r.clearance_time) else None)
                     for r in self.communes.itertuples() if r.households_to_move > 0}
        return {
            "start": _iso(self.start),
            "source": self.source,
            "households": len(hh),
            "households_to_move": len(mv),
            "people_to_move": int(mv["people"].sum()),
            "assigned": int(ok.sum()),
            "assigned_people": int(mv.loc[ok, "people"].sum()),
            "unassigned": int((~ok).sum()),
            "late": int(mv["late"].sum()),
            "reasons_to_move": {str(k): {"households": int(v), "vi": REASONS_TO_MOVE.get(str(k), "")}
                                for k, v in moves.items()},
            "unassigned_by_reason": {str(k): {"households": int(v), "vi": _REASON_LABELS.get(str(k), "")}
                                     for k, v in reasons.items()},
            "travel_time_minutes": {"mean": stat(np.mean), "p95": stat(lambda a: np.percentile(a, 95)),
                                    "max": stat(np.max)},
            "clearance_time": clearance,
            "shelters_used": int((self.shelters["load"] > 0).sum()),
            "shelters_over_capacity": int((self.shelters["load"] > self.shelters["capacity"]).sum()),
            "closed_edges": int((self.closures["action"] == "closed").sum()) if len(self.closures) else 0,
            "slowed_edges": int((self.closures["action"] == "slowed").sum()) if len(self.closures) else 0,
            "assisted_people": int(self.assisted["people"].sum()) if len(self.assisted) else 0,
            "options": self.options.as_dict(),
            "warnings": list(self.warnings),
        }


LATE = "arrives_after_deadline"
_REASON_LABELS = {**UNASSIGNED_REASONS,
                  LATE: "đến điểm sơ tán sau thời hạn an toàn; cần hỗ trợ hoặc đi sớm hơn"}


def _start_time(assessment: xr.Dataset, options: PlanOptions) -> pd.Timestamp:
    if options.now is not None:
        return _utc(options.now)
    frt = assessment.attrs.get("forecast_reference_time")
    if not frt:
        raise PlanInputError("assessment has no forecast_reference_time attribute; pass PlanOptions(now=...) "
                             "as the start of the plan")
    try:
        return _utc(frt)
    except (TypeError, ValueError):
        raise PlanInputError(f"assessment forecast_reference_time={frt!r} is not a time; pass "
                             "PlanOptions(now=...)") from None


def _walk_kmh() -> float:
    """Walking speed from the road to a door [km/h] (``footway`` row of ``tables/speeds.toml``)."""
    return float(read_speeds().speeds_of(np.array(["footway"]), "walk")[0])


def _route_lines(net: RoadNetwork, offsets: np.ndarray, edges: np.ndarray, start_lonlat: np.ndarray,
                 end_lonlat: np.ndarray) -> np.ndarray:
    """One LineString per route: start point, the real edge polylines in order, end point (lon/lat)."""
    p = len(offsets) - 1
    if p == 0:
        return np.zeros(0, dtype=object)
    pos, grp = net.edge_point_index(edges)
    route_of_edge = np.repeat(np.arange(p), np.diff(offsets))
    r_pts = route_of_edge[grp] if grp.size else np.zeros(0, dtype=np.int64)
    coords = np.concatenate([start_lonlat, net.edge_coords[pos], end_lonlat])
    route = np.concatenate([np.arange(p), r_pts, np.arange(p)])
    seq = np.concatenate([np.full(p, -1), np.arange(r_pts.size), np.full(p, r_pts.size + 1)])
    order = np.lexsort((seq, route))
    coords, route = coords[order], route[order]
    # drop a point equal to the previous one of the same route (edge junctions), keep >= 2 per route
    dup = np.r_[False, (route[1:] == route[:-1]) & np.all(coords[1:] == coords[:-1], axis=1)]
    count = np.bincount(route[~dup], minlength=p)
    dup &= count[route] > 2  # never reduce a route below two points
    coords, route = coords[~dup], route[~dup]
    short = np.flatnonzero(np.bincount(route, minlength=p) < 2)
    if short.size:  # a one-point route (already at the shelter): repeat the point
        coords = np.concatenate([coords, coords[np.searchsorted(route, short)]])
        route = np.concatenate([route, short])
        order = np.argsort(route, kind="stable")
        coords, route = coords[order], route[order]
    return shapely.linestrings(coords, indices=route)


# --------------------------------------------------------------------------- writers


def _csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Times as ISO UTC text plus a local-time column for people (Asia/Ho_Chi_Minh)."""
    out = df.copy()
    for col in list(out.columns):
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):
            t = out[col]
            out[col] = t.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype("string")
            local = t.dt.tz_convert(LOCAL_TZ).dt.strftime("%Y-%m-%d %H:%M %z").astype("string")
            out.insert(out.columns.get_loc(col) + 1, f"{col}_local", local)
    return out


def _geojson_text(routes: gpd.GeoDataFrame) -> str:
    """RFC 7946 FeatureCollection: lon/lat positions, no ``crs`` member, times as ISO UTC text."""
    props = _csv_frame(pd.DataFrame(routes.drop(columns="geometry")))
    feats = []
    geoms = routes.geometry.to_numpy()
    records = json.loads(props.to_json(orient="records", force_ascii=False)) if len(props) else []
    for geom, rec in zip(geoms, records, strict=True):
        feats.append({"type": "Feature", "properties": rec,
                      "geometry": json.loads(shapely.to_geojson(geom))})
    return json.dumps({"type": "FeatureCollection", "features": feats}, ensure_ascii=False)


def _write_folder(folder: Path, files: dict[str, str]) -> Path:
    """Write every file into a temporary sibling folder, then swap it in (all or nothing)."""
    folder = Path(folder).expanduser().resolve()
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as exc:
        raise WorkspaceError(f"cannot write the plan to {folder}: {exc.strerror}; choose a writable "
                             "folder") from None
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8", newline="")
        old = None
        if folder.exists():
            old = parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WorkspaceError(f"cannot write the plan to {folder}: {exc.strerror}; free some space or "
                             "choose a writable folder (the previous plan is kept)") from None
    return folder


def _csv(df: pd.DataFrame) -> str:
    return _csv_frame(df).to_csv(index=False, lineterminator="\n")


def write_plan(plan: EvacuationPlan, folder: Path | str) -> Path:
    """Write an evacuation plan into ``folder`` (replaced as a whole, never half-written).

    Files: ``plan.csv`` (one row per household that must move, reason codes
    with their Vietnamese text in ``*_vi`` columns), ``routes.geojson``
    (RFC 7946), ``shelters.csv`` (load vs capacity), ``communes.csv``,
    ``assisted.csv``, ``closures.csv`` and ``summary.json``. Times are UTC
    (ISO 8601 ``Z``) with a ``*_local`` column in Asia/Ho_Chi_Minh.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    ewarn.errors.WorkspaceError
        When the folder cannot be written; the previous plan there is kept.
    """
    hh = plan.households[plan.households["must_move"]].drop(columns=["must_move"])
    hh.insert(hh.columns.get_loc("reason_to_move") + 1, "reason_to_move_vi",
              hh["reason_to_move"].map(REASONS_TO_MOVE).fillna("").astype("string"))
    hh["unassigned_reason_vi"] = hh["unassigned_reason"].map(_REASON_LABELS).fillna("").astype("string")
    files = {
        "plan.csv": _csv(hh),
        "routes.geojson": _geojson_text(plan.routes),
        "shelters.csv": _csv(plan.shelters),
        "communes.csv": _csv(plan.communes),
        "assisted.csv": _csv(plan.assisted),
        "closures.csv": _csv(plan.closures),
        "summary.json": json.dumps(plan.summary(), ensure_ascii=False, indent=2),
    }
    return _write_folder(Path(folder), files)


# --------------------------------------------------------------------------- plan_evacuation


def plan_evacuation(region: Region, assessment: xr.Dataset, cells: xr.Dataset | None = None,
                    options: PlanOptions | None = None, *, network: RoadNetwork | None = None,
                    cache_dir: Path | str | None = None,
                    road_cells: xr.Dataset | None = None) -> EvacuationPlan:
    """Plan the evacuation of the households in the hazard zones of the communes at risk.

    Parameters
    ----------
    region : ewarn.region.Region
        Households, shelters, communes and roads.
    assessment : xarray.Dataset
        Risk assessment (``ewarn.hazard_models.assess``): ``level_max`` and
        ``onset_time`` (UTC) over ``commune``; attribute
        ``forecast_reference_time`` (the plan start unless ``options.now``).
    cells : xarray.Dataset, optional
        Hazard grid (``ewarn.hazard_models.cells.hazard_cells``) that says
        who must move (and, without ``road_cells``, which roads close);
        None: no terrain, every household of a commune at the level moves
        and no road is closed by the hazard (a warning says so).
    options : PlanOptions, optional
    network : RoadNetwork, optional
        Default :func:`ewarn.routing.graph.region_network` of the region.
    cache_dir : path, optional
        Road network cache folder (e.g. ``Workspace.path("cache", "roads")``).
    road_cells : xarray.Dataset, optional
        Hazard grid whose cells close or slow the roads; default ``cells``.
        Give the grid of the planning window
        (``hazard_cells(..., start=now, end=now + planning_window_hours)``)
        when ``cells`` covers the whole forecast: households threatened
        later in the forecast move now, on the roads open now.

    Returns
    -------
    EvacuationPlan

    Raises
    ------
    PlanInputError
        When the assessment or hazard grid lacks what the plan needs.
    """
    opt = options or PlanOptions()
    warns: list[str] = []
    start = _start_time(assessment, opt)
    net = network if network is not None else region_network(region, cache_dir)
    hh = region.households.reset_index(drop=True)
    mm = must_move(hh, assessment, cells, level=opt.level, stream_buffer_m=opt.stream_buffer_m, crs=net.crs)
    if cells is None:
        warns.append("no hazard grid (region without terrain): every household of a commune at level "
                     f">= {opt.level} must move; no road is closed by the hazard")
        log.warning("evacuation plan: %s", warns[-1])
    else:
        _check_cells(cells)
    missing = sorted(set(hh["commune_code"].astype(str)) - set(_assessment_frame(assessment).index))
    if missing:
        warns.append(f"communes not in the assessment (nobody there moves): {', '.join(missing)}")

    # roads: hazard closures and slow-downs, then the planner's closures
    if road_cells is not None:
        _check_cells(road_cells)
    closed, factor, closures = _edge_effects(net, cells if road_cells is None else road_cells, opt)
    mode_t = net.edge_times(opt.mode, factor=factor, closed=closed)
    graph_to, entry_edge = net.csr_with_edges(opt.mode, factor=factor, closed=closed, reverse=True)
    usable = paths.usable_nodes(graph_to)
    walk_kmh = _walk_kmh()

    # shelters: not in a hazard zone, snapped to a usable node; resettlement sites (permanent
    # relocation, possibly not built yet) are not evacuation shelters
    sh = region.shelters
    sh = sh[sh["kind"].astype(str) != "resettlement"].reset_index(drop=True)
    sh_excl = np.full(len(sh), "", dtype=object)
    if cells is not None and len(sh):
        s_near, s_slide = hazard_zone(sh["lon"].to_numpy(), sh["lat"].to_numpy(), cells,
                                      stream_buffer_m=opt.stream_buffer_m, crs=net.crs)
        sh_excl[s_slide] = "landslide"
        sh_excl[s_near] = "stream_bank"
    sh_node, sh_dist = _snap(net, sh["lon"].to_numpy(), sh["lat"].to_numpy(), usable)
    sh_excl[(sh_excl == "") & ~(sh_dist <= opt.max_snap_m)] = "no_road_nearby"
    sh_ok = sh_excl == ""
    sh_walk = paths.walk_time_s(np.where(sh_ok, sh_dist, 0.0), walk_kmh)
    sh_node_ok = np.where(sh_ok, sh_node, -1)

    # households that must move: snap, candidates, optimal assignment
    mv = np.flatnonzero(mm["must_move"].to_numpy())
    h_node, h_dist = _snap(net, hh["lon"].to_numpy()[mv], hh["lat"].to_numpy()[mv], usable)
    on_road = h_dist <= opt.max_snap_m
    h_node = np.where(on_road, h_node, -1)
    h_walk = paths.walk_time_s(np.where(on_road, h_dist, 0.0), walk_kmh)
    limit_s = opt.max_travel_minutes * 60.0
    people = hh["people"].to_numpy(np.int64)[mv]
    vuln = hh["vulnerable"].to_numpy(np.int64)[mv]
    onset = pd.DatetimeIndex(mm["onset"].iloc[mv])
    hours = ((onset - start).total_seconds() / 3600.0).to_numpy(np.float64)
    choice, reason, _ = _assign(graph_to, h_node, h_walk, sh_node_ok, sh_walk, people,
                                sh["capacity"].to_numpy(np.int64) * sh_ok, limit_s, opt.candidate_shelters,
                                assignment.priority_weight(vuln, hours))
    reason[~on_road] = _off_road_reason(net, hh["lon"].to_numpy()[mv][~on_road],
                                        hh["lat"].to_numpy()[mv][~on_road], opt.max_snap_m)

    # routes of the (origin node, shelter) groups
    got = np.flatnonzero(choice >= 0)
    pair_key = np.stack([h_node[got], choice[got]], axis=1)
    pairs, pair_of = (np.unique(pair_key, axis=0, return_inverse=True) if got.size
                      else (np.zeros((0, 2), np.int64), np.zeros(0, np.int64)))
    pair_of = np.asarray(pair_of).ravel()
    offsets, edges = paths.route_edges(graph_to, entry_edge, sh_node_ok, pairs[:, 0], pairs[:, 1],
                                       limit_s=limit_s)
    road_s = paths.route_totals(offsets, edges, mode_t)
    road_m = paths.route_totals(offsets, edges, net.edge_length_m)

    # schedule: departure waves per group, deadline = onset - margin
    deadline = onset - pd.Timedelta(minutes=opt.safety_margin_minutes)
    deadline_s = np.where(deadline.isna(), np.inf, (deadline - start).total_seconds())
    n_pairs = len(pairs)
    g_people = np.bincount(pair_of, weights=people[got], minlength=n_pairs)
    g_deadline = np.full(n_pairs, np.inf)
    np.minimum.at(g_deadline, pair_of, deadline_s[got])
    g_walk = np.zeros(n_pairs)
    np.maximum.at(g_walk, pair_of, h_walk[got])
    g_access = g_walk + sh_walk[pairs[:, 1]] if n_pairs else np.zeros(0)
    capacity = sched.edge_capacity(net.edge_highway, opt.mode)
    res = sched.schedule_groups(offsets, edges, g_people, g_deadline, mode_t, capacity,
                                access_time_s=g_access, bucket_s=opt.bucket_minutes * 60.0)
    # households of a group leave in waves: those with vulnerable members first
    order = np.lexsort((-vuln[got], pair_of))
    group = np.full(mv.size, -1, dtype=np.int64)
    group[got[order]] = pair_of[order]
    wave = sched.household_departures(res, group[got[order]], people[got[order]])
    dep_s = np.full(mv.size, np.nan)
    dep_s[got[order]] = wave["departure_s"].to_numpy()
    travel_s = np.full(mv.size, np.nan)
    travel_s[got] = h_walk[got] + road_s[pair_of] + sh_walk[choice[got]]
    dist_m = np.full(mv.size, np.nan)
    dist_m[got] = h_dist[got] + road_m[pair_of] + np.where(sh_ok, sh_dist, 0.0)[choice[got]]
    arr_s = dep_s + travel_s
    late = (choice >= 0) & (arr_s > deadline_s + 1e-9)
    reason[late] = LATE

    households = _households_frame(hh, mm, mv, sh, choice, group, travel_s, dist_m, start, dep_s, arr_s,
                                   deadline_s, late, reason)
    shelters = _shelters_frame(sh, sh_excl, households)
    routes = _routes_frame(net, sh, pairs, offsets, edges, res, road_s, road_m, g_access, pair_of, start)
    communes = _communes_frame(region, assessment, opt, households, start)
    assisted = _assisted_frame(region, net, opt, households, sh, sh_node_ok, factor, closed, start)
    if late.any():
        warns.append(f"{int(late.sum())} household(s) cannot reach a shelter before their deadline "
                     "(onset - safety margin): send help or an earlier warning")
    return EvacuationPlan(households=households, shelters=shelters, communes=communes, routes=routes,
                          closures=closures, assisted=assisted, start=start, options=opt, warnings=warns,
                          source=str(assessment.attrs.get("source", "")), route_offsets=offsets,
                          route_edges=edges, closed_edges=closed)


def _assign(graph_to: Any, h_node: np.ndarray, h_walk: np.ndarray, s_node: np.ndarray, s_walk: np.ndarray,
            people: np.ndarray, capacity: np.ndarray, limit_s: float, k: int, weight: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shelter index, reason and door-to-door time [s] of each household.

    Candidates from :func:`ewarn.routing.paths.candidate_shelters`, then the
    optimal whole-household assignment of :func:`ewarn.routing.assign.assign`
    (short candidate lists widened on demand).
    """
    cand = paths.candidate_shelters(graph_to, h_node, h_walk, s_node, s_walk, limit_s=limit_s, k=k)

    def widen(idx: np.ndarray, k2: int) -> paths.Candidates:
        # widening must search up to the limit (effort=inf), or a household may be left "no capacity"
        # while a farther shelter within the limit has room
        return paths.candidate_shelters(graph_to, h_node[idx], h_walk[idx], s_node, s_walk,
                                        limit_s=limit_s, k=k2, effort=np.inf)

    res = assignment.assign(people, cand.shelter, cand.time_s, capacity, priority_weight=weight,
                            complete=cand.complete, widen=widen)
    return res.shelter, res.reason.astype(object), res.time_s


def _off_road_reason(net: RoadNetwork, lon: np.ndarray, lat: np.ndarray, max_snap_m: float) -> np.ndarray:
    """``road_closed`` where some road node is near but none usable, else ``no_road_nearby``."""
    if lon.size == 0:
        return np.zeros(0, dtype=object)
    _, d = net.nearest_nodes(lon, lat)
    return np.where(d <= max_snap_m, "road_closed", "no_road_nearby").astype(object)


def _snap(net: RoadNetwork, lon: np.ndarray, lat: np.ndarray, usable: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest usable node (``-1`` and ``inf`` when no node is usable)."""
    if lon.size == 0 or not usable.any():
        return np.full(lon.shape, -1, dtype=np.int64), np.full(lon.shape, np.inf)
    return net.nearest_nodes(lon, lat, usable=usable)


def _households_frame(hh: pd.DataFrame, mm: pd.DataFrame, mv: np.ndarray, sh: pd.DataFrame,
                      choice: np.ndarray, group: np.ndarray, travel_s: np.ndarray, dist_m: np.ndarray,
                      start: pd.Timestamp, dep_s: np.ndarray, arr_s: np.ndarray, deadline_s: np.ndarray,
                      late: np.ndarray, reason: np.ndarray) -> pd.DataFrame:
    n = len(hh)

    def spread(values: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
        out = np.full(n, fill, dtype=dtype)
        out[mv] = values
        return out

    shelter_id = np.full(mv.size, None, dtype=object)
    shelter_id[choice >= 0] = sh["shelter_id"].to_numpy(dtype=object)[choice[choice >= 0]]
    out = pd.DataFrame({
        "household_id": hh["household_id"].astype("string"),
        "commune_code": hh["commune_code"].astype("string"),
        "people": hh["people"].astype(np.int64),
        "vulnerable": hh["vulnerable"].astype(np.int64),
        "must_move": mm["must_move"].to_numpy(),
        "reason_to_move": mm["reason_to_move"].to_numpy(),
        "shelter_id": pd.array(spread(shelter_id, None, object), dtype="string"),
        "route_id": spread(group, -1, np.int64),
        "travel_time_s": np.round(spread(travel_s, np.nan, np.float64), 1),
        "distance_m": np.round(spread(dist_m, np.nan, np.float64), 1),
        "departure": _to_times(start, spread(dep_s, np.nan, np.float64)),
        "arrival": _to_times(start, spread(arr_s, np.nan, np.float64)),
        "deadline": _to_times(start, spread(deadline_s, np.nan, np.float64)),
        "late": spread(late, False, bool),
        "unassigned_reason": pd.array(spread(reason, "", object), dtype="string"),
    })
    return out


def _shelters_frame(sh: pd.DataFrame, excluded: np.ndarray, households: pd.DataFrame) -> pd.DataFrame:
    assigned = households[households["shelter_id"].notna()]
    load = assigned.groupby("shelter_id")["people"].sum()
    count = assigned.groupby("shelter_id").size()
    ids = sh["shelter_id"].astype("string")
    return pd.DataFrame({
        "shelter_id": ids,
        "name": sh["name"].astype("string"),
        "kind": sh["kind"].astype("string") if "kind" in sh else pd.array([""] * len(sh), dtype="string"),
        "lon": sh["lon"].astype(np.float64), "lat": sh["lat"].astype(np.float64),
        "capacity": sh["capacity"].astype(np.int64),
        "load": load.reindex(ids.to_numpy()).fillna(0).astype(np.int64).to_numpy(),
        "households": count.reindex(ids.to_numpy()).fillna(0).astype(np.int64).to_numpy(),
        "usable": excluded == "",
        "excluded_reason": pd.array(excluded, dtype="string"),
    })


def _routes_frame(net: RoadNetwork, sh: pd.DataFrame, pairs: np.ndarray, offsets: np.ndarray,
                  edges: np.ndarray, res: sched.ScheduleResult, road_s: np.ndarray, road_m: np.ndarray,
                  access_s: np.ndarray, pair_of: np.ndarray, start: pd.Timestamp) -> gpd.GeoDataFrame:
    p = len(pairs)
    sh_id = sh["shelter_id"].to_numpy(dtype=object)
    start_ll = (np.column_stack([net.lon[pairs[:, 0]], net.lat[pairs[:, 0]]]) if p
                else np.zeros((0, 2)))
    end_ll = (np.column_stack([sh["lon"].to_numpy(np.float64)[pairs[:, 1]],
                               sh["lat"].to_numpy(np.float64)[pairs[:, 1]]]) if p else np.zeros((0, 2)))
    g = res.groups
    df = pd.DataFrame({
        "route_id": np.arange(p, dtype=np.int64),
        "origin_osmid": net.node_osmid[pairs[:, 0]] if p else np.zeros(0, np.int64),
        "shelter_id": pd.array(sh_id[pairs[:, 1]] if p else [], dtype="string"),
        "households": np.bincount(pair_of, minlength=p).astype(np.int64),
        "people": g["people"].to_numpy().astype(np.int64),
        "travel_time_s": np.round(road_s + access_s, 1),
        "distance_m": np.round(road_m, 1),
        "first_departure": _to_times(start, g["first_departure_s"].to_numpy()),
        "last_departure": _to_times(start, g["last_departure_s"].to_numpy()),
        "arrival": _to_times(start, g["arrival_s"].to_numpy()),
        "deadline": _to_times(start, g["deadline_s"].to_numpy()),
        "late": g["late"].to_numpy(bool),
    })
    return gpd.GeoDataFrame(df, geometry=_route_lines(net, offsets, edges, start_ll, end_ll), crs="EPSG:4326")


def _count(df: pd.DataFrame, codes: np.ndarray, column: str | None = None) -> np.ndarray:
    """Rows (or the sum of ``column``) per commune code, 0 where none, in the order of ``codes``."""
    by = df.groupby(df["commune_code"].astype(str))
    out = by.size() if column is None else by[column].sum()
    return out.reindex(codes).fillna(0).astype(np.int64).to_numpy()


def _communes_frame(region: Region, assessment: xr.Dataset, opt: PlanOptions, households: pd.DataFrame,
                    start: pd.Timestamp) -> pd.DataFrame:
    a = _assessment_frame(assessment)
    codes = region.communes["code"].astype(str).to_numpy()
    mv = households[households["must_move"]]
    ok = mv["shelter_id"].notna()
    sched_clear = sched.clearance_times(mv.loc[ok, "commune_code"].to_numpy(),
                                        (mv.loc[ok, "arrival"] - start).dt.total_seconds().to_numpy())
    onset = pd.DatetimeIndex(a["onset"].reindex(codes))
    out = pd.DataFrame({
        "commune_code": pd.array(codes, dtype="string"),
        "name": region.communes["name"].astype("string").to_numpy(),
        "level_max": a["level_max"].reindex(codes).fillna(0).astype(np.int64).to_numpy(),
        "onset": onset,
        "deadline": onset - pd.Timedelta(minutes=opt.safety_margin_minutes),
        "households_to_move": _count(mv, codes),
        "people_to_move": _count(mv, codes, "people"),
        "assigned": _count(mv[ok], codes),
        "unassigned": _count(mv[~ok], codes),
        "late": _count(mv[mv["late"]], codes),
        "clearance_time": _to_times(start, sched_clear.reindex(codes).to_numpy(np.float64)).to_numpy(),
    })
    return out


#: Mode of the vehicles that pick up people who need help to move (minibus: car roads).
ASSISTED_MODE = "car"


def _assisted_frame(region: Region, net: RoadNetwork, opt: PlanOptions, households: pd.DataFrame,
                    sh: pd.DataFrame, sh_node: np.ndarray, factor: np.ndarray | None,
                    closed: np.ndarray | None, start: pd.Timestamp) -> pd.DataFrame:
    """Vulnerable people of the households that must move, per commune centre (pickup by car)."""
    from scipy.sparse.csgraph import dijkstra

    cols = ["commune_code", "name", "households", "people", "vehicles", "centre_lon", "centre_lat",
            "shelter_id", "pickup_by", "arrival", "deadline", "reachable", "late"]
    mv = households[households["must_move"] & (households["vulnerable"] > 0)]
    if mv.empty:
        return pd.DataFrame({c: [] for c in cols})
    codes = np.unique(mv["commune_code"].astype(str).to_numpy())
    com = region.communes.set_index(region.communes["code"].astype(str)).loc[codes]
    cent = gpd.GeoSeries(com.geometry.values, crs="EPSG:4326").to_crs(net.crs).centroid.to_crs("EPSG:4326")
    car_graph = net.csr(ASSISTED_MODE, factor=factor, closed=closed)
    usable = paths.usable_nodes(car_graph.T.tocsr())
    c_node, _ = _snap(net, cent.x.to_numpy(), cent.y.to_numpy(), usable)
    # destination: the shelter holding most of the commune's vulnerable people
    dest = (mv[mv["shelter_id"].notna()].groupby(["commune_code", "shelter_id"])["vulnerable"].sum()
            .reset_index().sort_values(["commune_code", "vulnerable", "shelter_id"],
                                       ascending=[True, False, True])
            .drop_duplicates("commune_code").set_index("commune_code")["shelter_id"])
    dest = dest.reindex(codes)
    sh_index = pd.Series(np.arange(len(sh)), index=sh["shelter_id"].astype(str).to_numpy())
    s_idx = sh_index.reindex(dest.fillna("").astype(str).to_numpy()).to_numpy()
    drive = np.full(codes.size, np.nan)
    ok = (c_node >= 0) & ~np.isnan(s_idx)
    if ok.any():
        s_nodes = sh_node[s_idx[ok].astype(np.int64)]
        D = dijkstra(car_graph, directed=True, indices=c_node[ok])
        t = D[np.arange(ok.sum()), np.maximum(s_nodes, 0)]
        drive[ok] = np.where((s_nodes >= 0) & np.isfinite(t), t, np.nan)
    dl_s = (mv.groupby("commune_code")["deadline"].min() - start).dt.total_seconds().reindex(codes)
    out = sched.assisted_pickups(mv["commune_code"].to_numpy(), mv["vulnerable"].to_numpy(),
                                 dl_s.fillna(np.inf), pd.Series(drive, index=codes))
    out = out.set_index(out["commune_code"].astype(str))
    res = pd.DataFrame({
        "commune_code": pd.array(codes, dtype="string"),
        "name": com["name"].astype("string").to_numpy(),
        "households": out["households"].reindex(codes).to_numpy(np.int64),
        "people": out["people"].reindex(codes).to_numpy(np.int64),
        "vehicles": out["vehicles"].reindex(codes).to_numpy(np.int64),
        "centre_lon": np.round(net.lon[np.maximum(c_node, 0)], 6),
        "centre_lat": np.round(net.lat[np.maximum(c_node, 0)], 6),
        "shelter_id": pd.array(dest.to_numpy(dtype=object), dtype="string"),
        "pickup_by": _to_times(start, out["pickup_by_s"].reindex(codes).to_numpy(np.float64)).to_numpy(),
        "arrival": _to_times(start, out["arrival_s"].reindex(codes).to_numpy(np.float64)).to_numpy(),
        "deadline": _to_times(start, out["deadline_s"].reindex(codes).to_numpy(np.float64)).to_numpy(),
        "reachable": out["reachable"].reindex(codes).to_numpy(bool),
        "late": out["late"].reindex(codes).to_numpy(bool),
    })
    return res.sort_values(["pickup_by", "commune_code"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- permanent relocation


#: Susceptibility class that calls for permanent relocation (5 = very high,
#: ``ewarn.hazard_models.terrain.susceptibility_class``; Decision 18/2021 zoning maps).
RELOCATION_CLASS = 5


@dataclass
class RelocationPlan:
    """Households to resettle permanently and the sites they go to.

    Attributes
    ----------
    households : pandas.DataFrame
        One row per household on very-high susceptibility ground:
        ``household_id``, ``commune_code``, ``people``, ``vulnerable``,
        ``susceptibility``, ``reason_to_move`` (``very_high_susceptibility``),
        ``site_id`` (<NA> when none), ``travel_time_s``, ``distance_m``,
        ``unassigned_reason`` ("" when assigned).
    sites : pandas.DataFrame
        ``site_id``, ``name``, ``lon``, ``lat``, ``capacity``, ``load``,
        ``households``, ``usable``, ``excluded_reason``.
    communes : pandas.DataFrame
        ``commune_code``, ``name``, ``households``, ``people``, ``assigned``, ``unassigned``.
    min_class : int
    warnings : list of str
    """

    households: pd.DataFrame
    sites: pd.DataFrame
    communes: pd.DataFrame
    min_class: int = RELOCATION_CLASS
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts and unassigned by reason (JSON-ready)."""
        hh = self.households
        ok = hh["site_id"].notna()
        reasons = hh.loc[hh["unassigned_reason"] != "", "unassigned_reason"].value_counts()
        return {"min_class": self.min_class, "households": len(hh), "people": int(hh["people"].sum()),
                "assigned": int(ok.sum()), "unassigned": int((~ok).sum()),
                "unassigned_by_reason": {str(k): {"households": int(v), "vi": _REASON_LABELS.get(str(k), "")}
                                         for k, v in reasons.items()},
                "sites_over_capacity": int((self.sites["load"] > self.sites["capacity"]).sum()),
                "warnings": list(self.warnings)}


def _sites_table(region: Region, sites: pd.DataFrame | None) -> pd.DataFrame:
    if sites is None:
        sh = region.shelters
        kind = sh["kind"].astype(str) if "kind" in sh else pd.Series("", index=sh.index)
        sites = sh[kind == "resettlement"].rename(columns={"shelter_id": "site_id"})
    need = [c for c in ("site_id", "name", "lon", "lat", "capacity") if c not in sites.columns]
    if need:
        raise PlanInputError(f"resettlement sites lack column(s) {', '.join(need)}; give a table with "
                             "site_id, name, lon, lat, capacity (people)")
    out = sites[["site_id", "name", "lon", "lat", "capacity"]].reset_index(drop=True).copy()
    bad = ~(pd.to_numeric(out["capacity"], errors="coerce") >= 0)
    bad |= ~pd.to_numeric(out["lon"], errors="coerce").between(-180, 180)
    bad |= ~pd.to_numeric(out["lat"], errors="coerce").between(-90, 90)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise PlanInputError(f"resettlement site {out['site_id'].iloc[row]!r} (row {row + 1}): lon/lat "
                             "must be degrees and capacity a number of people >= 0; fix the site table")
    out["capacity"] = pd.to_numeric(out["capacity"]).astype(np.int64)
    out["lon"] = out["lon"].astype(np.float64)
    out["lat"] = out["lat"].astype(np.float64)
    return out


def _cell_values(grid: xr.DataArray, lon: np.ndarray, lat: np.ndarray, fill: int = 0) -> np.ndarray:
    r, in_r = _grid_index(grid["latitude"].to_numpy(), lat)
    c, in_c = _grid_index(grid["longitude"].to_numpy(), lon)
    vals = grid.transpose("latitude", "longitude").to_numpy()
    out = np.full(lon.shape, fill, dtype=np.int64)
    ok = in_r & in_c
    out[ok] = vals[r[ok], c[ok]]
    return out


def permanent_relocation(region: Region, *, susceptibility: xr.DataArray | None = None,
                         sites: pd.DataFrame | None = None, network: RoadNetwork | None = None,
                         options: PlanOptions | None = None, cache_dir: Path | str | None = None,
                         terrain_cache_dir: Path | str | None = None, min_class: int = RELOCATION_CLASS,
                         max_travel_minutes: float | None = None) -> RelocationPlan:
    """Households on very-high landslide susceptibility ground and the resettlement sites they go to.

    Whatever the forecast: a household whose terrain cell has susceptibility
    class ``>= min_class`` (5 = very high,
    :func:`ewarn.hazard_models.terrain.susceptibility_class`) should be
    relocated for good — the seed's goal of relocating every household in a
    high-risk place. They are assigned to resettlement sites by road travel
    time under the sites' capacities, with the same optimal assignment as the
    evacuation (:mod:`ewarn.routing.assign`); sites on such ground are not used.

    Parameters
    ----------
    region : ewarn.region.Region
    susceptibility : xarray.DataArray, optional
        Class 1..5 on ascending (latitude, longitude); default the
        ``susceptibility`` of :func:`ewarn.hazard_models.terrain.terrain_for_region`.
    sites : pandas.DataFrame, optional
        ``site_id, name, lon, lat, capacity``; default the region's shelters of
        kind ``resettlement``.
    network : RoadNetwork, optional
        Default the region's (:func:`ewarn.routing.graph.region_network`).
    options : PlanOptions, optional
        Travel mode, candidate sites, snapping distance, planner closures.
    cache_dir, terrain_cache_dir : path, optional
        Road network and terrain caches.
    min_class : int
        Lowest class to relocate (default 5).
    max_travel_minutes : float, optional
        Farthest site [min]; default ``options.max_travel_minutes``.

    Returns
    -------
    RelocationPlan

    Raises
    ------
    PlanInputError
        No terrain and no ``susceptibility`` given, or a malformed site table.
    """
    opt = options or PlanOptions()
    warns: list[str] = []
    if susceptibility is None:
        if region.terrain is None:
            raise PlanInputError(f"region {region.name} has no terrain, so no susceptibility; add a DEM "
                                 "(terrain = \"terrain.nc\" in region.toml) or pass susceptibility=")
        from ewarn.hazard_models.terrain import terrain_for_region

        tc = (Path(terrain_cache_dir) if terrain_cache_dir is not None
              else Path(region.folder) / ".cache" / "terrain")
        susceptibility = terrain_for_region(region, tc)["susceptibility"]
    if not {"latitude", "longitude"} <= set(susceptibility.dims):
        raise PlanInputError("susceptibility must be on (latitude, longitude); give the 'susceptibility' "
                             "variable of ewarn.hazard_models.terrain.terrain_for_region")
    hh = region.households.reset_index(drop=True)
    cls = _cell_values(susceptibility, hh["lon"].to_numpy(np.float64), hh["lat"].to_numpy(np.float64))
    sel = np.flatnonzero(cls >= min_class)
    st = _sites_table(region, sites)
    if st.empty:
        warns.append("no resettlement site: give sites (site_id, name, lon, lat, capacity) or shelters of "
                     "kind 'resettlement'")
    net = network if network is not None else region_network(region, cache_dir)
    closed, factor, _ = _edge_effects(net, None, opt)
    graph_to, entry_edge = net.csr_with_edges(opt.mode, factor=factor, closed=closed, reverse=True)
    usable = paths.usable_nodes(graph_to)
    walk_kmh = _walk_kmh()
    excl = np.full(len(st), "", dtype=object)
    s_cls = _cell_values(susceptibility, st["lon"].to_numpy(), st["lat"].to_numpy())
    excl[s_cls >= min_class] = "very_high_susceptibility"
    s_node, s_dist = _snap(net, st["lon"].to_numpy(), st["lat"].to_numpy(), usable)
    excl[(excl == "") & ~(s_dist <= opt.max_snap_m)] = "no_road_nearby"
    s_ok = excl == ""
    s_walk = paths.walk_time_s(np.where(s_ok, s_dist, 0.0), walk_kmh)
    h_node, h_dist = _snap(net, hh["lon"].to_numpy()[sel], hh["lat"].to_numpy()[sel], usable)
    on_road = h_dist <= opt.max_snap_m
    h_node = np.where(on_road, h_node, -1)
    h_walk = paths.walk_time_s(np.where(on_road, h_dist, 0.0), walk_kmh)
    limit = (max_travel_minutes if max_travel_minutes is not None else opt.max_travel_minutes) * 60.0
    people = hh["people"].to_numpy(np.int64)[sel]
    choice, reason, travel = _assign(graph_to, h_node, h_walk, np.where(s_ok, s_node, -1), s_walk,
                                     people, st["capacity"].to_numpy(np.int64) * s_ok, limit,
                                     opt.candidate_shelters,
                                     assignment.priority_weight(hh["vulnerable"].to_numpy(np.int64)[sel]))
    reason[~on_road] = _off_road_reason(net, hh["lon"].to_numpy()[sel][~on_road],
                                        hh["lat"].to_numpy()[sel][~on_road], opt.max_snap_m)
    if st.empty or not s_ok.any():
        reason[:] = "no_site"
    pos = np.flatnonzero(choice >= 0)
    # road distance along each (origin node, site) route
    s_node_ok = np.where(s_ok, s_node, -1)
    pairs, pair_of = (np.unique(np.stack([h_node[pos], choice[pos]], axis=1), axis=0, return_inverse=True)
                      if pos.size else (np.zeros((0, 2), np.int64), np.zeros(0, np.int64)))
    pair_of = np.asarray(pair_of).ravel()
    offsets, edges = paths.route_edges(graph_to, entry_edge, s_node_ok, pairs[:, 0], pairs[:, 1],
                                       limit_s=limit)
    road_m = paths.route_totals(offsets, edges, net.edge_length_m)
    dist = np.full(sel.size, np.nan)
    dist[pos] = h_dist[pos] + road_m[pair_of] + s_dist[choice[pos]]
    site_id = np.full(sel.size, None, dtype=object)
    site_id[pos] = st["site_id"].astype(str).to_numpy(dtype=object)[choice[pos]]
    households = pd.DataFrame({
        "household_id": hh["household_id"].astype("string").to_numpy()[sel],
        "commune_code": hh["commune_code"].astype("string").to_numpy()[sel],
        "people": people, "vulnerable": hh["vulnerable"].to_numpy(np.int64)[sel],
        "susceptibility": cls[sel],
        "reason_to_move": pd.array(["very_high_susceptibility"] * sel.size, dtype="string"),
        "site_id": pd.array(site_id, dtype="string"),
        "travel_time_s": np.round(travel, 1),
        "distance_m": np.round(dist, 1),
        "unassigned_reason": pd.array(reason, dtype="string"),
    })
    assigned = households[households["site_id"].notna()]
    ids = st["site_id"].astype(str).to_numpy()
    sites_out = st.assign(
        load=assigned.groupby("site_id")["people"].sum().reindex(ids).fillna(0).astype(np.int64).to_numpy(),
        households=assigned.groupby("site_id").size().reindex(ids).fillna(0).astype(np.int64).to_numpy(),
        usable=s_ok, excluded_reason=pd.array(excl, dtype="string"))
    codes = region.communes["code"].astype(str).to_numpy()
    communes = pd.DataFrame({
        "commune_code": pd.array(codes, dtype="string"),
        "name": region.communes["name"].astype("string").to_numpy(),
        "households": _count(households, codes),
        "people": _count(households, codes, "people"),
        "assigned": _count(assigned, codes),
    })
    communes["unassigned"] = communes["households"] - communes["assigned"]
    return RelocationPlan(households=households, sites=sites_out, communes=communes, min_class=min_class,
                          warnings=warns)


def write_relocation(plan: RelocationPlan, folder: Path | str) -> Path:
    """Write a relocation plan into ``folder``, all or nothing.

    Files: ``relocation.csv``, ``sites.csv``, ``communes.csv``, ``summary.json``.
    """
    files = {"relocation.csv": _csv(plan.households), "sites.csv": _csv(plan.sites),
             "communes.csv": _csv(plan.communes),
             "summary.json": json.dumps(plan.summary(), ensure_ascii=False, indent=2)}
    return _write_folder(Path(folder), files)
