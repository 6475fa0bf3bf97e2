"""domain start: every refusal, the dry run, and the real thing (fake nodes)."""

from fakes import is_scan


def setup(fake):
    a = fake.node("node1")
    b = fake.node("node2")
    fake.conf("web1", memory_mib=512, vcpus=2)
    return a, b


def test_dry_run_prints_command_and_changes_nothing(fake):
    a, b = setup(fake)
    before = fake.state_file.read_text()
    rc, out, err = fake.havirt("domain", "start", "web1", "node2")
    assert rc == 0, err
    assert "ssh root@10.0.0.2 'virsh -c qemu:///system create /dev/stdin' < conf/web1.xml" in out
    assert "dry run" in out
    assert "web1" not in b.domains and "web1" not in a.domains
    # only the read-only scan went out: one session per node
    assert sorted(n for n, _ in fake.calls) == ["node1", "node2"]
    assert all(c.startswith("printf '@@hostname") for _, c in fake.calls)
    assert "web1" not in fake.state().domains or fake.state().domains["web1"].node is None
    assert before != "" and not (fake.home / "var" / "audit.log").exists()


def test_start_with_yes_runs_it_once_and_records(fake):
    a, b = setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc == 0, err
    assert "web1" in b.domains and "web1" not in a.domains
    rec = fake.state().domains["web1"]
    assert rec.node == "node2" and rec.state == "running"
    assert (fake.home / "var" / "audit.log").read_text().count("create /dev/stdin") == 1


def test_refused_when_running_elsewhere(fake):
    a, b = setup(fake)
    a.add("web1", memory_mib=512)
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "web1 is already running on node1" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "web1" not in b.domains


def test_refused_when_arriving_by_migration(fake):
    a, b = setup(fake)
    a.add("web1", memory_mib=512, state="paused", reason=2)
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "arriving by migration on node1" in err


def test_refused_when_memory_short_with_numbers(fake):
    a, b = setup(fake)
    fake.records["node2"].memory_cap_mib = 600
    fake.save_state()
    b.add("db1", memory_mib=200)
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "600 MiB (cap 600 MiB), 200 MiB are allocated to 1 running domain(s), web1 needs 512 MiB: 112 MiB short" in err


def test_refused_when_vcpu_ratio_passed(fake):
    a, b = setup(fake)
    b.cpus = 1
    b.add("db1", vcpus=3)
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "5.00 per CPU, over the limit of 4" in err


def test_refused_when_disk_missing_on_target(fake):
    a, b = setup(fake)
    fake.conf("web1", memory_mib=512, disks=["/srv/web1.qcow2"])
    a.paths.add("/srv/web1.qcow2")
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "disk: /srv/web1.qcow2 does not exist on node2" in err
    rc, _, err = fake.havirt("--yes", "domain", "start", "web1", "node1")
    assert rc == 0, err


def test_refused_when_a_node_is_unreachable_unless_force(fake):
    a, b = setup(fake)
    c = fake.node("node3")
    c.reachable = False
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "node node3 did not answer" in err and "--force" in err
    assert "web1" not in b.domains
    rc, _, err = fake.havirt("--yes", "domain", "start", "web1", "node2", "--force")
    assert rc == 0, err
    assert "web1" in b.domains


def test_refused_when_node_or_domain_in_maintenance(fake):
    setup(fake)
    assert fake.havirt("node", "maintenance", "node2", "on", "--no-evacuate")[0] == 0
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "node node2 is in maintenance" in err
    assert fake.havirt("domain", "maintenance", "web1", "on")[0] == 0
    _, err = fake.refused("--yes", "domain", "start", "web1", "node1")
    assert "domain web1 is in maintenance" in err


def test_unknown_domain_and_bad_names(fake):
    setup(fake)
    assert "unknown domain 'nosuch'" in fake.refused("--yes", "domain", "start", "nosuch", "node1", code=2)[1]
    assert "invalid domain name" in fake.refused("--yes", "domain", "start", "web1;rm -rf /", "node1", code=2)[1]
    assert "unknown node 'node9'" in fake.refused("--yes", "domain", "start", "web1", "node9", code=2)[1]
    assert all(is_scan(c) for _, c in fake.calls)
