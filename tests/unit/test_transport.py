"""The transport's read loop and connection errors, with a fake paramiko channel.

The lab tests use real sshd; these pin down what a unit can: every byte of
both streams is read, also when the exit status comes first; deadlines; and
how each paramiko failure becomes one NodeUnreachable line.
"""

import os
import socket

import paramiko
import pytest

from havirt.errors import NodeUnreachable
from havirt.remote.commands import Command
from havirt.remote.paramiko_ssh import ParamikoRunner, _collect, _Deadline
from havirt.remote.transport import CommandTimeout, Target
from havirt.store.config import SSHConfig


class FakeChannel:
    """Plays a script of events, one per poll: ('out', b'..'), ('err', b'..'),
    ('exit', code), ('eof',). A pipe with a byte in it makes select() return."""

    def __init__(self, events):
        self.events = list(events)
        self.out, self.err = bytearray(), bytearray()
        self.exit_code = None
        self.eof_received = False
        self.closed = False
        self._r, w = os.pipe()
        os.write(w, b"x")
        os.close(w)
        self.sent = bytearray()

    def fileno(self):
        return self._r

    def _tick(self):
        if self.events:
            ev = self.events.pop(0)
            if ev[0] == "out":
                self.out += ev[1]
            elif ev[0] == "err":
                self.err += ev[1]
            elif ev[0] == "exit":
                self.exit_code = ev[1]
            elif ev[0] == "eof":
                self.eof_received = True

    def recv_ready(self):
        self._tick()
        return bool(self.out)

    def recv_stderr_ready(self):
        return bool(self.err)

    def recv(self, n):
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data

    def recv_stderr(self, n):
        data, self.err = bytes(self.err[:n]), self.err[n:]
        return data

    def exit_status_ready(self):
        return self.exit_code is not None

    def recv_exit_status(self):
        return self.exit_code

    def close(self):
        self.closed = True

    # for ParamikoRunner.run
    def exec_command(self, command):
        self.command = command

    def sendall(self, data):
        self.sent += data

    def shutdown_write(self):
        pass


def far():
    import time
    return time.monotonic() + 30


def test_stderr_that_arrives_after_the_exit_status_is_kept():
    chan = FakeChannel([("out", b"@@hostname\nnode1\n"), ("exit", 1), ("out", b"@@end\n"),
                        ("err", b"error: failed to get domain stats\n"), ("eof",)])
    out, err = _collect(chan, far(), None)
    assert out == b"@@hostname\nnode1\n@@end\n"
    assert err == b"error: failed to get domain stats\n"


def test_everything_is_read_in_order_and_streamed():
    seen = []
    chan = FakeChannel([("out", b"a"), ("err", b"Migration: [ 50 %]"), ("out", b"b"),
                        ("err", b"Migration: [100 %]"), ("exit", 0), ("eof",)])
    out, err = _collect(chan, far(), seen.append)
    assert (out, err) == (b"ab", b"Migration: [ 50 %]Migration: [100 %]")
    assert "".join(seen) == "aMigration: [ 50 %]bMigration: [100 %]"


def test_an_exit_status_without_eof_ends_after_the_drain_time():
    chan = FakeChannel([("out", b"x"), ("exit", 0)])
    out, err = _collect(chan, far(), None, drain=0.2)
    assert (out, err) == (b"x", b"")


def test_a_command_that_never_ends_hits_the_deadline_and_the_channel_is_closed():
    import time
    chan = FakeChannel([("out", b"partial")])
    with pytest.raises(_Deadline):
        _collect(chan, time.monotonic() + 0.3, None)
    assert chan.closed


# -- ParamikoRunner on fake connections -------------------------------------------------

def ssh_cfg(**kw):
    base = dict(user="root", port=22, identity_file=None, known_hosts_file=None,
                host_key_policy="reject", connect_timeout=1.0, command_timeout=0.3,
                parallel=4, ssh_config=None)
    base.update(kw)
    return SSHConfig(**base)


class FakeTransport:
    def __init__(self, chan):
        self.chan = chan

    def is_active(self):
        return True

    def open_session(self, timeout=None):
        return self.chan


class FakeClient:
    def __init__(self, chan):
        self.transport = FakeTransport(chan)
        self.closed = False

    def get_transport(self):
        return self.transport

    def close(self):
        self.closed = True


def runner_with(monkeypatch, channels: dict):
    r = ParamikoRunner(ssh_cfg(), {n: Target(n, f"10.0.0.{i}") for i, n in enumerate(channels, 1)})
    clients = {}

    def connect(node):
        if isinstance(channels[node], Exception):
            raise channels[node]
        clients[node] = FakeClient(channels[node])
        return clients[node]
    monkeypatch.setattr(r, "_connect", connect)
    return r, clients


def test_run_returns_the_result_with_stdin_sent(monkeypatch):
    chan = FakeChannel([("out", b"hi\n"), ("exit", 0), ("eof",)])
    r, _ = runner_with(monkeypatch, {"node1": chan})
    res = r.run("node1", Command(op="cat", argv=("cat",)), stdin=b"<domain/>")
    assert (res.exit_code, res.stdout, res.ok) == (0, "hi\n", True)
    assert chan.command == "cat" and bytes(chan.sent) == b"<domain/>"


def test_a_command_timeout_drops_the_connection(monkeypatch):
    chan = FakeChannel([("out", b"...")])
    r, clients = runner_with(monkeypatch, {"node1": chan})
    with pytest.raises(CommandTimeout, match="no answer within 0.3 s"):
        r.run("node1", Command(op="list", argv=("virsh", "list")))
    assert clients["node1"].closed and "node1" not in r._clients


def test_run_many_returns_each_nodes_outcome(monkeypatch):
    ok = FakeChannel([("out", b"x"), ("exit", 0), ("eof",)])
    r, _ = runner_with(monkeypatch, {"node1": ok,
                                     "node2": NodeUnreachable("node2", "connect timed out")})
    true = Command(op="true", argv=("true",))
    got = r.run_many({"node1": true, "node2": true})
    assert got["node1"].stdout == "x"
    assert isinstance(got["node2"], NodeUnreachable) and got["node2"].reason == "connect timed out"


def test_commands_sent_at_once_to_one_node_share_one_connection(monkeypatch):
    """Several threads asking for a node's connection at the same time (a
    failover's starts on one node) open it once, not once each."""
    import threading
    import time
    r = ParamikoRunner(ssh_cfg(), {"node1": Target("node1", "10.0.0.1")})
    opened, meet = [], threading.Barrier(4, timeout=5)

    def connect(node):
        opened.append(node)
        time.sleep(0.1)             # the others ask meanwhile
        return FakeClient(FakeChannel([]))
    monkeypatch.setattr(r, "_connect", connect)

    def ask():
        meet.wait()
        return r._client("node1")
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == ["node1"] and len(r._clients) == 1


# -- _connect: every paramiko failure is one line naming the node's address ------------

@pytest.mark.parametrize("raised, expected", [
    (socket.timeout("timed out"), "ssh root@10.0.0.1:22: connect timed out after 1 s"),
    (ConnectionRefusedError(111, "Connection refused"), "ssh root@10.0.0.1:22: Connection refused"),
    (paramiko.AuthenticationException("Authentication failed."),
     "ssh root@10.0.0.1:22: Authentication failed."),
    (paramiko.SSHException("Server '10.0.0.1' not found in known_hosts"),
     "host key of 10.0.0.1 is not in known_hosts (add it, or set ssh.host_key_policy: accept-new)"),
    (EOFError(), "ssh root@10.0.0.1:22: EOFError"),
])
def test_connect_errors(monkeypatch, raised, expected):
    def connect(self, *a, **kw):
        raise raised
    monkeypatch.setattr(paramiko.SSHClient, "connect", connect)
    r = ParamikoRunner(ssh_cfg(), {"node1": Target("node1", "10.0.0.1")})
    with pytest.raises(NodeUnreachable) as e:
        r._connect("node1")
    assert e.value.node == "node1"
    assert expected in e.value.reason


def test_a_changed_host_key_is_refused_naming_the_old_one(monkeypatch):
    key_a = paramiko.RSAKey.generate(1024)
    key_b = paramiko.RSAKey.generate(1024)

    def connect(self, *a, **kw):
        raise paramiko.BadHostKeyException("10.0.0.1", key_b, key_a)
    monkeypatch.setattr(paramiko.SSHClient, "connect", connect)
    r = ParamikoRunner(ssh_cfg(), {"node1": Target("node1", "10.0.0.1")})
    with pytest.raises(NodeUnreachable, match="host key of 10.0.0.1 CHANGED") as e:
        r._connect("node1")
    assert key_a.get_base64()[:16] in e.value.reason


def test_describe_is_what_an_admin_types():
    r = ParamikoRunner(ssh_cfg(), {"node1": Target("node1", "10.0.0.1", user="admin", port=2222)})
    assert r.describe("node1") == "ssh -p 2222 admin@10.0.0.1"


def test_transport_imports_paramiko_only_when_connecting():
    """Neither transport's module imports paramiko; the openssh one never needs it."""
    import subprocess
    import sys
    modules = "havirt.remote.transport, havirt.remote.backends, havirt.remote.paramiko_ssh, " \
              "havirt.remote.openssh"
    p = subprocess.run([sys.executable, "-c", f"import sys, {modules}; print('paramiko' in sys.modules)"],
                       capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "False\n"), p.stderr


def test_a_channel_above_descriptor_1024_is_waited_on():
    """Hundreds of nodes: a channel's descriptor may be above 1024, which
    select() refuses (ValueError); poll() does not."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1600:
        pytest.skip("the limit of open files is below 1600")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1600), hard))
    chan = FakeChannel([("out", b"a")] + [("none",)] * 5 + [("exit", 0), ("eof",)])
    high = os.dup2(chan._r, 1500)
    chan.fileno = lambda: high
    try:
        out, err = _collect(chan, far(), None)
    finally:
        os.close(high)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (out, err) == (b"a", b"")
