"""The embedded demo region and the demo storm.

A 40 × 40 km mountainous area around Bảo Yên and Phúc Khánh (Lào Cai,
104.30–104.70 E, 22.00–22.40 N) generated from a seed, in a few seconds,
without any download: a synthetic terrain with carved valleys, the real names
and codes of the 2025 communes of the area, villages in the valleys (one of
them, like Làng Nủ, on a stream bank at the foot of a steep slope), shelters on
safer ground, an osmnx road graph and two demo officials per commune.

Everything is deterministic: the same seed gives byte-identical files.

The terrain is built from a fixed valley network (the Chảy and Red River
valleys and named tributaries; real rivers, synthetic geometry) plus seeded
side gullies. Every valley defines a surface rising away from its stream line
(a flat floor, a terrace step, then a wall of relief ``H`` approached
exponentially over ``w`` metres); the terrain is the lowest of these surfaces,
so ridges form where the surfaces of two valleys meet and every hillside
drains into the nearest valley, whose floor descends to its mouth. Residual
pits from the texture noise are filled exactly (minimax path to the edge,
computed on the minimum spanning tree of the grid) and given a gradient of
:data:`FILL_EPSILON_M` per cell, so that water drains to the edge of the grid.

Sources: the commune codes, names, centres and populations are the official
2025 data (Decision 19/2025/QĐ-TTg codes, as published in
lamngockhuong/vietnam-3d-map, public/wards/15.json). The Làng Nủ setting
(hamlet of Phúc Khánh on a stream bank under a steep slope, debris flow from
~774 m on 2024-09-10) is from the official reports summarised in SCIENCE.md §5.
Everything else is synthetic.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
import shapely.ops
import xarray as xr
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree
from shapely.geometry import LineString, MultiPoint, Point, box

from ewarn.forecasts import synthetic

if TYPE_CHECKING:
    from ewarn.region import Region

#: Seed of the demo region and storm.
DEMO_SEED = 2024
#: Forecast reference time of the demo storm (UTC).
DEMO_CYCLE: dt.datetime = synthetic.DEMO_REFERENCE_TIME
#: Forecast source profile name of the demo storm.
DEMO_SOURCE = "demo"
#: (west, south, east, north) of the demo region [degrees].
DEMO_BOUNDS = synthetic.DEMO_BOUNDS
#: Terrain cell size [degrees] (~83 m × 89 m at 22.2 N; 500 × 500 cells).
DEMO_RESOLUTION = 0.0008
#: Region name written to region.toml.
DEMO_NAME = "Bảo Yên – Phúc Khánh (Lào Cai), vùng demo"
#: Elevation range of the synthetic terrain [m].
ELEVATION_RANGE_M = (100.0, 1800.0)
#: Gradient given to filled depressions and flats [m per cell step].
FILL_EPSILON_M = 1e-3
#: Target number of households.
HOUSEHOLDS_TARGET = 5000
#: Share of households with at least one member needing help to move.
VULNERABLE_SHARE = 0.10
#: Households are at most this far from their hamlet's road node [m] (snapping ≤ 500 m).
HOUSEHOLD_RADIUS_M = 400.0
#: Total shelter capacity as a share of the people in hazard zones.
SHELTER_CAPACITY_SHARE = 0.8
#: Slope [degrees] above which a house is under a steep slope (landslide exposure).
STEEP_SLOPE_DEG = 25.0

# Local metric frame: spherical Earth (IUGG mean radius), equirectangular at the box centre.
_EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEG_LAT = _EARTH_RADIUS_M * math.pi / 180.0
_LAT0 = 0.5 * (DEMO_BOUNDS[1] + DEMO_BOUNDS[3])
_M_PER_DEG_LON = _M_PER_DEG_LAT * math.cos(math.radians(_LAT0))


def _to_xy(lon, lat):
    """(lon, lat) [degrees] → local (x, y) [m] from the south-west corner of the box."""
    return ((np.asarray(lon) - DEMO_BOUNDS[0]) * _M_PER_DEG_LON,
            (np.asarray(lat) - DEMO_BOUNDS[1]) * _M_PER_DEG_LAT)


def _to_lonlat(x, y):
    """Inverse of :func:`_to_xy`."""
    return (DEMO_BOUNDS[0] + np.asarray(x) / _M_PER_DEG_LON,
            DEMO_BOUNDS[1] + np.asarray(y) / _M_PER_DEG_LAT)


# --------------------------------------------------------------------------- communes


@dataclass(frozen=True)
class DemoCommune:
    """A real 2025 commune of the area (official code, name, centre, population)."""

    code: str
    name: str
    lon: float
    lat: float
    population: int
    legacy_province: str


#: The 2025 communes in and around the box. Source: official 2025 data
#: (lamngockhuong/vietnam-3d-map @ dc6095c4, public/wards/15.json: ma_xa, ten_xa,
#: center_lon, center_lat, dan_so); legacy province from the merged communes
#: (Lục Yên / Văn Yên districts were Yên Bái before 2025).
COMMUNES: tuple[DemoCommune, ...] = (
    DemoCommune("02947", "Bảo Yên", 104.49317, 22.21961, 21560, "Lào Cai"),
    DemoCommune("02998", "Phúc Khánh", 104.56504, 22.17805, 8534, "Lào Cai"),
    DemoCommune("02989", "Bảo Hà", 104.31997, 22.20339, 34115, "Lào Cai"),
    DemoCommune("02962", "Xuân Hòa", 104.49184, 22.29583, 12960, "Lào Cai"),
    DemoCommune("02968", "Thượng Hà", 104.38331, 22.28972, 14160, "Lào Cai"),
    DemoCommune("02953", "Nghĩa Đô", 104.46604, 22.40770, 13906, "Lào Cai"),
    DemoCommune("04381", "Lâm Giang", 104.48098, 22.11200, 16452, "Yên Bái"),
    DemoCommune("04309", "Lâm Thượng", 104.67200, 22.22569, 19576, "Yên Bái"),
    DemoCommune("04342", "Khánh Hòa", 104.64381, 22.09709, 17589, "Yên Bái"),
    DemoCommune("03103", "Khánh Yên", 104.29057, 22.00698, 14272, "Lào Cai"),
    DemoCommune("04387", "Châu Quế", 104.45166, 22.02086, 13457, "Yên Bái"),
    DemoCommune("02896", "Cốc Lầu", 104.36539, 22.38477, 8800, "Lào Cai"),
)
PROVINCE = "Lào Cai"
#: Code of Phúc Khánh, the commune of Làng Nủ.
PHUC_KHANH = "02998"


def _commune_seeds() -> tuple[np.ndarray, np.ndarray]:
    """Commune centres clipped into the box, in local metres."""
    w, s, e, n = DEMO_BOUNDS
    lon = np.clip([c.lon for c in COMMUNES], w, e)
    lat = np.clip([c.lat for c in COMMUNES], s, n)
    return _to_xy(lon, lat)


def commune_of(lon, lat) -> np.ndarray:
    """Index into :data:`COMMUNES` of the Voronoi cell holding each point.

    Exactly the partition of :func:`demo_communes` (nearest clipped centre in
    the local metric frame).
    """
    cx, cy = _commune_seeds()
    x, y = _to_xy(lon, lat)
    _, idx = cKDTree(np.column_stack([cx, cy])).query(np.column_stack([np.ravel(x), np.ravel(y)]))
    return idx.reshape(np.shape(x))


def demo_communes() -> gpd.GeoDataFrame:
    """The communes of the demo box: Voronoi cells around the real centres.

    Centres that fall outside the box (Nghĩa Đô, Khánh Yên) are clipped onto its
    edge; the cells are computed in a local metric frame and clipped to the box,
    so they partition it exactly.

    Returns
    -------
    GeoDataFrame
        ``code`` (5-digit official code), ``name``, ``province`` ("Lào Cai"),
        ``population`` (the REAL 2025 population of the whole commune, not
        scaled to the part inside the box), ``legacy_province``, geometry
        (EPSG:4326).
    """
    cx, cy = _commune_seeds()
    x1, y1 = _to_xy(DEMO_BOUNDS[2], DEMO_BOUNDS[3])
    frame = box(0.0, 0.0, float(x1), float(y1))
    cells = shapely.voronoi_polygons(MultiPoint(np.column_stack([cx, cy])), extend_to=frame,
                                     ordered=True)
    polys = shapely.intersection(np.asarray(cells.geoms), frame)
    polys = shapely.transform(polys, lambda xy: np.column_stack(_to_lonlat(xy[:, 0], xy[:, 1])))
    polys = shapely.set_precision(polys, 1e-7)
    return gpd.GeoDataFrame({
        "code": [c.code for c in COMMUNES],
        "name": [c.name for c in COMMUNES],
        "province": PROVINCE,
        "population": np.array([c.population for c in COMMUNES], dtype=np.int64),
        "legacy_province": [c.legacy_province for c in COMMUNES],
    }, geometry=list(polys), crs="EPSG:4326")


# --------------------------------------------------------------------------- valleys


@dataclass(frozen=True)
class Valley:
    """A carved valley: stream line, floor profile and wall shape.

    Parameters
    ----------
    name : str
        Stream name.
    vertices : tuple of (lon, lat)
        Stream line from head to the last point before the mouth [degrees];
        a tributary's mouth is the nearest point of its parent's line.
    parent : str or None
        The valley it drains into; None for a river leaving the box.
    head_m, mouth_m : float
        Floor elevation at the head and (rivers only) at the mouth [m].
    floor_m : float
        Half-width of the flat valley floor [m].
    wall_m : float
        e-folding width of the valley wall [m].
    relief : float
        Multiplier of the regional relief field.
    terrace : float
        Multiplier of the regional terrace width field (0: no terraces).
    concavity : float
        Floor profile exponent: floor = mouth + (head − mouth)·(s/L)^concavity.
    road : str or None
        OSM ``highway`` class of the road along it, with ``road_name``.
    """

    name: str
    vertices: tuple[tuple[float, float], ...]
    parent: str | None
    head_m: float
    mouth_m: float = 0.0
    floor_m: float = 110.0
    wall_m: float = 1000.0
    relief: float = 1.0
    terrace: float = 0.7
    concavity: float = 1.5
    road: str | None = "tertiary"
    road_name: str = ""


#: The fixed valley network (real rivers, synthetic geometry). Elevations are
#: before the final rescaling to :data:`ELEVATION_RANGE_M`.
VALLEYS: tuple[Valley, ...] = (
    Valley("Sông Chảy", ((104.300, 22.385), (104.360, 22.345), (104.420, 22.290), (104.470, 22.245),
                         (104.505, 22.229), (104.560, 22.222), (104.630, 22.200), (104.700, 22.172)),
           None, head_m=190.0, mouth_m=118.0, floor_m=380.0, wall_m=1500.0, terrace=1.0,
           concavity=1.0, road="trunk", road_name="Quốc lộ 70"),
    Valley("Sông Hồng", ((104.300, 22.240), (104.325, 22.200), (104.350, 22.150), (104.372, 22.090),
                         (104.392, 22.040), (104.405, 22.000)),
           None, head_m=112.0, mouth_m=100.0, floor_m=450.0, wall_m=1500.0, terrace=1.0,
           concavity=1.0, road="primary", road_name="Đường ven sông Hồng"),
    Valley("Suối Nủ", ((104.540, 22.095), (104.552, 22.130), (104.566, 22.165), (104.572, 22.195)),
           "Sông Chảy", head_m=800.0, floor_m=60.0, wall_m=420.0, relief=1.15, terrace=0.0,
           road_name="Đường liên xã Phúc Khánh"),
    Valley("Suối Xuân Hòa", ((104.520, 22.370), (104.500, 22.320), (104.490, 22.290), (104.482, 22.262)),
           "Sông Chảy", head_m=700.0, road_name="Đường liên xã Xuân Hòa"),
    Valley("Ngòi Nghĩa Đô", ((104.445, 22.400), (104.460, 22.370), (104.478, 22.335)),
           "Suối Xuân Hòa", head_m=480.0, road_name="Đường liên xã Nghĩa Đô"),
    Valley("Suối Thượng Hà", ((104.365, 22.230), (104.378, 22.265), (104.384, 22.292), (104.388, 22.305)),
           "Sông Chảy", head_m=650.0, road_name="Đường liên xã Thượng Hà"),
    Valley("Suối Cốc Lầu", ((104.375, 22.400), (104.368, 22.380), (104.362, 22.360)),
           "Sông Chảy", head_m=420.0, road_name="Đường liên xã Cốc Lầu"),
    Valley("Suối Lâm Thượng", ((104.650, 22.330), (104.668, 22.285), (104.672, 22.245), (104.668, 22.215)),
           "Sông Chảy", head_m=750.0, road_name="Đường liên xã Lâm Thượng"),
    Valley("Suối Khánh Hòa", ((104.585, 22.030), (104.615, 22.065), (104.644, 22.095), (104.675, 22.110),
                              (104.700, 22.118)),
           None, head_m=600.0, mouth_m=150.0, floor_m=140.0, road_name="Đường liên xã Khánh Hòa"),
    Valley("Ngòi Lâm Giang", ((104.530, 22.150), (104.505, 22.125), (104.481, 22.112), (104.445, 22.095),
                              (104.410, 22.080)),
           "Sông Hồng", head_m=650.0, floor_m=130.0, road_name="Đường liên xã Lâm Giang"),
    Valley("Suối Châu Quế", ((104.510, 22.040), (104.475, 22.015), (104.452, 22.022), (104.425, 22.028)),
           "Sông Hồng", head_m=600.0, road_name="Đường liên xã Châu Quế"),
    Valley("Ngòi Khánh Yên", ((104.305, 22.090), (104.320, 22.050), (104.345, 22.025)),
           "Sông Hồng", head_m=550.0, road_name="Đường liên xã Khánh Yên"),
    Valley("Suối Bảo Hà", ((104.400, 22.250), (104.370, 22.215), (104.345, 22.195)),
           "Sông Hồng", head_m=650.0, road_name="Đường liên xã Bảo Hà"),
    Valley("Suối Yên Sơn", ((104.470, 22.165), (104.485, 22.195), (104.497, 22.215)),
           "Sông Chảy", head_m=600.0, road_name="Đường liên xã Bảo Yên"),
)
#: The stream of the Làng Nủ-like hamlet.
LANG_NU_STREAM = "Suối Nủ"
#: Side gullies are added until no point of the box is farther than this from a stream [m].
GULLY_MAX_GAP_M = 1500.0
#: Cell size of the grid the gaps are searched on [m].
GULLY_SEARCH_CELL_M = 300.0


@dataclass
class ValleyGeometry:
    """A valley of the generated network: its stream line in local metres (mouth → head).

    ``floor(s)`` is the floor elevation [m, before rescaling] ``s`` metres
    upstream of the mouth; ``side`` is the bank its road runs on.
    """

    spec: Valley
    line: LineString
    mouth_m: float
    head_m: float
    side: int  # side of the stream the road runs on (+1 left, −1 right, looking upstream)

    @property
    def length(self) -> float:
        return float(self.line.length)

    def floor(self, s: np.ndarray) -> np.ndarray:
        """Floor elevation at distance ``s`` upstream of the mouth [m] (before rescaling)."""
        frac = np.clip(np.asarray(s, dtype=float) / self.length, 0.0, 1.0)
        return self.mouth_m + (self.head_m - self.mouth_m) * frac ** self.spec.concavity


def _valley_network(rng: np.random.Generator, relief: np.ndarray) -> list[ValleyGeometry]:
    """The fixed valleys plus seeded side gullies, mouth → head, in local metres.

    Gullies fill the gaps of the network: the point of the box farthest from
    any stream (weighted by a seeded random field) becomes the head of a new
    gully running, with a seeded bend, to the nearest point of the network;
    repeated until no point is farther than :data:`GULLY_MAX_GAP_M`. This gives
    a dendritic network with ridges 1–3 km apart, as in the real area. A
    gully's head stays below the terrain the valleys already made there
    (``relief`` is the regional relief field on the terrain grid), so gullies
    cut into the slopes rather than stand on them.
    """
    by_name: dict[str, ValleyGeometry] = {}
    out: list[ValleyGeometry] = []
    for i, v in enumerate(VALLEYS):
        x, y = _to_xy(*np.array(v.vertices).T)
        pts = np.column_stack([x, y])[::-1]  # mouth → head
        if v.parent is None:
            mouth = v.mouth_m
        else:
            parent = by_name[v.parent]
            s_p = parent.line.project(Point(pts[0]))
            junction = parent.line.interpolate(s_p)
            pts = np.vstack([[junction.x, junction.y], pts])
            mouth = float(parent.floor(s_p))
        g = ValleyGeometry(v, LineString(pts), mouth, v.head_m, side=1 if i % 2 == 0 else -1)
        by_name[v.name] = g
        out.append(g)
    x1, y1 = _to_xy(DEMO_BOUNDS[2], DEMO_BOUNDS[3])
    gx = np.arange(GULLY_SEARCH_CELL_M / 2, float(x1), GULLY_SEARCH_CELL_M)
    gy = np.arange(GULLY_SEARCH_CELL_M / 2, float(y1), GULLY_SEARCH_CELL_M)
    sx, sy = np.meshgrid(gx, gy)
    gap = np.full(sx.shape, np.inf)
    for g in out:
        gap = np.minimum(gap, _nearest_on_line(sx, sy, g.line)[0])
    weight = 1.0 + 0.25 * _smooth_noise(rng, sx.shape, 3.0)
    rows = np.clip((sy / (DEMO_RESOLUTION * _M_PER_DEG_LAT)).astype(int), 0, relief.shape[0] - 1)
    cols = np.clip((sx / (DEMO_RESOLUTION * _M_PER_DEG_LON)).astype(int), 0, relief.shape[1] - 1)
    uncarved = _background(out, relief[rows, cols])
    for g in out:
        d, s_on = _nearest_on_line(sx, sy, g.line)
        uncarved = np.minimum(uncarved, _surface(g, d, s_on, relief[rows, cols], 0.0)[0])
    tree_lines = [g.line for g in out]
    while True:
        if gap.max() <= GULLY_MAX_GAP_M:
            break
        j = int(np.argmax(np.where(gap > GULLY_MAX_GAP_M, gap * weight, -np.inf)))
        head = np.array([sx.flat[j], sy.flat[j]])
        dists = shapely.distance(np.asarray(tree_lines, dtype=object), Point(head))
        k = int(np.argmin(dists))
        parent = out[k]
        s_p = parent.line.project(Point(head))
        mouth_pt = np.array(parent.line.interpolate(s_p).coords[0])
        vec = head - mouth_pt
        length = float(np.hypot(*vec))
        nrm = np.array([-vec[1], vec[0]]) / max(length, 1e-9)
        mid = mouth_pt + 0.5 * vec + nrm * rng.normal(0.0, 0.12) * length
        line = LineString([mouth_pt, mid, head])
        mouth = float(parent.floor(s_p))
        rise = length * rng.uniform(0.18, 0.28)  # gully floors climb 18–28 % on average
        rise = float(np.clip(rise, 20.0, max(20.0, 0.6 * (uncarved.flat[j] - mouth))))
        spec = Valley(f"Khe {len(out) - len(VALLEYS) + 1}", (), parent.spec.name, head_m=mouth + rise,
                      floor_m=30.0, wall_m=800.0, relief=1.0, terrace=0.2, road="unclassified",
                      road_name="Đường thôn")
        g = ValleyGeometry(spec, line, mouth, mouth + rise, side=1 if rng.random() < 0.5 else -1)
        out.append(g)
        tree_lines.append(line)
        d, s_on = _nearest_on_line(sx, sy, line)
        gap = np.minimum(gap, d)
        uncarved = np.minimum(uncarved, _surface(g, d, s_on, relief[rows, cols], 0.0)[0])
    return out


# --------------------------------------------------------------------------- terrain


@dataclass
class DemoLandscape:
    """The synthetic terrain and the rasters the other generators place things with.

    Attributes
    ----------
    lon, lat : ndarray
        Cell centres [degrees], ascending.
    elevation : ndarray
        Filled, drained terrain [m], shape (lat, lon).
    slope : ndarray
        Slope [degrees].
    dist : ndarray
        Distance from the nearest stream line [m].
    height : ndarray
        Height above the floor of the nearest valley [m].
    valley : ndarray
        Index (into :attr:`valleys`) of the valley each cell drains to first.
    valleys : list
        Valley geometries (local metres, mouth → head).
    """

    lon: np.ndarray
    lat: np.ndarray
    elevation: np.ndarray
    slope: np.ndarray
    dist: np.ndarray
    height: np.ndarray
    valley: np.ndarray
    valleys: list[ValleyGeometry]
    seed: int
    _scale: tuple[float, float]  # rescaling (offset, factor) of raw elevations

    def rescale(self, raw: np.ndarray) -> np.ndarray:
        """Raw valley-floor elevations → the rescaled terrain's [m]."""
        off, fac = self._scale
        return ELEVATION_RANGE_M[0] + (np.asarray(raw) - off) * fac

    def cell(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the cells holding the points (clipped to the grid)."""
        col = np.clip(((np.asarray(lon) - DEMO_BOUNDS[0]) / DEMO_RESOLUTION).astype(int), 0,
                      self.lon.size - 1)
        row = np.clip(((np.asarray(lat) - DEMO_BOUNDS[1]) / DEMO_RESOLUTION).astype(int), 0,
                      self.lat.size - 1)
        return row, col

    @property
    def terrain(self) -> xr.Dataset:
        """The terrain as stored in the region: ``elevation`` [m] on (latitude, longitude)."""
        ds = xr.Dataset(
            {"elevation": (("latitude", "longitude"), self.elevation.astype(np.float32), {
                "standard_name": "surface_altitude", "long_name": "terrain elevation (synthetic)",
                "units": "m"})},
            coords={
                "latitude": ("latitude", self.lat, {"standard_name": "latitude",
                                                    "units": "degrees_north", "axis": "Y"}),
                "longitude": ("longitude", self.lon, {"standard_name": "longitude",
                                                      "units": "degrees_east", "axis": "X"}),
            },
            attrs={"Conventions": "CF-1.8",
                   "title": "ewarn demo terrain (synthetic, hydrologically conditioned)",
                   "source": f"ewarn.demo.synthetic_dem(seed={self.seed})"},
        )
        return ds


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise with zero mean and unit standard deviation."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (f - f.mean()) / f.std()


def _nearest_on_line(x: np.ndarray, y: np.ndarray, line: LineString) -> tuple[np.ndarray, np.ndarray]:
    """Distance [m] to a polyline and arc position [m] of the nearest point, per cell.

    Vectorized over cells; loops over the few segments of the line.
    """
    pts = np.asarray(line.coords)
    seg = np.diff(pts, axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    start = np.concatenate([[0.0], np.cumsum(seglen)[:-1]])
    best_d2 = np.full(np.broadcast_shapes(x.shape, y.shape), np.inf)
    best_s = np.zeros_like(best_d2)
    for (ax, ay), (dx, dy), ln, s0 in zip(pts[:-1], seg, seglen, start, strict=True):
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (ln * ln), 0.0, 1.0)
        d2 = (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2
        closer = d2 < best_d2
        best_d2 = np.where(closer, d2, best_d2)
        best_s = np.where(closer, s0 + t * ln, best_s)
    return np.sqrt(best_d2), best_s


def fill_depressions(z: np.ndarray, epsilon: float = FILL_EPSILON_M) -> np.ndarray:
    """Fill every depression and give filled areas a drainage gradient.

    The filled elevation of a cell is the lowest possible maximum elevation
    along a path to the grid edge (the priority-flood fill of Barnes et al.
    2014, *Computers & Geosciences* 62, 117–127); minimax paths are the paths
    of the minimum spanning tree of the 8-connected grid with edge weight
    max(z_a, z_b). Adding ``epsilon`` × (tree steps to the edge) makes every
    cell strictly higher than its tree neighbour towards the edge, so no cell
    is a pit. Fully vectorized (scipy MST + pointer jumping).

    Parameters
    ----------
    z : ndarray
        Elevation [m], 2-D, no NaN.
    epsilon : float
        Gradient added along drainage paths [m per step].

    Returns
    -------
    ndarray
        Filled, drained elevation [m] (float64).
    """
    ny, nx = z.shape
    n = ny * nx
    zf = np.asarray(z, dtype=np.float64).ravel()
    idx = np.arange(n).reshape(ny, nx)
    pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :]),
             (idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1])]
    a = np.concatenate([p[0].ravel() for p in pairs])
    b = np.concatenate([p[1].ravel() for p in pairs])
    edge = np.zeros((ny, nx), dtype=bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    border = idx[edge]
    root = n
    a = np.concatenate([a, border])
    b = np.concatenate([b, np.full(border.size, root)])
    w = np.maximum(np.append(zf, -np.inf)[a], np.append(zf, -np.inf)[b])
    w = w - w.min() + 1.0  # csgraph drops zero weights; ordering is what matters
    graph = sparse.coo_array((w, (a, b)), shape=(n + 1, n + 1)).tocsr()
    tree = csgraph.minimum_spanning_tree(graph)
    _, pred = csgraph.breadth_first_order(tree, root, directed=False, return_predecessors=True)
    parent = pred.copy()
    parent[root] = root
    level = np.append(zf, -np.inf)
    steps = np.ones(n + 1)
    steps[root] = 0.0
    while True:  # pointer jumping: ~log2(tree depth) vectorized rounds
        level = np.maximum(level, level[parent])
        steps = steps + np.where(parent != root, steps[parent], 0.0)
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    return (level[:n] + epsilon * steps[:n]).reshape(ny, nx)


def slope_degrees(elevation: np.ndarray, dx_m: float, dy_m: float) -> np.ndarray:
    """Slope [degrees] by central differences (``numpy.gradient``; one-sided at the edges).

    Parameters
    ----------
    elevation : ndarray
        Elevation [m] on (latitude, longitude), latitude ascending.
    dx_m, dy_m : float
        Cell size east–west and north–south [m].
    """
    gy, gx = np.gradient(elevation, dy_m, dx_m)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


#: Terrain shape constants (synthetic; chosen for a plausible northern-Vietnam relief).
RELIEF_M = (350.0, 1150.0)  # regional wall relief: base + range of a smooth field [m]
TERRACE_STEP_M = 25.0       # height of the river terrace above the floor [m]
TERRACE_RISER_M = 80.0      # width of the terrace riser [m]
TERRACE_MAX_M = 400.0       # widest terrace [m]
CHANNEL_DEPTH_M = 3.0       # incision of the stream channel [m]
CHANNEL_HALF_WIDTH_M = 100.0
FLOOR_CROSS_SLOPE = 0.004   # cross slope of the floor towards the stream [m/m]
HILL_SLOPE = 0.12           # slope added away from the valley, so walls keep rising [m/m]
HILL_SLOPE_REACH_M = 2000.0  # ... up to this far from the floor [m]
TEXTURE_M = 35.0            # amplitude of small-scale roughness on the walls [m]
SURFACE_REACH_WALLS = 6.0   # a surface is computed this many wall widths around its floor


def _background(valleys: list[ValleyGeometry], relief: np.ndarray) -> np.ndarray:
    """Where every valley's surface has levelled off: lowest mouth + full relief [m].

    Valley surfaces are computed only within :data:`SURFACE_REACH_WALLS` wall
    widths of their floor, where they have risen to >99 % of their relief;
    beyond, this level stands in for all of them (so no window edge shows).
    """
    lowest = min(v.mouth_m for v in valleys)
    return lowest + relief + HILL_SLOPE * HILL_SLOPE_REACH_M


def _surface(v: ValleyGeometry, d: np.ndarray, s: np.ndarray, relief: np.ndarray,
             terrace_w: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The surface a valley makes around it (before texture and filling).

    Parameters
    ----------
    v : ValleyGeometry
        The valley.
    d, s : ndarray
        Distance from its stream line and arc position of the nearest point [m].
    relief : ndarray
        Regional wall relief [m].
    terrace_w : ndarray or float
        Regional terrace width [m].

    Returns
    -------
    surf, floor, wall_distance : ndarray
        Elevation [m], floor elevation at the nearest point [m], distance up
        the wall from its foot [m].
    """
    fl = v.floor(s)
    sp = v.spec
    beyond = np.maximum(d - sp.floor_m, 0.0)
    tw = sp.terrace * np.asarray(terrace_w)
    u = np.clip(beyond / TERRACE_RISER_M, 0.0, 1.0)
    step = TERRACE_STEP_M * np.minimum(tw / 150.0, 1.0) * u * u * (3.0 - 2.0 * u)
    wd = np.maximum(beyond - TERRACE_RISER_M - tw, 0.0)
    surf = (fl - CHANNEL_DEPTH_M * np.clip(1.0 - d / CHANNEL_HALF_WIDTH_M, 0.0, 1.0)
            + FLOOR_CROSS_SLOPE * np.minimum(d, sp.floor_m)
            + HILL_SLOPE * np.minimum(beyond, HILL_SLOPE_REACH_M) + step
            + sp.relief * relief * (1.0 - np.exp(-wd / sp.wall_m)))
    return surf, fl, wd


def demo_landscape(seed: int = DEMO_SEED) -> DemoLandscape:
    """The synthetic terrain and its valley rasters.

    Parameters
    ----------
    seed : int
        Random seed (relief, terraces, texture, side gullies).

    Returns
    -------
    DemoLandscape
    """
    rng = np.random.default_rng([seed, 1])
    nlon = round((DEMO_BOUNDS[2] - DEMO_BOUNDS[0]) / DEMO_RESOLUTION)
    nlat = round((DEMO_BOUNDS[3] - DEMO_BOUNDS[1]) / DEMO_RESOLUTION)
    lon = np.round(DEMO_BOUNDS[0] + (np.arange(nlon) + 0.5) * DEMO_RESOLUTION, 7)
    lat = np.round(DEMO_BOUNDS[1] + (np.arange(nlat) + 0.5) * DEMO_RESOLUTION, 7)
    x, y = _to_xy(lon[None, :], lat[:, None])
    shape = (nlat, nlon)
    relief = RELIEF_M[0] + RELIEF_M[1] * (0.5 + 0.5 * np.tanh(0.8 * _smooth_noise(rng, shape, 50.0)))
    terrace_w = TERRACE_MAX_M * np.clip(0.45 + 0.6 * _smooth_noise(rng, shape, 20.0), 0.0, 1.0)
    texture = _smooth_noise(rng, shape, 2.5)
    valleys = _valley_network(rng, relief)

    z = _background(valleys, relief)
    dist = np.zeros(shape)
    floor = np.zeros(shape)
    wall_d = np.zeros(shape)
    which = np.zeros(shape, dtype=np.int16)
    for k, v in enumerate(valleys):  # ~200 valleys, each on the window it can be lowest in
        reach = v.spec.floor_m + TERRACE_MAX_M + SURFACE_REACH_WALLS * v.spec.wall_m
        x0, y0, x1, y1 = v.line.bounds
        cols = slice(int(np.searchsorted(x[0], x0 - reach)), int(np.searchsorted(x[0], x1 + reach)))
        rows = slice(int(np.searchsorted(y[:, 0], y0 - reach)),
                     int(np.searchsorted(y[:, 0], y1 + reach)))
        d, s = _nearest_on_line(x[:, cols], y[rows, :], v.line)
        surf, fl, wd = _surface(v, d, s, relief[rows, cols], terrace_w[rows, cols])
        lower = surf < z[rows, cols]
        for arr, val in ((z, surf), (dist, d), (floor, fl), (wall_d, wd)):
            arr[rows, cols] = np.where(lower, val, arr[rows, cols])
        which[rows, cols] = np.where(lower, k, which[rows, cols])
    z = z + TEXTURE_M * texture * np.clip(wall_d / 250.0, 0.0, 1.0)
    z = fill_depressions(z)
    lo, hi = float(z.min()), float(z.max())
    fac = (ELEVATION_RANGE_M[1] - ELEVATION_RANGE_M[0]) / (hi - lo)
    elev = ELEVATION_RANGE_M[0] + (z - lo) * fac
    floor = ELEVATION_RANGE_M[0] + (floor - lo) * fac
    dx_m = DEMO_RESOLUTION * _M_PER_DEG_LON
    dy_m = DEMO_RESOLUTION * _M_PER_DEG_LAT
    return DemoLandscape(lon=lon, lat=lat, elevation=elev, slope=slope_degrees(elev, dx_m, dy_m),
                         dist=dist, height=elev - floor, valley=which, valleys=valleys, seed=seed,
                         _scale=(lo, fac))


def synthetic_dem(seed: int = DEMO_SEED) -> xr.Dataset:
    """The demo terrain: ``elevation`` [m] on ascending (latitude, longitude).

    100–1,800 m, 0.0008° cells (500 × 500), ridges between carved valleys,
    depressions filled so that water drains to the edge. See the module
    docstring for the construction.
    """
    return demo_landscape(seed).terrain


# --------------------------------------------------------------------------- settlements

#: Spacing of the bins hamlets are drawn from along the valleys [m].
HAMLET_BIN_M = 2000.0
#: Hamlets thin out with floor elevation: kept with probability exp(−(z − 150) / this) [m].
HAMLET_ELEVATION_SCALE_M = 300.0
#: Households of the Làng Nủ-like hamlet (33 were buried on 2024-09-10; SCIENCE.md §5).
LANG_NU_HOUSEHOLDS = 35
#: Remote farms (1–3 houses up the slope, reached by a path).
REMOTE_FARMS = 60


def _valley_samples(land: DemoLandscape, spacing: float = 50.0) -> pd.DataFrame:
    """Points every ``spacing`` metres along every stream line.

    Columns: valley, s [m from the mouth], x, y [m], tx, ty (unit tangent,
    upstream), lon, lat, commune (index into :data:`COMMUNES`), floor [m],
    steep (largest slope within ~2 cells [degrees]).
    """
    lines = np.array([v.line for v in land.valleys], dtype=object)
    lengths = np.array([v.length for v in land.valleys])
    counts = (lengths // spacing).astype(int) + 1
    valley = np.repeat(np.arange(lengths.size), counts)
    s = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    s = s * spacing
    p = shapely.line_interpolate_point(lines[valley], s)
    q = shapely.line_interpolate_point(lines[valley], np.minimum(s + 10.0, lengths[valley]))
    r = shapely.line_interpolate_point(lines[valley], np.maximum(s - 10.0, 0.0))
    xy = shapely.get_coordinates(p)
    t = shapely.get_coordinates(q) - shapely.get_coordinates(r)
    t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)[:, None]
    lon, lat = _to_lonlat(xy[:, 0], xy[:, 1])
    floors = np.concatenate([land.valleys[k].floor(s[valley == k]) for k in range(lengths.size)])
    steep = ndimage.maximum_filter(land.slope, size=5)
    row, col = land.cell(lon, lat)
    return pd.DataFrame({
        "valley": valley, "s": s, "x": xy[:, 0], "y": xy[:, 1], "tx": t[:, 0], "ty": t[:, 1],
        "lon": lon, "lat": lat, "commune": commune_of(lon, lat), "floor": land.rescale(floors),
        "steep": steep[row, col],
    })


def demo_hamlets(land: DemoLandscape, seed: int = DEMO_SEED) -> pd.DataFrame:
    """Villages along the valleys, with how many households each has.

    One centre village per commune (on the valley floor nearest to the real
    commune centre), villages drawn along the valleys (fewer higher up), the
    Làng Nủ-like hamlet of Phúc Khánh on the bank of Suối Nủ where the valley
    wall is steepest, and remote farms up the slopes.

    Returns
    -------
    DataFrame
        hamlet_id, name, kind (centre | valley | stream_bank | remote),
        commune (index), commune_code, valley (index), s, x, y [m], lon, lat,
        tx, ty (valley direction), side (+1/−1: bank), households.
    """
    rng = np.random.default_rng([seed, 2])
    smp = _valley_samples(land)
    named = smp["valley"] < len(VALLEYS)
    cx, cy = _commune_seeds()
    # centre villages: the named-valley floor point nearest to each commune centre
    dc = np.hypot(smp["x"] - cx[smp["commune"]], smp["y"] - cy[smp["commune"]])
    centre = smp[named].assign(dc=dc[named]).groupby("commune")["dc"].idxmin()
    if centre.size != len(COMMUNES):
        raise RuntimeError("demo valley network misses a commune")  # a bug, not bad input
    centres = smp.loc[centre.sort_index().to_numpy()].assign(kind="centre")
    # the Làng Nủ-like hamlet: steepest wall along Suối Nủ in Phúc Khánh, 1.5–5 km up
    nu = [v.spec.name for v in land.valleys].index(LANG_NU_STREAM)
    pk = [c.code for c in COMMUNES].index(PHUC_KHANH)
    cand = smp[(smp["valley"] == nu) & (smp["commune"] == pk) & smp["s"].between(1500.0, 5000.0)]
    lang_nu = smp.loc[[cand["steep"].idxmax()]].assign(kind="stream_bank")
    # valley villages: one random floor point per 2 km bin, thinned with elevation
    pool = smp[(smp["s"] > 300.0) & (smp["floor"] < 1000.0)]
    bins = (pool["x"] // HAMLET_BIN_M).astype(int) * 1000 + (pool["y"] // HAMLET_BIN_M).astype(int)
    pick = pool.assign(r=rng.random(len(pool)), b=bins).sort_values(["b", "r"]).groupby("b").head(1)
    keep = rng.random(len(pick)) < np.exp(-(pick["floor"].to_numpy() - 150.0) / HAMLET_ELEVATION_SCALE_M)
    pick = pick[keep]
    taken = np.column_stack([np.r_[centres["x"], lang_nu["x"]], np.r_[centres["y"], lang_nu["y"]]])
    far = cKDTree(taken).query(pick[["x", "y"]].to_numpy())[0] > 800.0
    valley_h = pick[far].drop(columns=["r", "b"]).sort_values(["valley", "s"]).assign(kind="valley")
    ham = pd.concat([centres, lang_nu, valley_h], ignore_index=True)
    ham["side"] = np.where(rng.random(len(ham)) < 0.5, -1, 1)
    ham.loc[ham["kind"] == "centre", "side"] = [land.valleys[k].side for k in ham.loc[
        ham["kind"] == "centre", "valley"]]
    # Làng Nủ sits on the bank under the steeper wall
    i_nu = ham.index[ham["kind"] == "stream_bank"][0]
    probe = []
    for sd in (-1, 1):
        px = ham.at[i_nu, "x"] - sd * ham.at[i_nu, "ty"] * 250.0
        py = ham.at[i_nu, "y"] + sd * ham.at[i_nu, "tx"] * 250.0
        row, col = land.cell(*_to_lonlat(px, py))
        probe.append(land.slope[row, col])
    ham.at[i_nu, "side"] = -1 if probe[0] >= probe[1] else 1
    floor_w = np.array([land.valleys[k].spec.floor_m for k in ham["valley"]])
    off = np.where(ham["kind"] == "stream_bank", 35.0, 0.45 * floor_w)
    x1, y1 = _to_xy(DEMO_BOUNDS[2], DEMO_BOUNDS[3])
    ham["x"] = np.clip(ham["x"] - ham["side"] * ham["ty"] * off, 150.0, float(x1) - 150.0)
    ham["y"] = np.clip(ham["y"] + ham["side"] * ham["tx"] * off, 150.0, float(y1) - 150.0)
    # remote farms: up the slope from random valley villages
    src = ham[ham["kind"] == "valley"]
    src = src.iloc[rng.choice(len(src), size=min(REMOTE_FARMS, len(src)), replace=False)]
    up = rng.uniform(450.0, 900.0, len(src)) * np.where(rng.random(len(src)) < 0.5, -1.0, 1.0)
    farms = src.assign(kind="remote",
                       x=np.clip(src["x"] - src["ty"] * up, 200.0, float(x1) - 200.0),
                       y=np.clip(src["y"] + src["tx"] * up, 200.0, float(y1) - 200.0),
                       parent=src.index.to_numpy())
    ham["parent"] = -1
    ham = pd.concat([ham, farms], ignore_index=True)
    ham["lon"], ham["lat"] = _to_lonlat(ham["x"].to_numpy(), ham["y"].to_numpy())
    ham["commune"] = commune_of(ham["lon"].to_numpy(), ham["lat"].to_numpy())
    ham["commune_code"] = [COMMUNES[c].code for c in ham["commune"]]
    # households per commune ∝ real population; split among its hamlets
    pop = np.array([c.population for c in COMMUNES], dtype=float)
    target = np.round(HOUSEHOLDS_TARGET * pop / pop.sum()).astype(int)
    kind = ham["kind"].to_numpy()
    n = np.zeros(len(ham), dtype=int)
    n[kind == "remote"] = rng.integers(1, 4, (kind == "remote").sum())
    n[kind == "stream_bank"] = LANG_NU_HOUSEHOLDS
    weight = np.where(kind == "centre", 5.0, rng.gamma(2.0, 1.0, len(ham)))
    for c in range(len(COMMUNES)):  # twelve communes
        mine = np.flatnonzero((ham["commune"].to_numpy() == c) & np.isin(kind, ["centre", "valley"]))
        left = max(target[c] - n[ham["commune"].to_numpy() == c].sum() - 5 * mine.size, 0)
        n[mine] = 5 + rng.multinomial(left, weight[mine] / weight[mine].sum())
    ham["households"] = n
    counters = ham.groupby(["commune", "kind"]).cumcount() + 1
    names = [COMMUNES[c].name for c in ham["commune"]]
    ham["name"] = np.select(
        [kind == "centre", kind == "stream_bank", kind == "remote"],
        [np.array([f"Trung tâm xã {nm}" for nm in names], dtype=object),
         np.array(["Làng Nủ"] * len(ham), dtype=object),
         np.array([f"Nhà lẻ {k}" for k in counters], dtype=object)],
        np.array([f"Thôn {k}" for k in counters], dtype=object))
    ham["hamlet_id"] = [f"TH-{code}-{i:03d}" for i, code in enumerate(ham["commune_code"], 1)]
    cols = ["hamlet_id", "name", "kind", "commune", "commune_code", "valley", "s", "x", "y", "lon",
            "lat", "tx", "ty", "side", "parent", "households"]
    return ham[cols]


def demo_households(land: DemoLandscape, hamlets: pd.DataFrame, seed: int = DEMO_SEED) -> pd.DataFrame:
    """Households scattered around their hamlets (~5,000; 1–8 people; ~10 % vulnerable).

    Houses spread along the valley (σ 120–250 m) and little across it (they
    stay on the floor and banks); Làng Nủ's houses line one bank 15–55 m from
    the stream. No house is farther than :data:`HOUSEHOLD_RADIUS_M` from its
    hamlet centre. The commune is the one whose cell holds the house.

    Returns
    -------
    DataFrame
        household_id ("HH-02998-0001"), commune_code, lon, lat, people,
        vulnerable (people needing help to move), plus hamlet_id.
    """
    rng = np.random.default_rng([seed, 3])
    h = hamlets.loc[hamlets.index.repeat(hamlets["households"])].reset_index(drop=True)
    kind = h["kind"].to_numpy()
    floor_w = np.array([land.valleys[k].spec.floor_m for k in h["valley"]])
    s_along = np.select([kind == "centre", kind == "stream_bank", kind == "remote"], [250.0, 100.0, 50.0],
                        150.0)
    s_across = np.select([kind == "centre", kind == "remote"], [0.35 * floor_w + 30.0, 50.0],
                         np.minimum(0.35 * floor_w + 15.0, 60.0))
    a = rng.normal(0.0, 1.0, len(h)) * s_along
    b = rng.normal(0.0, 1.0, len(h)) * s_across
    bank = kind == "stream_bank"
    b[bank] = rng.uniform(-20.0, 20.0, bank.sum())  # 15–55 m from the stream (centre is at 35 m)
    r = np.hypot(a, b)
    shrink = np.minimum(1.0, HOUSEHOLD_RADIUS_M / np.maximum(r, 1e-9))
    a, b = a * shrink, b * shrink
    side = h["side"].to_numpy()
    x = h["x"].to_numpy() + a * h["tx"].to_numpy() - side * b * h["ty"].to_numpy()
    y = h["y"].to_numpy() + a * h["ty"].to_numpy() + side * b * h["tx"].to_numpy()
    x1, y1 = _to_xy(DEMO_BOUNDS[2], DEMO_BOUNDS[3])
    x, y = np.clip(x, 20.0, float(x1) - 20.0), np.clip(y, 20.0, float(y1) - 20.0)
    lon, lat = _to_lonlat(x, y)
    people = 1 + rng.binomial(7, 0.4, len(h))
    vuln = np.where(rng.random(len(h)) < VULNERABLE_SHARE,
                    np.minimum(1 + rng.binomial(people - 1, 0.15), people), 0)
    code = np.array([COMMUNES[c].code for c in commune_of(lon, lat)], dtype=object)
    out = pd.DataFrame({"commune_code": code, "lon": np.round(lon, 6), "lat": np.round(lat, 6),
                        "people": people.astype(np.int64), "vulnerable": vuln.astype(np.int64),
                        "hamlet_id": h["hamlet_id"].to_numpy()})
    out = out.sort_values(["commune_code", "hamlet_id", "lon", "lat"], kind="stable").reset_index(drop=True)
    num = out.groupby("commune_code").cumcount() + 1
    out.insert(0, "household_id", [f"HH-{c}-{k:04d}" for c, k in zip(out["commune_code"], num, strict=True)])
    return out


def hazard_exposed(land: DemoLandscape, lon, lat) -> np.ndarray:
    """Whether points are in the demo's hazard zones (for sizing shelters only).

    Flash flood: within 250 m of a stream and less than 8 m above its floor;
    landslide: a slope steeper than :data:`STEEP_SLOPE_DEG` in the house's
    cell or next to it.
    A rough screening of the synthetic terrain, not the hazard model.
    """
    row, col = land.cell(lon, lat)
    flood = (land.dist[row, col] < 250.0) & (land.height[row, col] < 8.0)
    steep = ndimage.maximum_filter(land.slope, size=3)[row, col] > STEEP_SLOPE_DEG
    return flood | steep


#: Shelter kinds in the order a commune gets them: (kind, name pattern, capacity weight).
SHELTER_KINDS = (
    ("commune_office", "UBND xã {name}", 0.7),
    ("school", "Trường THCS {name}", 1.0),
    ("health_station", "Trạm Y tế xã {name}", 0.35),
    ("school", "Trường Tiểu học {name}", 0.9),
)


def demo_shelters(land: DemoLandscape, hamlets: pd.DataFrame, households: pd.DataFrame,
                  seed: int = DEMO_SEED) -> pd.DataFrame:
    """2–4 shelters per commune on safer ground near its largest villages.

    Safer ground: gentle (slope < 12°), 30–250 m above the nearest valley
    floor, at least 200 m from any stream (relaxed step by step where a
    commune has none). Capacities add up to :data:`SHELTER_CAPACITY_SHARE` of
    the people living in the hazard zones (:func:`hazard_exposed`), shared
    among communes unevenly, so some shelters are not enough.

    Returns
    -------
    DataFrame
        shelter_id ("SH-02998-1"), name, lon, lat, capacity, kind, commune_code.
    """
    rng = np.random.default_rng([seed, 4])
    glon, glat = np.meshgrid(land.lon, land.lat)
    label = commune_of(glon, glat)
    levels = ((12.0, 30.0, 200.0), (18.0, 20.0, 150.0), (25.0, 10.0, 100.0))
    exposed = hazard_exposed(land, households["lon"].to_numpy(), households["lat"].to_numpy())
    people_exposed = households["people"].where(exposed, 0).groupby(households["commune_code"]).sum()
    rows = []
    for c, com in enumerate(COMMUNES):  # twelve communes, 2–4 shelters each
        mine = hamlets[(hamlets["commune"] == c) & (hamlets["kind"] != "remote")]
        mine = mine.sort_values("households", ascending=False)
        count = int(rng.integers(2, 5))
        used: list[tuple[float, float]] = []
        for k in range(count):
            tgt = mine.iloc[k % len(mine)]
            for slope_max, h_min, d_min in levels:
                ok = ((label == c) & (land.slope < slope_max) & (land.height >= h_min)
                      & (land.height <= 250.0) & (land.dist >= d_min))
                r_, c_ = np.nonzero(ok)
                if r_.size == 0:
                    continue
                px, py = _to_xy(land.lon[c_], land.lat[r_])
                dd = np.hypot(px - tgt["x"], py - tgt["y"])
                for ux, uy in used:
                    dd = np.where(np.hypot(px - ux, py - uy) < 300.0, np.inf, dd)
                j = int(np.argmin(dd))
                if np.isfinite(dd[j]):
                    used.append((float(px[j]), float(py[j])))
                    break
            else:  # pragma: no cover - the synthetic terrain always has a terrace somewhere
                raise RuntimeError(f"no safe ground for a shelter in {com.name}")
            kind, pattern, w = SHELTER_KINDS[k]
            rows.append({"commune_code": com.code, "k": k + 1, "name": pattern.format(name=com.name),
                         "x": used[-1][0], "y": used[-1][1], "kind": kind, "w": w})
    sh = pd.DataFrame(rows)
    total = SHELTER_CAPACITY_SHARE * float(people_exposed.sum())
    need = people_exposed.reindex([c.code for c in COMMUNES], fill_value=0).astype(float)
    share = need * rng.uniform(0.55, 1.05, len(need)) + 50.0
    per_commune = share / share.sum() * total
    wsum = sh.groupby("commune_code")["w"].transform("sum")
    cap = per_commune.reindex(sh["commune_code"]).to_numpy() * sh["w"] / wsum
    sh["capacity"] = np.maximum(10 * np.round(cap / 10.0), 30).astype(np.int64)
    lon, lat = _to_lonlat(sh["x"].to_numpy(), sh["y"].to_numpy())
    sh["lon"], sh["lat"] = np.round(lon, 6), np.round(lat, 6)
    sh["shelter_id"] = [f"SH-{c}-{k}" for c, k in zip(sh["commune_code"], sh["k"], strict=True)]
    return sh[["shelter_id", "name", "lon", "lat", "capacity", "kind", "commune_code"]]


#: Communes that get a planned resettlement site (khu tái định cư) and its capacity [people].
RESETTLEMENT_SITES = (("02998", 150), ("02947", 150), ("04342", 120))


def demo_resettlement_sites(land: DemoLandscape, shelters: pd.DataFrame,
                            seed: int = DEMO_SEED) -> pd.DataFrame:
    """Planned resettlement sites (kind ``resettlement``) for permanent relocation.

    On the gentlest, driest ground of the commune: slope < 8°, 40–250 m
    above the valley floor, at least 300 m from any stream and 400 m from
    the commune's shelters (Decree 06/2024 style "safe place" siting is not
    modelled; this is a demo choice). Not used as evacuation shelters.

    Returns
    -------
    DataFrame
        Same columns as :func:`demo_shelters` (``shelter_id`` "TDC-02998").
    """
    glon, glat = np.meshgrid(land.lon, land.lat)
    label = commune_of(glon, glat)
    codes = [c.code for c in COMMUNES]
    rows = []
    for code, capacity in RESETTLEMENT_SITES:
        c = codes.index(code)
        ok = ((label == c) & (land.slope < 8.0) & (land.height >= 40.0) & (land.height <= 250.0)
              & (land.dist >= 300.0))
        r_, c_ = np.nonzero(ok)
        if r_.size == 0:  # pragma: no cover - the synthetic terrain has terraces in these communes
            raise RuntimeError(f"no ground for a resettlement site in {COMMUNES[c].name}")
        px, py = _to_xy(land.lon[c_], land.lat[r_])
        mine = shelters[shelters["commune_code"] == code]
        sx, sy = _to_xy(mine["lon"].to_numpy(), mine["lat"].to_numpy())
        far = np.min(np.hypot(px[:, None] - sx[None, :], py[:, None] - sy[None, :]), axis=1) >= 400.0
        cx, cy = np.median(px), np.median(py)
        score = np.where(far, land.slope[r_, c_] + np.hypot(px - cx, py - cy) / 500.0, np.inf)
        j = int(np.argmin(score))
        lon, lat = _to_lonlat(np.array([px[j]]), np.array([py[j]]))
        rows.append({"shelter_id": f"TDC-{code}", "name": f"Khu tái định cư xã {COMMUNES[c].name}",
                     "lon": round(float(lon[0]), 6), "lat": round(float(lat[0]), 6), "capacity": capacity,
                     "kind": "resettlement", "commune_code": code})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- roads

#: Roads run this far from the stream, on the valley floor (at most) [m].
ROAD_OFFSET_M = 150.0
#: Road stops (junctions, village access points) closer than this share one node [m].
MIN_EDGE_M = 20.0
#: Hamlets farther than this from their valley road get a track to their centre [m].
SPUR_MIN_M = 40.0
#: OSM ``maxspeed`` tags of the main roads [km/h]: synthetic values for winding mountain roads,
#: below the legal maxima [unverified]; lesser roads carry none, as often in OpenStreetMap, and
#: routing imputes them (``osmnx.routing.add_edge_speeds``).
MAXSPEED_KPH = {"trunk": "60", "primary": "60", "tertiary": "50", "residential": "40"}
#: One-way streets (a couplet beside the main road) in these communes' centres.
ONEWAY_TOWNS = {"02947": "Đường nội thị Phố Ràng", "02989": "Đường nội thị Bảo Hà"}


@dataclass
class _Way:
    line: LineString  # local metres
    highway: str
    name: str
    osmid: int
    oneway: bool = False


def _road_line(v: ValleyGeometry, s_end: float, rng: np.random.Generator) -> np.ndarray:
    """A road along a valley floor, mouth → ``s_end``: offset to the road side, gently wiggling."""
    n = max(int(np.ceil(s_end / 150.0)), 2) + 1
    s = np.linspace(0.0, s_end, n)
    xy = shapely.get_coordinates(shapely.line_interpolate_point(v.line, s))
    t = np.gradient(xy, axis=0)
    t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)[:, None]
    nrm = np.column_stack([-t[:, 1], t[:, 0]]) * v.side
    wiggle = ndimage.gaussian_filter1d(rng.normal(0.0, 1.0, n), 2.0) * 40.0
    off = min(0.6 * v.spec.floor_m, ROAD_OFFSET_M) + wiggle * np.sin(np.linspace(0.0, np.pi, n))
    return xy + nrm * off[:, None]


def _add_stop(stops: list[float], s: float) -> float:
    """Add a node position ``s`` [m along the way], or reuse one closer than :data:`MIN_EDGE_M`."""
    near = np.asarray(stops)
    j = int(np.argmin(np.abs(near - s)))
    if abs(near[j] - s) < MIN_EDGE_M:
        return float(near[j])
    stops.append(float(s))
    return float(s)


def demo_roads(land: DemoLandscape, hamlets: pd.DataFrame, shelters: pd.DataFrame,
               seed: int = DEMO_SEED) -> nx.MultiDiGraph:
    """The road graph, as osmnx would build it from OpenStreetMap.

    Quốc lộ 70 (trunk) along the Chảy valley, a primary road along the Red
    River, tertiary roads up the named valleys to the commune centres,
    unclassified roads up the gullies that have villages, tracks into the
    villages, paths to remote farms, access roads to the shelters, a few
    one-way streets in Phố Ràng and Bảo Hà, and unclassified links joining
    whatever would otherwise be cut off. Roads follow the valley floors.

    Returns
    -------
    networkx.MultiDiGraph
        Graph attribute ``crs = "EPSG:4326"``; integer node ids with ``x``,
        ``y`` [degrees] and ``street_count``; edges with ``osmid``,
        ``highway``, ``name``, ``oneway``, ``reversed``, ``length``
        [m, great-circle], ``geometry`` (LineString, lon/lat) and, on the
        main roads, ``maxspeed`` [km/h]; two-way roads as two opposite edges,
        key 0. Strongly connected.
    """
    import osmnx as ox

    rng = np.random.default_rng([seed, 5])
    ways: list[_Way] = []
    way_of_valley: dict[int, int] = {}
    stops: list[list[float]] = []
    village = hamlets[hamlets["kind"] != "remote"]
    index = {g.spec.name: i for i, g in enumerate(land.valleys)}
    reach = np.full(len(land.valleys), -1.0)  # how far up each valley a road must go [m]
    np.maximum.at(reach, village["valley"].to_numpy(), village["s"].to_numpy() + 150.0)
    for k in range(len(land.valleys) - 1, -1, -1):  # tributaries come after their parents
        v = land.valleys[k]
        if v.spec.parent is None:
            reach[k] = v.length
        elif reach[k] >= 0.0:
            p = index[v.spec.parent]
            junction = land.valleys[p].line.project(Point(v.line.coords[0]))
            reach[p] = max(reach[p], junction + 50.0)
    for k, v in enumerate(land.valleys):  # parents first
        if reach[k] < 0.0:
            continue
        xy = _road_line(v, min(float(reach[k]), v.length), rng)
        if v.spec.parent is not None:
            pw = way_of_valley[index[v.spec.parent]]
            s_j = _add_stop(stops[pw], ways[pw].line.project(Point(xy[0])))
            xy[0] = shapely.get_coordinates(ways[pw].line.interpolate(s_j))[0]
        way_of_valley[k] = len(ways)
        highway = v.spec.road or "unclassified"
        ways.append(_Way(LineString(xy), highway, v.spec.road_name, osmid=100_000 + k))
        stops.append([0.0, float(LineString(xy).length)])
    # villages: access point on their valley's road (a track in when it is far)
    hx, hy = hamlets["x"].to_numpy(), hamlets["y"].to_numpy()
    node_xy: list[tuple[float, float]] = []
    node_key: dict[tuple[float, float], int] = {}

    def node(x: float, y: float) -> int:
        key = (round(float(x), 3), round(float(y), 3))
        if key not in node_key:
            node_key[key] = len(node_xy) + 1
            node_xy.append(key)
        return node_key[key]

    edges: list[tuple[int, int, LineString, str, str, int, bool]] = []
    access: dict[int, tuple[int, float]] = {}
    for i in village.index:  # ~150 villages; an access point near another stop shares its node
        w = way_of_valley[int(hamlets.at[i, "valley"])]
        access[i] = (w, _add_stop(stops[w], ways[w].line.project(Point(hx[i], hy[i]))))
    for w, way in enumerate(ways):
        ss = np.unique(stops[w])  # exact positions: a junction is the same point on both ways
        ids = [node(*shapely.get_coordinates(way.line.interpolate(s))[0]) for s in ss]
        for (s_a, a), (s_b, b) in zip(zip(ss[:-1], ids[:-1], strict=True), zip(ss[1:], ids[1:], strict=True),
                                      strict=True):
            if a != b:
                edges.append((a, b, shapely.ops.substring(way.line, s_a, s_b), way.highway, way.name,
                              way.osmid, False))
    hamlet_node: dict[int, int] = {}
    next_osmid = 200_000
    for i, (w, s_a) in access.items():
        p = shapely.get_coordinates(ways[w].line.interpolate(s_a))[0]
        a = node(*p)
        if np.hypot(hx[i] - p[0], hy[i] - p[1]) > SPUR_MIN_M:
            b = node(hx[i], hy[i])
            edges.append((a, b, LineString([p, (hx[i], hy[i])]), "track",
                          f"Đường vào {hamlets.at[i, 'name']}", next_osmid, False))
            next_osmid += 1
            hamlet_node[i] = b
        else:
            hamlet_node[i] = a
    for i in hamlets.index[hamlets["kind"] == "remote"]:  # paths up to the farms
        a = hamlet_node[int(hamlets.at[i, "parent"])]
        pa = np.array(node_xy[a - 1])
        pb = np.array([hx[i], hy[i]])
        bend = 0.5 * (pa + pb) + rng.normal(0.0, 60.0, 2)
        b = node(*pb)
        edges.append((a, b, LineString([pa, bend, pb]), "path", "Đường mòn", next_osmid, False))
        next_osmid += 1
        hamlet_node[i] = b
    # shelters: an access road from the nearest village or road node
    sx, sy = _to_xy(shelters["lon"].to_numpy(), shelters["lat"].to_numpy())
    base = np.array(node_xy)
    tree = cKDTree(base)
    _, near = tree.query(np.column_stack([sx, sy]))
    for j in range(len(shelters)):  # ~35 shelters
        a = int(near[j]) + 1
        b = node(sx[j], sy[j])
        if a != b:
            edges.append((a, b, LineString([base[near[j]], (sx[j], sy[j])]), "unclassified",
                          f"Đường vào {shelters['name'].iloc[j]}", next_osmid, False))
            next_osmid += 1
    # one-way couplets beside the main road in two towns
    centre_of = {hamlets.at[i, "commune_code"]: hamlet_node[i]
                 for i in hamlets.index[hamlets["kind"] == "centre"]}
    main = {e[0]: e for e in edges if e[3] in ("trunk", "primary")}
    for code, street in ONEWAY_TOWNS.items():
        u = centre_of[code]
        # the main-road edge leaving the centre's access node (or the nearest one)
        start = min(main, key=lambda n: np.hypot(*(np.array(node_xy[n - 1]) - node_xy[u - 1])))
        a, b, geom, *_ = main[start]
        pts = shapely.get_coordinates(shapely.line_interpolate_point(geom, [0.3, 0.7], normalized=True))
        t = pts[1] - pts[0]
        off = np.array([-t[1], t[0]]) / max(np.hypot(*t), 1e-9) * 60.0
        c, d = node(*(pts[0] + off)), node(*(pts[1] + off))
        pa, pb = np.array(node_xy[a - 1]), np.array(node_xy[b - 1])
        for (p, q), (np_, nq) in (((a, c), (pa, pts[0] + off)), ((c, d), (pts[0] + off, pts[1] + off)),
                                  ((d, b), (pts[1] + off, pb))):
            edges.append((p, q, LineString([np_, nq]), "residential", street, next_osmid, True))
        next_osmid += 1
    # join whatever is cut off to the largest part, by the shortest link
    n_nodes = len(node_xy)
    while True:
        u = np.array([e[0] for e in edges]) - 1
        v = np.array([e[1] for e in edges]) - 1
        adj = sparse.coo_array((np.ones(u.size), (u, v)), shape=(n_nodes, n_nodes))
        ncomp, lab = csgraph.connected_components(adj, directed=False)
        if ncomp == 1:
            break
        big = np.bincount(lab).argmax()
        inside = np.flatnonzero(lab == big)
        outside = np.flatnonzero(lab != big)
        pts_all = np.array(node_xy)
        dd, jj = cKDTree(pts_all[inside]).query(pts_all[outside])
        o = int(np.argmin(dd))
        a, b = int(inside[jj[o]]) + 1, int(outside[o]) + 1
        edges.append((a, b, LineString([node_xy[a - 1], node_xy[b - 1]]), "unclassified",
                      "Đường liên thôn", next_osmid, False))
        next_osmid += 1
    return _to_osmnx_graph(node_xy, edges, ox)


def _to_osmnx_graph(node_xy: list[tuple[float, float]],
                    edges: list[tuple[int, int, LineString, str, str, int, bool]], ox) -> nx.MultiDiGraph:
    """Nodes and undirected/one-way edges (local metres) → an osmnx-style MultiDiGraph."""
    xy = np.array(node_xy)
    lon, lat = _to_lonlat(xy[:, 0], xy[:, 1])
    lon, lat = np.round(lon, 7), np.round(lat, 7)
    geoms = shapely.transform(np.array([e[2] for e in edges], dtype=object),
                              lambda c: np.round(np.column_stack(_to_lonlat(c[:, 0], c[:, 1])), 7))
    coords = [shapely.get_coordinates(g) for g in geoms]
    for (a, b, *_), c in zip(edges, coords, strict=True):  # ends exactly on the nodes
        c[0] = (lon[a - 1], lat[a - 1])
        c[-1] = (lon[b - 1], lat[b - 1])
    counts = np.array([len(c) for c in coords])
    allc = np.concatenate(coords)
    seg = ox.distance.great_circle(allc[:-1, 1], allc[:-1, 0], allc[1:, 1], allc[1:, 0])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    seg = np.append(seg, 0.0)
    seg[np.cumsum(counts) - 1] = 0.0  # no segment across two edges
    lengths = np.add.reduceat(seg, starts)
    g = nx.MultiDiGraph(crs="EPSG:4326", simplified=True, created_with="ewarn.demo")
    for i in range(len(node_xy)):
        g.add_node(i + 1, x=float(lon[i]), y=float(lat[i]))
    for (a, b, _, highway, name, osmid, oneway), c, ln in zip(edges, coords, lengths, strict=True):
        if a == b or g.has_edge(a, b) or g.has_edge(b, a):
            continue
        attrs = {"osmid": osmid, "highway": highway, "name": name, "oneway": oneway,
                 "length": round(float(ln), 3)}
        if highway in MAXSPEED_KPH:
            attrs["maxspeed"] = MAXSPEED_KPH[highway]
        g.add_edge(a, b, key=0, reversed=False, geometry=LineString(c), **attrs)
        if not oneway:
            g.add_edge(b, a, key=0, reversed=True, geometry=LineString(c[::-1]), **attrs)
    nx.set_node_attributes(g, ox.stats.count_streets_per_node(g), name="street_count")
    return g


# --------------------------------------------------------------------------- contacts

_SURNAMES = ("Nguyễn", "Hoàng", "Lò", "Vàng", "Lý", "Triệu", "Đặng", "Bàn", "Nông", "Hà", "Lương", "Phạm",
             "Trần", "Giàng", "Sùng", "La")
_MIDDLE = ("Văn", "Thị", "Đức", "Quang", "Minh", "Thanh", "Hữu", "Ngọc")
_GIVEN = ("Hùng", "Lan", "Minh", "Tuấn", "Hoa", "Thắng", "Sơn", "Hạnh", "Dũng", "Hương", "Phong", "Nam",
          "Bình", "Cường", "Thảo", "Khánh", "Long", "Mai")
#: Roles of the two demo officials of each commune (the second alternates).
CONTACT_ROLES = ("Chủ tịch UBND xã", ("Trưởng Công an xã", "Chỉ huy trưởng Ban Chỉ huy quân sự xã"))
#: Role of the province duty officers (one of the default ``[alerts] operator_roles``).
OPERATOR_ROLE = "Ban Chỉ huy PCTT tỉnh"
#: Demo phone numbers: Viettel mobile range 098 (valid format for ``phonenumbers``), flagged demo.
DEMO_PHONE_PREFIX = "+8498"


def demo_contacts(seed: int = DEMO_SEED) -> pd.DataFrame:
    """Two demo officials per commune and two province duty officers, with DEMO phone numbers.

    The chairman of the commune People's Committee and the head of the
    commune police or military command. Names are synthetic; numbers are
    valid-format Vietnamese mobile numbers (+8498…) flagged ``demo`` so that
    no gateway sends to them. Language "vi"; the second official of each
    commune asks for unaccented messages (one GSM-7 SMS).

    Returns
    -------
    DataFrame
        commune_code, name, role, phone (E.164), language, unaccented, demo.
    """
    rng = np.random.default_rng([seed, 6])
    n = 2 * len(COMMUNES)
    names = [f"{_SURNAMES[a]} {_MIDDLE[b]} {_GIVEN[c]}" for a, b, c in zip(
        rng.integers(0, len(_SURNAMES), n), rng.integers(0, len(_MIDDLE), n),
        rng.integers(0, len(_GIVEN), n), strict=True)]
    numbers = rng.choice(10_000_000, size=n, replace=False)
    roles = [CONTACT_ROLES[0] if i % 2 == 0 else CONTACT_ROLES[1][(i // 2) % 2] for i in range(n)]
    officials = pd.DataFrame({
        "commune_code": [c.code for c in COMMUNES for _ in range(2)],
        "name": names,
        "role": roles,
        "phone": [f"{DEMO_PHONE_PREFIX}{k:07d}" for k in numbers],
        "language": "vi",
        "unaccented": [i % 2 == 1 for i in range(n)],
        "demo": True,
    })
    # two duty officers of the province's disaster-control command: they get the province summary
    # of each cycle and the service's own incident alerts (settings [alerts] operator_roles)
    extra = rng.choice(10_000_000, size=2 * n, replace=False)
    extra = [k for k in extra if k not in set(numbers)][:2]
    operators = pd.DataFrame({
        "commune_code": [COMMUNES[0].code] * 2,
        "name": ["Trực ban PCTT tỉnh (demo)", "Duty officer (demo)"],
        "role": [OPERATOR_ROLE, OPERATOR_ROLE],
        "phone": [f"{DEMO_PHONE_PREFIX}{k:07d}" for k in extra],
        "language": ["vi", "en"],
        "unaccented": [False, False],
        "demo": True,
    })
    return pd.concat([officials, operators], ignore_index=True)


# --------------------------------------------------------------------------- region and storm


def build_demo_region(dest: Path, seed: int = DEMO_SEED, *, overwrite: bool = False) -> Path:
    """Generate the demo region and write it as a region folder (atomic).

    Parameters
    ----------
    dest : Path
        Region folder to create.
    seed : int
        Random seed; the same seed gives byte-identical files.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    Path
        The region folder (absolute).

    Raises
    ------
    ewarn.region.RegionError
        The destination exists and ``overwrite`` is false, or is not writable.
    """
    from ewarn.region import write_region

    land = demo_landscape(seed)
    communes = demo_communes()
    hamlets = demo_hamlets(land, seed)
    households = demo_households(land, hamlets, seed)
    shelters = demo_shelters(land, hamlets, households, seed)
    shelters = pd.concat([shelters, demo_resettlement_sites(land, shelters, seed)], ignore_index=True)
    roads = demo_roads(land, hamlets, shelters, seed)
    legacy = dict(zip(communes["code"], communes["legacy_province"], strict=True))
    return write_region(
        dest, name=DEMO_NAME, communes=communes.drop(columns="legacy_province"),
        households=households.drop(columns="hamlet_id"), shelters=shelters.drop(columns="commune_code"),
        contacts=demo_contacts(seed), terrain=land.terrain, roads=roads, legacy_province=legacy,
        meta={"demo": True, "seed": int(seed)},
        description=("Vùng demo tổng hợp quanh Bảo Yên – Phúc Khánh (Lào Cai): địa hình, hộ dân, "
                     "điểm sơ tán, đường và cán bộ đều là dữ liệu mô phỏng; tên và mã xã là thật. "
                     "Synthetic demo region; commune names and codes are real."),
        overwrite=overwrite)


def build_demo_storm(region: Region, dest_file: Path, seed: int = DEMO_SEED, *, members: int = 0) -> Path:
    """Generate the Yagi-like demo storm over ``region`` and write it as CF NetCDF.

    Parameters
    ----------
    region : Region
        The demo region (its bounds set the grid, its terrain the orographic
        enhancement).
    dest_file : Path
        NetCDF file to write (atomically; parent folders are created).
    seed : int
        Seed of the convective cells and ensemble perturbations.
    members : int
        Ensemble members (0: a deterministic forecast without ``member`` dim).

    Returns
    -------
    Path
        ``dest_file``.
    """
    ds = synthetic.demo_storm(bounds=region.bounds, terrain=region.terrain, members=members, seed=seed,
                              source=DEMO_SOURCE)
    return synthetic.write_forecast(ds, Path(dest_file))
