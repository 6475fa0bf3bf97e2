"""Commands that only read the state never import paramiko (it costs ~0.15 s),
nor prometheus_client (only a scan that writes metrics needs it); completing
a word on the command line (TAB) imports neither. A home of files never
imports an etcd client (etcd3gw, and requests under it: ~0.1 s)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, io, contextlib
sys.path.insert(0, sys.argv[1])
from havirt.cli import run
out = io.TextIOWrapper(io.BytesIO())    # click may write bytes (completion)
with contextlib.redirect_stdout(out):
    rc = run(["--home", sys.argv[2]] + sys.argv[3:])
out.flush()
print(rc, "paramiko" in sys.modules, "prometheus_client" in sys.modules,
      "etcd3gw" in sys.modules or "requests" in sys.modules, repr(out.buffer.getvalue().decode()))
"""


def probe(home, *args, **env):
    p = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), str(home), *args],
                       capture_output=True, text=True, env={**os.environ, **env})
    rc, paramiko, prometheus, etcd, printed = p.stdout.split(" ", 4)
    assert etcd == "False", "a home of files imported an etcd client"
    return int(rc), paramiko == "True", prometheus == "True", printed


@pytest.mark.parametrize("args", [["node", "list"], ["domain", "list"],
                                  ["cluster", "status", "--no-scan"], ["log"],
                                  ["--help"], ["--version"], ["node", "scan", "--help"],
                                  ["node", "list", "-f", "json"]])
def test_read_only_commands_do_not_import_paramiko(tmp_path, args):
    """On a home with a node and a running domain, so that the rows, the
    score and N+1 are all computed."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "web1.xml").write_text(
        "<domain type='kvm'><name>web1</name><memory unit='MiB'>512</memory><vcpu>1</vcpu></domain>")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "state.yaml").write_text(
        '{"format": 1, "updated": null, "nodes": {"n1": {"address": "127.0.0.1", "cpus": 4, '
        '"memory_mib": 8192, "reachable": true}, "n2": {"address": "127.0.0.2", "cpus": 4, '
        '"memory_mib": 8192, "reachable": true}}, "domains": {"web1": {"node": "n1", '
        '"state": "running", "memory_mib": 512, "vcpus": 1}}}\n')
    rc, paramiko, prometheus, printed = probe(tmp_path, *args)
    assert (rc, paramiko, prometheus) == (0, False, False), printed
    if args[0] in ("node", "domain", "cluster") and "--help" not in args:
        assert "n1" in printed or "web1" in printed, printed
    if args[0] == "cluster":
        assert "N+1: the cluster survives the loss of any one node" in printed, printed


@pytest.mark.parametrize("words,cword,offered", [("havirt domain start we", 3, "plain,web1\n"),
                                                 ("havirt node scan ", 3, "plain,n1\n"),
                                                 ("havirt node list --f", 3, "plain,--format\n")])
def test_completion_imports_neither(tmp_path, words, cword, offered):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "web1.xml").write_text("<domain><name>web1</name></domain>")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "state.yaml").write_text(
        '{"format": 1, "updated": null, "nodes": {"n1": {"address": "127.0.0.1"}}, "domains": {}}\n')
    rc, paramiko, prometheus, printed = probe(tmp_path, _HAVIRT_COMPLETE="bash_complete",
                                              COMP_WORDS=words, COMP_CWORD=str(cword),
                                              HAVIRT_HOME=str(tmp_path))
    assert (rc, paramiko, prometheus) == (0, False, False)
    assert printed == repr(offered) + "\n"


def test_a_home_on_etcd_does_import_its_client(tmp_path):
    """The probe can tell: a home whose store is etcd loads the client (and,
    with etcd away, says so in one line, exit 6)."""
    (tmp_path / "config.yaml").write_text("store: {backend: etcd, endpoints: [http://127.0.0.1:9]}\n")
    p = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), str(tmp_path), "node", "list"],
                       capture_output=True, text=True)
    rc, _, _, etcd, _ = p.stdout.split(" ", 4)
    assert (rc, etcd) == ("6", "True"), (p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "etcd did not answer" in p.stderr


def test_a_scan_does_import_it(tmp_path):
    """The probe can tell: a command that needs SSH does load paramiko."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "state.yaml").write_text(
        '{"format": 1, "updated": null, "nodes": {"n1": {"address": "127.0.0.1"}}, "domains": {}}\n')
    (tmp_path / "config.yaml").write_text("ssh: {connect_timeout: 0.5, port: 9, "
                                          "known_hosts_file: null, ssh_config: null}\n")
    assert probe(tmp_path, "node", "scan")[:3] == (1, True, False)


def test_planning_a_definition_does_not_import_urllib():
    """Quoting an XML attribute needs no urllib, http and email (~20 ms of
    every command that plans a definition: xml.sax.saxutils imports them)."""
    code = ("import sys; import havirt.ops.domains, havirt.plan.definition, havirt.plan.snapshots; "
            "print('urllib.request' in sys.modules, 'xml.sax.saxutils' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.split() == ["False", "False"], (p.stdout, p.stderr)
