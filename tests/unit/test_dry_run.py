"""README, "Dry run and --yes": nothing changes (no domain, no state file, no audit line,
no SSH session for the steps); JSON of changing commands; the audit log and `havirt log`."""

import json

import pytest
from fakes import home_snapshot, is_scan

V = "virsh -c qemu:///system"


def setup(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1", memory_mib=64)
    fake.conf("db1", memory_mib=64)
    a.add("db1", memory_mib=64)
    return a, b


@pytest.mark.parametrize("args", [
    ("domain", "start", "web1", "node2"),
    ("domain", "shutdown", "db1", "--wait", "10", "--force"),
    ("domain", "destroy", "db1"),
    ("domain", "reboot", "db1"),
    ("domain", "reset", "db1"),
    ("domain", "migrate", "db1", "node2"),
    ("domain", "migrate", "db1", "--offline"),
    ("--dryrun", "--yes", "domain", "destroy", "db1"),
])
def test_dry_run_changes_nothing(fake, args):
    a, b = setup(fake)
    before = home_snapshot(fake.home)
    rc, out, err = fake.havirt(*args)
    assert rc == 0, err
    assert out.endswith("dry run: nothing was changed; add --yes (havirt --yes ...) to execute\n")
    assert all(is_scan(c) for _, c in fake.calls)
    assert sorted(a.domains) == ["db1"] and b.domains == {}
    assert not (fake.home / "var" / "audit.log").exists()
    assert home_snapshot(fake.home) == before                 # conf/ and the state file alike
    st = fake.state()
    assert st.domains.get("web1") is None or st.domains["web1"].node is None
    assert st.domains.get("db1") is None or st.domains["db1"].node in (None, "node1")


def test_dry_run_leaves_the_state_file_alone(fake):
    """README: "Nothing changes: no domain, no state file, no audit line, no SSH session
    for those steps. The read-only scan the safety checks need still runs." """
    setup(fake)
    before = fake.state_file.read_bytes()
    for args in (("domain", "start", "web1", "node2"), ("domain", "destroy", "db1"),
                 ("domain", "migrate", "db1", "node2")):
        rc, out, err = fake.havirt(*args)
        assert rc == 0, err
        assert fake.state_file.read_bytes() == before, args


def test_config_dryrun_false_executes_without_yes(fake):
    a, b = setup(fake)
    fake.write_config(dryrun=False)
    rc, out, err = fake.havirt("domain", "destroy", "db1")
    assert (rc, out) == (0, "power db1 off on node1: ok\ndb1 is off on node1\n"), err
    assert a.domains == {}


def test_json_of_a_changing_command(fake):
    setup(fake)
    rc, out, err = fake.havirt("-f", "json", "domain", "start", "web1", "node2")
    assert rc == 0, err
    doc = json.loads(out)
    assert list(doc) == ["dry_run", "commands", "done", "notes", "anomalies"]
    assert doc["dry_run"] is True
    assert doc["commands"] == [f"ssh root@10.0.0.2 '{V} create /dev/stdin' < conf/web1.xml"]
    assert doc["done"] == [] and doc["anomalies"] == []
    rc, out, err = fake.havirt("-f", "json", "--yes", "domain", "start", "web1", "node2")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["dry_run"] is False
    assert doc["done"] == ["start web1 on node2: ok", "web1 is running on node2"]


def test_audit_log_and_log_command(fake):
    setup(fake)
    assert fake.havirt("--yes", "domain", "destroy", "db1")[0] == 0
    assert fake.havirt("--yes", "domain", "start", "web1", "node2")[0] == 0
    lines = (fake.home / "var" / "audit.log").read_text().splitlines()
    entries = [json.loads(x) for x in lines]
    assert [list(e) for e in entries] == [["time", "user", "command", "node", "remote", "exit_code",
                                           "duration", "outcome"]] * 2
    assert [(e["node"], e["remote"], e["exit_code"], e["outcome"]) for e in entries] == [
        ("node1", f"{V} destroy db1", 0, "ok"),
        ("node2", f"{V} create /dev/stdin < conf/web1.xml", 0, "ok"),
    ]
    rc, out, err = fake.havirt("-f", "json", "log", "--tail", "1")
    assert rc == 0, err
    assert json.loads(out) == entries[-1:]
    rc, out, err = fake.havirt("-f", "tsv", "log")
    assert out.splitlines()[0] == "time\tuser\tnode\tremote\texit_code\tduration\toutcome"
    assert len(out.splitlines()) == 3


def test_json_output_of_maintenance_on_is_pure_json(fake):
    """Lines for the admin go to stderr under -f json: stdout parses as JSON."""
    import json
    a = fake.node("node1")
    fake.node("node2")
    fake.conf("web1")
    a.add("web1")
    rc, out, err = fake.havirt("-f", "json", "node", "maintenance", "node1", "on")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["dry_run"] is True and len(doc["commands"]) == 1
    assert "migrate --live" in doc["commands"][0]
    assert "node node1: maintenance on" in err
