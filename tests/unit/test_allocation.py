"""What a node carries: node list, cluster status and the metrics (all from
ops.views.node_rows, which reads the state file) say what admission counted
(rules.load_of on the scan), by the one sum rules.fit.allocated."""

import random

import pytest
from facts import random_world

from havirt.ops.views import node_rows
from havirt.rules.fit import load_of
from havirt.scan.record import record_scan


@pytest.mark.parametrize("seed", range(120))
def test_listings_carry_what_admission_counts(seed):
    cluster, state, config, specs = random_world(seed)
    rng = random.Random(seed)
    up, placed = cluster.answered(), sorted(cluster.placements())
    if placed and len(up) > 1 and rng.random() < 0.5:      # a double run: counted on both nodes
        name = rng.choice(placed)
        node, fact = cluster.placements()[name]
        cluster.nodes[rng.choice([n for n in up if n != node])].domains[name] = fact
    record_scan(state, cluster, set(specs))
    rows = {r["name"]: r for r in node_rows(state, config.reserve_mib)}
    for name in up:
        load = load_of(cluster, state, config, name)
        row = rows[name]
        assert (row["allocated_mib"], row["allocated_vcpus"], row["domains"]) == \
            (load.memory_mib, load.vcpus, load.count), name


def test_a_silent_node_lists_what_it_was_last_seen_carrying():
    cluster, state, config, _ = random_world(3)
    assert [n for n, f in cluster.nodes.items() if f.domains] and cluster.answered()
    record_scan(state, cluster, set())
    before = {r["name"]: r["allocated_mib"] for r in node_rows(state, config.reserve_mib)}
    for facts in cluster.nodes.values():
        facts.reachable, facts.error, facts.domains = False, "connect timed out", {}
    record_scan(state, cluster, set())
    assert {r["name"]: r["allocated_mib"] for r in node_rows(state, config.reserve_mib)} == before
