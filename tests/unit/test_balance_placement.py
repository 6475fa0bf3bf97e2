"""Evacuation, failover and N+1: one placement rule; balance never makes N+1 worse."""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import pytest

from havirt.plan.balance import (
    BDomain,
    BNode,
    n_plus_1,
    placement,
    plan_balance,
    plan_evacuation,
    plan_failover,
    score,
)
from havirt.plan.balance.guard import Guard
from havirt.plan.balance.model import Layout
from havirt.plan.balance.nplus1 import verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from balance_reference import random_cluster, replay  # noqa: E402
from conftest import first_cluster  # noqa: E402

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
    nodes, doms = first_cluster(lambda nodes, doms: one_moves(Layout(nodes, doms)), 400 + seed,
                                allowed=0.3, fixed=0.05, restart=0.3, maintenance=0.1)
    layout = Layout(nodes, doms)
    guard = Guard(layout, verdict(layout))
    safe = set(guard.safe)
    for k, j in one_moves(layout):
        d = layout.doms[k]
        moved = [dataclasses.replace(x, node=layout.names[j]) if x.name == d.name else x for x in doms]
        after = verdict(Layout(nodes, moved))
        still = all(all(not layout.doms[layout.dindex[s.domain]].movable for s in after.nodes[x].stranded)
                    for x in safe)
        assert guard.allows([(k, j)]) == still


def one_moves(layout):
    """Every (domain, node) a movable domain fits on, other than its own."""
    return [(k, j) for k, d in enumerate(layout.doms) if layout.where[k] >= 0 and d.movable
            for j in layout.fitting(d.memory_mib, d.vcpus, layout.allowed[k], range(layout.n))
            if j != layout.where[k]]


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
def test_a_placement_replayed_is_the_placement(group: int) -> None:
    """The guard's placement after a move, worked out from the placement
    before it, is the placement computed afresh as far as it goes (the same
    winners with the same keys; the best key of the others it may keep as an
    upper bound), and gives its verdict."""
    changed = 0
    for seed in range(5 * group, 5 * group + 5):
        nodes, doms = generate(Shape("tight", 6, 40, fill=0.85), seed)
        layout = Layout(nodes, doms)
        guard = Guard(layout, verdict(layout))
        for name in sorted(guard.safe):
            need, slots = guard._bound(name)
            trace = guard._steps_taken(name, need, slots, None, [])[1]
            x = layout.index.get(name, -1)
            for k in range(len(layout.doms)):
                i = layout.where[k]
                for j in layout.fitting(layout.dmem[k], layout.dvcpu[k], layout.allowed[k], range(layout.n)):
                    if j == i or x in (i, j):
                        continue
                    layout.shift(k, j)
                    need, slots = guard._bound(name)
                    ok, again = guard._steps_taken(name, need, slots, trace, sorted({i, j}))
                    fresh_ok, fresh = guard._place(name)
                    layout.shift(k, i)
                    assert ok == fresh_ok
                    assert [t[:5] for t in again] == [t[:5] for t in fresh[:len(again)]]
                    assert all(a[5] >= f[5] for a, f in zip(again, fresh))
                    changed += [t[0] for t in again[:len(trace)]] != [t[0] for t in trace[:len(again)]]
    assert changed > 20


# -- the ranking by kind of node, and the guard on tight clusters of few kinds ----------


def kinds_cluster(seed: int, huge: bool = False) -> Layout:
    """A cluster of a few kinds of nodes, many alike and empty (ties), with
    domains crowded on the first nodes, some seeing their disks on a few
    nodes; ``huge``: nodes so large that one MiB more free does not show in
    the share of memory free (rounding)."""
    rng = random.Random(seed)
    kinds = [(16384, 8, 4.0), (32768, 16, 4.0), (32768, 16, 2.0)]
    if huge:
        kinds = [(2**60, 8, 4.0), (2**60 + 2**40, 8, 4.0)]
    nodes = [BNode(f"n{i:02d}", *rng.choice(kinds)) for i in range(rng.randint(6, 14))]
    names = [n.name for n in nodes]
    doms = []
    for k in range(rng.randint(10, 60)):
        allowed = frozenset(rng.sample(names, rng.randint(1, len(names)))) if rng.random() < 0.3 else None
        home = names[min(int(rng.expovariate(3.0 / len(names))), len(names) - 1)]
        doms.append(BDomain(f"d{k:02d}", home, rng.choice([512, 1024, 2048]) + (rng.randint(0, 3) if huge else 0),
                            rng.choice([1, 2, 4]), allowed=allowed))
    return Layout(nodes, doms)


@pytest.mark.parametrize("seed", range(60))
def test_the_ranking_by_kind_ranks_as_every_node_would(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Ranking.best`` gives ``best_target``'s answer (winner, its key, the
    runner-up's key) as a placement goes, allowed sets small and large."""
    rng = random.Random(seed)
    layout = kinds_cluster(seed, huge=seed % 4 == 3)
    monkeypatch.setattr(placement, "FEW_ALLOWED", rng.choice([0, 3, 16]))
    monkeypatch.setattr(placement, "KIND_MIN_NODES", 1)
    exclude = rng.choice([-1, *range(layout.n)])
    ranking = placement.Ranking(layout, exclude)
    assert ranking.kinds is not None
    for _ in range(40):
        allowed = None if rng.random() < 0.5 else frozenset(rng.sample(range(layout.n), rng.randint(1, layout.n)))
        m, v = rng.choice([0, 512, 1024, 4096, 9000]), rng.choice([0, 1, 2, 8])
        got = ranking.best(allowed, m, v)
        assert got == placement.best_target(layout, allowed, m, v, exclude, ranking.extra_m, ranking.extra_v)
        if got[0] >= 0:
            ranking.take(got[0], m, v)


def placed_now(layout: Layout) -> list[BDomain]:
    """The domains where ``layout`` has them now."""
    return [dataclasses.replace(d, node=layout.names[layout.where[k]]) if layout.where[k] >= 0 else d
            for k, d in enumerate(layout.doms)]


@pytest.mark.parametrize("seed", range(12))
def test_the_guard_answers_as_the_placement_would_on_tight_clusters(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """On tight clusters of few kinds of nodes where some disks are seen by
    two to five nodes (the bound is short for many nodes, and the guard
    works placements out step by step from the last ones), move after move:
    ``Guard.allows`` says yes exactly when failover, computed afresh, would
    still place every movable domain of every node whose loss was survivable.
    Placements rank nodes by kind (``placement.Ranking``), every domain or
    (some seeds) those with disks on few nodes too. On half the seeds the
    bound by cut (``Guard._sure_by_size``) is left out: more placements are
    worked out step by step."""
    rng = random.Random(seed)
    monkeypatch.setattr(placement, "KIND_MIN_NODES", 1)
    monkeypatch.setattr(placement, "FEW_ALLOWED", 16 if seed % 2 else 0)
    shape = Shape("tight-skewed", 12, 180, fill=0.8 + 0.01 * seed, allowed_share=0.3, allowed_nodes=(2, 5),
                  fixed_share=0.03, largest_first=False)
    nodes, doms = generate(shape, seed)
    nodes[-1] = dataclasses.replace(nodes[-1], maintenance=True)
    layout = Layout(nodes, doms)
    guard = Guard(layout, verdict(layout))
    worked_out = []
    steps_taken = guard._steps_taken
    guard._steps_taken = lambda *a: worked_out.append(1) or steps_taken(*a)  # type: ignore[method-assign]
    by_size = []
    sure_by_size = guard._sure_by_size
    if seed % 2:
        guard._sure_by_size = lambda *a: False  # type: ignore[method-assign]
    else:
        guard._sure_by_size = lambda *a: sure_by_size(*a) and not by_size.append(1)  # type: ignore[method-assign]
    answers = set()
    for _ in range(8):
        safe = set(guard.safe)
        cands = [(k, j) for k, d in enumerate(layout.doms) if layout.where[k] >= 0 and d.movable
                 for j in layout.fitting(layout.dmem[k], layout.dvcpu[k], layout.allowed[k], range(layout.n))
                 if j != layout.where[k]]
        allowed = []
        for k, j in rng.sample(cands, min(12, len(cands))):
            was = layout.where[k]
            layout.shift(k, j)
            after = placed_now(layout)
            layout.shift(k, was)
            fresh = verdict(Layout(nodes, after))
            still = all(all(not layout.doms[layout.dindex[s.domain]].movable for s in fresh.nodes[x].stranded)
                        for x in safe)
            got = guard.allows([(k, j)])
            assert got == still
            answers.add(got)
            if got:
                allowed.append((k, j))
        if not allowed:
            break
        k, j = rng.choice(allowed)
        assert guard.allows([(k, j)])
        layout.apply(k, j)
        guard.commit([(k, j)])
    assert len(worked_out) + len(by_size) > 50 and True in answers


def test_the_ranking_by_kind_sees_through_rounding() -> None:
    """On nodes so large that 1 MiB more or less free does not change the
    share of memory free, the node with less free memory but fewer vCPUs in
    use ranks first, though the ranking meets it after one that ranks below
    the runner-up."""
    u, half = 2**60, 2**59
    nodes = [BNode(x, u, 8, 4.0) for x in "abcd"]
    # free memory half + 2, + 1, + 0, - 1; vCPUs in use 4, 4, 8, 0
    doms = [BDomain(f"v{x}", x, u - half - df, vc) for x, df, vc in zip("abcd", (2, 1, 0, -1), (4, 4, 8, 0))]
    layout = Layout(nodes, doms)
    ranking = placement.Ranking(layout, -1)
    assert ranking.kinds is not None
    got = ranking.best(None, 0, 1)
    assert got == placement.best_target(layout, None, 0, 1, -1, {}, {})
    assert got[0] == 3
