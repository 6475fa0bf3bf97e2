"""Pure planning for ``havirt cluster balance`` and ``havirt node maintenance NAME on``.

Nothing here does I/O or imports the rest of havirt: the CLI gathers the facts
(nodes that may take part, the domains running on them), calls
:func:`plan_balance` or :func:`plan_evacuation`, and executes the returned
moves in order.

The objective: *the population standard deviation, over those
nodes, of the fraction of each node's usable memory that is free, plus half
the population standard deviation of their vCPU ratios*::

    free_frac(n) = (usable_mib - allocated_mib) / usable_mib   # may be < 0
    ratio(n)     = allocated_vcpus / cpus
    score        = pstdev(free_frac) + 0.5 * pstdev(ratio)

Hard limits, never broken by any planned move (checked against the state the
cluster is in when that move runs, i.e. after the earlier moves of the plan):

* target allocated memory + domain memory <= target ``usable_mib``;
* (target allocated vCPUs + domain vCPUs) / target ``cpus`` <= ``max_ratio``;
* the target is in ``domain.allowed`` when that is not ``None``;
* a domain with ``movable=False`` never moves, and target != source.

Moving a domain *off* a node that is over its limits is always fine.

Planners
--------
:func:`plan_greedy` is the plain baseline: at every step, the single move with
the largest score decrease over the whole cluster, until the best decrease is
below ``min_gain`` or ``max_moves`` is reached.

:func:`plan_balance` does better where it is cheap:

1. candidate moves come from the most loaded nodes (sources) to the least
   loaded (targets), by free memory fraction and by vCPU ratio, with domains
   deduplicated per node by ``(memory, vcpus, allowed)``; a wider scan, then
   an exhaustive one, is only made when the narrower scan finds nothing worth
   doing, so the rule for stopping is exact;
2. when no single move gains ``min_gain``, two-domain swaps are tried (two
   moves, so a swap must gain ``2 * min_gain``), ordered so that the first
   migration fits next to the domain it is exchanged with;
3. a second variant runs too and the better plan by (score, moves) is
   returned: on small clusters a one-step look-ahead (pick, among the best
   few moves, the one whose best follow-up leads lowest), on large ones a
   wider candidate scan;
4. chains are collapsed: a domain moved A->B then B->C becomes A->C (and
   A->B->A disappears) whenever the shortened sequence still respects every
   hard limit at every step; budget freed under ``max_moves`` is reused.

Every variant stops at the same condition (no single move gaining
``min_gain``, no swap gaining ``2 * min_gain``) evaluated deterministically on
the state, so planning again right after executing a plan gives an empty plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BNode",
    "BDomain",
    "Move",
    "BalancePlan",
    "EvacuationPlan",
    "score",
    "plan_balance",
    "plan_greedy",
    "plan_evacuation",
]

# Gains below this are floating-point noise, whatever min_gain says.
_TINY_GAIN = 1e-12
# Pruning widths: how many of the most/least loaded nodes (by free memory
# fraction, and separately by vCPU ratio) are candidate sources/targets.
_PRUNE_K = 8
_SWAP_K = 5
# Look-ahead: how many best first moves are expanded, and the cluster size
# (nodes * distinct movable domain types) above which it is skipped.
_LOOKAHEAD_WIDTH = 4
_LOOKAHEAD_MAX_WORK = 4000


@dataclass(frozen=True)
class BNode:
    """A hypervisor node that may take part in a plan."""

    name: str
    usable_mib: int  # memory domains may use: the admin's cap, or total minus the host reserve
    cpus: int  # physical CPUs (threads)
    max_ratio: float  # the most vCPUs per physical CPU allowed (e.g. 4.0)


@dataclass(frozen=True)
class BDomain:
    """A running domain, as the planner sees it."""

    name: str
    node: str  # where it runs now
    memory_mib: int
    vcpus: int
    movable: bool = True  # False: never moved (in maintenance, no XML, on two nodes)
    why_fixed: str = "in maintenance"  # shown when movable is False
    allowed: frozenset[str] | None = None  # nodes where its disks are visible; None = every node


@dataclass(frozen=True)
class Move:
    """One live migration; ``score_after`` is the cluster score once it is done."""

    domain: str
    source: str
    target: str
    memory_mib: int
    score_after: float


@dataclass
class BalancePlan:
    """Ordered moves for ``cluster balance`` and the score before and after them."""

    moves: list[Move]
    score_before: float
    score_after: float


@dataclass
class EvacuationPlan:
    """Ordered moves that empty a node, and the domains that cannot leave it.

    ``blocking`` holds ``(domain, reason)`` pairs. ``score_before`` and
    ``score_after`` are computed over the nodes other than the source (before
    and after the moves); each move's ``score_after`` likewise.
    """

    moves: list[Move]
    blocking: list[tuple[str, str]]
    score_before: float = 0.0
    score_after: float = 0.0


# --------------------------------------------------------------------------
# Helpers


def _vcpu_cap(cpus: int, max_ratio: float) -> int:
    """The most vCPUs ``k`` with ``k / cpus <= max_ratio`` (exactly that test)."""
    if max_ratio < 0 or math.isnan(max_ratio):
        return -1
    if math.isinf(max_ratio):
        return 1 << 62
    k = math.floor(max_ratio * cpus)
    while (k + 1) / cpus <= max_ratio:
        k += 1
    while k >= 0 and k / cpus > max_ratio:
        k -= 1
    return k


def _pstdev(values: Sequence[float]) -> float:
    """Population standard deviation, two-pass and ``fsum``-accurate."""
    n = len(values)
    if n == 0:
        return 0.0
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((x - mean) * (x - mean) for x in values) / n)


def _validate(nodes: Sequence[BNode], domains: Sequence[BDomain]) -> None:
    """Reject input the planners cannot reason about (``ValueError``)."""
    seen: set[str] = set()
    for n in nodes:
        if n.name in seen:
            raise ValueError(f"node {n.name!r} given twice")
        seen.add(n.name)
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
        if d.memory_mib < 0 or d.vcpus < 0:
            raise ValueError(f"domain {d.name!r}: negative memory or vCPUs")


def _score_of(
    usable: Sequence[int], cpus: Sequence[int], mem: Sequence[int], vcpu: Sequence[int]
) -> float:
    """The objective from per-node capacities and allocations."""
    fracs = [(u - m) / u for u, m in zip(usable, mem)]
    ratios = [v / c for c, v in zip(cpus, vcpu)]
    return _pstdev(fracs) + 0.5 * _pstdev(ratios)


def score(nodes: list[BNode], domains: list[BDomain]) -> float:
    """The cluster score (lower is better balanced), see the module docstring.

    ``domains`` must all run on one of ``nodes``. No nodes gives ``0.0``.
    """
    _validate(nodes, domains)
    index = {n.name: i for i, n in enumerate(nodes)}
    mem = [0] * len(nodes)
    vcpu = [0] * len(nodes)
    for d in domains:
        mem[index[d.node]] += d.memory_mib
        vcpu[index[d.node]] += d.vcpus
    return _score_of([n.usable_mib for n in nodes], [n.cpus for n in nodes], mem, vcpu)


# --------------------------------------------------------------------------
# The mutable working state shared by the planners

# A movable domain type on one node: (memory, vcpus, allowed, representative name).
_Group = tuple[int, int, "frozenset[str] | None", str]
# A candidate single move: (gain, domain, target index).
_Cand = tuple[float, str, int]
# A planned step before it becomes a Move: (domain, source index, target index).
_Step = tuple[str, int, int]


class _Cluster:
    """Allocation state with O(1) score evaluation of candidate moves.

    Nodes are kept in name order, so every scan visits candidates in name
    order and strict ``>`` comparisons break ties by names.
    """

    def __init__(self, nodes: Sequence[BNode], domains: Sequence[BDomain]) -> None:
        _validate(nodes, domains)
        order = sorted(nodes, key=lambda n: n.name)
        self.n = len(order)
        self.names: list[str] = [n.name for n in order]
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        self.usable: list[int] = [n.usable_mib for n in order]
        self.cpus: list[int] = [n.cpus for n in order]
        self.inv_u: list[float] = [1.0 / n.usable_mib for n in order]
        self.inv_c: list[float] = [1.0 / n.cpus for n in order]
        self.vcap: list[int] = [_vcpu_cap(n.cpus, n.max_ratio) for n in order]
        self.max_ratio: list[float] = [n.max_ratio for n in order]
        self.mem: list[int] = [0] * self.n
        self.vcpu: list[int] = [0] * self.n
        self.domains: dict[str, BDomain] = {}
        self.where: dict[str, int] = {}
        self.members: list[set[str]] = [set() for _ in range(self.n)]
        self._groups: list[list[_Group] | None] = [None] * self.n
        for d in sorted(domains, key=lambda d: d.name):
            i = self.index[d.node]
            self.domains[d.name] = d
            self.where[d.name] = i
            self.members[i].add(d.name)
            self.mem[i] += d.memory_mib
            self.vcpu[i] += d.vcpus
        self.all_nodes: list[int] = list(range(self.n))
        self.f: list[float] = []
        self.r: list[float] = []
        self.sf = self.qf = self.sr = self.qr = 0.0
        self.cur = 0.0
        self.refresh()

    # -- state ------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute fractions, ratios, sums and the current score from the integers."""
        self.f = [(u - m) / u for u, m in zip(self.usable, self.mem)]
        self.r = [v / c for c, v in zip(self.cpus, self.vcpu)]
        self.sf = math.fsum(self.f)
        self.qf = math.fsum(x * x for x in self.f)
        self.sr = math.fsum(self.r)
        self.qr = math.fsum(x * x for x in self.r)
        self.cur = self._combine(self.qf, self.sf, self.qr, self.sr)

    def _combine(self, qf: float, sf: float, qr: float, sr: float) -> float:
        """Score from sums and sums of squares (the planners' internal measure)."""
        if self.n == 0:
            return 0.0
        inv = 1.0 / self.n
        vf = qf * inv - (sf * inv) ** 2
        vr = qr * inv - (sr * inv) ** 2
        return (math.sqrt(vf) if vf > 0.0 else 0.0) + 0.5 * (math.sqrt(vr) if vr > 0.0 else 0.0)

    def exact_score(self) -> float:
        """The score, computed like :func:`score`."""
        return _score_of(self.usable, self.cpus, self.mem, self.vcpu)

    def snapshot(self) -> tuple[list[int], list[int], dict[str, int]]:
        """What :meth:`restore` needs to undo moves."""
        return list(self.mem), list(self.vcpu), dict(self.where)

    def restore(self, snap: tuple[list[int], list[int], dict[str, int]]) -> None:
        """Go back to a :meth:`snapshot`."""
        mem, vcpu, where = snap
        self.mem = list(mem)
        self.vcpu = list(vcpu)
        self.where = dict(where)
        self.members = [set() for _ in range(self.n)]
        for name, i in self.where.items():
            self.members[i].add(name)
        self._groups = [None] * self.n
        self.refresh()

    def fits(self, d: BDomain, j: int) -> bool:
        """Whether ``d`` may move to node ``j`` now (every hard limit)."""
        return (
            d.movable
            and self.where[d.name] != j
            and self.mem[j] + d.memory_mib <= self.usable[j]
            and self.vcpu[j] + d.vcpus <= self.vcap[j]
            and (d.allowed is None or self.names[j] in d.allowed)
        )

    def apply(self, name: str, j: int) -> None:
        """Move domain ``name`` to node ``j`` (the caller checked the limits)."""
        d = self.domains[name]
        i = self.where[name]
        self.mem[i] -= d.memory_mib
        self.vcpu[i] -= d.vcpus
        self.mem[j] += d.memory_mib
        self.vcpu[j] += d.vcpus
        self.members[i].discard(name)
        self.members[j].add(name)
        self.where[name] = j
        self._groups[i] = None
        self._groups[j] = None
        self.refresh()

    def groups(self, i: int) -> list[_Group]:
        """Movable domains on node ``i``, one per (memory, vcpus, allowed), in name order."""
        g = self._groups[i]
        if g is None:
            reps: dict[tuple[int, int, frozenset[str] | None], str] = {}
            for name in self.members[i]:
                d = self.domains[name]
                if not d.movable:
                    continue
                key = (d.memory_mib, d.vcpus, d.allowed)
                if key not in reps or name < reps[key]:
                    reps[key] = name
            g = sorted(((k[0], k[1], k[2], nm) for k, nm in reps.items()), key=lambda t: t[3])
            self._groups[i] = g
        return g

    def candidate_nodes(self, k: int) -> tuple[list[int], list[int]]:
        """Likely sources (least free / highest ratio) and targets (the opposite)."""
        if 2 * k >= self.n:
            return self.all_nodes, self.all_nodes
        names, f, r = self.names, self.f, self.r
        by_f = sorted(self.all_nodes, key=lambda i: (f[i], names[i]))
        by_r = sorted(self.all_nodes, key=lambda i: (-r[i], names[i]))
        sources = sorted(set(by_f[:k]) | set(by_r[:k]))
        targets = sorted(set(by_f[-k:]) | set(by_r[-k:]))
        return sources, targets

    # -- candidate scans -----------------------------------------------------

    def scan_single(
        self, sources: Iterable[int], targets: Sequence[int], keep: int = 1
    ) -> list[_Cand]:
        """The ``keep`` best single moves from ``sources`` to ``targets``, best first.

        Ties keep the first found, i.e. by source, domain and target name.
        """
        f, r, mem, vcpu = self.f, self.r, self.mem, self.vcpu
        usable, vcap, inv_u, inv_c, names = self.usable, self.vcap, self.inv_u, self.inv_c, self.names
        sf, qf, sr, qr, cur = self.sf, self.qf, self.sr, self.qr, self.cur
        inv = 1.0 / self.n
        sqrt = math.sqrt
        best: list[_Cand] = []
        worst_kept = -math.inf
        for i in sources:
            fs = f[i]
            rs = r[i]
            for m, v, allowed, dname in self.groups(i):
                a = m * inv_u[i]
                c = v * inv_c[i]
                nfs = fs + a
                nrs = rs - c
                sf1 = sf + a
                qf1 = qf - fs * fs + nfs * nfs
                sr1 = sr - c
                qr1 = qr - rs * rs + nrs * nrs
                for j in targets:
                    if j == i or mem[j] + m > usable[j] or vcpu[j] + v > vcap[j]:
                        continue
                    if allowed is not None and names[j] not in allowed:
                        continue
                    ft = f[j]
                    nft = ft - m * inv_u[j]
                    rt = r[j]
                    nrt = rt + v * inv_c[j]
                    sf2 = (sf1 - m * inv_u[j]) * inv
                    sr2 = (sr1 + v * inv_c[j]) * inv
                    vf = (qf1 - ft * ft + nft * nft) * inv - sf2 * sf2
                    vr = (qr1 - rt * rt + nrt * nrt) * inv - sr2 * sr2
                    gain = cur - (sqrt(vf) if vf > 0.0 else 0.0) - 0.5 * (sqrt(vr) if vr > 0.0 else 0.0)
                    if gain > worst_kept or len(best) < keep:
                        best.append((gain, dname, j))
                        if len(best) > keep:
                            # stable: equal gains keep the earlier candidate
                            best.sort(key=lambda t: -t[0])
                            del best[keep:]
                        if len(best) == keep:
                            worst_kept = min(t[0] for t in best)
        best.sort(key=lambda t: -t[0])
        return best

    def scan_swap(
        self, sources: Sequence[int], targets: Sequence[int]
    ) -> tuple[float, str, str, int, int] | None:
        """The best exchange of a domain on a source with one on a target.

        Returns ``(gain, first, second, i, j)``: move ``first`` (on node ``i``)
        to ``j`` and then ``second`` (on ``j``) to ``i``, or ``first`` on ``j``
        to ``i`` then ``second`` to ``j`` when that is the order that fits.
        """
        f, r, mem, vcpu = self.f, self.r, self.mem, self.vcpu
        usable, vcap, inv_u, inv_c, names = self.usable, self.vcap, self.inv_u, self.inv_c, self.names
        sf, qf, sr, qr, cur = self.sf, self.qf, self.sr, self.qr, self.cur
        inv = 1.0 / self.n
        sqrt = math.sqrt
        best: tuple[float, str, str, int, int] | None = None
        best_gain = -math.inf
        for i in sources:
            gi = self.groups(i)
            if not gi:
                continue
            for j in targets:
                if j == i:
                    continue
                gj = self.groups(j)
                if not gj:
                    continue
                name_i, name_j = names[i], names[j]
                fs, rs, ft, rt = f[i], r[i], f[j], r[j]
                base_f = qf - fs * fs - ft * ft
                base_r = qr - rs * rs - rt * rt
                for m1, v1, al1, d1 in gi:
                    if al1 is not None and name_j not in al1:
                        continue
                    for m2, v2, al2, d2 in gj:
                        dm = m2 - m1  # net memory arriving on i
                        dv = v2 - v1
                        if dm == 0 and dv == 0:
                            continue
                        if al2 is not None and name_i not in al2:
                            continue
                        # final state within limits on both nodes
                        if mem[i] + dm > usable[i] or vcpu[i] + dv > vcap[i]:
                            continue
                        if mem[j] - dm > usable[j] or vcpu[j] - dv > vcap[j]:
                            continue
                        # some order whose first migration fits
                        first_ij = mem[j] + m1 <= usable[j] and vcpu[j] + v1 <= vcap[j]
                        if not first_ij and not (mem[i] + m2 <= usable[i] and vcpu[i] + v2 <= vcap[i]):
                            continue
                        nfs = fs - dm * inv_u[i]
                        nft = ft + dm * inv_u[j]
                        nrs = rs + dv * inv_c[i]
                        nrt = rt - dv * inv_c[j]
                        sf2 = (sf - dm * inv_u[i] + dm * inv_u[j]) * inv
                        sr2 = (sr + dv * inv_c[i] - dv * inv_c[j]) * inv
                        vf = (base_f + nfs * nfs + nft * nft) * inv - sf2 * sf2
                        vr = (base_r + nrs * nrs + nrt * nrt) * inv - sr2 * sr2
                        gain = cur - (sqrt(vf) if vf > 0.0 else 0.0) - 0.5 * (sqrt(vr) if vr > 0.0 else 0.0)
                        if gain > best_gain:
                            best_gain = gain
                            if first_ij:
                                best = (gain, d1, d2, i, j)
                            else:
                                best = (gain, d2, d1, j, i)
        return best


# --------------------------------------------------------------------------
# Search drivers


def _best_single(
    cl: _Cluster, thr: float, exhaustive: bool, keep: int = 1, prune_k: int = _PRUNE_K
) -> list[_Cand]:
    """Best single moves; the pruned scan widens, then goes exhaustive, when it finds nothing."""
    if not exhaustive:
        for k in (prune_k, 3 * prune_k):
            sources, targets = cl.candidate_nodes(k)
            if sources is cl.all_nodes:
                break
            found = cl.scan_single(sources, targets, keep)
            if found and found[0][0] >= thr:
                return found
    return cl.scan_single(cl.all_nodes, cl.all_nodes, keep)


def _search(
    cl: _Cluster,
    budget: int | None,
    thr: float,
    *,
    exhaustive: bool,
    swaps: bool,
    lookahead: int = 0,
    prune_k: int = _PRUNE_K,
) -> tuple[list[_Step], bool]:
    """Run one planner from the current state of ``cl`` (which it mutates).

    Returns the steps and whether the search stopped because of ``budget``.
    """
    steps: list[_Step] = []
    while True:
        left = None if budget is None else budget - len(steps)
        if left is not None and left <= 0:
            return steps, True
        cands = _best_single(cl, thr, exhaustive, keep=max(1, lookahead), prune_k=prune_k)
        cands = [c for c in cands if c[0] >= thr]
        if cands:
            choice = cands[0]
            if lookahead > 1 and len(cands) > 1 and (left is None or left >= 2):
                choice = _look_ahead(cl, cands, thr)
            _, name, j = choice
            steps.append((name, cl.where[name], j))
            cl.apply(name, j)
            continue
        if swaps and (left is None or left >= 2):
            sources, targets = cl.candidate_nodes(_SWAP_K)
            sw = cl.scan_swap(sources, targets)
            if sw is not None and sw[0] >= 2 * thr:
                _, first, second, i, j = sw
                steps.append((first, i, j))
                cl.apply(first, j)
                steps.append((second, j, i))
                cl.apply(second, i)
                continue
        return steps, False


def _look_ahead(cl: _Cluster, cands: list[_Cand], thr: float) -> _Cand:
    """Among good first moves, the one whose best follow-up ends lowest."""
    best = cands[0]
    best_total = -math.inf
    for cand in cands:
        gain, name, j = cand
        snap_src = cl.where[name]
        cl.apply(name, j)
        nxt = _best_single(cl, thr, exhaustive=False)
        follow = nxt[0][0] if nxt and nxt[0][0] >= thr else 0.0
        cl.apply(name, snap_src)
        total = gain + follow
        if total > best_total + _TINY_GAIN:
            best_total = total
            best = cand
    return best


def _valid_sequence(
    cl: _Cluster, base: tuple[list[int], list[int], dict[str, int]], steps: Sequence[_Step]
) -> bool:
    """Whether ``steps`` respect every hard limit, executed in order from ``base``."""
    mem, vcpu, where = list(base[0]), list(base[1]), dict(base[2])
    for name, i, j in steps:
        d = cl.domains[name]
        if not d.movable or where[name] != i or i == j:
            return False
        if mem[j] + d.memory_mib > cl.usable[j] or vcpu[j] + d.vcpus > cl.vcap[j]:
            return False
        if d.allowed is not None and cl.names[j] not in d.allowed:
            return False
        mem[i] -= d.memory_mib
        vcpu[i] -= d.vcpus
        mem[j] += d.memory_mib
        vcpu[j] += d.vcpus
        where[name] = j
    return True


def _collapse(
    cl: _Cluster, base: tuple[list[int], list[int], dict[str, int]], steps: list[_Step]
) -> list[_Step]:
    """Merge successive moves of one domain (A->B, B->C into A->C; A->B->A away).

    The end state never changes; a merge is kept only if the whole shortened
    sequence is still valid step by step.
    """
    steps = list(steps)
    changed = True
    while changed:
        changed = False
        last: dict[str, int] = {}
        for q, (name, _, _) in enumerate(steps):
            p = last.get(name)
            last[name] = q
            if p is None:
                continue
            src, dst = steps[p][1], steps[q][2]
            without = steps[:p] + steps[p + 1 : q] + steps[q + 1 :]
            options: list[list[_Step]] = []
            if src == dst:
                options.append(without)
            else:
                merged = (name, src, dst)
                # at the later position first: the target had more time to free up
                options.append(steps[:p] + steps[p + 1 : q] + [merged] + steps[q + 1 :])
                options.append(steps[:p] + [merged] + steps[p + 1 : q] + steps[q + 1 :])
            for opt in options:
                if _valid_sequence(cl, base, opt):
                    steps = opt
                    changed = True
                    break
            if changed:
                break
    return steps


def _to_moves(cl: _Cluster, base: tuple[list[int], list[int], dict[str, int]], steps: Sequence[_Step]) -> list[Move]:
    """Turn steps into :class:`Move` records with the exact score after each."""
    mem, vcpu = list(base[0]), list(base[1])
    moves: list[Move] = []
    for name, i, j in steps:
        d = cl.domains[name]
        mem[i] -= d.memory_mib
        vcpu[i] -= d.vcpus
        mem[j] += d.memory_mib
        vcpu[j] += d.vcpus
        moves.append(
            Move(name, cl.names[i], cl.names[j], d.memory_mib, _score_of(cl.usable, cl.cpus, mem, vcpu))
        )
    return moves


def _run(
    nodes: list[BNode],
    domains: list[BDomain],
    max_moves: int | None,
    min_gain: float,
    *,
    exhaustive: bool,
    swaps: bool,
    lookahead: int,
    collapse: bool,
    prune_k: int = _PRUNE_K,
) -> tuple[list[_Step], _Cluster, tuple[list[int], list[int], dict[str, int]], float]:
    """One planner variant end to end: steps, the (final) state, the base, the score before."""
    if max_moves is not None and max_moves < 0:
        raise ValueError("max_moves must be >= 0 or None")
    cl = _Cluster(nodes, domains)
    base = cl.snapshot()
    before = cl.exact_score()
    thr = max(min_gain, _TINY_GAIN)
    steps, hit_budget = _search(
        cl, max_moves, thr, exhaustive=exhaustive, swaps=swaps, lookahead=lookahead, prune_k=prune_k
    )
    if collapse:
        steps = _collapse(cl, base, steps)
        # merging freed some of the budget: keep planning with it
        while hit_budget and max_moves is not None and len(steps) < max_moves:
            more, hit_budget = _search(
                cl,
                max_moves - len(steps),
                thr,
                exhaustive=exhaustive,
                swaps=swaps,
                lookahead=lookahead,
                prune_k=prune_k,
            )
            if not more:
                break
            steps = _collapse(cl, base, steps + more)
    return steps, cl, base, before


def plan_greedy(
    nodes: list[BNode],
    domains: list[BDomain],
    max_moves: int | None = None,
    min_gain: float = 0.01,
) -> BalancePlan:
    """The plain greedy baseline, kept for comparison and tests.

    Each step makes the single move (over every domain and every node) with the
    largest score decrease; it stops when that decrease is below ``min_gain``
    or after ``max_moves`` moves.
    """
    steps, cl, base, before = _run(
        nodes, domains, max_moves, min_gain, exhaustive=True, swaps=False, lookahead=0, collapse=False
    )
    moves = _to_moves(cl, base, steps)
    return BalancePlan(moves, before, moves[-1].score_after if moves else before)


def plan_balance(
    nodes: list[BNode],
    domains: list[BDomain],
    max_moves: int | None = None,
    min_gain: float = 0.01,
) -> BalancePlan:
    """Plan migrations that lower the cluster score (see the module docstring).

    ``nodes`` are the nodes that may take part (up, not in maintenance) and
    ``domains`` the domains running on them. A move (a swap: two moves) is
    only planned if it lowers the score by at least ``min_gain`` (each), so a
    balanced cluster, or one just balanced, gives an empty plan. At most
    ``max_moves`` moves when that is not ``None``. Deterministic.
    """
    # (look-ahead width, pruning width): small clusters afford the look-ahead,
    # large ones a second, wider candidate scan instead
    variants: list[tuple[int, int]] = [(0, _PRUNE_K)]
    probe = _Cluster(nodes, domains)
    work = probe.n * sum(len(probe.groups(i)) for i in range(probe.n))
    if work <= _LOOKAHEAD_MAX_WORK:
        variants.append((_LOOKAHEAD_WIDTH, _PRUNE_K))
    elif 2 * _PRUNE_K < probe.n:
        variants.append((0, 2 * _PRUNE_K))
    best: tuple[tuple[float, int], list[Move], float] | None = None
    for lookahead, prune_k in variants:
        steps, cl, base, before = _run(
            nodes,
            domains,
            max_moves,
            min_gain,
            exhaustive=False,
            swaps=True,
            lookahead=lookahead,
            collapse=True,
            prune_k=prune_k,
        )
        moves = _to_moves(cl, base, steps)
        after = moves[-1].score_after if moves else before
        # lower score first (ignoring float noise), then fewer moves
        key = (round(after, 9), len(moves))
        if best is None or key < best[0]:
            best = ((key[0], key[1]), moves, before)
    assert best is not None
    _, moves, before = best
    return BalancePlan(moves, before, moves[-1].score_after if moves else before)


# --------------------------------------------------------------------------
# Evacuation


def plan_evacuation(nodes: list[BNode], domains: list[BDomain], source: str) -> EvacuationPlan:
    """Plan moving every movable domain off ``source`` (``node maintenance NAME on``).

    ``source`` is among ``nodes`` but is never a target. Domains are placed
    largest first (memory, then vCPUs, then name), each on the node with the
    lowest score after the move (scored over the nodes other than the source),
    checking the hard limits against capacity as the plan itself consumes it.
    Domains in maintenance, or that fit nowhere, go to ``blocking`` with the
    reason, naming the numbers.
    """
    _validate(nodes, domains)
    if source not in {n.name for n in nodes}:
        raise ValueError(f"source {source!r} is not among the nodes")
    others = [n for n in nodes if n.name != source]
    staying = [d for d in domains if d.node != source]
    leaving = sorted(
        (d for d in domains if d.node == source), key=lambda d: (-d.memory_mib, -d.vcpus, d.name)
    )
    cl = _Cluster(others, staying)
    before = cl.exact_score()
    moves: list[Move] = []
    blocking: list[tuple[str, str]] = []
    for d in leaving:
        if not d.movable:
            blocking.append((d.name, f"{d.why_fixed} (not movable)"))
            continue
        eligible = [j for j in cl.all_nodes if d.allowed is None or cl.names[j] in d.allowed]
        best_j = -1
        best_val = math.inf
        for j in eligible:
            if cl.mem[j] + d.memory_mib > cl.usable[j] or cl.vcpu[j] + d.vcpus > cl.vcap[j]:
                continue
            val = _score_after_add(cl, j, d.memory_mib, d.vcpus)
            if val < best_val - _TINY_GAIN:
                best_val = val
                best_j = j
        if best_j < 0:
            blocking.append((d.name, _why_blocked(cl, d, eligible)))
            continue
        cl.domains[d.name] = d
        cl.where[d.name] = best_j
        cl.members[best_j].add(d.name)
        cl.mem[best_j] += d.memory_mib
        cl.vcpu[best_j] += d.vcpus
        cl._groups[best_j] = None
        cl.refresh()
        moves.append(Move(d.name, source, cl.names[best_j], d.memory_mib, cl.exact_score()))
    after = moves[-1].score_after if moves else before
    return EvacuationPlan(moves, blocking, before, after)


def _score_after_add(cl: _Cluster, j: int, m: int, v: int) -> float:
    """Score if a domain of ``m`` MiB and ``v`` vCPUs arrived on node ``j`` from outside."""
    ft, rt = cl.f[j], cl.r[j]
    nft = ft - m * cl.inv_u[j]
    nrt = rt + v * cl.inv_c[j]
    return cl._combine(
        cl.qf - ft * ft + nft * nft, cl.sf - ft + nft, cl.qr - rt * rt + nrt * nrt, cl.sr - rt + nrt
    )


def _why_blocked(cl: _Cluster, d: BDomain, eligible: list[int]) -> str:
    """Explain, with the numbers, why ``d`` fits on no eligible node."""
    if not eligible:
        if d.allowed is not None:
            where = ", ".join(sorted(d.allowed)) or "none"
            return f"its disks are visible on no eligible node (allowed: {where})"
        return "no other node is available"
    free = {j: cl.usable[j] - cl.mem[j] for j in eligible}
    most = max(eligible, key=lambda j: (free[j], -j))
    if free[most] < d.memory_mib:
        return (
            f"needs {d.memory_mib} MiB, most free on an eligible node is "
            f"{max(free[most], 0)} MiB ({cl.names[most]})"
        )
    roomy = [j for j in eligible if free[j] >= d.memory_mib]
    room = {j: cl.vcap[j] - cl.vcpu[j] for j in roomy}
    top = max(roomy, key=lambda j: (room[j], -j))
    return (
        f"needs {d.vcpus} vCPUs, most vCPU room on an eligible node with "
        f"{d.memory_mib} MiB free is {max(room[top], 0)} ({cl.names[top]}: "
        f"{cl.vcpu[top]} vCPUs on {cl.cpus[top]} CPUs, max ratio {cl.max_ratio[top]:g})"
    )
