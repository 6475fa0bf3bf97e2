"""Making domains in the lab: a pool on the shared folder (LAB_POOL, with a
master image whose first bytes are LAB_MASTER_TEXT), domain new / clone /
delete, start --cdrom, image list, and the rule that a disk belongs to one
domain. Every effect is checked on the nodes: qemu-img, qemu-io and virsh
through `tests/lab/lab exec`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from labkit import refused, wait_until

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


def info(lab, node: str, path) -> dict:
    """qemu-img info of `path`, on the node."""
    p = lab.exec(node, "qemu-img", "info", "-U", "--output=json", str(path), check=True)
    return json.loads(p.stdout)


def first_bytes(lab, node: str, path, n: int) -> str:
    """The first `n` bytes the guest would read from the image (its backing chain included)."""
    p = lab.exec(node, "qemu-io", "-r", "-U", "-f", "qcow2", "-c", f"read -v 0 {n}", str(path),
                 check=True)
    data = b""
    for line in p.stdout.splitlines():      # 00000000:  68 61 76 ...  hav...
        if re.match(r"[0-9a-f]{8}:", line):
            data += bytes.fromhex("".join(line[10:].split()[:min(16, n - len(data))]))
    return data.decode(errors="replace")


def virsh_out(lab, node: str, *args) -> str:
    return lab.virsh(node, *args, check=True).stdout


def new(hv, lab, name: str, *disk_args, yes=True):
    args = ["domain", "new", name, "--memory", "64", "--vcpus", "1", "--network",
            f"bridge={lab.env['LAB_GUEST_BRIDGE']}", "--virt-type", lab.env["LAB_VIRT_TYPE"], *disk_args]
    return hv.yes(*args) if yes else hv.run(*args)


def test_new_dry_run_then_yes_then_start(lab, hv, pool):
    image = pool / "made1-1.qcow2"
    r = new(hv, lab, "made1", "--disk", "size=1", yes=False)
    assert r.rc == 0, r
    assert f"qemu-img create -q -f qcow2 {image} 1G" in r.out and "dry run" in r.out, r
    assert not image.exists() and not (hv.home / "conf" / "made1.xml").exists()
    assert not hv.audit()

    r = new(hv, lab, "made1", "--disk", "size=1")
    assert r.out.splitlines()[-1] == "saved conf/made1.xml", r
    facts = info(lab, "node3", image)
    assert (facts["format"], facts["virtual-size"]) == ("qcow2", GIB)
    conf = (hv.home / "conf" / "made1.xml").read_text()
    p = subprocess.run(["virt-xml-validate", str(hv.home / "conf" / "made1.xml"), "domain"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr

    hv.yes("domain", "start", "made1", "node2")
    assert lab.where("made1") == ["node2"]
    assert str(image) in virsh_out(lab, "node2", "domblklist", "made1")
    mac = conf.split("<mac address='")[1][:17]
    assert mac in virsh_out(lab, "node2", "domiflist", "made1")
    r = hv.ok("domain", "info", "made1")
    assert "console      pty serial" in r.out and "display      vnc 127.0.0.1:" in r.out, r

    # a made domain has spare PCIe root ports: a disk and a card plug in while it runs
    hv.yes("domain", "attach-disk", "made1", "--disk", "size=1")
    hv.yes("domain", "attach-nic", "made1", "--network", f"bridge={lab.env['LAB_GUEST_BRIDGE']}")
    assert str(pool / "made1-2.qcow2") in virsh_out(lab, "node2", "domblklist", "made1")
    assert virsh_out(lab, "node2", "domiflist", "made1").count(lab.env["LAB_GUEST_BRIDGE"]) == 2


def test_clones_full_and_linked_a_base_and_delete(lab, hv, pool):
    master = lab.env["LAB_MASTER"]
    new(hv, lab, "tmpl", "--disk", f"path={master}")
    text = lab.env["LAB_MASTER_TEXT"]

    # a full clone: an independent copy of the master, which starts
    hv.yes("domain", "clone", "tmpl", "base1")
    base_image = pool / "base1-1.qcow2"
    assert "backing-filename" not in info(lab, "node1", base_image)
    assert first_bytes(lab, "node1", base_image, len(text)) == text
    hv.yes("domain", "start", "base1", "node1")
    assert lab.where("base1") == ["node1"]

    # a linked clone of a running domain is refused; nothing is made
    r = hv.run("--yes", "domain", "clone", "base1", "clone1", "--linked")
    refused(r, "base1 must be shut off everywhere to be cloned", "base1 is already running on node1")
    assert sorted(f.name for f in pool.iterdir()) == ["base1-1.qcow2", "master.qcow2"]

    hv.yes("domain", "destroy", "base1")
    hv.yes("domain", "clone", "base1", "clone1", "--linked")
    clone_image = pool / "clone1-1.qcow2"
    facts = info(lab, "node2", clone_image)
    assert facts["full-backing-filename"] == str(base_image), facts
    assert first_bytes(lab, "node2", clone_image, len(text)) == text     # read through the chain

    hv.yes("domain", "start", "clone1", "node2")
    assert lab.where("clone1") == ["node2"]
    live_uuid = virsh_out(lab, "node2", "domuuid", "clone1").strip()
    base_conf = (hv.home / "conf" / "base1.xml").read_text()
    assert live_uuid and live_uuid not in base_conf
    live_macs = virsh_out(lab, "node2", "domiflist", "clone1")
    base_mac = base_conf.split('<mac address="')[1][:17]
    assert "52:54:00:" in live_macs and base_mac not in live_macs

    # the base may neither start nor lose its disks while the clone exists
    refused(hv.run("--yes", "domain", "start", "base1", "node3"), "base1 writes", "clone1")
    assert lab.where("base1") == []
    assert "base of     " in hv.ok("domain", "info", "base1").out
    refused(hv.run("--yes", "domain", "delete", "base1", "--disks"),
            f"{base_image} is the backing file of clone1's disk {clone_image}")
    assert base_image.exists()

    # the clone goes, with its overlay; the base stays, and may start again
    refused(hv.run("--yes", "domain", "delete", "clone1", "--disks"), "clone1 is already running on node2")
    hv.yes("domain", "destroy", "clone1")
    r = hv.yes("domain", "delete", "clone1", "--disks")
    assert f"removed {clone_image} on node1" in r.out, r
    assert not clone_image.exists() and base_image.exists()
    assert not (hv.home / "conf" / "clone1.xml").exists()
    assert list((hv.home / "conf" / ".history" / "clone1").iterdir())
    hv.yes("domain", "start", "base1", "node3")
    assert lab.where("base1") == ["node3"]


def test_define_of_another_domains_disk_is_refused(lab, hv, tmp_path):
    disk = str(lab.dir / "shared" / "disk1.qcow2")      # the lab's disk1 uses it
    xml = (hv.home / "conf" / "disk1.xml").read_text().replace(
        "<name>disk1</name>", "<name>thief</name>").split("<uuid>")
    thief = tmp_path / "thief.xml"
    thief.write_text(xml[0] + xml[1].split("</uuid>", 1)[1])
    r = hv.run("domain", "define", "thief", "--file", thief)
    refused(r, f"disk {disk} of thief is also a disk of disk1")
    assert r.err.count("\n") == 1 and not (hv.home / "conf" / "thief.xml").exists()


def test_start_with_a_cdrom(lab, hv):
    iso = lab.env["LAB_ISO"]
    before = (hv.home / "conf" / "guest1.xml").read_bytes()
    r = hv.run("domain", "start", "guest1", "node1", "--cdrom", iso)
    assert f"# with the CD-ROM {iso} attached, first to boot (conf/ unchanged)" in r.out, r
    hv.yes("domain", "start", "guest1", "node1", "--cdrom", iso)
    live = virsh_out(lab, "node1", "dumpxml", "guest1")
    cdrom = live.split("device='cdrom'")[1].split("</disk>")[0]
    assert f"<source file='{iso}'" in cdrom and "<boot order='1'/>" in cdrom, live
    assert (hv.home / "conf" / "guest1.xml").read_bytes() == before
    assert wait_until(lambda: "havirt-guest guest1 ready" in lab.console_text("node1", "guest1"), 90)
    doc = json.loads(hv.ok("-f", "json", "domain", "info", "guest1").out)
    assert any("disks" in d for d in doc["drift"]), doc


def test_image_list_matches_qemu_img(lab, hv, pool):
    new(hv, lab, "tmpl", "--disk", f"path={lab.env['LAB_MASTER']}")
    hv.yes("domain", "clone", "tmpl", "img1", "--linked")
    new(hv, lab, "img2", "--disk", "size=0.5")
    (pool / "stray.img").write_bytes(b"\0" * 65536)
    rows = {r["name"]: r for r in json.loads(hv.ok("-f", "json", "image", "list").out)}
    assert sorted(rows) == ["img1-1.qcow2", "img2-1.qcow2", "master.qcow2", "stray.img"]
    for name, row in rows.items():
        facts = info(lab, "node3", pool / name)
        assert (row["format"], row["virtual_size"], row["backing"]) == (
            facts["format"], facts["virtual-size"], facts.get("full-backing-filename")), (row, facts)
    assert rows["master.qcow2"]["domains"] == ["tmpl"] and rows["master.qcow2"]["backing_of"] == ["img1"]
    assert rows["stray.img"]["orphan"] and not rows["img2-1.qcow2"]["orphan"]
