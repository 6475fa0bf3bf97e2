"""The openssh transport (`ssh.backend: openssh`): the admin's own `ssh`,
with connection sharing.

Each command is one `ssh ... -- ADDRESS TEXT` process, TEXT being
Command.text() as one argument (after `--`, nothing in it is an option).
ssh reads the admin's ssh_config as it always does (ProxyJump, Match,
certificates); havirt adds on the command line only what it must:
BatchMode, LogLevel=ERROR (stderr stays the command's), ConnectTimeout,
config.yaml's identity file, its known_hosts file and host key policy
(StrictHostKeyChecking=yes for `reject`: a changed or unknown key is
refused), `-l`/`-p` where the node or config.yaml names them and
ssh_config does not, and the sharing:

- ControlMaster=auto: the first command to a node opens a master
  connection, later ones (this havirt command's and the next ones') open
  only a session on it;
- ControlPersist=ssh.persist seconds: how long an idle master stays (0:
  no sharing, every command a fresh connection);
- ControlPath in a private folder of the user (0700), one socket a node,
  named by a hash of havirt's ssh options, the node's address, user and
  port, and the ssh_config files ssh reads (with their Includes: names,
  sizes, times of change): another configuration (another known_hosts,
  key, timeout, persistence) never shares a master opened under this one,
  and an edited ssh_config is obeyed by the next command (a master of the
  old one is left to expire);
- ServerAliveInterval/CountMax: a master whose node stops answering is
  given up within about ssh.connect_timeout, so that a dead node costs a
  command the connect timeout, as with paramiko, and not the command timeout.

ssh exits 255 when it fails; its error lines become the same error lines
the paramiko transport gives (transport.py). havirt's remote commands never
exit 255 themselves, so an exit 255 is always ssh's (a command killed by a
signal also ends in 255: it is reported as a failed session).

On an open master, a session is asked for by havirt itself (mux.py): no
ssh process is started for it; without one, ssh opens it.

Every node's ssh runs at once (up to ssh.parallel) and one loop reads them
all (processes.py), so a scan of hundreds of nodes needs four descriptors
per node and one thread to read them (a few more only start them).
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
import pwd
import re
import stat

from havirt.errors import ConfigError
from havirt.names import quote_argv
from havirt.remote.mux import SharedSession
from havirt.remote.processes import FILES_PER_PROCESS, Process, drive
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

SSH_FAILED = 255                 # ssh's own exit status when it failed
SOCKET_PATH_MAX = 103            # sun_path: 104 bytes with its NUL on the BSDs, 108 on Linux
SSH_TEMP_SUFFIX = 17             # ssh binds PATH.<16 random characters>, then renames it
NAME_LENGTH = 24                 # a socket's name: hex digits of a sha1
PATH_LEFT = SOCKET_PATH_MAX - SSH_TEMP_SUFFIX - len("/") - NAME_LENGTH
INCLUDE_DEPTH = 16               # ssh's own limit of nested Includes
INCLUDE = re.compile(r"^[ \t]*include(?:[ \t]*=[ \t]*|[ \t]+)(.*?)[ \t]*$", re.I | re.M)
HOST_KEY_POLICY = {"reject": "yes", "accept-new": "accept-new", "ignore": "no"}
# The options of sharing, last on the command line (options() cuts them off
# for an ssh that goes round a master that does not answer).
SHARING_OPTIONS = ("ControlMaster", "ControlPersist", "ServerAliveInterval", "ServerAliveCountMax")
UNSHARED = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]


def control_folder() -> str:
    """The user's private folder of ControlPath sockets, created 0700:
    ~/.cache/havirt/ssh of the user's home in the password database (the
    same for cron and a login shell), or /tmp/havirt-ssh-UID when that path
    is too long for a socket name or holds what ssh cannot be given."""
    uid = os.getuid()
    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        home = ""
    folder = os.path.join(home, ".cache", "havirt", "ssh") if home.startswith("/") else ""
    if not folder or len(folder) > PATH_LEFT or '"' in folder or "\\" in folder:   # (option_path)
        folder = f"/tmp/havirt-ssh-{uid}"
    return private_folder(folder, uid)


def private_folder(folder: str, uid: int) -> str:
    """`folder`, created 0700 if missing; refused (exit 2) unless it is a real
    folder of this user that nobody else can enter."""
    try:
        os.makedirs(os.path.dirname(folder), mode=0o700, exist_ok=True)
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise ConfigError(f"{folder}: cannot create the folder of shared SSH connections: "
                          f"{e.strerror or e}") from None
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        raise ConfigError(f"{folder}: the folder of shared SSH connections must be a folder of "
                          f"user {uid} with mode 0700 (it is not: remove it, havirt makes it again)")
    return folder


class OpenSSHRunner(SSHTransport):
    def __init__(self, ssh_cfg, targets, sharing: bool = True, folder: str | None = None):
        """sharing False: no ControlMaster options at all (ssh_config decides;
        `domain console` of the paramiko transport). folder: of the
        ControlPath sockets (default: control_folder())."""
        super().__init__(ssh_cfg, targets)
        self.sharing = sharing and ssh_cfg.persist > 0
        self.own_sharing = sharing
        self.folder = folder
        self._options: list[str] | None = None
        self._stamp: str | None = None     # the ssh_config files read, once (ssh_config_stamp)
        self._folder = ""
        self._paths: dict[str, str] = {}    # node -> its socket
        if ssh_cfg.host_key_policy == "accept-new" and ssh_cfg.known_hosts_file:
            _known_hosts_ready(ssh_cfg.known_hosts_file)

    # -- the command line ----------------------------------------------------------------
    def options(self, shared: bool = True) -> list[str]:
        """The options every ssh of this runner gets, the node's excepted
        (`shared` False: those of an ssh that does not use the shared
        connection, when its master does not answer)."""
        if not shared and self.sharing:
            return self.options()[:-len(SHARING_OPTIONS) * 2] + UNSHARED
        if self._options is None:
            c = self.cfg
            known = os.path.abspath(c.known_hosts_file) \
                if c.host_key_policy != "ignore" and c.known_hosts_file else "/dev/null"
            opts = config_file_option(c.ssh_config) + [
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", f"ConnectTimeout={max(1, math.ceil(c.connect_timeout))}"]
            if c.identity_file:
                opts += ["-i", os.path.abspath(c.identity_file), "-o", "IdentitiesOnly=yes"]
            opts += ["-o", f"UserKnownHostsFile={option_path(known, 'ssh.known_hosts_file')}",
                     "-o", f"StrictHostKeyChecking={HOST_KEY_POLICY[c.host_key_policy]}"]
            if c.host_key_policy == "accept-new":
                opts += ["-o", "HashKnownHosts=yes"]     # as paramiko's accept-new writes them
            if self.sharing:
                values = ["auto", str(c.persist), "1", str(max(1, math.ceil(c.connect_timeout) - 1))]
                for name, value in zip(SHARING_OPTIONS, values):
                    opts += ["-o", f"{name}={value}"]
            elif self.own_sharing:
                opts += UNSHARED
            self._options = opts
        return self._options

    def node_options(self, node: str, shared: bool = True) -> list[str]:
        ep = self.endpoint(node)
        path = self.control_path(node) if shared else None
        return (["-o", "ControlPath=" + option_path(path.replace("%", "%%"), "ControlPath")] if path else []) + \
               (["-l", ep.user] if ep.user_given else []) + \
               (["-p", str(ep.port)] if ep.port_given else [])

    def control_path(self, node: str) -> str | None:
        """The node's master's socket (None without sharing)."""
        if not self.sharing:
            return None
        if node not in self._paths:
            if self._stamp is None:
                self._stamp = ssh_config_stamp(config_file_option(self.cfg.ssh_config))
                self._folder = self.folder or control_folder()
            ep = self.endpoint(node)
            key = "\0".join([*self.options(), self._stamp, self.targets[node].address,
                             ep.user if ep.user_given else "", str(ep.port) if ep.port_given else ""])
            self._paths[node] = f"{self._folder}/{hashlib.sha1(key.encode()).hexdigest()[:NAME_LENGTH]}"
        return self._paths[node]

    def argv(self, node: str, text: str, tty: bool = False, shared: bool = True) -> list[str]:
        """The local ssh command line that runs `text` on `node` (with a
        terminal, its own escape key off, for an interactive session;
        `shared` False: not through the node's shared connection)."""
        mode = ["-t", "-e", "none"] if tty else ["-T"]
        return ["ssh", *mode, *self.options(shared), *self.node_options(node, shared),
                "--", self.targets[node].address, text]

    def control_argv(self, node: str, operation: str) -> list[str]:
        """`ssh -O check|exit` of the node's master (tests, make bench)."""
        return ["ssh", *self.options(), *self.node_options(node), "-O", operation,
                "--", self.targets[node].address]

    def describe(self, node: str) -> str:
        ep = self.endpoint(node)
        port = f" -p {ep.port}" if ep.port != 22 else ""
        return f"ssh{port} {quote_argv([f'{ep.user}@{self.targets[node].address}'])}"

    # -- running -------------------------------------------------------------------------
    def session(self, node: str, text: str, stdin: bytes | None, timeout: float,
                on_output=None) -> Process:
        """`text` on `node`: on its open master without starting ssh, else in ssh."""
        argv = self.argv(node, text)
        if not self.sharing:
            return Process(argv, stdin, timeout, on_output)
        return SharedSession(self.control_path(node), text, argv, stdin, timeout, on_output,
                             handshake=self.cfg.connect_timeout,
                             direct=lambda: self.argv(node, text, shared=False))

    def run(self, node, command, stdin=None, timeout=None, on_output=None) -> Result:
        text = command.text()
        p = self.session(node, text, stdin, timeout or self.cfg.command_timeout, on_output)
        self._drive([p], 1)
        outcome = self._outcome(node, text, p)
        if not isinstance(outcome, Result):
            raise outcome
        return outcome

    def run_many(self, commands):
        texts = {node: cmd.text() for node, cmd in commands.items()}
        ps = {node: self.session(node, text, None, self.cfg.command_timeout)
              for node, text in texts.items()}
        self._drive(list(ps.values()), open_files_for(min(self.cfg.parallel, len(ps)),
                                                      FILES_PER_PROCESS))
        return {node: self._outcome(node, texts[node], p) for node, p in ps.items()}

    @staticmethod
    def _drive(ps: list[Process], limit: int) -> None:
        try:
            drive(ps, limit)
        except FileNotFoundError:
            raise ConfigError("ssh.backend openssh needs OpenSSH's ssh command "
                              "(Debian: apt-get install openssh-client)") from None

    def _outcome(self, node: str, text: str, p: Process):
        """The Result, or the NodeUnreachable that stands for it."""
        if p.timed_out:
            return command_timed_out(node, p.timeout, text)
        if p.start_error is not None:
            return session_failed(node, f"cannot start ssh: {p.start_error}")
        if p.returncode == SSH_FAILED:
            return self.error(node, p.err.decode(errors="replace"))
        return Result(node=node, command=text, exit_code=p.returncode,
                      stdout=p.out.decode(errors="replace"), stderr=p.err.decode(errors="replace"),
                      duration=p.duration)

    def error(self, node: str, stderr: str):
        """ssh's exit 255 with its stderr -> the NodeUnreachable the paramiko
        transport gives for the same failure."""
        return ssh_error(node, self.endpoint(node), stderr, self.cfg.connect_timeout,
                         self.cfg.known_hosts_file)


def option_path(path: str, what: str) -> str:
    """A path as the value of an `-o NAME=VALUE` (ssh splits a value at
    blanks: one with blanks is quoted; ssh would read a quote or a backslash
    in it as its own)."""
    if '"' in path or "\\" in path:
        raise ConfigError(f"{path}: {what} holds a quote or a backslash, which ssh cannot be given")
    return f'"{path}"' if any(ch.isspace() for ch in path) else path


def config_file_option(path: str | None) -> list[str]:
    """`-F FILE` for ssh.ssh_config: nothing when it is the file ssh reads by
    itself (~/.ssh/config: ssh then reads the system's too, unchanged);
    `-F none` when there is none to read (null, or no such file)."""
    if path:
        try:
            own = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ssh", "config")
        except KeyError:
            own = None
        if own and os.path.abspath(path) == os.path.abspath(own):
            return []
        if os.path.isfile(path):
            return ["-F", os.path.abspath(path)]
    return ["-F", "none"]


def ssh_config_stamp(option: list[str]) -> str:
    """The ssh_config files ssh reads under `option` (config_file_option), and
    those they Include, each with its size, inode and time of change (or
    '-' when missing): a socket named by it is not one opened under another
    ssh_config. Included paths are followed wherever the Include stands (a
    Match or Host block may not apply: counting one too many only opens a
    master anew)."""
    try:
        own = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ssh")
    except KeyError:
        own = os.path.expanduser("~/.ssh")
    if option == ["-F", "none"]:
        return ""
    roots = [(option[1], own)] if option else \
        [(os.path.join(own, "config"), own), ("/etc/ssh/ssh_config", "/etc/ssh")]
    seen: list[str] = []

    def visit(path: str, base: str, depth: int) -> None:
        try:
            st = os.stat(path)
            text = read_file(path, MAX_SSH).decode("utf-8", errors="replace")
        except OSError:
            seen.append(f"{path} -")
            return
        seen.append(f"{path} {st.st_ino} {st.st_size} {st.st_mtime_ns}")
        if depth >= INCLUDE_DEPTH:
            return
        for words in INCLUDE.findall(text):
            for word in words.split():
                word = os.path.expanduser(word.strip('"'))
                pattern = word if os.path.isabs(word) else os.path.join(base, word)
                for found in sorted(glob.glob(pattern)) or [pattern]:
                    visit(found, base, depth + 1)

    for path, base in roots:
        visit(path, base, 0)
    return "\n".join(seen)


def _known_hosts_ready(path: str) -> None:
    """accept-new records keys as paramiko does: in a folder created 0700 and a
    file created 0600 (ssh itself would create neither)."""
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as e:
        raise ConfigError(f"{path}: cannot create the known_hosts file: {e.strerror or e}") from None


# -- ssh's error lines ---------------------------------------------------------------------

_CONNECT = re.compile(r"^ssh: connect to host \S+ port \d+: (.+?)\s*$", re.M)
_RESOLVE = re.compile(r"^ssh: Could not resolve hostname \S+: (.+?)\s*$", re.M)
_OFFENDING = re.compile(r"^Offending \S+ key in (.+):(\d+)\s*$", re.M)
_UNKNOWN = re.compile(r"^No \S+ host key is known for ", re.M)
# lines of ssh's that are not the reason (a master that went away: ssh connects itself)
_NOISE = re.compile(r"^(mux_client_\w+|Control ?[Ss]ocket|muxclient|ControlSocket)\b")


def ssh_error(node: str, ep, stderr: str, connect_timeout: float, known_hosts: str | None):
    """The NodeUnreachable for ssh's exit 255 and what it said on stderr."""
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or re.search(
            r"^Host key for \S+ has changed", stderr, re.M):
        m = _OFFENDING.search(stderr)
        return host_key_changed(node, ep.host, _known_key(m.group(1), int(m.group(2)))
                                if m else "another key")
    if _UNKNOWN.search(stderr) or "Host key verification failed." in stderr:
        return host_key_unknown(node, ep.host, known_hosts)
    if re.search(r"Permission denied \(", stderr):
        return failed(node, ep, auth_failed())
    if "Connection timed out during banner exchange" in stderr:
        return failed(node, ep, connect_timed_out(connect_timeout) + " (no SSH banner)")
    found = _CONNECT.findall(stderr)
    if found:
        reason = found[-1]
        return failed(node, ep, connect_timed_out(connect_timeout)
                      if reason == "Connection timed out" else reason)
    found = _RESOLVE.findall(stderr)
    if found:
        return failed(node, ep, found[-1])
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not _NOISE.match(ln.strip())]
    if not lines:
        return session_failed(node, "the connection ended before the command's exit status "
                                    "(ssh exit 255)")
    last = lines[-1]
    if last.startswith(("kex_exchange_identification:", "Connection closed by",
                        "Connection reset by", "banner exchange:")):
        return failed(node, ep, last)
    return session_failed(node, last)


def _known_key(path: str, line: int) -> str:
    """`TYPE BASE64[:16]...` of line `line` of a known_hosts file, as the
    paramiko transport names the key it expected."""
    try:
        text = read_file(path, MAX_SSH).decode("utf-8", errors="replace").split("\n")
        fields = text[line - 1].split()
        if fields and fields[0].startswith("@"):       # @cert-authority, @revoked
            fields = fields[1:]
        return f"{fields[1]} {fields[2][:16]}..."
    except (OSError, IndexError):
        return f"the key on line {line} of {path}"
