"""Bad input: each gives one clear line, the documented exit code, and changes nothing.

Exit codes: 2 usage/config/state/conf-XML, 3 refused, 4 unreachable.
"""

import pytest
from conftest import domain_xml
from fakes import home_snapshot, is_scan

LONG = "w" * 300


def base(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.node("node3", record=False)      # exists, not added yet
    fake.conf("web1", memory_mib=512)
    fake.conf("db1", memory_mib=256)
    a.add("db1", memory_mib=256)
    return a, b


# -- setups ---------------------------------------------------------------------------

def nothing(fake):
    pass


def conf_text(text, name="web1"):
    def setup(fake):
        (fake.home / "conf" / f"{name}.xml").write_text(text)
    return setup


def config(**extra):
    def setup(fake):
        fake.write_config(**extra)
    return setup


def config_text(text):
    def setup(fake):
        (fake.home / "config.yaml").write_text(text)
    return setup


def state_text(text):
    def setup(fake):
        fake.state_file.write_text(text)
    return setup


def scan_output(stdout, stderr="", node="node3"):
    def setup(fake):
        fake.nodes[node].scan_stdout = stdout
        fake.nodes[node].scan_stderr = stderr
    return setup


GOOD_SCAN_HEAD = ("@@hostname\nnode3\n@@version\nRunning against daemon: 9.0.0\n@@nodeinfo\n"
                  "CPU(s): 4\nMemory size: 8388608 KiB\n@@persistent\n@@autostart\n@@domstats\n")

CASES = [
    # unknown node or domain
    pytest.param(nothing, ["domain", "start", "web1", "node9"], 2, "unknown node 'node9'", id="start-unknown-node"),
    pytest.param(nothing, ["domain", "start", "nosuch", "node1"], 2, "unknown domain 'nosuch'", id="start-unknown-domain"),
    pytest.param(nothing, ["domain", "migrate", "db1", "node9"], 2, "unknown node 'node9'", id="migrate-unknown-node"),
    pytest.param(nothing, ["domain", "migrate", "nosuch"], 2, "unknown domain 'nosuch'", id="migrate-unknown-domain"),
    pytest.param(nothing, ["node", "set", "node9", "--memory-cap", "100"], 2, "unknown node 'node9'", id="set-unknown-node"),
    pytest.param(nothing, ["node", "remove", "node9"], 2, "unknown node 'node9'", id="remove-unknown-node"),
    pytest.param(nothing, ["node", "maintenance", "node9", "on"], 2, "unknown node 'node9'", id="maint-unknown-node"),
    pytest.param(nothing, ["domain", "maintenance", "nosuch", "on"], 2, "unknown domain 'nosuch'", id="maint-unknown-domain"),
    pytest.param(nothing, ["domain", "import", "web1", "--from", "node9"], 2, "unknown node 'node9'", id="import-unknown-node"),
    pytest.param(nothing, ["node", "scan", "node9"], 2, "unknown node 'node9'", id="scan-unknown-node"),
    pytest.param(nothing, ["domain", "list", "--node", "node9"], 2, "unknown node 'node9'", id="list-unknown-node"),
    # names with shell metacharacters, spaces, '..', hundreds of characters, newlines
    pytest.param(nothing, ["domain", "start", "web1;rm -rf /", "node1"], 2, "invalid domain name", id="name-semicolon"),
    pytest.param(nothing, ["--yes", "domain", "shutdown", "$(reboot)"], 2, "invalid domain name", id="name-subst"),
    pytest.param(nothing, ["--yes", "domain", "destroy", "db 1"], 2, "invalid domain name", id="name-space"),
    pytest.param(nothing, ["domain", "migrate", "..", "node2"], 2, "invalid domain name", id="name-dotdot"),
    pytest.param(nothing, ["domain", "import", "x|y", "--from", "node1"], 2, "invalid domain name", id="import-pipe"),
    pytest.param(nothing, ["domain", "maintenance", "../etc/passwd", "on"], 2, "invalid domain name", id="maint-path"),
    pytest.param(nothing, ["node", "add", "n;id"], 2, "invalid node name", id="add-semicolon"),
    pytest.param(nothing, ["node", "add", LONG], 2, "invalid node name", id="add-long"),
    pytest.param(nothing, ["domain", "start", LONG, "node1"], 2, "invalid domain name", id="start-long"),
    pytest.param(nothing, ["node", "add", "node3\n"], 2, "invalid node name", id="add-newline"),
    pytest.param(nothing, ["--yes", "domain", "shutdown", "db1\n"], 2, "invalid domain name", id="shutdown-newline"),
    pytest.param(nothing, ["domain", "start", "web1\n", "node1"], 2, "invalid domain name", id="start-newline"),
    # conf/ XML that cannot be used
    pytest.param(conf_text("<domain><name>web1</name>"), ["domain", "start", "web1", "node1"], 2,
                 "not valid XML", id="xml-malformed"),
    pytest.param(conf_text("<domain><memory unit='MiB'>5</memory></domain>"), ["domain", "start", "web1", "node1"],
                 2, "no <name>", id="xml-no-name"),
    pytest.param(conf_text("<domain><name>web1</name></domain>"), ["domain", "start", "web1", "node1"], 2,
                 "no <memory>", id="xml-no-memory"),
    pytest.param(conf_text("<domain><name>web1</name><memory unit='TiB'>100</memory></domain>"),
                 ["domain", "start", "web1", "node1"], 2, "not believable", id="xml-absurd-memory"),
    pytest.param(conf_text(domain_xml("web2")), ["domain", "start", "web1", "node1"], 2,
                 "<name> is 'web2', not 'web1'", id="xml-other-name"),
    pytest.param(conf_text("<domain><name>db1</name>", "db1"), ["--yes", "domain", "migrate", "db1", "node2"], 2,
                 "not valid XML", id="xml-malformed-migrate"),
    # config.yaml
    pytest.param(config(sssh={}), ["node", "list"], 2, "unknown key 'sssh'", id="config-unknown-key"),
    pytest.param(config(ssh={"user": "root", "portt": 22}), ["domain", "start", "web1", "node1"], 2,
                 "unknown key 'ssh.portt'", id="config-unknown-nested"),
    pytest.param(config(lock_timeout="long"), ["domain", "start", "web1", "node1"], 2,
                 "key 'lock_timeout' must be an integer or a number, not 'long'", id="config-wrong-type"),
    pytest.param(config(ssh={"identity_file": "/nonexistent/id_ed25519"}), ["node", "scan"], 2,
                 "key 'ssh.identity_file': no such file: /nonexistent/id_ed25519", id="config-no-identity"),
    pytest.param(config_text("ssh: {user: root\n"), ["node", "scan"], 2, "is not valid YAML", id="config-yaml"),
    # the state file
    pytest.param(state_text(""), ["domain", "start", "web1", "node1"], 2, "is empty", id="state-empty"),
    pytest.param(state_text("format: 1\nnodes:\n  node1:\n    address: '10.0.0"), ["node", "scan"], 2,
                 "is not valid YAML", id="state-truncated"),
    pytest.param(state_text("- node1\n"), ["node", "list"], 2, "is not a mapping", id="state-list"),
    pytest.param(state_text("format: 99\nnodes: {}\n"), ["--yes", "domain", "shutdown", "db1"], 2,
                 "format 99 is not supported", id="state-future"),
    pytest.param(state_text("format: 1\nnodes: {}\nclusters: {}\n"), ["node", "add", "node3"], 2,
                 "unknown keys clusters", id="state-unknown-key"),
    # a node whose virsh prints something unexpected
    pytest.param(scan_output(GOOD_SCAN_HEAD + "Domain: 'x'\n  state.state=1\nSegmentation fault\n@@end\n@@virsh-exit\n0\n"),
                 ["node", "add", "node3"], 4, "cannot parse domstats, line 3: 'Segmentation fault'",
                 id="virsh-garbage-domstats"),
    pytest.param(scan_output(GOOD_SCAN_HEAD.replace("CPU(s): 4", "CPU(s): many") + "@@end\n@@virsh-exit\n0\n"),
                 ["node", "add", "node3"], 4, "CPU(s) is not a number", id="virsh-garbage-nodeinfo"),
    pytest.param(scan_output("@@hostname\nnode3\n<html>502 Bad Gateway</html>\n",
                             "virsh: symbol lookup error: libvirt.so.0\n"),
                 ["node", "add", "node3"], 4, "virsh failed: virsh: symbol lookup error: libvirt.so.0",
                 id="virsh-garbage-no-sections"),
]


@pytest.mark.parametrize("setup, args, code, fragment", CASES)
def test_bad_input(fake, setup, args, code, fragment):
    base(fake)
    setup(fake)
    before = home_snapshot(fake.home)
    domains_before = {n: sorted(f.domains) for n, f in fake.nodes.items()}
    out, err = fake.refused("--yes", *args, code=code)      # with --yes: a refusal, not a dry run
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.startswith("havirt: ") and err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert fragment in err, err
    assert out == ""
    assert home_snapshot(fake.home) == before
    assert {n: sorted(f.domains) for n, f in fake.nodes.items()} == domains_before
    assert all(is_scan(c) for _, c in fake.calls), fake.calls


def test_a_node_printing_garbage_blocks_a_start(fake):
    """A node whose answer cannot be parsed might run the domain: refuse (3), send nothing."""
    a, b = base(fake)
    b.scan_stdout = GOOD_SCAN_HEAD + "Domain: 'web1'\n  state.state=one\n@@end\n@@virsh-exit\n0\n"
    conf_before = home_snapshot(fake.home)["conf"]
    _, err = fake.refused("--yes", "domain", "start", "web1", "node1")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("havirt: refused: node node2 did not answer (unexpected output: cannot parse "
                          "domstats, line 2: 'state.state=one': state.state is not a number of 0 or more)")
    assert "web1" not in a.domains
    assert all(is_scan(c) for _, c in fake.calls)
    assert home_snapshot(fake.home)["conf"] == conf_before
    st = fake.state().nodes["node2"]
    assert st.reachable is False and "cannot parse domstats" in st.error
