"""Snapshots and backups in the lab, on a real guest with a qcow2 disk: guest1's
definition (TCG, direct kernel boot, a shell on the serial console) under
another name, with a disk in the lab's pool. The guest writes its disk from
its console; qemu-img and qemu-io on the nodes read the images; virsh on the
nodes says what runs where."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from labkit import refused, wait_until
from test_making import first_bytes, info, pool  # noqa: F401  (pool: a fixture)

MIB = 1024 ** 2


def make_guest(lab, hv, pool, tmp_path, name: str) -> Path:  # noqa: F811
    """conf/NAME.xml: guest1's definition with its own name, console log and a
    new 64 MiB qcow2 disk NAME-1.qcow2 in the pool (vda)."""
    image = pool / f"{name}-1.qcow2"
    lab.exec("node1", "qemu-img", "create", "-q", "-f", "qcow2", image, "64M", check=True)
    xml = (hv.home / "conf" / "guest1.xml").read_text()
    xml = re.sub(r"\s*<uuid>[^<]*</uuid>", "", xml).replace("<name>guest1</name>", f"<name>{name}</name>")
    xml = xml.replace("guest1-serial", f"{name}-serial").replace("havirt.name=guest1", f"havirt.name={name}")
    xml = xml.replace("<devices>", "<devices>\n    <disk type='file' device='disk'>"
                      "<driver name='qemu' type='qcow2'/>"
                      f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk>", 1)
    (tmp_path / f"{name}.xml").write_text(xml)
    hv.ok("domain", "define", name, "--file", tmp_path / f"{name}.xml")
    return image


def ready(lab, node: str, name: str, log: str | None = None, times: int = 1) -> None:
    """Wait for the guest's ready line on its serial console (its `times`-th boot there)."""
    path = lab.dir / node / "log" / "qemu" / f"{log or name}-serial.log"

    def text():
        return path.read_text(errors="replace") if path.exists() else ""
    assert wait_until(lambda: text().count(f"havirt-guest {log or name} ready") >= times, 90, 0.2), \
        f"{name} on {node} never got ready:\n{text()[-1500:]}"


def write_disk(lab, node: str, name: str, text: str) -> None:
    """The guest writes `text` at the start of its disk (through its page cache, then fsync)."""
    out = lab.console(node, name, f"printf '%s' {text} | dd of=/dev/vda conv=fsync 2>/dev/null && "
                                  "echo written-$((3*3))", "written-9")
    assert "\nwritten-9" in out, out


def read_disk(lab, node: str, name: str, n: int) -> str:
    """The first `n` bytes of its disk as the guest reads them, in capitals (so
    that the typed line, echoed back, never holds the answer)."""
    out = lab.console(node, name, f"echo at-$(dd if=/dev/vda bs={n} count=1 2>/dev/null | tr a-z A-Z)"
                                  "-$((40+2))", "-42")
    found = re.findall(r"\nat-(.*)-42", out.replace("\r", ""))
    assert found, out
    return found[-1]


def snapshots(lab, node: str, image) -> list[dict]:
    return info(lab, node, image).get("snapshots", [])


def test_snapshots_of_a_running_and_of_a_stopped_domain(lab, hv, pool, tmp_path):  # noqa: F811
    image = make_guest(lab, hv, pool, tmp_path, "snap1")
    hv.yes("domain", "start", "snap1", "node1")
    ready(lab, "node1", "snap1")
    write_disk(lab, "node1", "snap1", "state-a")
    assert first_bytes(lab, "node2", image, 7) == "state-a"

    # running: libvirt's internal snapshot on node1, kept in the image only
    r = hv.ok("domain", "snapshot", "snap1", "create", "s1")
    assert "virsh -c qemu:///system snapshot-create-as --domain snap1 --name s1 --atomic --no-metadata" \
        in r.out and "dry run" in r.out, r
    assert snapshots(lab, "node2", image) == []
    r = hv.yes("domain", "snapshot", "snap1", "create", "s1")
    assert f"snapshot s1 of snap1 taken on node1 (it runs there): {image}" in r.out, r
    (s1,) = snapshots(lab, "node3", image)                 # another node sees it in the image
    assert s1["name"] == "s1" and s1["vm-state-size"] > 64 * MIB, s1    # with the guest's memory
    assert lab.where("snap1") == ["node1"]
    assert lab.virsh("node1", "snapshot-list", "snap1", "--name", check=True).stdout.strip() == ""
    rows = json.loads(hv.ok("-f", "json", "domain", "snapshot", "snap1", "list").out)
    assert [(x["name"], x["memory"], x["disks"], x["complete"]) for x in rows] == [("s1", True, ["vda"], True)]

    write_disk(lab, "node1", "snap1", "state-b")
    assert first_bytes(lab, "node2", image, 7) == "state-b"
    refused(hv.run("--yes", "domain", "snapshot", "snap1", "revert", "s1"),
            "snap1 runs on node1: stop it first")

    # libvirt holds no record of it: the domain still migrates (libvirt refuses a domain that has one)
    hv.yes("domain", "migrate", "snap1", "node2")
    assert lab.where("snap1") == ["node2"]

    # off everywhere: qemu-img reverts the disk; the guest reads the earlier state
    hv.yes("domain", "destroy", "snap1")
    r = hv.yes("domain", "snapshot", "snap1", "revert", "s1")
    assert "snapshot s1 of snap1 reverted to" in r.out, r
    assert first_bytes(lab, "node3", image, 7) == "state-a"
    hv.yes("domain", "start", "snap1", "node3")
    ready(lab, "node3", "snap1")
    assert read_disk(lab, "node3", "snap1", 7) == "STATE-A"

    # delete while running: through qemu's monitor, on the node where it runs
    r = hv.yes("domain", "snapshot", "snap1", "delete", "s1")
    assert "snapshot s1 of snap1 deleted on node3" in r.out, r
    assert snapshots(lab, "node1", image) == []
    assert lab.where("snap1") == ["node3"]

    # off: create, change the disk on a node (qemu-io), revert, delete; all with qemu-img
    hv.yes("domain", "destroy", "snap1")
    hv.yes("domain", "snapshot", "snap1", "create", "s2")
    (s2,) = snapshots(lab, "node2", image)
    assert s2["name"] == "s2" and s2["vm-state-size"] == 0
    lab.exec("node2", "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 7", image, check=True)
    assert first_bytes(lab, "node1", image, 7) == "ZZZZZZZ"
    hv.yes("domain", "snapshot", "snap1", "revert", "s2")
    assert first_bytes(lab, "node1", image, 7) == "state-a"
    hv.yes("domain", "snapshot", "snap1", "delete", "s2")
    assert snapshots(lab, "node2", image) == []
    logged = [e["remote"] for e in hv.audit()]
    assert f"qemu-img snapshot -a s2 {image}" in logged and any("delvm s1" in x for x in logged)
    assert (hv.home / "conf" / "snap1.xml").read_text() == (tmp_path / "snap1.xml").read_text()


@pytest.fixture
def folder(lab):
    """An empty folder on the shared storage for backups, removed afterwards."""
    path = Path(lab.env["LAB_SHARED"]) / "backup"
    path.mkdir()
    yield path
    for f in path.iterdir():
        f.unlink()
    path.rmdir()


def test_backup_of_a_running_guest_starts_as_a_new_domain(lab, hv, pool, tmp_path, folder):  # noqa: F811
    image = make_guest(lab, hv, pool, tmp_path, "bk1")
    hv.yes("domain", "start", "bk1", "node1")
    ready(lab, "node1", "bk1")
    write_disk(lab, "node1", "bk1", "backup-x")

    r = hv.ok("domain", "backup", "bk1", folder)
    assert "backup-begin --domain bk1 /dev/stdin" in r.out and "dry run" in r.out, r
    assert list(folder.iterdir()) == []
    r = hv.yes("domain", "backup", "bk1", folder)
    copy, definition = folder / "bk1-backup-1.qcow2", folder / "bk1-backup.xml"
    assert f"{copy}: qcow2, 64 MiB virtual" in r.out and "bk1 is running on node1" in r.out, r
    assert lab.where("bk1") == ["node1"]                    # it ran all along
    facts = info(lab, "node2", copy)
    assert (facts["format"], facts["virtual-size"]) == ("qcow2", 64 * MIB) and "backing-filename" not in facts
    assert first_bytes(lab, "node2", copy, 8) == "backup-x"
    assert sorted(f.name for f in folder.iterdir()) == ["bk1-backup-1.qcow2", "bk1-backup.xml"]
    refused(hv.run("--yes", "domain", "backup", "bk1", folder), f"{copy} exists on node1")

    # the copy is a domain of its own: defined from the file, started beside the original
    hv.ok("domain", "define", "bk1-backup", "--file", definition)
    hv.yes("domain", "start", "bk1-backup", "node2")
    assert lab.where("bk1-backup") == ["node2"] and lab.where("bk1") == ["node1"]
    assert str(copy) in lab.virsh("node2", "domblklist", "bk1-backup", check=True).stdout
    uuids = {lab.virsh(n, "domuuid", d, check=True).stdout.strip() for n, d in (("node1", "bk1"),
                                                                                ("node2", "bk1-backup"))}
    assert len(uuids) == 2
    ready(lab, "node2", "bk1-backup", log="bk1")
    assert read_disk(lab, "node2", "bk1-backup", 8) == "BACKUP-X"

    # a domain off everywhere: qemu-img convert on a node that sees the folder and the disk
    hv.yes("domain", "destroy", "bk1")
    r = hv.yes("domain", "backup", "bk1", folder, "--as", "bk1-off")
    assert f"qemu-img convert -f qcow2 -O qcow2 {image} {folder}/bk1-off-1.qcow2" in \
        " ".join(e["remote"] for e in hv.audit()), r
    assert first_bytes(lab, "node3", folder / "bk1-off-1.qcow2", 8) == "backup-x"
    assert "<name>bk1-off</name>" in (folder / "bk1-off.xml").read_text()
