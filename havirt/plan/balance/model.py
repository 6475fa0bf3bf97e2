"""What the planners reason about: nodes, domains, and the compiled layout.

:class:`BNode` and :class:`BDomain` are the planners' input, built by the
caller from a scan. :class:`Layout` compiles them into arrays (nodes in name
order, domains in name order, both by index) and carries the allocation as
moves are planned. The fit rule compiled here (:meth:`Layout.fits`) is
``havirt.rules``'s, exactly: memory ``allocated + need <= usable``, vCPUs
``allocated + need <= rules.vcpu_cap(cpus, max_ratio)``, disks seen on the
target (``allowed``); a unit test checks that, through the adapter
(plan/planner_input.py), it answers what ``rules.fit.fit_problems`` answers
on random clusters. :meth:`Layout.rank` is how a target ranks for a domain.
Every planner asks these two; the copies inlined in hot loops for speed
(each says so) are checked against them by unit tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from havirt.plan.balance.score import DEFAULT_WEIGHTS, Sums, Weights, score_of
from havirt.rules.fit import vcpu_cap


@dataclass(frozen=True)
class BNode:
    """A node that is up. ``maintenance``: it takes no domain (in
    maintenance, or its capacity is not known): never a target, left out of
    the score, its domains never moved by balance (N+1 still asks what its
    loss would mean); its capacity is never read."""

    name: str
    usable_mib: int  # memory domains may use: the admin's cap, or total minus the host reserve
    cpus: int  # physical CPUs (threads)
    max_ratio: float  # the most vCPUs per physical CPU allowed (e.g. 4.0)
    maintenance: bool = False


@dataclass(frozen=True)
class BDomain:
    """A running domain, as the planners see it.

    ``memory_mib``/``vcpus`` are what it holds now (what a live migration
    takes along); ``restart_*`` what it needs when started again from conf/
    (failover, N+1), ``None`` meaning the same as now.
    """

    name: str
    node: str  # where it runs now
    memory_mib: int
    vcpus: int
    movable: bool = True  # False: never moved nor restarted (in maintenance, no XML, on two nodes)
    why_fixed: str = "in maintenance"  # shown when movable is False
    allowed: frozenset[str] | None = None  # nodes where its disks are visible; None = every node
    restart_memory_mib: int | None = None
    restart_vcpus: int | None = None
    restarted: bool = True  # False: failover would leave it down on purpose (in maintenance)
    live: bool = True  # False: it moves only stopped and started elsewhere (a container): balance leaves it

    def size(self, restart: bool) -> tuple[int, int]:
        """(MiB, vCPUs) it needs: held now, or to be started again."""
        if not restart:
            return self.memory_mib, self.vcpus
        mem = self.memory_mib if self.restart_memory_mib is None else self.restart_memory_mib
        vcpus = self.vcpus if self.restart_vcpus is None else self.restart_vcpus
        return mem, vcpus


def validate(nodes: Sequence[BNode], domains: Sequence[BDomain]) -> None:
    """Reject input the planners cannot reason about (``ValueError``)."""
    seen: set[str] = set()
    for n in nodes:
        if n.name in seen:
            raise ValueError(f"node {n.name!r} given twice")
        seen.add(n.name)
        if n.maintenance:
            continue
        if n.usable_mib <= 0:
            raise ValueError(f"node {n.name!r}: usable_mib must be > 0, got {n.usable_mib}")
        if n.cpus <= 0:
            raise ValueError(f"node {n.name!r}: cpus must be > 0, got {n.cpus}")
    names: set[str] = set()
    for d in domains:
        if d.name in names:
            raise ValueError(f"domain {d.name!r} given twice")
        names.add(d.name)
        if d.node not in seen:
            raise ValueError(f"domain {d.name!r} runs on {d.node!r}, which is not among the nodes")
        if min(d.size(False) + d.size(True)) < 0:
            raise ValueError(f"domain {d.name!r}: negative memory or vCPUs")


# A planned migration by index: (domain, source node, target node).
Hop = tuple[int, int, int]
# How a target ranks for a domain (Layout.rank): (free share left once it is
# there, minus the vCPU ratio then, minus the node's index); the highest wins,
# so the first node by name on a tie. No two nodes have the same key.
Key = tuple[float, float, int]
NO_KEY: Key = (-math.inf, 0.0, 0)
# A kind of movable domain on one node: (memory, vcpus, allowed node indices,
# the first domain of that kind by name). Domains of one kind are alike for
# every rule, the score and N+1 (their restart size is part of the kind).
Group = tuple[int, int, "frozenset[int] | None", int]


class Layout:
    """Where every domain is, on the nodes that take part, as arrays.

    Nodes (``names``) are those not in maintenance, in name order; domains
    are indexed in name order. Nodes in maintenance (``parked``) and their
    domains (``aside``: ``(domain index, node name)``) are kept for the N+1
    question only.
    ``moved`` holds the domains a plan has moved already: they never move
    again, so no domain is migrated twice in one plan.
    """

    def __init__(self, nodes: Sequence[BNode], domains: Sequence[BDomain],
                 weights: Weights = DEFAULT_WEIGHTS) -> None:
        validate(nodes, domains)
        self.weights = weights
        active = sorted((n for n in nodes if not n.maintenance), key=lambda n: n.name)
        self.parked: list[str] = sorted(n.name for n in nodes if n.maintenance)
        self.n = len(active)
        self.names: list[str] = [n.name for n in active]
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        self.usable: list[int] = [n.usable_mib for n in active]
        self.cpus: list[int] = [n.cpus for n in active]
        self.max_ratio: list[float] = [n.max_ratio for n in active]
        self.vcap: list[int] = [vcpu_cap(n.cpus, n.max_ratio) for n in active]
        self.mem: list[int] = [0] * self.n
        self.vcpu: list[int] = [0] * self.n
        self.doms: list[BDomain] = sorted(domains, key=lambda d: d.name)
        self.dindex: dict[str, int] = {d.name: k for k, d in enumerate(self.doms)}
        self.dmem: list[int] = [d.memory_mib for d in self.doms]
        self.dvcpu: list[int] = [d.vcpus for d in self.doms]
        self.allowed: list[frozenset[int] | None] = [
            None if d.allowed is None else frozenset(self.index[x] for x in d.allowed if x in self.index)
            for d in self.doms
        ]
        self.where: list[int] = [-1] * len(self.doms)
        self.members: list[set[int]] = [set() for _ in range(self.n)]
        self.aside: list[tuple[int, str]] = []
        self.moved: set[int] = set()
        # the allocation's number: a new one whenever it changes (shift), the
        # old one again once a trial is undone (shifted)
        self.version = 0
        self._last_version = 0
        self._groups: list[list[Group] | None] = [None] * self.n
        # placement.Ranking's view of the nodes, with the allocation it was made for
        self.ranking_cache: tuple[list[int], list[int], object] | None = None
        for k, d in enumerate(self.doms):
            i = self.index.get(d.node)
            if i is None:
                self.aside.append((k, d.node))
                continue
            self.where[k] = i
            self.members[i].add(k)
            self.mem[i] += d.memory_mib
            self.vcpu[i] += d.vcpus
        self.sums = Sums(self.usable, self.cpus, self.mem, self.vcpu, weights=weights)

    # -- the compiled fit rule (havirt.rules, as arrays) and the rank ---------

    def fits(self, j: int, m: int, v: int, allowed: frozenset[int] | None,
             extra_m: int = 0, extra_v: int = 0) -> bool:
        """Whether a domain of ``m`` MiB and ``v`` vCPUs whose disks are seen
        on ``allowed`` (None: every node) may be placed on node ``j`` now,
        with ``extra_*`` already promised to ``j``: the rule."""
        return (
            self.mem[j] + extra_m + m <= self.usable[j]
            and self.vcpu[j] + extra_v + v <= self.vcap[j]
            and (allowed is None or j in allowed)
        )

    def rank(self, j: int, m: int, v: int, extra_m: int = 0, extra_v: int = 0) -> Key:
        """How node ``j`` ranks as the target of a domain of ``m`` MiB and
        ``v`` vCPUs (one that fits there), with ``extra_*`` already promised
        to it: the rank (see :data:`Key`)."""
        left = self.usable[j] - self.mem[j] - extra_m - m
        return left / self.usable[j], -(self.vcpu[j] + extra_v + v) / self.cpus[j], -j

    def headroom(self, j: int) -> tuple[int, int]:
        """(MiB, vCPUs) node ``j`` may still take: a domain fits there when it
        needs no more of either (and ``j`` sees its disks)."""
        return self.usable[j] - self.mem[j], self.vcap[j] - self.vcpu[j]

    def fitting(self, mem_mib: int, vcpus: int, allowed: frozenset[int] | None, targets: Iterable[int]) -> list[int]:
        """The nodes among ``targets`` where :meth:`fits` says a domain of that
        size may go now: :meth:`fits` inlined, in the search's hottest loop (a
        unit test checks the two agree)."""
        mem, vcpu, usable, vcap = self.mem, self.vcpu, self.usable, self.vcap
        return [
            j
            for j in targets
            if mem[j] + mem_mib <= usable[j]
            and vcpu[j] + vcpus <= vcap[j]
            and (allowed is None or j in allowed)
        ]

    def score_now(self) -> float:
        """The score of the allocation as it is, from its definition."""
        return score_of(self.usable, self.cpus, self.mem, self.vcpu, self.weights)

    # -- state ----------------------------------------------------------------

    def shift(self, k: int, j: int) -> int:
        """Put domain ``k`` on node ``j`` in the allocation only (a trial,
        undone by shifting it back); returns the node it was on."""
        i = self.where[k]
        m, v = self.dmem[k], self.dvcpu[k]
        self._last_version += 1
        self.version = self._last_version
        self.mem[i] -= m
        self.vcpu[i] -= v
        self.mem[j] += m
        self.vcpu[j] += v
        self.members[i].discard(k)
        self.members[j].add(k)
        self.where[k] = j
        return i

    @contextmanager
    def shifted(self, moves: Sequence[tuple[int, int]]) -> Iterator[None]:
        """``moves`` ((domain, target), in order) made in the allocation only
        for the time of the block; then the allocation as it was, and its
        ``version`` too."""
        version = self.version
        undo = [(k, self.shift(k, j)) for k, j in moves]
        try:
            yield
        finally:
            for k, i in reversed(undo):
                self.shift(k, i)
            self.version = version

    def apply(self, k: int, j: int) -> None:
        """Move domain ``k`` to node ``j`` for good (the caller checked the
        rule), mark it moved and bring the score sums up to date."""
        i = self.shift(k, j)
        self.moved.add(k)
        self._groups[i] = None
        self._groups[j] = None
        self.sums.update(i, self.mem[i], self.vcpu[i])
        self.sums.update(j, self.mem[j], self.vcpu[j])

    @contextmanager
    def trial(self, k: int, j: int) -> Iterator[None]:
        """Domain ``k`` on node ``j`` for the time of the block, score sums
        included; everything as it was afterwards."""
        i = self.where[k]
        was_moved = k in self.moved
        self.apply(k, j)
        try:
            yield
        finally:
            self.apply(k, i)
            if not was_moved:
                self.moved.discard(k)
            self._groups[i] = self._groups[j] = None

    def groups(self, i: int) -> list[Group]:
        """Domains on node ``i`` that may still move, one per (memory, vcpus,
        allowed), the first by name representing its kind."""
        g = self._groups[i]
        if g is None:
            reps: dict[tuple, int] = {}
            for k in sorted(self.members[i]):
                d = self.doms[k]
                if k in self.moved or not d.movable:
                    continue
                reps.setdefault((self.dmem[k], self.dvcpu[k], self.allowed[k], d.size(True)), k)
            g = sorted(((key[0], key[1], key[2], k) for key, k in reps.items()), key=lambda t: t[3])
            self._groups[i] = g
        return g


def score(nodes: Sequence[BNode], domains: Sequence[BDomain], weights: Weights = DEFAULT_WEIGHTS) -> float:
    """The cluster score (``score.score_of``) over the nodes not in maintenance."""
    layout = Layout(nodes, domains, weights)
    return layout.score_now()
