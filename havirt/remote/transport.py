"""What every SSH transport shares: the Result, the interface, where a node
is, the error lines.

`Runner` is the interface the rest of havirt sees (a constructor argument,
so tests pass a fake). Two real ones, chosen by config.yaml's ssh.backend
(backends.py): `paramiko_ssh.ParamikoRunner` (the default: a paramiko
connection per node, opened by each havirt command) and
`openssh.OpenSSHRunner` (the admin's own ssh, with connection sharing).
Both give the same Result per node, the same timeouts, the same host key
rules and the same error lines (the messages below); neither writes remote
text: they send Command.text(). Neither is imported before a node is
reached: commands that only read the state file never pay for paramiko.
"""

from __future__ import annotations

import os
import re
import resource
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
class Endpoint:
    host: str                   # the address, or the HostName ssh_config gives it
    user: str
    port: int
    key_filenames: list[str] = field(default_factory=list)
    user_given: bool = True     # named by the node or config.yaml, not by ssh_config
    port_given: bool = True


class SSHTransport(Runner):
    """What both real transports share: the targets, ssh_config as havirt
    reads it, and where each node is."""

    def __init__(self, ssh_cfg, targets: dict[str, Target]):
        self.cfg = ssh_cfg
        self.targets = targets
        self._ssh_config = None
        if ssh_cfg.ssh_config and os.path.isfile(ssh_cfg.ssh_config):
            self._ssh_config = SSHConfigFile(ssh_cfg.ssh_config)

    def endpoint(self, node: str) -> Endpoint:
        """The node's address, user, port and keys: the node's record first,
        then ssh_config, then config.yaml."""
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
        return Endpoint(host=host, user=t.user or user or self.cfg.user,
                        port=t.port or port or self.cfg.port, key_filenames=keys,
                        user_given=bool(t.user or not user), port_given=bool(t.port or not port))

    def describe(self, node: str) -> str:
        ep = self.endpoint(node)
        port = f" -p {ep.port}" if ep.port != 22 else ""
        return f"ssh{port} {quote_argv([f'{ep.user}@{ep.host}'])}"


# -- the error lines, the same whatever the transport --------------------------------

def failed(node: str, ep: Endpoint, what: str) -> NodeUnreachable:
    """`ssh USER@HOST:PORT: WHAT`: the node could not be reached."""
    return NodeUnreachable(node, f"ssh {ep.user}@{ep.host}:{ep.port}: {what}")


def connect_timed_out(seconds: float) -> str:
    return f"connect timed out after {seconds:g} s"


def auth_failed() -> str:
    return "Authentication failed."


def host_key_unknown(node: str, host: str, known_hosts: str | None) -> NodeUnreachable:
    return NodeUnreachable(node, f"host key of {host} is not in {known_hosts or 'known_hosts'} "
                                 "(add it, or set ssh.host_key_policy: accept-new)")


def host_key_changed(node: str, host: str, expected: str) -> NodeUnreachable:
    """`expected`: the key known_hosts has for it (its type and the start of it)."""
    return NodeUnreachable(node, f"host key of {host} CHANGED (known_hosts has {expected}, "
                                 "the node offered another); refusing")


def session_failed(node: str, why: str) -> NodeUnreachable:
    return NodeUnreachable(node, f"ssh session failed: {why}")


def command_timed_out(node: str, seconds: float, text: str) -> CommandTimeout:
    return CommandTimeout(node, f"no answer within {seconds:g} s (command timeout) "
                                f"running: {' '.join(text.split())[:60]}")


def open_files_for(connections: int, per_connection: int) -> int:
    """Raise the soft limit of open files toward the hard one so that
    `connections` at once fit (a scan of hundreds of nodes); return how many
    connections fit, at least 1."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 64 + connections * per_connection
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, (soft - 64) // per_connection))


# -- ssh_config ----------------------------------------------------------------------

class SSHConfigFile:
    """~/.ssh/config read for what havirt honours, and nothing else: HostName,
    User, Port and IdentityFile in `Host` blocks (patterns with * and ?, and
    !negations; the first value found wins, IdentityFile adds up, as in ssh).
    `Match` blocks, `Include` and every other keyword are ignored: nothing in
    the file is ever run. A bad value stops havirt with one line (exit 2).
    (The openssh transport lets ssh read the whole file; this reading only
    names the node in messages and says whether ssh_config gives a User or
    Port, which config.yaml's defaults must not override.)"""

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
