"""record_scan: how a scan is folded into the state, on hand-built facts."""

from facts import dom, spec, world

from havirt.plan.planner_input import what_if_cluster
from havirt.scan.fresh import check_identity
from havirt.scan.record import cluster_from_state, record_scan
from havirt.store.state import DomainRecord


def kinds(findings):
    return [(f.severity, f.kind, f.subject) for f in findings]


def test_domains_are_recorded_where_they_run_and_others_are_off():
    cluster, state = world({"node1": {"domains": [dom("web1", 512, 2)]}, "node2": {}})
    state.domains["db1"] = DomainRecord("db1", node="node2", state="running")
    findings = record_scan(state, cluster, {"web1", "db1"})
    assert findings == []
    web1, db1 = state.domains["web1"], state.domains["db1"]
    assert (web1.node, web1.state, web1.memory_mib, web1.vcpus, web1.stale) == ("node1", "running", 512, 2, False)
    assert web1.last_seen and state.nodes["node1"].last_scan
    assert (db1.node, db1.state) == (None, "shut off")


def test_a_silent_node_keeps_its_domains_as_stale():
    cluster, state = world({"node1": {}, "node2": {"reachable": False}})
    state.domains["db1"] = DomainRecord("db1", node="node2", state="running")
    findings = record_scan(state, cluster, {"db1"})
    assert kinds(findings) == [("error", "unreachable", "node2")]
    assert "last known domains kept as stale: db1" in findings[0].message
    db1 = state.domains["db1"]
    assert (db1.node, db1.state, db1.stale) == ("node2", "running", True)
    assert state.nodes["node2"].reachable is False


def test_a_double_run_is_critical_and_names_every_node():
    cluster, state = world({"node1": {"domains": [dom("web1")]}, "node2": {"domains": [dom("web1")]}})
    findings = record_scan(state, cluster, {"web1"})
    assert kinds(findings) == [("critical", "duplicate", "web1")]
    assert "RUNS ON 2 NODES AT ONCE: node1, node2" in findings[0].message
    assert state.domains["web1"].conflict == ["node1", "node2"]


def test_a_live_migration_is_not_a_double_run_and_the_source_is_recorded():
    cluster, state = world({"node1": {"domains": [dom("web1")]},
                            "node2": {"domains": [dom("web1", state="paused", reason=2)]}})
    assert record_scan(state, cluster, {"web1"}) == []
    assert state.domains["web1"].node == "node1" and state.domains["web1"].conflict == []


def test_persistent_autostart_and_no_xml_are_warnings():
    cluster, state = world({"node1": {"domains": [dom("web1", persistent=True),
                                                  dom("db1", state="shut off", autostart=True)]}})
    findings = record_scan(state, cluster, {"db1"})
    assert kinds(findings) == [("warning", "persistent", "web1"), ("warning", "persistent", "db1"),
                               ("warning", "no-xml", "web1")]
    assert "set to autostart on node1" in findings[1].message


def test_identity_a_node_answering_as_another_host_is_unknown():
    cluster, state = world({"node1": {"hostname": "node1"}, "node2": {"hostname": "node9"}})
    state.nodes["node2"].hostname = "node2"
    check_identity(cluster, state)
    assert cluster.nodes["node1"].reachable and not cluster.nodes["node2"].reachable
    assert "answers as host 'node9', recorded as 'node2'" in cluster.nodes["node2"].error


def test_identity_two_nodes_answering_as_one_host_are_both_unknown():
    cluster, state = world({"node1": {"hostname": "h"}, "node2": {"hostname": "h"}})
    state.nodes["node1"].hostname = state.nodes["node2"].hostname = None
    check_identity(cluster, state)
    assert not cluster.nodes["node1"].reachable and not cluster.nodes["node2"].reachable


def test_the_state_as_a_cluster_for_what_if_planning():
    cluster, state = world({"node1": {"domains": [dom("web1", 512, 2)]}, "node2": {"reachable": False}})
    record_scan(state, cluster, {"web1"})
    again = cluster_from_state(state)
    assert again.nodes["node1"].domains["web1"].memory_mib == 512
    assert again.nodes["node1"].paths == {}                 # the state records no disk paths
    assert not again.nodes["node2"].reachable
    # what-if planning: every disk of conf/ taken as seen, by one decision (rules.disks)
    what_if = what_if_cluster(state, {"web1": spec("web1", disks=["/d/a"])})
    assert what_if.nodes["node1"].paths == {"/d/a": True}
    assert what_if.nodes["node1"].domains["web1"].memory_mib == 512


def test_a_domain_last_seen_on_a_silent_node_and_now_elsewhere_may_run_twice():
    cluster, state = world({"node1": {}, "node2": {"domains": [dom("vol2")]}, "node3": {}})
    record_scan(state, cluster, {"vol2"})
    # node2 cut off; someone starts vol2 by hand on node3
    cluster, _ = world({"node1": {}, "node2": {"reachable": False}, "node3": {"domains": [dom("vol2")]}})
    findings = record_scan(state, cluster, {"vol2"})
    assert kinds(findings) == [("error", "unreachable", "node2"), ("critical", "maybe-twice", "vol2")]
    assert "last known domains kept as stale: vol2" in findings[0].message
    assert findings[1].message == ("DOMAIN vol2 RUNS ON node3 AND MAY STILL RUN ON node2, WHICH DID "
                                   "NOT ANSWER (it was last seen there)")
    rec = state.domains["vol2"]
    assert (rec.node, rec.stale, rec.maybe_on) == ("node3", False, ["node2"])
    # the copy on node3 destroyed: vol2 is still where it was last seen, on node2
    cluster, _ = world({"node1": {}, "node2": {"reachable": False}, "node3": {}})
    assert kinds(record_scan(state, cluster, {"vol2"})) == [("error", "unreachable", "node2")]
    assert (rec.node, rec.stale, rec.state, rec.maybe_on) == ("node2", True, "running", [])
    # node2 answers again, without it: now it is off
    cluster, _ = world({"node1": {}, "node2": {}, "node3": {}})
    assert record_scan(state, cluster, {"vol2"}) == []
    assert (rec.node, rec.state, rec.stale) == (None, "shut off", False)


def test_maybe_twice_ends_when_the_silent_node_answers():
    cluster, state = world({"node2": {"domains": [dom("vol2")]}, "node3": {}})
    record_scan(state, cluster, {"vol2"})
    cluster, _ = world({"node2": {"reachable": False}, "node3": {"domains": [dom("vol2")]}})
    record_scan(state, cluster, {"vol2"})
    cluster, _ = world({"node2": {}, "node3": {"domains": [dom("vol2")]}})
    assert record_scan(state, cluster, {"vol2"}) == []
    assert state.domains["vol2"].maybe_on == [] and state.domains["vol2"].node == "node3"
