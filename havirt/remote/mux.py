"""A session on an open ssh master, asked for by havirt itself: no ssh
process is started for it.

A master (ControlMaster) listens on its ControlPath socket and speaks
OpenSSH's multiplexing protocol (PROTOCOL.mux in OpenSSH's sources, version
4 since OpenSSH 5.x). What `ssh -S PATH host COMMAND` does as a client, and
all it does, is done here: say hello, ask for a session with the command,
hand over the three descriptors of its stdin, stdout and stderr (SCM_RIGHTS),
then wait for the exit message and for the master to close its socket, which
it does once it has written all the output (the exit message may come first). The master runs the session on its
connection exactly as for its own ssh clients: ssh_config's SendEnv and
SetEnv are the master's (the environment is offered; the master keeps what
SendEnv names), the host key was checked when the master connected.

Starting an ssh client costs more CPU than the session itself, and a scan
opens one session on every node (measured on a lab node, sessions of
`true`: 8.2-10.3 ms of the machine's CPU through `ssh`, 4.2-5.2 ms of it the
admin host's; 3.3-3.5 ms through this, 0.3 ms the admin host's;
bench/session_cost.py).

Where ssh's own client gives up the master and connects by itself, so
does this: the session falls back to `argv` (ssh, which opens a master with
ControlMaster=auto) when there is no usable master (no socket, a stale one,
another protocol version; one that does not answer its hello within the
connect timeout: `direct`, an ssh that goes round it, for an ssh before 9.4
would wait for it forever) or when the master refuses the session or goes
away before it is open (MaxSessions reached; its node stopped answering, and its
keepalives gave it up). Once the session is open, an end without its exit
message is ssh's exit 255 (what ssh says then: nothing); so is a reply to
another request, or the exit message of another session (ssh's client
stops there: whether the session started is unknown).
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import time

from havirt.remote.processes import DRAIN, Process

VERSION = 4
HELLO = 0x00000001
NEW_SESSION = 0x10000002
S_PERMISSION_DENIED = 0x80000002
S_FAILURE = 0x80000003
S_EXIT_MESSAGE = 0x80000004
S_SESSION_OPENED = 0x80000006
NO_ESCAPE = 0xFFFFFFFF
REQUEST_ID = 1                    # one request per connection to the master
MAX_MESSAGE = 256 * 1024          # the master's messages are a few bytes; more is not a master


def _string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _message(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _environment() -> list[bytes]:
    """Every NAME=value of the environment (the master keeps what SendEnv names)."""
    return [k + b"=" + v for k, v in os.environb.items() if k and b"=" not in k]


def session_request(command: str, request_id: int = REQUEST_ID) -> bytes:
    """MUX_C_NEW_SESSION: no terminal, no X11, no agent, no subsystem, no escape key."""
    body = struct.pack(">II", NEW_SESSION, request_id) + _string(b"")
    body += struct.pack(">IIIII", 0, 0, 0, 0, NO_ESCAPE) + _string(b"") + _string(command.encode())
    for env in _environment():
        body += _string(env)
    return _message(body)


class SharedSession(Process):
    """A Process (processes.drive runs it among others) whose command runs
    on the master at `path`, or, without a usable one, in `argv` (ssh)."""

    def __init__(self, path: str, command: str, argv: list[str], stdin: bytes | None,
                 timeout: float, on_output=None, handshake: float = 5.0, direct=None):
        """`direct`: a function giving the argv of an ssh that goes round the
        master (for one that does not answer: an ssh before 9.4 would wait
        for it forever); None: `argv`."""
        super().__init__(argv, stdin, timeout, on_output)
        self.path, self.command, self.handshake, self.direct = path, command, handshake, direct
        self.shared = False             # the session runs on the master (not through ssh)
        self.sock: socket.socket | None = None
        self.pipes: dict = {}           # our end -> "in" | "out" | "err"
        self.inbox = bytearray()
        self.hello_by = 0.0             # the master's hello is awaited until then
        self.hello_seen = False
        self.opened = False
        self.session_id: int | None = None     # the master's, in its "opened"
        self.exit_value: int | None = None
        self.ended_why: str | None = None
        self.closed_at: float | None = None     # when the master closed its socket

    # -- starting ------------------------------------------------------------------------
    def spawn(self) -> None:
        """Connect and say hello; the request follows the master's hello (in
        the loop: no thread waits for a master to answer)."""
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout
        try:                            # no socket, or nobody listening on it: OSError
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.sock.settimeout(self.handshake)
            self.sock.connect(self.path)
            self.sock.sendall(_message(struct.pack(">II", HELLO, VERSION)))
            self.sock.setblocking(False)
        except OSError:
            self._close_own()
            self._spawn_ssh()
            return
        self.hello_by = time.monotonic() + self.handshake
        self.shared = True

    def _request(self, sel) -> None:
        """Ask for the session and hand over its three descriptors. Until the
        last one is sent the master cannot start it: a failure here falls back."""
        theirs = []
        try:
            if self.stdin is None:
                theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            else:
                in_theirs, in_ours = os.pipe2(os.O_CLOEXEC)
                self.pipes[in_ours] = "in"
                theirs.append(in_theirs)
            for name in ("out", "err"):
                ours, out_theirs = os.pipe2(os.O_CLOEXEC)
                self.pipes[ours] = name
                theirs.append(out_theirs)
            self.sock.settimeout(self.handshake)
            self.sock.sendall(session_request(self.command))
            for fd in theirs:           # one byte each, as the master reads them
                self.sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
            self.sock.setblocking(False)
        except OSError:
            return self._fall_back(sel)
        finally:
            for fd in theirs:
                os.close(fd)
        for fd, name in self.pipes.items():
            if name != "in":            # stdin is written once the session is open
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ, self)
                self.open.add(fd)

    def _close_own(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for fd in self.pipes:
            os.close(fd)
        self.pipes = {}

    def attach(self, sel) -> None:
        if not self.shared:
            return super().attach(sel)
        sel.register(self.sock, selectors.EVENT_READ, self)
        self.open.add(self.sock)

    # -- the loop ------------------------------------------------------------------------
    def ready(self, obj, sel) -> None:
        if not self.shared:
            return super().ready(obj, sel)
        if obj is self.sock:
            return self._from_master(sel)
        name = self.pipes[obj]
        if name == "in":
            return self._write(obj, sel)
        self._read(obj, sel, name == "out")

    def _from_master(self, sel) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close(self.sock, sel)
            self.closed_at = time.monotonic()
            if not self.opened:
                self._fall_back(sel)    # as ssh does: the master went away (its node did not answer)
            elif self.exit_value is None:
                self._ended("")         # as ssh: exit 255, nothing said
            return
        self.inbox.extend(data)
        while len(self.inbox) >= 4:
            length, = struct.unpack(">I", self.inbox[:4])
            if not 8 <= length <= MAX_MESSAGE:
                self.close(self.sock, sel)
                return self._ended(f"the shared connection said a message of {length} bytes")
            if len(self.inbox) < 4 + length:
                return
            body, self.inbox = bytes(self.inbox[4:4 + length]), self.inbox[4 + length:]
            self._message(body, sel)
            if self.sock not in self.open:      # fell back to ssh
                return

    def _message(self, body: bytes, sel) -> None:
        kind, = struct.unpack(">I", body[:4])
        if not self.hello_seen:
            if len(body) < 8 or struct.unpack(">II", body[:8]) != (HELLO, VERSION):
                return self._fall_back(sel)     # not a master of protocol version 4
            self.hello_seen = True
            return self._request(sel)
        ids = struct.unpack(">I", body[4:8])[0]   # the request's, or the session's (8 bytes at least)
        if kind in (S_SESSION_OPENED, S_FAILURE, S_PERMISSION_DENIED) and ids != REQUEST_ID:
            # as ssh: a reply to another request is fatal, exit 255 (whether it started is unknown)
            self.close(self.sock, sel)
            return self._ended(f"the shared connection answered request {ids}, not {REQUEST_ID}")
        if kind == S_SESSION_OPENED and not self.opened and len(body) >= 12:
            self.opened = True
            self.session_id = struct.unpack(">I", body[8:12])[0]
            for fd, name in self.pipes.items():
                if name == "in":
                    os.set_blocking(fd, False)
                    sel.register(fd, selectors.EVENT_WRITE, self)
                    self.open.add(fd)
        elif kind == S_EXIT_MESSAGE and len(body) >= 12 and ids != self.session_id:
            self.close(self.sock, sel)         # as ssh: the exit of another session is fatal
            return self._ended(f"the shared connection said the exit of another session ({ids})")
        elif kind == S_EXIT_MESSAGE and len(body) >= 12:
            self.exit_value = struct.unpack(">I", body[8:12])[0]
            self.exited = time.monotonic()
        elif kind in (S_FAILURE, S_PERMISSION_DENIED) and not self.opened:
            self._fall_back(sel)        # refused before it started: nothing ran
        elif kind in (S_FAILURE, S_PERMISSION_DENIED):
            self._ended("the shared connection refused: " + _reason(body))

    def _fall_back(self, sel) -> None:
        for obj in list(self.open):
            self.close(obj, sel)
        self._close_own()
        self.shared = False
        self.inbox.clear()
        self._spawn_ssh()
        super().attach(sel)

    def _spawn_ssh(self) -> None:
        """ssh itself (ControlMaster=auto), within the deadline set at the start."""
        started, deadline = self.started, self.deadline
        super().spawn()
        self.started, self.deadline = started, deadline

    def _ended(self, why: str) -> None:
        """The master went away without the exit status: ssh's exit 255."""
        if self.ended_why is None:
            self.ended_why = why
            self.exited = time.monotonic()

    # -- the end -------------------------------------------------------------------------
    def close(self, obj, sel) -> None:
        if not self.shared or obj not in self.pipes:
            return super().close(obj, sel)
        sel.unregister(obj)
        os.close(obj)
        del self.pipes[obj]
        self.open.discard(obj)

    def done(self, now: float, sel) -> bool:
        if self.shared and not self.hello_seen and now >= self.hello_by:
            if self.direct is not None:
                self.argv = self.direct()
            self._fall_back(sel)        # a master that does not answer (stopped): ssh round it
        if not self.shared:
            return super().done(now, sel)
        if (self.exited is None or self._closing()) and now >= self.deadline:
            self.timed_out = True
        elif self.exited is None or self._closing() or (self._streams() and now - self._last() < DRAIN):
            return False
        self.end(sel)
        if self.timed_out:
            self.returncode = -9
        elif self.ended_why is not None:
            self.returncode = 255
            if self.ended_why:
                self.err.extend(f"\n{self.ended_why}\n".encode())
        else:
            self.returncode = self.exit_value
        self.duration = now - self.started
        return True

    def _closing(self) -> bool:
        """The exit status came, and the master has yet to close its socket:
        it does so once all the output is written to our pipes (ssh's client
        waits for that too: the exit message may come before the last of it)."""
        return self.ended_why is None and self.sock is not None and self.sock in self.open

    def _streams(self) -> bool:
        return any(self.pipes.get(obj) in ("out", "err") for obj in self.open)

    def _last(self) -> float:
        return max(self.exited, self.closed_at or self.exited)

    def end(self, sel) -> None:
        if not self.shared:
            return super().end(sel)
        for obj in list(self.open):     # closing the socket ends the session on the master
            self.close(obj, sel)
        self._close_own()

    def wake_at(self, now: float) -> float:
        if not self.shared:
            return super().wake_at(now)
        if not self.hello_seen:
            return min(self.deadline, self.hello_by)
        if self.exited is None or self._closing():
            return self.deadline
        return min(self.deadline, self._last() + DRAIN)


def _reason(body: bytes) -> str:
    try:
        n, = struct.unpack(">I", body[8:12])
        return body[12:12 + n].decode(errors="replace") or "no reason given"
    except struct.error:
        return "no reason given"
