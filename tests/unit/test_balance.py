"""havirt.balance.plan_balance: limits, the stop rule, prefixes, cost, plans as data."""

from __future__ import annotations

import math
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from havirt.plan.balance import BalancePlan, BDomain, BNode, Weights, plan_balance, planner, score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from balance_reference import cluster_score, plan_greedy, random_cluster, replay  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from clusters import Shape, generate  # noqa: E402

MG = 0.01  # the recommended default (config.yaml's balance.min_gain)


def plan(nodes, doms, max_moves=None, min_gain=MG, **kw) -> BalancePlan:
    return plan_balance(nodes, doms, max_moves, min_gain, **kw)


def swap_cluster() -> tuple[list[BNode], list[BDomain]]:
    """Two nodes where every single move makes things worse but a swap is
    perfect (and its first half no worse than the swap gains)."""
    nodes = [BNode("a", 10000, 64, 4.0), BNode("b", 10000, 64, 4.0)]
    doms = [BDomain("x", "a", 2500, 1), BDomain("fa", "a", 3500, 1, movable=False),
            BDomain("y", "b", 1500, 1), BDomain("fb", "b", 2500, 1, movable=False)]
    return nodes, doms


# -- the score ----------------------------------------------------------------


def test_score_by_hand() -> None:
    nodes = [BNode("a", 1000, 4, 4.0), BNode("b", 1000, 4, 4.0)]
    # free shares 0.5, 1.0 -> pstdev 0.25; ratios 1.0, 0.0 -> pstdev 0.5
    assert score(nodes, [BDomain("x", "a", 500, 4)]) == pytest.approx(0.25 + 0.5 * 0.5)
    nodes = [BNode("a", 1000, 2, 4.0), BNode("b", 2000, 4, 4.0), BNode("c", 4000, 8, 4.0)]
    doms = [BDomain("x", "a", 1000, 2), BDomain("y", "b", 1000, 4)]
    assert score(nodes, doms) == pytest.approx(math.sqrt(1 / 6) + 0.5 * math.sqrt(2 / 9))
    # over its memory: a negative free share
    fr = [-0.5, 1.0, 1.0]
    mean = sum(fr) / 3
    assert score(nodes, [BDomain("x", "a", 1500, 0)]) == pytest.approx(
        math.sqrt(sum((x - mean) ** 2 for x in fr) / 3))


def test_score_leaves_out_nodes_in_maintenance_and_rejects_nonsense() -> None:
    nodes = [BNode("a", 1000, 4, 4.0), BNode("b", 1000, 4, 4.0), BNode("m", 1000, 4, 4.0, maintenance=True)]
    doms = [BDomain("x", "a", 500, 4), BDomain("y", "m", 900, 4)]
    assert score(nodes, doms) == pytest.approx(0.5)
    assert score([], []) == 0.0
    with pytest.raises(ValueError):
        score([BNode("a", 1000, 4, 4.0)], [BDomain("x", "zz", 1, 1)])
    with pytest.raises(ValueError):
        plan([BNode("a", 0, 4, 4.0)], [])
    with pytest.raises(ValueError):
        plan([BNode("a", 10, 4, 4.0)], [], max_moves=-1)
    with pytest.raises(ValueError):
        plan([BNode("a", 10, 4, 4.0)], [], min_gain=math.nan)


# -- hard limits ----------------------------------------------------------------


def test_memory_and_vcpu_limits() -> None:
    # moving "big" to b would balance memory, but b cannot hold it
    nodes = [BNode("a", 10000, 8, 4.0), BNode("b", 4000, 8, 4.0)]
    doms = [BDomain("big", "a", 6000, 1), BDomain("s1", "a", 500, 1), BDomain("s2", "a", 500, 1)]
    p = plan(nodes, doms)
    assert p.moves and all(m.domain != "big" for m in p.moves)
    replay(nodes, doms, p.moves)
    # b has plenty of memory but only 2 vCPUs of room (1 CPU at ratio 2.0)
    nodes = [BNode("a", 10000, 2, 8.0), BNode("b", 10000, 1, 2.0)]
    doms = [BDomain("wide", "a", 4000, 4), BDomain("w2", "a", 4000, 4)]
    assert plan(nodes, doms).moves == []


def test_disks_fixed_domains_and_maintenance_nodes() -> None:
    nodes = [BNode("a", 10000, 8, 4.0), BNode("b", 10000, 8, 4.0), BNode("c", 10000, 8, 4.0),
             BNode("m", 10000, 8, 4.0, maintenance=True)]
    doms = [BDomain("pinned", "a", 3000, 2, allowed=frozenset({"a", "c", "m"})),
            BDomain("maint", "a", 3000, 2, movable=False),
            BDomain("free", "a", 3000, 2),
            BDomain("parked", "m", 1000, 1)]
    p = plan(nodes, doms)
    assert {m.domain for m in p.moves} == {"pinned", "free"}
    assert all(m.target != "b" for m in p.moves if m.domain == "pinned")
    assert all("m" not in (m.source, m.target) for m in p.moves)
    replay(nodes, doms, p.moves)


def test_moving_off_an_overloaded_node_is_fine_unless_n_plus_1_forbids() -> None:
    nodes = [BNode("a", 4000, 2, 4.0), BNode("b", 5000, 8, 4.0)]
    doms = [BDomain("x", "a", 3000, 6), BDomain("y", "a", 3000, 6)]  # a is over memory and ratio
    p = plan(nodes, doms, keep_n_plus_1=False)
    assert [(m.domain, m.target) for m in p.moves] == [("x", "b")]  # b has room for one only
    # b's loss is survivable now (it runs nothing); with x on it, it would not be
    p = plan(nodes, doms)
    assert p.moves == [] and p.n_plus_1_before.failing == ["a"] == p.n_plus_1_after.failing


@pytest.mark.parametrize("seed", range(30))
def test_random_plans_respect_every_limit_and_move_each_domain_once(seed: int) -> None:
    nodes, doms = random_cluster(seed, maintenance=0.1, restart=0.2)
    p = plan(nodes, doms, min_gain=0.001)
    after = replay(nodes, doms, p.moves)
    assert len({m.domain for m in p.moves}) == len(p.moves)
    assert p.score_before == pytest.approx(cluster_score(nodes, doms))
    assert p.score_after == pytest.approx(cluster_score(nodes, after))
    assert p.memory_mib == sum(m.memory_mib for m in p.moves)


# -- the stop rule ------------------------------------------------------------------


def test_a_balanced_cluster_gives_an_empty_plan() -> None:
    nodes = [BNode(f"n{i}", 16384, 8, 4.0) for i in range(4)]
    doms = [BDomain(f"d{i}{k}", f"n{i}", 2048, 2) for i in range(4) for k in range(3)]
    p = plan(nodes, doms)
    assert p.moves == [] and p.score_before == p.score_after == pytest.approx(0.0)


def test_min_gain_is_per_node() -> None:
    # two nodes; moving x gains 0.009625 (see the numbers): worth it when
    # min_gain / 2 nodes <= 0.009625
    nodes = [BNode("a", 100000, 800, 4.0), BNode("b", 100000, 800, 4.0)]
    doms = [BDomain("x", "a", 900, 1), BDomain("y", "a", 900, 1)]
    assert score(nodes, doms) == pytest.approx(0.009625)
    assert plan(nodes, doms, min_gain=0.0193).moves == []
    p = plan(nodes, doms, min_gain=0.0192)
    assert [(m.domain, m.target) for m in p.moves] == [("x", "b")]
    assert p.score_after == pytest.approx(0.0)
    # any float: tiny, zero, negative (any gain), infinite (nothing)
    for mg in (1e-6, 0.0, -1.0):
        assert len(plan(nodes, doms, min_gain=mg).moves) == 1
    assert plan(nodes, doms, min_gain=math.inf).moves == []


@pytest.mark.parametrize("n_nodes", [5, 10, 20, 40])
def test_stop_rule_means_the_same_at_every_size(n_nodes: int) -> None:
    """The same cluster shape at several sizes, skewed alike: the default
    balances each to a similar final score (it does not stop early on the
    large ones), and the gain of the last move, times the number of nodes,
    is at least min_gain while no move is left that would gain that."""
    shape = Shape(f"stop-{n_nodes}", n_nodes, 10 * n_nodes)
    nodes, doms = generate(shape, 7)
    p = plan(nodes, doms)
    assert p.score_before > 0.4
    assert p.score_after < 0.06, (n_nodes, p.score_after)
    scores = [p.score_before] + [m.score_after for m in p.moves]
    gains = [a - b for a, b in zip(scores, scores[1:])]
    assert gains[-1] * n_nodes >= MG or gains[-2] + gains[-1] >= 2 * MG / n_nodes  # a swap ends it
    assert plan(nodes, replay(nodes, doms, p.moves)).moves == []


def test_absolute_threshold_would_stop_early_on_large_clusters() -> None:
    """What the per-node rule fixes: at 100 nodes single moves gain less
    than at 10, so one absolute threshold cannot suit both."""
    small = generate(Shape("g10", 10, 150), 3)
    large = generate(Shape("g100", 100, 1500), 3)
    first = [plan(*c, max_moves=1).moves[0].score_after for c in (small, large)]
    gain_small = score(*small) - first[0]
    gain_large = score(*large) - first[1]
    assert gain_large < gain_small / 4
    assert 10 * gain_small == pytest.approx(100 * gain_large, rel=0.6)


# -- prefixes, cost, max_moves ------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_every_prefix_is_the_plan_for_that_many_moves(seed: int) -> None:
    """Cutting the plan after k moves (--max-moves k, or a migration that
    fails) leaves exactly what planning k moves gives; a swap is never cut."""
    nodes, doms = generate(Shape("prefix", 8, 60), seed)
    assert len(assert_prefixes(nodes, doms).moves) >= 6


def assert_prefixes(nodes, doms, **kw) -> BalancePlan:
    """Every --max-moves k gives the first k moves of the plan without a
    limit (k - 1 where a swap would be cut); returns that plan."""
    full = plan(nodes, doms, **kw)
    for k in range(len(full.moves) + 2):
        cut = plan(nodes, doms, max_moves=k, **kw)
        assert cut.moves == full.moves[:len(cut.moves)]
        assert len(cut.moves) >= min(k, len(full.moves)) - 1
    return full


@pytest.mark.parametrize("seed", [61, 111, 144, 205])
def test_a_swap_that_does_not_fit_ends_the_cut_plan(seed: int) -> None:
    """With N+1 kept, when the unbounded plan's next step is a swap that the
    moves left cannot hold, the cut plan ends there: the move left is not
    spent restoring N+1 or on a move the unbounded plan makes later."""
    nodes, doms = random_cluster(seed, maintenance=0.15, restart=0.3, fixed=0.1)
    assert_prefixes(nodes, doms, min_gain=0.001)


def assert_each_move_lowers(p: BalancePlan) -> None:
    """Each move lowers the score, except the first half of a swap, which
    may raise it by no more than the swap gains."""
    scores = [p.score_before] + [m.score_after for m in p.moves]
    k = 1
    while k < len(scores):
        if scores[k] > scores[k - 1]:
            assert scores[k] - scores[k - 1] <= scores[k - 1] - scores[k + 1] + 1e-12
            k += 1
        assert scores[k] < scores[k - 1]
        k += 1


@pytest.mark.parametrize("seed", range(6))
def test_each_move_lowers_the_score(seed: int) -> None:
    """Each move lowers the score, except the first half of a swap, which
    may raise it by no more than the swap gains."""
    nodes, doms = generate(Shape("early", 12, 150), seed)
    p = plan(nodes, doms, min_gain=0.001)
    assert_each_move_lowers(p)


@pytest.mark.parametrize("seed", range(4))
def test_prefixes_against_plain_greedy(seed: int) -> None:
    """At every length the plan is about as low as the plain greedy plan
    (each step the best single move, whatever it costs; a domain may move
    again), and it ends as low or lower."""
    nodes, doms = generate(Shape("vs-greedy", 6, 40), seed)
    p = plan(nodes, doms, keep_n_plus_1=False)
    greedy = plan_greedy(nodes, doms, 100, MG)
    assert len(greedy) >= 4
    for ours, ref in zip(p.moves, greedy):
        assert ours.score_after <= ref.score_after * 1.3 + 0.02
    assert p.score_after <= greedy[-1].score_after + 0.01


def _gains(nodes: list[BNode], doms: list[BDomain]) -> dict[str, float]:
    """What moving each movable domain from a to b alone gains."""
    gains = {}
    for d in doms:
        if d.movable:
            moved = [replace(x, node="b") if x.name == d.name else x for x in doms]
            gains[d.name] = score(nodes, doms) - score(nodes, moved)
    return gains


def test_of_two_moves_of_similar_gain_the_cheaper_goes_first() -> None:
    # from a to b: "big" gains a bit more than "small", but less than CHEAP_WINDOW more
    nodes = [BNode("a", 20000, 64, 4.0), BNode("b", 20000, 64, 4.0)]
    doms = [BDomain("small", "a", 3000, 1), BDomain("big", "a", 3040, 1), BDomain("x", "a", 500, 1, movable=False)]
    gains = _gains(nodes, doms)
    assert gains["small"] < gains["big"] < gains["small"] * (1 + planner.CHEAP_WINDOW)
    assert plan(nodes, doms, max_moves=1).moves[0].domain == "small"


def test_of_two_moves_the_cheaper_gives_up_no_more_than_the_window() -> None:
    # "big" gains more than CHEAP_WINDOW above "small": it goes first
    nodes = [BNode("a", 20000, 64, 4.0), BNode("b", 20000, 64, 4.0)]
    doms = [BDomain("small", "a", 3000, 1), BDomain("big", "a", 3200, 1), BDomain("x", "a", 500, 1, movable=False)]
    gains = _gains(nodes, doms)
    assert gains["big"] > gains["small"] * (1 + planner.CHEAP_WINDOW)
    assert plan(nodes, doms, max_moves=1).moves[0].domain == "big"


def test_max_moves_none_and_a_swap_never_cut() -> None:
    nodes, doms = swap_cluster()
    assert plan(nodes, doms, max_moves=1).moves == []
    p = plan(nodes, doms, max_moves=2)
    assert [(m.domain, m.source, m.target) for m in p.moves] == [("x", "a", "b"), ("y", "b", "a")]
    assert p.score_before < p.moves[0].score_after <= 2 * p.score_before - p.score_after
    assert p.score_after == pytest.approx(0.0)
    assert plan(nodes, doms, max_moves=None).moves == p.moves
    assert plan(nodes, replay(nodes, doms, p.moves)).moves == []


def test_swap_order_the_first_migration_fits() -> None:
    # b is too full to take a 1500 MiB domain first: a 2000 must leave first
    nodes = [BNode("a", 6000, 64, 4.0), BNode("b", 5000, 64, 4.0)]
    doms = [BDomain("a0", "a", 1500, 1), BDomain("a1", "a", 1500, 1),
            BDomain("b0", "b", 2000, 1), BDomain("b1", "b", 2000, 1)]
    p = plan(nodes, doms, keep_n_plus_1=False)
    assert [(m.domain, m.source, m.target) for m in p.moves] == [("b0", "b", "a"), ("a0", "a", "b")]
    replay(nodes, doms, p.moves)


@pytest.mark.parametrize("seed", range(8))
def test_second_run_is_empty(seed: int) -> None:
    nodes, doms = generate(Shape("again", 8, 80, allowed_share=0.2, fixed_share=0.05), seed)
    p = plan(nodes, doms)
    assert p.moves and plan(nodes, replay(nodes, doms, p.moves)).moves == []


@pytest.mark.parametrize("seed", range(8))
def test_runs_converge_and_input_order_does_not_matter(seed: int) -> None:
    """On small clusters with few domains of each kind, a domain the plan
    moved may be the best to move again: the next run does it (a plan never
    moves one twice). Runs converge quickly all the same."""
    nodes, doms = random_cluster(200 + seed, allowed=0.2, restart=0.2)
    p = plan(nodes, doms, min_gain=0.005)
    now, last = doms, p
    for _ in range(4):
        now = replay(nodes, now, last.moves)
        last = plan(nodes, now, min_gain=0.005)
        if not last.moves:
            break
        assert {m.domain for m in last.moves} & {m.domain for m in p.moves}
    assert last.moves == []
    rng = random.Random(seed)
    n2, d2 = list(nodes), list(doms)
    rng.shuffle(n2)
    rng.shuffle(d2)
    assert plan(n2, d2, min_gain=0.005) == p


def test_ties_go_by_name() -> None:
    nodes = [BNode("c", 10000, 8, 4.0), BNode("b", 10000, 8, 4.0), BNode("a", 20000, 16, 4.0)]
    doms = [BDomain(f"d{k}", "a", 2500, 2) for k in range(8)]
    first = plan(nodes, doms).moves[0]
    assert (first.domain, first.target) == ("d0", "b")


# -- the plan as data -----------------------------------------------------------------


def test_plan_as_data() -> None:
    # 16 GiB in all for 9 GiB of domains: no node's loss is survivable
    nodes = [BNode("a", 8192, 4, 4.0), BNode("b", 8192, 4, 4.0)]
    doms = [BDomain("x", "a", 4096, 2), BDomain("y", "a", 3072, 1), BDomain("w", "b", 2048, 1)]
    p = plan(nodes, doms)
    data = p.as_dict()
    assert list(data) == ["moves", "score_before", "score_after", "memory_mib", "n_plus_1_before", "n_plus_1_after"]
    assert data["moves"] == [{"domain": "y", "from": "a", "to": "b", "memory_mib": 3072,
                              "score_after": p.moves[0].score_after}]
    assert data["memory_mib"] == 3072 and data["score_before"] == p.score_before
    before = data["n_plus_1_before"]
    assert before["ok"] is False and before["failing"] == ["a", "b"]
    assert before["nodes"]["a"] == {
        "survives_loss": False,
        "restarts": [{"domain": "x", "from": "a", "to": "b", "memory_mib": 4096,
                      "score_after": before["nodes"]["a"]["restarts"][0]["score_after"]}],
        "stranded": [{"domain": "y", "memory_mib": 3072, "vcpus": 1,
                      "reason": "needs 3072 MiB, most free on an eligible node is 2048 MiB (b)"}],
        "missing_mib": 3072, "missing_vcpus": 1}
    off = plan(nodes, doms, keep_n_plus_1=False).as_dict()
    assert off["n_plus_1_before"] is None and off["n_plus_1_after"] is None
    assert off["moves"] == data["moves"]


# -- the weights --------------------------------------------------------------------


def test_weights_are_the_score_s_and_are_checked() -> None:
    nodes = [BNode("a", 1000, 4, 4.0), BNode("b", 1000, 4, 4.0)]
    doms = [BDomain("x", "a", 500, 4)]  # free shares 0.5 and 1.0, ratios 1.0 and 0.0
    assert score(nodes, doms) == pytest.approx(0.25 + 0.5 * 0.5)
    assert score(nodes, doms, Weights(1, 1)) == pytest.approx(0.25 + 0.5)
    assert score(nodes, doms, Weights(0, 3)) == pytest.approx(1.5)
    assert score(nodes, doms, Weights(2, 0)) == pytest.approx(0.5)
    for bad in ((-1, 1), (1, -0.1), (0, 0), (math.nan, 1), (1, math.inf), (True, 1), ("1", 1)):
        with pytest.raises(ValueError):
            Weights(*bad)


@pytest.mark.parametrize("seed", range(6))
def test_plans_with_other_weights_keep_every_rule(seed: int) -> None:
    """Without N+1 (whose restoring moves may raise it), each move lowers the
    score of the weights given (a swap's first half by no more than the swap
    gains), every limit holds, and the scores the plan reports are those
    weights' scores."""
    nodes, doms = generate(Shape("weights", 10, 120, fill=0.85, vcpu_fill=0.8), seed)
    for w in (Weights(1, 1), Weights(1, 0), Weights(0, 1), Weights(0.2, 3)):
        p = plan(nodes, doms, min_gain=0.001, weights=w, keep_n_plus_1=False)
        now = replay(nodes, doms, p.moves, weights=w)
        assert p.score_before == pytest.approx(score(nodes, doms, w))
        assert p.score_after == pytest.approx(score(nodes, now, w)) and p.score_after < p.score_before
        assert_each_move_lowers(p)
