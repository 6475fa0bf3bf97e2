"""The openssh transport's pure parts: the ssh command line it builds, the
private folder of its sockets, and how ssh's exit 255 and stderr become the
error lines the paramiko transport gives; and the loop that runs many local
processes at once (with real local processes).

What ssh then does with that command line (sharing, ProxyJump, host keys,
timeouts against real nodes) is proven in the lab: tests/integration/test_openssh.py.
"""

import base64
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time

import paramiko
import pytest

from havirt.errors import ConfigError, NodeUnreachable
from havirt.remote.backends import make_runner
from havirt.remote.commands import Command
from havirt.remote.openssh import (
    OpenSSHRunner,
    config_file_option,
    private_folder,
    ssh_config_stamp,
    ssh_error,
)
from havirt.remote.paramiko_ssh import ParamikoRunner
from havirt.remote.processes import DRAIN, Process, drive
from havirt.remote.transport import Target
from havirt.store.config import SSHConfig

V = "virsh -c qemu:///system"


def ssh_cfg(**kw):
    base = dict(user="root", port=22, identity_file=None, known_hosts_file="/kh",
                host_key_policy="reject", connect_timeout=5, command_timeout=60, parallel=4,
                ssh_config=None, backend="openssh", persist=600)
    base.update(kw)
    return SSHConfig(**base)


def runner(tmp_path, targets=None, sharing=True, **kw):
    targets = targets or {"n1": Target("n1", "10.0.0.7")}
    return OpenSSHRunner(ssh_cfg(**kw), targets, sharing=sharing, folder=str(tmp_path))


def opts(argv):
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]


# -- the command line ----------------------------------------------------------------

def test_a_command_is_one_argument_after_the_address(tmp_path):
    r = runner(tmp_path, identity_file="/keys/id", connect_timeout=2.5)
    text = Command(op="list", argv=("virsh", "-c", "qemu:///system", "list", "--name")).text()
    argv = r.argv("n1", text)
    name = opts(argv)[opts(argv).index("ServerAliveCountMax=2") + 1].split("/")[-1]
    assert argv == ["ssh", "-T", "-F", "none", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                    "-o", "ConnectTimeout=3", "-i", "/keys/id", "-o", "IdentitiesOnly=yes",
                    "-o", "UserKnownHostsFile=/kh", "-o", "StrictHostKeyChecking=yes",
                    "-o", "ControlMaster=auto", "-o", "ControlPersist=600",
                    "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2",
                    "-o", f"ControlPath={tmp_path}/{name}", "-l", "root", "-p", "22",
                    "--", "10.0.0.7", f"{V} list --name"]
    assert len(name) == 24 and int(name, 16) >= 0
    assert r.control_path("n1") == f"{tmp_path}/{name}"


def test_an_interactive_session_has_a_terminal_and_no_escape_key(tmp_path):
    argv = runner(tmp_path).argv("n1", f"{V} console web1", tty=True)
    assert argv[:4] == ["ssh", "-t", "-e", "none"] and "-T" not in argv
    assert argv[-3:] == ["--", "10.0.0.7", f"{V} console web1"]


def test_persist_0_is_a_fresh_connection_every_time(tmp_path):
    o = opts(runner(tmp_path, persist=0).argv("n1", "true"))
    assert o[-2:] == ["ControlMaster=no", "ControlPath=none"]
    assert not [x for x in o if x.startswith(("ControlPersist", "ServerAlive"))]


def test_round_the_master_is_the_same_ssh_without_sharing(tmp_path):
    """For a master that does not answer: the same options, sharing off."""
    r = runner(tmp_path, identity_file="/keys/id")
    shared, direct = r.argv("n1", "true"), r.argv("n1", "true", shared=False)
    assert opts(direct) == [x for x in opts(shared) if not x.startswith(("Control", "ServerAlive"))] \
        + ["ControlMaster=no", "ControlPath=none"]
    def rest(argv):
        return [a for i, a in enumerate(argv) if a != "-o" and (i == 0 or argv[i - 1] != "-o")]
    assert rest(direct) == rest(shared) and rest(direct)[-3:] == ["--", "10.0.0.7", "true"]


def test_paths_with_blanks_are_one_value_for_ssh(tmp_path):
    """ssh splits an option's value at blanks (UserKnownHostsFile takes
    several files): such a path is quoted, as ssh reads it; a quote or a
    backslash in one cannot be given, and is said."""
    folder = tmp_path / "a b"
    folder.mkdir()
    r = OpenSSHRunner(ssh_cfg(known_hosts_file=str(folder / "known hosts")),
                      {"n1": Target("n1", "10.0.0.7")}, folder=str(folder))
    o = opts(r.argv("n1", "true"))
    assert f'UserKnownHostsFile="{folder}/known hosts"' in o
    assert f'ControlPath="{r.control_path("n1")}"' in o and " " in r.control_path("n1")
    if shutil.which("ssh"):             # what ssh itself makes of them
        argv = r.argv("n1", "true")
        got = subprocess.run(["ssh", "-G", *argv[2:-1]], capture_output=True, text=True, check=True).stdout
        assert f"userknownhostsfile {folder}/known hosts\n" in got
        assert f"controlpath {r.control_path('n1')}\n" in got
    with pytest.raises(ConfigError, match="holds a quote or a backslash"):
        runner(tmp_path, known_hosts_file='/a"b').argv("n1", "true")


def test_without_sharing_of_its_own_ssh_config_decides(tmp_path):
    """`domain console` of the paramiko transport: no Control option at all."""
    o = opts(runner(tmp_path, sharing=False).argv("n1", "true", tty=True))
    assert not [x for x in o if x.startswith(("Control", "ServerAlive"))]


@pytest.mark.parametrize("policy, known, expected", [
    ("reject", "/kh", ["UserKnownHostsFile=/kh", "StrictHostKeyChecking=yes"]),
    ("accept-new", "/kh", ["UserKnownHostsFile=/kh", "StrictHostKeyChecking=accept-new",
                           "HashKnownHosts=yes"]),
    ("ignore", "/kh", ["UserKnownHostsFile=/dev/null", "StrictHostKeyChecking=no"]),
    ("reject", None, ["UserKnownHostsFile=/dev/null", "StrictHostKeyChecking=yes"]),
])
def test_the_host_key_policy_is_havirts(tmp_path, policy, known, expected, monkeypatch):
    if policy == "accept-new":
        known = str(tmp_path / "new" / "known_hosts")
        expected = [f"UserKnownHostsFile={known}"] + expected[1:]
    o = opts(runner(tmp_path, persist=0, host_key_policy=policy, known_hosts_file=known)
             .argv("n1", "x"))
    assert o[o.index("LogLevel=ERROR") + 2:-2] == expected
    assert "IdentitiesOnly=yes" not in o          # no key named: the agent and ssh's defaults
    if policy == "accept-new":    # recorded as paramiko records them: a private folder and file
        assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(known).st_mode) == 0o600


def test_user_and_port_are_given_where_ssh_config_does_not_name_them(tmp_path):
    conf = tmp_path / "ssh_config"
    conf.write_text("Host a\n  User admin\n  Port 2200\nHost b\n  HostName 192.0.2.9\n")
    r = runner(tmp_path, ssh_config=str(conf), user="havirt", port=2222,
               targets={"a": Target("a", "a"), "b": Target("b", "b"),
                        "c": Target("c", "a", user="ops", port=22022)})
    a, b, c = (r.argv(n, "x") for n in "abc")
    assert "-l" not in a and "-p" not in a              # ssh reads them from ssh_config
    assert a[a.index("-F") + 1] == str(conf)
    assert b[b.index("-l"):b.index("--")] == ["-l", "havirt", "-p", "2222"]   # config.yaml's
    assert c[c.index("-l"):c.index("--")] == ["-l", "ops", "-p", "22022"]     # the node's
    assert b[-2] == "b"                                 # ssh resolves HostName itself
    assert r.describe("b") == "ssh -p 2222 havirt@b" and r.describe("a") == "ssh -p 2200 admin@a"


def test_the_ssh_config_file(tmp_path, monkeypatch):
    conf = tmp_path / "ssh_config"
    conf.write_text("Host *\n")
    assert config_file_option(str(conf)) == ["-F", str(conf)]
    monkeypatch.chdir(tmp_path)         # ssh runs from /: a relative name is made whole
    assert config_file_option("ssh_config") == ["-F", str(conf)]
    assert config_file_option(str(tmp_path / "missing")) == ["-F", "none"]
    assert config_file_option(None) == ["-F", "none"]
    # the one ssh reads by itself: nothing, so that the system's is read too, unchanged
    own = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ssh", "config")
    assert config_file_option(own) == []


def test_another_configuration_never_shares_a_connection(tmp_path):
    def path(targets=None, node="n1", **kw):
        o = opts(runner(tmp_path, targets, **kw).argv(node, "x"))
        return next(x for x in o if x.startswith("ControlPath="))[len("ControlPath="):]
    same = path()
    assert same == path()
    others = {path(known_hosts_file="/other"), path(identity_file="/k"),
              path(connect_timeout=9), path(host_key_policy="ignore"), path(persist=60),
              path({"n1": Target("n1", "10.0.0.8")}), path({"n1": Target("n1", "10.0.0.7", "ops")}),
              path({"n1": Target("n1", "10.0.0.7", port=2222)}), path(user="admin")}
    assert same not in others and len(others) == 9
    # another node of the same address and settings: the same master
    assert path({"n1": Target("n1", "10.0.0.7"), "n2": Target("n2", "10.0.0.7")}, "n2") == same


def test_an_edited_ssh_config_never_uses_a_master_of_the_old_one(tmp_path):
    conf, inc = tmp_path / "ssh_config", tmp_path / "conf.d"
    inc.mkdir()
    conf.write_text(f"Include {inc}/*.conf\nHost n1\n  HostName 10.0.0.7\n")

    def path():
        return runner(tmp_path, ssh_config=str(conf)).control_path("n1")
    first = path()
    assert path() == first                              # nothing changed: the same master
    (inc / "a.conf").write_text("Host *\n  User ops\n")  # an included file appears
    second = path()
    (inc / "a.conf").write_text("Host *\n  User ops2\n")  # ... and is edited
    third = path()
    conf.write_text(f"Include {inc}/*.conf\nHost n1\n  HostName 10.0.0.9\n")
    assert len({first, second, third, path()}) == 4


def test_the_ssh_config_files_ssh_reads(tmp_path):
    conf = tmp_path / "c"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.conf").write_text("Include y.conf\n")
    conf.write_text(f'include = "{tmp_path}/d/*.conf" {tmp_path}/missing\n')
    stamp = ssh_config_stamp(["-F", str(conf)])
    files = [line.rsplit(" ", 3)[0] if not line.endswith(" -") else line for line in stamp.split("\n")]
    own = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ssh")
    assert files == [str(conf), str(tmp_path / "d" / "x.conf"), f"{own}/y.conf -",
                     f"{tmp_path}/missing -"]
    assert ssh_config_stamp(["-F", "none"]) == ""
    loop = tmp_path / "loop"
    loop.write_text(f"Include {loop}\n")              # ssh refuses it; here it ends
    assert len(ssh_config_stamp(["-F", str(loop)]).split("\n")) == 17
    default = ssh_config_stamp([]).split("\n")
    assert default[0].startswith(f"{own}/config ") and \
        default[1].startswith("/etc/ssh/ssh_config ")


def test_the_socket_path_fits_a_unix_socket(tmp_path):
    from havirt.remote.openssh import control_folder
    folder = control_folder()
    o = opts(OpenSSHRunner(ssh_cfg(), {"n1": Target("n1", "x")}).argv("n1", "x"))
    path = next(x for x in o if x.startswith("ControlPath="))[len("ControlPath="):]
    socket_name = path + ".0123456789abcdef"     # ssh binds this first
    assert path.startswith(folder + "/") and len(socket_name.encode()) < 104
    st = os.lstat(folder)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()


def test_the_folder_of_sockets_is_private_or_refused(tmp_path):
    mine = private_folder(str(tmp_path / "a" / "ssh"), os.getuid())
    assert stat.S_IMODE(os.stat(mine).st_mode) == 0o700
    open_one = tmp_path / "open"
    open_one.mkdir(mode=0o755)
    open_one.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(mine)
    for bad in (open_one, link):
        with pytest.raises(ConfigError, match="must be a folder of user .* with mode 0700"):
            private_folder(str(bad), os.getuid())
    with pytest.raises(ConfigError, match="must be a folder of user"):
        private_folder(mine, os.getuid() + 1)


def test_the_backend_chooses_the_runner():
    targets = {"n1": Target("n1", "10.0.0.1")}
    assert isinstance(make_runner(ssh_cfg(), targets), OpenSSHRunner)
    assert isinstance(make_runner(ssh_cfg(backend="paramiko"), targets), ParamikoRunner)


# -- ssh's errors: the lines the paramiko transport gives ----------------------------

CHANGED = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r
The fingerprint for the ED25519 key sent by the remote host is
SHA256:p3EstIfE/W8HNQ07+8m2P3pdR3xr4TAJG5iMv6NuATo.\r
Please contact your system administrator.\r
Add correct host key in {kh} to get rid of this message.\r
Offending ED25519 key in {kh}:2\r
  remove with:\r
  ssh-keygen -f "{kh}" -R "10.0.0.1"\r
Host key for 10.0.0.1 has changed and you have requested strict checking.\r
Host key verification failed.\r
"""
KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def paramiko_line(monkeypatch, raised, **kw) -> str:
    """What the paramiko transport says when connect() raises `raised`."""
    def connect(self, *a, **k):
        raise raised
    monkeypatch.setattr(paramiko.SSHClient, "connect", connect)
    r = ParamikoRunner(ssh_cfg(backend="paramiko", **kw), {"node1": Target("node1", "10.0.0.1")})
    with pytest.raises(NodeUnreachable) as e:
        r._connect("node1")
    return str(e.value)


def openssh_line(stderr: str, **kw) -> str:
    r = OpenSSHRunner(ssh_cfg(**kw), {"node1": Target("node1", "10.0.0.1")}, sharing=False)
    e = r.error("node1", stderr)
    assert isinstance(e, NodeUnreachable) and e.node == "node1"
    return str(e)


@pytest.mark.parametrize("stderr, raised, line", [
    ("ssh: connect to host 10.0.0.1 port 22: Connection timed out\r\n", socket.timeout("timed out"),
     "ssh root@10.0.0.1:22: connect timed out after 5 s"),
    ("ssh: connect to host 10.0.0.1 port 22: Connection refused\r\n",
     paramiko.ssh_exception.NoValidConnectionsError(
         {("10.0.0.1", 22): ConnectionRefusedError(111, "Connection refused")}),
     "ssh root@10.0.0.1:22: Connection refused"),
    ("root@10.0.0.1: Permission denied (publickey).\r\n",
     paramiko.AuthenticationException("Authentication failed."),
     "ssh root@10.0.0.1:22: Authentication failed."),
    ("No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.\r\n"
     "Host key verification failed.\r\n",
     paramiko.SSHException("Server '10.0.0.1' not found in known_hosts"),
     "host key of 10.0.0.1 is not in /kh (add it, or set ssh.host_key_policy: accept-new)"),
    ("Connection timed out during banner exchange\r\n",
     paramiko.SSHException("Error reading SSH protocol banner"),
     "ssh root@10.0.0.1:22: connect timed out after 5 s (no SSH banner)"),
    ("ssh: Could not resolve hostname 10.0.0.1: Name or service not known\r\n",
     socket.gaierror(-2, "Name or service not known"),
     "ssh root@10.0.0.1:22: Name or service not known"),
], ids=["timeout", "refused", "auth", "unknown key", "banner", "resolve"])
def test_the_same_failure_is_the_same_line_on_both_transports(monkeypatch, stderr, raised, line):
    assert openssh_line(stderr) == paramiko_line(monkeypatch, raised) == f"node node1 unreachable: {line}"


def test_a_changed_host_key_is_refused_naming_the_key_known_hosts_has(tmp_path, monkeypatch):
    kh = tmp_path / "known_hosts"
    kh.write_text(f"10.0.0.9 ssh-ed25519 {KEY}\n10.0.0.1 ssh-ed25519 {KEY}\n")
    mine = openssh_line(CHANGED.format(kh=kh), known_hosts_file=str(kh))
    expected = paramiko.Ed25519Key(data=base64.b64decode(KEY))
    theirs = paramiko_line(monkeypatch, paramiko.BadHostKeyException(
        "10.0.0.1", paramiko.RSAKey.generate(1024), expected))
    assert mine == theirs == ("node node1 unreachable: host key of 10.0.0.1 CHANGED (known_hosts "
                              f"has ssh-ed25519 {KEY[:16]}..., the node offered another); refusing")


@pytest.mark.parametrize("stderr, line", [
    # the shared connection went away before the session opened: ssh connected itself
    ("mux_client_request_session: read from master failed: Broken pipe\r\n"
     "ssh: connect to host 10.0.0.1 port 22: Connection timed out\r\n",
     "ssh root@10.0.0.1:22: connect timed out after 5 s"),
    ("", "ssh session failed: the connection ended before the command's exit status (ssh exit 255)"),
    ("client_loop: send disconnect: Broken pipe\r\n", "ssh session failed: client_loop: send "
                                                      "disconnect: Broken pipe"),
    ("kex_exchange_identification: read: Connection reset by peer\r\n",
     "ssh root@10.0.0.1:22: kex_exchange_identification: read: Connection reset by peer"),
])
def test_other_failures_are_one_line_naming_what_ssh_said(stderr, line):
    assert openssh_line(stderr) == f"node node1 unreachable: {line}"


def test_the_changed_key_is_named_even_when_known_hosts_cannot_be_read(tmp_path):
    e = ssh_error("n1", OpenSSHRunner(ssh_cfg(), {"n1": Target("n1", "10.0.0.1")}).endpoint("n1"),
                  CHANGED.format(kh=tmp_path / "gone"), 5, "/kh")
    assert f"known_hosts has the key on line 2 of {tmp_path / 'gone'}" in str(e)


# -- many local processes, one loop ----------------------------------------------------

def test_stdin_goes_in_and_both_streams_come_back():
    seen = []
    data = b"<domain>" + b"x" * 300000 + b"</domain>"      # more than a pipe holds
    p = Process(["sh", "-c", "cat; echo done >&2; exit 3"], data, 10, seen.append)
    drive([p], 1)
    assert (p.returncode, bytes(p.out), bytes(p.err), p.timed_out) == (3, data, b"done\n", False)
    assert "".join(seen).encode() == data + b"done\n"


def test_processes_run_from_the_root_folder(tmp_path, monkeypatch):
    """A master ssh leaves running must not hold the folder havirt ran in."""
    monkeypatch.chdir(tmp_path)
    p = Process(["pwd"], None, 10, None)
    drive([p], 1)
    assert bytes(p.out) == b"/\n"


def test_a_process_past_its_deadline_is_killed():
    p = Process(["sleep", "30"], None, 0.3, None)
    t = time.monotonic()
    drive([p], 1)
    assert p.timed_out and time.monotonic() - t < 5 and p.returncode == -9


def test_many_at_once_without_threads():
    ps = [Process(["sleep", "0.5"], None, 10, None) for _ in range(40)]
    t = time.monotonic()
    drive(ps, 40)
    took = time.monotonic() - t
    assert all(p.returncode == 0 for p in ps)
    assert took < 5, f"40 processes of 0.5 s took {took:.1f} s: not run at once"


def test_the_limit_is_kept():
    ps = [Process(["sleep", "0.3"], None, 10, None) for _ in range(6)]
    t = time.monotonic()
    drive(ps, 2)
    assert time.monotonic() - t >= 0.85          # three rounds of two


def test_a_helper_holding_stderr_does_not_hold_the_result():
    """ssh's ProxyJump helper keeps stderr open as long as the shared connection
    lives: the result comes DRAIN seconds after the exit, not when the helper ends."""
    p = Process(["sh", "-c", "sleep 3 >/dev/null & echo hi"], None, 10, None)
    t = time.monotonic()
    drive([p], 1)
    assert (p.returncode, bytes(p.out)) == (0, b"hi\n")
    assert time.monotonic() - t < DRAIN + 1.5


def test_a_program_that_cannot_be_found_is_said():
    with pytest.raises(FileNotFoundError):
        drive([Process(["/nonexistent/ssh"], None, 5, None)], 1)
    r = runner("/tmp")
    r.argv = lambda node, text, tty=False: ["/nonexistent/ssh", text]
    with pytest.raises(ConfigError, match="needs OpenSSH's ssh command"):
        r.run("n1", Command(op="true", argv=("true",)))
