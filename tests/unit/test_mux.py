"""remote/mux.py against a master of this test: what a real master never
does on demand (refuse, go away at a given moment, say something too
large, freeze). The real one, OpenSSH's, is in the lab tests
(tests/integration/test_openssh.py)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from havirt.remote import mux
from havirt.remote.processes import drive

FALLBACK = ["sh", "-c", "cat >/dev/null; echo by ssh"]


def _message(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise EOFError
        data += part
    return data


class Master:
    """A master for one session: says hello, takes the request and the three
    descriptors, then does what `script` says with them."""

    def __init__(self, folder, script, hello=(mux.HELLO, mux.VERSION)):
        self.path = os.path.join(folder, "master")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.path)
        self.server.listen(4)
        self.script, self.hello = script, hello
        self.command = None
        self.env: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.server.accept()
        with conn:
            if self.hello is None:                    # frozen: never says hello
                time.sleep(3)
                return
            conn.sendall(_message(struct.pack(">II", *self.hello)))
            try:
                length, = struct.unpack(">I", _read(conn, 4))
                _read(conn, length)                   # the client's hello
                length, = struct.unpack(">I", _read(conn, 4))
                body = _read(conn, length)
            except EOFError:
                return
            rest = body[8:]
            fields = []
            n, = struct.unpack(">I", rest[:4])
            rest = rest[4 + n:]                       # reserved
            rest = rest[20:]                          # four flags and the escape character
            while rest:
                n, = struct.unpack(">I", rest[:4])
                fields.append(rest[4:4 + n])
                rest = rest[4 + n:]
            self.command, self.env = fields[1].decode(), fields[2:]
            fds = []
            for _ in range(3):
                _, anc, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(4))
                fds.append(struct.unpack("i", anc[0][2][:4])[0])
            try:
                self.script(conn, *fds)
            finally:
                for fd in fds:
                    os.close(fd)


def opened(conn):
    conn.sendall(_message(struct.pack(">III", mux.S_SESSION_OPENED, 1, 7)))


def exit_with(conn, value):
    conn.sendall(_message(struct.pack(">III", mux.S_EXIT_MESSAGE, 7, value)))


def run(path, stdin=None, timeout=10, handshake=5.0):
    p = mux.SharedSession(path, "the command", FALLBACK, stdin, timeout, handshake=handshake)
    drive([p], 1)
    return p


def test_a_session_its_streams_stdin_and_exit_status(tmp_path):
    data = b"x" * 300000                              # more than a pipe holds

    def script(conn, i, o, e):
        opened(conn)
        got = b""
        while len(got) < len(data):
            got += os.read(i, 65536)
        os.write(o, b"%d\n" % len(got))
        os.write(e, b"warning\n")
        exit_with(conn, 7)
    m = Master(str(tmp_path), script)
    p = run(m.path, data)
    assert (p.shared, p.returncode, bytes(p.out), bytes(p.err)) == (True, 7, b"300000\n", b"warning\n")
    assert m.command == "the command" and p.proc is None
    assert b"PATH=" + os.environb[b"PATH"] in m.env    # offered; the master keeps what SendEnv names


def test_refused_before_it_opened_runs_in_ssh(tmp_path):
    def script(conn, i, o, e):
        reason = b"Session open refused by peer"
        conn.sendall(_message(struct.pack(">III", mux.S_FAILURE, 1, len(reason)) + reason))
    p = run(Master(str(tmp_path), script).path, b"in")
    assert (p.shared, p.returncode, bytes(p.out)) == (False, 0, b"by ssh\n")


def test_gone_before_it_opened_runs_in_ssh(tmp_path):
    p = run(Master(str(tmp_path), lambda conn, i, o, e: None).path)
    assert (p.shared, p.returncode, bytes(p.out)) == (False, 0, b"by ssh\n")


@pytest.mark.parametrize("setup", ["no socket", "stale socket", "another version", "frozen"])
def test_no_usable_master_runs_in_ssh(tmp_path, setup):
    path = str(tmp_path / "master")
    if setup == "stale socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
    elif setup != "no socket":
        hello = (mux.HELLO, 3) if setup == "another version" else None
        path = Master(str(tmp_path), lambda *a: None, hello=hello).path
    t = time.monotonic()
    p = run(path, handshake=0.5)
    assert (p.shared, p.returncode, bytes(p.out)) == (False, 0, b"by ssh\n")
    assert time.monotonic() - t < 3


def test_a_frozen_master_is_gone_round(tmp_path):
    """A master that does not say hello: ssh with the same ControlPath would
    wait for it (before OpenSSH 9.4, forever), so the session runs in the
    ssh that goes round it."""
    path = Master(str(tmp_path), lambda *a: None, hello=None).path
    p = mux.SharedSession(path, "the command", FALLBACK, None, 10, handshake=0.5,
                          direct=lambda: ["sh", "-c", "echo round it"])
    drive([p], 1)
    assert (p.shared, p.returncode, bytes(p.out)) == (False, 0, b"round it\n")


def test_output_after_the_exit_message_is_all_read(tmp_path):
    """The exit message may come before the master has written the last of
    the output: the session ends when the master closes its socket."""
    def script(conn, i, o, e):
        opened(conn)
        os.write(o, b"first\n")
        exit_with(conn, 0)
        time.sleep(1.2)                               # longer than DRAIN
        os.write(o, b"last\n")
        os.write(e, b"late warning\n")
    p = run(Master(str(tmp_path), script).path)
    assert (p.shared, p.returncode, bytes(p.out), bytes(p.err)) == (True, 0, b"first\nlast\n", b"late warning\n")


def test_a_second_opened_message_changes_nothing(tmp_path):
    def script(conn, i, o, e):
        opened(conn)
        opened(conn)
        os.write(o, os.read(i, 10))
        exit_with(conn, 3)
    p = run(Master(str(tmp_path), script).path, b"ok\n")
    assert (p.shared, p.returncode, bytes(p.out)) == (True, 3, b"ok\n")


@pytest.mark.parametrize("reply", ["opened", "refused"])
def test_a_reply_to_another_request_is_ssh_exit_255(tmp_path, reply):
    """As ssh's client: an out-of-sequence reply is fatal; whether the session
    started is unknown, so it is neither taken as opened nor run again."""
    def script(conn, i, o, e):
        if reply == "opened":
            conn.sendall(_message(struct.pack(">III", mux.S_SESSION_OPENED, 2, 7)))
        else:
            conn.sendall(_message(struct.pack(">III", mux.S_FAILURE, 2, 0)))
        os.write(o, b"ran")
        try:
            exit_with(conn, 0)
        except OSError:                               # havirt has closed its end already
            pass
        time.sleep(0.3)
    p = run(Master(str(tmp_path), script).path)
    assert (p.shared, p.returncode, bytes(p.out)) == (True, 255, b"ran")
    assert b"answered request 2, not 1" in bytes(p.err)


def test_the_exit_of_another_session_is_ssh_exit_255(tmp_path):
    def script(conn, i, o, e):
        opened(conn)
        conn.sendall(_message(struct.pack(">III", mux.S_EXIT_MESSAGE, 8, 0)))
        time.sleep(0.3)
    p = run(Master(str(tmp_path), script).path)
    assert (p.shared, p.returncode) == (True, 255)
    assert b"the exit of another session (8)" in bytes(p.err)


def test_gone_after_it_opened_is_ssh_exit_255(tmp_path):
    def script(conn, i, o, e):
        opened(conn)
        os.write(o, b"half")
    p = run(Master(str(tmp_path), script).path)
    assert (p.shared, p.returncode, bytes(p.out), bytes(p.err)) == (True, 255, b"half", b"")


def test_a_message_no_master_sends_ends_it(tmp_path):
    def script(conn, i, o, e):
        opened(conn)
        conn.sendall(struct.pack(">I", mux.MAX_MESSAGE + 1))
        time.sleep(1)
    p = run(Master(str(tmp_path), script).path)
    assert (p.shared, p.returncode) == (True, 255)
    assert b"a message of" in bytes(p.err)


def test_past_its_deadline_the_session_is_given_up(tmp_path):
    closed = threading.Event()

    def script(conn, i, o, e):
        opened(conn)
        conn.settimeout(10)
        if conn.recv(1) == b"":                       # havirt hung up: the master ends the session
            closed.set()
    t = time.monotonic()
    p = run(Master(str(tmp_path), script).path, timeout=0.5)
    assert p.shared and p.timed_out and time.monotonic() - t < 3
    assert closed.wait(5)


def test_the_output_after_the_exit_message_is_kept(tmp_path):
    """The master may say the exit status before the last output reaches the pipe."""
    def script(conn, i, o, e):
        opened(conn)
        exit_with(conn, 0)
        time.sleep(0.2)
        os.write(o, b"late\n")
    p = run(Master(str(tmp_path), script).path)
    assert (p.returncode, bytes(p.out)) == (0, b"late\n")


def _descriptors() -> set[tuple[str, str]]:
    """This process's open descriptors, each with what it refers to (a number
    closed by an earlier test's thread and opened again is a new one)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except FileNotFoundError:  # listdir's own, or closed meanwhile
            pass
    return out


def test_no_descriptor_is_left_open(tmp_path):
    before = _descriptors()
    for script in (lambda conn, i, o, e: (opened(conn), exit_with(conn, 0)),
                   lambda conn, i, o, e: None):
        m = Master(str(tmp_path), script)
        run(m.path, b"in")
        m.thread.join(5)
        m.server.close()
        os.unlink(m.path)
    assert _descriptors() - before == set()
