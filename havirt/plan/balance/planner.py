"""``cluster balance``: the plan of migrations that lowers the score.

The plan is built one move at a time, each the best the search finds from
the state the earlier moves leave (``search``: every movable domain to every
node where it fits, and every exchange of two domains between two nodes,
weighed exactly), so cutting the plan after k moves leaves what planning k
moves gives (a swap is never cut in two), and:

* the score is that of the ``weights`` given (``score.Weights``);
* the stop rule: a move is made only if it lowers the score by at least
  ``min_gain / number of nodes``; when no single move does, the best
  exchange of two domains between two nodes may (it must gain twice that;
  its first half may raise the score by no more than the exchange gains);
* value and cost: the move of the best value goes first, or the one that
  copies the least memory of those within ``CHEAP_WINDOW`` (2 %) of it; the
  value of a move is its gain, plus on small clusters the gain of the best
  move after it (look-ahead);
* no domain moves twice in a plan (a later run may move it again), and a
  domain that cannot move live (a container, ``BDomain.live``) never moves:
  balance would have to stop it (N+1 still counts it, restarted elsewhere);
* with ``keep_n_plus_1``, no move makes the loss of a node fatal that was
  not (``guard.Guard``), and moves that make a fatal loss survivable, where
  moves can, go first (``restore``), even if they raise the score.
"""

from __future__ import annotations

import math
from collections.abc import Set

from havirt.plan.balance.guard import Guard
from havirt.plan.balance.model import BDomain, BNode, Hop, Layout
from havirt.plan.balance.nplus1 import verdict
from havirt.plan.balance.plans import BalancePlan, Move
from havirt.plan.balance.restore import restore
from havirt.plan.balance.score import DEFAULT_WEIGHTS, Weights, score_of
from havirt.plan.balance.search import Single, scan_best
from havirt.plan.balance.swaps import scan_swaps

# Gains below this are rounding noise, whatever min_gain says.
TINY_GAIN = 1e-12
# How many best single moves (and swaps) a step weighs against each other;
# up to KEEP_MAX single moves when the guard refused all of the last ones.
KEEP = 12
KEEP_MAX = 96
# Cost: how much value a cheaper move may give up (a fraction of the best
# value) and still go first.
CHEAP_WINDOW = 0.02
# Look-ahead: a candidate's value counts the best move after it, for the
# LOOKAHEAD best candidates that gain at least (1 - LOOKAHEAD_WINDOW) times
# the best gain (and the cheapest of those). A scan costs about nodes x kinds
# of domains: the width is cut so that width x that is at most LOOKAHEAD_WORK
# (none on the largest clusters).
LOOKAHEAD = 10
LOOKAHEAD_WINDOW = 0.5
LOOKAHEAD_WORK = 40000


def plan_balance(
    nodes: list[BNode],
    domains: list[BDomain],
    max_moves: int | None,
    min_gain: float,
    keep_n_plus_1: bool = True,
    weights: Weights = DEFAULT_WEIGHTS,
) -> BalancePlan:
    """Plan migrations that lower the cluster score (see the module docstring).

    ``nodes`` are the nodes that are up (those in maintenance flagged so:
    they neither give nor take domains, and only count for N+1), and
    ``domains`` the domains running on them. At most ``max_moves`` moves
    (``None``: no limit). A move is planned only if it lowers the score by at
    least ``min_gain`` divided by the number of nodes not in maintenance
    (any float: <= 0 takes any gain, ``inf`` none), so one value means the
    same on 5 nodes and on 100. ``keep_n_plus_1``: guard and restore N+1.
    ``weights``: those of the score (``score.Weights``).
    Deterministic: the same input in any order gives the same plan.
    """
    if max_moves is not None and max_moves < 0:
        raise ValueError("max_moves must be >= 0 or None")
    if math.isnan(min_gain):
        raise ValueError("min_gain must be a number")
    layout = Layout(nodes, domains, weights)
    layout.moved |= {k for k, d in enumerate(layout.doms) if not d.live}   # never moved by balance
    base = (list(layout.mem), list(layout.vcpu))
    before = layout.score_now()
    n1_before = verdict(layout) if keep_n_plus_1 else None
    guard = Guard(layout, n1_before) if n1_before is not None else None
    thr = max(min_gain / layout.n, TINY_GAIN) if layout.n else math.inf
    steps = _plan(layout, guard, math.inf if max_moves is None else max_moves, thr)
    moves = _moves(layout, base, steps)
    n1_after = verdict(layout) if keep_n_plus_1 else None
    return BalancePlan(moves, before, moves[-1].score_after if moves else before, n1_before, n1_after)


def _plan(layout: Layout, guard: Guard | None, budget: float, thr: float) -> list[Hop]:
    """N+1 restored where moves can, then balance; again while balancing
    opened new ways to restore (each domain moves once: it ends).

    The plan for a ``budget`` is the unbounded plan cut where the budget
    ends: when its next step is a swap that does not fit, it ends there
    (the moves left are not spent on what the unbounded plan does later).
    """
    steps: list[Hop] = []
    while True:
        if guard is not None and guard.unsafe:
            steps += restore(layout, guard, budget - len(steps))
        more, cut = _balance(layout, guard, budget - len(steps), thr)
        steps += more
        if cut or not more or guard is None or not guard.unsafe:
            return steps


def _balance(layout: Layout, guard: Guard | None, budget: float, thr: float) -> tuple[list[Hop], bool]:
    """Single moves, best first, then swaps, until nothing gains ``thr``;
    and whether the ``budget`` cut it short."""
    steps: list[Hop] = []
    # the moves the guard refused, each with the number of steps made when it
    # did: asked again only once steps were made since (the verdict is the
    # layout's), when nothing else is left
    refused: dict[tuple[int, int], int] = {}
    work = layout.n * sum(len(layout.groups(i)) for i in range(layout.n))
    width = min(LOOKAHEAD, LOOKAHEAD_WORK // max(work, 1))
    keep = KEEP  # grows while the guard refuses every candidate: fewer scans
    while len(steps) < budget:
        cands = _best_single(layout, thr, refused.keys(), keep)
        if cands:
            for _, k, j in _choose(layout, cands, thr, width):
                if guard is None or guard.allows([(k, j)]):
                    steps += _do(layout, guard, [(k, j)])
                    keep = KEEP
                    break
                refused[(k, j)] = len(steps)
            else:
                keep = min(2 * keep, KEEP_MAX)
            continue
        pair = _best_swap(layout, guard, thr)
        if pair is not None:
            if len(steps) + 2 > budget:
                return steps, True  # a swap is never cut in two
            steps += _do(layout, guard, pair)
            continue
        stale = [move for move, made in refused.items() if made != len(steps)]
        if not stale:
            return steps, False
        for move in stale:  # the steps made since may have made them harmless
            del refused[move]
    return steps, True


def _choose(layout: Layout, cands: list[Single], thr: float, width: int) -> list[Single]:
    """``cands`` (best gain first) in the order to try them.

    First the move of the best value, or the cheapest (least memory) of
    those within ``CHEAP_WINDOW`` of it; the value of a move is its gain,
    plus, with a look-ahead ``width``, the gain of the best move after it
    (worked out for the ``width`` best candidates that gain at least
    ``1 - LOOKAHEAD_WINDOW`` times the best gain, and the cheapest of
    those). Then the others, best gain first.
    """
    if width:
        pool = [c for c in cands if c[0] >= cands[0][0] * (1.0 - LOOKAHEAD_WINDOW)]
        cheapest = min(pool, key=lambda c: layout.dmem[c[1]])
        pool = pool[:width] + ([cheapest] if cheapest not in pool[:width] else [])
        values = [c[0] + _follow_up(layout, c, thr) for c in pool]
    else:
        pool = cands
        values = [c[0] for c in pool]
    top = max(values)
    near = [q for q, v in enumerate(values) if v >= top * (1.0 - CHEAP_WINDOW)]
    pick = pool[min(near, key=lambda q: (layout.dmem[pool[q][1]], -values[q], q))]
    return [pick, *(c for c in cands if c is not pick)]


def _follow_up(layout: Layout, cand: Single, thr: float) -> float:
    """The gain of the best single move once ``cand`` is done (0 if below ``thr``)."""
    _, k, j = cand
    with layout.trial(k, j):
        nxt = _best_single(layout, thr, set())
    return nxt[0][0] if nxt and nxt[0][0] >= thr else 0.0


def _best_swap(layout: Layout, guard: Guard | None, thr: float) -> list[tuple[int, int]] | None:
    """The best swap that gains ``2 * thr`` and that the guard allows (of the
    ``KEEP`` best), if any."""
    for sw in scan_swaps(layout, 2 * thr, KEEP):
        pair = [(sw[1], sw[2]), (sw[3], sw[4])]
        if guard is None or guard.allows(pair):
            return pair
    return None


def _best_single(layout: Layout, thr: float, refused: Set[tuple[int, int]], keep: int = KEEP) -> list[Single]:
    """The ``keep`` best single moves that gain ``thr``, over every domain and node."""
    return scan_best(layout, thr, keep, refused)


def _do(layout: Layout, guard: Guard | None, pairs: list[tuple[int, int]]) -> list[Hop]:
    """Make the moves in the layout (the guard, if any, allowed them)."""
    steps = []
    for k, j in pairs:
        steps.append((k, layout.where[k], j))
        layout.apply(k, j)
    if guard is not None:
        guard.commit(pairs)
    return steps


def _moves(layout: Layout, base: tuple[list[int], list[int]], steps: list[Hop]) -> list[Move]:
    """The steps as :class:`Move` records, each with the exact score after it."""
    mem, vcpu = list(base[0]), list(base[1])
    moves = []
    for k, i, j in steps:
        m, v = layout.dmem[k], layout.dvcpu[k]
        mem[i] -= m
        vcpu[i] -= v
        mem[j] += m
        vcpu[j] += v
        score = score_of(layout.usable, layout.cpus, mem, vcpu, layout.weights)
        moves.append(Move(layout.doms[k].name, layout.names[i], layout.names[j], m, score))
    return moves
