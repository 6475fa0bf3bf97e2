"""The paramiko transport (the default): one paramiko connection per node,
opened by each havirt command and kept until it ends; a command for many
nodes runs on ssh.parallel threads at once (each waits on its socket, the
GIL free meanwhile).

paramiko is imported only here, and only when a connection is needed.
"""

from __future__ import annotations

import os
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from havirt.errors import ConfigError, NodeUnreachable
from havirt.remote.transport import (
    Result,
    SSHTransport,
    auth_failed,
    command_timed_out,
    connect_timed_out,
    failed,
    host_key_changed,
    host_key_unknown,
    open_files_for,
    session_failed,
)
from havirt.store.files import MAX_SSH, read_file

FILES_PER_CONNECTION = 3     # the socket, and the pipe a channel waits on
NO_BANNER = "Error reading SSH protocol banner"


class ParamikoRunner(SSHTransport):
    def __init__(self, ssh_cfg, targets):
        super().__init__(ssh_cfg, targets)
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()
        self._connecting: dict[str, threading.Lock] = {}     # node -> held while connecting it
        self._known_hosts_checked = False

    def _connect(self, node: str):
        import logging

        import paramiko
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        ep = self.endpoint(node)
        client = paramiko.SSHClient()
        policy = self.cfg.host_key_policy
        kh = self.cfg.known_hosts_file
        if policy != "ignore" and kh and os.path.isfile(kh):
            self._check_known_hosts(kh)
            client.load_host_keys(kh)
        if policy == "reject":
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        elif policy == "accept-new":
            client.set_missing_host_key_policy(_AcceptNew(kh))
        else:
            client.set_missing_host_key_policy(paramiko.MissingHostKeyPolicy())
        t = self.cfg.connect_timeout
        try:
            client.connect(
                ep.host, port=ep.port, username=ep.user,
                key_filename=ep.key_filenames or None,
                look_for_keys=not ep.key_filenames, allow_agent=not ep.key_filenames,
                timeout=t, banner_timeout=t, auth_timeout=t, channel_timeout=t)
        except paramiko.BadHostKeyException as e:
            client.close()
            raise host_key_changed(node, ep.host, f"{e.expected_key.get_name()} "
                                   f"{e.expected_key.get_base64()[:16]}...") from None
        except paramiko.AuthenticationException:
            client.close()
            raise failed(node, ep, auth_failed()) from None
        except paramiko.SSHException as e:
            client.close()
            msg = str(e) or type(e).__name__
            if "not found in known_hosts" in msg:
                raise host_key_unknown(node, ep.host, kh) from None
            if msg == NO_BANNER:        # paramiko adds the reason; a timeout has none
                msg = connect_timed_out(t) + " (no SSH banner)"
            raise failed(node, ep, msg) from None
        except (OSError, EOFError) as e:
            client.close()
            if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError) and e.errors:
                e = next(iter(e.errors.values()))      # what connect() said, as ssh says it
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            if "timed out" in reason:
                reason = connect_timed_out(t)
            raise failed(node, ep, reason) from None
        return client

    def _check_known_hosts(self, path: str) -> None:
        """Once per runner: every line of known_hosts must parse (a corrupt one
        is the admin's to fix: one line naming it, exit 2)."""
        with self._lock:
            if self._known_hosts_checked:
                return
            check_known_hosts(path)
            self._known_hosts_checked = True

    def _client(self, node: str):
        """The node's connection, opened if there is none: once, also when
        several threads ask for it at the same time (their commands then
        share it, each on a channel of its own)."""
        with self._lock:
            connecting = self._connecting.setdefault(node, threading.Lock())
        with connecting:
            with self._lock:
                client = self._clients.get(node)
            tr = client.get_transport() if client else None
            if client is None or tr is None or not tr.is_active():
                client = self._connect(node)
                with self._lock:
                    self._clients[node] = client
        return client

    def _drop(self, node: str) -> None:
        with self._lock:
            client = self._clients.pop(node, None)
        if client is not None:
            client.close()

    # -- running -------------------------------------------------------------
    def run(self, node, command, stdin=None, timeout=None, on_output=None) -> Result:
        timeout = timeout or self.cfg.command_timeout
        text = command.text()
        start = time.monotonic()
        client = self._client(node)
        try:
            chan = client.get_transport().open_session(timeout=self.cfg.connect_timeout)
            chan.exec_command(text)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = _collect(chan, start + timeout, on_output)
        except _Deadline:
            self._drop(node)
            raise command_timed_out(node, timeout, text) from None
        except (OSError, EOFError, Exception) as e:
            if isinstance(e, NodeUnreachable):
                raise
            self._drop(node)
            raise session_failed(node, str(e) or type(e).__name__) from None
        return Result(node=node, command=text, exit_code=chan.recv_exit_status(),
                      stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"),
                      duration=time.monotonic() - start)

    def run_many(self, commands):
        def one(item):
            node, command = item
            try:
                return node, self.run(node, command)
            except NodeUnreachable as e:
                return node, e
        if not commands:
            return {}
        # threads wait on sockets (the GIL is free meanwhile); connections stay open
        # until close(): the limit of open files must hold them all
        open_files_for(len(self._clients) + len(commands), FILES_PER_CONNECTION)
        workers = max(1, min(self.cfg.parallel, len(commands)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(one, commands.items()))

    def close(self):
        for node in list(self._clients):
            self._drop(node)


class _Deadline(Exception):
    pass


def _collect(chan, deadline: float, on_output, drain: float = 2.0) -> tuple[bytes, bytes]:
    """Read stdout and stderr until the command ends and BOTH streams reach
    end of file: the exit status can arrive before the last bytes, and the
    scan depends on virsh's last words (its `error:` lines on stderr)."""
    out, err = bytearray(), bytearray()

    def pump() -> bool:
        got = False
        for ready, recv, buf in ((chan.recv_ready, chan.recv, out),
                                 (chan.recv_stderr_ready, chan.recv_stderr, err)):
            while ready():
                data = recv(65536)
                if not data:
                    break
                buf.extend(data)
                got = True
                if on_output:  # virsh prints migration progress on stderr
                    on_output(data.decode(errors="replace"))
        return got

    ended_at = poller = None
    while True:
        progressed = pump()
        now = time.monotonic()
        if ended_at is None and chan.exit_status_ready():
            ended_at = now
        if ended_at is not None:
            if (chan.eof_received or chan.closed) and not chan.recv_ready() \
                    and not chan.recv_stderr_ready():
                return bytes(out), bytes(err)
            if now - ended_at >= drain or now >= deadline:
                return bytes(out), bytes(err)   # no EOF after the exit status: take what came
        if progressed:
            continue
        left = deadline - now
        if left <= 0:
            chan.close()
            raise _Deadline()
        if poller is None:      # poll, not select: a descriptor above 1024 is fine
            poller = select.poll()
            poller.register(chan.fileno(), select.POLLIN)
        poller.poll(min(left, 0.05) * 1000)


class _AcceptNew:
    """Host key policy 'accept-new': trust a key never seen, record it as
    OpenSSH does with HashKnownHosts (the host name hashed, as `ssh-keygen -H`
    writes it), in a ~/.ssh created 0700 and a known_hosts created 0600."""

    def __init__(self, path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        if not self.path:
            return
        import paramiko
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, mode=0o700, exist_ok=True)
        line = f"{paramiko.HostKeys.hash_host(hostname)} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())     # one write: lines of parallel connects never mix
        finally:
            os.close(fd)


def check_known_hosts(path: str) -> None:
    """Raise ConfigError naming the first line of known_hosts that paramiko
    cannot read (it would otherwise fail every connection with a bare error)."""
    import paramiko
    try:
        lines = read_file(path, MAX_SSH).split(b"\n")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    for n, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8").strip()
            if line and not line.startswith("#"):
                paramiko.hostkeys.HostKeyEntry.from_line(line, n)
        except Exception as e:  # paramiko raises several kinds here
            why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else "unreadable key"
            raise ConfigError(f"{path}: line {n}: not a valid known_hosts entry ({why}); "
                              "fix or remove that line") from None
