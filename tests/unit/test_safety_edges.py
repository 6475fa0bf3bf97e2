"""Edges of the one promise: partial virsh failures, a node that is not the
host it was, a conf/ file that changes under a command, offline migration."""

import pytest
from conftest import domain_xml
from fakes import FakeRunner

EMPTY_NODE = ("@@hostname\nnode1\n@@virsh\n@@lxc-connect\n\n@@lxc-list\n\n@@lxc-end\n@@vm-connect\n"
              "@@version\n@@nodeinfo\nCPU(s): 4\n"
              "Memory size: 8388608 KiB\n@@persistent\n@@autostart\n@@domstats\n")
END = "@@end\n@@virsh-exit\n0\n"


@pytest.mark.parametrize("relayed, says", [
    # virsh goes on after a failed command and exits with the last one's status:
    # complete-looking output plus an error means the list is not to be trusted
    ("error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused\n",
     "virsh failed: error: Failed to connect"),
    # the script exits 3 when virsh failed: the verdict does not rest on the text
    ("", "virsh failed: exit 3; output incomplete"),
])
def test_a_scan_whose_virsh_failed_midway_leaves_the_node_unknown(fake, relayed, says):
    a, b = fake.node("node1"), fake.node("node2")
    a.add("web1")
    fake.conf("web1")
    a.scan_stdout, a.scan_exit = EMPTY_NODE + relayed + END, 3
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert f"node node1 did not answer ({says}" in err
    assert "web1" not in b.domains


def test_a_node_answering_as_another_host_is_unknown(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1")
    assert fake.havirt("node", "scan")[0] == 0          # hostnames recorded
    b.hostname = "some-other-machine"                       # node2's address now reaches it
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1 and "answers as host 'some-other-machine', recorded as 'node2'" in out
    _, err = fake.refused("--yes", "domain", "start", "web1", "node1")
    assert "node node2 did not answer" in err and "web1" not in a.domains


def test_two_nodes_answering_as_one_host_are_unknown(fake):
    _a, b = fake.node("node1"), fake.node("node2")
    b.hostname = "node1"
    rc, out, _ = fake.havirt("-q", "node", "scan")
    assert rc == 1 and "nodes node1, node2 all answer as host 'node1'" in out


def test_node_add_refuses_a_second_name_for_a_known_host(fake):
    a = fake.node("node1")
    assert fake.havirt("node", "scan")[0] == 0
    fake.node("alias", record=False).hostname = "node1"
    _, err = fake.refused("node", "add", "alias", "--address", "10.0.0.2", code=2)
    assert "is host node1, already node node1" in err
    _, err = fake.refused("node", "add", "again", "--address", a.address, code=2)
    assert f"node node1 has the address {a.address} already" in err
    assert list(fake.state().nodes) == ["node1"]


def test_the_xml_checked_is_the_xml_sent(fake):
    """conf/web1.xml rewritten while the scan runs: the start sends the bytes
    that were checked, read once inside the lock."""
    fake.node("node1")
    b = fake.node("node2")
    fake.conf("web1", memory_mib=512)
    conf = fake.home / "conf" / "web1.xml"
    sent = []

    class Rewriter(FakeRunner):
        def run(self, node, command, stdin=None, **kw):
            if command.op == "scan":
                conf.write_text(domain_xml("web1", memory_mib=4096))
            if stdin is not None:
                sent.append(stdin)
            return super().run(node, command, stdin=stdin, **kw)

    fake.runner_class = Rewriter
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc == 0
    assert sent == [domain_xml("web1", memory_mib=512).encode()]
    assert b.domains["web1"].memory_mib == 512


def test_offline_migration_rechecks_every_node_before_starting(fake):
    """The domain shut down on node1, but meanwhile a copy appeared on node3:
    the fresh scan after the wait refuses the start on node2."""
    a, b, c = fake.node("node1"), fake.node("node2"), fake.node("node3")
    fake.conf("web1")
    a.add("web1")
    original = FakeRunner.run

    class Sneaky(FakeRunner):
        def run(self, node, command, stdin=None, **kw):
            res = original(self, node, command, stdin=stdin, **kw)
            if command.op == "wait-off" and "web1" not in c.domains:
                c.add("web1")                        # started behind havirt's back
            return res

    fake.runner_class = Sneaky
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node2", "--offline")
    assert rc == 3
    assert "web1" not in b.domains
    sent = fake.changing_calls()              # the shutdown and its wait on node1, then nothing
    assert [n for n, _ in sent] == ["node1", "node1"]
    assert sent[0][1] == "virsh -c qemu:///system shutdown web1" and " domstate web1 " in sent[1][1]


def test_balance_move_refusal_keeps_exit_code_3(fake):
    a, _b = fake.node("node1"), fake.node("node2")
    c = fake.node("node3")
    for i in range(6):
        fake.conf(f"d{i}", memory_mib=1024)
        a.add(f"d{i}", memory_mib=1024)
    rc, out, err = fake.havirt("cluster", "balance")
    assert rc == 0 and ": node1 -> node3 (" in out, out        # a move to node3 is planned
    c.reachable = False                            # after planning, before moving
    fake.refused("--yes", "cluster", "balance")


def test_non_utf8_conf_file_is_a_clear_error(fake):
    fake.node("node1")
    (fake.home / "conf" / "web1.xml").write_bytes(b"<domain><name>web1</name>\xff\xfe</domain>")
    for args in (["--yes", "domain", "start", "web1", "node1"], ["domain", "list"]):
        rc, out, err = fake.havirt(*args)
        assert "internal error" not in err and "not UTF-8" in err, err
    fake.refused("--yes", "domain", "start", "web1", "node1", code=2)


def test_config_given_but_missing_and_non_finite_numbers(fake):
    rc, _, err = fake.havirt("--config", "/nonexistent/typo.yaml", "node", "list")
    assert rc == 2 and "no such file (given with --config)" in err
    (fake.home / "config.yaml").write_text("migrate: {timeout: .inf}\n")
    rc, _, err = fake.havirt("node", "list")
    assert rc == 2 and "key 'migrate.timeout' must be" in err


def test_log_survives_lines_that_are_not_objects(fake):
    (fake.home / "var" / "audit.log").write_text('42\n{"time": "t", "outcome": "ok"}\nnot json\n')
    rc, out, err = fake.havirt("-f", "json", "log")
    import json
    assert rc == 0 and [e["outcome"] for e in json.loads(out)] == [
        "(unreadable line 1)", "ok", "(unreadable line 3)"]


def test_balance_dry_run_says_moves_wait_for_a_silent_node(fake):
    a, _b = fake.node("node1"), fake.node("node2")
    fake.node("node3").reachable = False
    for i in range(4):
        fake.conf(f"d{i}", memory_mib=1024)
        a.add(f"d{i}", memory_mib=1024)
    rc, out, err = fake.havirt("cluster", "balance")
    assert rc == 0 and "note: node3 did not answer: each move is refused" in out, out
