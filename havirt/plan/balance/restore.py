"""Moves that make the loss of a node survivable again (N+1).

Moves never change how much memory (or how many vCPUs) the cluster has
free: if a node's domains need more than the other nodes have free in
total, no migration helps, and that node is left alone. What moves can fix
is room in the wrong places: free memory scattered in pieces smaller than
the domain failover could not place, or on nodes its disks are not visible
from. For each node whose loss would strand a domain, the candidates are:
that domain moved now to a node where it fits, or one domain moved off a
node it may use (one of the three with most memory free) to make room.
Among the candidates (at most ``MAX_TRIES``) that make some fatal loss
survivable without making another one fatal, the one leaving the lowest
score (then moving the least memory) is done; and so on while one is found.
"""

from __future__ import annotations

from havirt.plan.balance.guard import Guard
from havirt.plan.balance.model import Hop, Layout
from havirt.plan.balance.nplus1 import lost_domains
from havirt.plan.balance.placement import place

# Nodes (by most free memory) a stranded domain could use that are tried for
# room, and targets tried for each domain moved to make room.
ROOM_NODES = 3
ROOM_TARGETS = 2
# Candidates weighed for one move at most (in node, then candidate order).
MAX_TRIES = 300


def restore(layout: Layout, guard: Guard, budget: float) -> list[Hop]:
    """Moves (domain, source, target indices), done in ``layout``, that make
    nodes' losses survivable, at most ``budget`` of them."""
    steps: list[Hop] = []
    for name in guard.unsafe:
        if guard.places_all(name):
            guard.adopt(name)
    while len(steps) < budget:
        tries = [(name, k, j) for name in guard.unsafe if _fixable(layout, name) for k, j in _candidates(layout, name)]
        tries = tries[:MAX_TRIES]
        # the first that works, by what it leaves (then in candidate order); the
        # guard's check of it is the last it made, what commit keeps
        ranked = sorted(range(len(tries)), key=lambda q: (_cost(layout, tries[q][1], tries[q][2]), q))
        best = next((tries[q] for q in ranked if _works(layout, guard, *tries[q])), None)
        if best is None:
            return steps
        _, k, j = best
        steps.append((k, layout.where[k], j))
        layout.apply(k, j)
        guard.commit([(k, j)])
        for name in guard.unsafe:
            if guard.places_all(name):
                guard.adopt(name)
    return steps


def _fixable(layout: Layout, name: str) -> bool:
    """Whether moves could help: the others have enough memory and vCPUs
    free in total for ``name``'s movable domains (moving one of them first
    frees its restart size minus what it holds now, if that is more)."""
    leaving, exclude = lost_domains(layout, name)
    movable = [k for k in leaving if layout.doms[k].movable]
    need_m = sum(layout.doms[k].size(True)[0] for k in movable)
    need_v = sum(layout.doms[k].size(True)[1] for k in movable)
    bonus_m = sum(max(0, layout.doms[k].size(True)[0] - layout.dmem[k]) for k in movable)
    bonus_v = sum(max(0, layout.doms[k].size(True)[1] - layout.dvcpu[k]) for k in movable)
    room = [layout.headroom(j) for j in range(layout.n) if j != exclude]
    free_m = sum(max(0, m) for m, _ in room)
    free_v = sum(max(0, v) for _, v in room)
    return need_m - bonus_m <= free_m and need_v - bonus_v <= free_v


def _candidates(layout: Layout, name: str) -> list[tuple[int, int]]:
    """Moves that might let failover place the first domain it strands."""
    leaving, exclude = lost_domains(layout, name)
    _, stranded = place(layout, [k for k in leaving if layout.doms[k].movable], exclude, restart=True, first=True)
    k = layout.dindex[stranded[0].domain]
    out: list[tuple[int, int]] = []
    every = [j for j in range(layout.n) if j != exclude]
    if exclude >= 0 and k not in layout.moved:
        out += [(k, j) for j in layout.fitting(layout.dmem[k], layout.dvcpu[k], layout.allowed[k], every)]
    allowed = layout.allowed[k]
    usable = [j for j in every if allowed is None or j in allowed]
    roomy = sorted(usable, key=lambda j: (layout.mem[j] - layout.usable[j], j))[:ROOM_NODES]
    for j in roomy:
        for m, v, al, e in layout.groups(j):
            targets = [z for z in layout.fitting(m, v, al, every) if z != j]
            gains = layout.sums.move_gains(j, m, v, targets)
            ranked = sorted(zip(gains, targets), key=lambda t: (-t[0], t[1]))[:ROOM_TARGETS]
            out += [(e, z) for _, z in ranked]
    return out


def _cost(layout: Layout, k: int, j: int) -> tuple[float, int]:
    """(score after, MiB moved) of moving ``k`` to ``j``."""
    return layout.sums.after_move(layout.where[k], j, layout.dmem[k], layout.dvcpu[k]), layout.dmem[k]


def _works(layout: Layout, guard: Guard, name: str, k: int, j: int) -> bool:
    """Whether moving ``k`` to ``j`` makes ``name``'s loss survivable and no other fatal."""
    with layout.shifted([(k, j)]):
        fixed = guard.places_all(name)
    return fixed and guard.allows([(k, j)])
