"""Optimal capacitated assignment of households to shelters (ewarn.routing.assign)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from ewarn.routing.assign import (
    NO_CAPACITY,
    NO_ROAD,
    REASONS,
    AssignmentError,
    assign,
    priority_weight,
)
from ewarn.routing.paths import Candidates


def networkx_cost(people, cand, tim, cap, w, penalty) -> int:
    """The same problem, one node per household, solved by networkx (reference)."""
    g = nx.DiGraph()
    total = 0
    for i in range(people.size):
        ok = cand[i] >= 0
        if not ok.any() or people[i] == 0:
            continue
        g.add_node(("h", i), demand=-int(people[i]))
        total += int(people[i])
        for s, t in zip(cand[i][ok], tim[i][ok], strict=True):
            g.add_edge(("h", i), ("s", int(s)), capacity=int(people[i]), weight=int(np.rint(t * w[i])))
        c0 = int(np.rint(tim[i][ok].min() * w[i]))
        g.add_edge(("h", i), "sink", capacity=int(people[i]), weight=int(np.rint(penalty * w[i])) + c0)
    for s in range(cap.size):
        g.add_edge(("s", s), "sink", capacity=int(cap[s]), weight=0)
    g.add_node("sink", demand=total)
    return nx.min_cost_flow_cost(g)


def random_instance(rng, *, unit: bool):
    h = int(rng.integers(1, 40))
    s = int(rng.integers(1, 7))
    k = int(min(rng.integers(1, 5), s))
    people = np.ones(h, np.int64) if unit else rng.integers(1, 7, h)
    cand = np.array([rng.choice(s, k, replace=False) for _ in range(h)])
    tim = rng.uniform(0, 3600, cand.shape).round(1)
    drop = rng.random(cand.shape) < 0.2
    cand[drop], tim[drop] = -1, np.inf
    cap = rng.integers(0, int(people.sum() * 1.3 / s) + 2, s)
    w = rng.choice([1.0, 2.0, 3.0], h)
    return people, cand, tim, cap, w


def check_feasible(a, people, cand, cap):
    placed = a.shelter >= 0
    load = np.bincount(a.shelter[placed], weights=people[placed], minlength=cap.size)
    np.testing.assert_array_equal(load, a.load)
    assert np.all(a.load <= cap)                                    # no shelter over capacity
    # households whole: one shelter each, among its candidates
    assert all(a.shelter[i] in cand[i] for i in np.flatnonzero(placed))
    assert np.all(a.reason[placed] == "")
    assert set(a.reason[~placed]) <= {NO_ROAD, NO_CAPACITY}


@pytest.mark.parametrize("seed", range(4))
def test_flow_bound_equals_networkx_and_unit_households_are_optimal(seed):
    rng = np.random.default_rng(seed)
    for trial in range(25):
        unit = trial % 2 == 0
        people, cand, tim, cap, w = random_instance(rng, unit=unit)
        a = assign(people, cand, tim, cap, priority_weight=w)
        assert a.lower_bound == networkx_cost(people, cand, tim, cap, w, a.penalty)
        check_feasible(a, people, cand, cap)
        assert a.objective >= a.lower_bound and a.gap >= 0
        if unit:                        # a flow of single persons never splits: the bound is reached
            assert a.split == 0 and a.objective == a.lower_bound


def test_all_served_when_capacity_allows_and_cheapest_chosen():
    people = np.array([3, 2, 4])
    cand = np.array([[0, 1], [1, 0], [0, 1]])
    tim = np.array([[100.0, 500.0], [50.0, 80.0], [300.0, 310.0]])
    a = assign(people, cand, tim, np.array([7, 10]))
    assert list(a.shelter) == [0, 1, 0]
    np.testing.assert_allclose(a.time_s, [100.0, 50.0, 300.0])
    assert a.objective == a.lower_bound == 3 * 100 + 2 * 50 + 4 * 300
    # shelter 0 has room for 3 only: the household with the smaller detour moves (4·10 < 3·400)
    a = assign(people, cand, tim, np.array([3, 10]))
    assert list(a.shelter) == [0, 1, 1]


def test_no_capacity_and_no_road_reasons():
    people = np.array([2, 2, 2, 5])
    cand = np.array([[0], [0], [-1], [0]])
    tim = np.array([[10.0], [20.0], [np.inf], [30.0]])
    a = assign(people, cand, tim, np.array([4]))
    assert list(a.shelter) == [0, 0, -1, -1]
    assert list(a.reason) == ["", "", NO_ROAD, NO_CAPACITY]
    assert np.isnan(a.time_s[2]) and np.isnan(a.time_s[3])
    assert a.load[0] == 4
    vi, en = REASONS[NO_CAPACITY]
    assert "chỗ" in vi and "full" in en


def test_split_household_is_made_whole_within_capacity():
    # two shelters of 3: the flow packs 3 + 2 + 1 people of households 2, 2, 2 → one is split
    people = np.array([2, 2, 2])
    cand = np.array([[0, 1], [0, 1], [0, 1]])
    tim = np.array([[10.0, 20.0], [10.0, 20.0], [10.0, 20.0]])
    a = assign(people, cand, tim, np.array([3, 3]))
    check_feasible(a, people, cand, np.array([3, 3]))
    assert (a.shelter >= 0).sum() == 2                              # 6 people, 3 + 3 beds, whole households
    assert a.objective > a.lower_bound and a.gap > 0                # the bound served all 6
    # room for everyone once a shelter is big enough: no gap
    a = assign(people, cand, tim, np.array([4, 3]))
    assert np.all(a.shelter >= 0) and a.objective == a.lower_bound


def test_vulnerable_households_are_served_first_in_a_shortage():
    people = np.array([3, 3])
    cand = np.array([[0], [0]])
    tim = np.array([[100.0], [50.0]])
    w = priority_weight(np.array([1, 0]))
    assert list(w) == [2.0, 1.0]
    a = assign(people, cand, tim, np.array([3]), priority_weight=w)
    assert list(a.shelter) == [0, -1]                               # the farther but vulnerable one
    a = assign(people, cand, tim[::-1].copy(), np.array([3]), priority_weight=w)
    assert list(a.shelter) == [0, -1]                               # and the nearer vulnerable one
    # weights 1: leaving a person out costs the penalty plus their own nearest trip, so either
    # household may go, but exactly one does
    a = assign(people, cand, tim, np.array([3]))
    assert sorted(a.shelter) == [-1, 0] and a.objective == a.lower_bound


def test_priority_weight_urgency():
    w = priority_weight(np.array([0, 1, 0]), np.array([2.0, 2.0, np.nan]), urgent_hours=6)
    assert list(w) == [2.0, 4.0, 1.0]
    with pytest.raises(AssignmentError):
        priority_weight(np.array([1]), vulnerable_weight=0.5)


def test_widening_gives_more_candidates_until_everyone_fits():
    # both households list only shelter 0 (room for one); shelter 1 exists farther away
    people = np.array([2, 2])
    cand = np.array([[0], [0]])
    tim = np.array([[60.0], [90.0]])
    asked = []

    def widen(households, k):
        asked.append((list(households), k))
        s = np.tile([0, 1], (households.size, 1))
        t = np.column_stack([tim[households, 0], [600.0] * households.size])
        return Candidates(s, t, np.full(households.size, 300.0), np.ones(households.size, bool))

    a = assign(people, cand, tim, np.array([2, 10]), complete=np.array([False, False]), widen=widen)
    assert sorted(a.shelter) == [0, 1] and a.widened >= 1
    assert asked and asked[0][1] == 2
    assert a.shelter[0] == 0                                        # the one with the longer detour stays
    # without widening (or with complete lists) the second one has no capacity
    b = assign(people, cand, tim, np.array([2, 10]))
    assert list(b.reason) == ["", NO_CAPACITY]


def test_widening_stops_when_lists_cannot_grow():
    people = np.array([2, 2])
    cand = np.array([[0], [0]])
    tim = np.array([[60.0], [90.0]])
    calls = []

    def widen(households, k):
        calls.append(k)
        return cand[households], tim[households], np.zeros(households.size, bool)

    a = assign(people, cand, tim, np.array([2]), complete=np.array([False, False]), widen=widen)
    assert len(calls) == 1 and list(a.reason) == ["", NO_CAPACITY]


def test_zero_people_household_gets_the_nearest_shelter_without_using_room():
    a = assign(np.array([0, 2]), np.array([[1, 0], [0, 1]]), np.array([[5.0, 9.0], [5.0, 9.0]]),
               np.array([2, 0]))
    assert list(a.shelter) == [1, 0] and list(a.load) == [2, 0]


def test_bad_inputs_are_refused_with_a_clear_message():
    with pytest.raises(AssignmentError, match="must both be"):
        assign(np.array([1, 2]), np.array([[0]]), np.array([[1.0]]), np.array([5]))
    with pytest.raises(AssignmentError, match="same shelter twice"):
        assign(np.array([1]), np.array([[0, 0]]), np.array([[1.0, 2.0]]), np.array([5]))
    with pytest.raises(AssignmentError, match="capacity must be >= 0"):
        assign(np.array([1]), np.array([[0]]), np.array([[1.0]]), np.array([-1]))
    with pytest.raises(AssignmentError, match="indices must be in"):
        assign(np.array([1]), np.array([[3]]), np.array([[1.0]]), np.array([5]))
    with pytest.raises(AssignmentError, match="whole numbers"):
        assign(np.array([1.5]), np.array([[0]]), np.array([[1.0]]), np.array([5]))


def test_household_the_rounding_leaves_out_is_widened_and_placed():
    # 3 + 1 people fit 2 + 2 places only divided; the household of 3 finds shelter 2 by widening
    people = np.array([3, 1])
    cand = np.array([[0, 1], [0, 1]])
    tim = np.array([[100.0, 200.0], [100.0, 200.0]])

    def widen(households, k):
        s = np.tile([0, 1, 2], (households.size, 1))
        t = np.tile([100.0, 200.0, 900.0], (households.size, 1))
        return s, t, np.ones(households.size, bool)

    a = assign(people, cand, tim, np.array([2, 2, 10]), complete=np.array([False, False]), widen=widen)
    assert a.shelter[0] == 2 and a.shelter[1] in (0, 1) and a.widened == 1
    # the bound is the flow over the final lists (3 people could split over 0 and 1), so below
    assert a.lower_bound <= a.objective == 3 * 900 + 100
    b = assign(people, cand, tim, np.array([2, 2, 10]))
    assert list(b.reason) == [NO_CAPACITY, ""]
