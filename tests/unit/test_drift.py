"""The running definition against conf/: one comparison, three sources (drift.py)."""

import json

import pytest
from conftest import domain_xml

from havirt.parse.domxml import DomainSpec
from havirt.remote import commands as remote
from havirt.rules.drift import definition_drift, recorded_drift
from havirt.store.state import DomainRecord


def spec(mem=512, vcpus=1, disks=(), interfaces=()):
    return DomainSpec(name="web1", memory_mib=mem, vcpus=vcpus, disks=list(disks),
                      interfaces=list(interfaces))


@pytest.mark.parametrize("live, aspects", [
    (spec(), []),
    (spec(mem=1024), ["memory"]),
    (spec(vcpus=2), ["vcpus"]),
    (spec(disks=["/b"]), ["disks"]),
    (spec(mem=256, vcpus=4, disks=["/b"]), ["memory", "vcpus", "disks"]),
])
def test_definition_drift_names_each_aspect(live, aspects):
    conf = spec()
    assert [d.aspect for d in definition_drift(conf, live)] == aspects


def test_a_mac_counts_only_where_conf_fixes_one():
    made_up = spec(interfaces=["bridge:br0:52:54:00:aa:bb:cc"])
    assert definition_drift(spec(interfaces=["bridge:br0:"]), made_up) == []
    assert [d.aspect for d in definition_drift(spec(interfaces=["bridge:br1:"]), made_up)] \
        == ["interfaces"]
    fixed = spec(interfaces=["bridge:br0:52:54:00:00:00:01"])
    assert [d.aspect for d in definition_drift(fixed, made_up)] == ["interfaces"]


def test_recorded_drift_compares_only_what_was_recorded():
    conf = spec(mem=512, disks=["/a"])
    rec = DomainRecord(name="web1", node="node1", state="running", memory_mib=512, vcpus=1)
    assert recorded_drift(rec, conf) == []                 # disks never read: not compared
    rec.disks = ["/b"]
    assert [d.message for d in recorded_drift(rec, conf)] == ["disks ['/b'] running, ['/a'] in conf/"]
    rec.memory_mib = 1024
    assert [d.aspect for d in recorded_drift(rec, conf)] == ["memory", "disks"]
    rec.node, rec.state = None, "shut off"                 # not running: nothing to compare
    assert recorded_drift(rec, conf) == []


def test_the_scan_reads_the_live_xml_of_named_domains_only():
    from pathlib import Path

    from havirt.store.config import load_config
    cfg = load_config(Path("/nonexistent"))
    script = remote.scan_script(cfg, (), ["web 1", "db1"]).text()
    assert "for d in db1 'web 1'; do printf '@@xml %s\\n' \"$d\"; " \
           "virsh -c qemu:///system dumpxml --domain \"$d\" 2>/dev/null || " \
           "virsh -c lxc:///system dumpxml --domain \"$d\" 2>/dev/null; done" in script
    assert "list --name" not in script.split("@@end")[1]   # not every running domain
    assert remote.scan_script(cfg) == remote.scan_script(cfg, (), [])


def drift_of(fake, name):
    rc, out, err = fake.havirt("-f", "json", "domain", "list")
    assert rc == 0, err
    row = next(r for r in json.loads(out) if r["name"] == name)
    return row["drift"], row["drift_detail"]


def test_domain_list_shows_drift_after_an_edit_of_conf_without_ssh(fake):
    node = fake.node("node1")
    fake.conf("web1", memory_mib=512, disks=["/srv/a.img"])
    node.paths.add("/srv/a.img")
    assert fake.havirt("--yes", "domain", "start", "web1", "node1")[0] == 0
    # the check after the start read the running definition in its one session
    assert fake.state().domains["web1"].disks == ["/srv/a.img"]
    fake.runners.clear()
    assert drift_of(fake, "web1") == ([], [])
    fake.conf("web1", memory_mib=1024, disks=["/srv/b.img"])
    aspects, detail = drift_of(fake, "web1")
    assert aspects == ["memory", "disks"]
    assert detail[0] == "memory 512 MiB running, 1024 MiB in conf/"
    assert fake.calls == []                                # domain list opened no session
    rc, out, _ = fake.havirt("domain", "list")
    assert "memory,disks" in out


def test_a_change_made_on_the_node_shows_at_the_next_scan(fake):
    node = fake.node("node1")
    fake.conf("web1", memory_mib=512, vcpus=1)
    node.add("web1", memory_mib=512, vcpus=1)
    fake.havirt("node", "scan")
    assert drift_of(fake, "web1")[0] == []
    node.domains["web1"].vcpus = 2                         # virsh setvcpus behind havirt's back
    fake.havirt("node", "scan")
    assert drift_of(fake, "web1")[0] == ["vcpus"]


def test_what_was_read_is_forgotten_when_the_domain_stops(fake):
    node = fake.node("node1")
    fake.conf("web1")
    assert fake.havirt("--yes", "domain", "start", "web1", "node1")[0] == 0
    assert fake.state().domains["web1"].interfaces == []
    assert fake.havirt("--yes", "domain", "destroy", "web1")[0] == 0
    rec = fake.state().domains["web1"]
    assert (rec.disks, rec.interfaces) == (None, None)
    node.add("web1")
    node.xml["web1"] = domain_xml("web1", disks=["/other"])   # started by hand, elsewhere defined
    fake.havirt("node", "scan")
    assert fake.state().domains["web1"].disks is None          # a plain scan does not read XML


def test_after_a_migration_the_running_definition_is_read_on_the_target(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1", disks=["/srv/a.img"])
    a.paths.add("/srv/a.img")
    b.paths.add("/srv/a.img")
    a.add("web1")
    a.xml["web1"] = domain_xml("web1", disks=["/srv/a.img", "/srv/hot.img"])   # attached live
    assert fake.havirt("--yes", "domain", "migrate", "web1", "node2")[0] == 0
    assert fake.state().domains["web1"].disks == ["/srv/a.img", "/srv/hot.img"]
    assert drift_of(fake, "web1")[0] == ["disks"]
    assert fake.havirt("--yes", "domain", "migrate", "web1", "node1", "--offline")[0] == 0
    assert fake.state().domains["web1"].disks == ["/srv/a.img"]      # started anew from conf/
    assert drift_of(fake, "web1")[0] == []
