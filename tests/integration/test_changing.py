"""Changing a real guest in place (tests/lab/README.md: guests with a virtio
balloon, a second vCPU to plug, the virtio modules loaded): domain set,
attach-disk, detach-disk, attach-nic, detach-nic, resize-disk. Every effect
is checked on the node (virsh dominfo, vcpucount, domblklist, domiflist,
domblkinfo, qemu-img) and, for disks, inside the guest through its serial
console; conf/ is read back, and `domain info` must show no drift."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from labkit import refused, wait_until

READY = "havirt-guest {} ready"
GIB = 1024 ** 3


@pytest.fixture
def pool(lab):
    """The lab's pool, holding only its master image before and after the test."""
    path = Path(lab.env["LAB_POOL"])

    def clean():
        for f in path.iterdir():
            if f.name != "master.qcow2":
                f.unlink()
    clean()
    yield path
    clean()


def started(lab, hv, name: str, node: str) -> None:
    hv.yes("domain", "start", name, node)
    assert wait_until(lambda: READY.format(name) in lab.console_text(node, name), 120, 0.2), \
        f"{name} never printed its ready line:\n{lab.console_text(node, name)[-2000:]}"


def dominfo(lab, node: str, name: str) -> dict[str, str]:
    out = lab.virsh(node, "dominfo", name, check=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def conf(hv, name: str) -> ET.Element:
    return ET.fromstring((hv.home / "conf" / f"{name}.xml").read_text())


def drift(hv, name: str) -> list[str]:
    """What `domain info` says differs between the running definition and conf/."""
    r = hv.ok("-f", "json", "domain", "info", name)
    return json.loads(r.out)["drift"]


def in_guest(lab, node: str, name: str, command: str, expect: str) -> str:
    """Run `command` on the guest's console; return the console text after the echo of it."""
    out = lab.console(node, name, command, expect)
    return out.split(command, 1)[-1]


def test_memory_and_vcpus_change_live_and_growth_is_checked(lab, hv):
    started(lab, hv, "guest1", "node1")
    r = hv.ok("domain", "set", "guest1", "--memory", "96")               # the dry run first
    assert "setmem guest1 96M --live" in r.out and "dry run" in r.out, r
    assert dominfo(lab, "node1", "guest1")["Used memory"] == "131072 KiB"

    r = hv.yes("domain", "set", "guest1", "--memory", "96")
    assert "guest1 on node1 runs with memory 96 MiB" in r.out, r
    assert dominfo(lab, "node1", "guest1")["Used memory"] == "98304 KiB"
    assert conf(hv, "guest1").findtext("currentMemory") == "96"
    assert drift(hv, "guest1") == []
    assert "virsh -c qemu:///system setmem guest1 96M --live" in [a["remote"] for a in hv.audit()]

    # growth beyond what the node can give: refused with the numbers, nothing changes
    hv.ok("node", "set", "node1", "--memory-cap", "100")
    r = hv.run("--yes", "domain", "set", "guest1", "--memory", "128")
    refused(r, "guest1 cannot grow on node1", "node1 can give domains 100 MiB (cap 100 MiB)",
            "guest1 at 128 MiB needs 32 MiB more: 28 MiB short")
    assert dominfo(lab, "node1", "guest1")["Used memory"] == "98304 KiB"
    hv.ok("node", "set", "node1", "--memory-cap", "none")

    hv.yes("domain", "set", "guest1", "--memory", "128", "--vcpus", "2")
    assert dominfo(lab, "node1", "guest1")["Used memory"] == "131072 KiB"
    assert lab.virsh("node1", "vcpucount", "guest1", "--live", "--active", check=True).stdout.strip() == "2"
    vcpu = conf(hv, "guest1").find("vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("2", None)
    assert conf(hv, "guest1").findtext("currentMemory") == "128"
    assert drift(hv, "guest1") == []

    # above the maximum it started with: conf/ only, said, and shown as drift
    r = hv.yes("domain", "set", "guest1", "--memory", "160")
    assert "memory 160 MiB: at the next start of guest1" in r.out, r
    assert dominfo(lab, "node1", "guest1")["Used memory"] == "131072 KiB"
    assert conf(hv, "guest1").findtext("memory") == "160"
    assert drift(hv, "guest1") == ["memory 128 MiB running, 160 MiB in conf/"]
    assert len(list((hv.home / "conf" / ".history" / "guest1").iterdir())) == 3


def test_network_card_attached_and_detached_live(lab, hv):
    started(lab, hv, "guest2", "node2")
    bridge = lab.env["LAB_GUEST_BRIDGE"]
    r = hv.yes("domain", "attach-nic", "guest2", "--network", f"bridge={bridge}")
    mac = re.search(r"network card (52:54:00(?::[0-9a-f]{2}){3})", r.out).group(1)
    iflist = lab.virsh("node2", "domiflist", "guest2", check=True).stdout
    assert mac in iflist and bridge in iflist, iflist
    macs = [m.get("address") for m in conf(hv, "guest2").iter("mac")]
    assert macs == [mac]
    assert drift(hv, "guest2") == []
    out = in_guest(lab, "node2", "guest2", "echo nics-$(ls /sys/class/net | grep -c eth)", "nics-1")
    assert "nics-1" in out, out

    hv.yes("domain", "detach-nic", "guest2", mac)
    assert mac not in lab.virsh("node2", "domiflist", "guest2", check=True).stdout
    assert list(conf(hv, "guest2").iter("interface")) == []
    assert drift(hv, "guest2") == []


def test_disk_attached_grown_detached_live_then_grown_off(lab, hv, pool):
    started(lab, hv, "guest1", "node3")
    r = hv.yes("domain", "attach-disk", "guest1", "--disk", "size=1")
    image = pool / "guest1-1.qcow2"
    assert f"guest1 on node3 runs with disk vda ({image})" in r.out, r
    assert str(image) in lab.virsh("node3", "domblklist", "guest1", check=True).stdout
    assert [s.get("file") for s in conf(hv, "guest1").iter("source") if s.get("file")] == [str(image)]
    assert drift(hv, "guest1") == []
    out = in_guest(lab, "node3", "guest1", "echo size-$(cat /sys/block/vda/size)", "size-2097152")
    assert "size-2097152" in out, out                       # 1 GiB in sectors of 512 bytes

    # grown while it runs: the node and the guest see the new size
    r = hv.run("--yes", "domain", "resize-disk", "guest1", "vda", "1")
    refused(r, "vda of guest1 has 1 GiB; 1 GiB would not grow it")
    hv.yes("domain", "resize-disk", "guest1", "vda", "2")
    blk = lab.virsh("node3", "domblkinfo", "guest1", "vda", check=True).stdout
    assert re.search(r"Capacity:\s+2147483648\b", blk), blk
    out = in_guest(lab, "node3", "guest1", "echo size-$(cat /sys/block/vda/size)", "size-4194304")
    assert "size-4194304" in out, out

    r = hv.yes("domain", "detach-disk", "guest1", "vda")
    assert str(image) not in lab.virsh("node3", "domblklist", "guest1", check=True).stdout
    assert [s.get("file") for s in conf(hv, "guest1").iter("source") if s.get("file")] == []
    out = in_guest(lab, "node3", "guest1", "echo parts-$(grep -c vda /proc/partitions)", "parts-0")
    assert "parts-0" in out, out
    assert drift(hv, "guest1") == []
    assert image.exists()                                   # detaching never removes the image

    # attached again, then grown while off on every node: qemu-img on a node that sees it
    hv.yes("domain", "attach-disk", "guest1", "--disk", f"path={image}")
    hv.yes("domain", "shutdown", "guest1", "--wait", "30")
    assert lab.where("guest1") == []
    r = hv.yes("domain", "resize-disk", "guest1", "vda", "3")
    assert r.out.splitlines()[-1] == f"{image} has 3 GiB now", r
    info = json.loads(lab.exec("node1", "qemu-img", "info", "--output=json", str(image), check=True).stdout)
    assert info["virtual-size"] == 3 * GIB
