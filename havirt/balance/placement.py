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

import math
from collections.abc import Sequence

from .model import BDomain, BNode, Layout
from .plans import Move, PlacementPlan, Stranded
from .score import Sums, score_of

# (domain index, target node index) for each domain placed.
Placed = list[tuple[int, int]]
# How a target ranks for a domain: (free share left once it is there, minus
# the vCPU ratio then); the highest wins, the first node by name on a tie.
Key = tuple[float, float]
NO_KEY: Key = (-math.inf, 0.0)
# A placement as it went, for each domain placed: (node, MiB, vCPUs, allowed
# nodes, the winner's key, the best key of the others). What the N+1 guard
# needs to tell cheaply whether a move changes the outcome.
Trace = list[tuple[int, int, int, "frozenset[int] | None", Key, Key]]


def place(
    layout: Layout, leaving: Sequence[int], exclude: int, restart: bool, trace: Trace | None = None
) -> tuple[Placed, list[Stranded]]:
    """Place domains ``leaving`` (indices into ``layout``) on every node but
    ``exclude`` (-1: none), without changing ``layout``; each step is
    appended to ``trace`` if one is given."""
    extra_m: dict[int, int] = {}
    extra_v: dict[int, int] = {}
    order = sorted(leaving, key=lambda k: _largest_first(layout.doms[k], restart))
    placed: Placed = []
    stranded: list[Stranded] = []
    for k in order:
        d = layout.doms[k]
        m, v = d.size(restart)
        if not d.movable:
            stranded.append(Stranded(d.name, f"{d.why_fixed} (not movable)", m, v))
            continue
        j, key, runner_key = _best_target(layout, k, m, v, exclude, extra_m, extra_v)
        if j < 0:
            stranded.append(Stranded(d.name, _why_stranded(layout, k, m, v, exclude, extra_m, extra_v), m, v))
            continue
        if trace is not None:
            trace.append((j, m, v, layout.allowed[k], key, runner_key))
        extra_m[j] = extra_m.get(j, 0) + m
        extra_v[j] = extra_v.get(j, 0) + v
        placed.append((k, j))
    return placed, stranded


def _largest_first(d: BDomain, restart: bool) -> tuple[int, int, str]:
    m, v = d.size(restart)
    return -m, -v, d.name


def _best_target(
    layout: Layout, k: int, m: int, v: int, exclude: int, extra_m: dict[int, int], extra_v: dict[int, int]
) -> tuple[int, Key, Key]:
    """The node that ranks first for ``k`` (-1 when it fits nowhere), its key,
    and the best key of the others. The fit test is ``Layout.fits`` and the
    key :func:`target_key`, both unrolled for speed."""
    best_j = -1
    best_key = runner_key = NO_KEY
    usable, cpus, mem, vcpu, vcap = layout.usable, layout.cpus, layout.mem, layout.vcpu, layout.vcap
    allowed = layout.allowed[k]
    for j in range(layout.n) if allowed is None else sorted(allowed):
        if j == exclude:
            continue
        left = usable[j] - mem[j] - extra_m.get(j, 0) - m
        used = vcpu[j] + extra_v.get(j, 0) + v
        if left < 0 or used > vcap[j]:
            continue
        key = (left / usable[j], -used / cpus[j])
        if key > best_key:
            runner_key = best_key
            best_key = key
            best_j = j
        elif key > runner_key:
            runner_key = key
    return best_j, best_key, runner_key


def target_key(
    layout: Layout, j: int, m: int, v: int, allowed: frozenset[int] | None, extra_m: int, extra_v: int
) -> Key | None:
    """How node ``j`` ranks for a domain of ``m`` MiB and ``v`` vCPUs that may
    use ``allowed``, with ``extra_*`` already promised to it; None if it does
    not fit there."""
    left = layout.usable[j] - layout.mem[j] - extra_m - m
    used = layout.vcpu[j] + extra_v + v
    if left < 0 or used > layout.vcap[j] or (allowed is not None and j not in allowed):
        return None
    return (left / layout.usable[j], -used / layout.cpus[j])


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
    sums = Sums(layout.usable, layout.cpus, layout.mem, layout.vcpu, skip=layout.index.get(source, -1))
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


def _plan_off(nodes: list[BNode], domains: list[BDomain], source: str, restart: bool) -> PlacementPlan:
    """Every domain of ``source`` placed on the other nodes."""
    others = [n for n in nodes if n.name != source]
    layout = Layout([*others, BNode(source, 1, 1, 0.0, maintenance=True)], domains)
    leaving = [k for k, node in layout.aside if node == source]
    placed, stranded = place(layout, leaving, -1, restart)
    moves = placement_moves(layout, placed, source, restart)
    before = score_of(layout.usable, layout.cpus, layout.mem, layout.vcpu)
    return PlacementPlan(moves, stranded, before, moves[-1].score_after if moves else before)


def plan_evacuation(nodes: list[BNode], domains: list[BDomain], source: str) -> PlacementPlan:
    """Live-migrate every domain off ``source`` (``node maintenance NAME on``).

    ``source`` is among ``nodes`` and is never a target; nor is a node in
    maintenance. Domains move at the size they run with; see the module
    docstring for where each goes. Stranded domains stay on ``source``.
    """
    if source not in {n.name for n in nodes}:
        raise ValueError(f"source {source!r} is not among the nodes")
    return _plan_off(nodes, domains, source, restart=False)


def plan_failover(nodes: list[BNode], domains: list[BDomain], source: str) -> PlacementPlan:
    """Restart the domains of a lost node ``source`` on the others.

    ``source`` need not be among ``nodes`` (it did not answer); its domains
    are those of ``domains`` whose ``node`` is ``source``, sized as they
    start from conf/ (``restart_*``). Placed exactly as :func:`plan_evacuation`
    places, and as N+1 predicts.
    """
    return _plan_off(nodes, domains, source, restart=True)
