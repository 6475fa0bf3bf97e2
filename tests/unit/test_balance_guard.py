"""The N+1 guard's shortcuts: what they say is what the placement says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from havirt.plan.balance.bounds import floors_of, is_sure
from havirt.plan.balance.guard import Guard
from havirt.plan.balance.model import Layout
from havirt.plan.balance.nplus1 import verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from clusters import Shape, generate  # noqa: E402


def trials(layout: Layout, every: int = 1):
    """Each movable domain (one in ``every``) moved to each other node where
    it fits, for the time of a step: (its node, the target)."""
    for k in range(0, len(layout.doms), every):
        i = layout.where[k]
        if i < 0 or not layout.doms[k].movable:
            continue
        for j in layout.fitting(layout.dmem[k], layout.dvcpu[k], layout.allowed[k], range(layout.n)):
            if j != i:
                with layout.shifted([(k, j)]):
                    yield i, j


def test_floors_count_the_domains_at_least_that_large() -> None:
    # (MiB, vCPUs) of the steps; the rest of a step does not count
    steps = tuple((m, v, None, 0, ()) for m, v in [(8192, 2), (4096, 8), (4096, 2), (2048, 2), (1024, 1)])
    # (8192, 2) and (4096, 8): one domain each is at least that large on both
    # counts; (4096, 2): three; (2048, 2): four; (1024, 1): all five. (4096, 4)
    # gives the set of (4096, 8): not again
    assert floors_of(steps) == ((8192, 2, 1), (4096, 8, 1), (4096, 2, 3), (2048, 2, 4), (1024, 1, 5))
    assert floors_of(()) == ()


@pytest.mark.parametrize("nodes, domains, fill, seed", [(16, 250, 0.95, 2), (12, 200, 0.92, 0), (8, 100, 0.88, 1),
                                                       (8, 100, 0.85, 3)])
def test_stranded_anyway_only_where_the_placement_strands(nodes: int, domains: int, fill: float, seed: int) -> None:
    """Where ``Guard._stranded_anyway`` says that no placement could place a
    safe node's domains once a domain moved, failover's placement, computed
    afresh, strands one; and on these full clusters it does say so."""
    nodes, doms = generate(Shape("full", nodes, domains, fill=fill, vcpu_fill=0.9), seed)
    layout = Layout(nodes, doms)
    guard = Guard(layout, verdict(layout))
    sure = 0
    for i, j in trials(layout):
        for name in sorted(guard.safe - {layout.names[i], layout.names[j]}):
            need, _ = guard._bound(name)
            if guard._stranded_anyway(name, need):
                assert not guard.places_all(name)
                sure += 1
    assert sure > 0


@pytest.mark.parametrize("group", range(3))
def test_sure_by_size_only_where_the_placement_places_all(group: int) -> None:
    """Where ``Guard._sure_by_size`` says a safe node's domains all find a
    place once a domain moved, failover's placement, computed afresh, places
    them all; and on these tight clusters (on some, disks seen by a few
    nodes only) it says so where the first bound cannot."""
    sure = 0
    for seed in (2 * group, 2 * group + 1):
        shape = Shape("tight", 12, 180, fill=0.85 + 0.01 * seed, allowed_share=0.2 * (seed % 2),
                      allowed_nodes=(2, 5))
        nodes, doms = generate(shape, seed)
        layout = Layout(nodes, doms)
        guard = Guard(layout, verdict(layout))
        for _ in trials(layout, every=3):
            for name in sorted(guard.safe):
                need, slots = guard._bound(name)
                if not is_sure(need, slots) and guard._sure_by_size(name, need, slots):
                    assert guard.places_all(name)
                    sure += 1
    assert sure > 0
