"""Plain references for the balance planner's tests and benchmark.

Nothing here is used by havirt itself. Written the slow, obvious way, from
the definitions (``score.score_of`` and ``havirt.rules``), so that the
planner's fast, compiled forms can be checked against them.
"""

from __future__ import annotations

import dataclasses
import random

from havirt.plan.balance import BDomain, BNode, Move
from havirt.plan.balance.score import DEFAULT_WEIGHTS, Weights, score_of
from havirt.rules import fit as rules


def loads(nodes: list[BNode], domains: list[BDomain]) -> dict[str, rules.Load]:
    """Each node as ``rules.Load``; a domain with ``allowed`` has one disk,
    ``disk:NAME``, that exists exactly on the nodes of its ``allowed``."""
    paths = [(f"disk:{d.name}", d.allowed) for d in domains if d.allowed is not None]
    out = {}
    for n in nodes:
        here = [d for d in domains if d.node == n.name]
        out[n.name] = rules.Load(
            n.name, True, maintenance=n.maintenance, usable_mib=n.usable_mib, cpus=n.cpus,
            max_ratio=n.max_ratio, memory_mib=sum(d.memory_mib for d in here),
            vcpus=sum(d.vcpus for d in here), count=len(here),
            paths={p: n.name in allowed for p, allowed in paths})
    return out


def need(d: BDomain, restart: bool = False) -> rules.Need:
    """The domain as ``rules.Need`` (its disk as in :func:`loads`)."""
    mem, vcpus = d.size(restart)
    return rules.Need(d.name, mem, vcpus, () if d.allowed is None else (f"disk:{d.name}",))


def fits(nodes: list[BNode], domains: list[BDomain], d: BDomain, target: str) -> bool:
    """``rules.fit_problems`` says ``d`` may move to ``target`` now."""
    return not rules.fit_problems(loads(nodes, domains)[target], need(d))


def cluster_score(nodes: list[BNode], domains: list[BDomain], weights: Weights = DEFAULT_WEIGHTS) -> float:
    """The score from its definition, over the nodes not in maintenance."""
    active = sorted((n for n in nodes if not n.maintenance), key=lambda n: n.name)
    mem = [sum(d.memory_mib for d in domains if d.node == n.name) for n in active]
    vcpu = [sum(d.vcpus for d in domains if d.node == n.name) for n in active]
    return score_of([n.usable_mib for n in active], [n.cpus for n in active], mem, vcpu, weights)


def replay(nodes: list[BNode], domains: list[BDomain], moves: list[Move], *,
           restart: bool = False, source: str | None = None, weights: Weights = DEFAULT_WEIGHTS) -> list[BDomain]:
    """Do ``moves`` in order, asserting every hard limit (``havirt.rules``)
    at every step and each move's ``score_after``; returns where the
    domains end. ``restart``: domains take their restart size (failover);
    ``source``: the node being emptied, never a target and left out of the
    score."""
    now = list(domains)
    for mv in moves:
        k = next(i for i, d in enumerate(now) if d.name == mv.domain)
        d = now[k]
        assert d.movable, f"{d.name} is not movable"
        assert d.node == mv.source and mv.target not in (mv.source, source), mv
        mem, vcpus = d.size(restart)
        assert mv.memory_mib == mem
        problems = rules.fit_problems(loads(nodes, now)[mv.target], need(d, restart))
        assert not problems, problems
        now[k] = dataclasses.replace(d, node=mv.target, memory_mib=mem, vcpus=vcpus)
        left = [n for n in nodes if n.name != source]
        assert abs(mv.score_after - cluster_score(left, [x for x in now if x.node != source], weights)) < 1e-9
    return now


def plan_greedy(nodes: list[BNode], domains: list[BDomain], max_moves: int, min_gain: float) -> list[Move]:
    """The plain greedy plan: each step the single move, over every movable
    domain and every node, that lowers the score most, while that is at least
    ``min_gain / nodes``; a domain may move again."""
    now = list(domains)
    active = [n for n in nodes if not n.maintenance]
    moves: list[Move] = []
    current = cluster_score(nodes, now)
    while len(moves) < max_moves:
        best = None
        for k, d in enumerate(now):
            if not d.movable or not any(n.name == d.node for n in active):
                continue
            for n in active:
                if n.name == d.node or not fits(nodes, now, d, n.name):
                    continue
                trial = now[:k] + [dataclasses.replace(d, node=n.name)] + now[k + 1:]
                after = cluster_score(nodes, trial)
                if best is None or after < best[0]:
                    best = (after, k, n.name)
        if best is None or current - best[0] < max(min_gain / len(active), 1e-12):
            return moves
        after, k, target = best
        moves.append(Move(now[k].name, now[k].node, target, now[k].memory_mib, after))
        now[k] = dataclasses.replace(now[k], node=target)
        current = after
    return moves


def random_cluster(seed: int, n_nodes: int | None = None, n_domains: int | None = None,
                   *, allowed: float = 0.15, fixed: float = 0.03, maintenance: float = 0.0,
                   restart: float = 0.0) -> tuple[list[BNode], list[BDomain]]:
    """A small random cluster, skewed toward its first nodes, within the limits
    (a few odd ones: disks on some nodes, domains that may not move, nodes in
    maintenance, restart sizes that differ)."""
    rng = random.Random(seed)
    n = n_nodes or rng.randint(2, 9)
    nodes = [BNode(f"n{i:02d}", rng.choice([8192, 16384, 32768]), rng.choice([2, 4, 8]),
                   rng.choice([1.0, 2.0, 4.0]), maintenance=rng.random() < maintenance)
             for i in range(n)]
    names = [x.name for x in nodes]
    used = {x: [0, 0] for x in names}
    doms = []
    for k in range(n_domains if n_domains is not None else rng.randint(0, 6 * n)):
        m, v = rng.choice([512, 1024, 2048, 4096]), rng.choice([1, 1, 2, 4])
        allow = frozenset(rng.sample(names, rng.randint(1, n))) if rng.random() < allowed else None
        home = names[min(int(rng.expovariate(2.0 / n)), n - 1)]
        node = next(x for x in nodes if x.name == home)
        if used[home][0] + m > node.usable_mib or used[home][1] + v > rules.vcpu_cap(node.cpus, node.max_ratio):
            continue
        used[home][0] += m
        used[home][1] += v
        rm = rng.choice([m, m, 2 * m, m // 2]) if rng.random() < restart else None
        doms.append(BDomain(f"d{k:03d}", home, m, v, movable=rng.random() >= fixed,
                            why_fixed="in maintenance", allowed=allow, restart_memory_mib=rm))
    return nodes, doms


def moves_plain(layout, floor: float) -> list[tuple[float, int, int, int]]:
    """Every single move of ``layout`` (of the domains ``Layout.groups``
    stands for) that gains at least ``floor``, as (gain, source, domain,
    target), best first then by index: each pair tried, each fit asked of
    ``Layout.fits``, each gain from the score's definition."""
    out = []
    before = score_of(layout.usable, layout.cpus, layout.mem, layout.vcpu, layout.weights)
    for i in range(layout.n):
        for m, v, allowed, k in layout.groups(i):
            for j in range(layout.n):
                if j == i or not layout.fits(j, m, v, allowed):
                    continue
                with layout.trial(k, j):
                    gain = before - score_of(layout.usable, layout.cpus, layout.mem, layout.vcpu, layout.weights)
                if gain >= floor:
                    out.append((gain, i, k, j))
    return sorted(out, key=lambda c: (-c[0], c[1], c[2], c[3]))


def exchanges_plain(layout, floor: float) -> list[tuple[float, int, int]]:
    """Every exchange of two domains (those ``Layout.groups`` stands for) on
    two nodes that gains at least ``floor``, as (gain, one, the other), best
    first: both nodes within ``Layout.fits`` once exchanged, and one of the
    two migrations fits first, leaving a score at most the gain above the
    current one."""
    before = score_of(layout.usable, layout.cpus, layout.mem, layout.vcpu, layout.weights)

    def now() -> float:
        return score_of(layout.usable, layout.cpus, layout.mem, layout.vcpu, layout.weights)

    out = []
    for i in range(layout.n):
        for j in range(i + 1, layout.n):
            for m1, v1, al1, k1 in layout.groups(i):
                for m2, v2, al2, k2 in layout.groups(j):
                    if (m1, v1) == (m2, v2):
                        continue
                    if not (layout.fits(i, m2 - m1, v2 - v1, al2) and layout.fits(j, m1 - m2, v1 - v2, al1)):
                        continue
                    with layout.trial(k1, j), layout.trial(k2, i):
                        gain = before - now()
                    halves = []
                    for (a, to_a), (b, to_b) in (((k1, j), (k2, i)), ((k2, i), (k1, j))):
                        m, v = layout.dmem[a], layout.dvcpu[a]
                        if layout.fits(to_a, m, v, layout.allowed[a]):
                            with layout.trial(a, to_a):
                                halves.append(now())
                    if gain >= floor and halves and min(halves) <= before + gain + 1e-12:
                        out.append((gain, k1, k2))
    return sorted(out, key=lambda c: -c[0])
