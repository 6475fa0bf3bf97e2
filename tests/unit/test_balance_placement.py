"""Evacuation, failover and N+1: one placement rule; balance never makes N+1 worse."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from havirt.balance import BDomain, BNode, n_plus_1, plan_balance, plan_evacuation, plan_failover, score
from havirt.balance.model import Layout
from havirt.balance.guard import Guard
from havirt.balance.nplus1 import verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from balance_reference import random_cluster, replay  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from clusters import Shape, generate  # noqa: E402


def without(nodes: list[BNode], name: str) -> list[BNode]:
    return [n for n in nodes if n.name != name]


# -- evacuation -------------------------------------------------------------------


def test_evacuation_consumes_capacity_as_it_plans() -> None:
    nodes = [BNode("src", 10000, 8, 4.0), BNode("t1", 1500, 8, 4.0), BNode("t2", 1500, 8, 4.0)]
    doms = [BDomain(f"d{k}", "src", 1000, 1) for k in range(3)]
    plan = plan_evacuation(nodes, doms, "src")
    assert [(m.domain, m.target) for m in plan.moves] == [("d0", "t1"), ("d1", "t2")]
    assert plan.blocking == [("d2", "needs 1000 MiB, most free on an eligible node is 500 MiB (t1)")]
    assert (plan.stranded[0].memory_mib, plan.stranded[0].vcpus) == (1000, 1)
    assert plan.memory_mib == 2000
    replay(nodes, doms, plan.moves, source="src")


def test_evacuation_largest_first_to_the_emptiest() -> None:
    nodes = [BNode("src", 64000, 16, 4.0), BNode("t1", 16000, 8, 4.0), BNode("t2", 16000, 8, 4.0)]
    doms = [BDomain("small", "src", 1000, 1), BDomain("big", "src", 8000, 2),
            BDomain("mid", "src", 4000, 2), BDomain("other", "t1", 2000, 1)]
    plan = plan_evacuation(nodes, doms, "src")
    assert [(m.domain, m.target) for m in plan.moves] == [("big", "t2"), ("mid", "t1"), ("small", "t1")]
    assert plan.blocking == []
    after = replay(nodes, doms, plan.moves, source="src")
    assert plan.score_before == pytest.approx(score(without(nodes, "src"), doms[3:]))
    assert plan.score_after == pytest.approx(score(without(nodes, "src"), [d for d in after if d.node != "src"]))


def test_evacuation_fixed_domains_disks_and_vcpus_say_why() -> None:
    nodes = [BNode("src", 10000, 8, 4.0), BNode("t1", 10000, 2, 2.0), BNode("t2", 10000, 8, 4.0),
             BNode("m", 10000, 8, 4.0, maintenance=True)]
    doms = [BDomain("busy", "t2", 6000, 4), BDomain("x", "t1", 1000, 3),
            BDomain("maint", "src", 1000, 1, movable=False),
            BDomain("noxml", "src", 1000, 1, movable=False, why_fixed="no usable XML in conf/"),
            BDomain("pinned", "src", 1000, 1, allowed=frozenset({"src", "t2"})),
            BDomain("stuck", "src", 1000, 1, allowed=frozenset({"src", "m"})),
            BDomain("wide", "src", 1000, 5, allowed=frozenset({"t1"}))]
    plan = plan_evacuation(nodes, doms, "src")
    assert [(m.domain, m.target) for m in plan.moves] == [("pinned", "t2")]
    assert dict(plan.blocking) == {
        "maint": "in maintenance (not movable)",
        "noxml": "no usable XML in conf/ (not movable)",
        "stuck": "its disks are visible on no eligible node (allowed: m, src)",
        "wide": "needs 5 vCPUs, most vCPU room on an eligible node with 1000 MiB free is 1 "
                "(t1: 3 vCPUs on 2 CPUs, max ratio 2)",
    }


def test_evacuation_unknown_source_and_lonely_node() -> None:
    nodes = [BNode("src", 10000, 8, 4.0)]
    with pytest.raises(ValueError):
        plan_evacuation(nodes, [], "nope")
    plan = plan_evacuation(nodes, [BDomain("x", "src", 1, 1)], "src")
    assert plan.moves == [] and plan.blocking == [("x", "no other node is available")]


# -- failover and N+1: the same placement ----------------------------------------------


def test_failover_uses_restart_sizes_and_needs_no_source_node() -> None:
    nodes = [BNode("t1", 4000, 8, 4.0), BNode("t2", 4000, 8, 4.0)]
    doms = [BDomain("grows", "dead", 1000, 1, restart_memory_mib=3000, restart_vcpus=2),
            BDomain("same", "dead", 2000, 1), BDomain("here", "t1", 500, 1)]
    plan = plan_failover(nodes, doms, "dead")
    assert [(m.domain, m.source, m.target, m.memory_mib) for m in plan.moves] == [
        ("grows", "dead", "t2", 3000), ("same", "dead", "t1", 2000)]
    assert plan.stranded == []
    live = plan_evacuation([*nodes, BNode("dead", 4000, 8, 4.0)], doms, "dead")
    assert [(m.domain, m.memory_mib) for m in live.moves] == [("same", 2000), ("grows", 1000)]


@pytest.mark.parametrize("seed", range(40))
def test_n_plus_1_says_exactly_what_failover_would_do(seed: int) -> None:
    nodes, doms = random_cluster(seed, allowed=0.2, fixed=0.05, maintenance=0.15, restart=0.3)
    verdict_ = n_plus_1(nodes, doms)
    assert list(verdict_.nodes) == sorted(n.name for n in nodes)
    for n in nodes:
        loss = verdict_.nodes[n.name]
        fo = plan_failover(without(nodes, n.name), doms, n.name)
        assert list(loss.restarts) == fo.moves
        assert list(loss.stranded) == fo.stranded
        assert loss.survives == (not fo.stranded)
        assert loss.missing_mib == sum(d.size(True)[0] for d in doms if d.name in {s.domain for s in fo.stranded})
        replay(nodes, doms, loss.restarts, restart=True, source=n.name)
    assert verdict_.ok == (not verdict_.failing)


def test_a_cluster_that_survives_the_loss_of_any_node() -> None:
    nodes = [BNode(f"n{i}", 16384, 8, 4.0) for i in range(3)]
    doms = [BDomain(f"d{i}{k}", f"n{i}", 2048, 2) for i in range(3) for k in range(3)]
    v = n_plus_1(nodes, doms)
    assert v.ok and v.failing == []
    assert [(m.domain, m.target) for m in v.nodes["n0"].restarts] == [
        ("d00", "n1"), ("d01", "n2"), ("d02", "n1")]
    assert v.as_dict()["nodes"]["n1"]["survives_loss"] is True


def test_a_cluster_that_does_not_and_says_why() -> None:
    nodes = [BNode("a", 16384, 1, 4.0), BNode("b", 16384, 8, 4.0), BNode("c", 16384, 4, 2.0)]
    doms = [BDomain("big", "a", 12288, 2), BDomain("small", "a", 2048, 1),
            BDomain("b1", "b", 8192, 2), BDomain("c1", "c", 6144, 3),
            BDomain("wide", "b", 1024, 2, restart_vcpus=4)]
    v = n_plus_1(nodes, doms)
    assert v.failing == ["a", "b"] and not v.ok
    a = v.nodes["a"]
    assert [s.domain for s in a.stranded] == ["big"]
    assert a.stranded[0].reason == "needs 12288 MiB, most free on an eligible node is 10240 MiB (c)"
    assert (a.missing_mib, a.missing_vcpus) == (12288, 2)
    assert [(m.domain, m.target) for m in a.restarts] == [("small", "c")]
    b = v.nodes["b"]
    assert [(s.domain, s.memory_mib, s.vcpus) for s in b.stranded] == [("wide", 1024, 4)]
    assert b.stranded[0].reason == ("needs 4 vCPUs, most vCPU room on an eligible node with 1024 MiB free is 3 "
                                    "(c: 5 vCPUs on 4 CPUs, max ratio 2)")
    assert v.nodes["c"].survives


def test_nodes_in_maintenance_count_but_take_nothing() -> None:
    nodes = [BNode("a", 8192, 8, 4.0), BNode("b", 8192, 8, 4.0), BNode("m", 8192, 8, 4.0, maintenance=True)]
    doms = [BDomain("x", "m", 4096, 1), BDomain("y", "a", 6144, 1), BDomain("z", "b", 6144, 1)]
    v = n_plus_1(nodes, doms)
    assert v.nodes["m"].stranded[0].domain == "x"
    assert v.nodes["a"].stranded[0].reason == "needs 6144 MiB, most free on an eligible node is 2048 MiB (b)"


# -- balance and N+1 ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(25))
def test_balance_never_makes_n_plus_1_worse(seed: int) -> None:
    """At every prefix of the plan, no node whose loss was survivable has
    become fatal (the failover placement of every prefix, computed afresh)."""
    nodes, doms = random_cluster(300 + seed, allowed=0.2, fixed=0.05, restart=0.3)
    plan = plan_balance(nodes, doms, None, 0.005)
    fatal = set(plan.n_plus_1_before.failing)
    now = doms
    for move in plan.moves:
        now = replay(nodes, now, [move])
        assert set(n_plus_1(nodes, now).failing) <= fatal
    assert plan.n_plus_1_after == n_plus_1(nodes, now)


@pytest.mark.parametrize("seed", range(40))
def test_the_guard_answers_as_the_placement_would(seed: int) -> None:
    """``Guard.allows`` (a bound, and the placement only when the bound is
    short) says yes exactly when every safe node stays safe."""
    nodes, doms = random_cluster(400 + seed, allowed=0.3, fixed=0.05, restart=0.3, maintenance=0.1)
    layout = Layout(nodes, doms)
    guard = Guard(layout, verdict(layout))
    safe = set(guard.safe)
    for k, d in enumerate(layout.doms):
        if layout.where[k] < 0 or not d.movable:
            continue
        for j in layout.fitting(d.memory_mib, d.vcpus, layout.allowed[k], range(layout.n)):
            if j == layout.where[k]:
                continue
            moved = [dataclasses.replace(x, node=layout.names[j]) if x.name == d.name else x for x in doms]
            after = verdict(Layout(nodes, moved))
            still = all(all(not layout.doms[layout.dindex[s.domain]].movable for s in after.nodes[x].stranded)
                        for x in safe)
            assert guard.allows([(k, j)]) == still


def test_restore_fixes_a_loss_that_moves_can_fix() -> None:
    # c's loss strands its 6 GiB domain: a and b have 5 GiB free each, enough
    # in all but not in one piece. Moving a 1 GiB domain from a to b (not to c:
    # then a's loss would be fatal) makes the piece; balance would not do it
    nodes = [BNode(x, 16384, 16, 4.0) for x in "abc"]
    doms = [*(BDomain(f"{x}{k}", x, 2048, 1) for x in "ab" for k in range(5)),
            BDomain("a5", "a", 1024, 1), BDomain("b5", "b", 1024, 1),
            BDomain("c1", "c", 6144, 1), BDomain("c2", "c", 4096, 1)]
    plan = plan_balance(nodes, doms, None, 0.03)
    assert plan.n_plus_1_before.failing == ["c"]
    assert (plan.moves[0].domain, plan.moves[0].target) == ("a5", "b")
    assert plan.moves[0].score_after > plan.score_before  # N+1 first
    assert plan.n_plus_1_after.ok
    replay(nodes, doms, plan.moves)
    # without N+1, balance moves a5 to c instead: c's loss is survivable, a's now is not
    off = plan_balance(nodes, doms, None, 0.03, keep_n_plus_1=False)
    assert [(m.domain, m.target) for m in off.moves] == [("a5", "c")] and off.n_plus_1_after is None
    assert n_plus_1(nodes, replay(nodes, doms, off.moves)).failing == ["a"]


def test_no_move_can_fix_a_cluster_too_full_to_lose_a_node() -> None:
    # 3 x 16 GiB, 36 GiB used: any node's loss leaves 32 GiB for 36
    nodes = [BNode(x, 16384, 16, 4.0) for x in "abc"]
    doms = [BDomain(f"{x}{k}", x, 4096, 1) for x in "abc" for k in range(3)]
    plan = plan_balance(nodes, doms, None, 0.03)
    assert plan.moves == [] and plan.n_plus_1_after.failing == ["a", "b", "c"]
    assert plan.n_plus_1_after.nodes["a"].missing_mib == 4096


@pytest.mark.parametrize("seed", range(2))
def test_the_guard_costs_little_when_n_plus_1_holds(seed: int) -> None:
    nodes, doms = generate(Shape("roomy", 12, 150), seed)
    on = plan_balance(nodes, doms, None, 0.03)
    off = plan_balance(nodes, doms, None, 0.03, keep_n_plus_1=False)
    assert on.n_plus_1_before.ok and on.n_plus_1_after.ok
    assert on.moves == off.moves


@pytest.mark.parametrize("group", range(8))
def test_a_placement_rechecked_is_the_placement(group: int) -> None:
    """When the guard's re-check of a placement on the nodes a move touched
    says it holds, placing afresh after the move gives the same winners,
    with the same keys (the rest it keeps as upper bounds)."""
    held = 0
    for seed in range(5 * group, 5 * group + 5):
        nodes, doms = generate(Shape("tight", 6, 40, fill=0.85), seed)
        layout = Layout(nodes, doms)
        guard = Guard(layout, verdict(layout))
        for name in sorted(guard.safe):
            trace = guard._place(name)[1]
            for k in range(len(layout.doms)):
                i = layout.where[k]
                for j in layout.fitting(layout.dmem[k], layout.dvcpu[k], layout.allowed[k], range(layout.n)):
                    if j == i or name in (layout.names[i], layout.names[j]):
                        continue
                    layout.shift(k, j)
                    again = guard._recheck(trace, sorted({i, j}))
                    fresh = guard._place(name)[1]
                    layout.shift(k, i)
                    if again is not None:
                        held += 1
                        assert [t[:5] for t in again] == [t[:5] for t in fresh]
                        assert all(a[5] >= f[5] for a, f in zip(again, fresh))
    assert held > 20
