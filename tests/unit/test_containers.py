"""Containers (<domain type='lxc'>, libvirt's LXC driver) beside VMs, on the fake cluster."""

import json

import pytest
from conftest import domain_xml
from fakes import NO_LXC, refused

from havirt.errors import ParseError
from havirt.parse.domxml import parse_domain_xml
from havirt.parse.virsh import LXC, NodeFacts, parse_dominfo, parse_lxc

LXC_URI = "lxc:///system"


def container_xml(name, memory_mib=64, vcpus=1, root="/srv/ct/root"):
    return (f"<domain type='lxc'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
            f"<vcpu>{vcpus}</vcpu><os><type>exe</type><init>/bin/init</init></os><devices>"
            f"<filesystem type='mount'><source dir='{root}'/><target dir='/'/></filesystem>"
            "<console type='pty'/></devices></domain>")


def conf_container(fake, name, **kw):
    (fake.home / "conf" / f"{name}.xml").write_text(container_xml(name, **kw))


def three(fake, **kw):
    nodes = [fake.node(n, **kw) for n in ("node1", "node2", "node3")]
    for n in nodes:
        n.paths.add("/srv/ct/root")
    return nodes


DOMINFO = ("Id:             4321\nName:           ct1\nUUID:           6a1f\nOS Type:        exe\n"
           "State:          running\nCPU(s):         2\nCPU time:       0.1s\n"
           "Max memory:     65536 KiB\nUsed memory:    428 KiB\nPersistent:     no\n"
           "Autostart:      disable\nManaged save:   no\n")


# -- parsing -------------------------------------------------------------------------

def test_a_container_definition_and_its_root():
    spec = parse_domain_xml(container_xml("ct1", root="/srv/ct/ct1"))
    assert spec.container and spec.driver == LXC and spec.disks == ["/srv/ct/ct1"]
    assert (spec.memory_mib, spec.vcpus) == (64, 1)
    assert not parse_domain_xml(domain_xml("web1")).container


def test_dominfo_holds_the_memory_limit():
    d = parse_dominfo("ct1", DOMINFO)
    assert (d.name, d.state, d.memory_mib, d.vcpus, d.container, d.active) == \
        ("ct1", "running", 64, 2, True, True)
    with pytest.raises(ParseError, match="state"):
        parse_dominfo("ct1", DOMINFO.replace("running", "dancing"))


def lxc_sections(connect="", listed="", **info):
    """The LXC sections of a scan: what connect said, the list, dominfo by name."""
    return {"lxc-connect": connect, "lxc-list": listed, "lxc-end": "",
            **{f"lxc-domain {k}": v for k, v in info.items()}}


def test_no_lxc_driver_offers_nothing_any_other_failure_is_unknown():
    facts = NodeFacts("node1")
    assert parse_lxc(lxc_sections(NO_LXC, "web1\n"), facts) is None    # the list: the VMs' connection
    assert facts.lxc is False and "no connection driver" in facts.lxc_error and not facts.domains
    facts = NodeFacts("node1")
    err = parse_lxc(lxc_sections("error: internal error: no cgroup backend available"), facts)
    assert err and "no cgroup backend" in err
    facts = NodeFacts("node1")
    err = parse_lxc(lxc_sections("", "error: operation failed: busy\n"), facts)
    assert err == "libvirt's LXC driver failed: error: operation failed: busy"
    facts = NodeFacts("node1")
    facts.domains["x"] = parse_dominfo("x", DOMINFO)
    facts.domains["x"].driver = "qemu"
    assert parse_lxc(lxc_sections("", "x\ngone\n", x=DOMINFO, gone="error: failed to get domain 'gone'"),
                     facts) is None
    assert facts.lxc and [d.driver for d in facts.named("x")] == ["qemu", LXC]   # never hidden
    assert "gone" not in facts.domains


def test_a_listed_container_without_its_dominfo_or_no_lxc_answer_is_unknown():
    facts = NodeFacts("node1")
    assert parse_lxc(lxc_sections("", "ct1\nct2\n", ct1=DOMINFO), facts) == \
        "libvirt's LXC driver failed: no dominfo of the container 'ct2' it listed"
    facts = NodeFacts("node1")
    assert parse_lxc({"lxc-connect": "", "lxc-list": "ct1\n"}, facts) == \
        "libvirt's LXC driver did not answer (virsh ended before it)"


# -- start, stop, console ------------------------------------------------------------

def test_start_reaches_the_lxc_driver_and_counts(fake):
    a, _, _ = three(fake)
    conf_container(fake, "ct1")
    rc, out, err = fake.havirt("--yes", "domain", "start", "ct1", "node1")
    assert rc == 0, err
    assert "ct1" in a.containers and "ct1" not in a.domains
    assert ("node1", f"virsh -c {LXC_URI} create /dev/stdin") in fake.calls
    doc = json.loads(fake.havirt("-f", "json", "cluster", "status")[1])
    node1 = next(n for n in doc["nodes"] if n["name"] == "node1")
    assert (node1["allocated_mib"], node1["domains"], node1["containers"]) == (64, 1, True)
    assert fake.state().domains["ct1"].container is True
    refused(fake, ["--yes", "domain", "start", "ct1", "node2"], 3, "ct1 is already running on node1")


def test_start_where_the_driver_is_missing_is_refused_with_the_reason(fake):
    three(fake)
    fake.nodes["node2"].lxc = False
    conf_container(fake, "ct1")
    fake.havirt("node", "scan")
    err = refused(fake, ["--yes", "domain", "start", "ct1", "node2"], 3, "node2 offers none")
    assert "no connection driver available" in err
    # a VM still starts there, and the scan did not fail
    fake.conf("web1")
    assert fake.havirt("--yes", "domain", "start", "web1", "node2")[0] == 0
    assert fake.state().nodes["node2"].containers is False


def test_a_broken_lxc_driver_makes_the_node_unknown(fake):
    three(fake)
    fake.nodes["node3"].lxc_broken = "error: operation failed: the LXC driver is busy"
    conf_container(fake, "ct1")
    fake.havirt("node", "scan")
    out, err = fake.refused("--yes", "domain", "start", "ct1", "node1")   # the scan is recorded
    assert "node node3 did not answer (libvirt's LXC driver failed: error: operation failed" in err
    assert "ct1" not in fake.nodes["node1"].containers


def test_stop_destroy_reboot_console_use_the_lxc_uri(fake):
    a, _, _ = three(fake)
    conf_container(fake, "ct1")
    a.add_container("ct1", memory_mib=64)
    fake.havirt("node", "scan")
    rc, out, _ = fake.havirt("domain", "shutdown", "ct1")
    assert f"virsh -c {LXC_URI} shutdown ct1" in out
    rc, out, _ = fake.havirt("domain", "reboot", "ct1")
    assert rc == 0 and f"virsh -c {LXC_URI} reboot ct1" in out
    refused(fake, ["domain", "reset", "ct1"], 3, "libvirt's LXC driver has no reset")
    assert fake.havirt("--yes", "domain", "destroy", "ct1")[0] == 0
    assert "ct1" not in a.containers


def test_vm_only_commands_are_refused_for_a_container(fake):
    a, _, _ = three(fake)
    conf_container(fake, "ct1")
    a.add_container("ct1", memory_mib=64)
    fake.havirt("node", "scan")
    for args in (["domain", "set", "ct1", "--memory", "32"], ["domain", "snapshot", "ct1", "list"],
                 ["domain", "detach-disk", "ct1", "vdb"]):
        err = refused(fake, args, 3, "ct1 is a container")
        assert "is for virtual machines" in err


# -- moves ---------------------------------------------------------------------------

def test_live_migration_is_refused_offline_moves_it(fake):
    a, b, _ = three(fake)
    conf_container(fake, "ct1")
    a.add_container("ct1", memory_mib=64)
    fake.havirt("node", "scan")
    err = refused(fake, ["--yes", "domain", "migrate", "ct1", "node2"], 3,
                  "ct1 is a container: libvirt cannot migrate a running container; use --offline")
    assert err.count("\n") == 1
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "ct1", "node2", "--offline", "--timeout", "5")
    assert rc == 0 and "ct1 moved from node1 to node2" in out, err
    assert "ct1" in b.containers and "ct1" not in a.containers


def test_evacuation_moves_containers_offline_and_vms_live(fake):
    a, b, c = three(fake)
    conf_container(fake, "ct1")
    fake.conf("web1", memory_mib=512)
    a.add_container("ct1", memory_mib=64)
    a.add("web1", memory_mib=512)
    rc, out, err = fake.havirt("--yes", "node", "maintenance", "node1", "on")
    assert rc == 0, (out, err)
    assert a.containers == {} and a.domains == {}
    assert sum("ct1" in n.containers for n in (b, c)) == 1
    assert sum("web1" in n.domains for n in (b, c)) == 1


def test_balance_never_moves_a_container(fake):
    a, _, _ = three(fake)
    for i in range(4):
        conf_container(fake, f"ct{i}", memory_mib=1024)
        a.add_container(f"ct{i}", memory_mib=1024)
    rc, out, err = fake.havirt("-f", "json", "cluster", "balance")
    assert rc == 0, err
    assert json.loads(out)["moves"] == []


# -- the promise across kinds --------------------------------------------------------

def test_a_vm_and_a_container_of_one_name_are_a_double_run(fake):
    a, b, _ = three(fake)
    fake.conf("x")
    a.add("x", memory_mib=100)
    b.add_container("x", memory_mib=64)
    rc, out, _ = fake.havirt("-q", "node", "scan")
    assert rc == 1 and "RUNS ON 2 NODES AT ONCE: node1, node2" in out, out


def test_a_vm_and_a_container_of_one_name_on_one_node_both_count(fake):
    a, _, _ = three(fake)
    fake.conf("x")
    a.add("x", memory_mib=100)
    a.add_container("x", memory_mib=64)
    rc, out, _ = fake.havirt("-q", "node", "scan")
    assert rc == 1 and "CRITICAL duplicate x" in out, out
    # admission counts both: 7168 MiB usable, 100 + 64 held
    conf_container(fake, "big", memory_mib=7168 - 100)
    refused(fake, ["--yes", "domain", "start", "big", "node1"], 3,
            "164 MiB are allocated to 2 running domain(s), big needs 7068 MiB: 64 MiB short")


# -- failover -------------------------------------------------------------------------

def test_failover_restarts_a_container_only_where_containers_run_and_never_under_leases(fake):
    a, b, c = three(fake)
    fake.leases()
    b.lxc = False                        # node2 offers no containers
    conf_container(fake, "ct1")
    c.add_container("ct1", memory_mib=64)
    fake.havirt("node", "scan")
    c.reachable = False                  # powered off: every process gone
    c.containers.clear()
    # leases guard the VMs of node3, never a container: it would stay down, said why
    rc, out, err = fake.havirt("node", "failover", "node3")
    assert rc == 0 and "guard: leases" in out, (out, err)
    assert "ct1" in out and "leases lock only the disks of virtual machines" in out, out
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3", "--confirm-off")
    assert rc == 0, (out, err)
    assert "ct1" in a.containers and "ct1" not in b.containers and "ct1" not in b.domains
    assert ("node1", f"virsh -c {LXC_URI} create /dev/stdin") in fake.calls
