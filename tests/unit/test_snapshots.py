"""domain snapshot create|list|revert|delete against the fake cluster: every
dry run (its exact commands), the real thing, every refusal."""

import json

import pytest
from fake_snapshots import SnapRunner, SnapStorage
from fakes import home_snapshot, time_limit

POOL = "/srv/pool"
V = "virsh -c qemu:///system"
D1, D2 = f"{POOL}/web1-1.qcow2", f"{POOL}/web1-2.qcow2"


@pytest.fixture
def snap(fake):
    """Three nodes that see the pool; web1 in conf/ with two qcow2 disks and a CD-ROM."""
    fake.storage = SnapStorage()
    fake.runner_class = SnapRunner
    nodes = [fake.node(n) for n in ("node1", "node2", "node3")]
    fake.write_config(pools={"main": POOL})
    fake.storage.mount(POOL, "node1", "node2", "node3")
    fake.storage.add(D1)
    fake.storage.add(D2)
    fake.storage.add(f"{POOL}/debian.iso", format="raw")
    define(fake, "web1", [D1, D2], cdrom=f"{POOL}/debian.iso")
    fake.nodes_list = nodes
    return fake


def disk(path, i, fmt="qcow2", kind="file", extra=""):
    src = "dev" if kind == "block" else "file"
    return (f"<disk type='{kind}' device='disk'><driver name='qemu' type='{fmt}'/>"
            f"<source {src}='{path}'/><target dev='vd{chr(97 + i)}' bus='virtio'/>{extra}</disk>")


def define(fake, name, disks, cdrom=None, fmt="qcow2", extra=""):
    xml = "".join(disk(p, i, fmt) for i, p in enumerate(disks))
    if cdrom:
        xml += (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{cdrom}'/>"
                "<target dev='sda' bus='sata'/><readonly/></disk>")
    (fake.home / "conf" / f"{name}.xml").write_text(
        f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64'>hvm</type></os><devices>{xml}{extra}</devices></domain>\n")


def start(fake, name="web1", node="node1"):
    rc, out, err = fake.havirt("--yes", "domain", "start", name, node)
    assert rc == 0, err


def changed_nothing(fake, before, args, code, words):
    """The command exits `code` with one line holding `words`; no change anywhere."""
    changes, audit = list(fake.storage.changes), fake.audit_lines()
    with time_limit(10):
        rc, out, err = fake.havirt(*args)
    assert rc == code and err.startswith("havirt: ") and err.count("\n") == 1, (rc, out, err)
    assert words in err, err
    assert "Traceback" not in err and "internal error" not in err
    assert fake.storage.changes == changes and fake.audit_lines() == audit
    assert home_snapshot(fake.home)["conf"] == before["conf"]
    return err


# -- create, while off and while running ---------------------------------------------------

def test_create_while_off_dry_run_prints_qemu_img_per_disk(snap):
    before = home_snapshot(snap.home)
    rc, out, err = snap.havirt("domain", "snapshot", "web1", "create", "before-upgrade")
    assert rc == 0, err
    assert out.splitlines() == [
        f"{POOL}/debian.iso: read-only, left out of snapshots (it never changes)",
        f"ssh root@10.0.0.1 'qemu-img snapshot -c before-upgrade {D1}'",
        f"ssh root@10.0.0.1 'qemu-img snapshot -c before-upgrade {D2}'",
        "dry run: nothing was changed; add --yes (havirt --yes ...) to execute"]
    assert snap.storage.changes == [] and snap.storage.snapshots == {}
    assert home_snapshot(snap.home)["conf"] == before["conf"] and snap.audit_lines() == []


def test_create_while_off_takes_it_in_every_disk_and_verifies(snap):
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "create", "s1")
    assert rc == 0, err
    assert snap.storage.names(D1) == snap.storage.names(D2) == ["s1"]
    assert out.splitlines()[-1] == f"snapshot s1 of web1 taken: {D1}, {D2}"
    logged = [json.loads(line)["remote"] for line in snap.audit_lines()]
    assert logged == [f"qemu-img snapshot -c s1 {D1}", f"qemu-img snapshot -c s1 {D2}"]
    assert f"{POOL}/debian.iso" not in snap.storage.snapshots


def test_create_while_running_asks_libvirt_on_its_node(snap):
    start(snap, "web1", "node2")
    rc, out, err = snap.havirt("domain", "snapshot", "web1", "create", "s1")
    assert rc == 0, err
    assert (f"ssh root@10.0.0.2 '{V} snapshot-create-as --domain web1 --name s1 --atomic "
            "--no-metadata'") in out.splitlines()
    assert snap.storage.snapshots == {}
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "create", "s1")
    assert rc == 0, err
    assert snap.storage.names(D1) == snap.storage.names(D2) == ["s1"]
    assert out.splitlines()[-1] == f"snapshot s1 of web1 taken on node2 (it runs there): {D1}, {D2}"
    assert "web1" in snap.nodes["node2"].domains      # still running


def test_list_shows_each_snapshot_once_with_its_disks(snap):
    snap.storage.snapshot(D1, "s1", memory=True)
    snap.storage.snapshot(D2, "s1")
    snap.storage.snapshot(D1, "only-one")
    rc, out, err = snap.havirt("domain", "snapshot", "web1", "list")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "web1 is not running on any node that answered"
    assert lines[1] == f"{POOL}/debian.iso: read-only, left out of snapshots (it never changes)"
    assert lines[4].split() == ["s1", "2026-12-04", "12:23:11", "yes", "vda,vdb", "yes"]
    assert lines[5].split() == ["only-one", "2026-12-04", "12:23:12", "no", "vda", "no"]
    rows = json.loads(snap.havirt("-f", "json", "domain", "snapshot", "web1", "list")[1])
    assert [(r["name"], r["complete"], r["memory"]) for r in rows] == [("s1", True, True),
                                                                        ("only-one", False, False)]
    assert snap.storage.changes == []


# -- revert ----------------------------------------------------------------------------------

def test_revert_while_off(snap):
    for d in (D1, D2):
        snap.storage.snapshot(d, "s1")
    rc, out, err = snap.havirt("domain", "snapshot", "web1", "revert", "s1")
    assert rc == 0, err
    assert out.splitlines()[1:3] == [f"ssh root@10.0.0.1 'qemu-img snapshot -a s1 {D1}'",
                                     f"ssh root@10.0.0.1 'qemu-img snapshot -a s1 {D2}'"]
    assert snap.storage.changes == []
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "revert", "s1")
    assert rc == 0, err
    assert snap.storage.changes == [("node1", f"revert s1 {D1}"), ("node1", f"revert s1 {D2}")]
    assert out.splitlines()[-1] == "web1 starts from the disks as they were at s1 (conf/ unchanged)"


def test_revert_while_running_is_refused(snap):
    for d in (D1, D2):
        snap.storage.snapshot(d, "s1")
    start(snap)
    err = changed_nothing(snap, home_snapshot(snap.home),
                          ["--yes", "domain", "snapshot", "web1", "revert", "s1"], 3,
                          "web1 runs on node1: stop it first (a revert changes its disks)")
    assert err == "havirt: refused: web1 runs on node1: stop it first (a revert changes its disks)\n"


# -- delete ----------------------------------------------------------------------------------

def test_delete_while_off_and_while_running(snap):
    for d in (D1, D2):
        snap.storage.snapshot(d, "s1")
        snap.storage.snapshot(d, "s2")
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "delete", "s1")
    assert rc == 0, err
    assert snap.storage.names(D1) == snap.storage.names(D2) == ["s2"]
    assert snap.storage.changes == [("node1", f"delete s1 {D1}"), ("node1", f"delete s1 {D2}")]
    start(snap, "web1", "node3")
    rc, out, err = snap.havirt("domain", "snapshot", "web1", "delete", "s2")
    assert rc == 0, err
    assert out.splitlines()[1] == (
        f"ssh root@10.0.0.3 'out=$({V} qemu-monitor-command --domain web1 --hmp '\"'\"'delvm s2'\"'\"') "
        "|| exit 1; if [ -n \"$(printf '\"'\"'%s'\"'\"' \"$out\" | tr -d '\"'\"'[:space:]'\"'\"')\" ]; "
        "then printf '\"'\"'%s\\n'\"'\"' \"$out\" >&2; exit 1; fi'")
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "delete", "s2")
    assert rc == 0, err
    assert snap.storage.names(D1) == snap.storage.names(D2) == []
    assert out.splitlines()[-1] == f"snapshot s2 of web1 deleted on node3 (it runs there): {D1}, {D2}"


def test_a_delete_that_did_nothing_is_caught_by_the_check_afterwards(snap, monkeypatch):
    """qemu's delvm says nothing, also when it deleted nothing: the images are read again."""
    for d in (D1, D2):
        snap.storage.snapshot(d, "s1")
    start(snap)
    monkeypatch.setattr(SnapRunner, "_delete_live", lambda self, n, command: __import__(
        "havirt.remote.transport", fromlist=["Result"]).Result(n.name, command.text(), 0))
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "delete", "s1")
    assert rc == 1 and err == f"havirt: after the command, the snapshot s1 is still in {D1}, {D2}\n"


# -- what stops half-way ---------------------------------------------------------------------

def test_create_failing_half_way_deletes_what_it_took(snap):
    snap.storage.failing.add(D2)
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "create", "s1")
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"havirt: take the snapshot s1 of {D2} failed on node1: exit 1: ")
    assert err.endswith(f"; the snapshots it had taken were deleted again ({D1})\n")
    assert snap.storage.names(D1) == snap.storage.names(D2) == []
    assert snap.storage.changes == [("node1", f"create s1 {D1}"), ("node1", f"delete s1 {D1}")]


def test_revert_failing_half_way_says_which_disks_changed(snap):
    for d in (D1, D2):
        snap.storage.snapshot(d, "s1")
    snap.storage.failing.add(D2)
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "revert", "s1")
    assert rc == 1 and err.count("\n") == 1
    assert err.endswith(f"; reverted to s1 already: {D1}; not: {D2}\n"), err


def test_live_create_refused_by_libvirt_changes_nothing(snap):
    """libvirt's own refusal (here: an image the fake calls raw behind havirt's back)."""
    start(snap)
    snap.storage.images[D2].format = "raw"
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web1", "create", "s1")
    assert rc == 3 and "is a raw image, not qcow2" in err     # qemu-img's read said so first
    assert snap.storage.snapshots == {}


# -- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, words", [
    (["create", "1"], 2, "invalid snapshot name '1': use 1-64 letters, digits, '.', '_' or '-', starting "
                         "with a letter"),
    (["create", "-x"], 2, "No such option '-x'"),
    (["create", "a b"], 2, "invalid snapshot name 'a b'"),
    (["create", "x" * 65], 2, "invalid snapshot name"),
    (["create", "a..b"], 2, "invalid snapshot name"),
    (["create"], 2, "create needs the name of a SNAPSHOT"),
    (["revert"], 2, "revert needs the name of a SNAPSHOT"),
    (["list", "s1"], 2, "list takes no SNAPSHOT"),
    (["rename", "s1"], 2, "Invalid value for '{create|list|revert|delete}'"),
])
def test_bad_arguments(snap, args, code, words):
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", *args],
                    code, words)


def test_unknown_domain(snap):
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web9", "create", "s1"],
                    2, "unknown domain 'web9'")


def test_create_over_an_existing_name_is_refused(snap):
    """qemu-img would make a second snapshot of that name, and libvirt's savevm replace it."""
    snap.storage.snapshot(D2, "s1")
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", "create", "s1"],
                    3, f"refused: a snapshot named s1 exists already in {D2}")


def test_revert_needs_the_snapshot_in_every_disk(snap):
    snap.storage.snapshot(D1, "s1")
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", "revert", "s1"],
                    3, f"no snapshot s1 in {D2}: a revert needs it in every writable disk")


def test_delete_of_an_unknown_snapshot_is_refused(snap):
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", "delete", "s9"],
                    3, "no snapshot s9 in the disks of web1")


@pytest.mark.parametrize("kind", ["raw", "block", "shareable", "unseen"])
def test_a_snapshot_must_cover_every_writable_disk(snap, kind):
    other = {"raw": f"{POOL}/web1-3.img", "block": "/dev/lun3", "shareable": f"{POOL}/shared.qcow2",
             "unseen": f"{POOL}/gone.qcow2"}[kind]
    if kind == "raw":
        snap.storage.add(other, format="raw")
    elif kind == "block":
        snap.storage.block(other, "node1", "node2", "node3")
    elif kind == "shareable":
        snap.storage.add(other)
    third = disk(other, 2, "raw" if kind in ("raw", "block") else "qcow2", "block" if kind == "block" else "file",
                 "<shareable/>" if kind == "shareable" else "")
    define(snap, "web1", [D1, D2], extra=third)
    words = {"raw": f"disk {other} of web1 is a raw image, not qcow2: a snapshot must cover every "
                    "writable disk, and only qcow2 images hold snapshots",
             "block": f"disk {other} of web1 is a block device, not qcow2",
             "shareable": f"disk {other} of web1 is shareable (other domains write it)",
             "unseen": f"disk {other} of web1: no node that answered sees it"}[kind]
    for action in ("create", "revert", "delete"):
        changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", action, "s1"],
                        3, words)


def test_a_domain_without_writable_disks_has_nothing_to_snapshot(snap):
    define(snap, "web1", [], cdrom=f"{POOL}/debian.iso")
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", "create", "s1"],
                    3, "web1 has no writable disk: nothing to snapshot")


def test_off_needs_every_node_to_answer(snap):
    snap.nodes["node3"].reachable = False
    err = changed_nothing(snap, home_snapshot(snap.home),
                          ["--yes", "domain", "snapshot", "web1", "create", "s1"], 3,
                          "node node3 did not answer (connect timed out after 5 s): web1 might run there "
                          "(cannot prove web1 runs only once)")
    assert "--force" not in err


def test_running_on_two_nodes_is_refused(snap):
    for n in ("node1", "node2"):
        snap.nodes[n].add("web1", disks=[D1, D2])
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", "create", "s1"],
                    3, "web1 is present on 2 nodes: node1, node2")


def test_arriving_by_migration_is_refused(snap):
    snap.nodes["node2"].add("web1", state="paused", reason=2, disks=[D1, D2])
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", "create", "s1"],
                    3, "web1 is paused on node2 (a migration is under way)")


def test_running_with_other_disks_than_conf_is_refused(snap):
    start(snap)
    define(snap, "web1", [D1])
    changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", "create", "s1"],
                    3, "web1 runs on node1 with other disks than conf/ names (disks")


def test_a_base_of_linked_clones_keeps_its_image(snap):
    assert snap.havirt("--yes", "domain", "clone", "web1", "web4", "--linked")[0] == 0
    for action in ("create", "delete"):
        changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", "snapshot", "web1", action, "s1"],
                        3, "web1 is the base of web4 (linked clones read its image): its snapshots may "
                           "not change")
    rc, out, err = snap.havirt("--yes", "domain", "snapshot", "web4", "create", "s1")   # the clone may
    assert rc == 0, err
    assert snap.storage.names(f"{POOL}/web4-1.qcow2") == ["s1"] and snap.storage.names(D1) == []


NETWORK_DISK = ("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
                "<source protocol='rbd' name='rbd/web1-data'/><target dev='vdc' bus='virtio'/></disk>")


@pytest.mark.parametrize("running", [False, True])
def test_a_network_disk_is_refused(snap, running):
    define(snap, "web1", [D1, D2], extra=NETWORK_DISK)
    if running:
        start(snap)
    for args in (["snapshot", "web1", "create", "s1"], ["backup", "web1", "/srv/pool"]):
        changed_nothing(snap, home_snapshot(snap.home), ["--yes", "domain", *args], 3,
                        "refused: web1 has a writable disk without a local path (rbd/web1-data: a network "
                        "disk without a local path, not leased): havirt snapshots and copies only disks "
                        "with a path")


def test_list_in_json_keeps_stdout_for_the_rows(snap):
    """What the scan found wrong (a silent node) goes to stderr; a list changes nothing."""
    snap.storage.snapshot(D1, "s1")
    snap.nodes["node3"].reachable = False
    rc, out, err = snap.havirt("-f", "json", "domain", "snapshot", "web1", "list")
    assert rc == 0, err
    assert [r["name"] for r in json.loads(out)] == ["s1"]
    assert "node3" in err and "web1 is not running on any node that answered" in err
    assert snap.storage.changes == [] and snap.audit_lines() == []
