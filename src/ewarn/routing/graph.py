"""The road network of a region as compact arrays, with travel times per mode.

An osmnx ``MultiDiGraph`` (from OSM XML, GraphML, or fetched once from
OpenStreetMap) becomes a :class:`RoadNetwork`: node ids and coordinates
(lon/lat and metres in the region's UTM zone), one row per directed edge with
its OSM way, highway class, length, travel time per mode and real polyline.
Shortest paths run on the scipy CSR matrices it builds (:meth:`RoadNetwork.csr`),
never on networkx.

Building the arrays from OSM takes osmnx many seconds for a province, so the
network is cached as one ``.npz`` file keyed by the SHA-256 of the source file,
the speeds table and :data:`CACHE_VERSION`; a cached load reads a few arrays.

One-way streets
    ``osmnx.graph_from_xml(bidirectional=False)`` keeps a one-way road as one
    directed edge (OSM ``oneway=yes|-1``, roundabouts). One-way rules bind
    vehicles, not pedestrians: for every one-way edge a REVERSE row is added
    whose time is finite for ``walk`` only (``inf`` for motorbike and car);
    :attr:`RoadNetwork.edge_walk_reverse` marks those rows.

Speeds
    ``tables/speeds.toml`` gives km/h per highway class and mode (Vietnamese
    defaults with their sources); ``maxspeed`` tags cap motorbike and car
    speeds; ``tracktype`` sets the car speed on tracks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from pyproj import CRS, Transformer
from scipy.spatial import cKDTree

from ewarn.errors import EwarnError
from ewarn.hazard_models.tables import TableReader, load_cached, provenance_problems

if TYPE_CHECKING:
    from ewarn.region import Region

__all__ = [
    "CACHE_VERSION",
    "MODES",
    "RoadNetwork",
    "RoadNetworkError",
    "SpeedTable",
    "load_network",
    "network_from_arrays",
    "network_from_graph",
    "parse_maxspeed",
    "read_speeds",
    "region_network",
    "utm_crs",
]

log = logging.getLogger(__name__)

#: Travel modes, in the order of the speeds table's columns.
MODES: tuple[str, ...] = ("walk", "motorbike", "car")
#: Bump when the cached arrays change meaning; old cache files are then ignored.
CACHE_VERSION = 1
#: The shipped speeds table.
SPEEDS_FILE = Path(__file__).resolve().parent / "tables" / "speeds.toml"
#: Smallest travel time of an edge [s]: scipy.sparse.csgraph would treat a stored
#: zero weight as a missing edge in some conversions; 1 ms changes no route.
MIN_EDGE_TIME_S = 1e-3
#: OSM way tags kept by osmnx when it reads a file (its defaults plus ``tracktype``).
_EXTRA_WAY_TAGS = ("tracktype",)
#: km per mile (maxspeed tags in mph).
_KM_PER_MILE = 1.609344


class RoadNetworkError(EwarnError):
    """A road network cannot be read, built or used; the message says what to do."""


# --------------------------------------------------------------------------- speeds


@dataclass(frozen=True)
class SpeedTable:
    """Speeds [km/h] per highway class and mode, as read from ``speeds.toml``.

    Attributes
    ----------
    classes : tuple of str
        Highway classes with a row.
    kmh : numpy.ndarray
        float64 (len(classes), len(MODES)); 0 = the mode may not use the class.
    tracktype_car : dict
        Car speed on ``highway=track`` by ``tracktype`` [km/h].
    default_class : str
        Row used for classes not listed (``"road"``).
    checksum : str
        SHA-256 of the file (part of the cache key).
    """

    classes: tuple[str, ...]
    kmh: np.ndarray
    tracktype_car: dict[str, float]
    default_class: str
    checksum: str

    def speeds_of(self, highway: np.ndarray, mode: str) -> np.ndarray:
        """Speed [km/h] of ``mode`` for every highway class in ``highway`` (``_link`` → base class)."""
        inv, uniq = pd.factorize(np.asarray(highway, dtype=object))  # hashing; a few distinct classes
        base = [str(h).lower().strip().removesuffix("_link") for h in uniq]
        row = pd.Index(self.classes).get_indexer(base)
        row = np.where(row < 0, self.classes.index(self.default_class), row)
        return self.kmh[row[inv], MODES.index(mode)]


def _parse_speeds(path: Path) -> SpeedTable:
    t = TableReader(path)
    t.section("meta")
    classes = t.doc.get("classes")
    names: list[str] = []
    rows: list[list[float]] = []
    if not isinstance(classes, dict) or not classes:
        t.problem("missing; give one [classes.<highway>] table per OSM highway class", "classes")
    else:
        for name, sec in classes.items():
            where = f"classes.{name}"
            if not isinstance(sec, dict):
                t.problem("must be a table with walk, motorbike, car [km/h]", where)
                continue
            t.problems.extend(provenance_problems(sec, t.file, f"[{where}]"))
            names.append(str(name))
            rows.append([t.number(sec, where, m, 0.0, 200.0) for m in MODES])
    if "road" not in names:
        t.problem("missing; [classes.road] is used for classes not listed", "classes.road")
    track = t.section("tracktype")
    grades = {f"grade{g}": t.number(track, "tracktype", f"grade{g}", 0.0, 200.0) for g in range(1, 6)}
    t.done()
    return SpeedTable(classes=tuple(names), kmh=np.asarray(rows, dtype=np.float64), tracktype_car=grades,
                      default_class="road", checksum=hashlib.sha256(path.read_bytes()).hexdigest())


def read_speeds(path: Path | str | None = None) -> SpeedTable:
    """Read a speeds table (the shipped one when ``path`` is None); cached per file and mtime.

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Listing every wrong row (file, row, field and the fix).
    """
    return load_cached(_parse_speeds, path, SPEEDS_FILE)


def parse_maxspeed(values: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """OSM ``maxspeed`` tags as km/h (the smallest number when several; NaN when none).

    Parameters
    ----------
    values : array-like
        Tag values: ``"50"``, ``"30 mph"``, ``"50;60"``, lists from osmnx
        simplification (``['40', '60']``), None/NaN, or words (``"VN:urban"``,
        ``"walk"``) that carry no number (NaN).

    Returns
    -------
    numpy.ndarray
        float64 [km/h].

    Notes
    -----
    Units follow the OSM wiki, Key:maxspeed (km/h unless ``mph`` is given).
    """
    s = pd.Series(list(values) if not isinstance(values, pd.Series) else values.to_list(), dtype=object)
    text = s.where(s.notna(), "").astype(str)
    found = text.str.extractall(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<mph>mph)?")
    out = np.full(len(s), np.nan)
    if len(found):
        kmh = found["num"].astype(float) * np.where(found["mph"].notna(), _KM_PER_MILE, 1.0)
        mins = kmh.groupby(level=0).min()
        out[mins.index.to_numpy()] = mins.to_numpy()
    out[out <= 0] = np.nan
    return out


# --------------------------------------------------------------------------- the network


def utm_crs(lon: np.ndarray, lat: np.ndarray) -> str:
    """The WGS 84 UTM zone of the points' bounding-box centre, as ``"EPSG:326zz"``/``"EPSG:327zz"``.

    Notes
    -----
    Uses ``pyproj.database.query_utm_crs_info`` (the zone whose area of use
    contains the centre, so the Norway/Svalbard exceptions are right).
    """
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    if lon.size == 0:
        raise RoadNetworkError("the road network has no nodes; give a road file with roads in it")
    cx = float((np.nanmin(lon) + np.nanmax(lon)) / 2)
    cy = float((np.nanmin(lat) + np.nanmax(lat)) / 2)
    info = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(cx, cy, cx, cy))
    if info:
        return f"{info[0].auth_name}:{info[0].code}"
    zone = int((cx + 180.0) // 6.0) % 60 + 1  # fallback: the plain 6° zone
    return f"EPSG:{(32600 if cy >= 0 else 32700) + zone}"


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """A directed road network as flat arrays (see the module docstring).

    Edges are rows ``0..m-1``; two-way roads have two rows (one per
    direction); one-way roads one row plus a walk-only reverse row.
    """

    node_osmid: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray
    y: np.ndarray
    crs: str
    edge_u: np.ndarray
    edge_v: np.ndarray
    edge_way: np.ndarray
    edge_highway: np.ndarray
    edge_length_m: np.ndarray
    edge_time_s: dict[str, np.ndarray]
    edge_geometry_offsets: np.ndarray
    edge_coords: np.ndarray
    source_checksum: str
    #: bool (m,): the road is one-way for vehicles (OSM oneway / roundabout).
    edge_oneway: np.ndarray
    #: bool (m,): the row is the pedestrian reverse of a one-way edge (walk only).
    edge_walk_reverse: np.ndarray
    #: float64 (m,): the maxspeed tag [km/h], NaN when absent.
    edge_maxspeed_kmh: np.ndarray
    #: int64 (k,), (k,): every OSM way id behind each edge (osmnx merges ways) and its edge row.
    way_ids: np.ndarray
    way_edges: np.ndarray

    MODES: ClassVar[tuple[str, ...]] = MODES

    def __repr__(self) -> str:
        return (f"RoadNetwork({self.n_nodes} nodes, {self.n_edges} edges, crs={self.crs}, "
                f"source={self.source_checksum[:12]})")

    # ------------------------------------------------------------------ sizes

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.node_osmid.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of directed edge rows."""
        return int(self.edge_u.shape[0])

    def _check_mode(self, mode: str) -> None:
        if mode not in self.edge_time_s:
            raise RoadNetworkError(f"unknown travel mode {mode!r}; use one of {', '.join(self.edge_time_s)}")

    def _edge_mask(self, name: str, a: np.ndarray | None, dtype: type) -> np.ndarray | None:
        if a is None:
            return None
        a = np.asarray(a, dtype=dtype)
        if a.shape != (self.n_edges,):
            raise ValueError(f"{name} must have one value per edge ({self.n_edges}), got shape {a.shape}")
        return a

    # ------------------------------------------------------------------ matrices

    def edge_times(self, mode: str, *, factor: np.ndarray | None = None,
                   closed: np.ndarray | None = None) -> np.ndarray:
        """Travel time of every edge row for ``mode`` [s]: ``inf`` where not allowed or ``closed``."""
        self._check_mode(mode)
        t = self.edge_time_s[mode]
        f = self._edge_mask("factor", factor, np.float64)
        c = self._edge_mask("closed", closed, bool)
        if f is not None:
            t = t * f
        if c is not None:
            t = np.where(c, np.inf, t)
        return t

    def csr_with_edges(self, mode: str, *, factor: np.ndarray | None = None, closed: np.ndarray | None = None,
                       reverse: bool = False, weight: Literal["time", "length"] = "time"
                       ) -> tuple[sp.csr_matrix, np.ndarray]:
        """The travel-time (or length) matrix of ``mode`` and the edge row behind each stored entry.

        Parameters
        ----------
        mode : {"walk", "motorbike", "car"}
        factor : numpy.ndarray, optional
            float (m,): multiplies edge times (hazard slow-downs).
        closed : numpy.ndarray, optional
            bool (m,): edges removed.
        reverse : bool
            The transposed graph (entry (v, u) for edge u→v): shortest paths
            FROM a node in it are paths TO that node in the road network.
        weight : {"time", "length"}
            Entries in seconds (times ``factor``) or in metres (the edges the
            mode may use and that are not closed; ``factor`` ignored).

        Returns
        -------
        matrix : scipy.sparse.csr_matrix
            (n, n) float64 travel time [s] or length [m]; parallel edges keep
            the smallest; self-loops and unusable edges are absent; sorted
            indices (canonical CSR).
        edges : numpy.ndarray
            int64, aligned with ``matrix.data``: the edge row chosen.
        """
        t = self.edge_times(mode, factor=factor, closed=closed)
        if weight == "length":
            t = np.where(np.isfinite(t), self.edge_length_m, np.inf)
        elif weight != "time":
            raise ValueError(f"weight must be 'time' or 'length', got {weight!r}")
        keep = np.isfinite(t) & (self.edge_u != self.edge_v)
        idx = np.flatnonzero(keep)
        r, c = (self.edge_v, self.edge_u) if reverse else (self.edge_u, self.edge_v)
        r, c, w = r[idx].astype(np.int64), c[idx].astype(np.int64), np.maximum(t[idx], MIN_EDGE_TIME_S)
        order = np.lexsort((w, c, r))
        r, c, w, idx = r[order], c[order], w[order], idx[order]
        first = np.ones(r.shape[0], dtype=bool)
        first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
        r, c, w, idx = r[first], c[first], w[first], idx[first]
        n = self.n_nodes
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
        mat = sp.csr_matrix((w, c, indptr), shape=(n, n))
        mat.has_sorted_indices = True
        return mat, idx.astype(np.int64)

    def csr(self, mode: str, *, factor: np.ndarray | None = None, closed: np.ndarray | None = None,
            reverse: bool = False, weight: Literal["time", "length"] = "time") -> sp.csr_matrix:
        """(n, n) travel-time [s] (or length [m]) matrix of ``mode`` (see :meth:`csr_with_edges`)."""
        return self.csr_with_edges(mode, factor=factor, closed=closed, reverse=reverse, weight=weight)[0]

    def usable_nodes(self, mode: str, *, closed: np.ndarray | None = None) -> np.ndarray:
        """bool (n,): nodes with at least one usable edge (in or out) for ``mode``."""
        t = self.edge_times(mode, closed=closed)
        ok = np.isfinite(t)
        out = np.zeros(self.n_nodes, dtype=bool)
        out[self.edge_u[ok]] = True
        out[self.edge_v[ok]] = True
        return out

    # ------------------------------------------------------------------ geometry

    def project(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """lon/lat [deg] → x/y [m] in :attr:`crs`."""
        return self._to_xy.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))

    @cached_property
    def _to_xy(self) -> Transformer:
        return Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)

    @cached_property
    def _tree(self) -> cKDTree:
        return cKDTree(np.column_stack([self.x, self.y]))

    def nearest_nodes(self, lon: np.ndarray, lat: np.ndarray, *,
                      usable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest node of each point (KD-tree in projected metres).

        Parameters
        ----------
        lon, lat : array-like
            Points [deg, EPSG:4326].
        usable : numpy.ndarray, optional
            bool (n,): only these nodes may be chosen (e.g. :meth:`usable_nodes`).

        Returns
        -------
        node : numpy.ndarray
            int64 node index (into the full node arrays).
        distance_m : numpy.ndarray
            float64 straight-line distance [m].
        """
        px, py = self.project(lon, lat)
        pts = np.column_stack([np.ravel(px), np.ravel(py)])
        shape = np.shape(px)
        if usable is None:
            d, i = self._tree.query(pts)
            return np.asarray(i, dtype=np.int64).reshape(shape), np.asarray(d).reshape(shape)
        usable = np.asarray(usable, dtype=bool)
        if usable.shape != (self.n_nodes,):
            raise ValueError(f"usable must have one value per node ({self.n_nodes}), "
                             f"got shape {usable.shape}")
        keep = np.flatnonzero(usable)
        if keep.size == 0:
            raise RoadNetworkError("no road node is usable (every road is closed or not allowed for the "
                                   "mode); open some roads or choose another travel mode")
        d, i = cKDTree(np.column_stack([self.x[keep], self.y[keep]])).query(pts)
        return keep[np.asarray(i)].astype(np.int64).reshape(shape), np.asarray(d).reshape(shape)

    def edge_point_index(self, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in :attr:`edge_coords` of the polylines of ``edges`` and the group (0..len-1) of each."""
        edges = np.asarray(edges, dtype=np.int64).ravel()
        off = self.edge_geometry_offsets
        start, count = off[edges], off[edges + 1] - off[edges]
        group = np.repeat(np.arange(edges.size), count)
        first = np.repeat(np.cumsum(count) - count, count)
        pos = np.repeat(start, count) + (np.arange(group.size) - first)
        return pos, group

    def edge_lines(self, edges: np.ndarray) -> list[shapely.LineString]:
        """The real polylines of ``edges`` (lon/lat), in the direction of travel."""
        pos, group = self.edge_point_index(edges)
        if group.size == 0:
            return []
        return list(shapely.linestrings(self.edge_coords[pos], indices=group))

    # ------------------------------------------------------------------ arrays

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array (the cache content), strings as fixed-width unicode."""
        out = {f: np.asarray(getattr(self, f)) for f in _ARRAY_FIELDS}
        out["edge_highway"] = np.asarray(self.edge_highway, dtype=str)
        for mode, t in self.edge_time_s.items():
            out[f"time_{mode}"] = t
        return out


_ARRAY_FIELDS = ("node_osmid", "lon", "lat", "x", "y", "edge_u", "edge_v", "edge_way", "edge_highway",
                 "edge_length_m", "edge_geometry_offsets", "edge_coords", "edge_oneway", "edge_walk_reverse",
                 "edge_maxspeed_kmh", "way_ids", "way_edges")


# --------------------------------------------------------------------------- building


def _forward_within(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Coordinate positions of ``rows``' polylines, in order."""
    start, count = offsets[rows], offsets[rows + 1] - offsets[rows]
    first = np.repeat(np.cumsum(count) - count, count)
    return np.repeat(start, count) + (np.arange(int(count.sum())) - first)


def _reverse_within(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Coordinate positions of ``rows``' polylines, each one reversed (for gathering)."""
    start, end = offsets[rows], offsets[rows + 1]
    count = end - start
    first = np.repeat(np.cumsum(count) - count, count)
    k = np.arange(int(count.sum())) - first
    return np.repeat(end - 1, count) - k


def network_from_arrays(node_osmid: np.ndarray, lon: np.ndarray, lat: np.ndarray, edge_u: np.ndarray,
                        edge_v: np.ndarray, *, highway: np.ndarray | Sequence[str],
                        length_m: np.ndarray | None = None, way: np.ndarray | None = None,
                        maxspeed: Sequence[Any] | np.ndarray | None = None,
                        tracktype: Sequence[Any] | np.ndarray | None = None,
                        oneway: np.ndarray | None = None,
                        geometry: Sequence[shapely.LineString | None] | np.ndarray | None = None,
                        way_ids: tuple[np.ndarray, np.ndarray] | None = None, crs: str | None = None,
                        speeds: SpeedTable | Path | str | None = None,
                        source_checksum: str | None = None) -> RoadNetwork:
    """Build a :class:`RoadNetwork` from plain arrays (no osmnx needed).

    Parameters
    ----------
    node_osmid, lon, lat : array-like (n,)
        Node ids and coordinates [deg, EPSG:4326].
    edge_u, edge_v : array-like (m0,)
        Source and target node INDEX of each directed edge (a two-way road
        needs both directions).
    highway : array-like of str (m0,)
        OSM highway class.
    length_m : array-like (m0,), optional
        Length [m]; NaN or absent → the projected length of the polyline.
    way : array-like (m0,), optional
        OSM way id (-1 when none).
    maxspeed, tracktype : array-like (m0,), optional
        OSM tag values (see :func:`parse_maxspeed`).
    oneway : array-like of bool (m0,), optional
        Vehicles may drive the edge only from u to v. When absent, an edge
        with no edge in the opposite direction between the same nodes counts
        as one-way.
    geometry : sequence of LineString or None (m0,), optional
        Polylines [lon/lat] from u to v (flipped when they start nearer v);
        None → the straight segment.
    way_ids : (ids, edge rows), optional
        Every way id per edge when edges merge several ways (default: ``way``).
    crs : str, optional
        Projected CRS (default: the UTM zone of the nodes, :func:`utm_crs`).
    speeds : SpeedTable or path, optional
        Speeds table (default: the shipped ``tables/speeds.toml``).
    source_checksum : str, optional
        Identity of the source (default: SHA-256 of the built arrays).

    Returns
    -------
    RoadNetwork
        The given edges (rows 0..m0-1), then a walk-only reverse row per one-way edge.
    """
    table = speeds if isinstance(speeds, SpeedTable) else read_speeds(speeds)
    node_osmid = np.asarray(node_osmid, dtype=np.int64)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    n = node_osmid.shape[0]
    u = np.asarray(edge_u, dtype=np.int64)
    v = np.asarray(edge_v, dtype=np.int64)
    m0 = u.shape[0]
    if lon.shape != (n,) or lat.shape != (n,) or v.shape != (m0,):
        raise ValueError("node arrays must share one length and edge_u/edge_v another")
    if m0 and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n):
        raise ValueError("edge_u/edge_v must be node indices in 0..n-1")
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise RoadNetworkError("some road nodes have no coordinates; repair the road file (every node "
                               "needs x = longitude and y = latitude)")
    crs = crs or utm_crs(lon, lat)
    to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = to_xy.transform(lon, lat)
    inv, uniq = pd.factorize(np.asarray(highway, dtype=object), use_na_sentinel=False)
    names = ["road" if pd.isna(h) else str(h).lower().strip() for h in uniq]  # the few distinct classes
    highway_a = np.asarray(names, dtype=str)[inv]
    way_a = np.full(m0, -1, np.int64) if way is None else np.asarray(way, dtype=np.int64)

    # polylines, oriented u → v
    counts = np.full(m0, 2, dtype=np.int64)  # straight u → v unless a geometry is given
    given = np.zeros(m0, dtype=bool)
    if geometry is not None:
        lines = np.empty(m0, dtype=object)
        lines[:] = list(geometry)
        given = ~pd.isna(lines)
        gc, gidx = shapely.get_coordinates(lines[given], return_index=True)
        counts[given] = np.bincount(gidx, minlength=int(given.sum()))
    offsets = np.zeros(m0 + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    coords = np.empty((int(offsets[-1]), 2), dtype=np.float64)
    straight = np.flatnonzero(~given)
    coords[offsets[straight]] = np.column_stack([lon[u[straight]], lat[u[straight]]])
    coords[offsets[straight] + 1] = np.column_stack([lon[v[straight]], lat[v[straight]]])
    if given.any():
        coords[_forward_within(offsets, np.flatnonzero(given))] = gc
    if m0 and (np.diff(offsets) < 2).any():
        raise RoadNetworkError("some road geometries have fewer than two points; repair the road file")
    if m0:
        first, last = coords[offsets[:-1]], coords[offsets[1:] - 1]
        pu, pv = np.column_stack([lon[u], lat[u]]), np.column_stack([lon[v], lat[v]])
        du = np.hypot(*(first - pu).T) + np.hypot(*(last - pv).T)
        dv = np.hypot(*(first - pv).T) + np.hypot(*(last - pu).T)
        fr = np.flatnonzero(dv < du)
        if fr.size:
            pos = np.arange(coords.shape[0])
            pos[_forward_within(offsets, fr)] = _reverse_within(offsets, fr)
            coords = coords[pos]

    # lengths
    length = np.full(m0, np.nan) if length_m is None else np.asarray(length_m, dtype=np.float64).copy()
    if np.isnan(length).any():
        px, py = to_xy.transform(coords[:, 0], coords[:, 1])
        seg = np.hypot(np.diff(px), np.diff(py))
        owner = np.repeat(np.arange(m0), np.diff(offsets))
        same = np.diff(owner) == 0
        plen = np.bincount(owner[1:][same], weights=seg[same], minlength=m0)
        length = np.where(np.isnan(length), plen, length)

    # one-way
    if oneway is None:
        fwd = pd.MultiIndex.from_arrays([u, v])
        back = pd.MultiIndex.from_arrays([v, u])
        oneway_a = ~back.isin(fwd) & (u != v)
    else:
        ow_in = pd.Series(np.asarray(oneway, dtype=object)).infer_objects()
        if pd.api.types.is_bool_dtype(ow_in):
            oneway_a = ow_in.to_numpy(dtype=bool)
        else:  # osmnx values: bools, "True"/"False" strings, lists after simplification, NaN
            oneway_a = ow_in.map(_as_bool).to_numpy(dtype=bool)

    # speeds [km/h] per mode, maxspeed cap, tracktype for cars
    maxs = parse_maxspeed(maxspeed) if maxspeed is not None else np.full(m0, np.nan)
    times: dict[str, np.ndarray] = {}
    for mode in MODES:  # three modes, each vectorized over edges
        kmh = table.speeds_of(highway_a, mode)
        if mode == "car" and tracktype is not None:
            tt = pd.Series(np.asarray(tracktype, dtype=object)).astype(str).str.lower().str.strip()
            car_tt = tt.map(table.tracktype_car).to_numpy(dtype=float)
            use = (highway_a == "track") & np.isfinite(car_tt)
            kmh = np.where(use, car_tt, kmh)
        if mode != "walk":
            kmh = np.where(np.isfinite(maxs) & (kmh > 0), np.fmin(kmh, maxs), kmh)
        with np.errstate(divide="ignore"):
            times[mode] = np.where(kmh > 0, length / (kmh / 3.6), np.inf)

    # walk-only reverse rows of one-way edges
    ow = np.flatnonzero(oneway_a)
    rev_pos = _reverse_within(offsets, ow)
    rev_counts = offsets[ow + 1] - offsets[ow]
    all_coords = np.concatenate([coords, coords[rev_pos]]) if ow.size else coords
    all_off = np.concatenate([offsets, offsets[-1] + np.cumsum(rev_counts)]) if ow.size else offsets
    for mode in MODES:
        extra = times[mode][ow] if mode == "walk" else np.full(ow.size, np.inf)
        times[mode] = np.concatenate([times[mode], extra])
    if way_ids is None:
        w_ids, w_edges = way_a[way_a >= 0], np.flatnonzero(way_a >= 0)
    else:
        w_ids, w_edges = (np.asarray(a, dtype=np.int64) for a in way_ids)
    back_of = np.full(m0, -1, np.int64)
    back_of[ow] = m0 + np.arange(ow.size)
    has_back = back_of[w_edges] >= 0
    w_ids = np.concatenate([w_ids, w_ids[has_back]])
    w_edges = np.concatenate([w_edges, back_of[w_edges[has_back]]])

    net = RoadNetwork(
        node_osmid=node_osmid, lon=lon, lat=lat, x=np.asarray(x, np.float64), y=np.asarray(y, np.float64),
        crs=crs,
        edge_u=np.concatenate([u, v[ow]]).astype(np.int32),
        edge_v=np.concatenate([v, u[ow]]).astype(np.int32),
        edge_way=np.concatenate([way_a, way_a[ow]]),
        edge_highway=np.concatenate([highway_a, highway_a[ow]]),
        edge_length_m=np.concatenate([length, length[ow]]), edge_time_s=times,
        edge_geometry_offsets=all_off.astype(np.int64),
        edge_coords=np.ascontiguousarray(all_coords, np.float64),
        source_checksum="",
        edge_oneway=np.concatenate([oneway_a, oneway_a[ow]]),
        edge_walk_reverse=np.concatenate([np.zeros(m0, bool), np.ones(ow.size, bool)]),
        edge_maxspeed_kmh=np.concatenate([maxs, maxs[ow]]),
        way_ids=w_ids, way_edges=w_edges,
    )
    checksum = source_checksum or _arrays_checksum(net.to_arrays())
    object.__setattr__(net, "source_checksum", checksum)
    return net


def _as_bool(v: Any) -> bool:
    if isinstance(v, list | tuple):
        return any(_as_bool(x) for x in v)
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return False
    return str(v).strip().lower() in ("true", "yes", "1", "-1")


def _arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def _first(s: pd.Series) -> pd.Series:
    """First element of list-valued cells (osmnx merges the tags of simplified ways into lists)."""
    s = s.reset_index(drop=True)
    return s.explode().groupby(level=0).first().reindex(s.index)


@contextlib.contextmanager
def _crs_attr(graph: nx.MultiDiGraph) -> Iterator[None]:
    """osmnx needs ``graph.graph['crs']``: a plain networkx graph without one is taken as EPSG:4326."""
    missing = "crs" not in graph.graph
    if missing:
        graph.graph["crs"] = "EPSG:4326"
    try:
        yield
    finally:
        if missing:
            graph.graph.pop("crs", None)


def network_from_graph(graph: nx.MultiDiGraph, *, crs: str | None = None,
                       speeds: SpeedTable | Path | str | None = None,
                       source_checksum: str | None = None) -> RoadNetwork:
    """Build a :class:`RoadNetwork` from an osmnx MultiDiGraph (EPSG:4326, node ``x``/``y`` in degrees).

    Uses the edge attributes ``osmid``, ``highway``, ``length`` [m],
    ``oneway``, ``maxspeed``, ``tracktype`` and ``geometry`` when present.
    """
    import osmnx as ox

    gcrs = graph.graph.get("crs")
    if gcrs is not None and not CRS.from_user_input(gcrs).equals(CRS.from_epsg(4326)):
        raise RoadNetworkError(f"the road graph is in {gcrs}; give it in EPSG:4326 (unprojected), as osmnx "
                               "reads OSM files")
    if graph.number_of_nodes() == 0:
        raise RoadNetworkError("the road network has no nodes; give a road file with roads in it")
    with _crs_attr(graph):
        try:
            nodes = ox.graph_to_gdfs(graph, edges=False, node_geometry=False)
        except Exception as exc:  # osmnx raises ValueError / KeyError on graphs without x, y
            raise RoadNetworkError(f"the road graph's nodes lack coordinates ({exc}); every node needs x "
                                   "(longitude) and y (latitude)") from None
        if graph.number_of_edges() == 0:
            edges = pd.DataFrame(columns=["u", "v", "highway"])
        else:
            edges = ox.graph_to_gdfs(graph, nodes=False, fill_edge_geometry=False).reset_index()
    try:
        node_ids = nodes.index.to_numpy().astype(np.int64)
    except (TypeError, ValueError):
        raise RoadNetworkError("road node ids must be integers (OSM node ids)") from None
    if len(edges):
        if "highway" not in edges.columns:
            edges["highway"] = None
        # graph_from_xml also turns ways that are not roads (buildings, land use) into edges
        edges = edges[edges["highway"].notna().to_numpy()].reset_index(drop=True)
        used = np.union1d(edges["u"].to_numpy().astype(np.int64), edges["v"].to_numpy().astype(np.int64))
        nodes = nodes[np.isin(node_ids, used)]
        node_ids = node_ids[np.isin(node_ids, used)]
        if node_ids.size == 0:
            raise RoadNetworkError("the road network has no roads (no way with a highway tag)")
    pos = pd.Index(node_ids)
    u = pos.get_indexer(edges["u"].to_numpy().astype(np.int64))
    v = pos.get_indexer(edges["v"].to_numpy().astype(np.int64))

    def col(name: str) -> pd.Series | None:
        return edges[name] if name in edges.columns else None

    hw = col("highway")
    highway = _first(hw).to_numpy(dtype=object) if hw is not None else np.full(len(edges), "road", object)
    osmid = col("osmid")
    way = np.full(len(edges), -1, np.int64)
    way_ids = None
    if osmid is not None:
        ex = pd.to_numeric(osmid.reset_index(drop=True).explode(), errors="coerce")
        ok = ex.notna().to_numpy()
        all_ids = ex.to_numpy()[ok].astype(np.int64)
        all_edges = ex.index.to_numpy()[ok].astype(np.int64)
        way_ids = (all_ids, all_edges)
        firsts = ex.groupby(level=0).first().reindex(range(len(edges)))
        way = firsts.fillna(-1).to_numpy().astype(np.int64)
    geometry = None
    if "geometry" in edges.columns:
        g = edges["geometry"].to_numpy(dtype=object)
        geometry = np.where(pd.isna(g), None, g)
    length = col("length")
    maxspeed, tracktype, oneway = col("maxspeed"), col("tracktype"), col("oneway")
    return network_from_arrays(
        node_ids, nodes["x"].to_numpy(float), nodes["y"].to_numpy(float), u, v, highway=highway,
        length_m=None if length is None else pd.to_numeric(length, errors="coerce").to_numpy(float),
        way=way, maxspeed=None if maxspeed is None else maxspeed.to_numpy(object),
        tracktype=None if tracktype is None else _first(tracktype).to_numpy(object),
        oneway=None if oneway is None else oneway.to_numpy(object),
        geometry=geometry, way_ids=way_ids, crs=crs, speeds=speeds, source_checksum=source_checksum)


# --------------------------------------------------------------------------- loading and caching


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _extra_way_tags() -> Iterator[None]:
    """Let osmnx keep ``tracktype`` (and its default tags) while it reads a file."""
    import osmnx as ox

    saved = list(ox.settings.useful_tags_way)
    ox.settings.useful_tags_way = saved + [t for t in _EXTRA_WAY_TAGS if t not in saved]
    try:
        yield
    finally:
        ox.settings.useful_tags_way = saved


def _read_graph(path: Path) -> nx.MultiDiGraph:
    import osmnx as ox

    name = path.name.lower()
    try:
        if name.endswith(".graphml"):
            return ox.load_graphml(path)
        if name.endswith((".osm", ".osm.bz2", ".xml")):
            with _extra_way_tags():
                # bidirectional=False: one-way roads stay one directed edge;
                # retain_all: keep every piece, routing decides what is reachable
                return ox.graph_from_xml(path, bidirectional=False, retain_all=True)
    except Exception as exc:  # osmnx / networkx / xml raise many kinds
        raise RoadNetworkError(f"{path}: cannot read the road network ({exc.__class__.__name__}: {exc}); "
                               "give a valid OSM XML export or an osmnx GraphML file") from None
    raise RoadNetworkError(f"{path}: roads must be a .graphml, .osm or .osm.bz2 file")


def _cache_key(checksum: str, table: SpeedTable, crs: str | None) -> str:
    raw = f"v{CACHE_VERSION}|{checksum}|{table.checksum}|{crs or 'utm'}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _save_cache(net: RoadNetwork, path: Path, key: str) -> None:
    arrays = net.to_arrays()
    meta = {"key": key, "version": CACHE_VERSION, "crs": net.crs, "source_checksum": net.source_checksum,
            "modes": list(net.edge_time_s)}
    arrays["meta_json"] = np.asarray(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_cache(path: Path, key: str) -> RoadNetwork | None:
    """The cached network, or None when absent, stale or unreadable (then it is rebuilt)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta_json")))
        if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
            return None
        times = {m: arrays.pop(f"time_{m}") for m in meta["modes"]}
        net = RoadNetwork(crs=meta["crs"], source_checksum=meta["source_checksum"], edge_time_s=times,
                          **{f: arrays[f] for f in _ARRAY_FIELDS})
        m, n = net.n_edges, net.n_nodes
        ok = (all(a.shape[0] == m for a in (net.edge_v, net.edge_way, net.edge_highway, net.edge_length_m,
                                              net.edge_oneway, net.edge_walk_reverse, *times.values()))
              and all(a.shape == (n,) for a in (net.lon, net.lat, net.x, net.y))
              and net.edge_geometry_offsets.shape == (m + 1,)
              and net.edge_geometry_offsets[-1] == net.edge_coords.shape[0])
        return net if ok else None
    except Exception as exc:  # a truncated or foreign file: rebuild it
        log.warning("road network cache %s is unreadable (%s); rebuilding it", path, exc)
        return None


def load_network(source: Path | str | nx.MultiDiGraph, *, cache_dir: Path | str | None = None,
                 crs: str | None = None, speeds: Path | str | None = None) -> RoadNetwork:
    """Load a road network, from the cache when the source has not changed.

    Parameters
    ----------
    source : path or networkx.MultiDiGraph
        ``.osm`` / ``.osm.bz2`` (``osmnx.graph_from_xml``), ``.graphml``
        (``osmnx.load_graphml``) or a graph in memory (not cached).
    cache_dir : path, optional
        Folder of the cache; the file ``roads-<key>.npz`` is keyed by the
        SHA-256 of the source file, of the speeds table, ``crs`` and
        :data:`CACHE_VERSION`. A corrupt cache file is rebuilt.
    crs : str, optional
        Projected CRS (default: the UTM zone of the network).
    speeds : path, optional
        A recalibrated copy of ``tables/speeds.toml``.

    Returns
    -------
    RoadNetwork

    Raises
    ------
    RoadNetworkError
        When the file is missing or cannot be read (the message names it).
    """
    table = read_speeds(speeds)
    if isinstance(source, nx.MultiDiGraph):
        return network_from_graph(source, crs=crs, speeds=table)
    path = Path(source).expanduser()
    if not path.is_file():
        raise RoadNetworkError(f"{path}: road file not found; check the path (region.toml [files] roads)")
    checksum = _sha256(path)
    cache_path = None
    if cache_dir is not None:
        key = _cache_key(checksum, table, crs)
        cache_path = Path(cache_dir) / f"roads-{key[:24]}.npz"
        cached = _load_cache(cache_path, key)
        if cached is not None:
            return cached
    net = network_from_graph(_read_graph(path), crs=crs, speeds=table, source_checksum=checksum)
    if cache_path is not None:
        try:
            _save_cache(net, cache_path, key)
        except OSError as exc:  # a read-only cache folder costs time, not correctness
            log.warning("cannot write the road network cache %s (%s)", cache_path, exc)
    return net


def region_network(region: Region, cache_dir: Path | str | None = None, *, fetch: bool = False,
                   crs: str | None = None, speeds: Path | str | None = None) -> RoadNetwork:
    """The road network of a region (its ``roads`` file; or fetched once from OpenStreetMap).

    Parameters
    ----------
    region : ewarn.region.Region
    cache_dir : path, optional
        Cache folder (default: ``<region folder>/.cache/roads``).
    fetch : bool
        For a region without a roads file: fetch the roads of the communes'
        area with ``osmnx.graph_from_polygon`` (network) and keep them as
        ``roads-fetched-<hash>.graphml`` in the cache folder. Never done
        unless asked.

    Raises
    ------
    RoadNetworkError
        When the region has no roads file and ``fetch`` is false, or the fetch fails.
    """
    cache = Path(cache_dir) if cache_dir is not None else Path(region.folder) / ".cache" / "roads"
    path = region.files.get("roads")
    if path is not None:
        return load_network(path, cache_dir=cache, crs=crs, speeds=speeds)
    if not fetch:
        raise RoadNetworkError(f"region {region.name} has no road network; add `roads = \"roads.osm\"` "
                               "(an OSM export) to [files] in region.toml, or fetch it once from "
                               "OpenStreetMap (fetch=True)")
    import osmnx as ox

    polygon = shapely.union_all(np.asarray(region.communes.geometry.values))
    tag = hashlib.sha256(shapely.to_wkb(shapely.normalize(polygon))).hexdigest()[:16]
    graphml = cache / f"roads-fetched-{tag}.graphml"
    if not graphml.exists():
        try:
            with _extra_way_tags():
                graph = ox.graph_from_polygon(polygon, network_type="all", retain_all=True)
        except Exception as exc:  # network and Overpass errors come in many kinds
            raise RoadNetworkError(f"could not fetch the roads of region {region.name} from "
                                   f"OpenStreetMap ({exc.__class__.__name__}: {exc}); retry later or "
                                   "add a roads file") from None
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=graphml.name + ".", suffix=".tmp", dir=cache)
        os.close(fd)
        try:
            ox.save_graphml(graph, tmp)
            os.replace(tmp, graphml)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return load_network(graphml, cache_dir=cache, crs=crs, speeds=speeds)
