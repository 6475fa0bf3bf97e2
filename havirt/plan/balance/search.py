"""Candidate moves, best first: single migrations and two-domain swaps.

Scans read the layout (what fits: the compiled rule of ``model``) and the
score sums (what a move would gain: ``score.Sums``); they change nothing.
Domains already moved by the plan are not candidates (``Layout.groups``).
Both scans answer what trying every domain on every node (every exchange
between every two nodes) would: a bound of what a source, or a pair of
nodes, can gain, cheap to work out, skips those that cannot win (unit tests
check the answers against trying them all, and the bounds).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Set

from havirt.plan.balance.model import Layout

# Scores closer than this are equal (rounding).
_ROUNDING = 1e-12
SWAP_BUMP = 1.0
# Nodes are taken kind by kind when there are at least this many to a kind.
KIND_MIN_NODES = 3
# A single move: (gain, domain index, target index).
Single = tuple[float, int, int]
# A swap: (gain, first domain, its target, second domain, its target), in the
# order the two migrations run.
Swap = tuple[float, int, int, int, int]


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


def scan_swaps(layout: Layout, floor: float, keep: int) -> list[Swap]:
    """The ``keep`` best exchanges of a domain on one node with one on
    another, best first, of those that gain at least ``floor``.

    Both final states must respect the limits, and so must the state between
    the two migrations. Of the two orders, the one with the lower score in
    between goes; that score may be above the current one by no more than
    the swap gains (a plan cut between the two migrations is off by at most
    one swap's worth).

    Every pair of nodes is weighed, best bound first: whatever is exchanged
    between nodes ``i`` and ``j``, ``i`` gains some ``dm`` MiB and ``dv``
    vCPUs that ``j`` loses, within what their domains' sizes and their room
    allow, and ``n`` times the change of each variance is a quadratic in it
    (see :func:`_pair_terms`); no exchange between them gains more than both
    quadratics at their least over those ranges would. The scan stops where
    that cannot reach the ``keep``-th gain found (or ``floor``).
    """
    sums = layout.sums
    if sums.n == 0:
        return []
    base = _Base(sums)
    spans = [_span(layout, i) for i in range(layout.n)]
    pairs = []
    low = floor - _ROUNDING
    for i, si in enumerate(spans):
        if si is None:
            continue
        for j in range(i + 1, layout.n):
            sj = spans[j]
            if sj is None:
                continue
            # what i may gain: at least the smallest of j's less the largest of i's, at most
            # the other way round, and within the room of both
            m_lo, m_hi = max(sj[0] - si[1], -sj[4]), min(sj[1] - si[0], si[4])
            v_lo, v_hi = max(sj[2] - si[3], -sj[5]), min(sj[3] - si[2], si[5])
            if m_lo > m_hi or v_lo > v_hi:
                continue
            ub = base.gain_at_most(*_pair_terms(base, i, j, (m_lo, m_hi), (v_lo, v_hi)))
            if ub >= low:
                pairs.append((-ub, i, j))
    pairs.sort()
    best: list[Swap] = []
    for neg_ub, i, j in pairs:
        worst = (best[-1][0] if len(best) >= keep else floor) - _ROUNDING
        if -neg_ub < worst:
            break
        best += _exchanges(layout, base, i, j, worst)
        best.sort(key=lambda c: -c[0])
        del best[keep:]
    return best


def _span(layout: Layout, i: int) -> tuple[int, int, int, int, int, int] | None:
    """Node ``i``'s movable domains: (least, most MiB, least, most vCPUs), and
    its room (MiB, vCPUs); None when it has none."""
    groups = layout.groups(i)
    if not groups:
        return None
    mems = [g[0] for g in groups]
    vcpus = [g[1] for g in groups]
    free, room = layout.headroom(i)
    return min(mems), max(mems), min(vcpus), max(vcpus), free, room


def _least(a: float, b: float, lo: float, hi: float) -> float:
    """The least of ``a x + b x^2`` (``b > 0``) for ``lo <= x <= hi``."""
    x = min(max(-a / (2.0 * b), lo), hi)
    return a * x + b * x * x


def _pair_terms(base: _Base, i: int, j: int, dm: tuple[int, int], dv: tuple[int, int]) -> tuple[float, float]:
    """The least ``n`` times the change of each variance of an exchange
    between nodes ``i`` and ``j`` where ``i`` gains ``dm`` MiB and ``dv``
    vCPUs (each within the range given).

    Node ``i``'s free share falls by ``dm p`` and ``j``'s rises by ``dm q``
    (``p``, ``q``: one over their usable MiB); ``n`` times the change is
    ``dm (2 (f_j - mean) q - 2 (f_i - mean) p) + dm^2 (p^2 + q^2 - (q - p)^2 / n)``.
    The same for the vCPU ratios, with the signs the other way round.
    """
    s = base.sums
    p, q, c, d = s.inv_u[i], s.inv_u[j], s.inv_c[i], s.inv_c[j]
    a = 2.0 * (s.f[j] - base.mf) * q - 2.0 * (s.f[i] - base.mf) * p
    b = p * p + q * q - (q - p) * (q - p) * base.inv
    e = 2.0 * (s.r[i] - base.mr) * c - 2.0 * (s.r[j] - base.mr) * d
    g = c * c + d * d - (d - c) * (d - c) * base.inv
    return _least(a, b, *dm), _least(e, g, *dv)


def _exchanges(layout: Layout, base: _Base, i: int, j: int, worst: float) -> list[Swap]:
    """The exchanges between nodes ``i`` and ``j`` that gain more than ``worst``.

    The score after an exchange is worked out from the quadratics of
    :func:`_pair_terms` (exact: the same as ``Sums.after_exchange``)."""
    sums = layout.sums
    s, p, q, c, d = sums, sums.inv_u[i], sums.inv_u[j], sums.inv_c[i], sums.inv_c[j]
    qa = 2.0 * (s.f[j] - base.mf) * q - 2.0 * (s.f[i] - base.mf) * p
    qb = p * p + q * q - (q - p) * (q - p) * base.inv
    qe = 2.0 * (s.r[i] - base.mr) * c - 2.0 * (s.r[j] - base.mr) * d
    qg = c * c + d * d - (d - c) * (d - c) * base.inv
    inv, vf0, vr0, cur, wm, wv, sqrt = base.inv, base.vf, base.vr, sums.cur, sums.wm, sums.wv, math.sqrt
    out: list[Swap] = []
    gj = layout.groups(j)
    free_i, room_i = layout.headroom(i)
    free_j, room_j = layout.headroom(j)
    gains: dict[tuple[int, int], float] = {}
    for m1, v1, al1, k1 in layout.groups(i):
        if al1 is not None and j not in al1:
            continue
        for m2, v2, al2, k2 in gj:
            dm, dv = m2 - m1, v2 - v1  # what node i gains
            # both nodes within their limits once exchanged (Layout.fits, inlined)
            if dm > free_i or -dm > free_j or dv > room_i or -dv > room_j or (dm == 0 and dv == 0):
                continue
            if al2 is not None and i not in al2:
                continue
            gain = gains.get((dm, dv))
            if gain is None:
                vf = vf0 + (qa * dm + qb * dm * dm) * inv
                vr = vr0 + (qe * dv + qg * dv * dv) * inv
                gain = gains[(dm, dv)] = cur - wm * (sqrt(vf) if vf > 0.0 else 0.0) - wv * (sqrt(vr) if vr > 0.0 else 0.0)
            if gain <= worst:
                continue
            order = _swap_order(layout, i, j, (m1, v1, k1), (m2, v2, k2), cur + SWAP_BUMP * gain + _ROUNDING)
            if order is not None:
                out.append((gain, *order))
    return out


def _swap_order(
    layout: Layout, i: int, j: int, one: tuple[int, int, int], two: tuple[int, int, int], worst: float
) -> tuple[int, int, int, int] | None:
    """Which migration goes first: (first, its target, second, its target), or
    None when neither fits first with a score of at most ``worst`` after it."""
    (m1, v1, k1), (m2, v2, k2) = one, two
    sums, allowed, inf = layout.sums, layout.allowed, math.inf
    one_first = sums.after_move(i, j, m1, v1) if layout.fits(j, m1, v1, allowed[k1]) else inf
    two_first = sums.after_move(j, i, m2, v2) if layout.fits(i, m2, v2, allowed[k2]) else inf
    if min(one_first, two_first) > worst:
        return None
    if one_first <= two_first:
        return k1, j, k2, i
    return k2, i, k1, j
