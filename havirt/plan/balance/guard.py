"""Keeping N+1 from getting worse while balance plans its moves.

:class:`Guard` says whether some moves would make the loss of a node fatal
that was not ("safe" nodes stay safe). For each safe node X it is cheap:

1. a bound: for each set of nodes some of X's domains may use (their disks'
   ``allowed``; all nodes for most), the sum over that set of
   ``min(free MiB // X's largest domain, free vCPUs // X's widest)``. A
   placement lowers each sum by at most one, so while every sum is at least
   the number of X's domains placed up to the last that uses its set,
   failover places them all;
2. else the same bound, cut where the units (the MiB of the domain to place,
   the widest of it and those after it) change, each cut in its own units,
   less what the domains before it may have taken of them
   (``_sure_by_size``);
3. for a node that refused a move before, the other way round: for some
   size, X's domains at least that large outnumber the places the other
   nodes have for one that large; then no placement at all places them
   (X is no longer safe, and that is sure);
4. else, X's placement, step by step as ``placement.place`` goes, until
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

from havirt.plan.balance.bounds import (
    ANY_SLOTS,
    Cut,
    Need,
    Promised,
    Slots,
    changed_slots,
    cuts_of,
    distinct_sets,
    floors_of,
    is_sure,
    slots_for,
    steps_of,
)
from havirt.plan.balance.model import Layout
from havirt.plan.balance.nplus1 import lost_domains
from havirt.plan.balance.placement import Ranking, Trace, place
from havirt.plan.balance.plans import NPlus1


def _made_for(kept: dict, name: str, need: Need, make):
    """``make(need's steps)``, kept in ``kept`` for ``name`` while its need is ``need``."""
    got = kept.get(name)
    if got is None or got[0] is not need:
        got = kept[name] = (need, make(need[4]))
    return got[1]


class Guard:
    """Keeps every node whose loss was survivable survivable (see the module docstring)."""

    def __init__(self, layout: Layout, now: NPlus1) -> None:
        """``now``: ``nplus1.verdict`` of ``layout`` as it is."""
        self.layout = layout
        self.lost = list(now.nodes)
        self.safe: set[str] = set()
        self._bounds: dict[str, tuple[Need, Slots]] = {}
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
        self._trial_sums: dict[tuple[int, int, frozenset[int] | None], int] = {}
        # the layout.version for which the traces of the safe nodes whose bound is short are known
        self._traced = -1
        # floors_of and cuts_of of a node, with the Need they were made for
        self._floors: dict[str, tuple[Need, tuple[tuple[int, int, int], ...]]] = {}
        self._cuts: dict[str, tuple[Need, tuple[Cut, ...]]] = {}
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

    def _bound(self, name: str) -> tuple[Need, Slots]:
        """What ``name``'s loss asks, and the bound, from scratch."""
        lay = self.layout
        leaving, exclude = lost_domains(lay, name)
        movable = [k for k in leaving if lay.doms[k].movable]
        sizes = [lay.doms[k].size(True) for k in movable]
        sets = distinct_sets([lay.allowed[k] for k in movable])
        steps = steps_of(lay, movable)
        last = dict(steps[0][4]) if steps else {}
        need = (len(sizes), max((m for m, _ in sizes), default=0), max((v for _, v in sizes), default=0), sets,
                steps, tuple(last[a] + 1 for a in sets))
        _, mx, vx, sets, _, _ = need
        own = slots_for(*lay.headroom(exclude), mx, vx) if exclude >= 0 else 0
        return need, tuple(self._slot_sum(mx, vx, a) - (own if a is None or exclude in a else 0) for a in sets)

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
                if (self._traces[name] is None and not is_sure(need, slots)
                        and not self._sure_by_size(name, need, slots)):
                    self._traces[name] = self._steps_taken(name, need, slots, None, [])[1]
            self._traced = lay.version
        base = lay.version
        bounds: dict[str, tuple[Need, Slots]] = {}
        traces: dict[str, Trace | None] = {}
        with lay.shifted(moves):
            after = [lay.headroom(j) for j in touched]
            self._trial = (base, touched, before, after)
            self._trial_sums.clear()
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
            bounds[name] = (need, changed_slots(need, slots, touched, before, after))
        need, slots = bounds[name]
        traces[name] = None
        if is_sure(need, slots) or self._sure_by_size(name, need, slots):
            return True
        if name in self._refusers and self._stranded_anyway(name, need):  # the likely ones only: cheap, not free
            return False
        ok, traces[name] = self._steps_taken(name, need, slots, None if inside else self._traces[name], touched)
        return ok

    def _sure_by_size(self, name: str, need: Need, slots: Slots) -> bool:
        """Whether the bound, taken in the units of each cut of ``name``'s
        placement (``cuts_of``) with what the steps before the cut may have
        taken, says every step finds a place: the steps of each cut up to one
        from which on all are sure (only for the sets of nodes for which the
        bound ``slots`` is short: the others are sure). No step is worked out."""
        x, free, room = self._room_of(name)
        short = {a for a, slot, ask in zip(need[3], slots, need[5]) if slot < ask}
        for _, m, vx, lowered, after, here in _made_for(self._cuts, name, need, cuts_of):
            # what the nodes but x have for the cut's units, less what the steps before may have taken
            have: dict[frozenset[int] | None, int] = {}
            own = slots_for(free, room, m, vx)
            if self._falls_short(here, short, have, m, vx, x, own, lowered):
                return False  # then the rest is not sure
            if not self._falls_short(after, short, have, m, vx, x, own, lowered):
                return True
        return True

    def _falls_short(self, asks, short, have, m: int, vx: int, x: int, own: int, lowered: int) -> bool:
        """Whether a set of ``asks`` ((set of nodes, steps)) that is in
        ``short`` has fewer places for domains of ``m`` MiB and ``vx`` vCPUs
        on the nodes but ``x`` (which has ``own``) than it asks, once
        ``lowered``; ``have`` keeps the places worked out."""
        for a, ask in asks:
            if a not in short:
                continue
            got = have.get(a)
            if got is None:
                got = have[a] = self._slot_sum(m, vx, a) - (own if a is None or x in a else 0) - lowered
            if got < ask:
                return True
        return False

    def _stranded_anyway(self, name: str, need: Need) -> bool:
        """Whether no placement at all, failover's or any other, could place
        every movable domain of ``name`` now: for some size, the domains at
        least that large (on both counts) outnumber the places the other
        nodes have for one that large (``floors_of``). Cheap, and what it
        says is sure; the placement itself (``_steps_taken``) says the rest."""
        _, free, room = self._room_of(name)
        for m, v, count in _made_for(self._floors, name, need, floors_of):
            if self._slot_sum(m, v, None) - slots_for(free, room, m, v) < count:
                return True
        return False

    def _room_of(self, name: str) -> tuple[int, int, int]:
        """(index, free MiB, free vCPUs) of node ``name`` (-1, -1, -1: aside)."""
        x = self.layout.index.get(name, -1)
        return (x, *self.layout.headroom(x)) if x >= 0 else (-1, -1, -1)

    def _steps_taken(
        self, name: str, need: Need, slots: Slots, trace: Trace | None, touched: list[int]
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
        promised = Promised(lay, exclude, new_m, new_v)
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
        self, s: int, m: int, vx: int, sets: list[tuple[frozenset[int] | None, int]], promised: Promised
    ) -> int:
        """The bound for the domains still to place from step ``s`` on (none
        larger than ``m`` MiB, nor wider than ``vx`` vCPUs), for the sets of
        nodes ``sets`` (each with its last step), with what the placement
        ``promised`` so far: how much it falls short for one of them (0:
        none, so every one of the domains will find a place; a set need only
        last until its last step). The sum over every node of the set is
        kept for the allocation as it is; the node lost and those promised
        something are then counted as they are for this placement
        (``Promised.change``)."""
        for allowed, last in sets:
            total = self._slot_sum(m, vx, allowed) + promised.change(m, vx, allowed)
            if total < last + 1 - s:
                return last + 1 - s - total
        return 0

    def _slot_sum(self, m: int, vx: int, allowed: frozenset[int] | None) -> int:
        """How many domains of ``m`` MiB and ``vx`` vCPUs the nodes of
        ``allowed`` (None: all) could take, each as it is now. The sums are
        kept for the allocation as it is; during a trial, those of the
        allocation before it are kept too, and the nodes the trial touches
        counted as they are now."""
        key = (m, vx, allowed)
        trial = self._trial
        if trial is not None:
            total = self._trial_sums.get(key)
            if total is not None:
                return total
        lay = self.layout
        version = lay.version if trial is None else trial[0]
        if self._sums_version != version:
            self._sums.clear()
            self._sums_version = version
        total = self._sums.get(key)
        change = 0
        if trial is not None:
            for j, (f0, r0), (f1, r1) in zip(trial[1], trial[2], trial[3]):
                if allowed is None or j in allowed:
                    change += slots_for(f1, r1, m, vx) - slots_for(f0, r0, m, vx)
        if total is None:
            usable, mem, vcap, vcpu = lay.usable, lay.mem, lay.vcap, lay.vcpu
            total = 0
            for j in range(lay.n) if allowed is None else allowed:
                free, room = usable[j] - mem[j], vcap[j] - vcpu[j]
                if free >= 0 and room >= 0:
                    total += min(free // m if m else ANY_SLOTS, room // vx if vx else ANY_SLOTS)
            self._sums[key] = total = total - change
        if trial is not None:
            self._trial_sums[key] = total + change
        return total + change

    def commit(self, moves: list[tuple[int, int]]) -> None:
        """``moves``, just allowed, are now done in the layout."""
        assert self._pending is not None and self._pending[0] == list(moves)
        self._bounds.update(self._pending[1])
        self._traces.update(self._pending[2])
        self._pending = None
