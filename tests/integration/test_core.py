"""Core: nodes, import, start (dry run and --yes), refusals, stop, scan anomalies,
cluster status / validate. Every effect is checked with virsh on the nodes."""

from __future__ import annotations

import fcntl
import json
import os
import re
import xml.etree.ElementTree as ET

from labkit import anomaly_lines, refused

# -- 1. node add / list / scan -------------------------------------------------


def nodeinfo(lab, node) -> tuple[int, int]:
    p = lab.virsh(node, "nodeinfo", check=True)
    info = dict(line.split(":", 1) for line in p.stdout.splitlines() if ":" in line)
    cpus = int(info["CPU(s)"].strip())
    mib = int(info["Memory size"].strip().split()[0]) // 1024
    return cpus, mib


def test_node_add_list_scan(lab, hv):
    facts = {n: nodeinfo(lab, n) for n in lab.nodes}

    r = hv.ok("node", "list")
    lines = r.out.splitlines()
    assert lines[0].split()[:4] == ["node", "address", "cpus", "memory"], r
    for node in lab.nodes:
        row = next((ln.split() for ln in lines if ln.split()[:1] == [node]), None)
        assert row is not None, f"{node} missing from node list: {r}"
        cpus, mib = facts[node]
        assert row[1:4] == [lab.address(node), str(cpus), str(mib)], r

    r = hv.ok("-f", "json", "node", "list")
    rows = json.loads(r.out)
    assert [x["name"] for x in rows] == lab.nodes
    for x in rows:
        cpus, mib = facts[x["name"]]
        assert (x["address"], x["cpus"], x["memory_mib"]) == (lab.address(x["name"]), cpus, mib)
        assert x["reachable"] is True and x["error"] is None and x["maintenance"] is False
        assert x["hostname"] == x["name"]          # the node's own UTS hostname
        assert x["usable_mib"] == mib - 1024       # total - reserve.memory_mib
        assert x["domains"] == 0 and x["allocated_mib"] == 0
        assert x["last_scan"] and x["libvirt_version"]

    r = hv.ok("-f", "tsv", "node", "list")
    tsv = r.out.splitlines()
    assert tsv[0].split("\t")[:2] == ["name", "address"] and len(tsv) == 1 + len(lab.nodes), r

    r = hv.run("node", "scan")
    assert r.rc == 0 and not anomaly_lines(r.out) and r.err == "", r
    assert all(n in r.out for n in lab.nodes)
    r = hv.run("node", "scan", "-q")
    assert r.rc == 0 and r.out == "" and r.err == "", r
    r = hv.run("-f", "json", "node", "scan")
    doc = json.loads(r.out)
    assert r.rc == 0 and doc["anomalies"] == [] and len(doc["nodes"]) == len(lab.nodes), r

    # adding a node twice, or one that does not answer, is refused
    r = hv.run("node", "add", "node1", "--address", lab.address("node1"))
    assert r.rc == 2 and "exists" in r.err, r
    r = hv.run("node", "add", "node9", "--address", "10.231.0.99")
    assert r.rc == 4 and r.err.startswith("havirt: ") and "node9" in r.err, r
    assert "node9" not in hv.state()["nodes"]


# -- 2. domain import ----------------------------------------------------------


def test_domain_import(lab, hv):
    lab.create("node1", "tiny1")
    conf = hv.home / "conf" / "tiny1.xml"
    conf.unlink()

    r = hv.ok("domain", "import", "tiny1", "--from", "node1")
    assert "saved" in r.out and conf.exists(), r
    root = ET.fromstring(conf.read_text())
    assert root.tag == "domain" and root.findtext("name") == "tiny1"
    assert int(root.findtext("memory")) == 32 * 1024          # KiB, as libvirt writes it
    assert lab.where("tiny1") == ["node1"]                     # import changes no node

    # the same XML again: nothing differs, accepted
    hv.ok("domain", "import", "tiny1", "--from", "node1")

    # a conf/ file that differs is not overwritten without --force
    changed = conf.read_text().replace("<name>tiny1</name>", "<name>tiny1</name><!-- edited -->")
    conf.write_text(changed)
    r = hv.run("domain", "import", "tiny1", "--from", "node1")
    assert r.rc == 2 and "differs" in r.err and "--force" in r.err, r
    assert conf.read_text() == changed
    r = hv.ok("domain", "import", "tiny1", "--from", "node1", "--force")
    assert "edited" not in conf.read_text()
    assert ET.fromstring(conf.read_text()).findtext("name") == "tiny1"

    # a domain that is not on the node
    r = hv.run("domain", "import", "tiny5", "--from", "node1")
    assert r.rc == 2 and "tiny5" in r.err and "not found" in r.err, r
    assert lab.where("tiny1") == ["node1"]


# -- 3. start: dry run, then --yes ----------------------------------------------


def _comparable(state: dict) -> dict:
    """The state without what a scan refreshes (times)."""
    s = json.loads(json.dumps(state))
    s.pop("updated", None)
    for n in (s.get("nodes") or {}).values():
        n.pop("last_scan", None)
    for d in (s.get("domains") or {}).values():
        d.pop("last_seen", None)
    return s


def test_start_dry_run_then_yes(lab, hv):
    before = _comparable(hv.state())
    raw = hv.state_file.read_bytes()
    r = hv.run("domain", "start", "tiny1", "node2")
    assert r.rc == 0, r
    line = "ssh root@10.231.0.12 'virsh -c qemu:///system create /dev/stdin' < conf/tiny1.xml"
    assert line in r.out.splitlines(), r
    assert "dry run: nothing was changed" in r.out
    assert lab.where("tiny1") == []                      # virsh on every node
    assert not hv.audit_file.exists()                    # no audit line for a dry run
    assert _comparable(hv.state()) == before             # at most scan facts refreshed
    assert hv.state_file.read_bytes() == raw             # README: "no state file" written

    r = hv.run("-f", "json", "domain", "start", "tiny1", "node2")
    doc = json.loads(r.out)
    assert r.rc == 0 and doc["dry_run"] is True and doc["commands"] == [line] and doc["done"] == []
    assert lab.where("tiny1") == []

    r = hv.run("--yes", "domain", "start", "tiny1", "node2")
    assert r.rc == 0 and "tiny1 is running on node2" in r.out, r
    assert lab.where("tiny1") == ["node2"]
    d = hv.dom("tiny1")
    assert d["node"] == "node2" and d["state"] == "running" and d["stale"] is False
    audit = hv.audit()
    assert len(audit) == 1, audit
    assert audit[0]["node"] == "node2" and audit[0]["exit_code"] == 0
    assert audit[0]["remote"] == "virsh -c qemu:///system create /dev/stdin < conf/tiny1.xml"
    r = hv.ok("log")
    assert "create /dev/stdin" in r.out


# -- 4. start refused -----------------------------------------------------------


def test_start_refused_already_running(lab, hv):
    hv.yes("domain", "start", "tiny1", "node1")
    assert lab.where("tiny1") == ["node1"]
    refused(hv.run("--yes", "domain", "start", "tiny1", "node2"), "tiny1 is already running on node1")
    refused(hv.run("--yes", "domain", "start", "tiny1", "node1"), "already running on node1")
    assert lab.where("tiny1") == ["node1"]


def test_start_refused_memory(lab, hv):
    hv.ok("node", "set", "node2", "--memory-cap", "40")
    r = hv.run("--yes", "domain", "start", "disk1", "node2")
    refused(r, "memory", "node2", "40 MiB", "48 MiB", "8 MiB short")
    assert lab.where("disk1") == []
    # beside a running domain: 32 + 32 > 40
    hv.yes("domain", "start", "tiny1", "node2")
    refused(hv.run("--yes", "domain", "start", "tiny2", "node2"), "memory", "24 MiB short")
    assert lab.where("tiny2") == [] and lab.where("tiny1") == ["node2"]
    # the cap removed: fits again
    hv.ok("node", "set", "node2", "--memory-cap", "none")
    hv.yes("domain", "start", "disk1", "node2")
    assert lab.where("disk1") == ["node2"]


def test_start_refused_vcpu_ratio(lab, hv):
    hv.configure(reserve={"vcpu_ratio": 0.5})          # 2 CPUs: one 1-vCPU domain per node
    hv.yes("domain", "start", "tiny1", "node1")
    refused(hv.run("--yes", "domain", "start", "tiny2", "node1"), "vCPUs", "node1", "1.00 per CPU")
    assert lab.where("tiny2") == []


def test_start_refused_disk_missing(lab, hv):
    refused(hv.run("--yes", "domain", "start", "local1", "node2"),
            "/var/lib/libvirt/images/local1.qcow2 does not exist on node2")
    assert lab.where("local1") == []
    hv.yes("domain", "start", "local1", "node1")        # where its disk is: fine
    assert lab.where("local1") == ["node1"]


def test_start_refused_node_unreachable(lab, hv):
    lab.fault("node3", "link-down")
    r = hv.run("--yes", "domain", "start", "tiny1", "node2")
    refused(r, "node node3 did not answer", "--force")
    assert r.seconds < 15, r
    assert lab.where("tiny1") == []                     # lab exec still reaches node3
    r = hv.run("--yes", "domain", "start", "tiny1", "node2", "--force")
    assert r.rc == 0, r
    assert lab.where("tiny1") == ["node2"]
    # the unreachable node itself as target: refused even with --force
    refused(hv.run("--yes", "domain", "start", "tiny2", "node3", "--force"), "node3 is unreachable")
    assert lab.where("tiny2") == []


def test_start_refused_maintenance(lab, hv):
    r = hv.ok("node", "maintenance", "node2", "on")
    assert "maintenance on" in r.out
    refused(hv.run("--yes", "domain", "start", "tiny1", "node2"), "node node2 is in maintenance")
    assert lab.where("tiny1") == []
    hv.ok("node", "maintenance", "node2", "off")

    hv.ok("domain", "maintenance", "tiny1", "on")
    assert hv.dom("tiny1")["maintenance"] is True
    refused(hv.run("--yes", "domain", "start", "tiny1", "node2"), "domain tiny1 is in maintenance")
    assert lab.where("tiny1") == []
    hv.ok("domain", "maintenance", "tiny1", "off")
    hv.yes("domain", "start", "tiny1", "node2")
    assert lab.where("tiny1") == ["node2"]


def test_start_unknown_names(lab, hv):
    r = hv.run("--yes", "domain", "start", "nosuch", "node1")
    assert r.rc == 2 and "unknown domain" in r.err, r
    r = hv.run("--yes", "domain", "start", "tiny1", "node7")
    assert r.rc == 2 and "node7" in r.err, r
    r = hv.run("--yes", "domain", "start", "bad/name", "node1")
    assert r.rc == 2, r
    assert lab.where("tiny1") == []


# -- 5. shutdown / destroy ----------------------------------------------------------


def test_shutdown_and_destroy(lab, hv):
    hv.yes("domain", "start", "tiny1", "node1")
    r = hv.run("--yes", "domain", "shutdown", "tiny1")        # ACPI: accepted, ignored (no OS)
    assert r.rc == 0, r
    assert lab.where("tiny1") == ["node1"]

    r = hv.run("--yes", "domain", "shutdown", "tiny1", "--wait", "3")
    assert r.rc == 1 and "still running" in r.err and "--force" in r.err, r
    assert lab.where("tiny1") == ["node1"]

    r = hv.run("--yes", "domain", "shutdown", "tiny1", "--wait", "3", "--force")
    assert r.rc == 0 and "tiny1 is off on" in r.out, r
    assert lab.where("tiny1") == []
    assert hv.dom("tiny1")["node"] is None

    hv.yes("domain", "start", "tiny1", "node3")
    r = hv.run("domain", "destroy", "tiny1")                  # dry run
    assert r.rc == 0 and "ssh root@10.231.0.13 'virsh -c qemu:///system destroy tiny1'" in r.out, r
    assert lab.where("tiny1") == ["node3"]
    r = hv.run("--yes", "domain", "destroy", "tiny1")
    assert r.rc == 0, r
    assert lab.where("tiny1") == []
    d = hv.dom("tiny1")
    assert d["node"] is None and d["state"] == "shut off"
    r = hv.run("--yes", "domain", "destroy", "tiny1")
    assert r.rc == 3 and "not running" in r.err, r
    r = hv.run("--yes", "domain", "shutdown", "tiny1", "--force")
    assert r.rc == 2, r                                        # --force needs --wait


# -- 6. behind havirt's back -------------------------------------------------------


def test_scan_finds_what_was_done_behind_its_back(lab, hv):
    lab.create("node1", "tiny2")
    lab.create("node2", "tiny2")                       # diskless: libvirt lets it run twice
    assert lab.where("tiny2") == ["node1", "node2"]

    r = hv.run("node", "scan")
    assert r.rc == 1, r
    crit = [ln for ln in r.out.splitlines() if ln.startswith("CRITICAL duplicate tiny2:")]
    assert len(crit) == 1 and "node1" in crit[0] and "node2" in crit[0], r
    assert hv.dom("tiny2")["conflict"] == ["node1", "node2"]

    # a running domain without conf/ XML, a persistent one
    (hv.home / "conf" / "tiny3.xml").unlink()
    lab.create("node3", "tiny3")
    lab.virsh("node3", "define", str(lab.xml("tiny4")), check=True)
    r = hv.run("node", "scan", "-q")
    assert r.rc == 1 and r.err == "", r
    lines = [ln for ln in r.out.splitlines() if ln.strip()]
    assert lines and all(anomaly_lines(ln) for ln in lines), f"-q printed more than anomalies: {r}"
    assert any(ln.startswith("CRITICAL duplicate tiny2") for ln in lines), r
    assert any(ln.startswith("WARNING no-xml tiny3") and "node3" in ln for ln in lines), r
    assert any(ln.startswith("WARNING persistent tiny4") and "node3" in ln for ln in lines), r

    doc = json.loads(hv.run("-f", "json", "node", "scan").out)
    kinds = {(a["severity"], a["kind"], a["subject"]) for a in doc["anomalies"]}
    assert ("critical", "duplicate", "tiny2") in kinds

    # havirt refuses to touch the duplicate
    r = hv.run("--yes", "domain", "start", "tiny2", "node3")
    assert r.rc == 3 and "node1" in r.err and "node2" in r.err, r
    r = hv.run("--yes", "domain", "migrate", "tiny2", "node3")
    assert r.rc == 3, r
    r = hv.run("--yes", "domain", "destroy", "tiny2")
    assert r.rc == 3 and "2 nodes" in r.err, r
    assert lab.where("tiny2") == ["node1", "node2"]


# -- 11. cluster status / validate ---------------------------------------------------


def test_cluster_status_formats_and_validate(lab, hv):
    hv.yes("domain", "start", "tiny1", "node1")
    hv.yes("domain", "start", "disk1", "node2")

    r = hv.ok("cluster", "status")
    rows = {ln.split()[0]: ln.split() for ln in r.out.splitlines() if ln.split()}
    assert all(n in rows for n in lab.nodes) and "TOTAL" in rows, r
    assert re.search(r"^imbalance score: \d+\.\d{4}$", r.out, re.M), r

    r = hv.ok("-f", "tsv", "cluster", "status")
    tsv = [ln.split("\t") for ln in r.out.splitlines()]
    header = tsv[0]
    assert header[0] == "name" and len(tsv) == 1 + len(lab.nodes) + 1, r
    by = {row[0]: dict(zip(header, row)) for row in tsv[1:]}
    assert by["node1"]["domains"] == "1" and by["node1"]["allocated_mib"] == "32"
    assert by["node2"]["allocated_mib"] == "48" and by["TOTAL"]["domains"] == "2"

    r = hv.ok("-f", "json", "cluster", "status")
    doc = json.loads(r.out)
    assert set(doc) == {"nodes", "totals", "score", "n_plus_1", "anomalies"} and doc["anomalies"] == []
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["node1"]["allocated_mib"] == 32 and nodes["node3"]["domains"] == 0
    assert doc["totals"]["allocated_mib"] == 80 and isinstance(doc["score"], float)

    # local1's disk (and the container ctlocal's root) exist only on node1 by design:
    # validate says so (a warning that counts); without them in conf/ the cluster is clean
    r = hv.run("cluster", "validate")
    assert r.rc == 1 and "local1" in r.out and "node2, node3" in r.out, r
    assert "ctlocal" in r.out, r
    (hv.home / "conf" / "local1.xml").unlink()
    (hv.home / "conf" / "ctlocal.xml").unlink()
    r = hv.run("cluster", "validate")
    assert r.rc == 0 and "all consistent" in r.out, r
    doc = json.loads(hv.run("-f", "json", "cluster", "validate").out)
    assert doc == {"findings": [], "ok": True}

    lab.create("node3", "tiny1")                           # behind havirt's back
    state_before = hv.state_file.read_bytes()
    r = hv.run("cluster", "validate")
    assert r.rc == 1 and "tiny1" in r.out and "node1" in r.out and "node3" in r.out, r
    assert hv.state_file.read_bytes() == state_before      # read-only
    doc = json.loads(hv.run("-f", "json", "cluster", "validate").out)
    assert doc["ok"] is False
    assert any(f["severity"] == "critical" and f["subject"] == "tiny1" for f in doc["findings"]), doc
    assert lab.where("tiny1") == ["node1", "node3"]


# -- the lock ---------------------------------------------------------------------------


def test_lock_held_by_another_havirt(lab, hv):
    hv.configure(lock_timeout=1)
    lock = hv.home / "var" / "havirt.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"pid 4242 (root, since now, havirt --yes cluster balance)", 0)
        r = hv.run("--yes", "domain", "start", "tiny1", "node1")
        assert r.rc == 5 and "pid 4242" in r.err and "cluster balance" in r.err and "gave up after 1 s" in r.err, r
        assert lab.where("tiny1") == []
    finally:
        os.close(fd)
    hv.yes("domain", "start", "tiny1", "node1")
    assert lab.where("tiny1") == ["node1"]
