"""The placement rules, directly, on hand-built facts (table-driven)."""

import math

import pytest
from facts import cfg, dom, spec, world

from havirt.parse import virsh
from havirt.rules import fit as rules
from havirt.rules.disks import MISSING, NOT_CHECKED, SEEN, disk_state, disks_seen, visibility
from havirt.rules.fit import Load, Need, fit_problems, load_of, vcpu_cap
from havirt.rules.presence import presence_problems


@pytest.mark.parametrize("cpus, ratio, cap", [
    (4, 4.0, 16), (3, 1.5, 4), (8, 1.0, 8), (1, 0.5, 0), (2, 0.1, 0), (6, 1 / 3, 2),
    (10, 0.3, 3), (0, 4.0, 0), (4, math.inf, 1 << 62), (4, -1.0, -1),
])
def test_vcpu_cap_is_the_exact_ratio(cpus, ratio, cap):
    assert vcpu_cap(cpus, ratio) == cap
    if 0 < cpus and 0 <= ratio < math.inf:
        assert cap / cpus <= ratio and (cap + 1) / cpus > ratio


@pytest.mark.parametrize("cap, total, reserve, usable", [
    (None, 8192, 1024, 7168), (4096, 8192, 1024, 4096), (16384, 8192, 1024, 8192),
    (None, 512, 1024, 0), (None, None, 1024, None), (2048, None, 1024, 2048),
])
def test_usable_memory(cap, total, reserve, usable):
    assert rules.usable_memory(cap, total, reserve) == usable


def load(**kw):
    base = dict(name="node2", reachable=True, usable_mib=7168, basis="8192 MiB total - 1024 MiB reserve",
                cpus=4, max_ratio=4.0, memory_mib=0, vcpus=0, count=0, paths={"/d/a": True, "/d/b": False})
    base.update(kw)
    return Load(**base)


@pytest.mark.parametrize("lkw, need, words", [
    ({}, Need("web1", 512, 1), []),
    ({"memory_mib": 7000, "count": 3}, Need("web1", 512, 1),
     ["memory: node2 can give domains 7168 MiB (8192 MiB total - 1024 MiB reserve), 7000 MiB are "
      "allocated to 3 running domain(s), web1 needs 512 MiB: 344 MiB short"]),
    ({"memory_mib": 6656}, Need("web1", 512, 1), []),                   # exactly full fits
    ({"vcpus": 15}, Need("web1", 512, 2), ["vCPUs: node2 has 4 CPUs and 15 vCPUs allocated; "
                                           "web1's 2 would make 4.25 per CPU, over the limit of 4"]),
    ({"vcpus": 14}, Need("web1", 512, 2), []),                          # exactly the limit fits
    ({"maintenance": True}, Need("web1", 512, 1), ["node node2 is in maintenance"]),
    ({}, Need("web1", 512, 1, ("/d/a",)), []),
    ({}, Need("web1", 512, 1, ("/d/b",)), ["disk: /d/b does not exist on node2"]),
    ({}, Need("web1", 512, 1, ("/d/c",)), ["disk: /d/c was not checked on node2"]),
    ({"reachable": False, "error": "connect timed out"}, Need("web1", 1, 1),
     ["target node2 is unreachable (connect timed out)"]),
    # capacity not known: the node takes nothing, whatever the size (one decision)
    ({"usable_mib": None}, Need("web1", 1, 1),
     ["memory: how much memory node2 has is not known (no scan read it, no cap is set): "
      "it takes no domain"]),
    ({"cpus": 0}, Need("web1", 1, 0),
     ["vCPUs: how many CPUs node2 has is not known (no scan read it): it takes no domain"]),
    ({"usable_mib": 0, "basis": "cap 0 MiB"}, Need("web1", 0, 0),
     ["memory: node2 can give domains no memory (cap 0 MiB): it takes no domain"]),
    ({"usable_mib": None, "maintenance": True}, Need("web1", 1, 1, ("/d/b",)),
     ["node node2 is in maintenance",
      "memory: how much memory node2 has is not known (no scan read it, no cap is set): "
      "it takes no domain", "disk: /d/b does not exist on node2"]),
])
def test_fit_problems(lkw, need, words):
    assert fit_problems(load(**lkw), need) == words


def test_fit_counts_what_a_plan_already_promised():
    assert fit_problems(load(), Need("b", 512, 1), extra_mib=6656) == []
    assert fit_problems(load(), Need("b", 512, 1), extra_mib=6657)[0].endswith("1 MiB short")


def test_over_limits_uses_the_same_comparisons():
    assert rules.over_limits(load(memory_mib=7168, vcpus=16)) == []
    kinds = [k for k, _ in rules.over_limits(load(memory_mib=7169, vcpus=17))]
    assert kinds == ["over-memory", "over-vcpu"]
    # a limit not known is not said to be exceeded (capacity_problems says it is not known)
    assert rules.over_limits(load(usable_mib=None, cpus=0, memory_mib=7169, vcpus=17)) == []
    assert rules.over_limits(load(usable_mib=0, memory_mib=0)) == []


def test_load_of_counts_every_present_domain_as_the_node_reports_it():
    cluster, state = world({
        "node1": {"domains": [dom("a", 1000, 2), dom("b", 500, 1, state="paused", reason=2),
                              dom("c", 700, 4, state="shut off")], "paths": {"/d/x": True}},
        "node2": {"reachable": False},
    })
    l1 = load_of(cluster, state, cfg(), "node1")
    assert (l1.memory_mib, l1.vcpus, l1.count, l1.usable_mib, l1.vcpu_cap) == (1500, 3, 2, 7168, 16)
    assert l1.paths == {"/d/x": True}
    l2 = load_of(cluster, state, cfg(), "node2")
    assert not l2.reachable and "timed out" in l2.error


def test_sizes_running_vs_started():
    running = dom("web1", mem=300, vcpus=2)        # ballooned down from conf's 512
    s = spec("web1", mem=512, vcpus=1, disks=["/d/a"])
    assert rules.need_to_move(running, s) == Need("web1", 300, 2, ("/d/a",))
    assert rules.need_to_start(s) == Need("web1", 512, 1, ("/d/a",))
    assert rules.held(dom("x", mem=None, vcpus=None)) == (0, 0)


@pytest.mark.parametrize("state", ["running", "paused", "crashed", "in shutdown", "pmsuspended"])
def test_anything_but_shut_off_is_active(state):
    assert virsh.active(state) and dom("x", state=state).active
    assert not virsh.active(virsh.SHUT_OFF)


def test_presence_problems():
    cluster, _ = world({
        "node1": {"domains": [dom("web1")]},
        "node2": {"domains": [dom("db1", state="paused", reason=2)]},
        "node3": {"reachable": False},
    })
    assert presence_problems(cluster, "web1", force=False) == [
        "web1 is already running on node1",
        "node node3 did not answer (connect timed out after 5 s): web1 might run there "
        "(--force to go on without it)"]
    assert presence_problems(cluster, "web1", force=True) == ["web1 is already running on node1"]
    assert presence_problems(cluster, "web1", force=True, allow_on="node1") == []
    assert presence_problems(cluster, "web1", force=False, allow_on="node1", can_force=False) == [
        "node node3 did not answer (connect timed out after 5 s): web1 might run there "
        "(cannot prove web1 runs only once)"]
    assert presence_problems(cluster, "db1", force=True) == [
        "db1 is arriving by migration on node2 (paused, reason 2)"]


@pytest.mark.parametrize("paths, state", [({"/d/a": True}, SEEN), ({"/d/a": False}, MISSING),
                                          ({}, NOT_CHECKED), ({"/d/b": True}, NOT_CHECKED)])
def test_disk_state_is_three_way(paths, state):
    assert disk_state(paths, "/d/a") == state
    assert disks_seen(paths, ["/d/a"]) is (state == SEEN)
    assert disks_seen(paths, []) is True


def test_disk_visibility_over_the_nodes():
    """A node that did not answer checked nothing, whatever it said before."""
    cluster, _ = world({"node1": {"paths": {"/d/a": True}}, "node2": {"paths": {"/d/a": False}},
                        "node3": {"paths": {}}, "node4": {"reachable": False, "paths": {"/d/a": True}}})
    vis = visibility(cluster, "/d/a")
    assert (vis.seen, vis.missing, vis.not_checked) == (("node1",), ("node2",), ("node3", "node4"))
    assert vis.everywhere is False
    assert visibility(cluster, "/d/a", ["node1"]).everywhere is True
    assert visibility(cluster, "/d/a", ["node1", "node3"]).everywhere is None
    assert visibility(cluster, "/d/a", ["node4"]).everywhere is None
    assert visibility(cluster, "/d/a", []).everywhere is None
