"""Failover's decision, directly and purely: the guard chosen from the scan,
the state and the configuration (table-driven), and the placement, with no
runner and no CLI."""

from types import SimpleNamespace

import pytest
from facts import cfg, spec, world

from havirt.errors import Refusal
from havirt.plan.failover import Guard, Restart, Result, choose_guard, decide_failover, to_restart
from havirt.store.state import DomainRecord

LOCKS = "/shared/locks"


def cluster3(leases_dead=True, leases_receivers=True, marks=True, alive=False):
    """node3 silent; node1 and node2 answer; node3 ran web1 and db1."""
    seen = {"paths": {"/dev/web1": True, "/dev/db1": True}}
    cluster, state = world({"node1": seen, "node2": seen, "node3": {"reachable": False}})
    cluster.nodes["node3"].alive = alive
    for n in ("node1", "node2"):
        f = cluster.nodes[n]
        f.leases, f.lockspace = leases_receivers, LOCKS if leases_receivers else None
        f.lease_problem = None if leases_receivers else "lock_manager is not \"lockd\""
        if marks:
            f.lease_marks = {"node1": "node1", "node2": "node2", "node3": "node3"}
    rec = state.nodes["node3"]
    rec.leases, rec.lockspace, rec.lockspace_peers = leases_dead, LOCKS, ["node1", "node2"]
    rec.last_scan = "2026-12-01T00:00:00Z"
    for d in ("web1", "db1"):
        state.domains[d] = DomainRecord(name=d, node="node3", state="running", memory_mib=512, vcpus=1)
    return cluster, state


def leased(name, mem=512):
    s = spec(name, mem=mem, disks=[f"/dev/{name}"])
    s.leased = [f"/dev/{name}"]
    return s


def fence_cfg():
    return cfg(fence={"node3": SimpleNamespace(
        timeout=60, off_when=SimpleNamespace(pattern=r"\boff\b"),
        argv=lambda what, node, address: ["ipmitool", what, address])})


SPECS = {"web1": leased("web1"), "db1": leased("db1")}


@pytest.mark.parametrize("leases_dead, leases_recv, marks, fence, confirm, allow, want", [
    (True, True, True, False, False, True, Guard.LEASES),        # leases hold: nothing else asked
    (True, True, True, True, True, True, Guard.LEASES),          # leases come first
    (False, True, True, True, False, True, Guard.FENCE),         # no leases on the dead node then
    (True, False, True, True, False, True, Guard.FENCE),         # receivers without leases
    (True, True, False, True, False, True, Guard.FENCE),         # dead node's marker not seen now
    (False, True, True, False, True, True, Guard.CONFIRM_OFF),   # the admin's word, last
    (False, True, True, False, True, False, None),               # never the admin's word in recovery
    (False, True, True, False, False, True, None),               # nothing holds
])
def test_the_guard(leases_dead, leases_recv, marks, fence, confirm, allow, want):
    cluster, state = cluster3(leases_dead, leases_recv, marks)
    guard, why, left = choose_guard(cluster, state, fence_cfg() if fence else cfg(), "node3",
                                    ["node1", "node2"], ["web1", "db1"], SPECS, confirm, allow)
    assert guard is want, why
    assert left == {}
    if want is None:
        assert why[1] == "fence: none configured for node3"
        assert why[2] == ("--confirm-off: not given" if allow else "--confirm-off: never from recovery")


def test_under_leases_a_domain_no_lease_can_protect_stays_down():
    cluster, state = cluster3()
    specs = {"web1": leased("web1"), "db1": spec("db1", disks=["/dev/db1"])}   # db1: no lease
    guard, why, left = choose_guard(cluster, state, cfg(), "node3", ["node1", "node2"],
                                    ["web1", "db1"], specs, False, True)
    assert guard is Guard.LEASES
    assert list(left) == ["db1"] and left["db1"].startswith("leases cannot protect it: ")


def test_a_fence_guard_plans_power_off_then_the_confirmation():
    cluster, state = cluster3(leases_dead=False)
    plan = decide_failover(cluster, state, fence_cfg(), "node3", ["web1", "db1"], SPECS)
    assert plan.guard is Guard.FENCE
    assert [s.why for s in plan.fence.steps] == ["power node3 off (fence)", "confirm node3 is off"]
    assert sorted(m.domain for m in plan.moves) == ["db1", "web1"]
    assert {m.target for m in plan.moves} <= {"node1", "node2"}


def test_confirm_off_does_not_count_when_the_nodes_sshd_answered():
    cluster, state = cluster3(leases_dead=False, alive=True)
    plan = decide_failover(cluster, state, cfg(), "node3", ["web1"], SPECS, confirm_off=True)
    assert plan.guard is None and plan.moves == []


def test_a_node_that_answers_is_refused():
    cluster, state = cluster3()
    with pytest.raises(Refusal, match="node node1 answers"):
        decide_failover(cluster, state, cfg(), "node1", [], SPECS)


def test_to_limits_the_receivers_and_what_does_not_fit_stays_down():
    cluster, state = cluster3()
    specs = {"web1": leased("web1", mem=6000), "db1": leased("db1", mem=6000)}
    plan = decide_failover(cluster, state, cfg(), "node3", ["web1", "db1"], specs, to=["node1"])
    assert [m.target for m in plan.moves] == ["node1"]
    assert len(plan.blocking) == 1 and plan.blocking[0][0] in ("web1", "db1")


def test_what_is_not_restarted_and_why():
    cluster, state = cluster3()
    state.domains["web1"].maintenance = True
    names, skipped = to_restart(cluster, state, ["web1", "db1", "gone1"], {"db1": SPECS["db1"]})
    assert names == ["db1"]
    assert skipped == [("web1", "in maintenance: failover never starts it"),
                       ("gone1", "no usable XML in conf/")]


@pytest.mark.parametrize("result, node, detail, text", [
    (Result.STARTED, "node1", "", "started on node1"),
    (Result.LEASE_REFUSED, "node3", "", "refused by its lease: it still runs on node3, which is alive"),
    (Result.DID_NOT_FIT, None, "memory: ...", "not started: memory: ..."),
    (Result.FAILED, None, "failed on node1: exit 1", "failed on node1: exit 1"),
])
def test_each_result_says_what_happened(result, node, detail, text):
    assert Restart("web1", result, node, detail).text == text
