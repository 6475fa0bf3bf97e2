"""XML never on a command line; dry runs never show keys or config paths; var/ files are 0600."""

import os
import stat

import pytest
from fakes import is_scan

V = "virsh -c qemu:///system"


@pytest.fixture
def umask0():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_no_xml_on_any_remote_command_line(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1", memory_mib=128, disks=["/srv/web1.qcow2"])
    b.paths.add("/srv/web1.qcow2")
    xml = (fake.home / "conf" / "web1.xml").read_text()
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc == 0, err
    assert "web1" in b.domains       # the fake only creates from XML it got on stdin
    assert ("node2", f"{V} create /dev/stdin") in fake.calls
    for _, command in fake.calls:
        assert "<domain" not in command and "<name>" not in command and xml.strip() not in command
    # the offline migration sends the XML again, on stdin too
    fake.refused("--yes", "domain", "migrate", "web1", "node1", "--offline")   # node1 lacks the disk
    a.paths.add("/srv/web1.qcow2")
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node1", "--offline")
    assert rc == 0, err
    assert "web1" in a.domains
    assert all("<domain" not in c for _, c in fake.calls)
    log = (fake.home / "var" / "audit.log").read_text()
    assert "<domain" not in log and "create /dev/stdin < conf/web1.xml" in log


def secret_setup(fake, tmp_path):
    key = tmp_path / "secret-keys" / "id_havirt_ed25519"
    key.parent.mkdir()
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    extra = tmp_path / "secret-keys" / "id_from_ssh_config"
    extra.write_text("x")
    ssh_config = tmp_path / "secret-keys" / "ssh_config"
    ssh_config.write_text(f"Host *\n  IdentityFile {extra}\n")
    known = tmp_path / "secret-keys" / "known_hosts"
    known.write_text("")
    fake.write_config(ssh={"identity_file": str(key), "ssh_config": str(ssh_config),
                           "known_hosts_file": str(known), "host_key_policy": "reject"})
    fake.real_describe = True
    return [str(key), str(extra), str(ssh_config), str(known), "secret-keys", "id_havirt", "BEGIN OPENSSH"]


def test_dry_runs_never_show_the_key_or_config_paths(fake, tmp_path):
    secrets = secret_setup(fake, tmp_path)
    a, _b = fake.node("node1"), fake.node("node2")
    fake.records["node2"].port = 2222
    fake.save_state()
    fake.conf("web1", memory_mib=64)
    fake.conf("db1", memory_mib=64)
    a.add("db1", memory_mib=64)
    outputs = []
    for args in (("domain", "start", "web1", "node2"),
                 ("domain", "shutdown", "db1", "--wait", "10", "--force"),
                 ("domain", "destroy", "db1"),
                 ("domain", "migrate", "db1", "node2"),
                 ("domain", "migrate", "db1", "node2", "--offline"),
                 ("node", "maintenance", "node1", "on"),
                 ("-f", "json", "domain", "start", "web1", "node2")):
        rc, out, err = fake.havirt(*args)
        assert rc == 0, (args, err)
        outputs.append(out + err)
    text = "\n".join(outputs)
    # the real runner's describe: user@host, the port when not 22, nothing else
    assert "ssh -p 2222 root@10.0.0.2 'virsh -c qemu:///system create /dev/stdin' < conf/web1.xml" in text
    assert f"ssh root@10.0.0.1 '{V} destroy db1'" in text
    for s in secrets:
        assert s not in text, s
    assert " -i " not in text and "IdentityFile" not in text
    assert all(is_scan(c) for _, c in fake.calls)


def test_hostile_address_stays_one_argument_on_the_source(fake):
    a, _b = fake.node("node1"), fake.node("node2")
    a.add("web1", memory_mib=64)
    fake.conf("web1", memory_mib=64)
    fake.records["node2"].address = "10.0.0.2;touch /tmp/pwned"
    fake.save_state()
    before = fake.state_file.read_bytes()
    out, err = fake.refused("--yes", "domain", "migrate", "web1", "node2", code=2)
    # an address edited into the state by hand is checked when the state is read
    assert out == "" and fake.calls == []
    assert "invalid address '10.0.0.2;touch /tmp/pwned'" in err and err.count("\n") == 1
    assert fake.state_file.read_bytes() == before


def test_hostile_user_is_refused_everywhere(fake):
    fake.node("node1")
    for args in (["node", "add", "node9", "--address", "10.0.0.9", "--user", "x;touch /tmp/p"],
                 ["node", "set", "node1", "--user", "root@evil.example/system?command=/tmp/x&"]):
        _, err = fake.refused(*args, code=2)
        assert "invalid user name" in err, err
    assert fake.calls == []


def test_var_files_are_0600(fake, umask0):
    fake.node("node1")
    b = fake.node("node2")
    fake.conf("web1", memory_mib=64)
    os.chmod(fake.state_file, 0o644)
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc == 0, err
    assert "web1" in b.domains
    var = fake.home / "var"
    assert sorted(p.name for p in var.iterdir()) == ["audit.log", "havirt.lock", "state.yaml"]
    for name in ("state.yaml", "audit.log", "havirt.lock"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600, name


def test_fresh_home_var_is_not_world_readable(tmp_path, capsys, umask0):
    from conftest import FakeCluster
    fake = FakeCluster(tmp_path, capsys)
    fake.home = tmp_path / "fresh"
    fake.home.mkdir()
    (fake.home / "config.yaml").write_text("lock_timeout: 2\n")
    fake.node("node1", record=False)
    rc, out, err = fake.havirt("node", "add", "node1", "--address", "10.0.0.1")
    assert rc == 0, err
    var = fake.home / "var"
    assert stat.S_IMODE(var.stat().st_mode) & 0o007 == 0
    assert stat.S_IMODE((var / "state.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "havirt.lock").stat().st_mode) == 0o600


def test_imported_conf_files_are_not_world_writable(fake, umask0):
    from conftest import domain_xml
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1")
    rc, out, err = fake.havirt("domain", "import", "web1", "--from", "node1")
    assert rc == 0, err
    assert stat.S_IMODE((fake.home / "conf" / "web1.xml").stat().st_mode) == 0o640
    assert not list((fake.home / "conf").glob("*.tmp"))


def test_migrate_uri_brackets_an_ipv6_address():
    from pathlib import Path

    from havirt.remote.commands import migrate
    from havirt.store.config import load_config
    cfg = load_config(Path("/nonexistent/config.yaml"))
    argv = migrate(cfg, "web1", "fd00::12", "root", 2222).argv
    assert argv[-3:] == ("qemu+ssh://root@[fd00::12]:2222/system", "--migrateuri", "tcp://[fd00::12]")
    argv = migrate(cfg, "web1", "10.0.0.12", "root", 22).argv
    assert argv[-3:] == ("qemu+ssh://root@10.0.0.12/system", "--migrateuri", "tcp://10.0.0.12")
