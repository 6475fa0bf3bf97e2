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
    assert fake.havirt("node", "scan")[0] == 0
    before = fake.state_file.read_bytes()
    rc, out, err = fake.havirt("cluster", "validate")
    assert (rc, out, err) == (0, "all consistent\n", "")
    assert fake.state_file.read_bytes() == before


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
