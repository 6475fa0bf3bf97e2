"""The pure planners, directly, on hand-built facts: what they plan, what they refuse."""

import pytest
from facts import cfg, dom, spec, world

from havirt.errors import Refusal, UsageError
from havirt.plan.domains import (
    best_target,
    plan_destroy,
    plan_migrate,
    plan_shutdown,
    plan_start,
    where_running,
)
from havirt.remote.steps import StepKind
from havirt.rules.fit import Need

V = "virsh -c qemu:///system"


def refusal(fn, *a, **kw) -> list[str]:
    with pytest.raises(Refusal) as e:
        fn(*a, **kw)
    return e.value.reasons


# -- start ------------------------------------------------------------------------

def test_start_plans_one_create_with_the_conf_bytes_on_stdin():
    cluster, state = world({"node1": {}, "node2": {}})
    s = spec("web1")
    plan = plan_start(cluster, state, cfg(), s, "node2")
    (step,) = plan.steps
    assert (step.node, step.command.text(), step.kind) == ("node2", f"{V} create /dev/stdin",
                                                           StepKind.RUN)
    assert step.stdin_data == s.raw and step.stdin_file == s.path


@pytest.mark.parametrize("nodes, dstate, words", [
    ({"node1": {"domains": [dom("web1")]}, "node2": {}}, {}, ["already running on node1"]),
    ({"node1": {"reachable": False}, "node2": {}}, {}, ["node node1 did not answer"]),
    ({"node2": {"maintenance": True}}, {}, ["node node2 is in maintenance"]),
    ({"node2": {"memory": 1500}}, {}, ["memory: node2 can give domains 476 MiB", "36 MiB short"]),
    ({"node2": {"cpus": 1, "domains": [dom("x", 8, 4)]}}, {}, ["vCPUs: node2 has 1 CPUs"]),
    ({"node2": {}}, {"maintenance": True}, ["domain web1 is in maintenance"]),
])
def test_start_refusals(nodes, dstate, words):
    cluster, state = world(nodes)
    for k, v in dstate.items():
        setattr(state.domain("web1"), k, v)
    text = "; ".join(refusal(plan_start, cluster, state, cfg(), spec("web1"), "node2"))
    for w in words:
        assert w in text


def test_start_force_goes_on_without_a_silent_node_but_never_over_a_copy():
    cluster, state = world({"node1": {"reachable": False}, "node2": {}})
    assert plan_start(cluster, state, cfg(), spec("web1"), "node2", force=True).steps
    cluster, state = world({"node1": {"domains": [dom("web1")]}, "node2": {}})
    assert refusal(plan_start, cluster, state, cfg(), spec("web1"), "node2", force=True)


def test_start_on_an_unknown_node_is_a_usage_error():
    cluster, state = world({"node1": {}})
    with pytest.raises(UsageError):
        plan_start(cluster, state, cfg(), spec("web1"), "node9")


def test_start_needs_every_disk_on_the_node():
    cluster, state = world({"node2": {"paths": {"/d/a": True, "/d/b": False}}})
    assert refusal(plan_start, cluster, state, cfg(), spec("web1", disks=["/d/a", "/d/b"]), "node2") == [
        "disk: /d/b does not exist on node2"]


# -- shutdown / destroy --------------------------------------------------------------

def test_shutdown_wait_force_is_three_steps_of_the_right_kinds():
    cluster, _ = world({"node1": {"domains": [dom("web1")]}})
    plan = plan_shutdown(cluster, cfg(), "web1", 30, True)
    assert [s.kind for s in plan.steps] == [StepKind.RUN, StepKind.WAIT_OFF, StepKind.FORCE_OFF]
    assert plan.steps[0].command.text() == f"{V} shutdown web1"
    assert plan.steps[2].command.text() == f"{V} destroy web1"
    plan = plan_shutdown(cluster, cfg(), "web1", 30, False)
    assert plan.steps[1].hint == "add --force to power it off then"


def test_destroy_and_where_running():
    cluster, _ = world({"node1": {"domains": [dom("web1")]}, "node2": {"domains": [dom("web1")]},
                        "node3": {"reachable": False}})
    assert "present on 2 nodes: node1, node2" in refusal(plan_destroy, cluster, cfg(), "web1")[0]
    assert refusal(where_running, cluster, "db1") == [
        "db1 is not running on any node that answered (unreachable, not checked: node3)"]
    cluster, _ = world({"node1": {"domains": [dom("web1")]}})
    assert plan_destroy(cluster, cfg(), "web1").steps[0].command.text() == f"{V} destroy web1"


# -- migrate -----------------------------------------------------------------------

def test_live_migration_takes_what_the_domain_holds_not_what_conf_says():
    """conf/ says 4096 MiB; the guest holds 512 (ballooned): a node with 1000
    MiB free can take it live, as balance would plan it."""
    cluster, state = world({"node1": {"domains": [dom("web1", 512)]},
                            "node2": {"memory": 2024}})
    plan = plan_migrate(cluster, state, cfg(), spec("web1", 4096), "node2", False, 60)
    (step,) = plan.steps
    assert step.kind is StepKind.MIGRATE and step.node == "node1" and step.target == "node2"
    assert "migrate --live --verbose web1 qemu+ssh://root@10.0.0.2/system" in step.command.text()
    # offline, it starts anew from conf/: 4096 MiB do not fit
    text = refusal(plan_migrate, cluster, state, cfg(), spec("web1", 4096), "node2", True, 60)[0]
    assert "web1 needs 4096 MiB" in text


def test_offline_migration_steps():
    cluster, state = world({"node1": {"domains": [dom("web1")]}, "node2": {}})
    plan = plan_migrate(cluster, state, cfg(), spec("web1"), "node2", True, 90)
    assert [(s.node, s.kind) for s in plan.steps] == [
        ("node1", StepKind.RUN), ("node1", StepKind.WAIT_OFF), ("node2", StepKind.RUN)]
    assert plan.steps[1].timeout == 90


@pytest.mark.parametrize("nodes, target, words", [
    ({"node1": {}, "node2": {}}, "node2", ["web1 must run on exactly one node to migrate; it is on no node that answered"]),
    ({"node1": {"domains": [dom("web1")]}, "node2": {"domains": [dom("web1")]}}, "node2",
     ["web1 must run on exactly one node to migrate; it is on node1, node2"]),
    ({"node1": {"domains": [dom("web1")]}, "node2": {}, "node3": {"reachable": False}}, "node2",
     ["node node3 did not answer", "cannot prove web1 runs only once"]),
    ({"node1": {"domains": [dom("web1", state="paused", reason=2)]}, "node2": {}}, "node2",
     ["(a migration is under way)"]),
    ({"node1": {"domains": [dom("web1")]}, "node2": {}}, "node1", ["web1 already runs on node1"]),
    ({"node1": {"domains": [dom("web1")]}, "node2": {"maintenance": True}}, None,
     ["no node can take web1: node2: node node2 is in maintenance"]),
])
def test_migrate_refusals(nodes, target, words):
    cluster, state = world(nodes)
    text = "; ".join(refusal(plan_migrate, cluster, state, cfg(), spec("web1"), target, False, 60))
    for w in words:
        assert w in text


def test_migrate_asks_the_presence_rule_about_silent_nodes():
    """rules.presence, with the source allowed; migrate has no --force, and says nothing of it."""
    cluster, state = world({"node1": {"domains": [dom("web1")]}, "node2": {}, "node3": {"reachable": False}})
    assert refusal(plan_migrate, cluster, state, cfg(), spec("web1"), "node2", False, 60) == [
        "node node3 did not answer (connect timed out after 5 s): web1 might run there "
        "(cannot prove web1 runs only once)"]


def test_best_target_is_the_most_free_memory_after_among_those_that_pass():
    cluster, state = world({
        "node1": {"domains": [dom("web1", 512)]},
        "node2": {"memory": 4096},
        "node3": {"memory": 16384, "maintenance": True},
        "node4": {"memory": 8192, "domains": [dom("x", 1024)]},
        "node5": {"memory": 8192},
    })
    best, rejected = best_target(cluster, state, cfg(), Need("web1", 512, 1), "node1", state.nodes)
    assert best == "node5"
    assert rejected == {"node3": ["node node3 is in maintenance"]}
