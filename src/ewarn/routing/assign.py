"""Optimal assignment of households to shelters under shelter capacities.

The problem (issue #5): every household ``h`` of ``people[h]`` persons goes WHOLE
to one shelter among its candidates (the nearest reachable ones, from
:func:`ewarn.routing.paths.candidate_shelters`), no shelter takes more people
than its capacity, and the total weighted travel time
``Σ people[h] · w[h] · time[h, shelter(h)]`` is minimal; a household that cannot
be placed is left unassigned with a reason.

How it is solved
----------------
1. **Min-cost flow** (Ahuja, Magnanti & Orlin 1993, *Network Flows*, ch. 9-10;
   OR-Tools ``SimpleMinCostFlow``, a cost-scaling push-relabel solver): supply
   nodes carry people, one arc per candidate (capacity = the people, cost = whole
   seconds × weight), shelters drain into a sink through arcs of their capacity,
   and every supply node also has an "unmet" arc to the sink at a penalty larger
   than any rerouting could save (``(shelters + 1) × largest arc cost + 1`` per
   person and unit of weight: an augmenting path visits each shelter at most
   once), so the flow always exists, serves as many (weighted) people as
   possible, and among those is cheapest. Households with the same candidates
   and the same costs up to a constant (those at one road node whose walking legs
   are given in whole seconds) share one supply node.
2. **Widening.** When people are left unmet while their candidate list may be
   cut short (``complete`` false), ``widen`` is asked for twice as many
   candidates for them and the flow is solved again, until everyone is served
   or every unmet household lists every shelter it can reach in time: then the
   shortfall is proven ("no capacity"). Households that step 3 leaves out are
   widened the same way (at most :data:`MAX_LEFTOUT_WIDEN` times) and placed in
   the room left; the flow is then solved once more over the final lists, for
   the bound only. The flow is first solved as a cheapest MAXIMUM flow without
   the penalty arcs (their cost range makes the solver ~3× slower, measured);
   only when that leaves people out are the penalty arcs added.
3. **Whole households.** The flow moves PEOPLE, so it may split a household.
   It is the LP relaxation of the household problem, and its cost is a LOWER
   BOUND of it. Households are laid out in order along the flow of their supply
   node; those inside one shelter's share are placed there. Each split household
   then goes wholly to the shelter of its largest share if the room left there
   allows (vulnerable / urgent first); the others are re-solved as a smaller flow
   on the room left, and so on for up to :data:`MAX_REPAIR_ROUNDS` rounds.
   Households still out then take any candidate with room, or one placed
   household moves to another of its candidates to make room (the cheapest such
   move), else they stay unassigned ("no capacity"). Last, households move to a
   cheaper candidate where room was left, largest saving first. The result is
   feasible and
   :attr:`Assignment.gap` says how far above the bound it lands (at most one
   split household per shelter whose capacity binds, in a basic optimal flow).

Measured: on the benchmark province (50,000 households, 300 shelters with room
for 1.1 × the people) 0.6-1.0 s, everyone placed, 0.09 % above the bound. On
tiny, tight random instances (10-40 households, capacity ≈ the demand) the
result was 0-12 % above the exact integer optimum (OR-Tools CP-SAT), mostly
from one household too many left out: the repair is a heuristic, the bound is
exact.

Priorities are COST WEIGHTS (:func:`priority_weight`): a person of weight ``w``
counts ``w`` times in the travel time AND in the penalty of being left out, so
in a shortage the heavier households are served first and in any case get the
nearer shelters. One solve stays optimal for one objective, which ordered
rounds would not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.graph.python import min_cost_flow

from ewarn.errors import EwarnError

__all__ = [
    "MAX_LEFTOUT_WIDEN",
    "MAX_REPAIR_ROUNDS",
    "NO_CAPACITY",
    "NO_ROAD",
    "REASONS",
    "Assignment",
    "AssignmentError",
    "assign",
    "priority_weight",
]

#: Reason code: no shelter reachable within the evacuation time limit.
NO_ROAD = "no_road_within_limit"
#: Reason code: shelters within reach are full.
NO_CAPACITY = "no_capacity"
#: Reason codes → (Vietnamese, English) text for people.
REASONS: dict[str, tuple[str, str]] = {
    NO_ROAD: ("Không có đường tới nơi tạm trú trong thời gian cho phép",
              "no road to a shelter within the time limit"),
    NO_CAPACITY: ("Các nơi tạm trú trong tầm với đã hết chỗ",
                  "the shelters within reach are full"),
}

#: Rounds of largest-share placement and residual re-solves before the greedy finish.
MAX_REPAIR_ROUNDS = 20

#: Times the households left out by the whole-household repair are widened (each
#: time the flow is solved again, which may leave out others).
MAX_LEFTOUT_WIDEN = 2

_OPTIMAL = min_cost_flow.SimpleMinCostFlow.OPTIMAL


class AssignmentError(EwarnError):
    """Assignment inputs that do not fit together, or a solver failure."""


@dataclass(frozen=True)
class Assignment:
    """Households placed in shelters.

    Attributes
    ----------
    shelter : numpy.ndarray
        int64 ``(h,)`` shelter index, ``-1`` when unassigned.
    time_s : numpy.ndarray
        float64 ``(h,)`` travel time to it [s] (the candidate's time), NaN when unassigned.
    reason : numpy.ndarray
        str ``(h,)``: ``""``, :data:`NO_ROAD` or :data:`NO_CAPACITY` (text in :data:`REASONS`).
    load : numpy.ndarray
        int64 ``(s,)`` people placed in each shelter (``<= capacity``).
    objective : int
        Cost of the assignment: Σ people · rint(time × weight) [s] over the
        assigned, plus ``people · (penalty × weight + own nearest cost)`` over the
        unassigned that have candidates.
    lower_bound : int
        The min-cost flow optimum of the same objective with divisible households.
    gap : float
        ``(objective - lower_bound) / lower_bound`` (0 when the bound is 0).
    split : int
        Households the flow divided between shelters (made whole by the repair).
    widened : int
        Households whose candidate list ``widen`` extended.
    penalty : int
        Cost of leaving one person of weight 1 out [s-equivalent].
    """

    shelter: np.ndarray
    time_s: np.ndarray
    reason: np.ndarray
    load: np.ndarray
    objective: int
    lower_bound: int
    gap: float
    split: int
    widened: int
    penalty: int

    @property
    def assigned(self) -> np.ndarray:
        """bool ``(h,)``: the household has a shelter."""
        return self.shelter >= 0


def priority_weight(vulnerable: np.ndarray, hours_to_onset: np.ndarray | None = None, *,
                    vulnerable_weight: float = 2.0, urgent_hours: float = 6.0,
                    urgent_weight: float = 2.0) -> np.ndarray:
    """Cost weight of each household: who is served first and nearest.

    Parameters
    ----------
    vulnerable : numpy.ndarray
        ``(h,)`` people needing help to move (households.csv ``vulnerable``).
    hours_to_onset : numpy.ndarray, optional
        ``(h,)`` hours from now to the hazard onset in the household's commune
        (NaN: no onset).
    vulnerable_weight : float
        Weight of a household with a vulnerable member.
    urgent_hours, urgent_weight : float
        Households whose onset is within ``urgent_hours`` get ``× urgent_weight``.

    Returns
    -------
    numpy.ndarray
        float64 ``(h,)``, ``>= 1``.

    Notes
    -----
    ewarn policy defaults, not a published standard (unverified): Vietnam's disaster
    law asks responders to give priority to vulnerable people (người dễ bị tổn
    thương: the elderly, disabled, children, pregnant women; Luật Phòng, chống thiên
    tai 33/2013/QH13, as amended 2020), and those with the least time left move first.
    Whole-number weights keep the costs of a road node's households equal up to a
    constant, so they share one supply node in the flow.
    """
    if vulnerable_weight < 1 or urgent_weight < 1:
        raise AssignmentError("priority weights must be >= 1 (1 = no priority)")
    v = np.asarray(vulnerable, dtype=np.float64)
    w = np.where(v > 0, float(vulnerable_weight), 1.0)
    if hours_to_onset is not None:
        h = np.asarray(hours_to_onset, dtype=np.float64)
        w = w * np.where(h <= urgent_hours, float(urgent_weight), 1.0)
    return w


# --------------------------------------------------------------------------- flow


@dataclass(frozen=True)
class _Flow:
    group: np.ndarray        # int64 (h,) supply node of each household, -1 when none
    g_people: np.ndarray     # int64 (G,)
    arc_g: np.ndarray        # int64 (a,) candidate arcs: supply node, shelter, cost
    arc_s: np.ndarray
    arc_flow: np.ndarray
    unmet: np.ndarray        # int64 (G,) people sent to the unmet arc
    optimal_cost: int        # in the relative frame (without the households' constants)


def _solve(people: np.ndarray, cand: np.ndarray, cost: np.ndarray, pen: np.ndarray,
           capacity: np.ndarray, rows: np.ndarray, *, unmet: bool = True) -> _Flow | None:
    """Min-cost flow over the households ``rows`` (costs relative to each row's first candidate).

    ``unmet=False`` leaves out the unmet arcs: ``None`` when not everyone fits. The
    penalty arcs widen the cost range and make the solver ~3x slower (measured), so
    the plan tries without them first.
    """
    h = people.size
    if rows.size == 0:
        e = np.empty(0, np.int64)
        return _Flow(np.full(h, -1, np.int64), e, e, e, e, e, 0)
    valid = cand[rows] >= 0
    c0 = cost[rows, 0]
    rel = np.where(valid, cost[rows] - c0[:, None], 0)
    key = np.concatenate([np.where(valid, cand[rows], -1), rel, pen[rows, None]], axis=1)
    grp = _row_groups(key)
    G = int(grp.max()) + 1
    first = np.zeros(G, dtype=np.int64)
    first[grp[::-1]] = np.arange(rows.size)[::-1]          # a representative row per group
    g_people = np.bincount(grp, weights=people[rows], minlength=G).astype(np.int64)
    g_valid = valid[first]
    gi, j = np.nonzero(g_valid)
    arc_g = gi.astype(np.int64)
    arc_s = cand[rows[first[gi]], j].astype(np.int64)
    arc_c = rel[first[gi], j].astype(np.int64)
    S = capacity.size
    sink = G + S
    n_u = G if unmet else 0
    tails = np.concatenate([arc_g, G + np.arange(S), np.arange(n_u)])
    heads = np.concatenate([G + arc_s, np.full(S, sink), np.full(n_u, sink)])
    caps = np.concatenate([g_people[arc_g], capacity, g_people[:n_u]])
    costs = np.concatenate([arc_c, np.zeros(S, np.int64), pen[rows[first]][:n_u]])
    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(tails.astype(np.int32), heads.astype(np.int32),
                                              caps.astype(np.int64), costs.astype(np.int64))
    total = int(g_people.sum())
    smcf.set_nodes_supplies(np.r_[np.arange(G), sink].astype(np.int32),
                            np.r_[g_people, -total].astype(np.int64))
    # without unmet arcs: the cheapest MAXIMUM flow; short of the supply means not everyone fits
    status = smcf.solve() if unmet else smcf.solve_max_flow_with_min_cost()
    if not unmet and status == _OPTIMAL and smcf.maximum_flow() < total:
        return None
    if status != _OPTIMAL:
        raise AssignmentError(f"the min-cost flow solver stopped with status {status}; the shelter "
                              "capacities or household sizes may be out of range (check for huge values)")
    flows = np.asarray(smcf.flows(np.arange(tails.size, dtype=np.int32)), dtype=np.int64)
    group = np.full(h, -1, dtype=np.int64)
    group[rows] = grp
    left = flows[arc_g.size + S:] if unmet else np.zeros(G, np.int64)
    return _Flow(group, g_people, arc_g, arc_s, flows[:arc_g.size], left, int(smcf.optimal_cost()))


def _row_groups(key: np.ndarray) -> np.ndarray:
    """Group id (0..G-1) of each row of an integer matrix, equal rows sharing one.

    A lexsort over the columns and a difference of neighbours: ~10x faster than
    ``numpy.unique(axis=0)`` on (50,000 × 17) int64 (measured).
    """
    order = np.lexsort(key.T[::-1])
    ks = key[order]
    new = np.r_[True, np.any(ks[1:] != ks[:-1], axis=1)]
    grp = np.empty(key.shape[0], dtype=np.int64)
    grp[order] = np.cumsum(new) - 1
    return grp


def _spread(flow: _Flow, rows: np.ndarray, people: np.ndarray, weight: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Lay the households of each supply node along its flow.

    Returns, per entry of ``rows``: the shelter (``-1`` unmet) of a WHOLE household
    (``-2`` when split), and for the split ones their largest shelter share.
    """
    G = flow.g_people.size
    # slots: each supply node's arcs in cost order (arcs come in candidate order), then its unmet arc
    slot_g = np.concatenate([flow.arc_g, np.arange(G)])
    slot_s = np.concatenate([flow.arc_s, np.full(G, -1)])
    slot_f = np.concatenate([flow.arc_flow, flow.unmet])
    slot_rank = np.concatenate([np.arange(flow.arc_g.size), np.full(G, flow.arc_g.size)])
    so = np.lexsort((slot_rank, slot_g))
    slot_s, slot_f = slot_s[so], slot_f[so]
    slot_end = np.cumsum(slot_f)
    slot_start = slot_end - slot_f
    # households by supply node, heavier (then larger) first so that they are the ones kept whole
    g = flow.group[rows]
    ho = np.lexsort((-people[rows], -weight[rows], g))
    p = people[rows][ho]
    end = np.cumsum(p)
    start = end - p
    a = np.searchsorted(slot_end, start, side="right")
    b = np.searchsorted(slot_end, np.maximum(end - 1, start), side="right")
    whole = a == b
    out = np.full(rows.size, -2, dtype=np.int64)
    out[ho[whole]] = slot_s[np.minimum(a[whole], slot_s.size - 1)]
    # the largest shelter share of each split household (shares over the slots a..b)
    best = np.full(rows.size, -1, dtype=np.int64)
    sp_i = np.flatnonzero(~whole)
    if sp_i.size:
        n_sl = b[sp_i] - a[sp_i] + 1
        owner = np.repeat(sp_i, n_sl)
        sl = np.repeat(a[sp_i], n_sl) + (np.arange(n_sl.sum()) - np.repeat(np.cumsum(n_sl) - n_sl, n_sl))
        share = np.minimum(end[owner], slot_end[sl]) - np.maximum(start[owner], slot_start[sl])
        share = np.where(slot_s[sl] >= 0, share, 0)
        o2 = np.lexsort((-share, owner))
        top = o2[np.r_[True, owner[o2][1:] != owner[o2][:-1]]]
        has = share[top] > 0
        best[ho[owner[top][has]]] = slot_s[sl[top][has]]
    return out, best


def _fit(proposal: np.ndarray, people: np.ndarray, order: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Accept proposals (a shelter per household, -1 none) in ``order`` at each shelter while room lasts."""
    ok = np.zeros(proposal.size, dtype=bool)
    idx = order[proposal[order] >= 0]
    if idx.size == 0:
        return ok
    idx = idx[np.argsort(proposal[idx], kind="stable")]       # by shelter, priority order kept
    s, p = proposal[idx], people[idx]
    csum = np.cumsum(p)
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    seg = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    used = csum - (csum - p)[first][seg]                       # people at the shelter up to this one
    ok[idx] = used <= room[s]                                  # a prefix of each shelter's queue
    return ok


def _as_candidates(c: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if hasattr(c, "shelter"):
        return np.asarray(c.shelter), np.asarray(c.time_s), np.asarray(c.complete)
    s, t, comp = c
    return np.asarray(s), np.asarray(t), np.asarray(comp)


def _check(people: np.ndarray, cand: np.ndarray, time_s: np.ndarray, capacity: np.ndarray,
           weight: np.ndarray) -> None:
    h = people.shape[0]
    if cand.ndim != 2 or cand.shape != time_s.shape or cand.shape[0] != h:
        raise AssignmentError(f"cand_shelter {cand.shape} and cand_time_s {time_s.shape} must both be "
                              f"(households={h}, k)")
    if np.any(people < 0):
        raise AssignmentError(f"household {int(np.flatnonzero(people < 0)[0])}: people must be >= 0")
    if np.any(capacity < 0):
        raise AssignmentError(f"shelter {int(np.flatnonzero(capacity < 0)[0])}: capacity must be >= 0")
    if cand.size and (cand.max() >= capacity.size or cand.min() < -1):
        raise AssignmentError(f"candidate shelter indices must be in 0..{capacity.size - 1} (or -1)")
    if np.any((cand >= 0) & ~(time_s >= 0)):
        raise AssignmentError("a candidate shelter has a negative or missing travel time")
    s = np.sort(np.where(cand >= 0, cand, -1 - np.arange(cand.shape[1])[None, :]), axis=1)
    if np.any(s[:, 1:] == s[:, :-1]):
        raise AssignmentError("a household lists the same shelter twice among its candidates")
    if weight.shape != (h,) or np.any(~(weight > 0)) or np.any(~np.isfinite(weight)):
        raise AssignmentError("priority_weight must be finite, > 0 and have one value per household")


def assign(people: np.ndarray, cand_shelter: np.ndarray, cand_time_s: np.ndarray, capacity: np.ndarray, *,
           priority_weight: np.ndarray | None = None, complete: np.ndarray | None = None,
           widen: Callable[[np.ndarray, int], Any] | None = None, max_widen: int = 8) -> Assignment:
    """Place every household wholly in one shelter, within capacities, at least total cost.

    Parameters
    ----------
    people : numpy.ndarray
        int ``(h,)`` persons per household.
    cand_shelter : numpy.ndarray
        int ``(h, k)`` candidate shelter indices (``-1``: none), e.g.
        ``Candidates.shelter`` of :func:`ewarn.routing.paths.candidate_shelters`.
    cand_time_s : numpy.ndarray
        float ``(h, k)`` door-to-door travel time to each candidate [s] (``inf`` none).
        Costs are ``rint(time × weight)`` whole seconds.
    capacity : numpy.ndarray
        int ``(s,)`` persons each shelter can take.
    priority_weight : numpy.ndarray, optional
        float ``(h,)`` cost weight (:func:`priority_weight`), default 1.
    complete : numpy.ndarray, optional
        bool ``(h,)``: the household's list holds every shelter it can reach in time.
        Default: rows with fewer than ``k`` candidates.
    widen : callable, optional
        ``widen(households, k) -> Candidates`` (or ``(shelter, time_s, complete)``)
        for the given household indices with up to ``k`` candidates; asked when
        people are left out whose list is not complete.
    max_widen : int
        Widening rounds at most.

    Returns
    -------
    Assignment

    Raises
    ------
    AssignmentError
        When the arrays do not fit together (the message says which) or the
        solver fails.
    """
    people = np.asarray(people)
    if people.ndim != 1 or (people.size and not np.issubdtype(people.dtype, np.integer)):
        raise AssignmentError("people must be a 1-D array of whole numbers (persons per household)")
    people = people.astype(np.int64)
    cand = np.asarray(cand_shelter).astype(np.int64)
    tim = np.asarray(cand_time_s, dtype=np.float64)
    cap = np.asarray(capacity)
    if cap.ndim != 1 or (cap.size and not np.issubdtype(cap.dtype, np.integer)):
        raise AssignmentError("capacity must be a 1-D array of whole numbers (persons per shelter)")
    cap = cap.astype(np.int64)
    h = people.size
    w = np.ones(h) if priority_weight is None else np.asarray(priority_weight, dtype=np.float64)
    _check(people, cand, tim, cap, w)
    cand = np.where(np.isfinite(tim), cand, -1)
    comp = ((cand >= 0).sum(axis=1) < cand.shape[1]) if complete is None \
        else np.asarray(complete, dtype=bool).copy()
    if comp.shape != (h,):
        raise AssignmentError("complete must have one value per household")

    widened = np.zeros(h, dtype=bool)
    for _round in range(max_widen + 1):
        cand, tim, cost, pen, penalty, rows = _costs(cand, tim, w, people)
        flow = _solve(people, cand, cost, pen, cap, rows, unmet=False) \
            or _solve(people, cand, cost, pen, cap, rows)
        short = np.zeros(h, dtype=bool)
        short[rows] = flow.unmet[flow.group[rows]] > 0
        need = np.flatnonzero((short | (cand[:, 0] < 0)) & ~comp)
        if widen is None or need.size == 0 or _round == max_widen:
            break
        cand, tim, grew = _widened(widen, need, cand, tim)
        comp[need] |= ~grew
        widened[need] = True
        _check(people, cand, tim, cap, w)
    lower_bound = flow.optimal_cost + int((people[rows] * cost[rows, 0]).sum())
    shelter, n_split = _whole(flow, rows, people, cand, cost, pen, cap, w)

    # households the rounding left out may find room beyond their candidates: widen them and
    # place them in the room left (the flow is not solved again, so the others stay put) ...
    resolve = False
    for _ in range(MAX_LEFTOUT_WIDEN if widen is not None else 0):
        need = np.flatnonzero((shelter < 0) & (people > 0) & ~comp)
        if need.size == 0:
            break
        cand, tim, grew = _widened(widen, need, cand, tim)
        comp[need] |= ~grew
        widened[need] = True
        _check(people, cand, tim, cap, w)
        cand, tim, cost, pen, penalty, rows = _costs(cand, tim, w, people)
        _fill(shelter, need[shelter[need] < 0], people, cand, cost, cap, w)
        resolve = True
    _improve(shelter, people, cand, cost, cap)
    if resolve:
        # ... and the bound is that of the flow over the final candidate lists
        bound = _solve(people, cand, cost, pen, cap, rows, unmet=False) \
            or _solve(people, cand, cost, pen, cap, rows)
        lower_bound = bound.optimal_cost + int((people[rows] * cost[rows, 0]).sum())

    # people 0: nearest candidate, no room used
    zero = np.flatnonzero((people == 0) & (cand[:, 0] >= 0))
    shelter[zero] = cand[zero, 0]
    pos = np.argmax(cand == shelter[:, None], axis=1)
    placed = shelter >= 0
    time_s = np.where(placed, tim[np.arange(h), pos], np.nan)
    reason = np.full(h, "", dtype=object)
    reason[~placed & (cand[:, 0] < 0)] = NO_ROAD
    reason[~placed & (cand[:, 0] >= 0)] = NO_CAPACITY
    load = np.bincount(shelter[placed], weights=people[placed], minlength=cap.size).astype(np.int64)
    if np.any(load > cap):                                          # the repair guarantees it
        raise AssignmentError("internal error: a shelter was filled over its capacity")
    objective = int((people[placed] * cost[placed, pos[placed]]).sum())
    out = ~placed & (cand[:, 0] >= 0)
    objective += int((people[out] * (pen[out] + cost[out, 0])).sum())
    gap = (objective - lower_bound) / lower_bound if lower_bound > 0 else 0.0
    return Assignment(shelter=shelter, time_s=time_s, reason=reason.astype(str), load=load,
                      objective=objective, lower_bound=lower_bound, gap=float(gap), split=n_split,
                      widened=int(widened.sum()), penalty=penalty)


def _costs(cand: np.ndarray, tim: np.ndarray, w: np.ndarray, people: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """Sorted candidates, integer costs, the penalty and the households in the flow."""
    cand, tim = _sorted(cand, tim)
    cost = np.where(cand >= 0, np.rint(tim * w[:, None]), 0).astype(np.int64)
    max_cost = int(cost.max(initial=0))
    penalty = (int(np.unique(cand[cand >= 0]).size) + 1) * max_cost + 1
    pen = np.rint(penalty * w).astype(np.int64)
    rows = np.flatnonzero((cand[:, 0] >= 0) & (people > 0))
    return cand, tim, cost, pen, penalty, rows


def _widened(widen: Callable[[np.ndarray, int], Any], need: np.ndarray, cand: np.ndarray, tim: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of the households ``need`` replaced by ``widen``'s longer lists.

    Returns the new arrays and, per household of ``need``, whether its list grew
    (or is now complete: a list that cannot grow is complete).
    """
    k2 = 2 * int((cand[need] >= 0).sum(axis=1).max(initial=1))
    ns, nt, nc = _as_candidates(widen(need, max(k2, 2)))
    if ns.ndim != 2 or ns.shape[0] != need.size or nt.shape != ns.shape:
        raise AssignmentError(f"widen returned arrays of shape {ns.shape} / {nt.shape} for "
                              f"{need.size} households; it must give (households, k) arrays")
    ns = np.where(np.isfinite(nt), ns, -1)
    grew = ((ns >= 0).sum(axis=1) > (cand[need] >= 0).sum(axis=1)) & ~np.asarray(nc, dtype=bool)
    width = max(cand.shape[1], ns.shape[1])
    cand = _pad(cand, width, -1)
    tim = _pad(tim, width, np.inf)
    cand[need] = _pad(ns, width, -1)
    tim[need] = _pad(np.where(ns >= 0, nt, np.inf), width, np.inf)
    cand, tim = _sorted(cand, tim)
    width = max(int((cand >= 0).sum(axis=1).max(initial=1)), 1)    # no all-empty columns
    return cand[:, :width], tim[:, :width], grew


def _pad(a: np.ndarray, width: int, fill: float) -> np.ndarray:
    if a.shape[1] >= width:
        return a
    return np.concatenate([a, np.full((a.shape[0], width - a.shape[1]), fill, dtype=a.dtype)], axis=1)


def _sorted(cand: np.ndarray, tim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidates in ascending time per row (none last)."""
    t = np.where(cand >= 0, tim, np.inf)
    o = np.lexsort((cand, t), axis=1)
    return np.take_along_axis(cand, o, axis=1), np.take_along_axis(t, o, axis=1)


def _whole(flow: _Flow, rows: np.ndarray, people: np.ndarray, cand: np.ndarray, cost: np.ndarray,
           pen: np.ndarray, cap: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, int]:
    """Turn the people flow into whole households (see the module docstring)."""
    h = people.size
    shelter = np.full(h, -1, dtype=np.int64)
    out, best = _spread(flow, rows, people, w)
    done = out >= -1
    shelter[rows[done]] = out[done]
    split = rows[~done]
    best_of = np.full(h, -1, dtype=np.int64)
    best_of[rows] = best
    n_split = int(split.size)
    for _ in range(MAX_REPAIR_ROUNDS):
        if split.size == 0:
            break
        placed = shelter >= 0
        room = cap - np.bincount(shelter[placed], weights=people[placed], minlength=cap.size).astype(np.int64)
        # proposals: the largest share, heavier then larger households first
        order = np.lexsort((-people[split], -w[split]))
        ok = _fit(best_of[split], people[split], order, room)
        shelter[split[ok]] = best_of[split[ok]]
        rest = split[~ok]
        if rest.size == 0:
            split = rest
            break
        placed = shelter >= 0
        room = cap - np.bincount(shelter[placed], weights=people[placed], minlength=cap.size).astype(np.int64)
        # residual flow: only shelters with room for the WHOLE household stay candidates
        c2 = np.where((cand[rest] >= 0) & (room[np.maximum(cand[rest], 0)] >= people[rest, None]),
                      cand[rest], -1)
        o2 = np.argsort(c2 < 0, axis=1, kind="stable")
        cand2 = np.full_like(cand, -1)
        cost2 = np.zeros_like(cost)
        cand2[rest] = np.take_along_axis(c2, o2, axis=1)
        cost2[rest] = np.take_along_axis(cost[rest], o2, axis=1)
        if np.array_equal(np.sort(rest), np.sort(split)) and not ok.any() and _ > 0:
            break                                       # no progress: greedy finish
        f2 = _solve(people, cand2, cost2, pen, room, rest[cand2[rest, 0] >= 0])
        r2 = rest[cand2[rest, 0] >= 0]
        out, best = _spread(f2, r2, people, w)
        done = out >= -1
        shelter[r2[done]] = out[done]
        split = r2[~done]
        best_of[r2] = best
    _fill(shelter, rows[shelter[rows] < 0], people, cand, cost, cap, w)
    return shelter, n_split


def _fill(shelter: np.ndarray, left: np.ndarray, people: np.ndarray, cand: np.ndarray, cost: np.ndarray,
          cap: np.ndarray, w: np.ndarray) -> None:
    """Place the households ``left`` in the room left, then by moving others (in place).

    Candidate by candidate in cost order, heavier then larger households first;
    then :func:`_eject`.
    """
    placed = shelter >= 0
    room = cap - np.bincount(shelter[placed], weights=people[placed], minlength=cap.size).astype(np.int64)
    for j in range(cand.shape[1]):
        if left.size == 0:
            break
        prop = cand[left, j]
        prop = np.where((prop >= 0) & (room[np.maximum(prop, 0)] >= people[left]), prop, -1)
        ok = _fit(prop, people[left], np.lexsort((-people[left], -w[left])), room)
        shelter[left[ok]] = prop[ok]
        room -= np.bincount(prop[ok], weights=people[left[ok]], minlength=cap.size).astype(np.int64)
        left = left[~ok]
    _eject(shelter, left[np.lexsort((-people[left], -w[left]))], people, cand, cost, room)


def _improve(shelter: np.ndarray, people: np.ndarray, cand: np.ndarray, cost: np.ndarray, cap: np.ndarray,
             passes: int = 3) -> None:
    """Move placed households to a cheaper candidate that has room (in place).

    After the repair, room may be left where a household's share was; each pass
    offers every placed household its cheapest candidate with room that costs
    less than where it is, largest saving first, while room lasts.
    """
    for _ in range(passes):
        placed = np.flatnonzero(shelter >= 0)
        room = cap - np.bincount(shelter[placed], weights=people[placed], minlength=cap.size).astype(np.int64)
        c = cand[placed]
        cur = np.argmax(c == shelter[placed, None], axis=1)
        cur_cost = cost[placed, cur]
        better = (c >= 0) & (cost[placed] < cur_cost[:, None]) \
            & (room[np.maximum(c, 0)] >= people[placed, None])
        has = better.any(axis=1)
        if not has.any():
            return
        j = np.argmax(better, axis=1)                           # candidates are in cost order
        mv = placed[has]
        prop = c[has, j[has]]
        saving = people[mv] * (cur_cost[has] - cost[mv, j[has]])
        ok = _fit(prop, people[mv], np.argsort(-saving, kind="stable"), room)
        if not ok.any():
            return
        shelter[mv[ok]] = prop[ok]


def _eject(shelter: np.ndarray, left: np.ndarray, people: np.ndarray, cand: np.ndarray, cost: np.ndarray,
           room: np.ndarray) -> None:
    """Place the households ``left`` by moving one placed household out of their way (in place).

    For each household ``x`` left out (a few: those the rounding could not fit,
    at most about one per shelter whose capacity binds), every household ``y``
    placed at one of ``x``'s candidates that would free enough room by moving to
    another of its own candidates with room is a move; the cheapest move
    (``x``'s cost there + ``y``'s extra cost) is made. A loop over the few left
    out, vectorized over the households of their candidate shelters.
    """
    for x in left:
        cs = cand[x]
        ok = cs >= 0
        fit = np.flatnonzero(ok & (room[np.maximum(cs, 0)] >= people[x]))
        if fit.size:                                   # room appeared since: take the cheapest
            s = cs[fit[0]]
            shelter[x] = s
            room[s] -= people[x]
            continue
        ys = np.flatnonzero(np.isin(shelter, cs[ok]))
        if ys.size == 0:
            continue
        cur = shelter[ys]
        frees = people[ys] >= people[x] - room[cur]
        alt = cand[ys]
        cur_pos = np.argmax(alt == cur[:, None], axis=1)
        valid = (alt >= 0) & (alt != cur[:, None]) & (room[np.maximum(alt, 0)] >= people[ys, None]) \
            & frees[:, None]
        if not valid.any():
            continue
        x_cost = cost[x][np.argmax(cs[None, :] == cur[:, None], axis=1)]
        delta = cost[ys] - cost[ys, cur_pos][:, None] + x_cost[:, None]
        flat = np.argmin(np.where(valid, delta, np.iinfo(np.int64).max))
        i, j = np.unravel_index(flat, valid.shape)
        y, s_old, s_new = ys[i], cur[i], alt[i, j]
        shelter[y] = s_new
        room[s_new] -= people[y]
        room[s_old] += people[y] - people[x]
        shelter[x] = s_old
