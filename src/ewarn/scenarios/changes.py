"""A scenario's changes to the region: shelters, new settlements, road closures.

:func:`apply_changes` returns a copy of a :class:`~ewarn.region.Region` in
memory (files untouched) with

- shelters opened (a new ``shelter_id``), closed (the row removed) or resized
  (a new ``capacity``);
- new settlements: ``households`` households placed uniformly at random inside
  the settlement's polygon, deterministically from the scenario's seed (and
  the settlement's position in the file), each with ``1 + Poisson(m − 1)``
  people so that the mean is ``m`` = ``people_per_household`` (default: the
  region's mean household size) and ``Binomial(people, s)`` vulnerable people
  with ``s`` = ``vulnerable_share`` (default: the region's share of
  vulnerable people). Each household belongs to ``commune_code`` when given,
  else to the commune its point lies in.

Road closures are not applied to the graph here: :func:`road_closures`
normalizes them (way ids, polygons) for the routing room's planner closures,
and :func:`check_closures` reports way ids the road graph does not have and
polygons that cross no road.

Every problem names the scenario file, the entry of the array of tables and
the key (:class:`~ewarn.scenarios.schema.ScenarioError`).

Sources: drawing points uniformly inside a polygon by rejection from its
bounding box, and household sizes as 1 + Poisson, are standard synthetic
population methods (design choices, not calibrated); the defaults come from
the region's own households.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely

from ewarn.errors import Problem
from ewarn.region import BOUNDS_MARGIN_DEG, COORD_DECIMALS, Region
from ewarn.scenarios.schema import Changes, ScenarioError, Settlement, ShelterChange

__all__ = [
    "RoadClosures",
    "apply_changes",
    "check_closures",
    "road_closures",
    "settlement_households",
]

#: Kind of an opened shelter when the scenario names none.
DEFAULT_SHELTER_KIND = "other"


@dataclass(frozen=True)
class RoadClosures:
    """Roads a planner closes, as routing takes them.

    Attributes
    ----------
    way_ids : tuple of int
        OSM way ids closed over their whole length (sorted, unique).
    polygons : geopandas.GeoSeries
        Areas (EPSG:4326); every road crossing one is closed. Index: the
        polygon's name (or ``polygon N``, 1-based).
    """

    way_ids: tuple[int, ...]
    polygons: gpd.GeoSeries

    def __bool__(self) -> bool:
        return bool(self.way_ids) or len(self.polygons) > 0


def road_closures(changes: Changes) -> RoadClosures:
    """The ``close_ways`` and ``close_polygons`` of a scenario, normalized.

    Parameters
    ----------
    changes : Changes
        The validated ``[changes]`` table.

    Returns
    -------
    RoadClosures
    """
    names = [p.name or f"polygon {i + 1}" for i, p in enumerate(changes.close_polygons)]
    polys = gpd.GeoSeries([p.polygon for p in changes.close_polygons], index=pd.Index(names, dtype=object),
                          crs="EPSG:4326")
    return RoadClosures(way_ids=tuple(sorted(set(changes.close_ways))), polygons=polys)


def _edge_frame(roads: nx.MultiDiGraph) -> tuple[np.ndarray, np.ndarray]:
    """(osmid per edge as a set-able object array, edge geometries) of an osmnx graph."""
    osmids, geoms = [], []
    xy = {n: (d["x"], d["y"]) for n, d in roads.nodes(data=True)}
    for u, v, d in roads.edges(data=True):
        osmids.append(d.get("osmid"))
        geoms.append(d.get("geometry") or shapely.LineString([xy[u], xy[v]]))
    return np.array(osmids, dtype=object), np.array(geoms, dtype=object)


def check_closures(closures: RoadClosures, roads: nx.MultiDiGraph, *, file: str = "scenario"
                   ) -> list[Problem]:
    """Way ids the graph lacks (errors) and polygons that cross no road (warnings).

    Parameters
    ----------
    closures : RoadClosures
    roads : networkx.MultiDiGraph
        The region's osmnx road graph (EPSG:4326); an edge's ``osmid`` may be
        one id or a list (simplified graphs).
    file : str
        The scenario file, named in the problems.

    Returns
    -------
    list of Problem
    """
    if not closures:
        return []
    osmids, geoms = _edge_frame(roads)
    known: set[int] = set()
    for o in osmids:
        known.update(int(x) for x in (o if isinstance(o, list) else [o]) if x is not None)
    problems = []
    missing = [w for w in closures.way_ids if w not in known]
    if missing:
        sample = ", ".join(str(w) for w in sorted(known)[:5])
        listed = ", ".join(map(str, missing))
        problems.append(Problem(file, f"way id(s) {listed} are not in the region's road network (its way "
                                      f"ids are like {sample}); check the OSM way ids",
                                field="changes.close_ways"))
    if len(closures.polygons):
        tree = shapely.STRtree(geoms)
        hit_poly, _ = tree.query(np.asarray(closures.polygons.values), predicate="intersects")
        for i in sorted(set(range(len(closures.polygons))) - set(hit_poly.tolist())):
            problems.append(Problem(file, "the polygon crosses no road of the region, so it closes nothing; "
                                          "draw it across the road",
                                    where=f"entry {i + 1} of [[changes.close_polygons]]",
                                    field="changes.close_polygons.coordinates", severity="warning"))
    return problems


def settlement_households(settlement: Settlement, *, people_mean: float, vulnerable_share: float,
                          rng: np.random.Generator) -> pd.DataFrame:
    """Households of a new settlement: points inside its polygon, sizes and vulnerable people.

    Parameters
    ----------
    settlement : Settlement
        The validated ``[[changes.settlements]]`` entry.
    people_mean : float
        Mean household size when the settlement gives none [people].
    vulnerable_share : float
        Share of people needing help when the settlement gives none.
    rng : numpy.random.Generator
        Random stream (seeded by the caller).

    Returns
    -------
    pandas.DataFrame
        ``lon``, ``lat`` [deg, rounded to :data:`ewarn.region.COORD_DECIMALS`],
        ``people`` (≥ 1), ``vulnerable`` (0..people), one row per household.
    """
    n = settlement.households
    poly = settlement.area
    w, s, e, nn = poly.bounds
    frac = max(poly.area / max((e - w) * (nn - s), 1e-18), 1e-3)
    lon = np.empty(0)
    lat = np.empty(0)
    while lon.size < n:  # a few rounds: each draws enough for the polygon's share of its box
        k = int(np.ceil((n - lon.size) / frac * 1.2)) + 16
        x, y = rng.uniform(w, e, k), rng.uniform(s, nn, k)
        inside = shapely.contains_xy(poly, x, y)
        lon, lat = np.concatenate([lon, x[inside]]), np.concatenate([lat, y[inside]])
    mean = settlement.people_per_household or people_mean
    share = vulnerable_share if settlement.vulnerable_share is None else settlement.vulnerable_share
    people = 1 + rng.poisson(max(mean - 1.0, 0.0), n)
    vulnerable = rng.binomial(people, share)
    return pd.DataFrame({"lon": np.round(lon[:n], COORD_DECIMALS), "lat": np.round(lat[:n], COORD_DECIMALS),
                         "people": people.astype(np.int64), "vulnerable": vulnerable.astype(np.int64)})


def _near_region(region: Region, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    w, s, e, n = region.bounds
    m = BOUNDS_MARGIN_DEG
    return (lon >= w - m) & (lon <= e + m) & (lat >= s - m) & (lat <= n + m)


def _shelters(region: Region, changes: list[ShelterChange], file: str) -> tuple[pd.DataFrame, list[Problem]]:
    shelters = region.shelters
    ids = shelters["shelter_id"].astype(str)
    known = set(ids)
    problems: list[Problem] = []
    drop: list[str] = []
    resize: dict[str, int] = {}
    new_rows = []
    for i, ch in enumerate(changes):  # a planner's short list of changes
        where = f"entry {i + 1} of [[changes.shelters]]"
        if ch.action == "open":
            if ch.shelter_id in known:
                problems.append(Problem(file, f"shelter '{ch.shelter_id}' already exists in the region; give "
                                              "the new shelter an unused id (or use action = 'resize')",
                                        where=where, field="changes.shelters.shelter_id"))
            elif not _near_region(region, np.array([ch.lon]), np.array([ch.lat]))[0]:
                w, s, e, n = region.bounds
                problems.append(Problem(file, f"[{ch.lon}, {ch.lat}] is outside the region "
                                              f"({w:.3f}..{e:.3f} E, {s:.3f}..{n:.3f} N); put the shelter "
                                              "in the region",
                                        where=where, field="changes.shelters.lon"))
            else:
                new_rows.append({"shelter_id": ch.shelter_id, "name": ch.name, "lon": float(ch.lon),
                                 "lat": float(ch.lat), "capacity": int(ch.capacity),
                                 "kind": ch.kind or DEFAULT_SHELTER_KIND})
            continue
        if ch.shelter_id not in known:
            close = difflib.get_close_matches(ch.shelter_id, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(file, f"shelter '{ch.shelter_id}' is not in the region's shelters{hint}; "
                                          "use a shelter_id of its shelters.csv",
                                    where=where, field="changes.shelters.shelter_id"))
        elif ch.action == "close":
            drop.append(ch.shelter_id)
        else:
            resize[ch.shelter_id] = int(ch.capacity)
    out = shelters.loc[~ids.isin(drop)].copy()
    if resize:
        sid = out["shelter_id"].astype(str)
        hit = sid.isin(list(resize))
        out.loc[hit, "capacity"] = sid[hit].map(resize).astype(out["capacity"].dtype)
    if new_rows:
        added = pd.DataFrame(new_rows).astype({c: shelters[c].dtype for c in shelters.columns})
        out = pd.concat([out, added], ignore_index=True)
    return out.reset_index(drop=True), problems


def _settlements(region: Region, settlements: list[Settlement], seed: int, file: str
                 ) -> tuple[pd.DataFrame, list[Problem]]:
    hh = region.households
    people_mean = float(hh["people"].mean()) if len(hh) else 4.0
    share = float(hh["vulnerable"].sum() / hh["people"].sum()) if len(hh) and hh["people"].sum() else 0.0
    codes = set(region.communes["code"].astype(str))
    parts: list[pd.DataFrame] = []
    problems: list[Problem] = []
    for i, st in enumerate(settlements):  # a planner's few settlements
        where = f"entry {i + 1} of [[changes.settlements]]"
        if st.commune_code is not None and st.commune_code not in codes:
            problems.append(Problem(file, f"commune '{st.commune_code}' is not in the region (its communes: "
                                          f"{', '.join(sorted(codes))}); give one of them or leave it out",
                                    where=where, field="changes.settlements.commune_code"))
            continue
        new = settlement_households(st, people_mean=people_mean, vulnerable_share=share,
                                    rng=np.random.default_rng([int(seed), 8, i]))
        lon, lat = new["lon"].to_numpy(), new["lat"].to_numpy()
        if st.commune_code is not None:
            commune = np.full(len(new), st.commune_code, dtype=object)
            outside = ~_near_region(region, lon, lat)
        else:
            commune = region.commune_of(lon, lat)
            outside = commune == ""
        if outside.any():
            problems.append(Problem(
                file, f"{int(outside.sum())} of the {len(new)} households fall outside the region's "
                      "communes; draw the polygon inside the region (or give commune_code)",
                where=where, field="changes.settlements.polygon"))
            continue
        new.insert(0, "commune_code", commune.astype(str))
        new.insert(0, "household_id", [f"HH-NEW{i + 1}-{k + 1:05d}" for k in range(len(new))])
        new["phone"] = ""
        parts.append(new)
    if not parts:
        return hh, problems
    clash = set(pd.concat(parts)["household_id"]) & set(hh["household_id"].astype(str))
    if clash:
        problems.append(Problem(file, f"new household ids clash with the region's ({sorted(clash)[0]} ...)",
                                field="changes.settlements"))
    added = pd.concat(parts, ignore_index=True)[list(hh.columns)].astype(hh.dtypes.to_dict())
    return pd.concat([hh, added], ignore_index=True), problems


def apply_changes(region: Region, changes: Changes, *, seed: int = 2024, file: str = "scenario",
                  check_roads: bool = True) -> Region:
    """The region with a scenario's shelter changes and new settlements (a copy, in memory).

    Parameters
    ----------
    region : Region
        The region (not modified).
    changes : Changes
        The validated ``[changes]`` table.
    seed : int
        The scenario's seed (new settlements' households).
    file : str
        The scenario file, named in errors.
    check_roads : bool
        Check the road closures against the region's road graph
        (:func:`check_closures`; reads the graph when there are closures).

    Returns
    -------
    Region
        A new Region: ``shelters`` and ``households`` changed, everything else
        shared with ``region`` (road closures are for routing:
        :func:`road_closures`); closure warnings are added to ``warnings``.

    Raises
    ------
    ScenarioError
        A shelter to close or resize that does not exist, a new shelter whose
        id exists or that lies outside the region, a settlement outside the
        region or with an unknown commune, a closed way id the road graph
        lacks — all of them at once.
    """
    shelters, problems = _shelters(region, changes.shelters, file)
    households, found = _settlements(region, changes.settlements, seed, file)
    problems += found
    closures = road_closures(changes)
    if check_roads and closures and region.roads is not None:
        problems += check_closures(closures, region.roads, file=file)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ScenarioError(f"{file}: the scenario's [changes] do not fit region {region.name} "
                            f"({len(errors)} problem(s))", problems)
    out = replace(region, shelters=shelters, households=households,
                  warnings=[*region.warnings, *problems])
    for cached in ("terrain", "roads", "_tree"):  # loaded already: share, do not read again
        if cached in region.__dict__:
            out.__dict__[cached] = region.__dict__[cached]
    return out
