"""Candidate moves, best first: single migrations and two-domain swaps.

Scans read the layout (what fits: the compiled rule of ``model``) and the
score sums (what a move would gain: ``score.Sums``); they change nothing.
Domains already moved by the plan are not candidates (``Layout.groups``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence, Set

from havirt.plan.balance.model import Layout

# Scores closer than this are equal (rounding).
_ROUNDING = 1e-12
SWAP_BUMP = 1.0
# A single move: (gain, domain index, target index).
Single = tuple[float, int, int]
# A swap: (gain, first domain, its target, second domain, its target), in the
# order the two migrations run.
Swap = tuple[float, int, int, int, int]


def scan_single(
    layout: Layout, sources: Sequence[int], targets: Sequence[int], keep: int, skip: Set[tuple[int, int]] = frozenset()
) -> list[Single]:
    """The ``keep`` best single moves from ``sources`` to ``targets``, best
    first, leaving out the (domain, target) pairs in ``skip``; equal gains
    keep scan order (source, domain, target by name)."""
    sums = layout.sums
    heap: list[tuple[float, int, int, int]] = []  # (gain, -order, domain, target): the worst kept on top
    order = 0
    for i in sources:
        for m, v, allowed, k in layout.groups(i):
            fit = [j for j in layout.fitting(m, v, allowed, targets) if j != i and (k, j) not in skip]
            if not fit:
                continue
            for gain, j in zip(sums.move_gains(i, m, v, fit), fit):
                order += 1
                if len(heap) < keep:
                    heapq.heappush(heap, (gain, -order, k, j))
                elif gain > heap[0][0]:
                    heapq.heapreplace(heap, (gain, -order, k, j))
    return [(gain, k, j) for gain, _, k, j in sorted(heap, key=lambda c: (-c[0], -c[1]))]


def scan_swap(layout: Layout, sources: Sequence[int], targets: Sequence[int]) -> Swap | None:
    """The best exchange of a domain on a source with one on a target.

    Both final states must respect the limits, and so must the state between
    the two migrations. Of the two orders, the one with the lower score in
    between goes; that score may be above the current one by no more than
    the swap gains (a plan cut between the two migrations is off by at most
    one swap's worth).
    """
    sums = layout.sums
    best: Swap | None = None
    for i in sources:
        gi = layout.groups(i)
        for j in targets:
            gj = layout.groups(j) if j != i else []
            for m1, v1, al1, k1 in gi if gj else ():
                if al1 is not None and j not in al1:
                    continue
                for m2, v2, al2, k2 in gj:
                    dm, dv = m2 - m1, v2 - v1  # what node i gains
                    if dm == 0 and dv == 0:
                        continue
                    if not (layout.fits(i, dm, dv, al2) and layout.fits(j, -dm, -dv, al1)):
                        continue  # both nodes within their limits once exchanged
                    gain = sums.cur - sums.after_exchange(i, j, dm, dv)
                    if best is not None and gain <= best[0]:
                        continue
                    order = _swap_order(layout, i, j, (m1, v1, k1), (m2, v2, k2), sums.cur + SWAP_BUMP * gain + _ROUNDING)
                    if order is not None:
                        best = (gain, *order)
    return best


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
