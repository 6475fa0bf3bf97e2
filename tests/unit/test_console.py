"""domain console: the session run through an `ssh` on PATH (its command line
is the openssh transport's: tests/unit/test_openssh.py).

The real session (OpenSSH, virsh console, a guest, the escape key) is proven in
the lab (tests/integration/test_guests.py); here a small stand-in for `ssh`
records how it was called and exits as told.
"""

import os
import sys

import pytest

V = "virsh -c qemu:///system"


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """An `ssh` on PATH that records its arguments and exits with $FAKE_SSH_EXIT."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "ssh-args"
    script = bin_dir / "ssh"
    script.write_text("#!/bin/sh\n"
                      f"printf '%s\\n' \"$@\" > {record}\n"
                      "echo 'Connected to domain web1'\n"
                      "[ -n \"$FAKE_SSH_ERR\" ] && echo \"$FAKE_SSH_ERR\" >&2\n"
                      "exit ${FAKE_SSH_EXIT:-0}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    master, slave = os.openpty()
    tty = os.fdopen(slave, "r")
    monkeypatch.setattr(sys, "stdin", tty)         # a real terminal, as an admin has
    yield record
    tty.close()
    os.close(master)


def setup(fake):
    fake.node("node1")
    b = fake.node("node2")
    fake.records["node2"].user, fake.records["node2"].port = "ops", 2222
    fake.save_state()
    b.add("web1")
    fake.conf("web1")


def test_console_runs_ssh_to_the_node_where_it_runs(fake, fake_ssh):
    setup(fake)
    rc, out, err = fake.havirt("domain", "console", "web1")
    assert rc == 0, err
    assert out.splitlines()[0] == ("web1 runs on node2: its console follows (virsh console over "
                                   "ssh); leave with Ctrl-]")
    argv = fake_ssh.read_text().splitlines()
    assert argv[:3] == ["-t", "-e", "none"] and argv[-3:] == ["--", "10.0.0.2", f"{V} console web1"]
    assert argv[argv.index("-l") + 1] == "ops" and argv[argv.index("-p") + 1] == "2222"
    # the paramiko transport: ssh_config alone decides about shared connections
    assert not any(a.startswith("Control") for a in argv)
    assert fake.state().domains["web1"].node == "node2"      # the scan was recorded
    assert not (fake.home / "var" / "audit.log").exists()  # nothing was changed


def test_an_ssh_failure_is_exit_4_with_its_reason(fake, fake_ssh, monkeypatch):
    setup(fake)
    monkeypatch.setenv("FAKE_SSH_EXIT", "255")
    monkeypatch.setenv("FAKE_SSH_ERR", "ssh: connect to host 10.0.0.2 port 2222: Connection refused")
    rc, out, err = fake.havirt("domain", "console", "web1")
    assert rc == 4      # the line a scan gives for the same failure
    assert err == "havirt: node node2 unreachable: ssh ops@10.0.0.2:2222: Connection refused\n"


def test_with_the_openssh_transport_the_console_shares_the_nodes_connection(fake, fake_ssh):
    setup(fake)
    fake.write_config(ssh={"backend": "openssh", "persist": 300})
    rc, out, err = fake.havirt("domain", "console", "web1")
    assert rc == 0, err
    argv = fake_ssh.read_text().splitlines()
    assert {"ControlMaster=auto", "ControlPersist=300"} <= set(argv)


def test_a_failed_virsh_console_is_exit_1(fake, fake_ssh, monkeypatch):
    setup(fake)
    monkeypatch.setenv("FAKE_SSH_EXIT", "1")
    rc, out, err = fake.havirt("domain", "console", "web1")
    assert rc == 1 and err == "havirt: the console session on node2 ended with exit 1\n"


def test_console_of_a_domain_running_nowhere_is_refused(fake, fake_ssh):
    setup(fake)
    out, err = fake.refused("domain", "console", "db1")
    assert out == ""
    assert err == "havirt: refused: db1 is not running on any node that answered\n"
    assert not fake_ssh.exists()


def test_console_needs_a_terminal(fake):
    setup(fake)
    _, err = fake.refused("--yes", "domain", "console", "web1", code=2)
    assert err == "havirt: domain console needs a terminal (stdin is not one)\n"
    assert fake.calls == []


def test_without_ssh_installed_it_says_so(fake, fake_ssh, monkeypatch, tmp_path):
    setup(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    _, err = fake.refused("--yes", "domain", "console", "web1", code=2)
    assert "needs OpenSSH's ssh command" in err
