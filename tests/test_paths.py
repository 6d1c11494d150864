"""Shortest evacuation paths: snapping, times to the nearest shelters, routes (ewarn.routing.paths)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from ewarn.routing.graph import network_from_arrays
from ewarn.routing.paths import (
    RoutingInputError,
    candidate_shelters,
    main_component,
    route_edges,
    route_totals,
    shelter_costs,
    snap,
    usable_nodes,
    walk_time_s,
)


def reversed_csr(n: int, u: np.ndarray, v: np.ndarray, t: np.ndarray) -> sp.csr_matrix:
    """Reversed graph of directed edges u→v with times t: entry (v, u)."""
    return sp.csr_matrix((np.asarray(t, float), (np.asarray(v), np.asarray(u))), shape=(n, n))


def grid(rows: int, cols: int, seed: int, *, keep: float = 0.8, oneway: float = 0.1):
    """Random directed grid: edge arrays u, v, t [s]; some roads one-way, some missing."""
    rng = np.random.default_rng(seed)
    idx = np.arange(rows * cols).reshape(rows, cols)
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    k = rng.random(a.size) < keep
    a, b = a[k], b[k]
    one = rng.random(a.size) < oneway
    flip = rng.random(a.size) < 0.5
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    u = np.r_[a, b[~one]]
    v = np.r_[b, a[~one]]
    t = rng.uniform(20, 90, u.size).round(1)
    return u, v, t


def brute(g_to: sp.csr_matrix, shelters: np.ndarray, origins: np.ndarray, off: np.ndarray, limit: float):
    """(o, s) door-to-door times from full Dijkstra, inf beyond the limit."""
    d = dijkstra(g_to, indices=shelters)[:, origins].T + off
    d[d > limit] = np.inf
    return d


# --------------------------------------------------------------------------- one-way roads


def test_one_way_road_is_driven_only_forward():
    # square 0-1-2-3; 0→1 is one-way (60 s), the other sides two-way (100 s each)
    u = np.array([0, 1, 2, 2, 3, 3, 0])
    v = np.array([1, 2, 1, 3, 2, 0, 3])
    t = np.array([60, 100, 100, 100, 100, 100, 100])
    g_to = reversed_csr(4, u, v, t)
    # shelter at node 1: the household at 0 drives the arrow; shelter at node 0: the one at 1 detours
    c = shelter_costs(g_to, np.array([1, 0]), np.array([0, 1]), limit_s=1e6, k=2)
    # origin 0: shelter 1 is on its node, shelter 0 (node 1) straight down the arrow
    assert list(c.shelter[0]) == [1, 0] and list(c.time_s[0]) == [0.0, 60.0]
    # origin 1: shelter 0 on its node, shelter 1 (node 0) only round the block 1 → 2 → 3 → 0
    assert list(c.shelter[1]) == [0, 1] and list(c.time_s[1]) == [0.0, 300.0]


def test_routes_follow_one_way_detour_and_are_contiguous():
    lon = np.array([104.00, 104.01, 104.01, 104.00])
    lat = np.array([22.40, 22.40, 22.41, 22.41])
    u = np.array([0, 1, 2, 2, 3, 3, 0])
    v = np.array([1, 2, 1, 3, 2, 0, 3])
    net = network_from_arrays(np.arange(4) + 100, lon, lat, u, v, highway=["tertiary"] * 7,
                              oneway=[True] + [False] * 6)
    g_to, entry = net.csr_with_edges("motorbike", reverse=True)
    off, edges = route_edges(g_to, entry, np.array([0]), np.array([1]), np.array([0]))
    route = edges[off[0]:off[1]]
    assert list(net.edge_u[route]) == [1, 2, 3] and list(net.edge_v[route]) == [2, 3, 0]
    # walking may go against the arrow: the walk-only reverse row
    g_walk, entry_w = net.csr_with_edges("walk", reverse=True)
    off, edges = route_edges(g_walk, entry_w, np.array([0]), np.array([1]), np.array([0]))
    assert edges.size == 1 and net.edge_u[edges[0]] == 1 and net.edge_v[edges[0]] == 0


# --------------------------------------------------------------------------- nearest shelters


@pytest.mark.parametrize("seed", range(6))
def test_shelter_costs_are_prefixes_of_the_exact_sorted_times(seed):
    rng = np.random.default_rng(seed)
    u, v, t = grid(25, 25, seed)
    n = 625
    g_to = reversed_csr(n, u, v, t)
    shelters = rng.choice(n, 15, replace=False)
    origins = rng.integers(0, n, 300)
    off = rng.uniform(0, 120, 15)
    limit = float(rng.uniform(600, 2500))
    k = int(rng.integers(1, 7))
    ref = np.sort(brute(g_to, shelters, origins, off, limit), axis=1)
    ref = np.pad(ref, ((0, 0), (0, max(0, k - ref.shape[1]))), constant_values=np.inf)[:, :k]
    for effort in (1.0, np.inf):
        c = shelter_costs(g_to, shelters, origins, limit_s=limit, k=k, shelter_offset_s=off, effort=effort)
        cnt = c.count
        listed = np.arange(k)[None, :] < cnt[:, None]
        np.testing.assert_allclose(np.where(listed, c.time_s, 0), np.where(listed, ref, 0))
        # the listed shelter really is that far, and within the limit
        D = brute(g_to, shelters, origins, off, limit)
        got = np.take_along_axis(D, np.maximum(c.shelter, 0), axis=1)
        np.testing.assert_allclose(got[listed], c.time_s[listed])
        assert np.all(c.time_s[listed] <= limit)
        # a row with fewer than k lists every shelter within its radius
        beyond = np.where(np.isfinite(ref), ref, np.inf)
        short = cnt < k
        nxt = beyond[short, np.minimum(cnt[short], k - 1)]
        assert np.all((nxt > c.radius_s[short] - 1e-9) | (cnt[short] == 0) | ~np.isfinite(nxt)
                      | (c.radius_s[short] == 0))
        # complete rows are the full answer
        full = c.complete | (cnt == k)
        np.testing.assert_allclose(np.where(np.isfinite(ref[full]), ref[full], -1),
                                   np.where(np.isfinite(c.time_s[full]), c.time_s[full], -1))
    # with effort=inf every row is the full answer
    assert np.all(c.complete | (c.count == k))


def test_unreachable_and_beyond_limit_origins_have_empty_complete_rows():
    # 0 - 1 - 2 chain (100 s per edge), node 3 isolated
    g_to = reversed_csr(4, np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]), np.array([100.0] * 4))
    c = shelter_costs(g_to, np.array([0]), np.array([1, 2, 3, -1]), limit_s=150, k=3)
    assert list(c.shelter[:, 0]) == [0, -1, -1, -1]
    assert c.time_s[0, 0] == 100.0 and np.all(np.isinf(c.time_s[1:, 0]))
    assert c.complete.all()


def test_origin_with_no_shelter_in_the_first_radius_gets_its_nearest():
    # origin 0 is 1000 s from the only shelter, the others 10 s: the first radius is small
    n = 12
    u = np.r_[np.arange(1, 11), 0]
    v = np.r_[np.full(10, 11), 11]
    t = np.r_[np.full(10, 10.0), 1000.0]
    g_to = reversed_csr(n, u, v, t)
    c = shelter_costs(g_to, np.array([11]), np.arange(11), limit_s=5000, k=3, effort=0.0)
    assert c.shelter[0, 0] == 0 and c.time_s[0, 0] == 1000.0
    assert np.all(c.time_s[1:, 0] == 10.0)


def test_no_limit_lists_every_reachable_shelter_and_ends():
    g_to = reversed_csr(4, np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]), np.array([100.0] * 4))
    c = shelter_costs(g_to, np.array([2, 3]), np.array([0]), limit_s=np.inf, k=5, effort=np.inf)
    assert list(c.shelter[0, :2]) == [0, -1] and c.time_s[0, 0] == 200.0 and c.complete[0]
    c = candidate_shelters(g_to, np.array([0]), np.array([10.0]), np.array([2, 3]), limit_s=np.inf, k=5,
                           effort=np.inf)
    assert c.time_s[0, 0] == 210.0 and c.complete[0]


def test_candidate_shelters_add_the_walk_and_cut_at_the_limit():
    g_to = reversed_csr(3, np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]), np.array([100.0] * 4))
    walk = walk_time_s(np.array([0.0, 100.0, 1000.0]), 4.0)        # 0, 90, 900 s
    c = candidate_shelters(g_to, np.array([0, 0, 0]), walk, np.array([1, 2]), np.array([5.0, 5.0]),
                           limit_s=300.0, k=2)
    np.testing.assert_allclose(c.time_s[0], [105.0, 205.0])
    np.testing.assert_allclose(c.time_s[1], [195.0, 295.0])
    assert c.shelter[2, 0] == -1 and c.complete[2]                 # the walk alone is too long
    assert not c.complete[0]                                        # k shelters listed: maybe more


def test_walk_time_and_bad_inputs():
    np.testing.assert_allclose(walk_time_s(np.array([1000.0]), 4.0), [900.0])
    with pytest.raises(RoutingInputError, match="walking speed"):
        walk_time_s(np.array([1.0]), 0.0)
    g_to = reversed_csr(2, np.array([0]), np.array([1]), np.array([1.0]))
    with pytest.raises(RoutingInputError, match="node indices"):
        shelter_costs(g_to, np.array([5]), np.array([0]), limit_s=10, k=1)
    with pytest.raises(RoutingInputError, match="k must be"):
        shelter_costs(g_to, np.array([1]), np.array([0]), limit_s=10, k=0)
    with pytest.raises(RoutingInputError, match="square"):
        shelter_costs(np.ones((2, 2)), np.array([1]), np.array([0]), limit_s=10, k=1)


# --------------------------------------------------------------------------- snapping


def test_snap_matches_brute_force_and_respects_usable():
    rng = np.random.default_rng(3)
    nx_, ny_ = rng.uniform(0, 5000, 400), rng.uniform(0, 5000, 400)
    px, py = rng.uniform(0, 5000, 100), rng.uniform(0, 5000, 100)
    usable = rng.random(400) < 0.5
    node, dist = snap(nx_, ny_, px, py, usable=usable)
    d = np.hypot(px[:, None] - nx_[None, :], py[:, None] - ny_[None, :])
    d[:, ~usable] = np.inf
    np.testing.assert_array_equal(node, d.argmin(axis=1))
    np.testing.assert_allclose(dist, d.min(axis=1))
    node, dist = snap(nx_, ny_, px, py, usable=np.zeros(400, bool))
    assert np.all(node == -1) and np.all(np.isinf(dist))


def test_usable_nodes_need_an_open_way_in_and_out():
    # 0 → 1 only, 1 ↔ 2, node 3 isolated
    g_to = reversed_csr(4, np.array([0, 1, 2]), np.array([1, 2, 1]), np.array([1.0, 1.0, 1.0]))
    assert list(usable_nodes(g_to)) == [False, True, True, False]


# --------------------------------------------------------------------------- routes


def test_routes_are_contiguous_end_at_their_shelter_and_add_up_to_the_time():
    rng = np.random.default_rng(11)
    rows = cols = 20
    ii, jj = np.divmod(np.arange(rows * cols), cols)
    lon, lat = 104.0 + jj * 0.003, 22.4 + ii * 0.003
    u, v, _ = grid(rows, cols, 11, keep=0.85, oneway=0.15)
    hw = rng.choice(["tertiary", "track", "unclassified"], u.size)
    net = network_from_arrays(np.arange(rows * cols), lon, lat, u, v, highway=hw)
    g_to, entry = net.csr_with_edges("motorbike", reverse=True)
    shelters = rng.choice(rows * cols, 6, replace=False)
    origins = rng.integers(0, rows * cols, 200)
    c = shelter_costs(g_to, shelters, origins, limit_s=3600, k=3)
    pick = rng.integers(0, 3, origins.size)
    sh = c.shelter[np.arange(origins.size), pick]
    tt = c.time_s[np.arange(origins.size), pick]
    ok = sh >= 0
    off, edges = route_edges(g_to, entry, shelters, origins[ok], sh[ok], time_s=tt[ok])
    times = net.edge_times("motorbike")
    np.testing.assert_allclose(route_totals(off, edges, times), tt[ok], rtol=1e-9)
    for i, (a, b) in enumerate(itertools.pairwise(off)):
        r = edges[a:b]
        if r.size == 0:
            assert origins[ok][i] == shelters[sh[ok][i]]
            continue
        assert net.edge_u[r[0]] == origins[ok][i]
        assert net.edge_v[r[-1]] == shelters[sh[ok][i]]
        np.testing.assert_array_equal(net.edge_v[r[:-1]], net.edge_u[r[1:]])
        assert np.all(np.isfinite(times[r]))                        # only roads the mode may use


def test_route_edges_refuses_a_pair_without_a_path():
    g_to = reversed_csr(3, np.array([0]), np.array([1]), np.array([10.0]))
    with pytest.raises(RoutingInputError, match="no route"):
        route_edges(g_to, np.array([0]), np.array([0]), np.array([1]), np.array([0]))
    off, edges = route_edges(g_to, np.array([0]), np.array([1]), np.array([0, 1]), np.array([0, -1]))
    assert list(off) == [0, 1, 1] and list(edges) == [0]
    assert list(route_totals(off, edges, np.array([10.0]))) == [10.0, 0.0]


def test_main_component_leaves_out_pieces_one_cannot_leave_or_reach():
    # 0 ↔ 1 ↔ 2 is the main piece; 3 → 0 can reach it but not be reached; 4 ↔ 5 a separate piece
    u = np.array([0, 1, 1, 2, 3, 4, 5])
    v = np.array([1, 0, 2, 1, 0, 5, 4])
    g_to = reversed_csr(6, u, v, np.ones(7))
    assert list(main_component(g_to)) == [True, True, True, False, False, False]


def test_parallel_roads_the_faster_one_is_taken():
    # two roads 0 → 1 (edge 0: 50 s, edge 1: 20 s) given as duplicate entries of the reversed graph
    g_to = sp.csr_matrix((np.array([50.0, 20.0]), np.array([0, 0]), np.array([0, 0, 2])), shape=(2, 2))
    assert not g_to.has_canonical_format
    c = shelter_costs(g_to, np.array([1]), np.array([0]), limit_s=100, k=1)
    assert c.time_s[0, 0] == 20.0
    _, edges = route_edges(g_to, np.array([0, 1]), np.array([1]), np.array([0]), np.array([0]))
    assert list(edges) == [1]
