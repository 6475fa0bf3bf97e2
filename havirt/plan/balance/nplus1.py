"""N+1: would the cluster survive the loss of any one node?

For each node, its running domains are placed on the others exactly as
failover would place them (:func:`placement.place`, restart sizes); the node
"survives" when every one of them finds a place. ``guard.Guard`` keeps that
true, move after move, for the balance planner.
"""

from __future__ import annotations

from havirt.plan.balance.model import BDomain, BNode, Layout
from havirt.plan.balance.placement import place, placement_moves
from havirt.plan.balance.plans import NodeLoss, NPlus1
from havirt.plan.balance.score import DEFAULT_WEIGHTS, Weights


def n_plus_1(nodes: list[BNode], domains: list[BDomain], weights: Weights = DEFAULT_WEIGHTS) -> NPlus1:
    """For every node of ``nodes`` (those in maintenance too), what its loss
    would mean. ``domains`` are the running domains of those nodes;
    ``weights``: those of the score each restart reports."""
    return verdict(Layout(nodes, domains, weights))


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
    """The domains that would need a new home if ``name`` died (not those
    failover leaves down on purpose), and its index (-1: aside)."""
    i = layout.index.get(name, -1)
    if i >= 0:
        return sorted(k for k in layout.members[i] if layout.doms[k].restarted), i
    return [k for k, node in layout.aside if node == name and layout.doms[k].restarted], -1
