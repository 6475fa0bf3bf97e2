"""Candidate moves, best first: single migrations (two-domain swaps: ``swaps``).

Scans read the layout (what fits: the compiled rule of ``model``) and the
score sums (what a move would gain: ``score.Sums``); they change nothing.
Domains already moved by the plan are not candidates (``Layout.groups``).
Both scans (this one and ``swaps.scan_swaps``) answer what trying every
domain on every node (every exchange between every two nodes) would: a bound
of what a source, or a pair of nodes, can gain, cheap to work out, skips
those that cannot win (unit tests check the answers against trying them all,
and the bounds).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Set

from havirt.plan.balance.model import Layout

# Scores closer than this are equal (rounding).
_ROUNDING = 1e-12
# Nodes are taken kind by kind when there are at least this many to a kind.
KIND_MIN_NODES = 3
# A single move: (gain, domain index, target index).
Single = tuple[float, int, int]


def scan_best(layout: Layout, floor: float, keep: int, skip: Set[tuple[int, int]] = frozenset()) -> list[Single]:
    """The ``keep`` best single moves of any movable domain to any node where
    it fits, best first, of those that gain at least ``floor``; the pairs in
    ``skip`` left out; equal gains in order of (source, domain, target) index.

    Exact, as a scan of every pair, but cheaper. The score after a move is
    ``wm * sqrt(Vf + Xf / n) + wv * sqrt(Vr + Xr / n)``, where ``Xf`` (and
    likewise ``Xr``) is at least a term of the source plus a term of the
    target (see :func:`_source_terms`). For each size of domain, the least
    target terms over the nodes where it fits bound what any move of that
    size from a source can gain (loosely: each term at its least, whatever
    the node; tightly: over the targets whose pair of terms no other beats on
    both). Sources are weighed loose bound first; the scan skips a source
    whose tight bound, and stops where the loose bound, cannot reach the
    ``keep``-th gain found (or ``floor``).
    """
    sums = layout.sums
    if sums.n == 0:
        return []
    base = _Base(sums)
    order = _Order.of(layout)
    targets: dict[tuple[int, int], _Targets] = {}
    loose: list[tuple[float, int, int, int, int, frozenset[int] | None, float, float]] = []
    f, r, inv_u, inv_c, mf, mr, cc = sums.f, sums.r, sums.inv_u, sums.inv_c, base.mf, base.mr, base.c
    low = floor - _ROUNDING
    vf0, vr0, inv, cur, wm, wv, sqrt = base.vf, base.vr, base.inv, sums.cur, sums.wm, sums.wv, math.sqrt
    for i in range(layout.n):
        groups = layout.groups(i)
        if not groups:
            continue
        df2, dr2, iu, ic = 2.0 * (f[i] - mf), 2.0 * (r[i] - mr), inv_u[i], inv_c[i]
        seen: dict[tuple[int, int], tuple[float, float, float] | None] = {}  # by size, on this node
        for m, v, allowed, k in groups:
            got = seen.get((m, v), ())
            if got == ():
                got = seen[(m, v)] = None
                t = targets.get((m, v))
                if t is None:
                    t = targets[(m, v)] = _Targets(layout, base, order, m, v)
                a, c = m * iu, v * ic
                sf, sr = df2 * a + cc * a * a, cc * c * c - dr2 * c  # _source_terms, inlined
                xf, xr = sf + t.low_f, sr + t.low_r
                if t.low_f < math.inf and not (xf >= 0.0 and xr >= 0.0 and low > 0.0):  # else: fits nowhere, or
                    vf, vr = vf0 + xf * inv, vr0 + xr * inv               # neither spread can shrink
                    ub = cur - wm * (sqrt(vf) if vf > 0.0 else 0.0) - wv * (sqrt(vr) if vr > 0.0 else 0.0)
                    if ub >= low:  # Base.gain_at_most, inlined
                        got = seen[(m, v)] = (-ub, sf, sr)
            if got is not None:
                loose.append((got[0], i, k, m, v, allowed, got[1], got[2]))
    loose.sort()
    heap: list[tuple[float, int, int, int]] = []  # (gain, -i, -k, -j): the worst kept on top
    for neg_ub, i, k, m, v, allowed, sf, sr in loose:
        worst = (heap[0][0] if len(heap) >= keep else floor) - _ROUNDING
        if -neg_ub < worst:
            break
        if max(base.gain_at_most(sf + tf, sr + tr) for tf, tr in targets[(m, v)].frontier()) < worst:
            continue
        fit = [j for j in layout.fitting(m, v, allowed, range(layout.n)) if j != i and (k, j) not in skip]
        for gain, j in zip(sums.move_gains(i, m, v, fit), fit):
            if gain < floor:
                continue
            entry = (gain, -i, -k, -j)
            if len(heap) < keep:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)
    return [(gain, -k, -j) for gain, _, k, j in sorted(heap, reverse=True)]


class _Base:
    """What every move's bound shares: the spreads now, their means, the weights."""

    def __init__(self, sums) -> None:
        inv = 1.0 / sums.n
        self.sums = sums
        self.inv = inv
        self.c = 1.0 - inv
        self.mf = sums.sf * inv
        self.mr = sums.sr * inv
        self.vf = max(0.0, sums.qf * inv - self.mf * self.mf)
        self.vr = max(0.0, sums.qr * inv - self.mr * self.mr)

    def gain_at_most(self, xf: float, xr: float) -> float:
        """The most a move whose terms add up to at least ``xf`` and ``xr`` gains."""
        s, inv = self.sums, self.inv
        vf = self.vf + xf * inv
        vr = self.vr + xr * inv
        return s.cur - s.wm * (math.sqrt(vf) if vf > 0.0 else 0.0) - s.wv * (math.sqrt(vr) if vr > 0.0 else 0.0)


def _source_terms(base: _Base, i: int, m: int, v: int) -> tuple[float, float]:
    """The source's part of ``n`` times the change of each variance when a
    domain of ``m`` MiB and ``v`` vCPUs leaves node ``i``.

    Node ``i``'s free share rises by ``a = m / usable``, a target's falls by
    ``d``; ``n`` times the change of the variance is exactly
    ``2 (f_i - mean) a + a^2 - 2 (f_j - mean) d + d^2 - (a - d)^2 / n``, and
    ``-(a - d)^2 / n >= -(a^2 + d^2) / n``: each node's part, with its square
    taken ``(1 - 1/n)`` times, adds up to no more than the change. The same
    for the vCPU ratio (``i``'s falls, the target's rises).
    """
    s = base.sums
    a = m * s.inv_u[i]
    c = v * s.inv_c[i]
    return (2.0 * (s.f[i] - base.mf) * a + base.c * a * a,
            -2.0 * (s.r[i] - base.mr) * c + base.c * c * c)


class _Targets:
    """The target parts (see :func:`_source_terms`) of the nodes where a
    domain of ``m`` MiB and ``v`` vCPUs fits now (whatever its disks: a
    bound): the least of each (``inf``: it fits nowhere), and on demand
    those that no other beats on both (the frontier).

    Nodes alike (usable MiB, CPUs, vCPU cap) have their memory part in the
    order of their free share and their vCPU part in that of their ratio:
    with few kinds of nodes, the least of each is the first node that fits
    in that order, for each kind (``_Order``); else every node is asked."""

    def __init__(self, layout: Layout, base: _Base, order: _Order | None, m: int, v: int) -> None:
        self.layout, self.base, self.m, self.v = layout, base, m, v
        self._front: list[tuple[float, float]] | None = None
        if order is None:
            terms = self._terms()
            self.low_f = min((t[0] for t in terms), default=math.inf)
            self.low_r = min((t[1] for t in terms), default=math.inf)
            return
        mem, vcpu, usable, vcap = layout.mem, layout.vcpu, layout.usable, layout.vcap
        low_f = low_r = math.inf
        for by_free, by_ratio in order.kinds:
            for j in by_free:
                if mem[j] + m <= usable[j] and vcpu[j] + v <= vcap[j]:  # Layout.fitting, inlined
                    tf = self._part(j)[0]
                    low_f = tf if tf < low_f else low_f
                    break
            for j in by_ratio:
                if mem[j] + m <= usable[j] and vcpu[j] + v <= vcap[j]:
                    tr = self._part(j)[1]
                    low_r = tr if tr < low_r else low_r
                    break
        self.low_f, self.low_r = low_f, low_r

    def _part(self, j: int) -> tuple[float, float]:
        s, base = self.base.sums, self.base
        d = self.m * s.inv_u[j]
        e = self.v * s.inv_c[j]
        return base.c * d * d - 2.0 * (s.f[j] - base.mf) * d, 2.0 * (s.r[j] - base.mr) * e + base.c * e * e

    def _terms(self) -> list[tuple[float, float]]:
        """The parts of every node where it fits (``_part``, inlined)."""
        s, base, m, v, lay = self.base.sums, self.base, self.m, self.v, self.layout
        f, r, inv_u, inv_c, mf, mr, cc = s.f, s.r, s.inv_u, s.inv_c, base.mf, base.mr, base.c
        out = []
        for j in lay.fitting(m, v, None, range(lay.n)):
            d = m * inv_u[j]
            e = v * inv_c[j]
            out.append((cc * d * d - 2.0 * (f[j] - mf) * d, 2.0 * (r[j] - mr) * e + cc * e * e))
        return out

    def frontier(self) -> list[tuple[float, float]]:
        """The terms no other beats on both."""
        if self._front is None:
            out: list[tuple[float, float]] = []
            for tf, tr in sorted(self._terms()):
                if not out or tr < out[-1][1]:
                    out.append((tf, tr))
            self._front = out
        return self._front


class _Order:
    """The nodes of each kind (usable MiB, CPUs, vCPU cap), most free share
    first and lowest vCPU ratio first; None when kinds are too many for that
    to pay (fewer than ``KIND_MIN_NODES`` nodes to a kind)."""

    def __init__(self, kinds: list[tuple[list[int], list[int]]]) -> None:
        self.kinds = kinds

    @staticmethod
    def of(layout: Layout) -> _Order | None:
        by_kind: dict[tuple[int, int, int], list[int]] = {}
        for j in range(layout.n):
            by_kind.setdefault((layout.usable[j], layout.cpus[j], layout.vcap[j]), []).append(j)
        if len(by_kind) * KIND_MIN_NODES > layout.n:
            return None
        f, r = layout.sums.f, layout.sums.r
        return _Order([(sorted(nodes, key=lambda j: (-f[j], j)), sorted(nodes, key=lambda j: (r[j], j)))
                       for nodes in by_kind.values()])
