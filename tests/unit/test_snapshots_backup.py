"""domain backup against the fake cluster: the dry runs (exact commands),
the backup of a running and of a stopped domain, its definition (defined and
started beside the original), every refusal, a failure half-way."""

import json
import shlex

import pytest
from fake_snapshots import SnapRunner, SnapStorage
from fakes import home_snapshot
from test_snapshots import D1, D2, POOL, changed_nothing, define, start

from havirt.parse.domxml import parse_domain_xml
from havirt.remote import snapshots as snap_remote

BK = "/srv/backup/monday"
C1, C2, XML = f"{BK}/web1-backup-1.qcow2", f"{BK}/web1-backup-2.qcow2", f"{BK}/web1-backup.xml"
V = "virsh -c qemu:///system"
MAC = "52:54:00:00:00:07"


@pytest.fixture
def bk(fake):
    """Three nodes that see the pool, node1 and node2 the backup folder; web1 with
    two qcow2 disks, a CD-ROM and a network card."""
    fake.storage = SnapStorage()
    fake.runner_class = SnapRunner
    for n in ("node1", "node2", "node3"):
        fake.node(n)
    fake.write_config(pools={"main": POOL})
    fake.storage.mount(POOL, "node1", "node2", "node3")
    fake.storage.mount(BK, "node2", "node3")
    for path in (D1, D2):
        fake.storage.add(path, virtual_size=2 << 30)
    fake.storage.add(f"{POOL}/debian.iso", format="raw")
    define(fake, "web1", [D1, D2], cdrom=f"{POOL}/debian.iso",
           extra=f"<interface type='bridge'><mac address='{MAC}'/><source bridge='br0'/></interface>")
    return fake


def ssh(address, command):
    return f"ssh root@{address} {shlex.quote(command.text())}"


BACKUP_XML = "\n".join([
    '<domainbackup mode="push">', "  <disks>",
    '    <disk name="vda" type="file">', '      <driver type="qcow2"/>', f'      <target file="{C1}"/>',
    "    </disk>",
    '    <disk name="vdb" type="file">', '      <driver type="qcow2"/>', f'      <target file="{C2}"/>',
    "    </disk>",
    '    <disk name="sda" backup="no"/>', "  </disks>", "</domainbackup>"])


def test_backup_of_a_running_domain_dry_run(bk):
    start(bk, "web1", "node2")
    before, audit = home_snapshot(bk.home), bk.audit_lines()
    rc, out, err = bk.havirt("domain", "backup", "web1", BK + "/")
    assert rc == 0, err
    lines = out.split("\nssh ")
    assert lines[0] == f"{POOL}/debian.iso: read-only, not copied (the copy uses it as it is)"
    backup = snap_remote.backup_live(_cfg(bk), "web1", BACKUP_XML, [C1, C2], 3600)
    assert "ssh " + lines[1] == ssh("10.0.0.2", backup)
    assert lines[2].startswith(f"root@10.0.0.2 '[ ! -e {XML} ] && [ ! -L {XML} ] || ")
    assert out.splitlines()[-1] == "dry run: nothing was changed; add --yes (havirt --yes ...) to execute"
    assert bk.storage.changes == [] and home_snapshot(bk.home) == before and bk.audit_lines() == audit


def _cfg(fake):
    from havirt.store.config import load_config
    return load_config(fake.home / "config.yaml")


def test_backup_of_a_running_domain(bk, tmp_path):
    start(bk, "web1", "node2")
    rc, out, err = bk.havirt("--yes", "domain", "backup", "web1", BK)
    assert rc == 0, err
    assert out.splitlines()[-4:] == [
        f"{C1}: qcow2, 1 GiB virtual, 196 KiB on disk",
        f"{C2}: qcow2, 1 GiB virtual, 196 KiB on disk",
        f"{XML}: the definition of the copy (havirt domain define web1-backup --file {XML})",
        "web1 is running on node2"]
    assert bk.storage.changes == [("node2", f"backup web1 {C1} {C2}"), ("node2", f"write {XML}")]
    assert "web1" in bk.nodes["node2"].domains
    logged = [json.loads(line)["remote"] for line in bk.audit_lines()]
    assert len(logged) == 3 and "backup-begin --domain web1 /dev/stdin" in logged[1]

    # the copy: a domain of its own, beside the original
    copy = parse_domain_xml(bk.storage.files[XML])
    assert copy.name == "web1-backup" and copy.disks == [C1, C2, f"{POOL}/debian.iso"]
    assert copy.interfaces[0].startswith("bridge:br0:52:54:00:") and MAC not in copy.interfaces[0]
    original = (bk.home / "conf" / "web1.xml").read_text()
    assert "<uuid>" not in original and "<uuid>" in bk.storage.files[XML]
    (tmp_path / "copy.xml").write_text(bk.storage.files[XML])
    rc, out, err = bk.havirt("domain", "define", "web1-backup", "--file", str(tmp_path / "copy.xml"))
    assert rc == 0, err
    rc, out, err = bk.havirt("--yes", "domain", "start", "web1-backup", "node3")
    assert rc == 0, err
    assert "web1-backup" in bk.nodes["node3"].domains and "web1" in bk.nodes["node2"].domains


@pytest.mark.parametrize("running", [True, False])
def test_the_dry_run_shows_what_yes_runs(bk, running):
    """The copy's new UUID and MACs are drawn from a seed (its conf/, the folder,
    its name): the dry run prints the very commands --yes then runs."""
    if running:
        start(bk, "web1", "node2")
    rc, dry, err = bk.havirt("domain", "backup", "web1", BK)
    assert rc == 0, err
    logged = len(bk.audit_lines())
    rc, out, err = bk.havirt("--yes", "domain", "backup", "web1", BK)
    assert rc == 0, err
    ran = [json.loads(line)["remote"] for line in bk.audit_lines()[logged:]]
    assert len(ran) == (2 if running else 3)
    assert "\n".join(f"ssh root@10.0.0.2 {shlex.quote(r)}" for r in ran) in dry
    assert f"<uuid>{parse_uuid(bk.storage.files[XML])}</uuid>" in dry


def parse_uuid(xml):
    import xml.etree.ElementTree as ET
    return ET.fromstring(xml).findtext("uuid")


def test_backup_of_a_stopped_domain_copies_with_qemu_img(bk):
    rc, out, err = bk.havirt("domain", "backup", "web1", BK, "--as", "web1-monday")
    assert rc == 0, err
    m1, m2 = f"{BK}/web1-monday-1.qcow2", f"{BK}/web1-monday-2.qcow2"
    assert out.splitlines()[1:3] == [
        f"ssh root@10.0.0.2 '[ ! -e {m1} ] && [ ! -L {m1} ] || {{ echo {m1} exists: not overwritten >&2; "
        f"exit 1; }}; qemu-img convert -f qcow2 -O qcow2 {D1} {m1} || {{ rm -f {m1}; exit 1; }}'",
        f"ssh root@10.0.0.2 '[ ! -e {m2} ] && [ ! -L {m2} ] || {{ echo {m2} exists: not overwritten >&2; "
        f"exit 1; }}; qemu-img convert -f qcow2 -O qcow2 {D2} {m2} || {{ rm -f {m2}; exit 1; }}'"]
    assert bk.storage.changes == []
    rc, out, err = bk.havirt("--yes", "domain", "backup", "web1", BK, "--as", "web1-monday")
    assert rc == 0, err
    assert bk.storage.images[m1].virtual_size == 2 << 30
    assert parse_domain_xml(bk.storage.files[f"{BK}/web1-monday.xml"]).name == "web1-monday"
    assert out.splitlines()[-2:] == [f"{m2}: qcow2, 2 GiB virtual, 196 KiB on disk",
                                     f"{BK}/web1-monday.xml: the definition of the copy (havirt domain "
                                     f"define web1-monday --file {BK}/web1-monday.xml)"]


def test_a_stopped_backup_failing_half_way_removes_its_copies(bk):
    bk.storage.failing.add(C2)
    rc, out, err = bk.havirt("--yes", "domain", "backup", "web1", BK)
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"havirt: copy {D2} to {C2} failed on node2: exit 1: ")
    assert f"the images it had made were removed again ({C1})" in err
    assert C1 not in bk.storage.images and C2 not in bk.storage.images and XML not in bk.storage.files


def test_a_running_backup_that_fails_leaves_nothing(bk):
    start(bk)
    bk.storage.mount(BK, "node1")
    bk.storage.failing.add(C1)
    rc, out, err = bk.havirt("--yes", "domain", "backup", "web1", BK)
    assert rc == 1 and err.startswith("havirt: back up web1 on node1 into /srv/backup/monday (libvirt's "
                                      "backup job) failed on node1: exit 1: Job type: Failed")
    assert not [p for p in bk.storage.images if p.startswith(BK)] and not bk.storage.files


# -- refusals ---------------------------------------------------------------------------------

def test_the_folder_must_be_seen_where_it_runs(bk):
    start(bk)      # node1 does not see the backup folder
    changed_nothing(bk, home_snapshot(bk.home), ["--yes", "domain", "backup", "web1", BK], 3,
                    f"refused: node1, where it runs, sees the folder {BK}")


def test_a_stopped_domain_needs_a_node_that_sees_folder_and_disks(bk):
    changed_nothing(bk, home_snapshot(bk.home), ["--yes", "domain", "backup", "web1", "/srv/elsewhere"], 3,
                    "refused: no node that answered sees the folder /srv/elsewhere and every disk to copy")


def test_nothing_is_overwritten(bk):
    bk.storage.add(C2)
    changed_nothing(bk, home_snapshot(bk.home), ["--yes", "domain", "backup", "web1", BK], 3,
                    f"refused: {C2} exists on node2: havirt never overwrites a file")
    bk.storage.files[XML] = "<domain/>"
    del bk.storage.images[C2]
    changed_nothing(bk, home_snapshot(bk.home), ["--yes", "domain", "backup", "web1", BK], 3,
                    f"refused: {XML} exists on node2")


@pytest.mark.parametrize("args, words", [
    (["relative/dir"], "the backup folder 'relative/dir': give an absolute path"),
    ([BK, "--as", "web1"], "the copy needs a name of its own (--as)"),
    ([BK, "--as", "a b"], "invalid domain name 'a b'"),
    ([BK, "--timeout", "0"], "Invalid value for '--timeout'"),
])
def test_bad_arguments(bk, args, words):
    changed_nothing(bk, home_snapshot(bk.home), ["--yes", "domain", "backup", "web1", *args], 2, words)


def test_stopped_and_a_silent_node(bk):
    bk.nodes["node1"].reachable = False
    changed_nothing(bk, home_snapshot(bk.home), ["--yes", "domain", "backup", "web1", BK], 3,
                    "node node1 did not answer (connect timed out after 5 s): web1 might run there")


def test_no_writable_disk(bk):
    define(bk, "web1", [], cdrom=f"{POOL}/debian.iso")
    changed_nothing(bk, home_snapshot(bk.home), ["--yes", "domain", "backup", "web1", BK], 3,
                    "web1 has no writable disk: nothing to back up")


def test_raw_and_block_disks_are_copied_too(bk):
    bk.storage.add(f"{POOL}/data.img", format="raw")
    bk.storage.block("/dev/lun3", "node2", "node3")
    define(bk, "web1", [D1], extra="<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
           f"<source file='{POOL}/data.img'/><target dev='vdb'/></disk>"
           "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
           "<source dev='/dev/lun3'/><target dev='vdc'/></disk>")
    rc, out, err = bk.havirt("domain", "backup", "web1", BK)
    assert rc == 0, err
    assert f"qemu-img convert -f raw -O qcow2 {POOL}/data.img {C2}" in out
    assert f"qemu-img convert -f raw -O qcow2 /dev/lun3 {BK}/web1-backup-3.qcow2" in out
