"""A synthetic mountain province for the routing benchmark (seeded, built in seconds).

Roads: a jittered 450 × 450 grid of nodes 250 m apart (112 km square, about the
size of Lào Cai province, 13,257 km²) in UTM zone 48N, given as lon/lat. Every
90th row/column is a primary road, every 30th a secondary one (all kept); the
local edges between them are tertiary / unclassified / track / path roads, 60 %
of them kept (the rest deleted: mountain road networks are sparse and tree-
like), 3 % of those one-way. About 202,500 nodes and 250,000 roads, so
~500,000 directed arcs for motorbikes.

People: 5,000 villages at random places, 50,000 households scattered around
them (σ = 120 m), 1 + Poisson(3) people each (mean 4; Vietnam's mean household
is 3.5 people, 2019 census), a vulnerable member with probability 1 - 0.85^people.

Shelters: 300 at random places, capacities a Dirichlet(2) share of 1.1 × the
people (so some shelters are small and the nearest one is often full).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

#: UTM zone 48N (EPSG:32648) origin of the grid [m]: near Sa Pa, Lào Cai (103.6 E, 22.1 N).
X0, Y0 = 360_000.0, 2_445_000.0
CRS = "EPSG:32648"


@dataclass(frozen=True)
class Province:
    """Arrays of the synthetic province (see the module docstring)."""

    node_id: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    highway: np.ndarray
    oneway: np.ndarray
    hh_lon: np.ndarray
    hh_lat: np.ndarray
    people: np.ndarray
    vulnerable: np.ndarray
    sh_lon: np.ndarray
    sh_lat: np.ndarray
    capacity: np.ndarray


def synthetic_province(*, side: int = 450, spacing_m: float = 250.0, keep: float = 0.6,
                       n_households: int = 50_000, n_villages: int = 5_000, n_shelters: int = 300,
                       capacity_factor: float = 1.1, seed: int = 20240907) -> Province:
    """Build the province (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    n = side * side
    ii, jj = np.divmod(np.arange(n), side)
    x = X0 + jj * spacing_m + rng.normal(0, spacing_m * 0.2, n)
    y = Y0 + ii * spacing_m + rng.normal(0, spacing_m * 0.2, n)
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(x, y)

    idx = np.arange(n).reshape(side, side)
    # horizontal edges along rows (row index i), vertical ones along columns (column index j)
    hu, hv = idx[:, :-1].ravel(), idx[:, 1:].ravel()
    vu, vv = idx[:-1, :].ravel(), idx[1:, :].ravel()
    line = np.r_[np.repeat(np.arange(side), side - 1), np.tile(np.arange(side), side - 1)]
    u, v = np.r_[hu, vu], np.r_[hv, vv]
    local = rng.choice(np.array(["tertiary", "unclassified", "track", "path"]), u.size,
                       p=[0.15, 0.35, 0.35, 0.15])
    hw = np.where(line % 90 == 0, "primary", np.where(line % 30 == 0, "secondary", local))
    arterial = line % 30 == 0
    kept = arterial | (rng.random(u.size) < keep)
    u, v, hw, arterial = u[kept], v[kept], hw[kept], arterial[kept]
    one = ~arterial & (rng.random(u.size) < 0.03)
    flip = rng.random(u.size) < 0.5
    u, v = np.where(flip, v, u), np.where(flip, u, v)
    # two-way roads: both directions; one-way roads: one row (network_from_arrays adds a walk-only reverse)
    eu = np.r_[u, v[~one]]
    ev = np.r_[v, u[~one]]
    ehw = np.r_[hw, hw[~one]]
    eone = np.r_[one, one[~one]]

    village = rng.integers(0, n_villages, n_households)
    vx = rng.uniform(x.min(), x.max(), n_villages)
    vy = rng.uniform(y.min(), y.max(), n_villages)
    hx = vx[village] + rng.normal(0, 120.0, n_households)
    hy = vy[village] + rng.normal(0, 120.0, n_households)
    hlon, hlat = to_ll.transform(hx, hy)
    people = 1 + rng.poisson(3.0, n_households)
    vulnerable = (rng.random(n_households) < 1 - 0.85 ** people).astype(np.int64)

    sx = rng.uniform(x.min(), x.max(), n_shelters)
    sy = rng.uniform(y.min(), y.max(), n_shelters)
    slon, slat = to_ll.transform(sx, sy)
    share = rng.dirichlet(np.full(n_shelters, 2.0))
    capacity = rng.multinomial(int(np.ceil(capacity_factor * people.sum())), share)
    return Province(node_id=np.arange(n, dtype=np.int64) + 10_000_000, lon=np.asarray(lon),
                    lat=np.asarray(lat), edge_u=eu, edge_v=ev, highway=ehw, oneway=eone,
                    hh_lon=np.asarray(hlon), hh_lat=np.asarray(hlat), people=people.astype(np.int64),
                    vulnerable=vulnerable, sh_lon=np.asarray(slon), sh_lat=np.asarray(slat),
                    capacity=capacity.astype(np.int64))
