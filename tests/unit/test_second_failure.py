"""A second node dies while a first is still down: a failed-over node no
longer blocks what it cannot run, and leases guard a start against any
silent node; without such a guard the refusal stays."""

import json

from test_failover import power_off, setup, where

VOLS = ("vol1", "vol2", "vol3")


def failover_node3(fake, *extra):
    power_off(fake.nodes["node3"])
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3", *extra)
    assert rc == 0, (out, err)
    return out


def test_cron_recovers_a_second_dead_node_while_the_first_is_still_down(fake):
    setup(fake)                                     # leases on every node, one lockspace
    failover_node3(fake)
    assert all(len(where(fake, d)) == 1 for d in VOLS)
    second = next(n for n in ("node1", "node2") if fake.nodes[n].domains)
    survivor = "node2" if second == "node1" else "node1"
    moved = sorted(fake.nodes[second].domains)
    fake.write_config(recover={"after": 1})
    power_off(fake.nodes[second])
    rc, out, err = fake.havirt("-q", "node", "scan", "--recover")
    for d in moved:
        assert f"WARNING recovered {d}: {second} has not answered 1 scans in a row (leases): " \
               f"{d} started on {survivor}" in out, out
    assert all(where(fake, d) == [survivor] for d in VOLS)
    assert "not-recovered" not in out, out


def test_a_failed_over_node_shows_as_down_until_it_answers(fake):
    setup(fake)
    failover_node3(fake)
    rows = {r["name"]: r for r in json.loads(fake.havirt("-f", "json", "node", "list")[1])}
    assert rows["node3"]["down_guard"] == "leases" and rows["node3"]["down_since"]
    assert rows["node1"]["down_since"] is None
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1 and "WARNING down node3: node node3 is down since its failover at " in out, out
    fake.nodes["node3"].reachable = True            # back, empty (it was powered off)
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 0 and out == "", out
    assert fake.state().nodes["node3"].down_since is None


def test_a_down_node_that_comes_back_running_a_copy_is_the_double_run(fake):
    setup(fake, leases=False)
    failover_node3(fake, "--confirm-off")           # the admin's word, and it was wrong
    node3 = fake.nodes["node3"]
    node3.reachable = True
    node3.add("vol1", memory_mib=1024, disks=["/dev/vol1"])
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1 and "CRITICAL duplicate vol1: DOMAIN vol1 RUNS ON 2 NODES AT ONCE" in out, out
    assert fake.state().nodes["node3"].down_since is None


def test_a_node_proven_off_by_its_failover_does_not_block_a_start(fake):
    setup(fake, leases=False)
    failover_node3(fake, "--confirm-off")
    fake.conf("web9", memory_mib=64)
    rc, out, err = fake.havirt("--yes", "domain", "start", "web9", "node1")
    assert rc == 0, (out, err)
    assert "node node3 did not answer: it is down since its failover at " in out
    assert "(confirm-off: powered off)" in out
    assert where(fake, "web9") == ["node1"]


def test_without_a_guard_a_silent_node_still_blocks_a_start(fake):
    setup(fake, leases=False)
    power_off(fake.nodes["node3"])                  # silent, never failed over
    fake.conf("web9", memory_mib=64)
    calls = len(fake.calls)
    rc, out, err = fake.havirt("--yes", "domain", "start", "web9", "node1")
    assert rc == 3 and "node node3 did not answer" in err and "web9 might run there" in err, err
    assert all(c.startswith("printf '@@hostname") for _, c in fake.calls[calls:])
    assert where(fake, "web9") == []


def test_leases_guard_a_start_against_a_silent_node(fake):
    """node3 silent, not failed over: vol1's only disk is leased in the lockspace
    node1 shares with node3, so a copy on node3 would make the start fail."""
    setup(fake)
    power_off(fake.nodes["node3"])
    rc, out, err = fake.havirt("--yes", "domain", "start", "vol1", "node1")
    assert rc == 0, (out, err)
    assert "node node3 did not answer: leases guard every disk of vol1 against it" in out
    assert where(fake, "vol1") == ["node1"]


def test_leases_do_not_excuse_a_silent_node_for_a_domain_without_a_leased_disk(fake):
    setup(fake)
    power_off(fake.nodes["node3"])
    fake.conf("tiny1", memory_mib=64)               # no disk: no lease to hold
    rc, out, err = fake.havirt("--yes", "domain", "start", "tiny1", "node1")
    assert rc == 3 and "node node3 did not answer" in err, err
    assert where(fake, "tiny1") == []
