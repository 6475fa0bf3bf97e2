"""plan/planner_input.py: a scan turned into the balance planner's input, as
the rules see it."""

from facts import cfg, dom, spec, world

from havirt.plan.balance import n_plus_1, plan_balance, plan_evacuation
from havirt.plan.planner_input import planner_domains, planner_nodes
from havirt.rules.fit import Need, fit_problems, load_of


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
