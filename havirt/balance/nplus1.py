"""N+1: would the cluster survive the loss of any one node?

For each node, its running domains are placed on the others exactly as
failover would place them (:func:`placement.place`, restart sizes); the node
"survives" when every one of them finds a place. :class:`Guard` keeps that
true, move after move, for the balance planner: a node whose loss the
cluster survived before a move still does after it.

Checking a move costs little: for each node X the guard keeps a bound, the
number of X's domains the other nodes could take whatever the order (each
node counted as ``min(free MiB // X's largest, free vCPUs // X's widest)``,
on the nodes every one of X's domains may use). Each placement lowers it by
at most one, so when it is at least the number of X's domains, failover
places them all. Only when the bound is short is X's placement computed.
"""

from __future__ import annotations

from .model import BDomain, BNode, Layout
from .placement import place, placement_moves
from .plans import NodeLoss, NPlus1

_ANY = 1 << 62  # slots on a node for a domain of size 0


def n_plus_1(nodes: list[BNode], domains: list[BDomain]) -> NPlus1:
    """For every node of ``nodes`` (those in maintenance too), what its loss
    would mean. ``domains`` are the running domains of those nodes."""
    return verdict(Layout(nodes, domains))


def verdict(layout: Layout) -> NPlus1:
    """N+1 for every node of the layout, in name order."""
    names = sorted({*layout.names, *layout.parked})
    return NPlus1({name: node_loss(layout, name) for name in names})


def node_loss(layout: Layout, name: str) -> NodeLoss:
    """Where failover would restart the domains of ``name``, and what would not fit."""
    leaving, exclude = lost_domains(layout, name)
    placed, stranded = place(layout, leaving, exclude, restart=True)
    return NodeLoss(name, tuple(placement_moves(layout, placed, name, True)), tuple(stranded))


def lost_domains(layout: Layout, name: str) -> tuple[list[int], int]:
    """The domains that would need a new home if ``name`` died, and its index (-1: aside)."""
    i = layout.index.get(name, -1)
    if i >= 0:
        return sorted(layout.members[i]), i
    return [k for k, node in layout.aside if node == name], -1


# What a node's loss asks of the others: (number of movable domains, the
# largest one's MiB, the widest one's vCPUs, the distinct sets of nodes their
# disks allow, None standing for every node).
_Need = tuple[int, int, int, tuple["frozenset[int] | None", ...]]
# The bound: for each of those sets, how many such domains its nodes could take.
_Slots = tuple[int, ...]


class Guard:
    """Keeps every node whose loss was survivable survivable.

    Only capacity counts here: a domain that is not movable is stranded
    whatever balance does, so a node is "safe" when each of its movable
    domains finds a place. Nodes not safe at the start are :attr:`unsafe`.

    The bound of a node X: for each set A of nodes that one of X's domains
    may use, the sum over A of what each node could take of X's domains
    whatever they are; while every such sum is at least the number of X's
    domains, each of them finds room in its own A, in any order.
    """

    def __init__(self, layout: Layout, now: NPlus1) -> None:
        """``now``: :func:`verdict` of ``layout`` as it is."""
        self.layout = layout
        self.lost = list(now.nodes)
        self.safe: set[str] = set()
        self._bounds: dict[str, tuple[_Need, _Slots]] = {}
        self._pending: tuple[list[tuple[int, int]], dict[str, tuple[_Need, _Slots]]] | None = None
        for name, loss in now.nodes.items():
            if all(not layout.doms[layout.dindex[s.domain]].movable for s in loss.stranded):
                self.adopt(name)

    @property
    def unsafe(self) -> list[str]:
        return [name for name in self.lost if name not in self.safe]

    def places_all(self, name: str) -> bool:
        """Failover would place every movable domain of ``name`` (computed)."""
        leaving, exclude = lost_domains(self.layout, name)
        movable = [k for k in leaving if self.layout.doms[k].movable]
        return not place(self.layout, movable, exclude, restart=True)[1]

    def _bound(self, name: str) -> tuple[_Need, _Slots]:
        """What ``name``'s loss asks, and the bound, from scratch."""
        lay = self.layout
        leaving, exclude = lost_domains(lay, name)
        movable = [k for k in leaving if lay.doms[k].movable]
        sizes = [lay.doms[k].size(True) for k in movable]
        sets = tuple(sorted({lay.allowed[k] for k in movable}, key=lambda a: (a is not None, sorted(a or ()))))
        need = (len(sizes), max((m for m, _ in sizes), default=0), max((v for _, v in sizes), default=0), sets)
        return need, self._part(need, exclude, range(lay.n))

    def _part(self, need: _Need, exclude: int, nodes) -> _Slots:
        """The bound's sums over ``nodes`` only."""
        _, mx, vx, sets = need
        lay = self.layout
        out = [0] * len(sets)
        for j in nodes:
            if j == exclude:
                continue
            free = lay.usable[j] - lay.mem[j]
            room = lay.vcap[j] - lay.vcpu[j]
            if free < 0 or room < 0:
                continue
            c = min(free // mx if mx else _ANY, room // vx if vx else _ANY)
            if c:
                for q, allowed in enumerate(sets):
                    if allowed is None or j in allowed:
                        out[q] += c
        return tuple(out)

    def allows(self, moves: list[tuple[int, int]]) -> bool:
        """Whether doing ``moves`` ((domain, target) indices, in order) from
        the current layout keeps every safe node safe. The layout is left as
        it was; :meth:`commit` adopts what was learnt once the moves are done."""
        lay = self.layout
        touched = sorted({i for k, j in moves for i in (lay.where[k], j)})
        inside = {lay.names[i] for i in touched}
        outside = [name for name in sorted(self.safe) if name not in inside]
        old = {name: self._part(self._bounds[name][0], lay.index.get(name, -1), touched) for name in outside}
        undo = [(k, lay.shift(k, j)) for k, j in moves]
        try:
            new: dict[str, tuple[_Need, _Slots]] = {}
            for name in sorted(inside & self.safe):
                new[name] = self._bound(name)
            for name in outside:
                need, slots = self._bounds[name]
                now = self._part(need, lay.index.get(name, -1), touched)
                new[name] = (need, tuple(s - o + n for s, o, n in zip(slots, old[name], now)))
            for name, (need, slots) in sorted(new.items()):
                if min(slots, default=need[0]) < need[0] and not self.places_all(name):
                    return False
        finally:
            for k, i in reversed(undo):
                lay.shift(k, i)
        self._pending = (list(moves), new)
        return True

    def commit(self, moves: list[tuple[int, int]]) -> None:
        """``moves``, just allowed, are now done in the layout."""
        assert self._pending is not None and self._pending[0] == list(moves)
        self._bounds.update(self._pending[1])
        self._pending = None

    def adopt(self, name: str) -> None:
        """``name``'s loss has become survivable: keep it so."""
        self.safe.add(name)
        self._bounds[name] = self._bound(name)
