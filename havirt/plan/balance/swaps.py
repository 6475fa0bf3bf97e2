"""Candidate exchanges of two domains between two nodes, best first.

Like ``search.scan_best`` for single moves: every pair of nodes is weighed
by a bound of what an exchange between them can gain, best bound first, and
only the pairs that may still win are tried exchange by exchange (unit tests
check the answers against trying every exchange, and the bounds).
"""

from __future__ import annotations

import math

from havirt.plan.balance.model import Layout
from havirt.plan.balance.search import _ROUNDING, _Base

SWAP_BUMP = 1.0
# A swap: (gain, first domain, its target, second domain, its target), in the
# order the two migrations run.
Swap = tuple[float, int, int, int, int]


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
    kinds = [_kinds(layout, i) for i in range(layout.n)]
    pairs = _pairs(layout, base, floor - _ROUNDING, kinds)
    pairs.sort()
    best: list[Swap] = []
    for neg_ub, i, j in pairs:
        worst = (best[-1][0] if len(best) >= keep else floor) - _ROUNDING
        if -neg_ub < worst:
            break
        best += _exchanges(layout, base, i, j, worst, kinds[i], kinds[j])
        best.sort(key=lambda c: -c[0])
        del best[keep:]
    return best


def _pairs(layout: Layout, base: _Base, low: float, kinds: list[_Kinds]) -> list[tuple[float, int, int]]:
    """(-bound, i, j) of every pair of nodes ``i < j`` whose bound (see
    :func:`scan_swaps`) is at least ``low``: :func:`_pair_terms`, ``_least``
    and :meth:`_Base.gain_at_most` inlined (a unit test checks the bound).
    ``kinds``: each node's (:func:`_kinds`)."""
    s = base.sums
    spans = [_span(k) for k in kinds]
    inv, vf0, vr0, cur, wm, wv, sqrt = base.inv, base.vf, base.vr, s.cur, s.wm, s.wv, math.sqrt
    # each node's part of the linear terms: 2 (f - mean) / usable, 2 (r - mean) / cpus
    lin_f = [2.0 * (f - base.mf) * p for f, p in zip(s.f, s.inv_u)]
    lin_r = [2.0 * (r - base.mr) * c for r, c in zip(s.r, s.inv_c)]
    pairs = []
    for i, si in enumerate(spans):
        if si is None:
            continue
        p, c, fi, ri = s.inv_u[i], s.inv_c[i], lin_f[i], lin_r[i]
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
            q, d = s.inv_u[j], s.inv_c[j]
            a, b = lin_f[j] - fi, p * p + q * q - (q - p) * (q - p) * inv
            e, g = ri - lin_r[j], c * c + d * d - (d - c) * (d - c) * inv
            x = min(max(-a / (2.0 * b), m_lo), m_hi)
            y = min(max(-e / (2.0 * g), v_lo), v_hi)
            vf = vf0 + (a * x + b * x * x) * inv
            vr = vr0 + (e * y + g * y * y) * inv
            ub = cur - wm * (sqrt(vf) if vf > 0.0 else 0.0) - wv * (sqrt(vr) if vr > 0.0 else 0.0)
            if ub >= low:
                pairs.append((-ub, i, j))
    return pairs


# A node's movable domains for the exchanges: (groups, their memory sizes,
# their vCPU counts, free MiB, free vCPUs)
_Kinds = tuple[list, frozenset[int], frozenset[int], int, int]


def _kinds(layout: Layout, i: int) -> _Kinds:
    """Node ``i``'s :data:`_Kinds` (once per scan)."""
    groups = layout.groups(i)
    return (groups, frozenset(g[0] for g in groups), frozenset(g[1] for g in groups), *layout.headroom(i))


def _span(kind: _Kinds) -> tuple[int, int, int, int, int, int] | None:
    """A node's movable domains (its :func:`_kinds`): (least, most MiB,
    least, most vCPUs), and its room (MiB, vCPUs); None when it has none."""
    groups, mems, vcpus, free, room = kind
    if not groups:
        return None
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


def _exchanges(layout: Layout, base: _Base, i: int, j: int, worst: float, ki: _Kinds, kj: _Kinds) -> list[Swap]:
    """The exchanges between nodes ``i`` and ``j`` that gain more than ``worst``.

    The score after an exchange is worked out from the quadratics of
    :func:`_pair_terms` (exact: the same as ``Sums.after_exchange``): the
    memory term once for each difference of memory sizes that both nodes'
    room allows, the vCPU term once for each difference of vCPUs; an
    exchange's gain is the current score less the two."""
    sums = layout.sums
    s, p, q, c, d = sums, sums.inv_u[i], sums.inv_u[j], sums.inv_c[i], sums.inv_c[j]
    qa = 2.0 * (s.f[j] - base.mf) * q - 2.0 * (s.f[i] - base.mf) * p
    qb = p * p + q * q - (q - p) * (q - p) * base.inv
    qe = 2.0 * (s.r[i] - base.mr) * c - 2.0 * (s.r[j] - base.mr) * d
    qg = c * c + d * d - (d - c) * (d - c) * base.inv
    inv, vf0, vr0, cur, wm, wv = base.inv, base.vf, base.vr, sums.cur, sums.wm, sums.wv
    gi, mems_i, vcpus_i, free_i, room_i = ki
    gj, mems_j, vcpus_j, free_j, room_j = kj
    # what node i gains (dm MiB, dv vCPUs) within both nodes' limits once exchanged (Layout.fits,
    # inlined): each term of the score, and for each size on node i the least over j's sizes
    mem_term, mem_least = _terms(mems_i, mems_j, free_i, free_j, qa, qb, vf0, inv, wm)
    vcpu_term, vcpu_least = _terms(vcpus_i, vcpus_j, room_i, room_j, qe, qg, vr0, inv, wv)
    out: list[Swap] = []
    for m1, v1, al1, k1 in gi:
        if (al1 is not None and j not in al1) or cur - mem_least[m1] - vcpu_least[v1] <= worst:
            continue
        for m2, v2, al2, k2 in gj:
            tf = mem_term.get(m2 - m1)
            tr = vcpu_term.get(v2 - v1)
            if tf is None or tr is None or (m1 == m2 and v1 == v2) or (al2 is not None and i not in al2):
                continue
            gain = cur - tf - tr
            if gain <= worst:
                continue
            order = _swap_order(layout, i, j, (m1, v1, k1), (m2, v2, k2), cur + SWAP_BUMP * gain + _ROUNDING)
            if order is not None:
                out.append((gain, *order))
    return out


def _terms(
    mine: frozenset[int], theirs: frozenset[int], room: int, their_room: int,
    a: float, b: float, v0: float, inv: float, w: float,
) -> tuple[dict[int, float], dict[int, float]]:
    """For each difference ``x`` of a size in ``theirs`` less one in ``mine``
    within ``-their_room <= x <= room``: ``w`` times the spread once node
    ``i`` gains ``x`` (variance ``v0 + (a x + b x^2) / n``); and for each
    size in ``mine``, the least of those terms (``inf``: none fits)."""
    term: dict[int, float] = {}
    least: dict[int, float] = {}
    for mine_x in mine:
        low = math.inf
        for their_x in theirs:
            x = their_x - mine_x
            t = term.get(x)
            if t is None:
                if x > room or -x > their_room:
                    continue
                var = v0 + (a * x + b * x * x) * inv
                t = term[x] = w * (math.sqrt(var) if var > 0.0 else 0.0)
            low = t if t < low else low
        least[mine_x] = low
    return term, least


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
