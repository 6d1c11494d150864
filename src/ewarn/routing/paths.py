"""Shortest evacuation paths: snapping, travel time to the shelters, routes.

Everything here is a pure function over arrays and a scipy CSR road graph; the
road graph itself is :class:`ewarn.routing.graph.RoadNetwork` (its
``csr_with_edges(mode, reverse=True)`` gives the two arrays these functions need):

``graph_to``
    ``(n, n)`` :class:`scipy.sparse.csr_matrix` of the REVERSED road graph: entry
    ``(a, b)`` is the travel time [s] of the directed road edge ``b → a``. A
    Dijkstra search from a shelter node on it gives the travel time from every
    node TO the shelter, which respects one-way roads (Dijkstra 1959, in
    :func:`scipy.sparse.csgraph.dijkstra`).
``entry_edge``
    ``int64 (nnz,)`` aligned with ``graph_to.data``: the index of the road edge
    behind each entry (``RoadNetwork.edge_u/edge_v/...`` index), so that routes
    come back as edge indices with their real geometry.

Design (issue #5, measured in ``benchmarks/bench_routing.py``):

* Households and shelters are snapped to the nearest usable road node with a
  KD-tree in projected metres (:class:`scipy.spatial.cKDTree`); the straight
  line to that node is walked at the walking speed of the speeds table.
* :func:`shelter_costs` keeps, for every ORIGIN node, its ``k`` nearest shelters
  by travel time within the evacuation limit. It never holds the full
  ``shelters × nodes`` matrix: shelters are searched in chunks and only the
  columns of the origin nodes are kept, merged with ``numpy.argpartition``.
  The search radius grows by doubling, starting from an estimate of the time
  within which ``k`` shelters are found (see :func:`shelter_costs`); origins
  that already have ``k`` shelters within a radius ``L`` are exact, because a
  shelter not found within ``L`` is farther than all ``k`` found ones. Only the
  origins still short of ``k`` are searched again, from the shelters that can
  reach them, while such a pass costs at most ``effort`` times the first one;
  a row left short still lists every shelter within its radius (a prefix of
  the exact answer), and the assignment widens it when it matters. When there
  are fewer origins than shelters the search runs forward from the origins
  instead (same result, fewer searches).
* :func:`route_edges` runs one Dijkstra per USED shelter with predecessors and
  unrolls every route at once, one step of path length at a time (a loop over
  path length, never over households).

Measured (``benchmarks/bench_routing.py``; 202,500 nodes, 489,056 motorbike
arcs, 50,000 households, 300 shelters, 2 shared cores): the 8 nearest shelters
of every household in 0.9-1.3 s, the 23,800 routes (775,000 edges) in
0.4-0.6 s; networkx needs 1-1.3 s per shelter for the same searches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from ewarn.errors import EwarnError

__all__ = [
    "Candidates",
    "RoutingInputError",
    "candidate_shelters",
    "main_component",
    "route_edges",
    "route_totals",
    "shelter_costs",
    "snap",
    "usable_nodes",
    "walk_time_s",
]

#: Shelters (or origins) searched per Dijkstra call: bounds the dense
#: ``chunk × n_nodes`` distance block scipy allocates (8 × 200k nodes × 8 B = 13 MB). Small
#: blocks are reused by the allocator; blocks above glibc's 32 MB mmap threshold are
#: page-faulted afresh at every call, which cost more than the searches (measured).
DEFAULT_CHUNK = 8

#: Growth factor of the search radius between passes of :func:`shelter_costs`.
_GROWTH = 2.0

#: First search radius of :func:`shelter_costs` in units of ``sqrt(k) * median time to the nearest
#: shelter`` (tuned on the synthetic province of benchmarks/bench_routing.py; speed only).
_START = 1.0


class RoutingInputError(EwarnError):
    """Arrays handed to the routing functions that do not fit together."""


@dataclass(frozen=True)
class Candidates:
    """The nearest shelters of each origin by travel time.

    Attributes
    ----------
    shelter : numpy.ndarray
        int64 ``(o, k)``: shelter INDEX (position in the shelter arrays), ``-1`` where none.
    time_s : numpy.ndarray
        float64 ``(o, k)``: travel time [s], ascending along each row, ``inf`` where none.
    radius_s : numpy.ndarray
        float64 ``(o,)``: every shelter within this travel time [s] is listed (up to ``k``).
    complete : numpy.ndarray
        bool ``(o,)``: True when the row lists EVERY shelter reachable within the
        limit (fewer than ``k`` are); False when more may exist beyond the ``k``.
    """

    shelter: np.ndarray
    time_s: np.ndarray
    radius_s: np.ndarray
    complete: np.ndarray

    @property
    def count(self) -> np.ndarray:
        """Number of shelters listed per origin (int64 ``(o,)``)."""
        return (self.shelter >= 0).sum(axis=1)


# --------------------------------------------------------------------------- snapping


def usable_nodes(graph_to: sp.csr_matrix) -> np.ndarray:
    """Nodes one can both leave and reach on the road graph of a mode.

    Parameters
    ----------
    graph_to : scipy.sparse.csr_matrix
        ``(n, n)`` reversed road graph (entry ``(a, b)`` = time of edge ``b → a``) [s].

    Returns
    -------
    numpy.ndarray
        bool ``(n,)``: True where the node has an open outgoing AND incoming edge
        (finite travel time), so that a household snapped there can leave and a
        shelter snapped there can be reached.
    """
    g = sp.csr_matrix(graph_to)
    n = g.shape[0]
    ok = np.isfinite(g.data)
    rows = np.repeat(np.arange(n), np.diff(g.indptr))
    has_in = np.bincount(rows[ok], minlength=n) > 0         # a row of graph_to = edges INTO the node
    has_out = np.bincount(g.indices[ok], minlength=n) > 0   # a column = edges OUT of the node
    return has_in & has_out


def main_component(graph_to: sp.csr_matrix) -> np.ndarray:
    """Nodes of the largest strongly connected piece of the road graph of a mode.

    Parameters
    ----------
    graph_to : scipy.sparse.csr_matrix
        ``(n, n)`` road graph (reversed or not: the pieces are the same) [s].

    Returns
    -------
    numpy.ndarray
        bool ``(n,)``. Snapping households and shelters to these nodes (``usable``
        of :func:`snap`) keeps them off small disconnected pieces of the map (a
        lane digitised without its junction), from which no shelter, or no
        household, could be reached. Strong components by
        :func:`scipy.sparse.csgraph.connected_components` (Pearce 2005).
    """
    g = _check_graph(graph_to)
    _, label = connected_components(g, directed=True, connection="strong")
    return label == np.argmax(np.bincount(label))


def snap(node_x: np.ndarray, node_y: np.ndarray, x: np.ndarray, y: np.ndarray, *,
         usable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest usable road node of each point, in projected coordinates.

    Parameters
    ----------
    node_x, node_y : numpy.ndarray
        float64 ``(n,)`` road node coordinates [m] in a projected CRS (the region's UTM zone).
    x, y : numpy.ndarray
        float64 ``(p,)`` point coordinates [m] in the same CRS.
    usable : numpy.ndarray, optional
        bool ``(n,)`` nodes allowed (e.g. :func:`usable_nodes` of the mode's graph).

    Returns
    -------
    node : numpy.ndarray
        int64 ``(p,)`` node index, ``-1`` when no node is usable.
    dist_m : numpy.ndarray
        float64 ``(p,)`` straight-line distance to it [m], ``inf`` when none.

    Notes
    -----
    A KD-tree (:class:`scipy.spatial.cKDTree`) over the usable nodes; Euclidean
    distance in a UTM projection is within 0.1 % of the geodesic one at these
    distances (scale factor 0.9996 on the central meridian). Use
    ``RoadNetwork.nearest_nodes`` when a network (and its cached tree) is at hand.
    """
    node_x = np.asarray(node_x, dtype=np.float64)
    node_y = np.asarray(node_y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if node_x.shape != node_y.shape or x.shape != y.shape:
        raise RoutingInputError(f"snap: node_x {node_x.shape} / node_y {node_y.shape} and x {x.shape} / "
                                f"y {y.shape} must have equal shapes; pass projected coordinates [m]")
    keep = np.flatnonzero(np.ones(node_x.shape, bool) if usable is None else np.asarray(usable, bool))
    node = np.full(x.shape, -1, dtype=np.int64)
    dist = np.full(x.shape, np.inf)
    if keep.size == 0 or x.size == 0:
        return node, dist
    tree = cKDTree(np.column_stack([node_x[keep], node_y[keep]]))
    d, i = tree.query(np.column_stack([x, y]))
    return keep[i].astype(np.int64), d


def walk_time_s(distance_m: np.ndarray, speed_kmh: float) -> np.ndarray:
    """Time to walk a distance [s].

    Parameters
    ----------
    distance_m : numpy.ndarray
        Distance [m] (``inf`` gives ``inf``).
    speed_kmh : float
        Walking speed [km/h]; the ``walk`` speed of the speeds table
        (4 km/h = 1.1 m/s, Wood & Schmidtlein 2012, as cited in routing/tables/speeds.toml).

    Returns
    -------
    numpy.ndarray
        ``distance_m / (speed_kmh / 3.6)`` [s].
    """
    if not speed_kmh > 0:
        raise RoutingInputError(f"walking speed must be > 0 km/h, got {speed_kmh}; check the 'walk' "
                                "column of the speeds table")
    return np.asarray(distance_m, dtype=np.float64) / (speed_kmh / 3.6)


# --------------------------------------------------------------------------- times to shelters


def _check_graph(graph_to: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    if not sp.issparse(graph_to) or graph_to.ndim != 2 or graph_to.shape[0] != graph_to.shape[1]:
        raise RoutingInputError("graph_to must be a square scipy sparse matrix (the reversed road graph "
                                "of RoadNetwork.csr_with_edges(mode, reverse=True))")
    g = sp.csr_matrix(graph_to)
    if g.nnz and np.nanmin(g.data) < 0:
        raise RoutingInputError("graph_to has negative travel times; edge times must be >= 0 s")
    if not g.has_canonical_format:
        # parallel entries: keep the fastest (scipy would add them up)
        coo = g.tocoo()
        o = np.lexsort((coo.data, coo.col, coo.row))
        r, c, d = coo.row[o], coo.col[o], coo.data[o]
        first = np.r_[True, (r[1:] != r[:-1]) | (c[1:] != c[:-1])]
        g = sp.csr_matrix((d[first], (r[first], c[first])), shape=g.shape)
    return g


def _check_nodes(nodes: np.ndarray, n: int, what: str) -> np.ndarray:
    nodes = np.asarray(nodes)
    if nodes.ndim != 1 or (nodes.size and not np.issubdtype(nodes.dtype, np.integer)):
        raise RoutingInputError(f"{what}: expected a 1-D array of node indices, got {nodes.dtype} "
                                f"{nodes.shape}")
    nodes = nodes.astype(np.int64)
    if nodes.size and (nodes.max() >= n or nodes.min() < -1):
        raise RoutingInputError(f"{what}: node indices must be in 0..{n - 1} (or -1 for none); got "
                                f"{nodes.min()}..{nodes.max()}")
    return nodes


def _merge_topk(best_s: np.ndarray, best_t: np.ndarray, new_s: np.ndarray, new_t: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``k`` smallest times per row of two candidate blocks."""
    s = np.concatenate([best_s, new_s], axis=1)
    t = np.concatenate([best_t, new_t], axis=1)
    if t.shape[1] > k:
        part = np.argpartition(t, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(s, part, axis=1)
        t = np.take_along_axis(t, part, axis=1)
    return s, t


def _search(graph: sp.csr_matrix, sources: np.ndarray, limit: float, chunk: int, cols: np.ndarray,
            work: list[int]):
    """Yield ``(i0, i1, D)``: Dijkstra times from ``sources[i0:i1]`` to the nodes ``cols``.

    Appends the number of nodes reached (the work done) to ``work``.
    """
    for i0 in range(0, sources.size, chunk):
        i1 = min(i0 + chunk, sources.size)
        D = dijkstra(graph, directed=True, indices=sources[i0:i1], limit=limit)
        work.append(int(np.count_nonzero(np.isfinite(D))))
        yield i0, i1, D[:, cols]


def _nearest(g: sp.csr_matrix, sh_nodes: np.ndarray, sh_off: np.ndarray, limit: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Time to the nearest shelter (offset included) and which one, for every node.

    One multi-source Dijkstra from a virtual node per shelter, linked to the
    shelter's road node by an edge of ``1 + offset`` seconds (the 1 s keeps zero
    offsets as stored edges; it is taken off again).
    """
    n, m = g.shape[0], sh_nodes.size
    # rows n..n+m-1 appended to the CSR arrays directly (one entry each; no re-sort)
    aug = sp.csr_matrix((np.r_[g.data, 1.0 + sh_off], np.r_[g.indices, sh_nodes],
                         np.r_[g.indptr, g.indptr[-1] + np.arange(1, m + 1)]), shape=(n + m, n + m))
    d, _, src = dijkstra(aug, directed=True, indices=n + np.arange(m), min_only=True, limit=limit + 1.0,
                         return_predecessors=True)
    d, src = d[:n] - 1.0, src[:n]
    near = np.where(np.isfinite(d) & (src >= n), src - n, -1).astype(np.int64)
    return np.where(near >= 0, d, np.inf), near


def shelter_costs(graph_to: sp.csr_matrix, shelter_nodes: np.ndarray, origin_nodes: np.ndarray, *,
                  limit_s: float, k: int, shelter_offset_s: np.ndarray | None = None,
                  start_s: float | None = None, effort: float = 1.0,
                  chunk_size: int = DEFAULT_CHUNK) -> Candidates:
    """The nearest shelters (up to ``k``), by travel time, of each origin node.

    Parameters
    ----------
    graph_to : scipy.sparse.csr_matrix
        ``(n, n)`` reversed road graph of the mode [s] (entry ``(a, b)`` = edge ``b → a``).
    shelter_nodes : numpy.ndarray
        int ``(s,)`` road node of each shelter (``-1``: not on the network, never a candidate).
    origin_nodes : numpy.ndarray
        int ``(o,)`` road node of each origin (``-1``: none); repeated nodes are searched once.
    limit_s : float
        Maximum travel time [s] (the evacuation limit, minus any leg the caller adds).
    k : int
        Shelters kept per origin (``[routing] candidate_shelters``).
    shelter_offset_s : numpy.ndarray, optional
        float ``(s,)`` time added to every trip to a shelter [s] (the walk from its
        road node to its door); counted in the ranking and the limit.
    start_s : float, optional
        First search radius [s]; by default ``√k · median(time to the nearest
        shelter)`` over the origins (in 2-D the number of shelters within a radius
        grows as its square).
    effort : float
        How far the search goes for origins with fewer than ``k`` shelters within the
        first radius: the radius doubles while the next pass would reach at most
        ``effort`` times as many nodes as the first one (or four whole-graph searches,
        whichever is more). ``numpy.inf``: until the limit, so that every row is the
        full answer.
    chunk_size : int
        Sources per Dijkstra call (memory ``chunk_size × n × 8`` bytes).

    Returns
    -------
    Candidates
        One row per entry of ``origin_nodes``, ascending ``time_s`` (including
        ``shelter_offset_s``), ties by shelter index.

    Notes
    -----
    Row ``o`` is always a PREFIX of the origin's shelters sorted by time: the ``k``
    nearest within the limit when ``k`` were found; else every shelter within
    ``radius_s[o]`` (``complete`` when that radius reached ``limit_s``). An origin that
    can reach a shelter within the limit but found none within its radius gets its
    nearest shelter (one multi-source search from all shelters), so that only
    origins that reach none have an empty row. The assignment widens short rows
    on demand (:func:`ewarn.routing.assign.assign`, ``widen``).
    """
    g = _check_graph(graph_to)
    n = g.shape[0]
    shelter_nodes = _check_nodes(shelter_nodes, n, "shelter_nodes")
    origin_nodes = _check_nodes(origin_nodes, n, "origin_nodes")
    if k < 1:
        raise RoutingInputError(f"k must be >= 1 (shelters kept per origin), got {k}")
    if not limit_s >= 0:
        raise RoutingInputError(f"limit_s must be >= 0 s, got {limit_s}")
    off = (np.zeros(shelter_nodes.size) if shelter_offset_s is None
           else np.asarray(shelter_offset_s, dtype=np.float64))
    if off.shape != shelter_nodes.shape or np.any(~(off >= 0)) or np.any(~np.isfinite(off)):
        raise RoutingInputError("shelter_offset_s must be finite, >= 0 and have one value per shelter")

    # no trip is longer than all roads end to end: an infinite limit becomes that (doubling ends)
    limit_s = min(float(limit_s), float(np.sum(g.data[np.isfinite(g.data)])) + float(off.max(initial=0.0)))
    n_orig = origin_nodes.size
    out_s = np.full((n_orig, k), -1, dtype=np.int64)
    out_t = np.full((n_orig, k), np.inf)
    out_r = np.full(n_orig, float(limit_s))
    on_net = origin_nodes >= 0
    uo, inv = np.unique(origin_nodes[on_net], return_inverse=True)
    sh_ok = np.flatnonzero((shelter_nodes >= 0) & (off <= limit_s))
    if uo.size == 0 or sh_ok.size == 0:
        return Candidates(out_s, out_t, out_r, np.ones(n_orig, dtype=bool))
    sh_nodes, sh_off = shelter_nodes[sh_ok], off[sh_ok]

    if uo.size < sh_ok.size and not np.isfinite(effort):
        # a few origins searched to the limit anyway (e.g. widening): no whole-graph search first
        d1, near1 = np.full(uo.size, np.inf), np.full(uo.size, -1, dtype=np.int64)
        todo = np.arange(uo.size)
        start_s = limit_s / 4 if start_s is None else start_s
    else:
        # nearest shelter of every origin: one multi-source search. Origins that reach none within
        # the limit are done (empty rows); the others give the first search radius.
        d1, near1 = _nearest(g, sh_nodes, sh_off, limit_s)
        d1, near1 = d1[uo], near1[uo]
        todo = np.flatnonzero(np.isfinite(d1))
    if start_s is None:
        start_s = _START * np.sqrt(k) * float(np.median(d1[todo])) if todo.size else limit_s
        start_s = max(start_s, float(sh_off.max()) + 1.0)
    radius = min(float(start_s), float(limit_s))

    best_s = np.full((uo.size, k), -1, dtype=np.int64)
    best_t = np.full((uo.size, k), np.inf)
    reach = np.full(uo.size, float(limit_s))
    src = np.arange(sh_ok.size)                  # shelters that can reach an origin to do
    budget = None
    g_fwd: sp.csr_matrix | None = None
    while todo.size and src.size:
        work: list[int] = []
        n_searches = min(todo.size, src.size)
        row_s = np.full((todo.size, k), -1, dtype=np.int64)
        row_t = np.full((todo.size, k), np.inf)
        if todo.size < src.size:
            # fewer origins than shelters: search forward from the origins, keep the shelter columns
            g_fwd = g.T.tocsr() if g_fwd is None else g_fwd
            for i0, i1, D in _search(g_fwd, uo[todo], radius, chunk_size, sh_nodes[src], work):
                tt = D + sh_off[src]
                tt[tt > radius] = np.inf
                s_idx = np.broadcast_to(src, tt.shape)
                row_s[i0:i1], row_t[i0:i1] = _merge_topk(row_s[i0:i1], row_t[i0:i1], s_idx, tt, k)
        else:
            # search back from the shelters on the reversed graph, keep the origin columns
            for i0, i1, D in _search(g, sh_nodes[src], radius, chunk_size, uo[todo], work):
                tt = D.T + sh_off[src[i0:i1]]
                tt[tt > radius] = np.inf
                s_idx = np.broadcast_to(src[i0:i1], tt.shape)
                row_s, row_t = _merge_topk(row_s, row_t, s_idx, tt, k)
        row_s = np.where(np.isfinite(row_t), row_s, -1)
        best_s[todo], best_t[todo] = row_s, row_t
        reach[todo] = radius
        per_search = sum(work) / n_searches                  # nodes reached per search [-]
        budget = effort * max(sum(work), 4 * n) if budget is None else budget
        todo = todo[(row_s >= 0).sum(axis=1) < k]
        if radius >= limit_s or todo.size == 0:
            break
        nxt_radius = min(radius * _GROWTH, float(limit_s))
        # every shelter found so far for these origins is within the new radius, so their rows are
        # rebuilt from scratch from the shelters within it (one forward multi-source search)
        g_fwd = g.T.tocsr() if g_fwd is None else g_fwd
        dl = dijkstra(g_fwd, directed=True, indices=uo[todo], min_only=True, limit=nxt_radius)
        nxt_src = np.flatnonzero(dl[sh_nodes] + sh_off <= nxt_radius)
        # next pass: its searches each reach up to GROWTH² as many nodes (2-D), at most all of them
        if min(todo.size, nxt_src.size) * min(per_search * _GROWTH**2, n) > budget:
            break
        radius, src = nxt_radius, nxt_src

    # an origin that reaches a shelter but found none within its radius: its nearest shelter
    empty = np.flatnonzero(np.isfinite(d1) & (best_s[:, 0] < 0))
    best_s[empty, 0], best_t[empty, 0] = near1[empty], d1[empty]

    # ascending time, ties by shelter index; map back to the caller's shelter indices
    order = np.lexsort((best_s, best_t), axis=1)
    best_s = np.take_along_axis(best_s, order, axis=1)
    best_t = np.take_along_axis(best_t, order, axis=1)
    best_s = np.where(best_s >= 0, sh_ok[np.maximum(best_s, 0)], -1)
    out_s[on_net] = best_s[inv]
    out_t[on_net] = best_t[inv]
    out_r[on_net] = reach[inv]
    complete = (out_s >= 0).sum(axis=1) < k
    complete &= out_r >= limit_s
    return Candidates(out_s, out_t, out_r, complete)


def candidate_shelters(graph_to: sp.csr_matrix, origin_nodes: np.ndarray, origin_walk_s: np.ndarray,
                       shelter_nodes: np.ndarray, shelter_walk_s: np.ndarray | None = None, *,
                       limit_s: float, k: int, effort: float = 1.0,
                       chunk_size: int = DEFAULT_CHUNK) -> Candidates:
    """The ``k`` nearest shelters of each HOUSEHOLD, door to door, within the limit.

    Parameters
    ----------
    graph_to : scipy.sparse.csr_matrix
        Reversed road graph of the mode [s].
    origin_nodes : numpy.ndarray
        int ``(h,)`` snapped road node of each household (``-1``: none).
    origin_walk_s : numpy.ndarray
        float ``(h,)`` walk from the house to that node [s] (:func:`walk_time_s`).
    shelter_nodes, shelter_walk_s : numpy.ndarray
        Road node of each shelter and the walk from it to the shelter [s].
    limit_s : float
        Maximum door-to-door evacuation time [s] (``[routing] max_travel_minutes``).
    k : int
        Shelters kept per household.
    effort : float
        See :func:`shelter_costs`.

    Returns
    -------
    Candidates
        ``time_s`` = walk to the road + road time + walk to the shelter [s], each
        ``<= limit_s``. A household's own walk is the same for every shelter, so its
        ``k`` nearest are those of its road node; a long walk only shortens the list.
    """
    walk = np.asarray(origin_walk_s, dtype=np.float64)
    origin_nodes = np.asarray(origin_nodes)
    if walk.shape != origin_nodes.shape:
        raise RoutingInputError("origin_walk_s must have one value per household (as origin_nodes)")
    if np.any(~(walk >= 0)):
        raise RoutingInputError("origin_walk_s must be >= 0 s (inf for a household with no road node)")
    road_limit = max(float(limit_s) - float(np.min(walk, initial=np.inf)), 0.0) if walk.size else 0.0
    nodes = np.where(np.isfinite(walk) & (walk <= limit_s), np.asarray(origin_nodes, np.int64), -1)
    c = shelter_costs(graph_to, shelter_nodes, nodes, limit_s=min(road_limit, float(limit_s)), k=k,
                      shelter_offset_s=shelter_walk_s, effort=effort, chunk_size=chunk_size)
    t = c.time_s + walk[:, None]
    t[~(t <= limit_s)] = np.inf
    s = np.where(np.isfinite(t), c.shelter, -1)
    # a row cut by the household's own walk lists every shelter it can reach in time (rows are
    # prefixes of the sorted shelters); so does a row searched to the limit
    cut = (s >= 0).sum(axis=1) < (c.shelter >= 0).sum(axis=1)
    radius = np.where(cut | (nodes < 0), float(limit_s), np.minimum(c.radius_s + walk, float(limit_s)))
    complete = c.complete | cut | (nodes < 0)
    return Candidates(s, t, radius, complete)


# --------------------------------------------------------------------------- routes


def _entry_lookup(g: sp.csr_matrix, entry_edge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``row * n + col`` keys of the CSR entries and the edge behind each (cheapest parallel)."""
    n = g.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(g.indptr))
    keys = rows * n + g.indices.astype(np.int64)
    if np.all(keys[1:] > keys[:-1]):         # canonical (RoadNetwork.csr_with_edges): nothing to sort
        return keys, entry_edge
    order = np.lexsort((g.data, keys))
    keys, edges = keys[order], entry_edge[order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    return keys[first], edges[first]


def route_edges(graph_to: sp.csr_matrix, entry_edge: np.ndarray, shelter_nodes: np.ndarray,
                origin_nodes: np.ndarray, shelter: np.ndarray, *, time_s: np.ndarray | None = None,
                limit_s: float = np.inf, chunk_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Road route of each (origin node, shelter) pair, as edge indices.

    Parameters
    ----------
    graph_to : scipy.sparse.csr_matrix
        ``(n, n)`` reversed road graph of the mode [s].
    entry_edge : numpy.ndarray
        int ``(nnz,)`` road edge index of each entry of ``graph_to.data``.
    shelter_nodes : numpy.ndarray
        int ``(s,)`` road node of each shelter.
    origin_nodes, shelter : numpy.ndarray
        int ``(p,)`` origin node and shelter INDEX of each pair (``shelter`` ``-1``: no
        route, empty).
    time_s : numpy.ndarray, optional
        float ``(p,)`` road travel time of each pair [s] (from :func:`shelter_costs`,
        without offsets); bounds each shelter's search to its farthest pair.
    limit_s : float
        Search bound [s] when ``time_s`` is not given.

    Returns
    -------
    offsets : numpy.ndarray
        int64 ``(p + 1,)``; pair ``i``'s route is ``edges[offsets[i]:offsets[i + 1]]``.
    edges : numpy.ndarray
        int64, edge indices from the origin to the shelter node in driving order
        (``edge_v[e_j] == edge_u[e_j+1]``). Empty when the origin is the shelter node.

    Raises
    ------
    RoutingInputError
        When a pair has no path within the bound (its time was not computed on this graph).

    Notes
    -----
    One Dijkstra per used shelter on the reversed graph with predecessors: the
    predecessor of a node in the search from the shelter is the NEXT node of the
    forward route. Routes are unrolled one hop at a time for all pairs at once.
    """
    g = _check_graph(graph_to)
    n = g.shape[0]
    g_in = sp.csr_matrix(graph_to)                 # the entries entry_edge is aligned with
    entry_edge = np.asarray(entry_edge, dtype=np.int64)
    if entry_edge.shape != (g_in.nnz,):
        raise RoutingInputError(f"entry_edge has {entry_edge.size} values for {g_in.nnz} graph entries; pass "
                                "the edge array returned with the matrix by csr_with_edges")
    shelter_nodes = _check_nodes(shelter_nodes, n, "shelter_nodes")
    origin_nodes = _check_nodes(origin_nodes, n, "origin_nodes")
    shelter = np.asarray(shelter, dtype=np.int64)
    if shelter.shape != origin_nodes.shape:
        raise RoutingInputError("origin_nodes and shelter must have one value per pair")
    p = origin_nodes.size
    valid = (shelter >= 0) & (origin_nodes >= 0)
    if np.any(shelter_nodes[shelter[valid]] < 0):
        raise RoutingInputError("a pair names a shelter that is not on the road network")
    keys, key_edge = _entry_lookup(g_in, entry_edge)

    bound = np.full(shelter_nodes.size, -np.inf)
    if time_s is None:
        np.maximum.at(bound, shelter[valid], limit_s)
    else:
        t = np.asarray(time_s, dtype=np.float64)
        if t.shape != shelter.shape or np.any(~np.isfinite(t[valid])):
            raise RoutingInputError("time_s must have one finite value per routed pair")
        np.maximum.at(bound, shelter[valid], t[valid])
    used = np.flatnonzero(bound > -np.inf)
    used = used[np.argsort(bound[used], kind="stable")]       # chunks of similar search radius
    bound = bound * (1 + 1e-9) + 1e-6                          # float noise between two searches

    # one Dijkstra per used shelter (in chunks), then every route of the chunk unrolled at once
    order = np.argsort(shelter, kind="stable")
    first_pair = np.searchsorted(shelter[order], np.arange(shelter_nodes.size + 1))
    row_of = np.full(shelter_nodes.size, -1, dtype=np.int64)
    rec: list[tuple[np.ndarray, int, np.ndarray]] = []
    for i0 in range(0, used.size, chunk_size):
        blk = used[i0:i0 + chunk_size]
        _, pred = dijkstra(g, directed=True, indices=shelter_nodes[blk], limit=float(bound[blk].max()),
                           return_predecessors=True)
        row_of[blk] = np.arange(blk.size)
        pid = np.concatenate([order[first_pair[b]:first_pair[b + 1]] for b in blk])
        pid = pid[valid[pid]]
        row, cur, target = row_of[shelter[pid]], origin_nodes[pid], shelter_nodes[shelter[pid]]
        go = cur != target
        pid, row, cur, target = pid[go], row[go], cur[go], target[go]
        step = 0
        while pid.size:
            nxt = pred[row, cur].astype(np.int64)
            if np.any(nxt < 0):
                bad = pid[np.flatnonzero(nxt < 0)[0]]
                raise RoutingInputError(
                    f"pair {bad}: node {origin_nodes[bad]} has no route to shelter {shelter[bad]} within "
                    f"{bound[shelter[bad]]:.0f} s on this graph; compute times and routes on the same "
                    "graph and mode")
            rec.append((pid, step, key_edge[np.searchsorted(keys, nxt * n + cur)]))
            cur = nxt
            go = cur != target
            pid, row, cur, target = pid[go], row[go], cur[go], target[go]
            step += 1
    # pair i's j-th edge goes to offsets[i] + j: no sort needed
    offsets = np.zeros(p + 1, dtype=np.int64)
    all_pairs = np.concatenate([r[0] for r in rec]) if rec else np.empty(0, np.int64)
    np.cumsum(np.bincount(all_pairs, minlength=p), out=offsets[1:])
    edges = np.empty(int(offsets[-1]), dtype=np.int64)
    for pr, st, ed in rec:
        edges[offsets[pr] + st] = ed
    return offsets, edges


def route_totals(offsets: np.ndarray, edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of an edge attribute along each route (e.g. length [m], time [s]).

    Parameters
    ----------
    offsets, edges : numpy.ndarray
        Routes as returned by :func:`route_edges`.
    values : numpy.ndarray
        float ``(m,)`` value per road edge.

    Returns
    -------
    numpy.ndarray
        float64 ``(p,)``; 0 for an empty route.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    csum = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64)[edges])])
    return csum[offsets[1:]] - csum[offsets[:-1]]
