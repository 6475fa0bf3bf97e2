"""cluster validate: every kind of finding, and it writes nothing."""

import json

from conftest import domain_xml


def kinds(out):
    return {(f["severity"], f["kind"], f["subject"]) for f in json.loads(out)["findings"]}


def test_clean_cluster_is_consistent_and_nothing_is_written(fake):
    a = fake.node("node1")
    fake.node("node2")
    fake.conf("web1", memory_mib=512)
    a.add("web1", memory_mib=512)
    a.xml["web1"] = domain_xml("web1", memory_mib=512)
    fake.leases()
    assert fake.havirt("node", "scan")[0] == 0
    before = fake.state_file.read_bytes()
    rc, out, err = fake.havirt("cluster", "validate")
    assert (rc, out, err) == (0, "all consistent\n", "")
    assert fake.state_file.read_bytes() == before


def test_leases_findings(fake):
    """A node without leases, a node in another lockspace, a disk no lease can lock."""
    for n in ("node1", "node2", "node3", "node4"):
        fake.node(n)
    fake.leases("node1", "node2")
    fake.leases("node3", lockspace="/local/locks")     # its own folder: sees only itself
    (fake.home / "conf" / "rbd1.xml").write_text(
        "<domain><name>rbd1</name><memory unit='MiB'>64</memory><devices>"
        "<disk type='network' device='disk'><source protocol='rbd' name='pool/rbd1'/></disk>"
        "</devices></domain>")
    fake.havirt("node", "scan")
    rc, out, _ = fake.havirt("-f", "json", "cluster", "validate")
    found = {f["kind"]: f for f in json.loads(out)["findings"] if f["kind"] in
             ("no-leases", "lockspace", "lease-gap")}
    assert rc == 1
    assert kinds(out) >= {("warning", "no-leases", "node4"), ("error", "lockspace", "node1"),
                          ("error", "lockspace", "node2"), ("error", "lockspace", "node3"),
                          ("warning", "lease-gap", "rbd1")}
    assert ("warning", "no-leases", "node1") not in kinds(out)
    assert found["no-leases"]["message"] == ('leases are not in force on node4: qemu.conf has no '
                                             'lock_manager = "lockd"')
    assert "pool/rbd1: a network disk without a local path" in found["lease-gap"]["message"]
    lockspace = [f["message"] for f in json.loads(out)["findings"] if f["subject"] == "node3"
                 and f["kind"] == "lockspace"][0]
    assert lockspace == ("node3 (/local/locks) does not share its lockspace with node1 "
                         "(/shared/locks), node2 (/shared/locks): their leases cannot see each other")


def test_every_finding(fake):
    a = fake.node("node1", memory_mib=2048)
    b = fake.node("node2")
    fake.node("node3").reachable = False
    fake.conf("web1", memory_mib=512, disks=["/srv/web1.img"])
    (fake.home / "conf" / "bad.xml").write_text("<domain><name>bad</name>")
    (fake.home / "conf" / "other.xml").write_text(domain_xml("notother"))
    fake.conf("db1", memory_mib=900)
    a.paths.add("/srv/web1.img")
    a.add("web1", memory_mib=512)
    a.xml["web1"] = domain_xml("web1", memory_mib=1024)       # grown behind conf/'s back
    a.add("db1", memory_mib=900)                                # node1: 1412 of 1024 usable
    a.add("ghost")                                              # no XML in conf/
    b.add("ghost")                                              # and on two nodes
    b.add("pers", state="shut off", persistent=True)
    fake.save_state()
    before = fake.state_file.read_bytes()
    rc, out, err = fake.havirt("-f", "json", "cluster", "validate")
    assert rc == 1
    found = kinds(out)
    assert ("critical", "duplicate", "ghost") in found
    assert ("error", "bad-xml", "bad") in found
    assert ("error", "name-mismatch", "other") in found
    assert ("error", "over-memory", "node1") in found
    assert ("error", "unreachable", "node3") in found
    assert ("warning", "no-xml", "ghost") in found
    assert ("warning", "persistent", "pers") in found
    assert ("warning", "drift", "web1") in found
    assert ("warning", "disk-missing", "web1") in found        # not on node2
    assert ("warning", "state-stale", "web1") in found         # the state never saw it run
    drift = [f for f in json.loads(out)["findings"] if f["kind"] == "drift"][0]
    assert "memory 1024 MiB running, 512 MiB in conf/" in drift["message"]
    assert fake.state_file.read_bytes() == before
    # the screen format: a table with a fix for each finding
    rc, out, _ = fake.havirt("cluster", "validate")
    assert rc == 1 and "havirt domain import web1 --from node1 --force" in out


def test_vcpu_over_limit(fake):
    a = fake.node("node1", cpus=1)
    a.add("big", vcpus=5)
    fake.conf("big", vcpus=5)
    rc, out, _ = fake.havirt("-f", "json", "cluster", "validate")
    assert rc == 1 and ("error", "over-vcpu", "node1") in kinds(out)


def test_n_plus_1_warning_names_what_would_not_restart(fake):
    a, b = fake.node("node1", memory_mib=4096), fake.node("node2", memory_mib=4096)
    fake.leases()
    fake.conf("big", memory_mib=2048)
    fake.conf("big2", memory_mib=2048)
    a.add("big", memory_mib=2048)
    b.add("big2", memory_mib=2048)          # 3072 usable each: neither can take the other's
    fake.havirt("node", "scan")
    rc, out, _ = fake.havirt("-f", "json", "cluster", "validate")
    found = {(f["kind"], f["subject"]): f for f in json.loads(out)["findings"]}
    assert rc == 1
    assert found[("n-plus-1", "node1")]["message"] == (
        "the cluster would not survive the loss of node1: big would not restart (needs 2048 MiB, "
        "most free on an eligible node is 1024 MiB (node2)); 2048 MiB, 1 vCPUs missing")
    assert ("n-plus-1", "node2") in found


def test_a_disk_not_checked_is_neither_seen_nor_missing():
    """rules.disks: a node that answered but did not report a path has not
    checked it; it is said so, not counted as missing (nor as seen)."""
    from facts import spec, world

    from havirt.ops.validate import disk_findings
    specs = {"web1": spec("web1", disks=["/d/a"])}
    cluster, _ = world({"node1": {"paths": {"/d/a": True}}, "node2": {"paths": {}},
                        "node3": {"paths": {"/d/a": False}}})
    found = disk_findings(cluster, specs)
    assert [(f.severity, f.kind) for f in found] == [("warning", "disk-missing"),
                                                    ("warning", "disk-not-checked")]
    assert "missing on node3 (" in found[0].message and "not checked on node2 (" in found[1].message
    cluster, _ = world({"node2": {"paths": {}}, "node3": {"paths": {"/d/a": False}}})
    assert [(f.severity, f.kind) for f in disk_findings(cluster, specs)] == [
        ("warning", "disk-missing"), ("warning", "disk-not-checked")]
    cluster, _ = world({"node3": {"paths": {"/d/a": False}}, "node4": {"reachable": False}})
    assert [(f.severity, f.kind) for f in disk_findings(cluster, specs)] == [("error", "disk-missing")]
