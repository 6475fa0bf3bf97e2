"""The counts behind the N+1 guard (``guard.Guard``): what a node's loss
asks of the other nodes (its domains in the order failover places them),
and how many such domains the others have room for, as sums over sets of
nodes. Each bound says something sure about failover's placement without
working it out: that every domain finds a place (``is_sure``, ``cuts_of``),
or that some cannot (``floors_of``).
"""

from __future__ import annotations

from havirt.plan.balance.model import Layout
from havirt.plan.balance.placement import placement_order

ANY_SLOTS = 1 << 62  # slots on a node for a domain of size 0
# One domain of a node's loss, in the order failover places them: (MiB,
# vCPUs, allowed nodes, the widest of it and those after it, the distinct
# sets of nodes it and those after it may use, each with the number of the
# last step that uses it).
Step = tuple[int, int, "frozenset[int] | None", int, tuple[tuple["frozenset[int] | None", int], ...]]
# What a node's loss asks of the others: (number of movable domains, the
# largest one's MiB, the widest one's vCPUs, the distinct sets of nodes their
# disks allow, None standing for every node; the domains, in placement order;
# for each set, the number of steps up to the last that uses it).
Need = tuple[int, int, int, tuple["frozenset[int] | None", ...], tuple[Step, ...], tuple[int, ...]]
# The bound: for each of those sets, how many such domains its nodes could
# take. Enough when each sum is at least its set's number of steps: a step
# lowers each sum by one at most, so a domain finds a place at each step.
Slots = tuple[int, ...]


def distinct_sets(sets: list[frozenset[int] | None]) -> tuple[frozenset[int] | None, ...]:
    """Each set once, every node (None) first."""
    return tuple(sorted(set(sets), key=lambda a: (a is not None, sorted(a or ()))))


def slots_for(free: int, room: int, mx: int, vx: int) -> int:
    """How many domains of ``mx`` MiB and ``vx`` vCPUs fit in that much room."""
    if free < 0 or room < 0:
        return 0
    return min(free // mx if mx else ANY_SLOTS, room // vx if vx else ANY_SLOTS)


def changed_slots(
    need: Need, slots: Slots, nodes: list[int], before: list[tuple[int, int]], after: list[tuple[int, int]]
) -> Slots:
    """The bound ``slots`` once ``nodes`` (not the node lost) went from
    ``before`` to ``after`` (each: free MiB, free vCPUs)."""
    _, mx, vx, sets, _, _ = need
    out: list[int] | None = None
    for j, (f0, r0), (f1, r1) in zip(nodes, before, after):
        d = slots_for(f1, r1, mx, vx) - slots_for(f0, r0, mx, vx)
        if d:
            out = out or list(slots)
            for q, allowed in enumerate(sets):
                if allowed is None or j in allowed:
                    out[q] += d
    return slots if out is None else tuple(out)


def steps_of(layout: Layout, movable: list[int]) -> tuple[Step, ...]:
    """The domains ``movable`` as failover would place them, each with what
    those still to place from it on ask (see ``Step``)."""
    out: list[Step] = []
    widest = 0
    sets: tuple[tuple[frozenset[int] | None, int], ...] = ()
    order = placement_order(layout, movable, True)
    for s in range(len(order) - 1, -1, -1):
        k = order[s]
        m, v = layout.doms[k].size(True)
        allowed = layout.allowed[k]
        widest = max(widest, v)
        if all(allowed != a for a, _ in sets):
            sets = (*sets, (allowed, s))
        out.append((m, v, allowed, widest, sets))
    return tuple(reversed(out))


def is_sure(need: Need, slots: Slots) -> bool:
    """Whether the bound ``slots`` says every domain of ``need`` finds a place."""
    for slot, ask in zip(slots, need[5]):
        if slot < ask:
            return False
    return True


def floors_of(steps: tuple[Step, ...]) -> tuple[tuple[int, int, int], ...]:
    """(MiB, vCPUs, count): for each size some of the domains ``steps``
    reach on both counts, how many do (one entry per such set of domains:
    its least MiB and vCPUs), the largest first."""
    sizes = [(m, v) for m, v, *_ in steps]
    corner: dict[tuple[int, int], int] = {}
    for low_m in {m for m, _ in sizes}:
        for low_v in {v for _, v in sizes}:
            big = [(m, v) for m, v in sizes if m >= low_m and v >= low_v]
            if big:
                corner[(min(m for m, _ in big), min(v for _, v in big))] = len(big)
    return tuple(sorted(((m, v, c) for (m, v), c in corner.items()), reverse=True))


# A cut of the steps where their units (the step's MiB, the widest of it and
# those after it) stay: (its first step, the units, how much the steps before
# it may have lowered a sum in those units, and for each set of nodes, the
# number of steps from its first up to the last that uses the set: of all
# the steps after, and of those of the cut).
Cut = tuple[int, int, int, int, tuple[tuple["frozenset[int] | None", int], ...],
             tuple[tuple["frozenset[int] | None", int], ...]]


def cuts_of(steps: tuple[Step, ...]) -> tuple[Cut, ...]:
    """``steps`` cut where their units change (see ``Cut``)."""
    units = [(m, vx) for m, _, _, vx, _ in steps]
    starts = [s for s in range(len(steps)) if s == 0 or units[s] != units[s - 1]]
    out = []
    for q, start in enumerate(starts):
        end = starts[q + 1] if q + 1 < len(starts) else len(steps)
        m, vx = steps[start][0], steps[start][3]
        lowered = sum(max(-(-mt // m) if m else 0, -(-vt // vx) if vx else 0) for mt, vt, *_ in steps[:start])
        last: dict[frozenset[int] | None, int] = {}
        for s in range(start, end):
            last[steps[s][2]] = s
        out.append((start, m, vx, lowered, tuple((a, t + 1 - start) for a, t in steps[start][4]),
                    tuple((a, t + 1 - start) for a, t in last.items())))
    return tuple(out)


class Promised:
    """What a placement promised so far (``extra_m``/``extra_v``: MiB and
    vCPUs by node, updated by :meth:`take`), and what that changes of the
    bound's sums: for each unit and set of nodes, the change is worked out
    once, then brought up to date with the steps taken since."""

    def __init__(self, layout: Layout, exclude: int, extra_m: dict[int, int], extra_v: dict[int, int]) -> None:
        self.layout, self.exclude, self.extra_m, self.extra_v = layout, exclude, extra_m, extra_v
        self.log: list[tuple[int, int, int, int, int]] = []  # (node, MiB and vCPUs promised before, after)
        self._known: dict[tuple[int, int, frozenset[int] | None], tuple[int, int]] = {}  # -> (change, steps)

    def take(self, j: int, m: int, v: int) -> None:
        em, ev = self.extra_m.get(j, 0), self.extra_v.get(j, 0)
        self.extra_m[j] = em + m
        self.extra_v[j] = ev + v
        self.log.append((j, em, ev, em + m, ev + v))

    def change(self, m: int, vx: int, allowed: frozenset[int] | None) -> int:
        """How many domains of ``m`` MiB and ``vx`` vCPUs the nodes of
        ``allowed`` take less than as they are: the node lost takes none, and
        those promised something have that much less room."""
        lay, key = self.layout, (m, vx, allowed)
        got = self._known.get(key)
        if got is None:
            total, since = 0, 0
            if self.exclude >= 0 and (allowed is None or self.exclude in allowed):
                total -= slots_for(*lay.headroom(self.exclude), m, vx)
            for j, em in self.extra_m.items():
                if allowed is None or j in allowed:
                    free, room = lay.headroom(j)
                    total += (slots_for(free - em, room - self.extra_v[j], m, vx)
                              - slots_for(free, room, m, vx))
            since = len(self.log)
        else:
            total, since = got
            for j, em0, ev0, em1, ev1 in self.log[since:]:
                if allowed is None or j in allowed:
                    free, room = lay.headroom(j)
                    total += (slots_for(free - em1, room - ev1, m, vx)
                              - slots_for(free - em0, room - ev0, m, vx))
            since = len(self.log)
        self._known[key] = (total, since)
        return total
