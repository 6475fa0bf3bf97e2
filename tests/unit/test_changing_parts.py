"""The parts of changing a domain in place, each on its own: the command text
(remote/live.py, written out by hand), the wait scripts run by sh against a
stand-in virsh, the edits of conf/ (plan/editing.py), the fit of a growth
(rules/fit.py), and the device XML on stdin as the dry run and the audit log
show it."""

import shlex
import subprocess
from types import SimpleNamespace

import pytest
from facts import cfg, dom

from havirt.parse.domxml import interface_fields, maxima, parse_domain_xml
from havirt.plan.definition import NewDisk, disk_xml, interface_xml
from havirt.plan.editing import (
    ATTACH_DISK,
    ATTACH_NIC,
    DETACH_DISK,
    DETACH_NIC,
    MEMORY,
    VCPUS,
    Edit,
    apply_edits,
    changing,
    libvirt_style,
    shown,
)
from havirt.remote import live
from havirt.remote.executor import Executor
from havirt.remote.steps import Plan, Step
from havirt.rules.fit import Load, growth_problems

V = "virsh -c qemu:///system"


@pytest.mark.parametrize("command, text", [
    (live.set_memory(cfg(), "web1", 768), f"{V} setmem web1 768M --live"),
    (live.set_vcpus(cfg(), "web1", 2), f"{V} setvcpus web1 2 --live"),
    (live.attach_device(cfg(), "web1"), f"{V} attach-device web1 /dev/stdin --live"),
    (live.detach_disk(cfg(), "web1", "vdb"), f"{V} detach-disk web1 vdb --live"),
    (live.detach_interface(cfg(), "web1", "bridge", "52:54:00:12:34:56"),
     f"{V} detach-interface web1 bridge --mac 52:54:00:12:34:56 --live"),
    (live.block_resize(cfg(), "web1", "vdb", 20480), f"{V} blockresize web1 vdb 20G"),
    (live.block_resize(cfg(), "web1", "vdb", 2560), f"{V} blockresize web1 vdb 2560M"),
    (live.resize_image("/srv/a b.qcow2", "qcow2", 20480), "qemu-img resize -q -f qcow2 '/srv/a b.qcow2' 20G"),
    (live.set_memory(cfg(), "web 1", 64), f"{V} setmem 'web 1' 64M --live"),
])
def test_argv_commands(command, text):
    assert command.script is None and command.text() == text
    assert shlex.split(text) == list(command.argv)


def test_targets_and_macs_never_reach_a_script_unchecked():
    for bad in ("vdb;reboot", "vd", "VDB", "vdb "):
        with pytest.raises(ValueError):
            live.detach_disk(cfg(), "web1", bad)
    with pytest.raises(ValueError):
        live.wait_detached(cfg(), "web1", "interface", "52:54:00:12:34:5g", 20)


# -- the wait scripts, run by sh with a stand-in virsh ------------------------------------------

def run_script(tmp_path, build, answers, *args):
    """Run the script `build(cfg, *args)` makes, with a virsh that prints the
    lines of answers[k] (and exits as told) on its k-th call, the last forever."""
    for k, (code, text) in enumerate(answers):
        (tmp_path / f"answer{k}").write_text(text)
        (tmp_path / f"code{k}").write_text(str(code))
    virsh = tmp_path / "virsh"
    virsh.write_text(f"#!/bin/sh\nd={tmp_path}\nk=$(cat $d/count 2>/dev/null || echo 0)\n"
                     f"echo $((k+1)) > $d/count\n[ $k -lt {len(answers) - 1} ] || k={len(answers) - 1}\n"
                     "echo \"$@\" >> $d/args\ncat $d/answer$k\nexit $(cat $d/code$k)\n")
    virsh.chmod(0o755)
    script = build(cfg(virsh_command=str(virsh)), *args).text()
    p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    calls = (tmp_path / "args").read_text().splitlines()
    return p.returncode, p.stderr, calls


BLKLIST = " Target   Source\n------------------------------------\n vda      /srv/pool/web1-1.qcow2\n"


def test_wait_detached_polls_until_the_disk_is_gone(tmp_path):
    with_vdb = BLKLIST + " vdb      /srv/pool/vdb-in-a-name.qcow2\n"
    rc, err, calls = run_script(tmp_path, live.wait_detached, [(0, with_vdb), (0, BLKLIST.replace("vda", "vdbx"))],
                                "web1", "disk", "vdb", 20)
    assert (rc, err) == (live.POLL_DONE, "") and calls == ["-c qemu:///system domblklist web1"] * 2


def test_wait_detached_says_when_the_guest_keeps_it(tmp_path):
    rc, err, calls = run_script(tmp_path, live.wait_detached,
                                [(0, BLKLIST + " vdb      /x.qcow2\n")], "web1", "disk", "vdb", 0)
    assert rc == live.POLL_LATE and len(calls) == 1
    assert err == ("disk vdb is still attached to web1 after 0 s: libvirt asked the guest, which has not "
                   "let go of it\n")


def test_wait_detached_cannot_tell_when_virsh_fails(tmp_path):
    rc, err, _ = run_script(tmp_path, live.wait_detached,
                            [(1, "error: failed to get domain 'web1'")], "web1", "interface",
                            "52:54:00:12:34:56", 20)
    assert rc == live.POLL_UNKNOWN and err == "error: failed to get domain 'web1'\n"


def test_wait_detached_of_a_card_matches_its_mac_in_any_case(tmp_path):
    iflist = (" Interface   Type     Source   Model    MAC\n---\n"
              " vnet0       bridge   br0      virtio   52:54:00:12:34:56\n")
    rc, _, calls = run_script(tmp_path, live.wait_detached, [(0, iflist), (0, iflist.replace("56\n", "57\n"))],
                              "web1", "interface", "52:54:00:12:34:56", 20)
    assert rc == live.POLL_DONE and calls == ["-c qemu:///system domiflist web1"] * 2


def test_wait_balloon_needs_the_exact_size(tmp_path):
    stats = "Domain: 'web1'\n  balloon.current={}\n  balloon.maximum=1048576\n"
    rc, err, calls = run_script(tmp_path, live.wait_balloon, [(0, stats.format(7864320)),
                                                              (0, stats.format(786432))], "web1", 768, 20)
    assert (rc, err) == (live.POLL_DONE, "") and calls == ["-c qemu:///system domstats --balloon web1"] * 2
    (tmp_path / "count").unlink()
    rc, err, _ = run_script(tmp_path, live.wait_balloon, [(0, stats.format(7864320))], "web1", 768, 0)
    assert rc == live.POLL_LATE and err == ("web1 has not come to 768 MiB within 0 s: its guest does not "
                                            "follow the balloon, or not yet\n")


# -- the edits of conf/ ---------------------------------------------------------------------------

GUEST = """<domain type='qemu'>
  <name>guest1</name>
  <!-- kept as it is: "quotes" <disk type="x"/> -->
  <memory unit='KiB'>131072</memory>
  <vcpu current='1'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <cmdline>console=ttyS0 havirt.name="x"</cmdline>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"""


def test_no_edit_writes_the_file_back_as_it_was():
    assert apply_edits(GUEST.encode(), "g", []) == GUEST
    assert libvirt_style('<a x="1" y="it\'s"><b z="2" /></a>') == "<a x='1' y=\"it's\"><b z='2'/></a>"


def test_edits_change_their_own_lines_only():
    disk = disk_xml(NewDisk("/srv/a.qcow2"), "vda")
    nic = interface_xml("bridge", "br0", "52:54:00:00:00:01")
    edits = [Edit(MEMORY, 96, True, ""), Edit(VCPUS, 2, True, ""), Edit(ATTACH_NIC, "52:54:00:00:00:01",
             True, "", nic), Edit(ATTACH_DISK, "vda", True, "", disk)]
    after = apply_edits(GUEST.encode(), "g", edits)
    assert after == GUEST.replace(
        "  <vcpu current='1'>2</vcpu>",
        "  <currentMemory unit='MiB'>96</currentMemory>\n  <vcpu>2</vcpu>").replace(
        "    <serial", "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\n"
        "      <source file='/srv/a.qcow2'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n"
        "    <interface type='bridge'>\n      <mac address='52:54:00:00:00:01'/>\n"
        "      <source bridge='br0'/>\n      <model type='virtio'/>\n    </interface>\n    <serial")
    spec = parse_domain_xml(after)
    assert (spec.memory_mib, spec.vcpus, spec.disks) == (96, 2, ["/srv/a.qcow2"])
    back = apply_edits(after.encode(), "g", [Edit(DETACH_DISK, "vda", True, ""),
                                             Edit(DETACH_NIC, "52:54:00:00:00:01", True, ""),
                                             Edit(VCPUS, 1, True, "")])
    assert back == GUEST.replace("  <vcpu current='1'>2</vcpu>",
                                 "  <currentMemory unit='MiB'>96</currentMemory>\n  <vcpu current='1'>2</vcpu>")


def test_above_the_maximum_raises_it():
    after = apply_edits(GUEST.encode(), "g", [Edit(MEMORY, 512, False, ""), Edit(VCPUS, 4, False, "")])
    assert maxima(after) == (512, 4)
    assert "<memory unit='MiB'>512</memory>" in after and "<vcpu>4</vcpu>" in after


def test_what_changes_conf_and_what_the_running_definition_shows():
    edits = [Edit(MEMORY, 128, True, ""), Edit(VCPUS, 1, True, ""), Edit(DETACH_DISK, "vdz", True, "")]
    assert changing(GUEST.encode(), "g", edits) == [edits[0]]    # currentMemory 128 is new; the rest is so
    live_xml = apply_edits(GUEST.encode(), "g", [Edit(ATTACH_DISK, "vda", True, "",
                                                      disk_xml(NewDisk("/srv/a.qcow2"), "vda"))])
    spec = parse_domain_xml(live_xml)
    assert shown(Edit(ATTACH_DISK, "vda", True, ""), spec) and not shown(Edit(DETACH_DISK, "vda", True, ""), spec)
    assert shown(Edit(MEMORY, 128, True, ""), spec) and not shown(Edit(VCPUS, 2, True, ""), spec)
    assert shown(Edit(DETACH_NIC, "52:54:00:00:00:01", True, ""), spec)


def test_a_libvirt_network_reads_as_its_name_in_a_running_definition():
    import xml.etree.ElementTree as ET
    iface = ET.fromstring("<interface type='network'><mac address='52:54:00:AA:00:01'/>"
                          "<source network='default' portid='x' bridge='virbr0'/></interface>")
    assert interface_fields(iface) == ("network", "default", "52:54:00:aa:00:01")
    bridge = ET.fromstring("<interface type='bridge'><source bridge='br0'/></interface>")
    assert interface_fields(bridge) == ("bridge", "br0", "")


# -- the fit of a growth ---------------------------------------------------------------------------

def load(**kw):
    base = dict(name="node1", reachable=True, usable_mib=4096, basis="cap 4096 MiB", cpus=4, max_ratio=1.0,
                memory_mib=3584, vcpus=3, count=2)
    return Load(**{**base, **kw})


def test_growth_adds_only_what_the_domain_does_not_hold_yet():
    web1 = dom("web1", mem=512, vcpus=1)
    assert growth_problems(load(), web1, 1024, 2) == []                       # 4096 and 4 exactly
    assert growth_problems(load(), web1, 1025) == [
        "memory: node1 can give domains 4096 MiB (cap 4096 MiB), 3584 MiB are allocated to 2 running "
        "domain(s) (web1 holds 512 MiB); web1 at 1025 MiB needs 513 MiB more: 1 MiB short"]
    assert growth_problems(load(), web1, None, 3) == [
        "vCPUs: node1 has 4 CPUs and 3 vCPUs allocated (web1 holds 1); web1 at 3 would make 1.25 per "
        "CPU, over the limit of 1"]
    assert growth_problems(load(memory_mib=9999), web1, 256, 1) == []          # shrinking always fits
    assert growth_problems(load(usable_mib=None), web1, 600)[0].startswith(
        "memory: how much memory node1 has is not known")


# -- the device XML on stdin, as shown and as logged ------------------------------------------------

def test_stdin_without_a_file_is_shown_as_a_here_document(tmp_path):
    from havirt.remote.executor import AuditLog
    runner = SimpleNamespace(describe=lambda node: f"ssh root@{node}")
    step = Step(node="node1", command=live.attach_device(cfg(), "web1"), why="attach",
                stdin_data=b"<disk type='file'>\n  <target dev='vdb'/>\n</disk>\n")
    ex = Executor(runner, cfg(), SimpleNamespace(root=tmp_path), AuditLog(tmp_path / "audit.log"))
    assert ex.show(Plan([step])) == [f"ssh root@node1 '{V} attach-device web1 /dev/stdin --live' <<'EOF'\n"
                                     "<disk type='file'>\n  <target dev='vdb'/>\n</disk>\nEOF"]
