"""Keeping N+1 from getting worse while balance plans its moves.

:class:`Guard` says whether some moves would make the loss of a node fatal
that was not ("safe" nodes stay safe). For each safe node X it is cheap:

1. a bound: for each set of nodes some of X's domains may use (their disks'
   ``allowed``; all nodes for most), the sum over that set of
   ``min(free MiB // X's largest domain, free vCPUs // X's widest)``. A
   placement lowers each sum by at most one, so while every sum is at least
   the number of X's domains, failover places them all, in any order;
2. else, X's last placement (its ``Trace``), re-checked on the nodes the
   moves touch only: if every step keeps its winner (the winner's key still
   strictly above the best of the others), the placement is unchanged;
3. else, X's placement computed again (``placement.place``).

Only capacity counts: a domain that is not movable is stranded whatever
balance does, so a node is safe when each of its movable domains finds a place.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import Layout
from .nplus1 import lost_domains
from .placement import Trace, place, target_key
from .plans import NPlus1

_ANY = 1 << 62  # slots on a node for a domain of size 0
# What a node's loss asks of the others: (number of movable domains, the
# largest one's MiB, the widest one's vCPUs, the distinct sets of nodes their
# disks allow, None standing for every node).
_Need = tuple[int, int, int, tuple["frozenset[int] | None", ...]]
# The bound: for each of those sets, how many such domains its nodes could take.
_Slots = tuple[int, ...]


class Guard:
    """Keeps every node whose loss was survivable survivable (see the module docstring)."""

    def __init__(self, layout: Layout, now: NPlus1) -> None:
        """``now``: ``nplus1.verdict`` of ``layout`` as it is."""
        self.layout = layout
        self.lost = list(now.nodes)
        self.safe: set[str] = set()
        self._bounds: dict[str, tuple[_Need, _Slots]] = {}
        self._traces: dict[str, Trace | None] = {}
        self._pending: tuple[list[tuple[int, int]], dict, dict] | None = None
        for name, loss in now.nodes.items():
            if all(not layout.doms[layout.dindex[s.domain]].movable for s in loss.stranded):
                self.adopt(name)

    @property
    def unsafe(self) -> list[str]:
        return [name for name in self.lost if name not in self.safe]

    def places_all(self, name: str) -> bool:
        """Failover would place every movable domain of ``name`` (computed)."""
        return self._place(name)[0]

    def _place(self, name: str) -> tuple[bool, Trace]:
        leaving, exclude = lost_domains(self.layout, name)
        trace: Trace = []
        movable = [k for k in leaving if self.layout.doms[k].movable]
        return not place(self.layout, movable, exclude, True, trace)[1], trace

    def adopt(self, name: str) -> None:
        """``name``'s loss has become survivable: keep it so."""
        self.safe.add(name)
        self._bounds[name] = self._bound(name)
        self._traces[name] = None

    # -- the bound ------------------------------------------------------------

    def _bound(self, name: str) -> tuple[_Need, _Slots]:
        """What ``name``'s loss asks, and the bound, from scratch."""
        lay = self.layout
        leaving, exclude = lost_domains(lay, name)
        movable = [k for k in leaving if lay.doms[k].movable]
        sizes = [lay.doms[k].size(True) for k in movable]
        sets = tuple(sorted({lay.allowed[k] for k in movable}, key=lambda a: (a is not None, sorted(a or ()))))
        need = (len(sizes), max((m for m, _ in sizes), default=0), max((v for _, v in sizes), default=0), sets)
        return need, self._part(need, exclude, range(lay.n))

    def _part(self, need: _Need, exclude: int, nodes: Iterable[int]) -> _Slots:
        """The bound's sums over ``nodes`` only."""
        _, mx, vx, sets = need
        lay = self.layout
        out = [0] * len(sets)
        for j in nodes:
            free = lay.usable[j] - lay.mem[j]
            room = lay.vcap[j] - lay.vcpu[j]
            if j == exclude or free < 0 or room < 0:
                continue
            c = min(free // mx if mx else _ANY, room // vx if vx else _ANY)
            if c:
                for q, allowed in enumerate(sets):
                    if allowed is None or j in allowed:
                        out[q] += c
        return tuple(out)

    # -- checking moves ---------------------------------------------------------

    def allows(self, moves: list[tuple[int, int]]) -> bool:
        """Whether doing ``moves`` ((domain, target) indices, in order) from
        the current layout keeps every safe node safe. The layout is left as
        it was; :meth:`commit` keeps what was learnt once the moves are done."""
        lay = self.layout
        touched = sorted({i for k, j in moves for i in (lay.where[k], j)})
        inside = {lay.names[i] for i in touched}
        old = {name: self._part(self._bounds[name][0], lay.index.get(name, -1), touched)
               for name in self.safe if name not in inside}
        for name in self.safe:  # placements of the current layout, kept while it is tight
            need, slots = self._bounds[name]
            if self._traces[name] is None and min(slots, default=need[0]) < need[0]:
                self._traces[name] = self._place(name)[1]
        undo = [(k, lay.shift(k, j)) for k, j in moves]
        try:
            bounds: dict[str, tuple[_Need, _Slots]] = {}
            traces: dict[str, Trace | None] = {}
            for name in sorted(self.safe):
                if name in inside:
                    bounds[name] = self._bound(name)
                else:
                    need, slots = self._bounds[name]
                    now = self._part(need, lay.index.get(name, -1), touched)
                    bounds[name] = (need, tuple(s - o + n for s, o, n in zip(slots, old[name], now)))
                need, slots = bounds[name]
                traces[name] = None
                if min(slots, default=need[0]) >= need[0]:
                    continue
                trace = self._traces[name]
                if trace is not None and name not in inside:
                    traces[name] = self._recheck(trace, touched)
                if traces[name] is None:
                    ok, traces[name] = self._place(name)
                    if not ok:
                        return False
        finally:
            for k, i in reversed(undo):
                lay.shift(k, i)
        self._pending = (list(moves), bounds, traces)
        return True

    def _recheck(self, trace: Trace, touched: list[int]) -> Trace | None:
        """``trace`` brought up to date if only nodes ``touched`` changed and
        every step keeps its winner; None when that is not sure."""
        lay = self.layout
        extra_m: dict[int, int] = {}
        extra_v: dict[int, int] = {}
        out: Trace = []
        for w, m, v, allowed, wkey, others in trace:
            keys = {x: target_key(lay, x, m, v, allowed, extra_m.get(x, 0), extra_v.get(x, 0)) for x in touched}
            rivals = [key for x, key in keys.items() if x != w and key is not None]
            if w in keys:
                if keys[w] is None:
                    return None
                wkey = keys[w]
            best_other = max([others, *rivals])  # the others not touched rank at most ``others``
            if not wkey > best_other:
                return None
            out.append((w, m, v, allowed, wkey, best_other))
            extra_m[w] = extra_m.get(w, 0) + m
            extra_v[w] = extra_v.get(w, 0) + v
        return out

    def commit(self, moves: list[tuple[int, int]]) -> None:
        """``moves``, just allowed, are now done in the layout."""
        assert self._pending is not None and self._pending[0] == list(moves)
        self._bounds.update(self._pending[1])
        self._traces.update(self._pending[2])
        self._pending = None
