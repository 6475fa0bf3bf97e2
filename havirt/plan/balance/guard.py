"""Keeping N+1 from getting worse while balance plans its moves.

:class:`Guard` says whether some moves would make the loss of a node fatal
that was not ("safe" nodes stay safe). For each safe node X it is cheap:

1. a bound: for each set of nodes some of X's domains may use (their disks'
   ``allowed``; all nodes for most), the sum over that set of
   ``min(free MiB // X's largest domain, free vCPUs // X's widest)``. A
   placement lowers each sum by at most one, so while every sum is at least
   the number of X's domains placed up to the last that uses its set,
   failover places them all;
2. for a node that refused a move before, the other way round: for some
   size, X's domains at least that large outnumber the places the other
   nodes have for one that large; then no placement at all places them
   (X is no longer safe, and that is sure);
3. else, X's placement, step by step as ``placement.place`` goes, until
   the same bound, taken for the domains not placed yet (in units of the
   largest and the widest of those, what the steps so far promised counted),
   says the rest will all find a place, or until one finds none (then X's
   loss would strand it). Only the sets for which the bound was short need
   that: a sum that was enough for all of X's domains stays enough for those
   left. The steps are worked out from X's last placement (its ``Trace``):
   the winner of a step last time still wins where its key is strictly above
   the best the others had then and the keys, computed afresh, of the nodes
   whose state differs (those the moves touch, and those an earlier step gave
   a different share than last time); only the steps where that is not sure
   (or that were not reached last time) are ranked over every node
   (``placement.Ranking``). So every step picks what ``placement.place``
   picks, and the verdict is the placement's, exactly.

Only capacity counts: a domain that is not movable is stranded whatever
balance does, so a node is safe when each of its movable domains finds a place.
"""

from __future__ import annotations

from collections.abc import Iterable

from havirt.plan.balance.model import Layout
from havirt.plan.balance.nplus1 import lost_domains
from havirt.plan.balance.placement import Ranking, Trace, place, placement_order
from havirt.plan.balance.plans import NPlus1

_ANY = 1 << 62  # slots on a node for a domain of size 0
# One domain of a node's loss, in the order failover places them: (MiB,
# vCPUs, allowed nodes, the widest of it and those after it, the distinct
# sets of nodes it and those after it may use, each with the number of the
# last step that uses it).
_Step = tuple[int, int, "frozenset[int] | None", int, tuple[tuple["frozenset[int] | None", int], ...]]
# What a node's loss asks of the others: (number of movable domains, the
# largest one's MiB, the widest one's vCPUs, the distinct sets of nodes their
# disks allow, None standing for every node; the domains, in placement order;
# for each set, the number of steps up to the last that uses it).
_Need = tuple[int, int, int, tuple["frozenset[int] | None", ...], tuple[_Step, ...], tuple[int, ...]]
# The bound: for each of those sets, how many such domains its nodes could
# take. Enough when each sum is at least its set's number of steps: a step
# lowers each sum by one at most, so a domain finds a place at each step.
_Slots = tuple[int, ...]


def _distinct(sets: list[frozenset[int] | None]) -> tuple[frozenset[int] | None, ...]:
    """Each set once, every node (None) first."""
    return tuple(sorted(set(sets), key=lambda a: (a is not None, sorted(a or ()))))


def _slots(free: int, room: int, mx: int, vx: int) -> int:
    """How many domains of ``mx`` MiB and ``vx`` vCPUs fit in that much room."""
    if free < 0 or room < 0:
        return 0
    return min(free // mx if mx else _ANY, room // vx if vx else _ANY)


def _changed(
    need: _Need, slots: _Slots, nodes: list[int], before: list[tuple[int, int]], after: list[tuple[int, int]]
) -> _Slots:
    """The bound ``slots`` once ``nodes`` (not the node lost) went from
    ``before`` to ``after`` (each: free MiB, free vCPUs)."""
    _, mx, vx, sets, _, _ = need
    out: list[int] | None = None
    for j, (f0, r0), (f1, r1) in zip(nodes, before, after):
        d = _slots(f1, r1, mx, vx) - _slots(f0, r0, mx, vx)
        if d:
            out = out or list(slots)
            for q, allowed in enumerate(sets):
                if allowed is None or j in allowed:
                    out[q] += d
    return slots if out is None else tuple(out)


def _steps(layout: Layout, movable: list[int]) -> tuple[_Step, ...]:
    """The domains ``movable`` as failover would place them, each with what
    those still to place from it on ask (see ``_Step``)."""
    out: list[_Step] = []
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


def _sure(need: _Need, slots: _Slots) -> bool:
    """Whether the bound ``slots`` says every domain of ``need`` finds a place."""
    return all(slot >= ask for slot, ask in zip(slots, need[5]))


def _floors(steps: tuple[_Step, ...]) -> tuple[tuple[int, int, int], ...]:
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


class _Promised:
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
                total -= _slots(*lay.headroom(self.exclude), m, vx)
            for j, em in self.extra_m.items():
                if allowed is None or j in allowed:
                    free, room = lay.headroom(j)
                    total += _slots(free - em, room - self.extra_v[j], m, vx) - _slots(free, room, m, vx)
            since = len(self.log)
        else:
            total, since = got
            for j, em0, ev0, em1, ev1 in self.log[since:]:
                if allowed is None or j in allowed:
                    free, room = lay.headroom(j)
                    total += _slots(free - em1, room - ev1, m, vx) - _slots(free - em0, room - ev0, m, vx)
            since = len(self.log)
        self._known[key] = (total, since)
        return total


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
        # the safe nodes in the order they are asked: those whose loss made a
        # move refused first, the latest first; then the others by name
        self._order: list[str] = []
        self._refusers: set[str] = set()
        # _short's sums over every node, for the allocation of one layout.version;
        # while a trial is made (``_trial``: the version before it, the nodes
        # the moves touch, their headroom before and after), those of the
        # allocation before it
        self._sums: dict[tuple[int, int, frozenset[int] | None], int] = {}
        self._sums_version = -1
        self._trial: tuple[int, list[int], list[tuple[int, int]], list[tuple[int, int]]] | None = None
        # the layout.version for which the traces of the safe nodes whose bound is short are known
        self._traced = -1
        # _floors of a node, with the _Need they were made for
        self._floors: dict[str, tuple[_Need, tuple[tuple[int, int, int], ...]]] = {}
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
        return not place(self.layout, movable, exclude, True, first=True)[1]

    def _place(self, name: str) -> tuple[bool, Trace]:
        """Whether failover would place every movable domain of ``name``, and
        each step of that placement (the whole of it)."""
        leaving, exclude = lost_domains(self.layout, name)
        trace: Trace = []
        movable = [k for k in leaving if self.layout.doms[k].movable]
        return not place(self.layout, movable, exclude, True, trace)[1], trace

    def adopt(self, name: str) -> None:
        """``name``'s loss has become survivable: keep it so."""
        self.safe.add(name)
        self._bounds[name] = self._bound(name)
        self._traces[name] = None
        self._traced = -1
        self._order = [x for x in self._order if x in self._refusers] + sorted(self.safe - self._refusers)

    # -- the bound ------------------------------------------------------------

    def _bound(self, name: str) -> tuple[_Need, _Slots]:
        """What ``name``'s loss asks, and the bound, from scratch."""
        lay = self.layout
        leaving, exclude = lost_domains(lay, name)
        movable = [k for k in leaving if lay.doms[k].movable]
        sizes = [lay.doms[k].size(True) for k in movable]
        sets = _distinct([lay.allowed[k] for k in movable])
        steps = _steps(lay, movable)
        last = dict(steps[0][4]) if steps else {}
        need = (len(sizes), max((m for m, _ in sizes), default=0), max((v for _, v in sizes), default=0), sets,
                steps, tuple(last[a] + 1 for a in sets))
        return need, self._part(need, exclude, range(lay.n))

    def _part(self, need: _Need, exclude: int, nodes: Iterable[int]) -> _Slots:
        """The bound's sums over ``nodes`` only."""
        _, mx, vx, sets, _, _ = need
        lay = self.layout
        out = [0] * len(sets)
        for j in nodes:
            c = _slots(*lay.headroom(j), mx, vx)
            if c and j != exclude:
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
        before = [lay.headroom(j) for j in touched]
        if self._traced != lay.version:  # placements of the current layout, kept while it is tight
            for name in self.safe:
                need, slots = self._bounds[name]
                if self._traces[name] is None and not _sure(need, slots):
                    self._traces[name] = self._steps_taken(name, need, slots, None, [])[1]
            self._traced = lay.version
        base = lay.version
        bounds: dict[str, tuple[_Need, _Slots]] = {}
        traces: dict[str, Trace | None] = {}
        with lay.shifted(moves):
            after = [lay.headroom(j) for j in touched]
            self._trial = (base, touched, before, after)
            try:
                # the nodes that made the last moves refused first: the verdict is
                # the same in any order, and a refusal is found sooner
                for name in self._order:
                    if not self._keeps(name, name in inside, touched, before, after, bounds, traces):
                        self._order.remove(name)
                        self._order.insert(0, name)
                        self._refusers.add(name)
                        return False
            finally:
                self._trial = None
        self._pending = (list(moves), bounds, traces)
        return True

    def _keeps(self, name: str, inside: bool, touched: list[int], before: list[tuple[int, int]],
               after: list[tuple[int, int]], bounds: dict, traces: dict) -> bool:
        """Whether ``name``'s loss is still survivable once the moves of the
        trial are made (``inside``: they take a domain from it or give it
        one); its bound and trace stored in ``bounds`` and ``traces``."""
        if inside:
            bounds[name] = self._bound(name)
        else:
            need, slots = self._bounds[name]
            bounds[name] = (need, _changed(need, slots, touched, before, after))
        need, slots = bounds[name]
        traces[name] = None
        if _sure(need, slots):
            return True
        if name in self._refusers and self._stranded_anyway(name, need):  # the likely ones only: cheap, not free
            return False
        ok, traces[name] = self._steps_taken(name, need, slots, None if inside else self._traces[name], touched)
        return ok

    def _stranded_anyway(self, name: str, need: _Need) -> bool:
        """Whether no placement at all, failover's or any other, could place
        every movable domain of ``name`` now: for some size, the domains at
        least that large (on both counts) outnumber the places the other
        nodes have for one that large (``_floors``). Cheap, and what it
        says is sure; the placement itself (``_steps_taken``) says the rest."""
        lay = self.layout
        got = self._floors.get(name)
        if got is None or got[0] is not need:
            got = self._floors[name] = (need, _floors(need[4]))
        x = lay.index.get(name, -1)
        free, room = lay.headroom(x) if x >= 0 else (-1, -1)
        for m, v, count in got[1]:
            if self._slot_sum(m, v, None) - _slots(free, room, m, v) < count:
                return True
        return False

    def _steps_taken(
        self, name: str, need: _Need, slots: _Slots, trace: Trace | None, touched: list[int]
    ) -> tuple[bool, Trace]:
        """Whether failover would place every movable domain of ``name`` now
        (``need`` and ``slots``: its bound now), and the steps of that
        placement worked out until that was sure (see the module docstring).
        ``trace``: those of the placement of the same domains before nodes
        ``touched`` changed (never ``name`` itself), if known."""
        lay = self.layout
        exclude = lay.index.get(name, -1)
        steps = need[4]
        # the sets for which the bound is short now: the others stay sure to the end
        short_sets = {allowed for allowed, slot, ask in zip(need[3], slots, need[5]) if slot < ask}
        last = trace or []
        new_m: dict[int, int] = {}
        new_v: dict[int, int] = {}
        promised = _Promised(lay, exclude, new_m, new_v)
        ranking: Ranking | None = None
        # Nodes whose key may differ from last time: only grows.
        watch = set(touched)
        out: Trace = []
        check, units = 1, (steps[0][0], steps[0][3]) if steps else (0, 0)  # step 0: the bound, short
        for s, (m, v, allowed, vx, sets) in enumerate(steps):
            if s >= check or (m, vx) != units:
                short = self._short(s, m, vx, [a for a in sets if a[0] in short_sets], promised)
                if not short:
                    return True, out
                # each step lowers a sum by one at most, while the units stay
                check, units = s + short, (m, vx)
            sure = False
            if s < len(last):
                w = last[s][0]
                sure, key, best = self._still_wins(last[s], watch, m, v, allowed, new_m, new_v)
            if sure:
                j = w
            else:
                if ranking is None:
                    ranking = Ranking(lay, exclude)
                    for step in out:
                        ranking.take(step[0], step[1], step[2])
                j, key, best = ranking.best(allowed, m, v)
                if j < 0:
                    return False, out
                if s < len(last) and j != w:
                    watch.add(w)
                    watch.add(j)
            out.append((j, m, v, allowed, key, best))
            if ranking is not None:
                ranking.take(j, m, v)
            promised.take(j, m, v)
        return True, out

    def _still_wins(self, step, watch, m, v, allowed, new_m, new_v):
        """(sure, key, best): whether the winner of `step` in the placement
        before still ranks first for this domain, given that only the nodes
        in `watch` may rank otherwise now (the rest rank at most as the best
        of the others did then)."""
        lay = self.layout
        w, _, _, _, key, best = step
        for x in watch:
            em, ev = new_m.get(x, 0), new_v.get(x, 0)
            kx = lay.rank(x, m, v, em, ev) if lay.fits(x, m, v, allowed, em, ev) else None
            if x == w:
                key = kx
            elif kx is not None and kx > best:
                best = kx
        return key is not None and key > best, key, best

    def _short(
        self, s: int, m: int, vx: int, sets: list[tuple[frozenset[int] | None, int]], promised: _Promised
    ) -> int:
        """The bound for the domains still to place from step ``s`` on (none
        larger than ``m`` MiB, nor wider than ``vx`` vCPUs), for the sets of
        nodes ``sets`` (each with its last step), with what the placement
        ``promised`` so far: how much it falls short for one of them (0:
        none, so every one of the domains will find a place; a set need only
        last until its last step). The sum over every node of the set is
        kept for the allocation as it is; the node lost and those promised
        something are then counted as they are for this placement
        (``_Promised.change``)."""
        for allowed, last in sets:
            total = self._slot_sum(m, vx, allowed) + promised.change(m, vx, allowed)
            if total < last + 1 - s:
                return last + 1 - s - total
        return 0

    def _slot_sum(self, m: int, vx: int, allowed: frozenset[int] | None) -> int:
        """How many domains of ``m`` MiB and ``vx`` vCPUs the nodes of
        ``allowed`` (None: all) could take, each as it is now. The sums are
        kept for the allocation as it is; during a trial, those of the
        allocation before it are kept, and the nodes the trial touches
        counted as they are now."""
        lay, trial = self.layout, self._trial
        version = lay.version if trial is None else trial[0]
        if self._sums_version != version:
            self._sums.clear()
            self._sums_version = version
        key = (m, vx, allowed)
        total = self._sums.get(key)
        change = 0
        if trial is not None:
            for j, (f0, r0), (f1, r1) in zip(trial[1], trial[2], trial[3]):
                if allowed is None or j in allowed:
                    change += _slots(f1, r1, m, vx) - _slots(f0, r0, m, vx)
        if total is None:
            usable, mem, vcap, vcpu = lay.usable, lay.mem, lay.vcap, lay.vcpu
            total = 0
            for j in range(lay.n) if allowed is None else allowed:
                free, room = usable[j] - mem[j], vcap[j] - vcpu[j]
                if free >= 0 and room >= 0:
                    total += min(free // m if m else _ANY, room // vx if vx else _ANY)
            self._sums[key] = total = total - change
        return total + change

    def commit(self, moves: list[tuple[int, int]]) -> None:
        """``moves``, just allowed, are now done in the layout."""
        assert self._pending is not None and self._pending[0] == list(moves)
        self._bounds.update(self._pending[1])
        self._traces.update(self._pending[2])
        self._pending = None
