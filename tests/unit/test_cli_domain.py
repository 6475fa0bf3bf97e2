"""havirt domain list / import / shutdown / destroy / migrate / maintenance, on fake nodes."""

import json

from conftest import domain_xml

V = "virsh -c qemu:///system"


def audit(fake):
    p = fake.home / "var" / "audit.log"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


# -- list ------------------------------------------------------------------------------

def listing_setup(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1", memory_mib=512, vcpus=2)
    fake.conf("db1", memory_mib=256)
    a.add("web1", memory_mib=512, vcpus=2)
    b.add("noxml1", memory_mib=64)
    assert fake.havirt("node", "scan")[0] == 1      # noxml1 has no conf/ file
    fake.runners.clear()
    return a, b


def test_list_tsv_all(fake):
    listing_setup(fake)
    rc, out, err = fake.havirt("-f", "tsv", "domain", "list")
    assert rc == 0, err
    seen = fake.state().domains["web1"].last_seen
    assert out.splitlines() == [
        "name\tstate\tnode\tmemory_mib\tvcpus\tmaintenance\txml\tdrift\tbase_of\tstale\tlast_seen",
        "db1\tshut off\t-\t256\t1\tno\tyes\t-\t-\tno\t-",
        f"noxml1\trunning\tnode2\t64\t1\tno\tno\t-\t-\tno\t{seen}",
        f"web1\trunning\tnode1\t512\t2\tno\tyes\t-\t-\tno\t{seen}",
    ]
    assert fake.calls == []


def test_list_filters(fake):
    listing_setup(fake)

    def names(*args):
        rc, out, err = fake.havirt("-f", "json", "domain", "list", *args)
        assert rc == 0, err
        return [r["name"] for r in json.loads(out)]
    assert names() == ["db1", "noxml1", "web1"]
    assert names("--node", "node1") == ["web1"]
    assert names("--node", "node2") == ["noxml1"]
    assert names("--running") == ["noxml1", "web1"]
    assert names("--stopped") == ["db1"]
    assert names("--node", "node1", "--stopped") == []
    assert fake.calls == []


def test_list_json_keys(fake):
    listing_setup(fake)
    rows = json.loads(fake.havirt("-f", "json", "domain", "list", "--node", "node1")[1])
    assert list(rows[0]) == ["name", "kind", "state", "node", "memory_mib", "vcpus", "maintenance", "xml", "xml_error",
                             "stale", "conflict", "last_seen", "base_of", "drift", "drift_detail"]
    assert rows[0]["memory_mib"] == 512 and rows[0]["conflict"] == [] and rows[0]["kind"] == "vm"


def test_list_with_a_broken_conf_file_is_not_fatal_and_flags_it(fake):
    listing_setup(fake)
    (fake.home / "conf" / "broken.xml").write_text("<domain><name>broken</name>")
    (fake.home / "conf" / "nomem.xml").write_text("<domain><name>nomem</name></domain>")
    rc, out, err = fake.havirt("domain", "list")
    assert rc == 0, err
    assert "Traceback" not in err
    rows = {ln.split()[0]: ln for ln in out.splitlines()[2:]}
    assert set(rows) == {"broken", "db1", "noxml1", "nomem", "web1"}
    # "listed, flagged, never fatal": the listing must tell the admin which conf/ file is unusable
    shown = out + err
    assert "broken" in shown and "not valid XML" in shown
    assert "nomem" in shown and "no <memory>" in shown


def test_list_empty(fake):
    assert fake.havirt("domain", "list")[:2] == (0, "(none)\n")


# -- import ----------------------------------------------------------------------------

def test_import_one(fake):
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1", memory_mib=768, vcpus=3)
    a.xml["db1"] = domain_xml("db1")
    rc, out, err = fake.havirt("domain", "import", "web1", "--from", "node1")
    assert rc == 0, err
    path = fake.home / "conf" / "web1.xml"
    assert out == f"saved {path}\n"
    assert path.read_text() == domain_xml("web1", memory_mib=768, vcpus=3)
    assert not (fake.home / "conf" / "db1.xml").exists()
    assert fake.calls == [("node1", f"printf '@@xml %s\\n' web1; {V} dumpxml --inactive web1")]
    d = fake.state().domains["web1"]
    assert (d.memory_mib, d.vcpus, d.node) == (768, 3, None)


def test_import_refuses_to_overwrite_a_different_file(fake):
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1", memory_mib=768)
    a.xml["db1"] = domain_xml("db1")
    path = fake.home / "conf" / "web1.xml"
    path.write_text(domain_xml("web1", memory_mib=512))
    before = path.read_bytes()
    out, err = fake.refused("domain", "import", "web1", "db1", "--from", "node1", code=2)
    assert out == ""
    assert err == (f"havirt: import refused, nothing written: {path} exists and differs "
                   "(--force to overwrite)\n")
    assert path.read_bytes() == before
    assert not (fake.home / "conf" / "db1.xml").exists()     # nothing written at all
    rc, out, err = fake.havirt("domain", "import", "web1", "--from", "node1", "--force")
    assert rc == 0, err
    assert path.read_text() == domain_xml("web1", memory_mib=768)


def import_same_content(fake):
    """Import web1 over a conf/web1.xml that holds the same; (its bytes, its stat before)."""
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1")
    fake.conf("web1")
    path = fake.home / "conf" / "web1.xml"
    before = path.read_bytes(), path.stat()
    rc, out, err = fake.havirt("domain", "import", "web1", "--from", "node1")
    assert rc == 0, err
    return path, before


def test_import_same_content_is_fine(fake):
    path, (data, _) = import_same_content(fake)
    assert path.read_bytes() == data
    assert sorted(p.name for p in (fake.home / "conf").iterdir()) == ["web1.xml"]     # no .history


def test_import_same_content_leaves_the_file_alone(fake):
    path, (_, stat) = import_same_content(fake)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    rc, out, err = fake.havirt("domain", "import", "web1", "--from", "node1")
    assert (rc, out) == (0, f"unchanged {path} (it holds that definition already)\n"), err


def test_import_all(fake):
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1")
    a.xml["db1"] = domain_xml("db1", memory_mib=64)
    rc, out, err = fake.havirt("domain", "import", "--all", "--from", "node1")
    assert rc == 0, err
    conf = fake.home / "conf"
    assert out == f"saved {conf / 'db1.xml'}\nsaved {conf / 'web1.xml'}\n"
    assert sorted(p.name for p in conf.iterdir()) == ["db1.xml", "web1.xml"]
    assert (conf / "db1.xml").read_text() == domain_xml("db1", memory_mib=64)
    assert len(fake.calls) == 1 and "list --all --name" in fake.calls[0][1]


def test_import_unknown_domain_and_bad_xml(fake):
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1")
    a.xml["bad1"] = "<domain><name>bad1</name><memory unit='MiB'>0</memory></domain>"
    _, err = fake.refused("domain", "import", "web1", "nosuch", "--from", "node1", code=2)
    assert err == "havirt: import refused, nothing written: nosuch: not found on node1\n"
    _, err = fake.refused("domain", "import", "bad1", "--from", "node1", code=2)
    assert err == ("havirt: import refused, nothing written: bad1 on node1: <memory> of 0 MiB is "
                   "not believable (1 MiB to 16777216 MiB)\n")
    assert list((fake.home / "conf").iterdir()) == []


def test_import_usage(fake):
    fake.node("node1")
    assert "name the domains, or give --all" in fake.refused("domain", "import", "--from", "node1", code=2)[1]
    _, err = fake.refused("domain", "import", "web1", "--all", "--from", "node1", code=2)
    assert "name the domains, or give --all" in err
    assert fake.calls == []


def test_import_from_unreachable_node(fake):
    fake.node("node1", reachable=False)
    rc, out, err = fake.havirt("domain", "import", "web1", "--from", "node1")
    assert (rc, err) == (4, "havirt: node node1 unreachable: connect timed out after 5 s\n")


# -- shutdown / destroy ----------------------------------------------------------------

def stop_setup(fake, **kw):
    a, b = fake.node("node1"), fake.node("node2")
    a.add("web1", memory_mib=512, **kw)
    fake.conf("web1", memory_mib=512)
    return a, b


def test_shutdown_dry_run(fake):
    a, _ = stop_setup(fake)
    rc, out, err = fake.havirt("domain", "shutdown", "web1")
    assert rc == 0, err
    assert out == (f"ssh root@10.0.0.1 '{V} shutdown web1'\n"
                   "dry run: nothing was changed; add --yes (havirt --yes ...) to execute\n")
    assert fake.changing_calls() == []
    assert sorted(n for n, _ in fake.calls) == ["node1", "node2"]
    assert "web1" in a.domains
    assert audit(fake) == []


def test_shutdown_dry_run_with_wait_and_force_prints_every_step(fake):
    stop_setup(fake)
    rc, out, err = fake.havirt("domain", "shutdown", "web1", "--wait", "30", "--force")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"ssh root@10.0.0.1 '{V} shutdown web1'"
    assert lines[1].startswith("ssh root@10.0.0.1 'end=$(( $(date +%s) + 30 )); while :; do")
    assert lines[2] == "# only if still running after the wait:"
    assert lines[3] == f"ssh root@10.0.0.1 '{V} destroy web1'"
    assert fake.changing_calls() == []


def test_shutdown_yes(fake):
    a, _ = stop_setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", "shutdown", "web1")
    assert rc == 0, err
    assert out == "ask web1 on node1 to shut down: ok\n"
    assert fake.changing_calls() == [("node1", f"{V} shutdown web1")]
    assert "web1" not in a.domains
    entries = audit(fake)
    assert len(entries) == 1
    assert (entries[0]["node"], entries[0]["remote"], entries[0]["exit_code"], entries[0]["outcome"]) == (
        "node1", f"{V} shutdown web1", 0, "ok")


def test_shutdown_wait_until_off(fake):
    a, _ = stop_setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", "shutdown", "web1", "--wait", "30")
    assert rc == 0, err
    assert out == ("ask web1 on node1 to shut down: ok\n"
                   "wait up to 30 s for web1 to be off: ok\n"
                   "web1 is off on node1\n")
    assert "web1" not in a.domains
    d = fake.state().domains["web1"]
    assert (d.node, d.state) == (None, "shut off")


def test_shutdown_wait_force_destroys_a_stubborn_domain(fake):
    a, _ = stop_setup(fake, shuts_down=False)
    rc, out, err = fake.havirt("--yes", "domain", "shutdown", "web1", "--wait", "30", "--force")
    assert rc == 0, err
    assert out.splitlines()[-1] == "web1 is off on node1"
    assert "power web1 off if it is still running: ok" in out
    calls = [c for _, c in fake.changing_calls()]
    assert calls[0] == f"{V} shutdown web1" and calls[-1] == f"{V} destroy web1"
    assert len(calls) == 3
    assert "web1" not in a.domains


def test_shutdown_wait_without_force_on_a_stubborn_domain_fails(fake):
    a, _ = stop_setup(fake, shuts_down=False)
    rc, out, err = fake.havirt("--yes", "domain", "shutdown", "web1", "--wait", "30")
    assert rc == 1
    assert err == "havirt: web1 is still running on node1 after 30 s (add --force to power it off then)\n"
    assert "web1" in a.domains
    assert f"{V} destroy web1" not in [c for _, c in fake.calls]
    assert fake.state().domains["web1"].node == "node1"


def test_shutdown_force_needs_wait(fake):
    stop_setup(fake)
    _, err = fake.refused("--yes", "domain", "shutdown", "web1", "--force", code=2)
    assert "--force needs --wait SECONDS" in err
    assert fake.calls == []


def test_destroy_dry_run_and_yes(fake):
    a, _ = stop_setup(fake)
    rc, out, err = fake.havirt("domain", "destroy", "web1")
    assert rc == 0, err
    assert out.splitlines()[0] == f"ssh root@10.0.0.1 '{V} destroy web1'"
    assert "web1" in a.domains and fake.changing_calls() == []
    rc, out, err = fake.havirt("--yes", "domain", "destroy", "web1")
    assert rc == 0, err
    assert out == "power web1 off on node1: ok\nweb1 is off on node1\n"
    assert "web1" not in a.domains
    assert fake.changing_calls() == [("node1", f"{V} destroy web1")]


def test_stop_a_domain_running_nowhere_is_refused(fake):
    stop_setup(fake)
    for verb in ("shutdown", "destroy"):
        _, err = fake.refused("--yes", "domain", verb, "db1")
        assert err == "havirt: refused: db1 is not running on any node that answered\n"


def test_stop_names_unreachable_nodes_it_could_not_check(fake):
    stop_setup(fake)
    fake.node("node3", reachable=False)
    _, err = fake.refused("--yes", "domain", "destroy", "db1")
    assert err == ("havirt: refused: db1 is not running on any node that answered "
                   "(unreachable, not checked: node3)\n")


def test_stop_a_domain_on_two_nodes_is_refused(fake):
    a, b = stop_setup(fake)
    b.add("web1")
    _, err = fake.refused("--yes", "domain", "destroy", "web1")
    assert err == "havirt: refused: web1 is present on 2 nodes: node1, node2; act on each node by hand\n"
    assert "web1" in a.domains and "web1" in b.domains


# -- migrate ---------------------------------------------------------------------------

def migrate_setup(fake, disks=()):
    a, b = fake.node("node1"), fake.node("node2")
    a.add("web1", memory_mib=512)
    fake.conf("web1", memory_mib=512, disks=disks)
    return a, b


MIGRATE_LINE = (f"ssh root@10.0.0.1 '{V} migrate --live --verbose web1 "
                "qemu+ssh://root@10.0.0.2/system --migrateuri tcp://10.0.0.2'")


def test_migrate_dry_run(fake):
    a, b = migrate_setup(fake)
    rc, out, err = fake.havirt("domain", "migrate", "web1", "node2")
    assert rc == 0, err
    assert out == MIGRATE_LINE + "\ndry run: nothing was changed; add --yes (havirt --yes ...) to execute\n"
    assert fake.changing_calls() == []
    assert "web1" in a.domains and "web1" not in b.domains


def test_migrate_dry_run_uses_the_recorded_user_and_port(fake):
    migrate_setup(fake)
    fake.records["node2"].user = "admin"
    fake.records["node2"].port = 2222
    fake.save_state()
    rc, out, err = fake.havirt("domain", "migrate", "web1", "node2")
    assert rc == 0, err
    assert "qemu+ssh://admin@10.0.0.2:2222/system --migrateuri tcp://10.0.0.2'" in out


def test_migrate_yes_moves_it(fake):
    a, b = migrate_setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node2")
    assert rc == 0, err
    assert out == "web1 moved from node1 to node2\n"
    assert "web1" in b.domains and "web1" not in a.domains
    assert fake.state().domains["web1"].node == "node2"
    sent = [c for _, c in fake.changing_calls()]
    assert sent == [MIGRATE_LINE.split(" '", 1)[1].rstrip("'")]
    assert fake.changing_calls()[0][0] == "node1"     # run on the source
    assert audit(fake)[0]["outcome"] == "ok"


def test_migrate_failure_says_where_it_is(fake):
    a, b = migrate_setup(fake)

    def factory(app, orig=fake.factory):
        r = orig(app)
        r.migrate_fails = True
        return r
    fake.factory = factory
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node2")
    assert rc == 1
    assert err.splitlines()[-1] == (
        "havirt: live-migrate web1 from node1 to node2 failed on node1: exit 1: error: operation "
        "failed: migration failed; now node1: running; node2: not running")
    assert "web1" in a.domains


def test_migrate_offline(fake):
    a, b = migrate_setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node2", "--offline")
    assert rc == 0, err
    assert out == "web1 moved from node1 to node2\n"
    assert "web1" in b.domains and "web1" not in a.domains
    sent = fake.changing_calls()
    assert sent[0] == ("node1", f"{V} shutdown web1")
    assert sent[-1] == ("node2", f"{V} create /dev/stdin")


def test_migrate_refused_for_memory_on_target(fake):
    a, b = migrate_setup(fake)
    fake.records["node2"].memory_cap_mib = 100
    fake.save_state()
    _, err = fake.refused("--yes", "domain", "migrate", "web1", "node2")
    assert err == ("havirt: refused: memory: node2 can give domains 100 MiB (cap 100 MiB), 0 MiB are "
                   "allocated to 0 running domain(s), web1 needs 512 MiB: 412 MiB short\n")
    assert "web1" in a.domains


def test_migrate_refused_for_a_disk_missing_on_target(fake):
    a, b = migrate_setup(fake, disks=["/srv/web1.qcow2"])
    a.paths.add("/srv/web1.qcow2")
    _, err = fake.refused("--yes", "domain", "migrate", "web1", "node2")
    assert err == "havirt: refused: disk: /srv/web1.qcow2 does not exist on node2\n"
    b.paths.add("/srv/web1.qcow2")
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node2")
    assert rc == 0, err


def test_migrate_refused_to_a_target_in_maintenance(fake):
    a, b = migrate_setup(fake)
    assert fake.havirt("node", "maintenance", "node2", "on", "--no-evacuate")[0] == 0
    assert fake.refused("--yes", "domain", "migrate", "web1", "node2")[1] == (
        "havirt: refused: node node2 is in maintenance\n")
    assert fake.refused("--yes", "domain", "migrate", "web1")[1] == (
        "havirt: refused: no node can take web1: node2: node node2 is in maintenance\n")


def test_migrate_refused_for_a_domain_on_two_nodes(fake):
    a, b = migrate_setup(fake)
    fake.node("node3")
    b.add("web1")
    _, err = fake.refused("--yes", "domain", "migrate", "web1", "node3")
    assert err == "havirt: refused: web1 must run on exactly one node to migrate; it is on node1, node2\n"


def test_migrate_refused_when_not_running_or_to_itself_or_in_maintenance(fake):
    a, b = migrate_setup(fake)
    assert fake.refused("--yes", "domain", "migrate", "web1", "node1")[1] == (
        "havirt: refused: web1 already runs on node1\n")
    assert fake.havirt("domain", "maintenance", "web1", "on") == (0, "domain web1: maintenance on\n", "")
    assert fake.refused("--yes", "domain", "migrate", "web1", "node2")[1] == (
        "havirt: refused: domain web1 is in maintenance\n")
    assert fake.havirt("domain", "maintenance", "web1", "off") == (0, "domain web1: maintenance off\n", "")
    assert fake.state().domains["web1"].maintenance is False
    del a.domains["web1"]
    assert fake.refused("--yes", "domain", "migrate", "web1", "node2")[1] == (
        "havirt: refused: web1 must run on exactly one node to migrate; it is on no node that answered\n")


def test_migrate_without_target_picks_most_free_memory_after_the_move(fake):
    a, b = migrate_setup(fake)
    c = fake.node("node3")
    b.add("big", memory_mib=4000)
    c.add("small", memory_mib=1000)
    rc, out, err = fake.havirt("domain", "migrate", "web1")
    assert rc == 0, err
    assert "qemu+ssh://root@10.0.0.3/system --migrateuri tcp://10.0.0.3'" in out
    # a cap makes node3 the tighter one: now node2 has more free memory after the move
    fake.records["node3"].memory_cap_mib = 2000
    fake.save_state()
    rc, out, err = fake.havirt("domain", "migrate", "web1")
    assert rc == 0, err
    assert "qemu+ssh://root@10.0.0.2/system --migrateuri tcp://10.0.0.2'" in out
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1")
    assert rc == 0, err
    assert out == "web1 moved from node1 to node2\n"
    assert "web1" in b.domains


def test_domain_maintenance_unknown_domain(fake):
    fake.node("node1")
    out, err = fake.refused("domain", "maintenance", "nosuch", "on", code=2)
    assert (out, err) == ("", "havirt: unknown domain 'nosuch'\n")
    assert "nosuch" not in fake.state().domains


def test_start_without_node_needs_this_host_to_be_a_node(fake, monkeypatch):
    import socket
    fake.node("node1")
    b = fake.node("node2")
    fake.conf("web1", memory_mib=64)
    monkeypatch.setattr(socket, "gethostname", lambda: "admin-box.example.org")
    out, err = fake.refused("--yes", "domain", "start", "web1", code=2)
    assert out == ""
    assert err == "havirt: this host (admin-box) is not a node: name the node to start on\n"
    assert fake.calls == []
    monkeypatch.setattr(socket, "gethostname", lambda: "node2.example.org")
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1")
    assert rc == 0, err
    assert "web1" in b.domains


def test_migrate_timeout_aborts_the_job_and_says_where_it_is(fake):
    from havirt.remote.transport import CommandTimeout
    a, b = migrate_setup(fake)
    orig = fake.factory

    def factory(app):
        r = orig(app)
        plain_run = r.run

        def run(node, command, stdin=None, timeout=None, on_output=None):
            if command.op == "migrate":
                r.calls.append((node, command.text()))
                raise CommandTimeout(node, f"command timed out after {timeout:g} s")
            return plain_run(node, command, stdin=stdin, timeout=timeout, on_output=on_output)
        r.run = run
        return r
    fake.factory = factory
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node2", "--timeout", "5")
    assert rc == 4     # the source stopped answering within the time: exit 4, as documented
    assert err.splitlines()[-1] == ("havirt: migration of web1 did not finish (command timed out after 65 s); "
                                    "now node1: running; node2: not running")
    sent = [c for c in fake.changing_calls()]
    assert sent[-1] == ("node1", f"{V} domjobabort web1")
    assert fake.state().domains["web1"].node == "node1"
    log = audit(fake)
    assert log[0]["exit_code"] is None and log[0]["outcome"].startswith("unreachable: command timed out")
    assert log[1]["remote"] == f"{V} domjobabort web1" and log[1]["node"] == "node1"
