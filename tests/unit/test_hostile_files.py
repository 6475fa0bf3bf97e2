"""Hostile or broken contents of the files havirt reads (config.yaml, the state,
conf/ XML, known_hosts, ~/.ssh/config, the lock) and odd values given on the
command line: one line, the documented exit code, nothing changed, never a
hang, a traceback, or a command run from a config file.
"""

import base64
import fcntl
import os
import stat
import threading

import pytest
from conftest import domain_xml
from fakes import home_snapshot, refused

from havirt.cli import run
from havirt.errors import ConfigError
from havirt.store.config import SSHConfig


def base(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("db1", memory_mib=64)
    a.add("db1", memory_mib=64)
    return a, b


# -- config.yaml and the state: text, aliases, keys twice, ranges ------------------------

STATE_HEAD = '{"format": 1, "nodes": {"node1": {"address": "10.0.0.1"'


def bomb(levels=8):
    """A few hundred bytes of YAML aliases that stand for 9**levels strings,
    where the state has a text (a node's error)."""
    items = ['&x0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    items += [f"&x{i} [{','.join([f'*x{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return ("format: 1\nnodes:\n  node1:\n    address: 10.0.0.1\n    error: [" + ", ".join(items) + "]\n")


@pytest.mark.parametrize("text, fragment", [
    pytest.param(b"ssh:\n  user: r\xf6ot\n", "config.yaml: line 2: not UTF-8 text (byte 0xf6)", id="config-latin1"),
    pytest.param(b"lock_timeout: 1\nlock_timeout: 60\n", "config.yaml: line 2: the key 'lock_timeout' is given twice",
                 id="config-key-twice"),
    pytest.param(b"ssh: {port: 22, port: 2222}\n", "the key 'port' is given twice", id="config-nested-key-twice"),
    pytest.param(b"ssh: &s {port: 22}\nvirsh: {uri: *s}\n", "line 1: YAML anchors and aliases",
                 id="config-alias"),
])
def test_config_contents(fake, text, fragment):
    base(fake)
    (fake.home / "config.yaml").write_bytes(text)
    refused(fake, ["node", "list"], 2, fragment)


@pytest.mark.parametrize("text, fragment", [
    pytest.param(b'{"format": 1, "nodes": {"n\xe9ud": {}}}', "state.yaml: line 1: not UTF-8 text",
                 id="state-latin1"),
    pytest.param(bomb().encode(), "line 5: YAML anchors and aliases", id="state-alias-bomb"),
    pytest.param(b"format: 1\nnodes: {}\nnodes: {node1: {address: 10.0.0.1}}\n",
                 "line 3: the key 'nodes' is given twice", id="state-key-twice-yaml"),
    pytest.param((STATE_HEAD + '}, "node1": {"address": "10.0.0.9"}}}').encode(),
                 "the key 'node1' is given twice", id="state-key-twice-json"),
    pytest.param((STATE_HEAD + ', "address": "10.0.0.9"}}}').encode(),
                 "the key 'address' is given twice", id="state-field-twice-json"),
    pytest.param(b'{"format": true, "nodes": {}}', "format True is not supported", id="state-format-true"),
    pytest.param((STATE_HEAD + ', "memory_cap_mib": -1}}}').encode(),
                 "'memory_cap_mib' must be 1 to", id="state-negative-cap"),
    pytest.param((STATE_HEAD + ', "cpus": -4}}}').encode(), "'cpus' must be 0 to", id="state-negative-cpus"),
    pytest.param((STATE_HEAD + ', "memory_mib": -8192}}}').encode(), "'memory_mib' must be 0 to",
                 id="state-negative-memory"),
    pytest.param((STATE_HEAD + ', "port": 0}}}').encode(), "'port' must be 1 to 65535", id="state-port-0"),
    pytest.param((STATE_HEAD + ', "memory_mib": 1' + "0" * 400 + '}}}').encode(), "'memory_mib' must be 0 to",
                 id="state-huge-number"),
    pytest.param((STATE_HEAD + '}}, "domains": {"web1": {"conflict": [1, 2]}}}').encode(),
                 "'conflict' must be a list of node names, not a list of 2", id="state-conflict-numbers"),
    pytest.param((STATE_HEAD + '}}, "domains": {"web1": {"conflict": ["node1", "x;rm -rf /"]}}}').encode(),
                 "'conflict' must be a list of node names", id="state-conflict-hostile"),
    pytest.param((STATE_HEAD + '}}, "domains": {"web1": {"node": "no de"}}}').encode(),
                 "invalid node name 'no de'", id="state-domain-node-name"),
    pytest.param(b"[" * 100000 + b"]" * 100000, "nested too deeply", id="state-deep-json"),
    pytest.param(b"format: 1\nnodes: " + b"[" * 100000 + b"]" * 100000 + b"\n", "state.yaml",
                 id="state-deep-yaml"),
])
def test_state_contents(fake, text, fragment):
    base(fake)
    fake.state_file.write_bytes(text)
    # a changing command reads the state inside the lock: it must give up at once
    refused(fake, ["node", "set", "node1", "--memory-cap", "100"], 2, fragment, seconds=1.0)
    refused(fake, ["node", "list"], 2, fragment, seconds=1.0)


def test_a_node_reporting_a_negative_balloon_is_not_believed(fake):
    a, b = base(fake)
    b.add("web1", memory_mib=-1024)      # virsh would print balloon.current=-1048576
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1, err
    assert "ERROR unreachable node2" in out and "balloon.current is not a number of 0 or more" in out
    assert all(d.memory_mib is None or d.memory_mib >= 0 for d in fake.state().domains.values())
    c = fake.node("node3", record=False)
    c.add("web2", memory_mib=-1)
    refused(fake, ["node", "add", "node3"], 4, "balloon.current is not a number of 0 or more")


# -- numbers are ASCII digits --------------------------------------------------------------

@pytest.mark.parametrize("memory", ["٣٢", "３２", "3²"])
def test_unicode_digits_are_not_numbers_in_conf_xml(fake, memory):
    base(fake)
    (fake.home / "conf" / "web1.xml").write_text(domain_xml("web1").replace(">32<", f">{memory}<"))
    refused(fake, ["domain", "start", "web1", "node2"], 2, "<memory> is not a whole number")
    xml = domain_xml("web1").replace("<vcpu>1</vcpu>", f"<vcpu>{memory[-1]}</vcpu>")
    (fake.home / "conf" / "web1.xml").write_text(xml)
    refused(fake, ["domain", "start", "web1", "node2"], 2, "<vcpu> must be 1 to")


@pytest.mark.parametrize("cap", ["٣٢", "３２", "²"])
def test_unicode_digits_are_not_a_memory_cap(fake, cap):
    base(fake)
    refused(fake, ["node", "set", "node1", "--memory-cap", cap], 2, "a number of MiB from 1 to 4294967296, or 'none'")


# -- addresses --------------------------------------------------------------------------------

def test_an_ipv6_address_is_accepted_and_an_empty_one_refused(fake):
    base(fake)
    fake.node("node3", record=False)
    rc, out, err = fake.havirt("node", "add", "node3", "--address", "::1")
    assert rc == 0, err
    assert fake.state().nodes["node3"].address == "::1"
    rc, out, err = fake.havirt("node", "set", "node3", "--address", "fd00::13")
    assert rc == 0 and fake.state().nodes["node3"].address == "fd00::13", err
    rc, out, err = fake.havirt("domain", "migrate", "db1", "node3")
    assert rc == 0, err
    assert "qemu+ssh://root@[fd00::13]/system" in out and "tcp://[fd00::13]" in out
    fake.node("node4", record=False)
    refused(fake, ["node", "add", "node4", "--address", ""], 2, "invalid address ''")
    refused(fake, ["node", "set", "node1", "--address", ""], 2, "invalid address ''")
    for bad in ("fe80::1%eth0", ":::", "-oProxyCommand=x"):
        refused(fake, ["node", "set", "node1", "--address", bad], 2, "invalid address")


# -- the lock holder's text is shown cleaned ------------------------------------------------

def test_the_lock_holders_text_is_shown_on_one_clean_line(fake):
    base(fake)
    fake.write_config(lock_timeout=0.2)
    lock = fake.home / "var" / "havirt.lock"
    lock.write_bytes(b"pid 1\nhavirt: all is well\x1b[2J\x1b]0;owned\x07 \xff")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        err = refused(fake, ["node", "set", "node1", "--memory-cap", "100"], 5, "is held by pid 1\\n")
    finally:
        os.close(fd)
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b[2J\\x1b]0;owned\\x07" in err


# -- ~/.ssh/config: only HostName, User, Port, IdentityFile; bad values are one line ----------

def ssh_cfg(**kw):
    base_kw = dict(user="root", port=22, identity_file=None, known_hosts_file=None,
                   host_key_policy="reject", connect_timeout=0.5, command_timeout=5, parallel=4,
                   ssh_config=None)
    base_kw.update(kw)
    return SSHConfig(**base_kw)


def runner_with(tmp_path, text, **kw):
    from havirt.remote.paramiko_ssh import ParamikoRunner
    from havirt.remote.transport import Target
    conf = tmp_path / "ssh_config"
    conf.write_text(text)
    return ParamikoRunner(ssh_cfg(ssh_config=str(conf), **kw), {"n1": Target("n1", "n1")})


@pytest.mark.parametrize("text, fragment", [
    ("Host\n  Port 22\n", "line 1: 'Host' needs at least one pattern"),
    ("Host n1\n  Port abc\n", "line 2: Port 'abc' is not a port number"),
    ("Host n1\n  Port 70000\n", "line 2: Port '70000' is not a port number"),
    ("Host n1\n  Port ٢٢\n", "line 2: Port '٢٢' is not a port number"),
    ("Host *\n  User -oProxyCommand=touch${IFS}/tmp/x\n", "line 2: invalid user name"),
    ("Host n1\n  HostName -oProxyCommand=x\n", "HostName for n1: invalid address"),
])
def test_ssh_config_bad_values_stop_with_one_line(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as e:
        runner_with(tmp_path, text).describe("n1")
    assert str(e.value).startswith(str(tmp_path / "ssh_config")) and fragment in str(e.value)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_ssh_config_user_is_checked_before_a_dry_run_line_is_printed(fake, tmp_path):
    base(fake)
    conf = tmp_path / "ssh_config"
    conf.write_text("Host *\n  User -oProxyCommand=sh\n")
    fake.write_config(ssh={"ssh_config": str(conf)})
    fake.real_describe = True
    refused(fake, ["domain", "destroy", "db1"], 2, "line 2: invalid user name '-oProxyCommand=sh'")


def test_ssh_config_match_exec_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    runner = runner_with(tmp_path, f'Match exec "touch {marker}"\n  User evil\n'
                                   f"Host n1\n  HostName 192.0.2.1\n  User admin\n"
                                   f'Match host n1 exec "touch {marker}"\n  Port 2222\n')
    ep = runner.endpoint("n1")
    assert (ep.host, ep.user, ep.port) == ("192.0.2.1", "admin", 22)
    assert not marker.exists()


def test_ssh_config_first_value_wins_and_patterns_negate(tmp_path):
    runner = runner_with(tmp_path, "Host n1 !n2\n  User first\n  IdentityFile ~/.ssh/a\n"
                                   "Host n?\n  User second\n  Port 2200\n  IdentityFile /k/b\n"
                                   "  HostName %h.example.org\n")
    ep = runner.endpoint("n1")
    assert (ep.host, ep.user, ep.port) == ("n1.example.org", "first", 2200)
    assert ep.key_filenames == [os.path.expanduser("~/.ssh/a"), "/k/b"]


# -- known_hosts --------------------------------------------------------------------------------

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize("line, why", [
    (b"node2 ssh-ed25519 AAAA!!notbase64", "unreadable key"),
    (b"node2 ssh-ed25519 " + KEY.encode()[:-9], "unreadable key"),
    (b"n\xf6de2 ssh-ed25519 " + KEY.encode(), "not UTF-8 text"),
])
def test_a_corrupt_known_hosts_line_is_one_line_exit_2(fake, tmp_path, line, why):
    base(fake)
    known = tmp_path / "known_hosts"
    known.write_bytes(b"# mine\nnode1 ssh-ed25519 " + KEY.encode() + b"\n" + line + b"\n")
    fake.write_config(ssh={"known_hosts_file": str(known), "ssh_config": None, "connect_timeout": 1})
    st = fake.state()
    for rec in st.nodes.values():
        rec.address, rec.port = "127.0.0.1", 9      # the real runner: no node is ever reached
    from havirt.store.state import save_state
    save_state(fake.state_file, st)
    before = home_snapshot(fake.home)
    fake.capsys.readouterr()
    rc = run(["--home", str(fake.home), "node", "scan"])     # the real SSH runner
    err = fake.capsys.readouterr().err
    assert rc == 2, err
    assert err == f"havirt: {known}: line 3: not a valid known_hosts entry ({why}); fix or remove that line\n"
    assert home_snapshot(fake.home) == before


def test_accept_new_writes_hashed_lines_in_a_private_folder(tmp_path):
    import paramiko

    from havirt.remote.paramiko_ssh import _AcceptNew
    known = tmp_path / "newhome" / ".ssh" / "known_hosts"
    old = os.umask(0o022)
    try:
        policy = _AcceptNew(str(known))
        key = paramiko.Ed25519Key(data=base64.b64decode(KEY))
        threads = [threading.Thread(target=policy.missing_host_key, args=(None, f"[10.0.0.{i}]:2222", key))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    lines = known.read_text().splitlines()
    assert len(lines) == 8 and all(line.startswith("|1|") for line in lines)
    assert "10.0.0" not in known.read_text()
    keys = paramiko.HostKeys(str(known))
    for i in range(8):
        assert keys.lookup(f"[10.0.0.{i}]:2222")["ssh-ed25519"].get_base64() == KEY


# -- stray files in conf/ -------------------------------------------------------------------

def test_stray_files_in_conf_are_listed_as_problems_never_fatal(fake):
    base(fake)
    conf = fake.home / "conf"
    (conf / "web1 (copy).xml").write_text(domain_xml("web1"))
    (conf / ".#db1.xml").symlink_to("root@admin.12345:1700000000")    # an editor's lock: dangling
    (conf / "notes.xml").write_text("<html/>")
    (conf / "old.xml").mkdir()
    for fmt in ("screen", "tsv", "json"):
        rc, out, err = fake.havirt("-f", fmt, "domain", "list")
        assert rc == 0, err
        assert "db1" in out
        lines = err.splitlines()
        assert len(lines) == 4 and all(line.startswith("havirt: warning: ") for line in lines), err
        assert "'web1 (copy)' is not a valid domain name" in err and "'.#db1' is not a valid" in err
        assert "notes.xml: the root element is <html>" in err and "old.xml: " in err
    rc, out, err = fake.havirt("cluster", "validate")
    assert rc == 1 and out.count("bad-file-name") == 2, out


# -- a FIFO or a device where havirt reads a file: refused at once, never a hang -------------

def test_a_fifo_where_havirt_reads_is_refused_at_once(fake, tmp_path):
    base(fake)
    conf = fake.home / "conf"
    os.mkfifo(conf / "web1.xml")
    (conf / "dev.xml").symlink_to("/dev/zero")
    rc, out, err = fake.havirt("domain", "list")
    assert rc == 0 and "db1" in out, err
    assert "web1.xml: cannot read: not a plain file" in err and "dev.xml: cannot read: not a plain file" in err
    refused(fake, ["domain", "start", "web1", "node2"], 2, "web1.xml: cannot read: not a plain file")
    for where in (fake.state_file, fake.home / "config.yaml", fake.home / "var" / "audit.log"):
        saved = tmp_path / "saved"
        if where.exists():
            where.rename(saved)
        os.mkfifo(where)
        args = ["log"] if where.name == "audit.log" else ["node", "set", "node1", "--memory-cap", "9"]
        refused(fake, args, 2, f"{where.name}: cannot read")
        where.unlink()
        if saved.exists():
            saved.rename(where)
