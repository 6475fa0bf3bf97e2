"""The scan script (remote.scan_script) run here by sh and by bash, with a
stand-in virsh that answers as libvirt's does, and its output read by
parse.virsh.parse_scan: one virsh process asks both drivers, its errors
merged into its output where they happen (as vshError flushes its output
first), so each failure is told apart.

The stand-in prints what tests/fixtures/virsh/scan-node1.out shows the real
virsh printing (captured in the lab), errors on stderr; SCENARIO says what
fails. The lab runs the script against the real virsh (every lab test scans).
"""

import shutil
import subprocess

import pytest
from facts import cfg

from havirt.parse.virsh import parse_scan
from havirt.remote import commands as remote

SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]

STAND_IN = r"""#!/bin/sh
# argv: -c URI COMMANDS, or -c URI dominfo --domain NAME
if [ "$3" = dominfo ]; then
  case "$SCENARIO:$5" in
    gone:*) echo "error: failed to get domain '$5'" >&2; exit 1;;
  esac
  printf 'Id:             7\nName:           %s\nState:          running\nCPU(s):         2\n' "$5"
  printf 'Max memory:     65536 KiB\nPersistent:     yes\nAutostart:      disable\n'
  exit 0
fi
if [ "$SCENARIO" = down ]; then
  echo 'error: failed to connect to the hypervisor' >&2
  echo "error: Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused" >&2
  exit 1
fi
echo @@version; echo 'Running against daemon: 9.0.0'
echo @@nodeinfo; printf 'CPU(s):              4\nMemory size:         8388608 KiB\n'
echo @@persistent; echo web1; echo
echo @@autostart; echo
echo @@domstats
printf "Domain: 'web1'\n  state.state=1\n  state.reason=1\n  balloon.current=1048576\n"
[ "$SCENARIO" = midway ] && echo 'error: Disconnected from qemu:///system due to end of file' >&2
printf '  balloon.maximum=1048576\n  vcpu.current=1\n  vcpu.maximum=1\n\n'
echo @@end
echo @@lxc-connect
case $SCENARIO in
  nolxc|nolxc-lists)
    echo 'error: failed to connect to the hypervisor' >&2
    echo 'error: no connection driver available for lxc:///system' >&2;;
  *) echo;;
esac
echo @@lxc-list
case $SCENARIO in
  nolxc-lists) echo web1; echo;;          # a failed connect keeps the VMs' connection
  lxcbroken) echo 'error: internal error: cgroup controllers unavailable' >&2;;
  nolxc|down) ;;
  *) echo 'ct 1'; echo -x; echo;;
esac
echo @@lxc-end
"""


def scan(tmp_path, shell, scenario):
    virsh = tmp_path / "virsh"
    virsh.write_text(STAND_IN)
    virsh.chmod(0o755)
    script = remote.scan_script(cfg(virsh_command=str(virsh)), ["/nonexistent/x.img"]).text()
    p = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "SCENARIO": scenario})
    return p, parse_scan("node1", p.stdout, p.stderr, p.returncode)


@pytest.mark.parametrize("shell", SHELLS)
def test_both_drivers_from_one_virsh(tmp_path, shell):
    p, f = scan(tmp_path, shell, "ok")
    assert p.returncode == 0 and p.stderr == ""
    assert f.reachable and f.lxc is True
    assert sorted(f.domains) == ["-x", "ct 1", "web1"]
    assert f.domains["web1"].persistent and f.domains["web1"].driver != "lxc"
    assert (f.domains["ct 1"].driver, f.domains["ct 1"].vcpus, f.domains["ct 1"].memory_mib) == ("lxc", 2, 64)
    assert f.paths == {"/nonexistent/x.img": False}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("scenario", ["nolxc", "nolxc-lists"])
def test_a_node_without_the_lxc_driver_offers_no_containers(tmp_path, shell, scenario):
    """The connect failed: its words say why, and the list that followed (on
    the VMs' connection, which a failed connect keeps) is never read as
    containers."""
    p, f = scan(tmp_path, shell, scenario)
    assert p.returncode == 0
    assert f.reachable and f.lxc is False
    assert "no connection driver available" in f.lxc_error
    assert sorted(f.domains) == ["web1"] and f.domains["web1"].driver != "lxc"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failing_lxc_driver_makes_the_node_unknown(tmp_path, shell):
    p, f = scan(tmp_path, shell, "lxcbroken")
    assert p.returncode == 0          # the VMs' part answered; parse decides
    assert not f.reachable
    assert f.error == "libvirt's LXC driver failed: error: internal error: cgroup controllers unavailable"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("scenario, says", [
    ("down", "virsh failed: error: Failed to connect socket to '/run/libvirt/libvirt-sock': "
             "Connection refused"),
    ("midway", "virsh failed: error: Disconnected from qemu:///system due to end of file"),
])
def test_a_failed_vm_driver_fails_the_scan(tmp_path, shell, scenario, says):
    """An error in the VMs' part, at the start or in the middle of a list:
    the script exits SCAN_FAILED and the node's domains are unknown."""
    p, f = scan(tmp_path, shell, scenario)
    assert p.returncode == remote.SCAN_FAILED
    assert not f.reachable and f.error == says and f.domains == {}


@pytest.mark.parametrize("shell", SHELLS)
def test_a_container_gone_between_list_and_dominfo_is_skipped(tmp_path, shell):
    p, f = scan(tmp_path, shell, "gone")
    assert p.returncode == 0 and f.reachable
    assert sorted(f.domains) == ["web1"]
