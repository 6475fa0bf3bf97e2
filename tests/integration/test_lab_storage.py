"""Shared block volumes, leases and power cuts (tests/lab/README.md: volumes, leases,
power-off/power-on).

A lab volume is one backing file with one loop device per node over it, at the
same path in every node (/var/lib/libvirt/images/volN): the nodes see the same
blocks, the kernel sees unrelated devices, as with iSCSI LUNs. Nothing but
libvirt's leases (virtlockd, lockspace on the shared folder) keeps a domain on
it from running on two nodes at once. Effects are checked with virsh on the
nodes and in /proc."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from labkit import refused, wait_until

VOL_DEV = "/var/lib/libvirt/images/{}"


def qemu_of(lab, node: str, domain: str) -> int:
    """The pid of the qemu that runs `domain` on `node` (inside its netns)."""
    for pid in lab.qemu_pids():
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        net = os.readlink(f"/proc/{pid}/ns/net")
        if f"guest={domain}".encode() in b",".join(cmd) and \
                net == os.readlink(f"/proc/{lab.holder(node)}/ns/net"):
            return pid
    raise AssertionError(f"no qemu of {domain} on {node}")


def loop_devices_open(pid: int) -> dict[str, str]:
    """Loop devices the process has open: {"loopN": backing file}."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and os.major(st.st_rdev) == 7:
            name = f"loop{os.minor(st.st_rdev)}"
            out[name] = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    return out


def lease_file(lab, domain: str) -> Path:
    # lockd names a disk's lease by the sha256 of its path
    return lab.lockspace / hashlib.sha256(VOL_DEV.format(domain).encode()).hexdigest()


def test_volume_is_one_storage_seen_by_every_node(lab):
    """What one node writes on its volume device, another reads on its own."""
    dev = VOL_DEV.format("vol4")
    marker = f"havirt-lab-{os.getpid()}".ljust(512, ".")
    p = lab.exec("node1", "sh", "-c", f"printf %s '{marker}' | dd of={dev} bs=512 count=1 "
                 "oflag=direct conv=notrunc status=none", check=True)
    p = lab.exec("node3", "dd", f"if={dev}", "bs=512", "count=1", "iflag=direct", "status=none",
                 check=True)
    assert p.stdout == marker
    devs = {n: lab.exec(n, "stat", "-c", "%t:%T", dev, check=True).stdout.strip() for n in lab.nodes}
    assert len(set(devs.values())) == len(lab.nodes), f"one loop device per node: {devs}"


def test_without_leases_a_volume_domain_runs_twice(lab, hv):
    """The danger leases remove: with them switched off (at runtime, libvirtd
    restarted), a hand-typed `virsh create` of the same block-volume domain runs
    on two nodes, both writing to the same blocks."""
    lab.leases("all", False)
    lab.create("node1", "vol1")
    lab.create("node2", "vol1")                      # nothing refuses it
    assert lab.where("vol1") == ["node1", "node2"]
    q1, q2 = qemu_of(lab, "node1", "vol1"), qemu_of(lab, "node2", "vol1")
    d1, d2 = loop_devices_open(q1), loop_devices_open(q2)
    assert len(d1) == len(d2) == 1 and d1.keys() != d2.keys(), (d1, d2)
    assert list(d1.values()) == list(d2.values()) and d1[next(iter(d1))].endswith("/vol1.img"), \
        f"two qemu on one volume through two loop devices: {d1} {d2}"

    # havirt sees it afterwards, and will not touch it
    r = hv.run("node", "scan")
    assert r.rc == 1, r
    assert any(ln.startswith("CRITICAL duplicate vol1:") for ln in r.out.splitlines()), r
    assert hv.dom("vol1")["conflict"] == ["node1", "node2"]

    lab.leases("all", True)                          # both copies keep running
    assert lab.where("vol1") == ["node1", "node2"]


def test_with_leases_the_second_start_fails(lab, hv):
    lab.leases("all", True)                          # the default; a lab up with LAB_LEASES=0 too
    lab.create("node1", "vol1")
    assert lease_file(lab, "vol1").exists()
    p = lab.virsh("node2", "create", lab.xml("vol1"))
    assert p.returncode != 0, p
    assert "resource busy" in p.stderr and "is locked" in p.stderr, p.stderr
    assert lease_file(lab, "vol1").name in p.stderr
    assert lab.where("vol1") == ["node1"]

    r = hv.run("-f", "json", "node", "scan")
    doc = json.loads(r.out)
    assert r.rc == 0 and doc["anomalies"] == [], r
    assert {n["name"]: n["domains"] for n in doc["nodes"]} == {"node1": 1, "node2": 0, "node3": 0}
    d = hv.dom("vol1")
    assert d["node"] == "node1" and d["conflict"] == [] and d["stale"] is False

    # the lease moves with a live migration: the source cannot start it again
    r = hv.run("--yes", "domain", "migrate", "vol1", "node3")
    assert r.rc == 0 and "vol1 moved from node1 to node3" in r.out, r
    assert lab.where("vol1") == ["node3"]
    p = lab.virsh("node1", "create", lab.xml("vol1"))
    assert p.returncode != 0 and "is locked" in p.stderr, p
    assert lab.where("vol1") == ["node3"]


def test_power_off_frees_the_lease_power_on_boots_empty(lab, hv):
    lab.leases("all", True)
    hv.yes("domain", "start", "vol2", "node2")
    hv.yes("domain", "start", "tiny1", "node2")
    assert lab.where("vol2") == ["node2"]
    qemus = len(lab.qemu_pids())

    lab.fault("node2", "power-off")
    st = lab.status()["node2"]
    assert st.get("power") == "off" and st["sshd"] == "no" and st["libvirtd"] == "no", st
    assert len(lab.qemu_pids()) == qemus - 2                 # its qemu died with it
    assert set(lab.node_pids("node2")) == {lab.holder("node2")}, "only the 'hardware' is left"

    r = hv.run("node", "scan")
    assert r.rc == 1 and r.seconds < 15, r
    lines = [ln for ln in r.out.splitlines() if ln.startswith("ERROR unreachable node2:")]
    assert len(lines) == 1 and "stale:" in lines[0] and "vol2" in lines[0], r
    assert hv.state()["nodes"]["node2"]["reachable"] is False
    assert hv.dom("vol2")["node"] == "node2" and hv.dom("vol2")["stale"] is True
    # havirt cannot know it is dead: tiny1 (no disk: nothing a lease could hold)
    # is not started elsewhere while node2 is silent
    refused(hv.run("--yes", "domain", "start", "tiny1", "node3"), "node2")
    # vol2's one disk is leased in the lockspace node3 shares with node2: a copy
    # on node2 would hold the lease and the start would fail at qemu, so the lease
    # is the guard, and the output says so; the lease died with node2's virtlockd,
    # so the start works
    r = hv.run("--yes", "domain", "start", "vol2", "node3")
    assert r.rc == 0 and "node node2 did not answer: leases guard every disk of vol2 against it" \
        in r.out, r
    assert lab.running("node3") == {"vol2"}

    lab.fault("node2", "power-on")
    st = lab.status()["node2"]
    assert "power" not in st and st["sshd"] == "yes" and st["libvirtd"] == "yes", st
    assert st["leases"] == "on" and st["running"] == "0", st
    assert lab.running("node2") == set()                       # transient domains are gone
    assert lab.exec("node2", "test", "-d", "/run/lock").returncode == 0
    r = hv.run("node", "scan")
    assert hv.state()["nodes"]["node2"]["reachable"] is True, r
    assert wait_until(lambda: hv.dom("vol2").get("node") == "node3", 1), hv.dom("vol2")
    assert hv.dom("tiny1")["node"] is None, hv.dom("tiny1")


def test_with_leases_a_forced_start_beside_a_cut_off_node_is_refused(lab, hv):
    """A node cut off (link down) keeps running its domains and its leases. havirt
    cannot prove the domain is not there, so only --force starts it elsewhere; on a
    block volume the lease then refuses it, where storage alone would not."""
    lab.leases("all", True)
    hv.yes("domain", "start", "vol3", "node2")
    lab.fault("node2", "link-down")
    r = hv.run("--yes", "domain", "start", "vol3", "node3", "--force")
    assert r.rc != 0 and "is locked" in r.err, r
    assert lab.where("vol3") == ["node2"]
