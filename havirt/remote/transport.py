"""SSH transport: one paramiko connection per node, commands run in parallel.

`Runner` is the interface the rest of havirt sees (a constructor argument,
so tests pass a fake). `SSHRunner` is the real one. paramiko is imported
only here, and only when a connection is needed: commands that only read
the state file never pay for it.
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from havirt.errors import ConfigError, NodeUnreachable, UsageError
from havirt.names import check_address, check_user, quote_argv
from havirt.parse.numbers import PORT, whole_in
from havirt.store.files import MAX_SSH, read_file


@dataclass
class Target:
    """How to reach one node."""

    name: str
    address: str
    user: str | None = None
    port: int | None = None


@dataclass
class Result:
    node: str
    command: str                # the text that was run
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandTimeout(NodeUnreachable):
    """The command did not finish within the command timeout."""


class Runner:
    """Interface: run a command on a node, or one command on many nodes.

    A command is a remote.commands.Command; a runner sends its text()."""

    def run(self, node: str, command, stdin: bytes | None = None,
            timeout: float | None = None, on_output=None) -> Result:
        raise NotImplementedError

    def run_many(self, commands: dict) -> dict[str, Result | NodeUnreachable]:
        """Every node's outcome, success or NodeUnreachable; the caller decides."""
        raise NotImplementedError

    def describe(self, node: str) -> str:
        """`ssh user@host` as an admin would type it (for dry runs)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class _Endpoint:
    host: str
    user: str
    port: int
    key_filenames: list[str] = field(default_factory=list)


class SSHRunner(Runner):
    def __init__(self, ssh_cfg, targets: dict[str, Target]):
        self.cfg = ssh_cfg
        self.targets = targets
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()
        self._ssh_config = None
        if ssh_cfg.ssh_config and os.path.isfile(ssh_cfg.ssh_config):
            self._ssh_config = SSHConfigFile(ssh_cfg.ssh_config)
        self._known_hosts_checked = False

    # -- where and how -------------------------------------------------------
    def endpoint(self, node: str) -> _Endpoint:
        t = self.targets[node]
        host, user, port, keys = t.address, None, None, []
        if self._ssh_config is not None:
            found = self._ssh_config.lookup(t.address)
            host = found.get("hostname", host)
            user = found.get("user")
            port = found.get("port")
            keys = found.get("identityfile", [])
        if self.cfg.identity_file:
            keys = [self.cfg.identity_file] + keys
        return _Endpoint(host=host, user=t.user or user or self.cfg.user,
                         port=t.port or port or self.cfg.port, key_filenames=keys)

    def describe(self, node: str) -> str:
        ep = self.endpoint(node)
        port = f" -p {ep.port}" if ep.port != 22 else ""
        return f"ssh{port} {quote_argv([f'{ep.user}@{ep.host}'])}"

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
            raise NodeUnreachable(node, f"host key of {ep.host} CHANGED (known_hosts has "
                                  f"{e.expected_key.get_name()} {e.expected_key.get_base64()[:16]}...,"
                                  " the node offered another); refusing") from None
        except paramiko.SSHException as e:
            client.close()
            msg = str(e) or type(e).__name__
            if "not found in known_hosts" in msg:
                msg = (f"host key of {ep.host} is not in {kh or 'known_hosts'} "
                       "(add it, or set ssh.host_key_policy: accept-new)")
            raise NodeUnreachable(node, f"ssh {ep.user}@{ep.host}:{ep.port}: {msg}") from None
        except (OSError, EOFError) as e:
            client.close()
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            if "timed out" in reason:
                reason = f"connect timed out after {t:g} s"
            raise NodeUnreachable(node, f"ssh {ep.user}@{ep.host}:{ep.port}: {reason}") from None
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
            raise CommandTimeout(node, f"no answer within {timeout:g} s "
                                 f"(command timeout) running: {' '.join(text.split())[:60]}") from None
        except (OSError, EOFError, Exception) as e:
            if isinstance(e, NodeUnreachable):
                raise
            self._drop(node)
            raise NodeUnreachable(node, f"ssh session failed: {e or type(e).__name__}") from None
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

    ended_at = None
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
        select.select([chan], [], [], min(left, 0.05))


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


class SSHConfigFile:
    """~/.ssh/config read for what havirt honours, and nothing else: HostName,
    User, Port and IdentityFile in `Host` blocks (patterns with * and ?, and
    !negations; the first value found wins, IdentityFile adds up, as in ssh).
    `Match` blocks, `Include` and every other keyword are ignored: nothing in
    the file is ever run. A bad value stops havirt with one line (exit 2)."""

    HONOURED = ("hostname", "user", "port", "identityfile")

    def __init__(self, path: str):
        self.path = path
        try:
            text = read_file(path, MAX_SSH).decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
        self.blocks: list[tuple[list[str] | None, list[tuple[str, str]]]] = [(["*"], [])]
        for n, line in enumerate(text.split("\n"), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"(\S+?)(?:\s*=\s*|\s+)(.*)", line)
            keyword, value = (m.group(1).lower(), m.group(2).strip()) if m else (line.lower(), "")
            if keyword == "host":
                if not value:
                    raise ConfigError(f"{path}: line {n}: 'Host' needs at least one pattern")
                self.blocks.append((value.split(), []))
            elif keyword == "match":
                self.blocks.append((None, []))      # never applies: its criteria are not evaluated
            elif keyword in self.HONOURED:
                self.blocks[-1][1].append((keyword, self._value(n, keyword, value)))

    def _value(self, n: int, keyword: str, value: str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        try:
            if keyword == "port":
                port = whole_in(value, PORT)
                if port is None:
                    raise ValueError(f"Port {value[:20]!r} is not a port number ({PORT})")
                return port
            if keyword == "user":
                return check_user(value)
            if not value:
                raise ValueError(f"{keyword} has no value")
        except (ValueError, UsageError) as e:
            raise ConfigError(f"{self.path}: line {n}: {e}") from None
        return value

    def lookup(self, host: str) -> dict:
        found: dict = {}
        for patterns, settings in self.blocks:
            if patterns is None or not _host_matches(host, patterns):
                continue
            for keyword, value in settings:
                if keyword == "identityfile":
                    found.setdefault(keyword, []).append(os.path.expanduser(value))
                else:
                    found.setdefault(keyword, value)
        if "hostname" in found:
            name = found["hostname"].replace("%h", host).replace("%%", "%")
            try:
                found["hostname"] = check_address(name)
            except UsageError as e:
                raise ConfigError(f"{self.path}: HostName for {host}: {e}") from None
        return found


def _host_matches(host: str, patterns: list[str]) -> bool:
    """ssh's rule: some pattern matches and no negated one does (case-insensitive)."""
    def match(pattern: str) -> bool:
        rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.fullmatch(rx, host, re.IGNORECASE | re.DOTALL) is not None
    hit = False
    for p in patterns:
        if p.startswith("!"):
            if match(p[1:]):
                return False
        elif match(p):
            hit = True
    return hit
