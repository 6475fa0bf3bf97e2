"""Pure planning: balance, evacuation, failover and N+1.

Nothing here does I/O or reads the rest of havirt but ``havirt.rules``: the
caller gathers the facts (nodes that are up, the domains running on them),
calls one function, and gets plain data back.

Modules, in the order they build on each other:

* ``score``: the imbalance score (its :class:`Weights`), declared once, and
  its incremental form;
* ``model``: :class:`BNode`, :class:`BDomain` (the input) and ``Layout``,
  the compiled arrays with ``havirt.rules``'s fit test;
* ``plans``: what comes back (:class:`Move`, :class:`BalancePlan`,
  :class:`PlacementPlan`, :class:`Stranded`, :class:`NodeLoss`, :class:`NPlus1`);
* ``placement``: the one rule that places the domains of a node on the
  others, for :func:`plan_evacuation`, :func:`plan_failover` and N+1;
* ``nplus1``: :func:`n_plus_1`, and the guard that keeps balance from
  making it worse;
* ``search``: the best moves and swaps, over every domain and node;
  ``restore``: moves that make N+1 hold again; ``planner``: :func:`plan_balance`.
"""

from havirt.plan.balance.model import BDomain, BNode, score
from havirt.plan.balance.nplus1 import n_plus_1
from havirt.plan.balance.placement import plan_evacuation, plan_failover
from havirt.plan.balance.planner import plan_balance
from havirt.plan.balance.plans import BalancePlan, Move, NodeLoss, NPlus1, PlacementPlan, Stranded
from havirt.plan.balance.score import Weights

__all__ = [
    "BDomain",
    "BNode",
    "BalancePlan",
    "Move",
    "NPlus1",
    "NodeLoss",
    "PlacementPlan",
    "Stranded",
    "Weights",
    "n_plus_1",
    "plan_balance",
    "plan_evacuation",
    "plan_failover",
    "score",
]
