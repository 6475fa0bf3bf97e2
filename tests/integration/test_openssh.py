"""The openssh transport (`ssh.backend: openssh`) against the lab.

Proven on the nodes themselves (their sshd logs every login: "Accepted
publickey for root from ADDRESS"):
- a scan opens one connection per node, and a second and third scan within
  ssh.persist open none (the masters are reused; `ssh -O check` agrees);
- on an open master havirt asks for the session itself, no ssh process
  started, with ssh's own outcome (exit status, streams, stdin, a command
  killed); a session past its deadline ends and leaves the master; a
  master that refuses (MaxSessions) or a stale socket falls back to ssh;
  with persist 0 every scan logs in again and no master is left;
- through a bastion: with node2..nodeN refusing SSH from the admin host
  (iptables in their network namespace), the paramiko transport cannot
  reach them, and the openssh one reaches every node, logged in from node1's
  address; start (XML on stdin), migrate and a second scan work that way;
- the core scenarios of the suite, run again on the openssh transport:
  scan, start, live migration, the console of a real guest, failover of a
  powered-off node, a link cut, a changed host key, a frozen libvirtd,
  accept-new.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import time

import pytest
import test_core as core
import test_failover as failover
import test_guests as guests
import test_hardening as hardening
import test_moves as moves
import test_trust as trust
from labkit import REPORT

from havirt.errors import NodeUnreachable
from havirt.remote.commands import Command
from havirt.remote.openssh import OpenSSHRunner, control_folder
from havirt.remote.processes import Process, drive
from havirt.remote.transport import CommandTimeout, Target
from havirt.store.config import load_config

LOGIN = re.compile(r"^Accepted publickey for root from (\S+) port ", re.M)


def logins(lab, node: str, source: str | None = None) -> int:
    """Logins the node's sshd accepted (from `source` only, if given)."""
    text = (lab.dir / node / "sshd.log").read_text(errors="replace")
    return sum(1 for s in LOGIN.findall(text) if source is None or s == source)


def all_logins(lab, source: str | None = None) -> dict[str, int]:
    return {n: logins(lab, n, source) for n in lab.nodes}


def runner_of(hv) -> OpenSSHRunner:
    """The runner havirt makes from this home's config.yaml and nodes."""
    cfg = load_config(hv.home / "config.yaml")
    nodes = hv.state()["nodes"]
    return OpenSSHRunner(cfg.ssh, {n: Target(n, r["address"], r.get("user"), r.get("port"))
                                   for n, r in nodes.items()})


def masters(hv, operation: str) -> dict[str, int]:
    """`ssh -O check|exit` for the masters of every node: exit code per node."""
    r = runner_of(hv)
    return {n: subprocess.run(r.control_argv(n, operation), capture_output=True,
                              timeout=20, stdin=subprocess.DEVNULL).returncode for n in r.targets}


@pytest.fixture
def openssh_home(new_home):
    """Homes whose config.yaml says ssh.backend: openssh (and more), their
    nodes added through it; every master they opened is closed at the end."""
    made = []

    def make(name: str = "openssh", **ssh) -> object:
        hv = new_home(name, ssh={"backend": "openssh", **ssh})
        made.append(hv)
        return hv
    yield make
    for hv in made:
        masters(hv, "exit")


@pytest.fixture
def hv_openssh(openssh_home):
    hv = openssh_home()
    masters(hv, "exit")          # whatever another home of the same settings left
    return hv


# -- sharing ---------------------------------------------------------------------------


def test_a_second_scan_within_persist_reuses_the_masters(lab, hv_openssh):
    hv = hv_openssh
    before = all_logins(lab)
    t0 = time.monotonic()
    first = hv.ok("node", "scan")
    cold = time.monotonic() - t0
    opened = all_logins(lab)
    assert all(opened[n] == before[n] + 1 for n in lab.nodes), (before, opened, first)
    assert set(masters(hv, "check").values()) == {0}            # "Master running"

    warm = []
    for _ in range(2):                 # as cron's next scans would, each a new havirt process
        t0 = time.monotonic()
        hv.ok("node", "scan")
        warm.append(time.monotonic() - t0)
    hv.yes("domain", "start", "tiny1", "node2")                  # the XML on stdin, on the master
    assert lab.where("tiny1") == ["node2"]
    assert all_logins(lab) == opened                             # nobody logged in again

    folder = control_folder()
    st = os.lstat(folder)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    sockets = [f for f in os.listdir(folder) if stat.S_ISSOCK(os.lstat(os.path.join(folder, f)).st_mode)]
    assert len(sockets) >= len(lab.nodes), sockets
    REPORT.append(f"openssh transport, {len(lab.nodes)} nodes: node scan {cold:.2f} s opening "
                  f"the masters, then {warm[0]:.2f} s and {warm[1]:.2f} s on them")


def sessions(r, node: str, texts: list[str], stdin: bytes | None = None, timeout: float = 30):
    """Sessions of `texts` on `node`, all at once, as run_many runs them."""
    ps = [r.session(node, t, stdin, timeout) for t in texts]
    drive(ps, len(ps))
    return ps


def test_on_an_open_master_havirt_asks_for_the_session_itself(lab, hv_openssh):
    """No ssh process for a session on an open master, and the same outcome as
    ssh's own: exit status, both streams, stdin, a command killed by a signal."""
    hv = hv_openssh
    hv.ok("node", "scan")                                        # opens the masters
    r, node = runner_of(hv), lab.nodes[1]
    data = b"<domain>" + b"x" * 300000 + b"</domain>"            # more than a pipe holds
    texts = ["echo out; echo err >&2; exit 7", "wc -c; cat >/dev/null", "kill -9 $$"]
    mine = [r._outcome(node, t, p) for t, p in
            zip(texts, sessions(r, node, texts[:1]) + sessions(r, node, texts[1:2], data)
                + sessions(r, node, texts[2:]))]
    theirs = []
    for t, stdin in zip(texts, (None, data, None)):
        p = Process(r.argv(node, t), stdin, 30)                  # ssh itself, on the same master
        drive([p], 1)
        theirs.append(r._outcome(node, t, p))
    assert [(x.exit_code, x.stdout, x.stderr) for x in mine[:2]] == \
        [(x.exit_code, x.stdout, x.stderr) for x in theirs[:2]] == \
        [(7, "out\n", "err\n"), (0, f"{len(data)}\n", "")]
    assert isinstance(mine[2], NodeUnreachable) and isinstance(theirs[2], NodeUnreachable)
    assert str(mine[2]) == str(theirs[2]) == f"node {node} unreachable: ssh session failed: the " \
        "connection ended before the command's exit status (ssh exit 255)"
    before = all_logins(lab)
    ps = sessions(r, node, ["hostname"] * 3)
    assert all(p.shared and p.proc is None for p in ps)          # no process was started
    assert {bytes(p.out) for p in ps} == {f"{node}\n".encode()}
    assert all_logins(lab) == before


def test_a_session_past_its_deadline_ends_and_the_master_stays(lab, hv_openssh):
    hv = hv_openssh
    hv.ok("node", "scan")
    r, node = runner_of(hv), lab.nodes[0]
    t = time.monotonic()
    p, = sessions(r, node, ["sleep 30"], timeout=1)
    assert p.shared and p.timed_out and time.monotonic() - t < 5
    assert isinstance(r._outcome(node, "sleep 30", p), CommandTimeout)
    assert masters(hv, "check")[node] == 0
    assert r.run(node, Command(op="x", script="echo still")).stdout == "still\n"


def test_a_refused_or_stale_master_falls_back_to_ssh(lab, hv_openssh):
    """A master that refuses a session before it is open (the node's sshd
    allows MaxSessions 100 a connection) and a socket nobody listens on
    (a master killed): ssh runs those sessions, and every one gives its output."""
    hv = hv_openssh
    hv.ok("node", "scan")
    r, node = runner_of(hv), lab.nodes[0]
    ps = sessions(r, node, [f"sleep 2; echo {i}" for i in range(105)])
    assert [bytes(p.out) for p in ps] == [f"{i}\n".encode() for i in range(105)]
    assert all(p.returncode == 0 for p in ps)
    shared = sum(p.shared for p in ps)
    assert 0 < shared <= 100 and all(p.proc is not None for p in ps if not p.shared), shared

    path = r.control_path(node)
    assert masters(hv, "exit")[node] == 0 and not os.path.exists(path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)                                              # a socket nobody listens on
    stale.close()
    p, = sessions(r, node, ["echo again"])
    assert (p.shared, bytes(p.out), p.returncode) == (False, b"again\n", 0)
    assert masters(hv, "check")[node] == 0                        # ssh opened a new master there
    p, = sessions(r, node, ["echo shared"])
    assert (p.shared, bytes(p.out)) == (True, b"shared\n")


def test_persist_0_logs_in_every_time_and_leaves_no_master(lab, openssh_home):
    hv = openssh_home(persist=0)
    for _ in range(2):
        before = all_logins(lab)
        hv.ok("node", "scan")
        after = all_logins(lab)
        assert all(after[n] == before[n] + 1 for n in lab.nodes), (before, after)
    assert set(masters(hv, "check").values()) == {255}


# -- a bastion ---------------------------------------------------------------------------


@pytest.fixture
def behind_bastion(lab):
    """node2..nodeN refuse SSH from the admin host (iptables in their network
    namespace, removed afterwards); node1 still takes it, and reaches them."""
    admin = lab.env["LAB_ADMIN_IP"]
    rule = ["INPUT", "-s", admin, "-p", "tcp", "--dport", "22", "-j", "REJECT",
            "--reject-with", "tcp-reset"]
    cut = lab.nodes[1:]
    for node in cut:
        lab.exec(node, "iptables", "-I", *rule, check=True)
    yield cut
    for node in cut:
        lab.exec(node, "iptables", "-D", *rule)


def test_every_node_through_the_bastion(lab, hv, openssh_home, behind_bastion):
    admin, bastion = lab.env["LAB_ADMIN_IP"], lab.address("node1")
    # the paramiko transport goes straight to each node: refused now
    r = hv.run("node", "scan")
    assert r.rc == 1, r
    for node in behind_bastion:
        line = trust.unreachable_line(r, node)
        assert f"ssh root@{lab.address(node)}:22: Connection refused" in line, line

    direct, through = all_logins(lab, admin), all_logins(lab, bastion)
    bh = openssh_home("bastion", ssh_config=lab.env["LAB_BASTION_SSH_CONFIG"], persist=120)
    masters(bh, "exit")
    r = bh.run("node", "scan")
    assert r.rc == 0 and all(n["reachable"] for n in bh.state()["nodes"].values()), r
    now_direct, now_through = all_logins(lab, admin), all_logins(lab, bastion)
    for node in behind_bastion:         # logged in from node1's address, never from the admin's
        assert now_through[node] > through[node] and now_direct[node] == direct[node], node
    assert now_direct["node1"] > direct["node1"]

    bh.yes("domain", "start", "tiny1", lab.nodes[-1])             # XML on stdin, through node1
    assert lab.where("tiny1") == [lab.nodes[-1]]
    r = bh.yes("domain", "migrate", "tiny1", "node2")
    assert "tiny1 moved from" in r.out and "Migration: [" in r.out + r.err, r   # streamed
    assert lab.where("tiny1") == ["node2"]

    opened = all_logins(lab)
    bh.ok("node", "scan")                                          # the masters, reused
    assert all_logins(lab) == opened
    assert set(masters(bh, "check").values()) == {0}


# -- the core scenarios, on the openssh transport ---------------------------------------


def test_scan(lab, hv_openssh):
    core.test_node_add_list_scan(lab, hv_openssh)


def test_start_dry_run_then_yes(lab, hv_openssh):
    core.test_start_dry_run_then_yes(lab, hv_openssh)


def test_live_migration(lab, hv_openssh):
    moves.test_live_migration(lab, hv_openssh)


def test_console_of_a_real_guest(lab, hv_openssh):
    opened = []

    def console(name: str = guests.GUEST):
        p = guests.Pty(hv_openssh.argv("domain", "console", name), str(hv_openssh.home))
        opened.append(p)
        return p
    try:
        guests.test_console_info_and_migrations_of_a_real_guest(lab, hv_openssh, console)
    finally:
        for p in opened:
            p.close()


def test_power_off_then_failover(lab, hv_openssh):
    failover.test_power_off_then_failover_runs_each_once_within_memory(lab, hv_openssh)


def test_scan_with_link_down(lab, hv_openssh):
    """The masters are warm when the link goes: the scan still says `timed out`."""
    trust.test_scan_with_link_down(lab, hv_openssh)


def test_host_key_changed(lab, hv_openssh, tmp_path):
    trust.test_host_key_changed(lab, hv_openssh, tmp_path)


def test_libvirtd_frozen(lab, hv_openssh):
    trust.test_libvirtd_frozen(lab, hv_openssh)


def test_accept_new(lab, hv_openssh, tmp_path):
    hardening.test_accept_new_records_hashed_keys_that_ssh_and_havirt_both_read(
        lab, hv_openssh, tmp_path)
