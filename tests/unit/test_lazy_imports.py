"""Commands that only read the state never import paramiko (it costs ~0.15 s)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, io, contextlib
sys.path.insert(0, sys.argv[1])
from havirt.cli import run
with contextlib.redirect_stdout(io.StringIO()):
    rc = run(["--home", sys.argv[2]] + sys.argv[3:])
print(rc, "paramiko" in sys.modules)
"""


@pytest.mark.parametrize("args", [["node", "list"], ["domain", "list"],
                                  ["cluster", "status", "--no-scan"], ["log"],
                                  ["--help"], ["--version"], ["node", "scan", "--help"]])
def test_read_only_commands_do_not_import_paramiko(tmp_path, args):
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), str(tmp_path), *args],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False"]


def test_a_scan_does_import_it(tmp_path):
    """The probe can tell: a command that needs SSH does load paramiko."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "state.yaml").write_text(
        '{"format": 1, "updated": null, "nodes": {"n1": {"address": "127.0.0.1"}}, "domains": {}}\n')
    (tmp_path / "config.yaml").write_text("ssh: {connect_timeout: 0.5, port: 9, "
                                          "known_hosts_file: null, ssh_config: null}\n")
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), str(tmp_path), "node", "scan"],
                         capture_output=True, text=True).stdout.split()
    assert out == ["1", "True"]
