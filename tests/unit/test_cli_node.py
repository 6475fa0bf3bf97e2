"""havirt node add / set / list / scan / remove / maintenance, against fake nodes."""

import json

import yaml
from fakes import is_scan


def names_called(fake):
    return sorted(n for n, _ in fake.calls)


# -- add -------------------------------------------------------------------------------

def test_add_records_what_the_probe_saw(fake):
    fake.node("node1", record=False, cpus=8, memory_mib=16384, hostname="kvm1.lan")
    rc, out, err = fake.havirt("node", "add", "node1", "--address", "10.0.0.1", "--memory-cap", "12000")
    assert rc == 0, err
    assert out == "added node1: 10.0.0.1, 8 CPUs, 16384 MiB, libvirt 9.0.0, hostname kvm1.lan\n"
    rec = fake.state().nodes["node1"]
    assert (rec.address, rec.cpus, rec.memory_mib, rec.hostname, rec.libvirt_version) == (
        "10.0.0.1", 8, 16384, "kvm1.lan", "9.0.0")
    assert rec.memory_cap_mib == 12000 and rec.reachable is True and rec.last_scan
    assert rec.user is None and rec.port is None
    assert len(fake.calls) == 1 and is_scan(fake.calls[0][1])


def test_add_address_defaults_to_the_name_and_keeps_user_port(fake):
    fake.node("node1", record=False)
    rc, out, err = fake.havirt("node", "add", "node1", "--user", "admin", "--port", "2222")
    assert rc == 0, err
    rec = fake.state().nodes["node1"]
    assert (rec.address, rec.user, rec.port) == ("node1", "admin", 2222)


def test_add_unreachable_node_is_refused_and_nothing_recorded(fake):
    fake.node("node1")
    fake.node("node2", record=False, reachable=False)
    before = fake.state_file.read_bytes()
    rc, out, err = fake.havirt("node", "add", "node2", "--address", "10.0.0.2")
    assert rc == 4
    assert out == ""
    assert err == "havirt: node node2 unreachable: connect timed out after 5 s\n"
    assert fake.state_file.read_bytes() == before
    assert "node2" not in fake.state().nodes


def test_add_node_whose_libvirt_is_down_is_refused(fake):
    fake.node("node1", record=False, libvirt_up=False)
    rc, out, err = fake.havirt("node", "add", "node1")
    assert rc == 4
    assert err == ("havirt: node node1 unreachable: virsh failed: error: Failed to connect socket to "
                   "'/var/run/libvirt/libvirt-sock': Connection refused\n")
    assert not fake.state_file.exists()


def test_add_twice_is_a_usage_error(fake):
    fake.node("node1")
    before = fake.state_file.read_bytes()
    _, err = fake.refused("node", "add", "node1", code=2)
    assert err == "havirt: node node1 exists already (havirt node set node1 ...)\n"
    assert fake.calls == []
    assert fake.state_file.read_bytes() == before


def test_add_bad_memory_cap(fake):
    fake.node("node1", record=False)
    _, err = fake.refused("node", "add", "node1", "--memory-cap", "lots", code=2)
    assert "a number of MiB from 1 to 4294967296, or 'none'" in err
    assert fake.calls == [] and not fake.state_file.exists()


# -- set -------------------------------------------------------------------------------

def test_set_memory_cap_and_none(fake):
    fake.node("node1")
    rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", "2048")
    assert (rc, out) == (0, "node1: memory_cap_mib=2048\n"), err
    assert fake.state().nodes["node1"].memory_cap_mib == 2048
    rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", "none")
    assert (rc, out) == (0, "node1: memory_cap_mib=None\n"), err
    assert fake.state().nodes["node1"].memory_cap_mib is None
    rc, out, err = fake.havirt("node", "set", "node1", "--address", "10.9.9.9", "--port", "2200")
    assert rc == 0, err
    rec = fake.state().nodes["node1"]
    assert (rec.address, rec.port) == ("10.9.9.9", 2200)
    assert fake.calls == []


def test_set_nothing_to_change(fake):
    fake.node("node1")
    before = fake.state_file.read_bytes()
    _, err = fake.refused("node", "set", "node1", code=2)
    assert "nothing to change: give --address, --user, --port or --memory-cap" in err
    assert fake.state_file.read_bytes() == before


def test_set_unknown_node(fake):
    fake.node("node1")
    _, err = fake.refused("node", "set", "node9", "--memory-cap", "100", code=2)
    assert err == "havirt: unknown node 'node9' (known: node1)\n"
    assert fake.calls == []


# -- list ------------------------------------------------------------------------------

def two_nodes_with_a_domain(fake):
    a = fake.node("node1")
    fake.node("node2", cpus=2, memory_mib=4096)
    fake.records["node2"].memory_cap_mib = 3000
    fake.save_state()
    a.add("web1", memory_mib=512, vcpus=2)
    fake.conf("web1", memory_mib=512, vcpus=2)
    rc, _, err = fake.havirt("node", "scan")
    assert rc == 0, err
    fake.runners.clear()


def test_list_tsv(fake):
    two_nodes_with_a_domain(fake)
    rc, out, err = fake.havirt("-f", "tsv", "node", "list")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == ("name\taddress\tcpus\tmemory_mib\tmemory_cap_mib\tallocated_mib\t"
                        "allocated_vcpus\tdomains\tmaintenance\treachable\tleases\tcontainers\tdown_since\tlast_scan")
    scan = fake.state().nodes["node1"].last_scan
    assert lines[1] == f"node1\t10.0.0.1\t4\t8192\t-\t512\t2\t1\tno\tyes\tno\tyes\t-\t{scan}"
    assert lines[2] == f"node2\t10.0.0.2\t2\t4096\t3000\t0\t0\t0\tno\tyes\tno\tyes\t-\t{scan}"
    assert len(lines) == 3
    assert fake.calls == []          # no SSH for a listing


def test_list_json_keys_are_stable(fake):
    two_nodes_with_a_domain(fake)
    rc, out, err = fake.havirt("-f", "json", "node", "list")
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["node1", "node2"]
    assert list(rows[0]) == ["name", "address", "user", "port", "cpus", "memory_mib", "memory_cap_mib",
                             "usable_mib", "allocated_mib", "allocated_vcpus", "domains", "maintenance",
                             "reachable", "error", "last_scan", "hostname", "libvirt_version",
                             "leases", "lockspace", "lockspace_peers", "containers", "down_since",
                             "down_guard"]
    r1, r2 = rows
    assert (r1["allocated_mib"], r1["allocated_vcpus"], r1["domains"], r1["usable_mib"]) == (512, 2, 1, 7168)
    assert (r2["memory_cap_mib"], r2["usable_mib"], r2["domains"]) == (3000, 3000, 0)
    assert r1["maintenance"] is False and r1["reachable"] is True and r1["error"] is None
    assert r1["libvirt_version"] == "9.0.0" and r1["hostname"] == "node1"


def test_list_screen(fake):
    two_nodes_with_a_domain(fake)
    rc, out, err = fake.havirt("node", "list")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["node", "address", "cpus", "memory", "cap", "mem", "used", "vcpus",
                                "used", "domains", "maint", "up", "leases", "containers", "down", "since",
                                "last", "scan"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:14] == ["node1", "10.0.0.1", "4", "8192", "-", "512", "2", "1", "no", "yes",
                                     "no", "yes", "-", fake.state().nodes["node1"].last_scan]
    assert len(lines) == 4


def test_list_empty(fake):
    assert fake.havirt("node", "list")[:2] == (0, "(none)\n")
    assert fake.havirt("-f", "json", "node", "list")[:2] == (0, "[]\n")


# -- scan ------------------------------------------------------------------------------

def test_scan_one_session_per_node(fake):
    for n in ("node1", "node2", "node3"):
        fake.node(n)
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 0, err
    assert names_called(fake) == ["node1", "node2", "node3"]
    assert all(is_scan(c) for _, c in fake.calls)
    assert "node1" in out and "node3" in out
    fake.runners.clear()
    rc, out, err = fake.havirt("node", "scan", "node2")
    assert rc == 0, err
    assert names_called(fake) == ["node2"]
    assert "node1" not in out and "node2" in out


def test_scan_clean_records_domains(fake):
    a = fake.node("node1")
    fake.node("node2")
    a.add("web1", memory_mib=256, vcpus=2)
    fake.conf("web1")
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 0, err
    d = fake.state().domains["web1"]
    assert (d.node, d.state, d.memory_mib, d.vcpus, d.stale, d.conflict) == ("node1", "running", 256, 2, False, [])


def test_scan_duplicate_is_critical(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.node("node3")
    a.add("web1")
    b.add("web1")
    fake.conf("web1")
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 1
    assert ("CRITICAL duplicate web1: DOMAIN web1 RUNS ON 2 NODES AT ONCE: node1, node2\n") in out
    assert [ln for ln in out.splitlines() if ln.startswith(("CRITICAL", "ERROR", "WARNING"))] == [
        "CRITICAL duplicate web1: DOMAIN web1 RUNS ON 2 NODES AT ONCE: node1, node2"]
    assert fake.state().domains["web1"].conflict == ["node1", "node2"]
    # one session per node, then the two nodes holding a copy are asked once more
    # (a migration's hand-over can look like a double run to a single read)
    assert names_called(fake) == ["node1", "node1", "node2", "node2", "node3"]
    # once one copy is gone the conflict is cleared
    del b.domains["web1"]
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 0, out
    assert fake.state().domains["web1"].conflict == []


def test_scan_during_a_live_migration_is_not_a_duplicate(fake):
    """Running on node1, paused for migration on node2: one guest, moving."""
    a, b = fake.node("node1"), fake.node("node2")
    a.add("web1")
    b.add("web1", state="paused", reason=2)
    fake.conf("web1")
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert (rc, out) == (0, "")
    rec = fake.state().domains["web1"]
    assert rec.node == "node1" and rec.conflict == []


def test_scan_two_running_copies_and_a_paused_one_is_a_duplicate(fake):
    a, b, c = fake.node("node1"), fake.node("node2"), fake.node("node3")
    a.add("web1")
    b.add("web1", state="paused", reason=2)
    c.add("web1")
    fake.conf("web1")
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1
    assert out == "CRITICAL duplicate web1: DOMAIN web1 RUNS ON 3 NODES AT ONCE: node1, node2, node3\n"
    assert fake.state().domains["web1"].conflict == ["node1", "node2", "node3"]


def test_scan_a_paused_copy_not_migrating_is_a_duplicate(fake):
    a, b = fake.node("node1"), fake.node("node2")
    a.add("web1")
    b.add("web1", state="paused", reason=1)   # paused by the user: a second guest
    fake.conf("web1")
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1 and out.startswith("CRITICAL duplicate web1")


def test_scan_running_domain_without_xml_warns(fake):
    a = fake.node("node1")
    a.add("db1")
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 1
    assert "WARNING no-xml db1: domain db1 runs on node1 but conf/ has no db1.xml\n" in out
    assert fake.state().domains["db1"].node == "node1"
    rc, out, err = fake.havirt("-v", "node", "scan")
    assert "(fix: havirt domain import db1 --from node1)" in out


def test_scan_persistent_and_autostart_warn(fake):
    a = fake.node("node1")
    a.add("web1", persistent=True)
    a.add("db1", persistent=True, autostart=True)
    a.add("old1", persistent=True, state="shut off")
    for n in ("web1", "db1", "old1"):
        fake.conf(n)
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1
    assert sorted(out.splitlines()) == [
        "WARNING persistent db1: domain db1 is set to autostart on node1: libvirt could start it behind havirt's back",
        "WARNING persistent old1: domain old1 is defined persistent on node1: libvirt could start it behind havirt's back",
        "WARNING persistent web1: domain web1 is defined persistent on node1: libvirt could start it behind havirt's back",
    ]
    assert getattr(fake.state().domains.get("old1"), "node", None) is None   # shut off: placed nowhere


def test_scan_unreachable_node_keeps_its_domains_stale(fake):
    fake.node("node1")
    b = fake.node("node2", cpus=16, memory_mib=65536)
    b.add("web1", memory_mib=512)
    fake.conf("web1")
    assert fake.havirt("node", "scan")[0] == 0
    before = fake.state()
    b.reachable = False
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1
    assert out == ("ERROR unreachable node2: node node2 did not answer: connect timed out after 5 s; "
                   "last known domains kept as stale: web1\n")
    st = fake.state()
    d = st.domains["web1"]
    assert (d.node, d.state, d.stale, d.memory_mib) == ("node2", "running", True, 512)
    assert d.last_seen == before.domains["web1"].last_seen
    n2, old = st.nodes["node2"], before.nodes["node2"]
    assert (n2.reachable, n2.error) == (False, "connect timed out after 5 s")
    assert (n2.cpus, n2.memory_mib, n2.last_scan, n2.address, n2.hostname) == (
        16, 65536, old.last_scan, old.address, old.hostname)
    # node2 answers again: no longer stale
    b.reachable = True
    assert fake.havirt("node", "scan")[0] == 0
    d = fake.state().domains["web1"]
    assert (d.node, d.stale) == ("node2", False) and fake.state().nodes["node2"].error is None


def test_scan_domain_gone_from_an_answering_node_is_shut_off(fake):
    a = fake.node("node1")
    a.add("web1")
    fake.conf("web1")
    assert fake.havirt("node", "scan")[0] == 0
    del a.domains["web1"]
    assert fake.havirt("node", "scan")[0] == 0
    d = fake.state().domains["web1"]
    assert (d.node, d.state, d.stale) == (None, "shut off", False)


def test_scan_quiet_prints_nothing_when_all_is_well(fake):
    a = fake.node("node1")
    fake.node("node2")
    a.add("web1")
    fake.conf("web1")
    assert fake.havirt("node", "scan", "-q") == (0, "", "")
    assert fake.havirt("-q", "node", "scan") == (0, "", "")
    assert len(fake.calls) == 4


def test_scan_quiet_prints_only_anomalies(fake):
    a = fake.node("node1")
    fake.node("node2", reachable=False)
    a.add("db1")
    rc, out, err = fake.havirt("node", "scan", "-q")
    assert rc == 1
    assert out.splitlines() == [
        "ERROR unreachable node2: node node2 did not answer: connect timed out after 5 s",
        "WARNING no-xml db1: domain db1 runs on node1 but conf/ has no db1.xml",
    ]
    assert err == ""


def test_scan_json(fake):
    a = fake.node("node1")
    a.add("db1")
    rc, out, err = fake.havirt("-f", "json", "node", "scan")
    assert rc == 1
    doc = json.loads(out)
    assert list(doc) == ["nodes", "anomalies"]
    assert doc["anomalies"] == [{"severity": "warning", "kind": "no-xml", "subject": "db1",
                                 "message": "domain db1 runs on node1 but conf/ has no db1.xml",
                                 "fix": "havirt domain import db1 --from node1"}]
    assert doc["nodes"][0]["name"] == "node1"


def test_scan_unknown_node(fake):
    fake.node("node1")
    before = fake.state_file.read_bytes()
    assert fake.refused("node", "scan", "node9", code=2) == ("", "havirt: unknown node 'node9' (known: node1)\n")
    assert fake.calls == [] and fake.state_file.read_bytes() == before


# -- remove ----------------------------------------------------------------------------

def test_remove_refused_while_domains_run(fake):
    a = fake.node("node1")
    fake.node("node2")
    a.add("web1")
    a.add("db1")
    before = fake.state().nodes
    _, err = fake.refused("--yes", "node", "remove", "node1")
    assert err == "havirt: refused: domains run on node1: db1, web1 (migrate or shut them down first)\n"
    assert fake.state().nodes.keys() == before.keys()
    assert names_called(fake) == ["node1"]


def test_remove_empty_node(fake):
    fake.node("node1")
    fake.node("node2")
    rc, out, err = fake.havirt("node", "remove", "node2")
    assert (rc, out) == (0, "removed node2\n"), err
    assert list(fake.state().nodes) == ["node1"]


def test_remove_unreachable_needs_force(fake):
    fake.node("node1")
    b = fake.node("node2")
    b.add("web1")
    fake.conf("web1")
    assert fake.havirt("node", "scan")[0] == 0
    b.reachable = False
    before = fake.state_file.read_bytes()
    _, err = fake.refused("--yes", "node", "remove", "node2")
    assert err == ("havirt: refused: node node2 did not answer (connect timed out after 5 s); "
                   "domains may run there (--force removes it anyway)\n")
    assert "node2" in fake.state().nodes
    assert yaml.safe_load(before)["nodes"].keys() == yaml.safe_load(fake.state_file.read_text())["nodes"].keys()
    rc, out, err = fake.havirt("node", "remove", "node2", "--force")
    assert rc == 0, err
    assert out == ("removed node2; these domains were last seen there and may still run: "
                   "web1 (starting them needs --force)\n")
    st = fake.state()
    assert list(st.nodes) == ["node1"]
    assert st.domains["web1"].node == "node2" and st.domains["web1"].stale
    # a later full scan does not forget it, and a start needs --force
    assert fake.havirt("node", "scan")[0] == 0
    assert fake.state().domains["web1"].node == "node2"
    _, err = fake.refused("--yes", "domain", "start", "web1", "node1")
    assert "web1 was last seen on node2, which is no longer scanned" in err
    assert "web1" not in fake.nodes["node1"].domains
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node1", "--force")
    assert rc == 0, err
    assert fake.state().domains["web1"].node == "node1"


def test_remove_unknown(fake):
    fake.node("node1")
    _, err = fake.refused("--yes", "node", "remove", "node7", code=2)
    assert err == "havirt: unknown node 'node7' (known: node1)\n"
    assert fake.calls == []


# -- maintenance -----------------------------------------------------------------------

def test_maintenance_on_without_evacuation_and_off(fake):
    a = fake.node("node1")
    fake.node("node2")
    a.add("web1")
    rc, out, err = fake.havirt("node", "maintenance", "node1", "on", "--no-evacuate")
    assert (rc, out) == (0, "node node1: maintenance on\n"), err
    assert fake.state().nodes["node1"].maintenance is True
    assert fake.calls == []
    assert "web1" in a.domains
    rc, out, err = fake.havirt("node", "maintenance", "node1", "off")
    assert (rc, out) == (0, "node node1: maintenance off\n"), err
    assert fake.state().nodes["node1"].maintenance is False
    assert fake.calls == []


def test_maintenance_on_prints_the_evacuation_dry_run(fake):
    a = fake.node("node1")
    fake.node("node2")
    a.add("web1", memory_mib=64)
    fake.conf("web1", memory_mib=64)
    rc, out, err = fake.havirt("node", "maintenance", "node1", "on")
    assert rc == 0, err
    assert out.startswith("node node1: maintenance on\nevacuating node1: 1 domain(s) to move\n")
    assert ("ssh root@10.0.0.1 'virsh -c qemu:///system migrate --live --verbose web1 "
            "qemu+ssh://root@10.0.0.2/system --migrateuri tcp://10.0.0.2'\n") in out
    assert "dry run: nothing was changed" in out
    assert "web1" in a.domains
    assert fake.state().nodes["node1"].maintenance is True
    assert all(is_scan(c) for _, c in fake.calls)


def test_maintenance_bad_mode(fake):
    fake.node("node1")
    _, err = fake.refused("--yes", "node", "maintenance", "node1", "maybe", code=2)
    assert "'maybe' is not one of 'on', 'off'" in err
    assert fake.state().nodes["node1"].maintenance is False


def test_maintenance_on_for_an_unreachable_node_sets_the_flag_and_exits_4(fake):
    """The flag only protects, so it is set; the evacuation needs the node: exit 4 (README)."""
    fake.node("node1", reachable=False)
    fake.node("node2")
    rc, out, err = fake.havirt("node", "maintenance", "node1", "on")
    assert fake.state().nodes["node1"].maintenance is True
    assert out == "node node1: maintenance on\n"
    assert err.count("\n") == 1 and err.startswith("havirt: ") and "node1" in err
    assert "connect timed out after 5 s" in err
    assert rc == 4, err
    assert all(is_scan(c) for _, c in fake.calls)


def test_debug_shows_the_traceback(fake):
    fake.node("node1")
    rc, out, err = fake.havirt("--debug", "node", "scan", "node9")
    assert rc == 2
    assert "Traceback (most recent call last)" in err
    assert err.endswith("havirt: unknown node 'node9' (known: node1)\n")


def test_scan_a_handover_seen_by_the_first_read_is_not_a_duplicate(fake):
    """The first read sees the guest running on both ends of a migration that
    is finishing; the second read of those nodes sees it only on the target."""
    from fakes import FakeRunner
    a, b = fake.node("node1"), fake.node("node2")
    a.add("web1")
    b.add("web1", reason=2)          # running, reason migrated
    fake.conf("web1")
    seen = []

    class Handover(FakeRunner):
        def run(self, node, command, **kw):
            if node == "node1" and command.op == "scan":
                seen.append(node)
                if len(seen) == 2:       # the source copy is gone by the second read
                    a.domains.pop("web1", None)
            return super().run(node, command, **kw)

    fake.runner_class = Handover
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert (rc, out) == (0, "")
    rec = fake.state().domains["web1"]
    assert rec.node == "node2" and rec.conflict == []


def test_status_balance_and_evacuation_survive_a_domain_on_two_nodes(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.node("node3")
    for n in (a, b):
        n.add("web1")
    a.add("db1")
    b.add("db1", state="paused", reason=2)      # and one migrating
    fake.conf("web1")
    fake.conf("db1")
    rc, out, err = fake.havirt("cluster", "status")
    assert rc == 0 and "internal error" not in err, err
    assert "CRITICAL duplicate web1" in out
    rc, out, err = fake.havirt("cluster", "balance")
    assert rc == 0 and "internal error" not in err, err
    assert "web1:" not in out.split("score before")[1]           # never moved
    rc, out, err = fake.havirt("node", "maintenance", "node1", "on")
    assert rc == 0 and "blocking: web1: runs on several nodes (not movable)" in out, (out, err)
