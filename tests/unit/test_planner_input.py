"""plan/planner_input.py: a scan turned into the balance planner's input, as
the rules see it."""

import random

import pytest
from facts import cfg, dom, random_world, spec, world

from havirt.plan.balance import n_plus_1, plan_balance, plan_evacuation
from havirt.plan.balance.model import Layout
from havirt.plan.planner_input import planner_domains, planner_nodes
from havirt.rules.fit import Need, fit_problems, load_of, need_to_move, need_to_start


def test_a_node_of_unknown_capacity_takes_nothing_and_can_still_be_emptied():
    """One decision (rules.capacity_problems): a node whose memory or CPUs
    are not known takes no domain; it is still asked about (N+1) and emptied."""
    cluster, state = world({
        "node1": {"domains": [dom("a", 1024)]},
        "node2": {"memory": None, "cpus": None, "domains": [dom("b", 512)]},
        "node3": {"cpus": None},
        "node4": {"memory": None},
    })
    nodes = planner_nodes(cluster, state, cfg())
    assert [(n.name, n.maintenance) for n in nodes] == [
        ("node1", False), ("node2", True), ("node3", True), ("node4", True)]
    domains = planner_domains(cluster, state, cfg(), nodes, {"a": spec("a", 1024), "b": spec("b", 512)})
    assert [(d.name, d.node) for d in domains] == [("a", "node1"), ("b", "node2")]
    plan = plan_evacuation(nodes, domains, "node2")
    assert [(m.domain, m.target) for m in plan.moves] == [("b", "node1")]
    n1 = n_plus_1(nodes, domains)
    assert n1.failing == ["node1"] and [s.domain for s in n1.nodes["node1"].stranded] == ["a"]
    assert plan_balance(nodes, domains, None, 0.0).moves == []
    for node in ("node2", "node3", "node4"):
        assert fit_problems(load_of(cluster, state, cfg(), node), Need("a", 1, 1))[-1].endswith(
            "it takes no domain")


@pytest.mark.parametrize("seed", range(300))
def test_the_production_adapter_compiles_the_rule_exactly(seed):
    """For every (domain, node): the planner's compiled fit (Layout.fits, on
    what planner_input built from the scan) answers what rules.fit_problems
    answers, for a live move (what it holds) and a restart (what conf/ says),
    with and without what a plan already promised to the node."""
    rng = random.Random(-seed)
    cluster, state, config, specs = random_world(seed)
    nodes = planner_nodes(cluster, state, config)
    layout = Layout(nodes, planner_domains(cluster, state, config, nodes, specs))
    assert [d.name for d in layout.doms] == sorted(cluster.placements())
    for k, d in enumerate(layout.doms):
        fact, conf = cluster.nodes[d.node].domains[d.name], specs.get(d.name)
        needs = [(False, need_to_move(fact, conf))] + ([(True, need_to_start(conf))] if conf else [])
        for restart, need in needs:
            m, v = d.size(restart)
            assert (m, v) == (need.memory_mib, need.vcpus)
            for name in state.nodes:
                load = load_of(cluster, state, config, name)
                for em, ev in ((0, 0), (rng.choice([0, 256, 5000]), rng.choice([0, 1, 9]))):
                    rule = not fit_problems(load, need, em, ev)
                    j = layout.index.get(name)
                    compiled = j is not None and layout.fits(j, m, v, layout.allowed[k], em, ev)
                    assert compiled == rule, (d.name, name, restart, em, ev, fit_problems(load, need, em, ev))


REASONS = {"unreachable": " is unreachable (", "maintenance": " is in maintenance",
           "memory unknown": "how much memory", "no memory": "can give domains no memory",
           "memory short": " MiB short", "CPUs unknown": "how many CPUs", "vCPUs over": "over the limit",
           "disk missing": "does not exist on", "disk not checked": "was not checked on"}


def test_the_random_worlds_meet_every_rule():
    """The worlds above place domains, and refuse them for every reason the rules have."""
    seen = dict.fromkeys(["fits", *REASONS], 0)
    for seed in range(300):
        cluster, state, config, specs = random_world(seed)
        for name, (_, fact) in cluster.placements().items():
            need = need_to_move(fact, specs.get(name))
            for target in state.nodes:
                problems = fit_problems(load_of(cluster, state, config, target), need)
                seen["fits"] += not problems
                for reason, words in REASONS.items():
                    seen[reason] += any(words in p for p in problems)
    assert all(n >= 20 for n in seen.values()), seen
