"""Hostile or odd things on real nodes: domains named outside havirt's rule
(created by hand with virsh), and host keys recorded by accept-new."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import xml.etree.ElementTree as ET

SPACE = "win10 test"
LONG = "vm-" + "x" * 97          # 100 characters


def odd_domain(lab, tmp_path, node: str, name: str) -> None:
    """A copy of the lab's tiny1 under `name`, started by hand on `node`."""
    tree = ET.parse(lab.xml("tiny1"))
    root = tree.getroot()
    root.find("name").text = name
    for uuid in root.findall("uuid"):
        root.remove(uuid)
    path = tmp_path / f"odd-{node}-{len(name)}.xml"
    tree.write(path)
    lab.create(node, name, xml=path)


def test_domains_named_outside_the_rule_never_stop_havirt(lab, hv, tmp_path):
    assert len(LONG) == 100
    odd_domain(lab, tmp_path, "node1", SPACE)
    odd_domain(lab, tmp_path, "node1", LONG)
    assert lab.running("node1") == {SPACE, LONG}

    for _ in range(2):         # the second scan loads what the first recorded
        r = hv.run("node", "scan")
        assert r.rc == 1 and "Traceback" not in r.err and "internal error" not in r.err, r
        assert "WARNING no-xml win10 test: domain 'win10 test' runs on node1 but conf/ has no XML" in r.out, r
        assert f"WARNING no-xml {LONG}: domain {LONG} runs on node1" in r.out, r
        assert "outside havirt's name rule" in r.out
    state = hv.state()["domains"]
    assert state[SPACE]["node"] == "node1" and state[LONG]["node"] == "node1"

    # every listing, in every format
    for fmt in ("screen", "tsv", "json"):
        for args in (("domain", "list"), ("node", "list"), ("domain", "list", "--running")):
            r = hv.ok("-f", fmt, *args)
            assert r.err == "", r
        r = hv.ok("-f", fmt, "domain", "list", "--node", "node1")
        if fmt == "json":
            assert {d["name"] for d in json.loads(r.out)} == {SPACE, LONG}
        else:
            assert SPACE in r.out and LONG in r.out, r
    r = hv.ok("-f", "tsv", "domain", "list", "--node", "node1")
    lines = r.out.splitlines()          # a header and one row each: a space or tab never adds a column
    assert len(lines) == 3 and lines[0].count("\t") >= 8, r
    assert all(line.count("\t") == lines[0].count("\t") for line in lines), r

    # cluster status counts them
    r = hv.ok("-f", "json", "cluster", "status")
    doc = json.loads(r.out)
    node1 = next(n for n in doc["nodes"] if n["name"] == "node1")
    assert node1["domains"] == 2 and node1["allocated_mib"] >= 64, doc
    assert doc["totals"]["domains"] == 2
    r = hv.ok("cluster", "status")
    assert "node1" in r.out and "imbalance score" in r.out, r

    # import --all takes nothing from node1, says why, and writes nothing
    before = sorted(p.name for p in (hv.home / "conf").iterdir())
    r = hv.ok("domain", "import", "--all", "--from", "node1")
    assert "skipped 'win10 test': its name is outside havirt's name rule" in r.err, r
    assert f"skipped {LONG}: its name is outside" in r.err, r
    assert sorted(p.name for p in (hv.home / "conf").iterdir()) == before

    # a second copy on another node: a double run, reported (and nothing touched)
    odd_domain(lab, tmp_path, "node2", SPACE)
    r = hv.run("-q", "node", "scan")
    assert r.rc == 1, r
    assert ("CRITICAL duplicate win10 test: DOMAIN 'win10 test' RUNS ON 2 NODES AT ONCE: "
            "node1, node2") in r.out, r
    r = hv.run("-v", "cluster", "validate")
    assert r.rc == 1 and "duplicate" in r.out and "virsh destroy 'win10 test'" in r.out, r
    assert hv.state()["domains"][SPACE]["conflict"] == ["node1", "node2"]
    assert lab.where(SPACE) == ["node1", "node2"] and lab.where(LONG) == ["node1"]

    # commands on conf/ domains go on as usual beside them
    hv.yes("domain", "start", "tiny1", "node3")
    assert lab.where("tiny1") == ["node3"]


def test_accept_new_records_hashed_keys_that_ssh_and_havirt_both_read(lab, hv, tmp_path):
    known = tmp_path / "newssh" / "known_hosts"
    hv.configure(ssh={"known_hosts_file": str(known), "host_key_policy": "accept-new"})
    hv.ok("node", "scan")
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    lines = known.read_text().splitlines()
    assert len(lines) == len(lab.nodes) and all(line.startswith("|1|") for line in lines), lines
    assert "10.231.0" not in known.read_text()
    for node in lab.nodes:       # OpenSSH's own tool finds each host in the hashed file
        p = subprocess.run(["ssh-keygen", "-F", lab.address(node), "-f", str(known)],
                           capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
        assert p.returncode == 0 and "found" in p.stdout, p
    # and havirt, now refusing unknown keys, trusts what it recorded
    hv.configure(ssh={"host_key_policy": "reject"})
    r = hv.ok("node", "scan")
    assert all(n["reachable"] for n in hv.state()["nodes"].values()), r



def test_a_domain_named_like_a_scan_marker(lab, hv, tmp_path):
    """libvirt takes a VM named '@@domstats'. Running but not defined, virsh
    shows it only as "Domain: '@@domstats'": counted and reported like any
    domain. Defined, virsh lists its bare name among the scan's own markers,
    where it would have ended the list of domains early (every VM after it
    hidden while the node still counted as answered): its node is unknown
    instead, with the line that says what to do, and no start goes on while
    it is."""
    odd_domain(lab, tmp_path, "node1", "@@domstats")
    odd_domain(lab, tmp_path, "node1", "zz-after")
    r = hv.run("node", "scan")
    assert r.rc == 1 and "Traceback" not in r.err, r
    assert "WARNING no-xml @@domstats: domain @@domstats runs on node1" in r.out, r
    assert "WARNING no-xml zz-after" in r.out, r
    state = hv.state()
    assert state["nodes"]["node1"]["reachable"] and state["domains"]["@@domstats"]["memory_mib"] == 32

    xml = tmp_path / "marker.xml"                 # the running one, made persistent
    xml.write_text(lab.virsh("node1", "dumpxml", "@@domstats", check=True).stdout)
    lab.virsh("node1", "define", str(xml), check=True)
    r = hv.run("node", "scan")
    assert r.rc != 0 and "Traceback" not in r.err, r
    assert "virsh listed a name that starts with '@@'" in r.out + r.err, r
    assert "rename that domain" in r.out + r.err, r
    assert not hv.state()["nodes"]["node1"]["reachable"]

    before = hv.state()["domains"]
    r = hv.run("--yes", "domain", "start", "tiny1", "node2")
    assert r.rc != 0 and "Traceback" not in r.err, r
    assert "node1" in r.err, r
    assert lab.where("tiny1") == [], r
    assert hv.state()["domains"] == before
