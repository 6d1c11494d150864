"""When to leave: departure waves under road capacity, clearance times, assisted evacuation.

An evacuation plan says which shelter each household goes to and by which
road; this module says *when* each household should leave so that the roads
are not over-filled and everyone arrives before the hazard.

Model
-----
A simplified CCRP — the Capacity Constrained Route Planner of Lu, George &
Shekhar (2005, "Capacity Constrained Route Planner: A Preliminary Summary of
Results", SSTD 2005, LNCS 3633, pp. 291-307) — with routes fixed beforehand
(shortest paths and the optimal shelter assignment come first,
:mod:`ewarn.routing.paths` and :mod:`ewarn.routing.assign`):

* Households are aggregated into **groups**: the people leaving one origin
  node for one shelter share one route (a sequence of directed edges), so the
  loop below runs over groups (a few hundred on a province), never over
  households.
* Each directed edge has a **capacity** [people/min] by highway class and
  travel mode (:func:`edge_capacity`, ``tables/road_capacity.toml``): a
  vehicle capacity [PCU/h] from TCVN 4054:2005 turned into people with the
  PCU and occupants of one vehicle (motorbike: 0.3 PCU, 2 people), or a
  walkway capacity for walking (HCM 2010).
* Time is cut into **buckets** (1 min by default). A reservation table holds
  the capacity left on each edge in each bucket. People leaving in bucket
  ``d`` enter the ``k``-th edge of their route in bucket
  ``d + o_k``, where ``o_k`` is the free-flow time to the start of that
  edge (CCRP's "edge entry time" without waiting at intermediate nodes: a
  group that finds its road full waits at its origin, i.e. leaves in a later
  wave).
* Groups are served **in order of urgency**: latest safe departure
  ``deadline − free-flow travel time`` first (CCRP serves the source with the
  earliest possible arrival first; with fixed routes ewarn serves the one
  that has least slack, so that a group far from its shelter is not queued
  behind one that could wait). Each group sends, bucket by bucket from the
  release time, as many people as the tightest edge of its route still
  admits; the reservation is subtracted along the route (vectorized over the
  route's edges and the time buckets).
* **deadline** = onset − safety margin. A group that cannot arrive before it
  is still scheduled, as early as capacity allows, and flagged ``late``.

Households of one group leave in their order in the group (largest number
of vulnerable members first is the caller's choice) once the people before
them have left: a household's departure is the bucket where the group's
cumulative departures reach its last member.

The **clearance time** of a commune is the arrival of its last household
(:func:`clearance_times`). People who cannot move by themselves
(``vulnerable``) are listed for **assisted evacuation**: gathered at the
commune centre (the road node nearest the commune centroid) and picked up by
vehicle (:func:`assisted_pickups`).

All times are seconds from the release time of the plan (``t = 0`` = now).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ewarn.errors import EwarnError
from ewarn.hazard_models.tables import TableReader, load_cached, provenance_problems

__all__ = [
    "CAPACITY_TABLE",
    "MODES",
    "AssistedParameters",
    "RoadCapacity",
    "ScheduleError",
    "ScheduleResult",
    "assisted_pickups",
    "clearance_times",
    "edge_capacity",
    "household_departures",
    "road_capacity",
    "schedule_groups",
]

#: The shipped capacity table.
CAPACITY_TABLE = Path(__file__).resolve().parent / "tables" / "road_capacity.toml"
#: Travel modes (as RoadNetwork.MODES).
MODES = ("walk", "motorbike", "car")


class ScheduleError(EwarnError):
    """The inputs of a schedule are inconsistent (lengths, negative people, unknown mode)."""


@dataclass(frozen=True)
class AssistedParameters:
    """Vehicles that pick up people who need help to move.

    Attributes
    ----------
    seats_per_vehicle : float
        Seats of one pickup vehicle [people].
    boarding_seconds_per_person : float
        Time to board one person with reduced mobility [s].
    """

    seats_per_vehicle: float
    boarding_seconds_per_person: float


@dataclass(frozen=True)
class RoadCapacity:
    """The road capacity table (``tables/road_capacity.toml``).

    Attributes
    ----------
    vehicle_pcu_per_hour : dict
        Highway class → capacity of one direction [PCU/h]; key ``default``
        for any other class.
    walk_people_per_minute : dict
        Highway class → walking capacity of one direction [people/min].
    pcu : dict
        Vehicle mode → passenger-car units of one vehicle [-].
    occupants : dict
        Vehicle mode → evacuees per vehicle [people].
    assisted : AssistedParameters
        Pickup vehicles for assisted evacuation.
    """

    vehicle_pcu_per_hour: dict[str, float]
    walk_people_per_minute: dict[str, float]
    pcu: dict[str, float]
    occupants: dict[str, float]
    assisted: AssistedParameters

    def people_per_minute(self, mode: str) -> dict[str, float]:
        """Highway class → capacity of one direction [people/min] for ``mode``."""
        if mode not in MODES:
            raise ScheduleError(f"unknown travel mode {mode!r}; use one of {', '.join(MODES)}")
        if mode == "walk":
            return dict(self.walk_people_per_minute)
        factor = self.occupants[mode] / self.pcu[mode] / 60.0
        return {k: v * factor for k, v in self.vehicle_pcu_per_hour.items()}


def _parse_capacity(path: Path) -> RoadCapacity:
    t = TableReader(path)
    modes = t.doc.get("modes")
    classes = t.doc.get("classes")
    pcu: dict[str, float] = {}
    occ: dict[str, float] = {}
    if not isinstance(modes, dict):
        t.problem("section missing; copy it from the shipped table", "modes")
        modes = {}
    for m in ("motorbike", "car"):
        sec = modes.get(m)
        if not isinstance(sec, dict):
            t.problem("section missing; copy it from the shipped table", f"modes.{m}")
            continue
        t.problems.extend(provenance_problems(sec, t.file, f"[modes.{m}]"))
        pcu[m] = t.number(sec, f"modes.{m}", "pcu", 0.0, 10.0, closed=False)
        occ[m] = t.number(sec, f"modes.{m}", "occupants", 1.0, 100.0)
    veh: dict[str, float] = {}
    walk: dict[str, float] = {}
    if not isinstance(classes, dict) or "default" not in classes:
        t.problem("section missing or without [classes.default]; copy it from the shipped table",
                  "classes")
        classes = {}
    for name, sec in classes.items():
        where = f"classes.{name}"
        if not isinstance(sec, dict):
            t.problem("must be a table", where)
            continue
        t.problems.extend(provenance_problems(sec, t.file, f"[{where}]"))
        veh[name] = t.number(sec, where, "vehicle_pcu_per_hour", 0.0, 1e5)
        walk[name] = t.number(sec, where, "walk_people_per_minute", 0.0, 1e4)
    sec = t.section("assisted")
    assisted = AssistedParameters(
        seats_per_vehicle=t.number(sec, "assisted", "seats_per_vehicle", 1.0, 100.0) if sec else np.nan,
        boarding_seconds_per_person=(t.number(sec, "assisted", "boarding_seconds_per_person", 0.0, 3600.0)
                                     if sec else np.nan),
    )
    t.done()
    return RoadCapacity(veh, walk, pcu, occ, assisted)


def road_capacity(path: Path | str | None = None) -> RoadCapacity:
    """Read the road capacity table (cached per file and modification time).

    Parameters
    ----------
    path : path-like, optional
        A recalibrated copy of ``tables/road_capacity.toml``; default the shipped one.

    Raises
    ------
    ewarn.hazard_models.tables.TableError
        Listing every missing or out-of-range number and every row without
        ``source`` / ``confidence``.
    """
    return load_cached(_parse_capacity, path, CAPACITY_TABLE)


def edge_capacity(highway: np.ndarray | pd.Series, mode: str, table: RoadCapacity | None = None
                  ) -> np.ndarray:
    """Capacity of each directed edge [people/min].

    ``capacity = vehicle_pcu_per_hour / pcu × occupants / 60`` for vehicle
    modes (TCVN 4054:2005 lane capacities and passenger-car units; occupants
    per vehicle an ewarn assumption), ``walk_people_per_minute`` for walking
    (HCM 2010 walkway capacity × usable width). Classes ending in ``_link``
    take their road's value; unknown classes take ``default``.

    Parameters
    ----------
    highway : array of str, shape (m,)
        Normalized OSM highway class of each edge (``RoadNetwork.edge_highway``).
    mode : {"walk", "motorbike", "car"}
        Travel mode.
    table : RoadCapacity, optional
        Default :func:`road_capacity`.

    Returns
    -------
    numpy.ndarray of float64, shape (m,)
        People per minute that may enter the edge.
    """
    table = table or road_capacity()
    per_class = table.people_per_minute(mode)
    cls = pd.Series(np.asarray(highway, dtype=object)).astype("string").fillna("default")
    cls = cls.str.removesuffix("_link")
    return cls.map(per_class).fillna(per_class["default"]).to_numpy(np.float64)


@dataclass(frozen=True)
class ScheduleResult:
    """Departures and arrivals of every group.

    Attributes
    ----------
    groups : pandas.DataFrame
        One row per group, in input order: ``people``, ``travel_time_s``
        (free flow), ``deadline_s``, ``first_departure_s``,
        ``last_departure_s``, ``first_arrival_s``, ``arrival_s`` (arrival of
        its last person), ``late`` (bool: ``arrival_s > deadline_s``),
        ``order`` (rank in which the group was served) [s from release].
    flow : list of numpy.ndarray
        Per group, the people leaving in each bucket from bucket 0 (float64).
    bucket_s : float
        Bucket length [s].
    """

    groups: pd.DataFrame
    flow: list[np.ndarray]
    bucket_s: float


def _check_groups(route_offsets: np.ndarray, route_edges: np.ndarray, people: np.ndarray,
                  deadline_s: np.ndarray, n_edges: int) -> None:
    g = len(people)
    if route_offsets.shape != (g + 1,) or route_offsets[0] != 0 or route_offsets[-1] != len(route_edges):
        raise ScheduleError(f"route_offsets must have {g + 1} entries (one per group + 1) from 0 to "
                            f"len(route_edges)={len(route_edges)}; got shape {route_offsets.shape}")
    if np.any(np.diff(route_offsets) < 0):
        raise ScheduleError("route_offsets must not decrease")
    if len(deadline_s) != g:
        raise ScheduleError(f"deadline_s has {len(deadline_s)} entries for {g} groups")
    if np.any(~np.isfinite(people)) or np.any(people < 0):
        raise ScheduleError("people must be finite and >= 0 for every group")
    if len(route_edges) and (route_edges.min() < 0 or route_edges.max() >= n_edges):
        raise ScheduleError(f"route_edges holds edge indices outside 0..{n_edges - 1}")


def schedule_groups(
    route_offsets: np.ndarray,
    route_edges: np.ndarray,
    people: np.ndarray,
    deadline_s: np.ndarray,
    edge_time_s: np.ndarray,
    capacity_ppm: np.ndarray,
    *,
    access_time_s: np.ndarray | None = None,
    release_s: float = 0.0,
    bucket_s: float = 60.0,
) -> ScheduleResult:
    """Departure waves of groups sharing capacity-limited roads (simplified CCRP).

    See the module docstring for the model (Lu, George & Shekhar 2005, with
    fixed routes and waiting at the origin only).

    Parameters
    ----------
    route_offsets : array of int, shape (g + 1,)
        Group ``i``'s route is ``route_edges[route_offsets[i]:route_offsets[i + 1]]``
        (empty: the group is at its shelter's node).
    route_edges : array of int, shape (k,)
        Directed edge indices, in travel order.
    people : array of float, shape (g,)
        People in each group.
    deadline_s : array of float, shape (g,)
        Latest safe arrival [s from release] (onset − safety margin); ``inf``
        when the group's commune has no onset.
    edge_time_s : array of float, shape (m,)
        Free-flow travel time of every edge [s] (after hazard slow-downs).
    capacity_ppm : array of float, shape (m,)
        Capacity of every edge [people/min] (:func:`edge_capacity`). An edge
        with capacity 0 on a route is given a trickle of 1 person per bucket
        (it should not be on a route of this mode; the group is not lost).
    access_time_s : array of float, shape (g,), optional
        Time from the households to their origin node and from the last node
        to the shelter [s], added to the travel time (not capacity-limited).
    release_s : float
        Earliest departure [s from the plan's start].
    bucket_s : float
        Time bucket [s] (CCRP's time step; 60 s by default).

    Returns
    -------
    ScheduleResult

    Raises
    ------
    ScheduleError
        When the arrays disagree in length or hold negative people.
    """
    route_offsets = np.asarray(route_offsets, dtype=np.int64)
    route_edges = np.asarray(route_edges, dtype=np.int64)
    people = np.asarray(people, dtype=np.float64)
    deadline_s = np.asarray(deadline_s, dtype=np.float64)
    edge_time_s = np.asarray(edge_time_s, dtype=np.float64)
    capacity_ppm = np.asarray(capacity_ppm, dtype=np.float64)
    if bucket_s <= 0:
        raise ScheduleError(f"bucket_s must be > 0; got {bucket_s}")
    _check_groups(route_offsets, route_edges, people, deadline_s, len(edge_time_s))
    g = len(people)
    access = np.zeros(g) if access_time_s is None else np.asarray(access_time_s, dtype=np.float64)
    if len(access) != g:
        raise ScheduleError(f"access_time_s has {len(access)} entries for {g} groups")
    if len(route_edges) and not np.all(np.isfinite(edge_time_s[route_edges])):
        raise ScheduleError("a route uses an edge with infinite travel time (closed or not allowed "
                            "for the mode); recompute the paths after the closures")

    # Free-flow entry time of each route edge relative to the departure (exclusive cumsum per route).
    t_edge = edge_time_s[route_edges] if len(route_edges) else np.zeros(0)
    csum = np.concatenate([[0.0], np.cumsum(t_edge)])
    start = csum[route_offsets[:-1]]
    group_of_edge = np.repeat(np.arange(g), np.diff(route_offsets))
    entry_s = csum[:-1] - start[group_of_edge]
    travel_s = csum[route_offsets[1:]] - start + access
    entry_bucket = np.floor(entry_s / bucket_s).astype(np.int64)

    # Reservation table over the edges used by any route only.
    used, compact = np.unique(route_edges, return_inverse=True)
    cap_bucket = np.maximum(capacity_ppm[used] * bucket_s / 60.0, 0.0)
    cap_bucket = np.where(cap_bucket > 0, cap_bucket, 1.0)
    release_b = int(np.ceil(release_s / bucket_s - 1e-9))
    # buckets are added as departures need them (doubling): memory ~ used edges x clearance time
    n_buckets = release_b + int(entry_bucket.max(initial=0)) + 64
    residual = np.tile(cap_bucket[:, None], (1, n_buckets))

    slack = np.where(np.isfinite(deadline_s), deadline_s - travel_s, np.inf)
    order = np.lexsort((-people, slack))  # least slack first; ties: bigger group first
    first_dep = np.full(g, np.nan)
    last_dep = np.full(g, np.nan)
    flows: list[np.ndarray] = [np.zeros(0)] * g
    rank = np.empty(g, dtype=np.int64)
    for r, i in enumerate(order):
        rank[i] = r
        a, b = route_offsets[i], route_offsets[i + 1]
        need = people[i]
        if need <= 0:
            flows[i] = np.zeros(release_b + 1)
            first_dep[i] = last_dep[i] = release_b * bucket_s
            continue
        if a == b:  # already at the shelter's node: everyone leaves now
            f = np.zeros(release_b + 1)
            f[release_b] = need
            flows[i] = f
            first_dep[i] = last_dep[i] = release_b * bucket_s
            continue
        e = compact[a:b]
        o = entry_bucket[a:b]
        omax = int(o.max())
        span = int(np.ceil(need / cap_bucket[e].min())) + 2  # enough on empty roads; doubled when not
        while True:
            if release_b + span + omax > n_buckets:
                grow = max(n_buckets, release_b + span + omax - n_buckets)
                residual = np.concatenate([residual, np.tile(cap_bucket[:, None], (1, grow))], axis=1)
                n_buckets += grow
            d = np.arange(release_b, release_b + span)
            avail = np.maximum(residual[e[:, None], d[None, :] + o[:, None]].min(axis=0), 0.0)
            cs = np.cumsum(avail)
            if cs[-1] >= need - 1e-9:
                break
            span *= 2
        sent = np.minimum(cs, need) - np.minimum(cs - avail, need)
        sent[sent < 1e-12] = 0.0
        nz = np.flatnonzero(sent)
        np.subtract.at(residual, (e[:, None], d[nz][None, :] + o[:, None]),
                       np.broadcast_to(sent[nz], (len(e), len(nz))))
        f = np.zeros(release_b + span)
        f[d] = sent
        flows[i] = np.trim_zeros(f, "b")
        first_dep[i] = d[nz[0]] * bucket_s
        last_dep[i] = d[nz[-1]] * bucket_s

    arrival = last_dep + travel_s
    groups = pd.DataFrame({
        "people": people,
        "travel_time_s": travel_s,
        "deadline_s": deadline_s,
        "first_departure_s": first_dep,
        "last_departure_s": last_dep,
        "first_arrival_s": first_dep + travel_s,
        "arrival_s": arrival,
        "late": arrival > deadline_s + 1e-9,
        "order": rank if g else np.zeros(0, dtype=np.int64),
    })
    return ScheduleResult(groups=groups, flow=flows, bucket_s=float(bucket_s))


def household_departures(result: ScheduleResult, group: np.ndarray, people: np.ndarray
                         ) -> pd.DataFrame:
    """Departure and arrival of each household from its group's departure waves.

    Households of a group leave in the order given (stable): household ``h``
    leaves in the bucket where the group's cumulative departures reach the
    cumulative people up to and including ``h``, so a household is never
    split across waves.

    Parameters
    ----------
    result : ScheduleResult
        From :func:`schedule_groups`.
    group : array of int, shape (h,)
        Group index of each household (``-1``: not scheduled).
    people : array of float, shape (h,)
        People of each household; per group they must sum to the group's people.

    Returns
    -------
    pandas.DataFrame
        Index as the input order: ``departure_s``, ``arrival_s`` [s from
        release], ``late`` (bool); NaN / False where ``group == -1``.
    """
    group = np.asarray(group, dtype=np.int64)
    people = np.asarray(people, dtype=np.float64)
    n = len(group)
    dep = np.full(n, np.nan)
    ok = group >= 0
    idx = np.flatnonzero(ok)
    if len(idx):
        # cumulative people within each group, in input order (stable sort by group)
        srt = idx[np.argsort(group[idx], kind="stable")]
        g_s = group[srt]
        cum = np.cumsum(people[srt])
        first = np.r_[True, g_s[1:] != g_s[:-1]]
        base = np.maximum.accumulate(np.where(first, cum - people[srt], 0.0))
        within = cum - base
        # one concatenated cumulative-flow axis: group j's buckets shifted by an offset
        lens = np.array([len(f) for f in result.flow], dtype=np.int64)
        offs = np.r_[0, np.cumsum(lens)]
        cflow = np.concatenate([np.cumsum(f) for f in result.flow]) if offs[-1] else np.zeros(0)
        # add a large stair per group so one searchsorted covers all groups
        total = float(cflow.max(initial=0.0)) + float(within.max(initial=0.0)) + 1.0
        stair = np.repeat(np.arange(len(lens)) * total, lens)
        pos = np.searchsorted(cflow + stair, within + g_s * total - 1e-6, side="left")
        bucket = pos - offs[g_s]
        bucket = np.minimum(bucket, lens[g_s] - 1)
        dep[srt] = bucket * result.bucket_s
        # a group with no people left at its release bucket
        empty = result.groups["people"].to_numpy()[g_s] <= 0
        dep[srt[empty]] = result.groups["first_departure_s"].to_numpy()[g_s[empty]]
    travel = np.full(n, np.nan)
    deadline = np.full(n, np.inf)
    travel[ok] = result.groups["travel_time_s"].to_numpy()[group[ok]]
    deadline[ok] = result.groups["deadline_s"].to_numpy()[group[ok]]
    arrival = dep + travel
    return pd.DataFrame({"departure_s": dep, "arrival_s": arrival,
                         "late": ok & (arrival > deadline + 1e-9)})


def clearance_times(commune_code: np.ndarray | pd.Series, arrival_s: np.ndarray | pd.Series
                    ) -> pd.Series:
    """Clearance time of each commune: the arrival of its last evacuating household [s].

    Parameters
    ----------
    commune_code : array of str, shape (h,)
        Commune of each household.
    arrival_s : array of float, shape (h,)
        Arrival at the shelter [s]; NaN for households not scheduled (ignored).

    Returns
    -------
    pandas.Series
        Indexed by commune code (every code given), NaN where no household arrives.
    """
    df = pd.DataFrame({"commune_code": pd.Series(np.asarray(commune_code, dtype=object), dtype="string"),
                       "arrival_s": np.asarray(arrival_s, dtype=np.float64)})
    return df.groupby("commune_code", sort=True)["arrival_s"].max().rename("clearance_s")


def assisted_pickups(
    commune_code: np.ndarray | pd.Series,
    vulnerable: np.ndarray | pd.Series,
    deadline_s: pd.Series,
    centre_to_shelter_s: pd.Series,
    *,
    release_s: float = 0.0,
    params: AssistedParameters | None = None,
) -> pd.DataFrame:
    """People who need assisted evacuation, grouped for pickup at each commune centre.

    Per commune: the vulnerable people of the households that must move are
    gathered at the commune centre and carried by pickup vehicles. The
    **latest pickup time** is the commune's deadline minus the drive from the
    centre to the shelter and the boarding time of one vehicle load
    (``seats × boarding_seconds_per_person``); vehicles needed
    ``ceil(people / seats)`` (one trip each, run in parallel). The pickup
    time given is that latest time, but not before ``release_s`` (``release_s``
    when the commune has no deadline); ``late`` when even that pickup arrives
    after the deadline. Seats and boarding time: ``[assisted]`` in
    ``tables/road_capacity.toml`` (ewarn assumptions, tagged unverified).

    Parameters
    ----------
    commune_code : array of str, shape (h,)
        Commune of each household that must move.
    vulnerable : array of int, shape (h,)
        People in the household who need help to move.
    deadline_s : pandas.Series
        Deadline per commune code [s from release] (onset − safety margin; inf when none).
    centre_to_shelter_s : pandas.Series
        Travel time per commune code from its centre to the pickup shelter [s]
        (NaN when no shelter is reachable).
    release_s : float
        Earliest pickup [s].
    params : AssistedParameters, optional
        Default: the ``[assisted]`` row of :func:`road_capacity`.

    Returns
    -------
    pandas.DataFrame
        One row per commune with vulnerable people: ``commune_code``,
        ``households``, ``people``, ``vehicles``, ``pickup_by_s`` (latest
        safe pickup at the centre, not before ``release_s``), ``arrival_s``,
        ``deadline_s``, ``reachable`` (a shelter is reachable from the
        centre), ``late`` (bool: arrival after the deadline, or unreachable),
        sorted by pickup time.
    """
    p = params or road_capacity().assisted
    df = pd.DataFrame({"commune_code": pd.Series(np.asarray(commune_code, dtype=object), dtype="string"),
                       "vulnerable": np.asarray(vulnerable, dtype=np.int64)})
    df = df[df["vulnerable"] > 0]
    out = (df.groupby("commune_code", sort=True)["vulnerable"].agg(["size", "sum"])
           .rename(columns={"size": "households", "sum": "people"}))
    seats = p.seats_per_vehicle
    out["vehicles"] = np.ceil(out["people"] / seats).astype(np.int64)
    load = np.minimum(out["people"], seats) * p.boarding_seconds_per_person
    deadline = deadline_s.reindex(out.index).astype(np.float64).fillna(np.inf)
    drive = centre_to_shelter_s.reindex(out.index).astype(np.float64)
    latest = (deadline - drive - load).to_numpy()
    pickup = np.where(np.isfinite(latest), np.maximum(latest, release_s), release_s)
    out["pickup_by_s"] = pickup
    out["arrival_s"] = pickup + load + drive
    out["deadline_s"] = deadline
    out["reachable"] = drive.notna()
    out["late"] = ~(out["arrival_s"] <= deadline + 1e-9)
    out = out.reset_index().sort_values(["pickup_by_s", "commune_code"], kind="stable")
    return out.reset_index(drop=True)
