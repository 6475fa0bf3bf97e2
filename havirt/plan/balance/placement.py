"""Placing the domains of one node on the others: evacuation, failover, N+1.

One rule, used by all three, so that N+1 says exactly what failover would
do: the domains, largest first (memory, then vCPUs, then name), each go to
the node left with the largest share of its memory free once it is there
(then the lowest vCPU ratio, then the first name), among the nodes that are
up, not in maintenance, not the one being emptied, that see its disks, and
where it fits next to what the earlier placements promised. A domain that
is not movable, or fits nowhere, is stranded with the reason and the numbers.

Evacuation sizes domains as they run (a live migration takes what the
domain holds); failover and N+1 as they would start from conf/
(``BDomain.restart_*``).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from havirt.plan.balance.model import NO_KEY, BDomain, BNode, Key, Layout
from havirt.plan.balance.plans import Move, PlacementPlan, Stranded
from havirt.plan.balance.score import DEFAULT_WEIGHTS, Sums, Weights

# (domain index, target node index) for each domain placed.
Placed = list[tuple[int, int]]
# A placement as it went, for each domain placed: (node, MiB, vCPUs, allowed
# nodes, the winner's key, the best key of the others). What the N+1 guard
# needs to tell cheaply whether a move changes the outcome.
Trace = list[tuple[int, int, int, "frozenset[int] | None", Key, Key]]


def place(
    layout: Layout, leaving: Sequence[int], exclude: int, restart: bool, trace: Trace | None = None,
    first: bool = False,
) -> tuple[Placed, list[Stranded]]:
    """Place domains ``leaving`` (indices into ``layout``) on every node but
    ``exclude`` (-1: none), without changing ``layout``; each step is
    appended to ``trace`` if one is given. ``first``: stop at the first
    domain that finds no place (its reason left out: the caller only asks
    which it is)."""
    order = placement_order(layout, leaving, restart)
    placed: Placed = []
    stranded: list[Stranded] = []
    ranking: Ranking | None = None
    for k in order:
        d = layout.doms[k]
        m, v = d.size(restart)
        if not d.movable:
            stranded.append(Stranded(d.name, f"{d.why_fixed} (not movable)", m, v))
            continue
        if ranking is None:
            ranking = Ranking(layout, exclude)
        j, key, runner_key = ranking.best(layout.allowed[k], m, v)
        if j < 0:
            if first:
                return placed, [Stranded(d.name, "", m, v)]
            why = _why_stranded(layout, k, m, v, exclude, ranking.extra_m, ranking.extra_v)
            stranded.append(Stranded(d.name, why, m, v))
            continue
        if trace is not None:
            trace.append((j, m, v, layout.allowed[k], key, runner_key))
        ranking.take(j, m, v)
        placed.append((k, j))
    return placed, stranded


def placement_order(layout: Layout, leaving: Sequence[int], restart: bool) -> list[int]:
    """Domains ``leaving`` in the order they are placed: largest first."""
    return sorted(leaving, key=lambda k: _largest_first(layout.doms[k], restart))


def _largest_first(d: BDomain, restart: bool) -> tuple[int, int, str]:
    m, v = d.size(restart)
    return -m, -v, d.name


# A kind of node: (usable MiB, CPUs, vCPU cap) and its nodes, each as
# (-free MiB, vCPUs in use, index), in that order (most free first).
_Kind = tuple[int, int, int, list[tuple[int, int, int]]]
# Allowed sets this small are ranked node by node.
FEW_ALLOWED = 16
# The ranking by kind is used when there are at least this many nodes to a kind.
KIND_MIN_NODES = 3


class Ranking:
    """The nodes one placement may use, ranked for each domain it places,
    with what it has promised each node so far (``extra_m``/``extra_v``).

    :meth:`best` answers what :func:`best_target` answers; it is faster on
    clusters of few kinds of nodes (memory, CPUs, vCPU cap): each kind keeps
    its nodes by free memory (most first), then vCPUs in use (fewest first),
    then index. Along that order ``Layout.rank`` falls, whatever the
    domain, so the search of a kind stops at the first node that ranks below
    the runner-up found so far, once it has made sure that the next ones
    rank lower still (one MiB less free, or one vCPU more in use, shows in
    the key despite rounding), or at the first that lacks the memory.
    Elsewhere, or for a domain whose disks few nodes see, every node that
    may take it is ranked (:func:`best_target`).
    """

    def __init__(self, layout: Layout, exclude: int) -> None:
        self.layout = layout
        self.exclude = exclude
        self.extra_m: dict[int, int] = {}
        self.extra_v: dict[int, int] = {}
        base = _kinds(layout)
        self.kinds: list[_Kind] | None = None
        if base is not None:
            self.kinds = [(u, c, cap, list(nodes)) for u, c, cap, nodes in base[0]]
            self.kind_of = base[1]
            if exclude >= 0:
                nodes = self.kinds[self.kind_of[exclude]][3]
                entry = (layout.mem[exclude] - layout.usable[exclude], layout.vcpu[exclude], exclude)
                del nodes[bisect_left(nodes, entry)]

    def take(self, j: int, m: int, v: int) -> None:
        """Promise ``m`` MiB and ``v`` vCPUs more to node ``j``."""
        lay = self.layout
        em, ev = self.extra_m.get(j, 0), self.extra_v.get(j, 0)
        if self.kinds is not None:
            nodes = self.kinds[self.kind_of[j]][3]
            taken = lay.mem[j] + em - lay.usable[j]
            used = lay.vcpu[j] + ev
            del nodes[bisect_left(nodes, (taken, used, j))]
            insort(nodes, (taken + m, used + v, j))
        self.extra_m[j] = em + m
        self.extra_v[j] = ev + v

    def best(self, allowed: frozenset[int] | None, m: int, v: int) -> tuple[int, Key, Key]:
        """The node that ranks first for a domain of ``m`` MiB and ``v``
        vCPUs whose disks ``allowed`` (-1 when it fits nowhere), its key,
        and the best key of the others: :func:`best_target`'s answer (a unit
        test checks it on random clusters)."""
        if self.kinds is None or (allowed is not None and len(allowed) <= FEW_ALLOWED):
            return best_target(self.layout, allowed, m, v, self.exclude, self.extra_m, self.extra_v)
        # Layout.fits and Layout.rank inlined (the placement's hottest loop),
        # from each node's entry: taken = allocated + promised - usable MiB,
        # used = allocated + promised vCPUs.
        best_j = -1
        best_key = runner_key = NO_KEY
        for u, c, cap, nodes in self.kinds:
            for taken, used, j in nodes:
                left = -taken - m
                if left < 0:
                    break  # nor do the next ones have the memory
                key = (left / u, -(used + v) / c, -j)
                if key < runner_key and (left - 1) / u < key[0] and -(used + v + 1) / c < key[1]:
                    # the next ones have less free (a lower share), or as much
                    # and more vCPUs in use (a lower second term), or a higher index
                    break
                if used + v > cap or (allowed is not None and j not in allowed):
                    continue
                if key > best_key:
                    runner_key = best_key
                    best_key = key
                    best_j = j
                elif key > runner_key:
                    runner_key = key
        return best_j, best_key, runner_key


def _kinds(layout: Layout) -> tuple[list[_Kind], list[int]] | None:
    """The kinds of nodes of ``layout`` as it is now, each with its nodes in
    :class:`Ranking`'s order, and the kind of each node; None when the
    nodes are too varied for that to pay. Kept until the layout changes."""
    cache = layout.ranking_cache
    if cache is not None and cache[0] == layout.mem and cache[1] == layout.vcpu:
        return cache[2]
    by_kind: dict[tuple[int, int, int], list[tuple[int, int, int]]] = {}
    for j in range(layout.n):
        kind = (layout.usable[j], layout.cpus[j], layout.vcap[j])
        by_kind.setdefault(kind, []).append((layout.mem[j] - layout.usable[j], layout.vcpu[j], j))
    out: tuple[list[_Kind], list[int]] | None = None
    if len(by_kind) * KIND_MIN_NODES <= layout.n:
        kinds = [(u, c, cap, sorted(nodes)) for (u, c, cap), nodes in sorted(by_kind.items())]
        kind_of = [0] * layout.n
        for q, kind in enumerate(kinds):
            for _, _, j in kind[3]:
                kind_of[j] = q
        out = (kinds, kind_of)
    layout.ranking_cache = (list(layout.mem), list(layout.vcpu), out)
    return out


def best_target(
    layout: Layout,
    allowed: frozenset[int] | None,
    m: int,
    v: int,
    exclude: int,
    extra_m: dict[int, int],
    extra_v: dict[int, int],
) -> tuple[int, Key, Key]:
    """The node that ranks first (``Layout.rank``) among those where a domain
    of ``m`` MiB and ``v`` vCPUs whose disks ``allowed`` fits (``Layout.fits``),
    with ``extra_*`` promised (-1 when it fits nowhere), its key, and the best
    key of the others."""
    best_j = -1
    best_key = runner_key = NO_KEY
    for j in range(layout.n) if allowed is None else sorted(allowed):
        em, ev = extra_m.get(j, 0), extra_v.get(j, 0)
        if j == exclude or not layout.fits(j, m, v, allowed, em, ev):
            continue
        key = layout.rank(j, m, v, em, ev)
        if key > best_key:
            runner_key = best_key
            best_key = key
            best_j = j
        elif key > runner_key:
            runner_key = key
    return best_j, best_key, runner_key


def _why_stranded(
    layout: Layout, k: int, m: int, v: int, exclude: int, extra_m: dict[int, int], extra_v: dict[int, int]
) -> str:
    """Why domain ``k`` fits on no node, with the numbers."""
    allowed = layout.allowed[k]
    eligible = [j for j in range(layout.n) if j != exclude and (allowed is None or j in allowed)]
    if not eligible:
        names = layout.doms[k].allowed
        if names is not None:
            return f"its disks are visible on no eligible node (allowed: {', '.join(sorted(names)) or 'none'})"
        return "no other node is available"
    free = {j: layout.usable[j] - layout.mem[j] - extra_m.get(j, 0) for j in eligible}
    most = max(eligible, key=lambda j: (free[j], -j))
    if free[most] < m:
        return f"needs {m} MiB, most free on an eligible node is {max(free[most], 0)} MiB ({layout.names[most]})"
    roomy = [j for j in eligible if free[j] >= m]
    used = {j: layout.vcpu[j] + extra_v.get(j, 0) for j in roomy}
    room = {j: layout.vcap[j] - used[j] for j in roomy}
    top = max(roomy, key=lambda j: (room[j], -j))
    return (
        f"needs {v} vCPUs, most vCPU room on an eligible node with {m} MiB free is "
        f"{max(room[top], 0)} ({layout.names[top]}: {used[top]} vCPUs on {layout.cpus[top]} CPUs, "
        f"max ratio {layout.max_ratio[top]:g})"
    )


def placement_moves(layout: Layout, placed: Placed, source: str, restart: bool) -> list[Move]:
    """The placements as moves, each with the score once it and the earlier
    ones are done, over the nodes but ``source`` (from the score sums, which
    a test checks against the definition)."""
    sums = Sums(layout.usable, layout.cpus, layout.mem, layout.vcpu, skip=layout.index.get(source, -1),
                weights=layout.weights)
    mem, vcpu = list(layout.mem), list(layout.vcpu)
    moves = []
    for k, j in placed:
        d = layout.doms[k]
        m, v = d.size(restart)
        mem[j] += m
        vcpu[j] += v
        sums.update(j, mem[j], vcpu[j], exact=False)
        moves.append(Move(d.name, source, layout.names[j], m, sums.cur))
    return moves


def _plan_off(nodes: list[BNode], domains: list[BDomain], source: str, restart: bool,
              weights: Weights) -> PlacementPlan:
    """Every domain of ``source`` placed on the other nodes."""
    others = [n for n in nodes if n.name != source]
    layout = Layout([*others, BNode(source, 1, 1, 0.0, maintenance=True)], domains, weights)
    leaving = [k for k, node in layout.aside if node == source]
    placed, stranded = place(layout, leaving, -1, restart)
    moves = placement_moves(layout, placed, source, restart)
    before = layout.score_now()
    return PlacementPlan(moves, stranded, before, moves[-1].score_after if moves else before)


def plan_evacuation(nodes: list[BNode], domains: list[BDomain], source: str,
                    weights: Weights = DEFAULT_WEIGHTS) -> PlacementPlan:
    """Live-migrate every domain off ``source`` (``node maintenance NAME on``).

    ``source`` is among ``nodes`` and is never a target; nor is a node in
    maintenance. Domains move at the size they run with; see the module
    docstring for where each goes. Stranded domains stay on ``source``.
    """
    if source not in {n.name for n in nodes}:
        raise ValueError(f"source {source!r} is not among the nodes")
    return _plan_off(nodes, domains, source, False, weights)


def plan_failover(nodes: list[BNode], domains: list[BDomain], source: str,
                  weights: Weights = DEFAULT_WEIGHTS) -> PlacementPlan:
    """Restart the domains of a lost node ``source`` on the others.

    ``source`` need not be among ``nodes`` (it did not answer); its domains
    are those of ``domains`` whose ``node`` is ``source``, sized as they
    start from conf/ (``restart_*``). Placed exactly as :func:`plan_evacuation`
    places, and as N+1 predicts.
    """
    return _plan_off(nodes, domains, source, True, weights)
