"""Moving domains: live migration, its refusals, evacuation, balance.
Every placement is checked with virsh on every node."""

from __future__ import annotations

import json
import re

from labkit import refused


def once_each(lab, names) -> dict[str, str]:
    """Every domain of `names` runs on exactly one node (virsh): name -> node."""
    running = lab.all_running()
    where = {}
    for name in names:
        nodes = [n for n, s in running.items() if name in s]
        assert len(nodes) == 1, f"{name} runs on {nodes}; nodes run {running}"
        where[name] = nodes[0]
    return where


def score_of(hv) -> float:
    r = hv.ok("cluster", "status")
    m = re.search(r"^imbalance score: (\d+\.\d+)$", r.out, re.M)
    assert m, r
    return float(m.group(1))


# -- 7. live migration ------------------------------------------------------------


def test_live_migration(lab, hv):
    hv.yes("domain", "start", "tiny1", "node1")
    audit_before = hv.audit()
    raw = hv.state_file.read_bytes()

    r = hv.run("domain", "migrate", "tiny1", "node2")          # dry run
    line = ("ssh root@10.231.0.11 'virsh -c qemu:///system migrate --live --verbose --unsafe "
            "tiny1 qemu+ssh://root@10.231.0.12/system --migrateuri tcp://10.231.0.12'")
    assert r.rc == 0 and line in r.out.splitlines() and "dry run" in r.out, r
    assert lab.where("tiny1") == ["node1"]
    assert hv.audit() == audit_before and hv.state_file.read_bytes() == raw

    r = hv.run("--yes", "domain", "migrate", "tiny1", "node2")
    assert r.rc == 0 and "tiny1 moved from node1 to node2" in r.out, r
    assert lab.where("tiny1") == ["node2"]
    d = hv.dom("tiny1")
    assert d["node"] == "node2" and d["state"] == "running" and d["conflict"] == []
    last = hv.audit()[-1]
    assert last["node"] == "node1" and "migrate --live" in last["remote"] and last["exit_code"] == 0

    # no target: havirt picks one (most free memory after the move) and it moves there
    r = hv.run("--yes", "domain", "migrate", "tiny1")
    assert r.rc == 0, r
    m = re.search(r"tiny1 moved from node2 to (node\d)", r.out)
    assert m, r
    assert lab.where("tiny1") == [m.group(1)] and m.group(1) != "node2"
    assert hv.dom("tiny1")["node"] == m.group(1)

    # a domain with a disk on the shared folder (needs migrate.unsafe in the lab)
    hv.yes("domain", "start", "disk1", "node1")
    r = hv.run("--yes", "domain", "migrate", "disk1", "node3")
    assert r.rc == 0 and "disk1 moved from node1 to node3" in r.out, r
    assert lab.where("disk1") == ["node3"]
    assert hv.dom("disk1")["node"] == "node3"


# -- 8. migrate refused -------------------------------------------------------------


def test_migrate_refused(lab, hv):
    hv.yes("domain", "start", "tiny1", "node1")
    hv.yes("domain", "start", "local1", "node1")

    hv.ok("node", "set", "node2", "--memory-cap", "20")
    refused(hv.run("--yes", "domain", "migrate", "tiny1", "node2"),
            "memory", "node2", "20 MiB", "12 MiB short")
    assert lab.where("tiny1") == ["node1"]

    refused(hv.run("--yes", "domain", "migrate", "local1", "node3"),
            "/var/lib/libvirt/images/local1.qcow2 does not exist on node3")
    assert lab.where("local1") == ["node1"]

    hv.ok("node", "maintenance", "node3", "on")
    refused(hv.run("--yes", "domain", "migrate", "tiny1", "node3"), "node node3 is in maintenance")
    assert lab.where("tiny1") == ["node1"]

    # no target: node2 too small, node3 in maintenance -> nowhere to go
    refused(hv.run("--yes", "domain", "migrate", "tiny1"), "no node can take tiny1",
            "node2", "node3")
    assert lab.where("tiny1") == ["node1"]

    refused(hv.run("--yes", "domain", "migrate", "tiny1", "node1"), "already runs on node1")
    refused(hv.run("--yes", "domain", "migrate", "tiny2", "node2"),
            "tiny2 must run on exactly one node")
    hv.ok("domain", "maintenance", "tiny1", "on")
    hv.ok("node", "set", "node2", "--memory-cap", "none")
    refused(hv.run("--yes", "domain", "migrate", "tiny1", "node2"), "domain tiny1 is in maintenance")
    assert lab.where("tiny1") == ["node1"] and lab.where("local1") == ["node1"]
    assert lab.where("tiny2") == []


# -- 9. evacuation --------------------------------------------------------------------


def test_evacuation(lab, hv):
    names = ["tiny1", "tiny2", "disk1"]
    for name in names:
        hv.yes("domain", "start", name, "node1")
    assert lab.running("node1") == set(names)

    # a domain in maintenance blocks the evacuation (shown, never moved)
    hv.ok("domain", "maintenance", "tiny2", "on")
    r = hv.ok("node", "maintenance", "node1", "on")
    assert "blocking: tiny2" in r.out and "evacuating node1: 2 domain(s)" in r.out, r
    hv.ok("domain", "maintenance", "tiny2", "off")
    hv.ok("node", "maintenance", "node1", "off")

    r = hv.ok("node", "maintenance", "node1", "on")                # dry run
    assert "evacuating node1: 3 domain(s) to move" in r.out, r
    migrates = [ln for ln in r.out.splitlines() if ln.startswith("ssh root@10.231.0.11 ")
                and "migrate --live" in ln]
    assert len(migrates) == 3 and "dry run" in r.out, r
    for name in names:
        assert any(f" {name} qemu+ssh://" in ln for ln in migrates), r
    assert lab.running("node1") == set(names)                       # nothing moved
    assert hv.state()["nodes"]["node1"]["maintenance"] is True      # the flag is set at once
    refused(hv.run("--yes", "domain", "start", "tiny3", "node1"), "node node1 is in maintenance")

    r = hv.run("--yes", "node", "maintenance", "node1", "on")
    assert r.rc == 0, r
    assert lab.running("node1") == set()
    where = once_each(lab, names)
    assert set(where.values()) <= {"node2", "node3"}, where
    state = hv.state()["domains"]
    for name, node in where.items():
        assert state[name]["node"] == node and state[name]["stale"] is False, state[name]
        assert f"{name} moved from node1 to {node}" in r.out, r

    hv.ok("node", "maintenance", "node1", "off")
    assert hv.state()["nodes"]["node1"]["maintenance"] is False


# -- 10. balance ------------------------------------------------------------------------


def test_balance(lab, hv):
    for node in lab.nodes:
        hv.ok("node", "set", node, "--memory-cap", "400")
    names = [f"tiny{i}" for i in range(1, 7)]
    for name in names:
        hv.yes("domain", "start", name, "node1")
    assert lab.running("node1") == set(names)
    before = score_of(hv)

    r = hv.run("cluster", "balance")                                  # dry run
    assert r.rc == 0, r
    m1 = re.search(r"^score before: (\d+\.\d+)$", r.out, re.M)
    m2 = re.search(r"^score after:\s+(\d+\.\d+) \((\d+) move\(s\), (\d+) MiB to migrate\)$",
                   r.out, re.M)
    assert m1 and m2, r
    assert abs(float(m1.group(1)) - before) < 1e-3
    moves = re.findall(r"^\s+\d+\. (tiny\d): node1 -> (node\d) \(32 MiB\), score after", r.out, re.M)
    assert len(moves) == int(m2.group(2)) >= 2, r
    assert int(m2.group(3)) == 32 * len(moves), r
    assert float(m2.group(1)) < before
    assert len([ln for ln in r.out.splitlines() if "migrate --live" in ln]) == len(moves)
    assert "dry run" in r.out
    assert lab.running("node1") == set(names)                         # nothing moved

    r = hv.run("--yes", "cluster", "balance")
    assert r.rc == 0, r
    where = once_each(lab, names)
    for name, target in moves:
        assert where[name] == target, (where, moves)
    state = hv.state()["domains"]
    assert {n: state[n]["node"] for n in names} == where
    after = score_of(hv)
    assert after < before, (before, after)
    assert set(where.values()) == set(lab.nodes)

    r = hv.run("cluster", "balance")
    assert r.rc == 0 and "(0 move(s), 0 MiB to migrate)" in r.out and "no move lowers the score" in r.out, r
    assert "migrate --live" not in r.out
    doc = json.loads(hv.run("-f", "json", "cluster", "balance").out)
    assert doc["commands"] == []
    assert once_each(lab, names) == where


def test_n_plus_1_of_real_nodes(lab, hv):
    """cluster status says, for each real node, whether its domains could be
    restarted on the others, and what is missing when not."""
    for node in lab.nodes:
        hv.ok("node", "set", node, "--memory-cap", "64")          # two tiny domains per node
    for name, node in (("tiny1", "node1"), ("tiny2", "node1"), ("tiny3", "node2"),
                       ("tiny4", "node2"), ("tiny5", "node3")):
        hv.yes("domain", "start", name, node)
    doc = json.loads(hv.ok("-f", "json", "cluster", "status").out)
    n1 = doc["n_plus_1"]
    assert n1["ok"] is False and n1["failing"] == lab.nodes, n1
    assert [r["survives_loss"] for r in doc["nodes"]] == [False, False, False]
    loss = n1["nodes"]["node1"]
    assert loss["missing_mib"] == 32 and len(loss["stranded"]) == 1, loss
    assert "needs 32 MiB, most free on an eligible node is 0 MiB" in loss["stranded"][0]["reason"]
    r = hv.ok("cluster", "status")
    assert "N+1: if node1 is lost, 1 domain(s) would not restart (32 MiB, 1 vCPUs missing)" in r.out, r
    r = hv.run("cluster", "validate")
    assert r.rc == 1 and "n-plus-1" in r.out, r

    hv.yes("domain", "destroy", "tiny5")                           # node3 empty: room for two
    doc = json.loads(hv.ok("-f", "json", "cluster", "status").out)
    assert doc["n_plus_1"]["ok"] is True and all(r["survives_loss"] for r in doc["nodes"]), doc
    assert {m["to"] for m in doc["n_plus_1"]["nodes"]["node1"]["restarts"]} == {"node3"}

    # disks count as failover counts them: each node is asked whether it sees
    # them, so a domain on the shared folder restarts on another node
    for name in ("tiny1", "tiny2"):
        hv.yes("domain", "destroy", name)
    hv.yes("domain", "start", "disk1", "node1")
    doc = json.loads(hv.ok("-f", "json", "cluster", "status").out)
    loss = doc["n_plus_1"]["nodes"]["node1"]
    assert loss["survives_loss"] is True and loss["stranded"] == [], loss
    assert [(m["domain"], m["to"]) for m in loss["restarts"]] == [("disk1", "node3")], loss
