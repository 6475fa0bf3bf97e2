"""Containers (libvirt's LXC driver) beside VMs, under the same promise: the
lab's ct1 and ct2 (root on the shared folder) and ctlocal (root only node1
sees). Every effect is checked on the nodes with `virsh -c lxc:///system`."""

from __future__ import annotations

import json

from labkit import LXC_URI, refused, wait_until
from test_guests import Pty


def creates(hv, name: str) -> list[str]:
    """The nodes where havirt's audit log shows a successful start of `name`."""
    return [e["node"] for e in hv.audit() if e["exit_code"] == 0
            and e["remote"] == f"virsh -c {LXC_URI} create /dev/stdin < conf/{name}.xml"]


def test_start_is_refused_where_it_runs_or_does_not_fit_and_counts_in_the_allocation(lab, hv):
    r = hv.run("--yes", "domain", "start", "ct1", "node1")
    assert r.rc == 0 and "ct1 is running on node1" in r.out, r
    assert lab.containers_where("ct1") == ["node1"]
    assert lab.running("node1") == set()                       # not a VM

    # a second start elsewhere: the promise
    refused(hv.run("--yes", "domain", "start", "ct1", "node2"), "ct1 is already running on node1")
    assert lab.containers_where("ct1") == ["node1"]

    # the scan counts its memory in node1's allocation, and says the nodes offer containers
    hv.ok("node", "scan")
    doc = json.loads(hv.ok("-f", "json", "cluster", "status").out)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["node1"]["allocated_mib"] == 64 and nodes["node1"]["domains"] == 1, doc
    assert all(n["containers"] is True for n in doc["nodes"]), doc
    assert "containers" in hv.ok("node", "list").out

    # where it does not fit: refused with the numbers
    hv.ok("node", "set", "node2", "--memory-cap", "80")
    hv.yes("domain", "start", "tiny1", "node2")
    refused(hv.run("--yes", "domain", "start", "ct2", "node2"),
            "memory: node2 can give domains 80 MiB (cap 80 MiB), 32 MiB are allocated to 1 "
            "running domain(s), ct2 needs 64 MiB: 16 MiB short")
    assert lab.containers_where("ct2") == []
    # its root is only on node1: refused on node3
    refused(hv.run("--yes", "domain", "start", "ctlocal", "node3"), "ctlocal", "node3")
    assert lab.containers_where("ctlocal") == []


def test_a_container_started_by_hand_elsewhere_is_a_double_run(lab, hv):
    hv.yes("domain", "start", "ct1", "node1")
    lab.virsh("node3", "create", str(lab.xml("ct1")), uri=LXC_URI, check=True)
    assert lab.containers_where("ct1") == ["node1", "node3"]
    r = hv.run("-q", "node", "scan")
    assert r.rc == 1, r
    assert "CRITICAL duplicate ct1: DOMAIN ct1 RUNS ON 2 NODES AT ONCE: node1, node3" in r.out, r


def test_migrate_is_refused_live_and_offline_moves_it_once(lab, hv):
    hv.yes("domain", "start", "ct1", "node1")
    r = hv.run("--yes", "domain", "migrate", "ct1", "node2")
    refused(r, "ct1 is a container: libvirt cannot migrate a running container; use --offline")
    assert r.err.count("\n") == 1, r
    assert lab.containers_where("ct1") == ["node1"]

    r = hv.run("--yes", "domain", "migrate", "ct1", "node2", "--offline")
    assert r.rc == 0 and "ct1 moved from node1 to node2" in r.out, r
    assert lab.containers_where("ct1") == ["node2"]
    assert creates(hv, "ct1") == ["node1", "node2"]            # started once there, by havirt
    assert hv.dom("ct1")["node"] == "node2"


def test_node_maintenance_moves_containers_and_vms_each_once(lab, hv):
    for name in ("ct1", "ct2", "tiny1", "tiny2"):
        hv.yes("domain", "start", name, "node1")
    r = hv.ok("node", "maintenance", "node1", "on")               # dry run: what --yes runs
    assert "evacuating node1: 4 domain(s) to move" in r.out, r
    assert f"virsh -c {LXC_URI} shutdown ct1" in r.out and "migrate --live" in r.out, r
    hv.ok("node", "maintenance", "node1", "off")

    r = hv.run("--yes", "node", "maintenance", "node1", "on")
    assert r.rc == 0, r
    for ct in ("ct1", "ct2"):
        where = lab.containers_where(ct)
        assert len(where) == 1 and where != ["node1"], (ct, where, r)
        assert creates(hv, ct) == ["node1", where[0]], hv.audit()
    for vm in ("tiny1", "tiny2"):
        where = lab.where(vm)
        assert len(where) == 1 and where != ["node1"], (vm, where, r)
    assert lab.running("node1") == set() and lab.running("node1", LXC_URI) == set()


def test_shutdown_destroy_console_and_info(lab, hv):
    hv.yes("domain", "start", "ct1", "node2")
    r = hv.ok("domain", "info", "ct1")
    assert "running on node2" in r.out and "container" in r.out, r

    term = Pty(hv.argv("domain", "console", "ct1"), str(hv.home))
    try:
        term.expect("Escape character", 30)
        term.ask("echo ct-$((6*7))", "ct-42")
        term.type("\x1d")
        assert term.wait(20) == 0
    finally:
        term.close()

    r = hv.run("--yes", "domain", "shutdown", "ct1", "--wait", "20")
    assert r.rc == 0, r
    assert wait_until(lambda: lab.containers_where("ct1") == [], 10)

    hv.yes("domain", "start", "ct2", "node3")
    assert lab.containers_where("ct2") == ["node3"]
    r = hv.run("--yes", "domain", "destroy", "ct2")
    assert r.rc == 0 and "ct2 is off on node3" in r.out, r
    assert lab.containers_where("ct2") == []
