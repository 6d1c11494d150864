"""Roads against the hazard: which edges are closed or slowed, and why.

A road is closed where it crosses a flash-flood-prone stream whose threat
ratio (forecast rain / flash-flood guidance) reaches 1 in the planning
window, and closed or slowed where it runs through a cell whose landslide
index is high (:func:`hazard_closures`). Planners add their own closures by
OSM way id or by polygon (:func:`planner_closures`); :func:`combine` merges
any number of them. The result, :class:`EdgeHazards`, is one value per edge
row of a :class:`~ewarn.routing.graph.RoadNetwork`, ready for
``RoadNetwork.csr(mode, factor=h.factor, closed=h.closed)``.

Each affected edge keeps its reason as short codes (``;``-separated when
several): ``flash_flood_stream``, ``landslide``, ``planner:way <id>``,
``planner:polygon``; :func:`reason_label` gives the Vietnamese (or English)
text for people.

How a polyline meets the grid
    Every polyline is densified to points at most half a cell apart (in each
    axis) and each point is looked up in the grid, all edges at once. A road
    is affected when any of its points falls in a flagged cell. A road that
    only clips the corner of a cell for less than half a cell may be missed;
    a road that passes beside a stream without entering its cells is open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import shapely
import xarray as xr

from ewarn.errors import EwarnError
from ewarn.routing.graph import RoadNetwork, RoadNetworkError

__all__ = [
    "REASONS",
    "EdgeHazards",
    "HazardGridError",
    "combine",
    "edge_cells",
    "hazard_closures",
    "planner_closures",
    "reason_label",
]

#: Reason codes and their text for people (Vietnamese, English).
REASONS: dict[str, tuple[str, str]] = {
    "flash_flood_stream": ("Qua suối có nguy cơ lũ quét (mưa dự báo ≥ lượng mưa gây lũ quét, FFG ≥ 1)",
                           "Crosses a stream at risk of flash flood (forecast rain ≥ flash-flood guidance)"),
    "landslide": ("Qua vùng có nguy cơ sạt lở đất cao", "Runs through an area of high landslide risk"),
    "planner:way": ("Đường bị đóng theo quyết định của cán bộ lập kế hoạch (OSM way {id})",
                    "Closed by the planner (OSM way {id})"),
    "planner:polygon": ("Đường trong vùng bị phong tỏa theo quyết định của cán bộ lập kế hoạch",
                        "Inside an area closed by the planner"),
}
#: Variables of the hazard grid this module reads (see ``ewarn.hazard_models.cells``).
FLOOD_VAR = "stream_threatened"
LANDSLIDE_VAR = "landslide_triggered"
#: Sample spacing along a polyline, as a fraction of the grid cell size in each axis.
SAMPLE_FRACTION = 0.5


class HazardGridError(EwarnError):
    """The hazard grid lacks a variable or coordinate that road closures need."""


@dataclass(frozen=True, eq=False)
class EdgeHazards:
    """Closures and slow-downs of the edge rows of one road network.

    Attributes
    ----------
    closed : numpy.ndarray
        bool (m,): the edge may not be used.
    factor : numpy.ndarray
        float64 (m,) ≥ 1: travel-time multiplier of open edges (1 = unaffected).
    reason : numpy.ndarray
        object (m,) of str: ``;``-separated reason codes, ``""`` when unaffected.
    """

    closed: np.ndarray
    factor: np.ndarray
    reason: np.ndarray

    @classmethod
    def none(cls, n_edges: int) -> EdgeHazards:
        """No closure and no slow-down on ``n_edges`` edges."""
        return cls(np.zeros(n_edges, bool), np.ones(n_edges), np.full(n_edges, "", dtype=object))

    @property
    def n_edges(self) -> int:
        """Number of edge rows."""
        return int(self.closed.shape[0])

    @property
    def slowed(self) -> np.ndarray:
        """bool (m,): open edges with a factor above 1."""
        return ~self.closed & (self.factor > 1.0)

    def to_frame(self, net: RoadNetwork, *, language: Literal["vi", "en"] = "vi") -> pd.DataFrame:
        """The affected edges: ``edge, way_id, highway, u_osmid, v_osmid, closed, factor, reason, label``."""
        idx = np.flatnonzero(self.closed | (self.factor > 1.0) | (self.reason != ""))
        reasons = self.reason[idx]
        uniq, inv = np.unique(reasons.astype(str), return_inverse=True)
        labels = np.asarray([reason_label(r, language) for r in uniq], dtype=object)[inv]
        return pd.DataFrame({
            "edge": idx.astype(np.int64), "way_id": net.edge_way[idx], "highway": net.edge_highway[idx],
            "u_osmid": net.node_osmid[net.edge_u[idx]], "v_osmid": net.node_osmid[net.edge_v[idx]],
            "closed": self.closed[idx], "factor": self.factor[idx], "reason": reasons, "label": labels,
        })


def reason_label(reason: str, language: Literal["vi", "en"] = "vi") -> str:
    """Text for people of a reason string (codes joined by ``;``; ``"planner:way 123"`` keeps its id)."""
    col = 0 if language == "vi" else 1
    out = []
    for code in (c.strip() for c in str(reason).split(";")):
        if not code:
            continue
        if code.startswith("planner:way "):
            out.append(REASONS["planner:way"][col].format(id=code.split(" ", 1)[1]))
        elif code in REASONS:
            out.append(REASONS[code][col])
        else:
            out.append(code)
    return "; ".join(out)


# --------------------------------------------------------------------------- grid sampling


def _axis(values: np.ndarray, name: str) -> tuple[np.ndarray, float, float]:
    """Cell boundaries between centres (for searchsorted), outer limits [deg]."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all() or (v.size > 1 and (np.diff(v) <= 0).any()):
        raise HazardGridError(f"hazard grid: coordinate '{name}' must be finite and strictly ascending; "
                              "sort the grid (ds.sortby) before computing road closures")
    if v.size == 1:
        return np.empty(0), v[0] - 0.5, v[0] + 0.5  # one cell: assume a 1-degree cell
    mids = 0.5 * (v[1:] + v[:-1])
    return mids, v[0] - 0.5 * (v[1] - v[0]), v[-1] + 0.5 * (v[-1] - v[-2])


def edge_cells(net: RoadNetwork, latitude: np.ndarray, longitude: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid cells every edge polyline passes through (sampled at half a cell).

    Parameters
    ----------
    net : RoadNetwork
    latitude, longitude : numpy.ndarray
        Ascending cell-centre coordinates of the grid [deg].

    Returns
    -------
    edge, i, j : numpy.ndarray
        int64, one row per (edge, sample point) inside the grid: the edge row,
        the latitude index and the longitude index of the cell (duplicates
        possible).
    """
    lat_mids, lat_lo, lat_hi = _axis(latitude, "latitude")
    lon_mids, lon_lo, lon_hi = _axis(longitude, "longitude")
    dy = np.min(np.diff(latitude)) if len(latitude) > 1 else 1.0
    dx = np.min(np.diff(longitude)) if len(longitude) > 1 else 1.0
    off = net.edge_geometry_offsets
    coords = net.edge_coords
    owner = np.repeat(np.arange(net.n_edges, dtype=np.int64), np.diff(off))
    k = np.flatnonzero(owner[1:] == owner[:-1])  # segment k: coords[k] → coords[k+1]
    a, b = coords[k], coords[k + 1]
    span = np.maximum(np.abs(b[:, 0] - a[:, 0]) / dx, np.abs(b[:, 1] - a[:, 1]) / dy)
    n_sub = np.maximum(np.ceil(span / SAMPLE_FRACTION).astype(np.int64), 1)
    seg = np.repeat(np.arange(k.size), n_sub + 1)
    step = np.arange(seg.size) - np.repeat(np.cumsum(n_sub + 1) - (n_sub + 1), n_sub + 1)
    t = (step / n_sub[seg])[:, None]
    pts = a[seg] + t * (b[seg] - a[seg])
    edge = owner[k][seg]
    inside = (pts[:, 1] >= lat_lo) & (pts[:, 1] <= lat_hi) & (pts[:, 0] >= lon_lo) & (pts[:, 0] <= lon_hi)
    pts, edge = pts[inside], edge[inside]
    i = np.searchsorted(lat_mids, pts[:, 1])
    j = np.searchsorted(lon_mids, pts[:, 0])
    return edge, i.astype(np.int64), j.astype(np.int64)


def _flag(cells: xr.Dataset, name: str) -> np.ndarray:
    if name not in cells.data_vars:
        raise HazardGridError(f"hazard grid: variable '{name}' is missing; compute the grid with "
                              "ewarn.hazard_models.cells.hazard_cells (it has stream_threatened and "
                              "landslide_triggered)")
    da = cells[name]
    if set(da.dims) != {"latitude", "longitude"}:
        raise HazardGridError(f"hazard grid: variable '{name}' has dims {da.dims}; it must be on "
                              "(latitude, longitude)")
    v = np.asarray(da.transpose("latitude", "longitude").values)
    if v.dtype.kind == "f":
        v = np.nan_to_num(v, nan=0.0)
    return v != 0


def _mark(edges: np.ndarray, n_edges: int) -> np.ndarray:
    hit = np.zeros(n_edges, dtype=bool)
    hit[edges] = True
    return hit


def hazard_closures(net: RoadNetwork, cells: xr.Dataset, *, landslide: Literal["close", "slow"] = "close",
                    slow_factor: float = 3.0, flood: Literal["close", "slow"] = "close") -> EdgeHazards:
    """Edges closed or slowed by the forecast hazard of the planning window.

    Parameters
    ----------
    net : RoadNetwork
    cells : xarray.Dataset
        Hazard grid on ascending (latitude, longitude), EPSG:4326, with bool
        ``stream_threatened`` (flash-flood-prone stream cells whose FFG threat
        ratio reaches 1 in the window) and ``landslide_triggered`` (cells whose
        landslide index reaches the "high" class in the window); see
        ``ewarn.hazard_models.cells.hazard_cells``.
    landslide, flood : {"close", "slow"}
        What a flagged cell does to the roads through it (settings
        ``[routing] landslide_roads``; floods close by default).
    slow_factor : float
        Travel-time factor of a slowed road (≥ 1; settings ``[routing] slow_factor``).

    Returns
    -------
    EdgeHazards
        Reasons ``flash_flood_stream`` and/or ``landslide``.

    Notes
    -----
    The rule (close a road where it crosses a threatened stream; close or
    slow it through a high landslide cell) is the routing issue's (#5); it
    matches the usual Vietnamese flash-flood advice not to cross streams,
    fords and spillways (ngầm, tràn) in a flood [unverified]. Which cells
    are threatened is the hazard model's (SCIENCE.md). The slow-down factor
    is a planner's setting, not a measured value.
    """
    for name, value in (("landslide", landslide), ("flood", flood)):
        if value not in ("close", "slow"):
            raise ValueError(f"{name} must be 'close' or 'slow', got {value!r}")
    if not (np.isfinite(slow_factor) and slow_factor >= 1.0):
        raise ValueError(f"slow_factor must be a number ≥ 1, got {slow_factor!r}")
    for coord in ("latitude", "longitude"):
        if coord not in cells.coords:
            raise HazardGridError(f"hazard grid: coordinate '{coord}' is missing; the grid must be on "
                                  "(latitude, longitude) in degrees")
    flood_grid = _flag(cells, FLOOD_VAR)
    slide_grid = _flag(cells, LANDSLIDE_VAR)
    edge, i, j = edge_cells(net, cells["latitude"].values, cells["longitude"].values)
    m = net.n_edges
    by_flood = _mark(edge[flood_grid[i, j]], m)
    by_slide = _mark(edge[slide_grid[i, j]], m)
    closed = (by_flood & (flood == "close")) | (by_slide & (landslide == "close"))
    slowed = (by_flood & (flood == "slow")) | (by_slide & (landslide == "slow"))
    factor = np.where(slowed & ~closed, float(slow_factor), 1.0)
    reason = np.full(m, "", dtype=object)
    reason[by_flood] = "flash_flood_stream"
    reason[by_slide & ~by_flood] = "landslide"
    reason[by_slide & by_flood] = "flash_flood_stream;landslide"
    return EdgeHazards(closed=closed, factor=factor, reason=reason)


# --------------------------------------------------------------------------- planners' closures


def planner_closures(net: RoadNetwork, *, way_ids: Iterable[int] = (),
                     polygons: Sequence[shapely.Geometry] | Iterable[shapely.Geometry] = (),
                     strict: bool = True) -> EdgeHazards:
    """Edges a planner closes: every edge of the given OSM ways, every edge touching a polygon.

    Parameters
    ----------
    net : RoadNetwork
    way_ids : iterable of int
        OSM way ids (all edges osmnx built from the way, both directions).
    polygons : iterable of shapely geometries, or a GeoSeries/GeoDataFrame
        Areas closed [lon/lat, EPSG:4326; a GeoSeries in another CRS is converted].
    strict : bool
        Raise when a way id is not in the network (a typo would otherwise
        silently leave the road open).

    Returns
    -------
    EdgeHazards
        Reasons ``planner:way <id>`` and ``planner:polygon``.

    Raises
    ------
    RoadNetworkError
        ``strict`` and a way id not in the network (the message lists them).
    """
    m = net.n_edges
    out = EdgeHazards.none(m)
    ids = np.unique(np.asarray(list(way_ids), dtype=np.int64))
    if ids.size:
        hit = np.isin(net.way_ids, ids)
        missing = np.setdiff1d(ids, net.way_ids[hit])
        if strict and missing.size:
            raise RoadNetworkError(
                "planner closures: OSM way(s) " + ", ".join(map(str, missing[:20].tolist()))
                + " are not in the road network; check the ids (openstreetmap.org/way/<id>) or "
                "close the road by polygon")
        pairs = pd.DataFrame({"edge": net.way_edges[hit], "way": net.way_ids[hit]}).drop_duplicates("edge")
        out.closed[pairs["edge"].to_numpy()] = True
        out.reason[pairs["edge"].to_numpy()] = ("planner:way " + pairs["way"].astype(str)).to_numpy(object)
    if isinstance(polygons, shapely.Geometry):
        polygons = [polygons]
    if hasattr(polygons, "to_crs") and getattr(polygons, "crs", None) is not None:
        polygons = polygons.to_crs(4326)
    if hasattr(polygons, "geometry"):
        polygons = polygons.geometry
    polys = np.asarray(list(polygons), dtype=object)
    if polys.size:
        if not all(isinstance(p, shapely.Geometry) for p in polys):
            raise ValueError("polygons must be shapely geometries in lon/lat (EPSG:4326)")
        owner = np.repeat(np.arange(m), np.diff(net.edge_geometry_offsets))
        lines = shapely.linestrings(net.edge_coords, indices=owner)
        _, edges = shapely.STRtree(lines).query(polys, predicate="intersects")
        edges = np.unique(edges)
        out.closed[edges] = True
        prev = out.reason[edges]
        out.reason[edges] = np.where(prev == "", "planner:polygon", prev + ";planner:polygon")
    return out


def combine(*hazards: EdgeHazards) -> EdgeHazards:
    """Merge closures: closed if any closes, the largest slow-down factor, every reason once."""
    if not hazards:
        raise ValueError("combine needs at least one EdgeHazards")
    m = hazards[0].n_edges
    if any(h.n_edges != m for h in hazards):
        raise ValueError("combine: all EdgeHazards must belong to the same road network (same edge count)")
    closed = np.logical_or.reduce([h.closed for h in hazards])
    factor = np.maximum.reduce([h.factor for h in hazards])
    reason = hazards[0].reason.copy()
    for h in hazards[1:]:
        both = np.flatnonzero((reason != "") & (h.reason != ""))
        only = (reason == "") & (h.reason != "")
        reason[only] = h.reason[only]
        # rows with reasons on both sides are few: join their codes without repeats
        reason[both] = [";".join(dict.fromkeys([*a.split(";"), *b.split(";")]))
                        for a, b in zip(reason[both], h.reason[both], strict=True)]
    return EdgeHazards(closed=closed, factor=factor, reason=reason)
