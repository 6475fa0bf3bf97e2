"""config.load_config: defaults, every key, and every way a config file can be wrong."""

import os

import pytest

from havirt.errors import ConfigError
from havirt.store.config import SCHEMA, load_config


def write(tmp_path, text):
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_defaults_when_no_file(tmp_path):
    cfg = load_config(tmp_path / "config.yaml")
    assert cfg.path == str(tmp_path / "config.yaml")
    assert cfg.dryrun is True and cfg.lock_timeout == 60.0
    s = cfg.ssh
    assert (s.user, s.port, s.identity_file, s.host_key_policy) == ("root", 22, None, "reject")
    assert s.known_hosts_file == os.path.expanduser("~/.ssh/known_hosts")
    assert s.ssh_config == os.path.expanduser("~/.ssh/config")
    assert (s.connect_timeout, s.command_timeout, s.parallel) == (5.0, 60.0, 128)
    assert (s.backend, s.persist) == ("paramiko", 600)
    assert (cfg.virsh_uri, cfg.virsh_command) == ("qemu:///system", "virsh")
    assert (cfg.reserve_mib, cfg.vcpu_ratio) == (1024, 4.0)
    assert (cfg.balance_min_gain, cfg.balance_max_moves, cfg.migrate_timeout) == (0.01, 20, 600.0)
    assert cfg.balance_n_plus_1 is True and cfg.balance_weights == (1.0, 0.5)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_means_defaults(tmp_path, text):
    cfg = load_config(write(tmp_path, text))
    assert cfg.ssh.port == 22 and cfg.dryrun is True


def test_every_key(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key\n")
    p = write(tmp_path, f"""\
# like config.sample.yaml, every value changed from its default
dryrun: false
lock_timeout: 7.5
ssh:
  user: admin
  port: 2222
  identity_file: {key}
  known_hosts_file: {tmp_path}/known_hosts
  host_key_policy: accept-new
  connect_timeout: 3
  command_timeout: 90.5
  parallel: 4
  ssh_config: null
  backend: openssh
  persist: 120
virsh:
  uri: qemu+ssh:///system
  command: /usr/bin/virsh
reserve:
  memory_mib: 2048
  vcpu_ratio: 2
balance:
  min_gain: 0.05
  max_moves: 3
  weights:
    memory: 2
    vcpu: 1.5
migrate:
  timeout: 900
""")
    cfg = load_config(p)
    assert cfg.dryrun is False and cfg.lock_timeout == 7.5
    s = cfg.ssh
    assert (s.user, s.port, s.identity_file, s.known_hosts_file) == (
        "admin", 2222, str(key), f"{tmp_path}/known_hosts")
    assert (s.host_key_policy, s.connect_timeout, s.command_timeout, s.parallel, s.ssh_config) == (
        "accept-new", 3.0, 90.5, 4, None)
    assert (s.backend, s.persist) == ("openssh", 120)
    assert (cfg.virsh_uri, cfg.virsh_command) == ("qemu+ssh:///system", "/usr/bin/virsh")
    assert (cfg.reserve_mib, cfg.vcpu_ratio) == (2048, 2.0)
    assert (cfg.balance_min_gain, cfg.balance_max_moves, cfg.migrate_timeout) == (0.05, 3, 900.0)
    assert cfg.balance_weights == (2.0, 1.5) and all(isinstance(x, float) for x in cfg.balance_weights)
    assert isinstance(cfg.vcpu_ratio, float) and isinstance(cfg.lock_timeout, float)


def test_identity_file_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "k").write_text("x")
    cfg = load_config(write(tmp_path, "ssh: {identity_file: ~/.ssh/k}\n"))
    assert cfg.ssh.identity_file == str(tmp_path / ".ssh" / "k")


def test_unknown_top_level_key(tmp_path):
    p = write(tmp_path, "dryrun: true\nsssh: {}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (f"{p}: unknown key 'sssh' (allowed here: balance, dryrun, fence, "
                            "lock_timeout, metrics, migrate, pools, recover, reserve, ssh, store, virsh)")


def test_unknown_nested_key(tmp_path):
    p = write(tmp_path, "ssh:\n  user: root\n  hostname: x\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    allowed = ", ".join(sorted(SCHEMA["ssh"]))
    assert str(e.value) == f"{p}: unknown key 'ssh.hostname' (allowed here: {allowed})"
    assert "command_timeout, connect_timeout, host_key_policy" in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("ssh: {port: '22'}\n", "key 'ssh.port' must be an integer, not '22'"),
    ("ssh: {port: 22.5}\n", "key 'ssh.port' must be an integer, not 22.5"),
    ("ssh: {port: true}\n", "key 'ssh.port' must be an integer, not True"),
    ("lock_timeout: true\n", "key 'lock_timeout' must be an integer or a number, not True"),
    ("lock_timeout: soon\n", "key 'lock_timeout' must be an integer or a number, not 'soon'"),
    ("dryrun: 'yes'\n", "key 'dryrun' must be true/false, not 'yes'"),
    ("dryrun: 1\n", "key 'dryrun' must be true/false, not 1"),
    ("reserve: {memory_mib: 1.5}\n", "key 'reserve.memory_mib' must be an integer, not 1.5"),
    ("reserve: {vcpu_ratio: false}\n", "key 'reserve.vcpu_ratio' must be an integer or a number, not False"),
    ("virsh: {uri: 5}\n", "key 'virsh.uri' must be a string, not 5"),
    ("ssh: {identity_file: [a, b]}\n", "key 'ssh.identity_file' must be a string or null, not ['a', 'b']"),
    ("ssh: [user, root]\n", "ssh must be a mapping"),
    ("ssh: root\n", "ssh must be a mapping"),
    ("- dryrun\n- ssh\n", "top level must be a mapping"),
    ("just a string\n", "top level must be a mapping"),
    ("ssh: {host_key_policy: yolo}\n",
     "key 'ssh.host_key_policy' must be one of reject, accept-new, ignore, not 'yolo'"),
    ("ssh: {port: 0}\n", "key 'ssh.port' must be 1 to 65535, not 0"),
    ("ssh: {port: 70000}\n", "key 'ssh.port' must be 1 to 65535, not 70000"),
    ("ssh: {parallel: 0}\n", "key 'ssh.parallel' must be 1 to 1024, not 0"),
    ("ssh: {connect_timeout: 0}\n", "key 'ssh.connect_timeout' must be more than 0 and at most 86400, not 0"),
    ("reserve: {memory_mib: -1}\n", "key 'reserve.memory_mib' must be 0 to 4294967296, not -1"),
    ("reserve: {vcpu_ratio: 0}\n", "key 'reserve.vcpu_ratio' must be more than 0 and at most 1000, not 0"),
    ("balance: {weights: {vcpu: -0.5}}\n", "key 'balance.weights.vcpu' must be 0 to 1000, not -0.5"),
    ("balance: {weights: {memory: 1001}}\n", "key 'balance.weights.memory' must be 0 to 1000, not 1001"),
    ("balance: {weights: {memory: .inf}}\n", "key 'balance.weights.memory' must be an integer or a number, not inf"),
    ("balance: {weights: {memory: .nan}}\n", "key 'balance.weights.memory' must be an integer or a number, not nan"),
    ("balance: {weights: {vcpu: true}}\n", "key 'balance.weights.vcpu' must be an integer or a number, not True"),
    ("balance: {weights: {vcpu: half}}\n", "key 'balance.weights.vcpu' must be an integer or a number, not 'half'"),
    ("balance: {weights: 0.5}\n", "balance.weights must be a mapping"),
    ("balance: {weights: [1, 0.5]}\n", "balance.weights must be a mapping"),
    ("balance: {weights: {cpu: 1}}\n", "unknown key 'balance.weights.cpu' (allowed here: memory, vcpu)"),
    ("balance: {weights: {memory: 0, vcpu: 0}}\n", "keys 'balance.weights.memory' and 'balance.weights.vcpu' "
     "cannot both be 0 (the score would be 0 whatever the placement)"),
    ("ssh: {backend: ssh}\n", "key 'ssh.backend' must be one of paramiko, openssh, not 'ssh'"),
    ("ssh: {backend: null}\n", "key 'ssh.backend' must be a string, not None"),
    ("virsh: {lxc_uri: 'lxc:///system; list'}\n",
     "key 'virsh.lxc_uri' must be a libvirt URI such as lxc:///system, without spaces, quotes, ';' or '#', "
     "not 'lxc:///system; list'"),
    ("virsh: {uri: \"qemu:///it's\"}\n",
     "key 'virsh.uri' must be a libvirt URI such as qemu:///system, without spaces, quotes, ';' or '#', "
     "not \"qemu:///it's\""),
    ("virsh: {lxc_uri: 'qemu:///system'}\n",
     "keys 'virsh.uri' and 'virsh.lxc_uri' must name two drivers (virtual machines, containers), "
     "not both 'qemu:///system'"),
    *[(f"ssh: {{persist: {v}}}\n", f"key 'ssh.persist' must be seconds (0 to 86400), or no, not {shown}")
      for v, shown in [("-1", "-1"), ("86401", "86401"), ("true", "True"), ("yes", "True"),
                       ("soon", "'soon'"), ("1.5", "1.5"), ("null", "None"), ("'600'", "'600'"),
                       ("[600]", "[600]"), ("10m", "'10m'"), (".inf", "inf")]],
])
def test_wrong_values(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: {message}"
    assert e.value.exit_code == 2


@pytest.mark.parametrize("value, seconds", [("no", 0), ("false", 0), ("0", 0), ("'no'", 0),
                                            ("1", 1), ("86400", 86400)])
def test_persist_in_seconds_or_no(tmp_path, value, seconds):
    """0 or no: no connection sharing (a bare YAML no is false)."""
    cfg = load_config(write(tmp_path, f"ssh: {{backend: openssh, persist: {value}}}\n"))
    assert cfg.ssh.persist == seconds and type(cfg.ssh.persist) is int


def test_missing_identity_file(tmp_path):
    p = write(tmp_path, f"ssh: {{identity_file: {tmp_path}/nope}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: key 'ssh.identity_file': no such file: {tmp_path}/nope"


def test_invalid_yaml_names_the_line(tmp_path):
    p = write(tmp_path, "dryrun: true\nssh:\n  user: [root\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}: line ")
    assert str(e.value).endswith(" is not valid YAML")


def test_config_is_a_folder(tmp_path):
    (tmp_path / "config.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"config.yaml: cannot read: Is a directory"):
        load_config(tmp_path / "config.yaml")


# -- through the CLI -------------------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("nodes: []\n", "unknown key 'nodes'"),
    ("ssh: {prot: 22}\n", "unknown key 'ssh.prot'"),
    ("ssh: {port: twenty}\n", "key 'ssh.port' must be an integer, not 'twenty'"),
    ("ssh: {identity_file: /nonexistent/key}\n", "no such file: /nonexistent/key"),
    ("ssh: {host_key_policy: trust}\n", "must be one of reject, accept-new, ignore"),
    ("ssh:\n  user: [root\n", "is not valid YAML"),
    ("[1, 2]\n", "top level must be a mapping"),
])
def test_cli_bad_config_one_line_exit_2(fake, text, fragment):
    fake.node("node1")
    (fake.home / "config.yaml").write_text(text)
    before = fake.state_file.read_bytes()
    for args in (("node", "list"), ("node", "scan"), ("--yes", "domain", "destroy", "web1")):
        rc, out, err = fake.havirt(*args)
        assert rc == 2, (args, err)
        assert out == ""
        assert err.startswith(f"havirt: {fake.home / 'config.yaml'}: ") and err.count("\n") == 1, err
        assert fragment in err and "Traceback" not in err
    assert fake.calls == []
    assert fake.state_file.read_bytes() == before


def test_cli_config_option_names_the_file(fake, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("bogus: 1\n")
    rc, out, err = fake.havirt("--config", str(other), "node", "list")
    assert rc == 2
    assert err.startswith(f"havirt: {other}: unknown key 'bogus'") and err.count("\n") == 1


def test_pools(tmp_path):
    cfg = load_config(write(tmp_path, "pools: {main: /srv/images/, iso: /srv/iso}\n"))
    assert cfg.pools == {"main": "/srv/images", "iso": "/srv/iso"}
    assert (cfg.pool_of("/srv/images/a.qcow2"), cfg.pool_of("/srv/images/x/a.qcow2"),
            cfg.pool_of("/srv/iso/d.iso"), cfg.pool_of("/dev/sdb")) == ("main", None, "iso", None)
    assert load_config(write(tmp_path, "pools: null\n")).pools == {}


@pytest.mark.parametrize("text, words", [
    ("pools: [/srv/a]\n", "'pools' must be a mapping of pool name to its folder"),
    ("pools: {main: srv/a}\n", "key 'pools.main' must be an absolute folder, not 'srv/a'"),
    ("pools: {main: 3}\n", "key 'pools.main' must be an absolute folder, not 3"),
    ("pools: {main: /}\n", "key 'pools.main': / cannot be a pool"),
    ("pools: {'a b': /srv/a}\n", "key 'pools.a b': invalid pool name"),
    ("pools: {a: /srv/a, b: /srv/a/b}\n", "pools a (/srv/a) and b (/srv/a/b) overlap"),
])
def test_bad_pools(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert words in str(e.value)


def test_the_sample_shows_every_default(tmp_path):
    from dataclasses import replace
    from pathlib import Path
    sample = Path(__file__).resolve().parents[2] / "config.sample.yaml"
    assert replace(load_config(sample), path="") == replace(load_config(tmp_path / "none.yaml"), path="")


def test_store_defaults_to_the_home_files(tmp_path):
    s = load_config(tmp_path / "none.yaml").store
    assert (s.backend, s.endpoints, s.prefix, s.ca, s.cert, s.key, s.lock_ttl) == \
        ("files", [], "/havirt", None, None, None, 30)


def pem_pair(folder, name):
    """A self-signed certificate and its key (openssl), as PEM files."""
    import subprocess
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return cert, key


def test_store_etcd(tmp_path):
    ca, _ = pem_pair(tmp_path, "ca")
    s = load_config(write(tmp_path, f"store: {{backend: etcd, endpoints: [https://10.0.0.1:2379/, "
                                     f"'https://[fd00::1]:2379'], prefix: /lab/havirt, ca: {ca}, "
                                     "lock_ttl: 10}\n")).store
    assert (s.backend, s.endpoints, s.prefix, s.ca, s.lock_ttl) == \
        ("etcd", ["https://10.0.0.1:2379", "https://[fd00::1]:2379"], "/lab/havirt", str(ca), 10)


@pytest.mark.parametrize("text,words", [
    ("store: {backend: nfs}", "key 'store.backend' must be one of files, etcd, not 'nfs'"),
    ("store: {backend: etcd}", "key 'store.endpoints' must list the etcd members' client URLs"),
    ("store: {backend: etcd, endpoints: http://a:2379}", "key 'store.endpoints' must be a list or null"),
    ("store: {endpoints: [10.0.0.1:2379]}", "must list URLs such as http://10.0.0.1:2379, not '10.0.0.1:2379'"),
    ("store: {endpoints: ['http://a:99999']}", "must list URLs such as"),
    ("store: {endpoints: [http://a:1, http://a:1]}", "names an endpoint twice"),
    ("store: {prefix: havirt}", "key 'store.prefix' must be a key path such as /havirt"),
    ("store: {prefix: /havirt/}", "key 'store.prefix' must be a key path"),
    ("store: {lock_ttl: 2}", "key 'store.lock_ttl' must be 5 to 3600, not 2"),
    ("store: {lock_ttl: true}", "key 'store.lock_ttl' must be an integer, not True"),
    ("store: {cert: /x}", "keys 'store.cert' and 'store.key' go together"),
    ("store: {ca: /no/such/ca.pem, endpoints: [https://a:1]}", "key 'store.ca': no such file: /no/such/ca.pem"),
    ("store: {etcd: {}}", "unknown key 'store.etcd' (allowed here: backend, ca, cert, endpoints, key, "
                          "lock_ttl, prefix)"),
])
def test_bad_store(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text + "\n"))
    assert words in str(e.value)


def test_store_tls_files_are_read_when_the_config_is(tmp_path):
    """A CA, certificate or key havirt cannot use is a configuration error
    (exit 2, naming the key), not an etcd that "cannot connect" (exit 6)."""
    cert, key = pem_pair(tmp_path, "client")
    other, other_key = pem_pair(tmp_path, "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    head = "store: {backend: etcd, endpoints: [https://a:2379]"
    s = load_config(write(tmp_path, f"{head}, ca: {other}, cert: {cert}, key: {key}}}\n")).store
    assert (s.ca, s.cert, s.key) == (str(other), str(cert), str(key))
    for extra, words in ((f"ca: {junk}", f"key 'store.ca': {junk}: not a CA certificate havirt can use"),
                         (f"cert: {junk}, key: {key}", f"keys 'store.cert' and 'store.key': {junk} and {key}: "
                                                       "not a certificate and its key"),
                         (f"cert: {cert}, key: {other_key}", "not a certificate and its key"),
                         (f"cert: {cert}, key: {tmp_path}", f"key 'store.key': no such file: {tmp_path}")):
        with pytest.raises(ConfigError) as e:
            load_config(write(tmp_path, f"{head}, {extra}}}\n"))
        assert words in str(e.value), (extra, str(e.value))
        assert str(e.value).count("\n") == 0


def test_store_tls_needs_https(tmp_path):
    ca, _ = pem_pair(tmp_path, "ca")
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"store: {{endpoints: [http://a:2379], ca: {ca}}}\n"))
    assert "need https:// endpoints" in str(e.value)
