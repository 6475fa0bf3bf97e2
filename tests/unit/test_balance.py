"""Unit tests for havirt.balance: score math, hard limits, plans, evacuation."""

from __future__ import annotations

import math
import random

import pytest

from havirt.balance import (
    BDomain,
    BNode,
    BalancePlan,
    Move,
    _Cluster,
    _collapse,
    plan_balance,
    plan_evacuation,
    plan_greedy,
    score,
)

# --------------------------------------------------------------------------
# helpers


def replay(nodes: list[BNode], domains: list[BDomain], moves: list[Move], *, source: str | None = None) -> list[BDomain]:
    """Execute ``moves`` in order, asserting every hard limit at every step.

    Returns the domains where they end. ``source`` (evacuation) is never a target
    and is left out of the score each move reports.
    """
    by_node = {n.name: n for n in nodes}
    where = {d.name: d.node for d in domains}
    dom = {d.name: d for d in domains}
    for mv in moves:
        d = dom[mv.domain]
        assert d.movable, f"{d.name} is not movable"
        assert where[d.name] == mv.source, f"{d.name} is not on {mv.source}"
        assert mv.target != mv.source and mv.target != source
        assert mv.memory_mib == d.memory_mib
        if d.allowed is not None:
            assert mv.target in d.allowed, f"{d.name} may not run on {mv.target}"
        t = by_node[mv.target]
        mem = sum(x.memory_mib for x in domains if where[x.name] == t.name)
        vcpus = sum(x.vcpus for x in domains if where[x.name] == t.name)
        assert mem + d.memory_mib <= t.usable_mib, f"{mv.target} would hold {mem + d.memory_mib} MiB"
        assert (vcpus + d.vcpus) / t.cpus <= t.max_ratio, f"{mv.target} vCPU ratio exceeded"
        where[d.name] = mv.target
        now = [BDomain(x.name, where[x.name], x.memory_mib, x.vcpus, x.movable, x.allowed) for x in domains]
        scored = [n for n in nodes if n.name != source]
        assert mv.score_after == pytest.approx(
            score(scored, [x for x in now if x.node != source]), abs=1e-9
        )
    return [BDomain(x.name, where[x.name], x.memory_mib, x.vcpus, x.movable, x.allowed) for x in domains]


def chunky_cluster(seed: int) -> tuple[list[BNode], list[BDomain]]:
    """A small skewed cluster whose domains are large next to the nodes."""
    rng = random.Random(seed)
    n = rng.randint(3, 10)
    nodes = [
        BNode(f"n{i:02d}", rng.choice([32768, 65536, 131072]), rng.choice([16, 32, 64]), 4.0) for i in range(n)
    ]
    doms: list[BDomain] = []
    used = [0] * n
    vused = [0] * n
    for k in range(n * 6):
        m = rng.choice([1024, 2048, 4096, 8192])
        v = rng.choice([1, 2, 4, 8])
        allowed = None
        if rng.random() < 0.15:
            allowed = frozenset(rng.sample([x.name for x in nodes], rng.randint(1, n)))
        for _ in range(20):
            i = min(int(rng.expovariate(3.0 / n)), n - 1)
            if allowed is not None and nodes[i].name not in allowed:
                continue
            if used[i] + m <= nodes[i].usable_mib and vused[i] + v <= nodes[i].cpus * 4:
                break
        else:
            continue
        used[i] += m
        vused[i] += v
        doms.append(BDomain(f"d{k:03d}", nodes[i].name, m, v, movable=rng.random() > 0.03, allowed=allowed))
    return nodes, doms


def fleet_cluster(seed: int, n_nodes: int = 20, n_domains: int = 400) -> tuple[list[BNode], list[BDomain]]:
    """A skewed cluster like a real fleet: many domains, small next to the nodes."""
    rng = random.Random(seed)
    nodes = []
    for k in range(n_nodes):
        mem, cpus = rng.choice([(131072, 32), (196608, 48), (262144, 64), (393216, 96)])
        nodes.append(BNode(f"node{k:03d}", mem, cpus, 4.0))
    names = [n.name for n in nodes]
    used = [0] * n_nodes
    vused = [0] * n_nodes
    doms: list[BDomain] = []
    for k in range(n_domains):
        m = rng.choice([1024, 2048, 2048, 4096, 4096, 8192, 16384])
        v = rng.choice([1, 2, 2, 4, 8])
        allowed = None
        if rng.random() < 0.15:
            allowed = frozenset(rng.sample(names, rng.randint(3, n_nodes)))
        for _ in range(50):
            i = min(int(rng.expovariate(3.0 / n_nodes)), n_nodes - 1)
            if allowed is not None and names[i] not in allowed:
                continue
            if used[i] + m <= nodes[i].usable_mib and vused[i] + v <= nodes[i].cpus * 4:
                break
        else:
            continue
        used[i] += m
        vused[i] += v
        doms.append(BDomain(f"vm{k:04d}", names[i], m, v, movable=rng.random() > 0.02, allowed=allowed))
    return nodes, doms


def swap_cluster() -> tuple[list[BNode], list[BDomain]]:
    """Two nodes where every single move makes things worse but a swap is perfect."""
    nodes = [BNode("a", 10000, 4, 4.0), BNode("b", 10000, 4, 4.0)]
    doms = [
        BDomain("a1", "a", 3000, 1),
        BDomain("a2", "a", 3000, 1),
        BDomain("b1", "b", 2000, 1),
        BDomain("b2", "b", 2000, 1),
    ]
    return nodes, doms


# --------------------------------------------------------------------------
# score


def test_score_two_nodes_by_hand() -> None:
    nodes = [BNode("a", 1000, 4, 4.0), BNode("b", 1000, 4, 4.0)]
    doms = [BDomain("x", "a", 500, 4)]
    # free fractions 0.5, 1.0 -> pstdev 0.25; ratios 1.0, 0.0 -> pstdev 0.5
    assert score(nodes, doms) == pytest.approx(0.25 + 0.5 * 0.5)


def test_score_three_nodes_and_overcommit() -> None:
    nodes = [BNode("a", 1000, 2, 4.0), BNode("b", 2000, 4, 4.0), BNode("c", 4000, 8, 4.0)]
    doms = [BDomain("x", "a", 1000, 2), BDomain("y", "b", 1000, 4)]
    # fractions 0, 0.5, 1 -> sqrt(1/6); ratios 1, 1, 0 -> sqrt(2/9)
    assert score(nodes, doms) == pytest.approx(math.sqrt(1 / 6) + 0.5 * math.sqrt(2 / 9))
    over = [BDomain("x", "a", 1500, 0)]
    # fractions -0.5, 1.0, 1.0 (over its cap is a negative free fraction)
    fr = [-0.5, 1.0, 1.0]
    mean = sum(fr) / 3
    assert score(nodes, over) == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in fr) / 3))


def test_score_trivial_and_invalid() -> None:
    assert score([], []) == 0.0
    assert score([BNode("a", 1000, 4, 4.0)], [BDomain("x", "a", 900, 16)]) == 0.0
    with pytest.raises(ValueError):
        score([BNode("a", 1000, 4, 4.0)], [BDomain("x", "zz", 1, 1)])
    with pytest.raises(ValueError):
        plan_balance([BNode("a", 0, 4, 4.0)], [])


# --------------------------------------------------------------------------
# hard limits


@pytest.mark.parametrize("planner", [plan_balance, plan_greedy])
def test_memory_limit_respected(planner) -> None:
    # moving "big" to b would balance memory perfectly, but b cannot hold it
    nodes = [BNode("a", 10000, 8, 4.0), BNode("b", 4000, 8, 4.0)]
    doms = [BDomain("big", "a", 6000, 1), BDomain("s1", "a", 500, 1), BDomain("s2", "a", 500, 1)]
    plan = planner(nodes, doms)
    assert all(m.domain != "big" for m in plan.moves)
    replay(nodes, doms, plan.moves)


@pytest.mark.parametrize("planner", [plan_balance, plan_greedy])
def test_vcpu_ratio_respected(planner) -> None:
    # b has plenty of memory but only 2 vCPUs of room (1 CPU at ratio 2.0)
    nodes = [BNode("a", 10000, 2, 8.0), BNode("b", 10000, 1, 2.0)]
    doms = [BDomain("wide", "a", 4000, 4), BDomain("w2", "a", 4000, 4)]
    plan = planner(nodes, doms)
    assert plan.moves == []
    replay(nodes, doms, plan.moves)


@pytest.mark.parametrize("planner", [plan_balance, plan_greedy])
def test_allowed_and_movable_respected(planner) -> None:
    nodes = [BNode("a", 10000, 8, 4.0), BNode("b", 10000, 8, 4.0), BNode("c", 10000, 8, 4.0)]
    doms = [
        BDomain("pinned", "a", 3000, 2, allowed=frozenset({"a", "c"})),
        BDomain("maint", "a", 3000, 2, movable=False),
        BDomain("free", "a", 3000, 2),
    ]
    plan = planner(nodes, doms)
    assert all(m.domain != "maint" for m in plan.moves)
    assert all(m.target != "b" for m in plan.moves if m.domain == "pinned")
    assert {m.domain for m in plan.moves} == {"pinned", "free"}
    replay(nodes, doms, plan.moves)


def test_moving_off_an_overloaded_node_is_fine() -> None:
    nodes = [BNode("a", 4000, 2, 4.0), BNode("b", 5000, 8, 4.0)]
    doms = [BDomain("x", "a", 3000, 6), BDomain("y", "a", 3000, 6)]  # a is over memory and ratio
    plan = plan_balance(nodes, doms)
    assert [(m.domain, m.target) for m in plan.moves] == [("x", "b")]  # b has room for one only
    replay(nodes, doms, plan.moves)


@pytest.mark.parametrize("seed", range(8))
def test_random_plans_respect_every_limit(seed: int) -> None:
    nodes, doms = chunky_cluster(seed)
    for planner in (plan_balance, plan_greedy):
        plan = planner(nodes, doms)
        replay(nodes, doms, plan.moves)
        assert plan.score_before == pytest.approx(score(nodes, doms))


# --------------------------------------------------------------------------
# stopping: balanced cluster, second run, max_moves, determinism


def test_balanced_cluster_gives_empty_plan() -> None:
    nodes = [BNode(f"n{i}", 16384, 8, 4.0) for i in range(4)]
    doms = [BDomain(f"d{i}{k}", f"n{i}", 2048, 2) for i in range(4) for k in range(3)]
    for planner in (plan_balance, plan_greedy):
        plan = planner(nodes, doms)
        assert plan == BalancePlan([], plan.score_before, plan.score_before)
        assert plan.score_before == pytest.approx(0.0)


def test_gain_below_min_gain_is_not_worth_a_move() -> None:
    nodes = [BNode("a", 100000, 800, 4.0), BNode("b", 100000, 800, 4.0)]
    doms = [BDomain("x", "a", 900, 1), BDomain("y", "a", 900, 1)]
    # fractions 0.982, 1.0 -> 0.009; ratios 0.0025, 0 -> 0.00125 / 2: moving x would gain 0.009625
    assert score(nodes, doms) == pytest.approx(0.009625)
    assert plan_balance(nodes, doms).moves == []
    assert plan_greedy(nodes, doms).moves == []
    plan = plan_balance(nodes, doms, min_gain=0.005)
    assert [(m.domain, m.target) for m in plan.moves] == [("x", "b")]
    assert plan.score_after == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(6))
def test_second_run_is_empty(seed: int) -> None:
    for nodes, doms in (chunky_cluster(seed), fleet_cluster(seed, 12, 150)):
        for planner in (plan_balance, plan_greedy):
            plan = planner(nodes, doms)
            after = replay(nodes, doms, plan.moves)
            again = planner(nodes, after)
            assert again.moves == []
            assert again.score_before == pytest.approx(plan.score_after)


def test_second_run_is_empty_after_a_swap() -> None:
    nodes, doms = swap_cluster()
    plan = plan_balance(nodes, doms)
    assert plan.moves
    assert plan_balance(nodes, replay(nodes, doms, plan.moves)).moves == []


@pytest.mark.parametrize("seed", range(4))
def test_max_moves_respected(seed: int) -> None:
    nodes, doms = chunky_cluster(seed + 100)
    full = plan_balance(nodes, doms)
    for cap in (0, 1, 2, 3):
        for planner in (plan_balance, plan_greedy):
            plan = planner(nodes, doms, max_moves=cap)
            assert len(plan.moves) <= cap
            replay(nodes, doms, plan.moves)
    assert plan_balance(nodes, doms, max_moves=len(full.moves) + 5).moves == full.moves


def test_max_moves_never_splits_a_swap() -> None:
    nodes, doms = swap_cluster()
    assert plan_balance(nodes, doms, max_moves=1).moves == []
    assert len(plan_balance(nodes, doms, max_moves=2).moves) == 2
    with pytest.raises(ValueError):
        plan_balance(nodes, doms, max_moves=-1)


def test_deterministic_and_order_independent() -> None:
    nodes, doms = chunky_cluster(7)
    first = plan_balance(nodes, doms)
    rng = random.Random(1)
    n2, d2 = list(nodes), list(doms)
    rng.shuffle(n2)
    rng.shuffle(d2)
    assert plan_balance(n2, d2) == first
    assert plan_balance(nodes, doms) == first
    # ties broken by names: identical targets, the first by name wins
    nodes = [BNode("c", 10000, 8, 4.0), BNode("b", 10000, 8, 4.0), BNode("a", 20000, 16, 4.0)]
    doms = [BDomain(f"d{k}", "a", 2500, 2) for k in range(8)]
    plan = plan_balance(nodes, doms)
    assert plan.moves[0].domain == "d0" and plan.moves[0].target == "b"


# --------------------------------------------------------------------------
# quality against the greedy baseline


def test_swap_beats_greedy_when_no_single_move_helps() -> None:
    nodes, doms = swap_cluster()
    greedy = plan_greedy(nodes, doms)
    assert greedy.moves == []  # every single move makes the score worse
    plan = plan_balance(nodes, doms)
    assert [(m.domain, m.source, m.target) for m in plan.moves] == [("a1", "a", "b"), ("b1", "b", "a")]
    assert plan.score_after == pytest.approx(0.0)
    assert plan.score_after < greedy.score_after - 0.05
    replay(nodes, doms, plan.moves)


def test_swap_is_ordered_so_the_first_move_fits() -> None:
    # b is too full to take the 3000 MiB domain first: the 2000 must leave first
    nodes = [BNode("a", 10000, 4, 4.0), BNode("b", 5000, 2, 4.0)]
    doms = [
        BDomain("a1", "a", 3000, 1),
        BDomain("a2", "a", 3000, 1),
        BDomain("a3", "a", 1000, 1),
        BDomain("b1", "b", 2000, 1),
        BDomain("b2", "b", 2500, 1),
    ]
    plan = plan_balance(nodes, doms)
    assert [(m.domain, m.source, m.target) for m in plan.moves] == [("b1", "b", "a"), ("a3", "a", "b")]
    replay(nodes, doms, plan.moves)
    assert plan_greedy(nodes, doms).moves == []
    assert plan.score_after < score(nodes, doms) - 0.02


def test_chains_are_collapsed() -> None:
    nodes = [BNode("a", 10000, 8, 4.0), BNode("b", 10000, 8, 4.0), BNode("c", 10000, 8, 4.0)]
    doms = [BDomain("x", "a", 1000, 1), BDomain("y", "b", 1000, 1)]
    cl = _Cluster(nodes, doms)
    base = cl.snapshot()
    # x: a->b, y: b->c, x: b->c  ==>  x: a->c, y: b->c
    steps = [("x", 0, 1), ("y", 1, 2), ("x", 1, 2)]
    assert _collapse(cl, base, steps) == [("y", 1, 2), ("x", 0, 2)]
    # there and back again disappears
    assert _collapse(cl, base, [("x", 0, 1), ("y", 1, 2), ("x", 1, 0)]) == [("y", 1, 2)]


def test_collapse_keeps_the_chain_when_the_shortcut_does_not_fit() -> None:
    nodes = [BNode("a", 10000, 8, 4.0), BNode("b", 10000, 8, 4.0), BNode("c", 1000, 8, 4.0)]
    doms = [BDomain("x", "a", 1000, 1), BDomain("y", "c", 1000, 1)]
    cl = _Cluster(nodes, doms)
    # c is full until y leaves; x: a->b, y: c->b, x: b->c cannot become x: a->c before y left,
    # but can after it
    steps = [("x", 0, 1), ("y", 2, 1), ("x", 1, 2)]
    assert _collapse(cl, cl.snapshot(), steps) == [("y", 2, 1), ("x", 0, 2)]
    # and when c is always full, nothing changes
    steps = [("x", 0, 1), ("x", 1, 0)]
    assert _collapse(cl, cl.snapshot(), steps) == []


@pytest.mark.parametrize("seed", range(12))
def test_fleet_clusters_at_least_as_good_as_greedy_in_no_more_moves(seed: int) -> None:
    nodes, doms = fleet_cluster(seed)
    greedy = plan_greedy(nodes, doms)
    plan = plan_balance(nodes, doms)
    assert greedy.moves, "the cluster should need balancing"
    assert plan.score_after <= greedy.score_after + 1e-9
    assert len(plan.moves) <= len(greedy.moves)


@pytest.mark.parametrize("seed", range(6))
def test_fleet_clusters_fine_min_gain(seed: int) -> None:
    """With a finer min_gain swaps pay off: a lower final score (often in more
    moves); given greedy's own move count as max_moves it ends at least as low."""
    nodes, doms = fleet_cluster(seed, 10, 150)
    greedy = plan_greedy(nodes, doms, min_gain=0.001)
    plan = plan_balance(nodes, doms, min_gain=0.001)
    assert plan.score_after <= greedy.score_after + 1e-9
    same_budget = plan_balance(nodes, doms, max_moves=len(greedy.moves), min_gain=0.001)
    assert same_budget.score_after <= greedy.score_after + 1e-9
    assert len(same_budget.moves) <= len(greedy.moves)


@pytest.mark.parametrize("seed", range(12))
def test_chunky_clusters_no_worse_than_greedy(seed: int) -> None:
    """Large domains: greedy stalls early; swaps go further (in more moves),
    and with greedy's own move count the planner ends at least as low."""
    nodes, doms = chunky_cluster(seed)
    greedy = plan_greedy(nodes, doms)
    plan = plan_balance(nodes, doms)
    assert plan.score_after <= greedy.score_after + 1e-9
    same_budget = plan_balance(nodes, doms, max_moves=len(greedy.moves))
    assert same_budget.score_after <= greedy.score_after + 1e-9
    assert len(same_budget.moves) <= len(greedy.moves)


def test_planner_strictly_better_on_some_chunky_clusters() -> None:
    better = 0
    for seed in range(12):
        nodes, doms = chunky_cluster(seed)
        if plan_balance(nodes, doms).score_after < plan_greedy(nodes, doms).score_after - 1e-6:
            better += 1
    assert better >= 3


# --------------------------------------------------------------------------
# evacuation


def test_evacuation_consumes_capacity_as_it_plans() -> None:
    nodes = [BNode("src", 10000, 8, 4.0), BNode("t1", 1500, 8, 4.0), BNode("t2", 1500, 8, 4.0)]
    doms = [BDomain(f"d{k}", "src", 1000, 1) for k in range(3)]
    plan = plan_evacuation(nodes, doms, "src")
    assert len(plan.moves) == 2
    assert {m.target for m in plan.moves} == {"t1", "t2"}
    assert [name for name, _ in plan.blocking] == ["d2"]
    reason = plan.blocking[0][1]
    assert "needs 1000 MiB" in reason and "500 MiB" in reason and "(t1)" in reason
    replay(nodes, doms, plan.moves, source="src")


def test_evacuation_largest_first_and_spread() -> None:
    nodes = [BNode("src", 64000, 16, 4.0), BNode("t1", 16000, 8, 4.0), BNode("t2", 16000, 8, 4.0)]
    doms = [
        BDomain("small", "src", 1000, 1),
        BDomain("big", "src", 8000, 2),
        BDomain("mid", "src", 4000, 2),
        BDomain("other", "t1", 2000, 1),
    ]
    plan = plan_evacuation(nodes, doms, "src")
    assert [m.domain for m in plan.moves] == ["big", "mid", "small"]
    assert plan.moves[0].target == "t2"  # t1 already holds a domain
    assert plan.blocking == []
    after = replay(nodes, doms, plan.moves, source="src")
    assert all(d.node != "src" for d in after)
    assert plan.score_after == pytest.approx(score(nodes[1:], after))


def test_evacuation_maintenance_domain_is_blocking() -> None:
    nodes = [BNode("src", 10000, 8, 4.0), BNode("t1", 10000, 8, 4.0)]
    doms = [BDomain("m", "src", 1000, 1, movable=False), BDomain("ok", "src", 1000, 1)]
    plan = plan_evacuation(nodes, doms, "src")
    assert [m.domain for m in plan.moves] == ["ok"]
    assert plan.blocking == [("m", "in maintenance (not movable)")]


def test_evacuation_respects_allowed() -> None:
    nodes = [BNode("src", 10000, 8, 4.0), BNode("t1", 10000, 8, 4.0), BNode("t2", 10000, 8, 4.0)]
    doms = [
        BDomain("busy", "t2", 6000, 4),
        BDomain("pinned", "src", 1000, 1, allowed=frozenset({"src", "t2"})),
        BDomain("stuck", "src", 1000, 1, allowed=frozenset({"src"})),
    ]
    plan = plan_evacuation(nodes, doms, "src")
    assert [(m.domain, m.target) for m in plan.moves] == [("pinned", "t2")]
    assert plan.blocking[0][0] == "stuck" and "visible on no eligible node" in plan.blocking[0][1]
    replay(nodes, doms, plan.moves, source="src")


def test_evacuation_vcpu_reason_names_the_numbers() -> None:
    nodes = [BNode("src", 10000, 8, 4.0), BNode("t1", 10000, 2, 2.0)]
    doms = [BDomain("x", "t1", 1000, 3), BDomain("wide", "src", 1000, 2)]
    plan = plan_evacuation(nodes, doms, "src")
    assert plan.moves == []
    name, reason = plan.blocking[0]
    assert name == "wide" and "needs 2 vCPUs" in reason and "is 1 (t1" in reason


def test_evacuation_unknown_source_and_lonely_node() -> None:
    nodes = [BNode("src", 10000, 8, 4.0)]
    with pytest.raises(ValueError):
        plan_evacuation(nodes, [], "nope")
    plan = plan_evacuation(nodes, [BDomain("x", "src", 1, 1)], "src")
    assert plan.moves == [] and plan.blocking == [("x", "no other node is available")]
