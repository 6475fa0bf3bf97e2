"""domain new / clone / delete and image list against the fake cluster and its storage."""

import json
from pathlib import Path

from conftest import domain_xml, uuid_of
from fakes import home_snapshot

from havirt.parse.domxml import parse_domain_xml

POOL = "/srv/pool"
GIB = 1024 ** 3


def setup(fake, nodes=("node1", "node2", "node3")):
    made = [fake.node(n) for n in nodes]
    fake.write_config(pools={"main": POOL})
    fake.storage.mount(POOL, *nodes)
    return made


def conf(fake, name):
    return parse_domain_xml((fake.home / "conf" / f"{name}.xml").read_text())


def new(fake, name="web3", *extra, yes=True):
    return fake.havirt(*(["--yes"] if yes else []), "domain", "new", name, "--memory", "512",
                       "--vcpus", "2", "--disk", "size=1", *extra)


# -- new ---------------------------------------------------------------------------------

def test_new_dry_run_prints_qemu_img_create_and_changes_nothing(fake):
    setup(fake)
    before = home_snapshot(fake.home)
    rc, out, err = new(fake, yes=False)
    assert rc == 0, err
    assert out.splitlines() == [
        "ssh root@10.0.0.1 '[ ! -e /srv/pool/web3-1.qcow2 ] && [ ! -L /srv/pool/web3-1.qcow2 ] || "
        "{ echo /srv/pool/web3-1.qcow2 exists: not overwritten >&2; exit 1; }; "
        "qemu-img create -q -f qcow2 /srv/pool/web3-1.qcow2 1G || "
        "{ rm -f /srv/pool/web3-1.qcow2; exit 1; }'",
        "# then conf/web3.xml is written (the new definition; -v prints it)",
        "dry run: nothing was changed; add --yes (havirt --yes ...) to execute"]
    assert home_snapshot(fake.home) == before and fake.storage.images == {}
    assert not (fake.home / "var" / "audit.log").exists()


def test_new_with_yes_makes_the_image_then_the_definition(fake):
    setup(fake)
    fake.conf("web1")
    (fake.home / "conf" / "web1.xml").write_text(domain_xml("web1").replace(
        "<devices>", "<devices><interface type='bridge'><mac address='52:54:00:00:00:01'/>"
                     "<source bridge='br0'/></interface>"))
    rc, out, err = new(fake, "web3", "--network", "bridge=br0", "--cdrom", "/srv/pool/web1-1.qcow2")
    assert rc == 3 and "the CD-ROM /srv/pool/web1-1.qcow2: no node that answered sees it" in err
    fake.storage.add(f"{POOL}/d.iso", format="raw")
    rc, out, err = new(fake, "web3", "--network", "bridge=br0", "--cdrom", f"{POOL}/d.iso",
                       "--os-variant", "http://debian.org/debian/12")
    assert rc == 0, err
    assert fake.storage.images[f"{POOL}/web3-1.qcow2"].virtual_size == GIB
    spec = conf(fake, "web3")
    assert (spec.memory_mib, spec.vcpus) == (512, 2)
    assert spec.disks == [f"{POOL}/web3-1.qcow2", f"{POOL}/d.iso"]
    (iface,) = spec.interfaces
    assert iface.startswith("bridge:br0:52:54:00:") and not iface.endswith("00:00:01")
    assert out.splitlines()[-1] == "saved conf/web3.xml"
    assert "qemu-img create" in (fake.home / "var" / "audit.log").read_text()


def test_new_refusals_say_why_and_change_nothing(fake):
    setup(fake, ("node1", "node2"))
    fake.conf("web1", disks=["/dev/lun1"])
    fake.storage.block("/dev/lun1", "node1", "node2")
    fake.storage.add(f"{POOL}/web3-1.qcow2")
    before = home_snapshot(fake.home)
    cases = [
        ((), 3, f"refused: {POOL}/web3-1.qcow2 exists already: havirt never overwrites an image"),
        (("--disk", "size=1,pool=other"), 2, "unknown pool 'other' (pools in config.yaml: main)"),
        (("--disk", "path=/dev/lun1"), 3, "disk /dev/lun1 of web3 is also a disk of web1"),
        (("--disk", "path=/dev/lun9"), 3, "disk /dev/lun9: no node that answered sees it"),
        (("--disk", "size=0"), 2, "--disk size=0: a number of GiB, more than 0"),
        (("--disk", "path=relative.img"), 2, "--disk path= 'relative.img': give an absolute path"),
        (("--network", "bridge=br 0"), 2, "--network 'bridge=br 0': give bridge=NAME"),
    ]
    for extra, code, words in cases:
        rc, out, err = new(fake, "web3", *extra)
        assert rc == code and words in err and err.count("\n") == 1, (extra, err)
    rc, _, err = new(fake, "web1")
    assert rc == 2 and "conf/web1.xml exists" in err
    fake.storage.mounts[POOL] = set()
    rc, _, err = new(fake, "web4")
    assert rc == 3 and f"no node that answered sees the pool main ({POOL})" in err
    assert home_snapshot(fake.home)["conf"] == before["conf"]
    assert set(fake.storage.images) == {f"{POOL}/web3-1.qcow2"}


def test_new_without_pools_or_with_several_needs_to_be_told(fake):
    fake.node("node1")
    rc, _, err = new(fake)
    assert rc == 2 and "config.yaml has none" in err
    fake.write_config(pools={"a": "/srv/a", "b": "/srv/b"})
    rc, _, err = new(fake)
    assert rc == 2 and "needs pool=NAME: config.yaml has several (a, b)" in err


def test_new_failing_half_way_removes_what_it_made(fake):
    setup(fake)
    fake.storage.failing.add(f"{POOL}/web3-2.qcow2")
    rc, out, err = new(fake, "web3", "--disk", "size=2")
    assert rc == 1
    assert err.startswith("havirt: create the image /srv/pool/web3-2.qcow2 (2 GiB) failed")
    assert f"the images it had made were removed again ({POOL}/web3-1.qcow2); conf/ unchanged" in err
    assert fake.storage.made == [f"{POOL}/web3-1.qcow2"] and fake.storage.images == {}
    assert not (fake.home / "conf" / "web3.xml").exists()


def test_new_says_what_to_remove_when_the_undo_fails_too(fake):
    setup(fake)

    class Once(set):       # web3-1 is made, then its removal fails; web3-2 is not made
        def __contains__(self, path):
            return path == f"{POOL}/web3-2.qcow2" or (
                path == f"{POOL}/web3-1.qcow2" and path in fake.storage.images)
    fake.storage.failing = Once()
    rc, _, err = new(fake, "web3", "--disk", "size=2")
    assert rc == 1 and "remove what it made by hand: ssh root@10.0.0.1 " in err
    assert "rm -- /srv/pool/web3-1.qcow2" in err and not (fake.home / "conf" / "web3.xml").exists()


# -- clone -------------------------------------------------------------------------------

def base(fake):
    nodes = setup(fake)
    fake.storage.add(f"{POOL}/src-1.qcow2", virtual_size=2 * GIB)
    (fake.home / "conf" / "src.xml").write_text(domain_xml("src", disks=[f"{POOL}/src-1.qcow2"]).replace(
        "<source file", "<driver name='qemu' type='qcow2'/><source file").replace(
        "<devices>", "<devices><interface type='network'><mac address='52:54:00:00:00:07'/>"
                     "<source network='default'/></interface>"))
    return nodes


def test_clone_of_a_running_domain_is_refused(fake):
    a, _, _ = base(fake)
    a.add("src")
    rc, _, err = fake.havirt("--yes", "domain", "clone", "src", "web4", "--linked")
    assert rc == 3 and "src must be shut off everywhere to be cloned: src is already running on node1" in err
    assert fake.storage.made == []


def test_full_clone_is_an_independent_copy(fake):
    base(fake)
    rc, out, err = fake.havirt("domain", "clone", "src", "web4")
    assert rc == 0 and "qemu-img convert -f qcow2 -O qcow2 /srv/pool/src-1.qcow2 /srv/pool/web4-1.qcow2" in out
    rc, out, err = fake.havirt("--yes", "domain", "clone", "src", "web4")
    assert rc == 0, err
    image = fake.storage.images[f"{POOL}/web4-1.qcow2"]
    assert image.backing is None and image.virtual_size == 2 * GIB
    src, clone = conf(fake, "src"), conf(fake, "web4")
    assert clone.disks == [f"{POOL}/web4-1.qcow2"] and clone.disk_specs[0].backing == ()
    new_uuid = uuid_of((fake.home / "conf" / "web4.xml").read_text())
    assert new_uuid and new_uuid != uuid_of((fake.home / "conf" / "src.xml").read_text())
    assert clone.interfaces[0] != src.interfaces[0]
    assert clone.interfaces[0].startswith("network:default:52:54:00:")


def test_linked_clone_makes_its_source_a_base(fake):
    a, b, _ = base(fake)
    rc, out, err = fake.havirt("--yes", "domain", "clone", "src", "web4", "--linked")
    assert rc == 0, err
    image = fake.storage.images[f"{POOL}/web4-1.qcow2"]
    assert (image.backing, image.backing_format) == (f"{POOL}/src-1.qcow2", "qcow2")
    assert conf(fake, "web4").disk_specs[0].backing == (f"{POOL}/src-1.qcow2",)
    rc, _, err = fake.havirt("--yes", "domain", "start", "src", "node1")
    assert rc == 3 and "src writes /srv/pool/src-1.qcow2, the backing file of web4's disk" in err
    assert "starting src would change it under web4" in err and "src" not in a.domains
    rc, _, err = fake.havirt("--yes", "domain", "start", "web4", "node2")
    assert rc == 0, err
    rows = json.loads(fake.havirt("-f", "json", "domain", "list")[1])
    assert {r["name"]: r["base_of"] for r in rows} == {"src": ["web4"], "web4": []}
    doc = json.loads(fake.havirt("-f", "json", "domain", "info", "src")[1])
    assert doc["base_of"] == ["web4"]
    assert "base of      web4 (linked clones: src may neither start" in fake.havirt("domain", "info", "src")[1]


# -- delete ------------------------------------------------------------------------------

def test_delete_of_a_base_is_refused_while_the_clone_exists(fake):
    base(fake)
    assert fake.havirt("--yes", "domain", "clone", "src", "web4", "--linked")[0] == 0
    rc, _, err = fake.havirt("--yes", "domain", "delete", "src", "--disks")
    assert rc == 3 and err.startswith("havirt: refused: src stays defined; ")
    assert "/srv/pool/src-1.qcow2 is the backing file of web4's disk /srv/pool/web4-1.qcow2" in err
    rc, out, err = fake.havirt("domain", "delete", "web4", "--disks")
    assert rc == 0 and out.splitlines()[:2] == [
        "# first conf/web4.xml moves into conf/.history/web4/",
        "ssh root@10.0.0.1 'if [ -f /srv/pool/web4-1.qcow2 ] && [ ! -L /srv/pool/web4-1.qcow2 ]; then "
        "rm -- /srv/pool/web4-1.qcow2; else echo /srv/pool/web4-1.qcow2 is not a regular file: "
        "not removed >&2; exit 1; fi'"]
    assert (fake.home / "conf" / "web4.xml").exists()
    rc, out, err = fake.havirt("--yes", "domain", "delete", "web4", "--disks")
    assert rc == 0, err
    assert set(fake.storage.images) == {f"{POOL}/src-1.qcow2"}
    assert not (fake.home / "conf" / "web4.xml").exists()
    (kept,) = (fake.home / "conf" / ".history" / "web4").iterdir()
    assert kept.name.endswith("-delete.xml")
    assert fake.havirt("--yes", "domain", "start", "src", "node1")[0] == 0


def test_delete_keeps_block_devices_and_is_refused_while_running(fake):
    a, _, _ = setup(fake)
    fake.storage.block("/dev/lun1", "node1", "node2", "node3")
    fake.conf("db1", disks=["/dev/lun1"])
    a.add("db1")
    rc, _, err = fake.havirt("--yes", "domain", "delete", "db1", "--disks")
    assert rc == 3 and "db1 is already running on node1" in err
    a.domains.clear()
    rc, out, err = fake.havirt("--yes", "domain", "delete", "db1", "--disks")
    assert rc == 0 and "/dev/lun1: kept, not in a pool" in out and "removed conf/db1.xml" in out


def test_image_list_json_and_orphans(fake):
    base(fake)
    fake.storage.add(f"{POOL}/master.qcow2", format="qcow2")
    assert fake.havirt("--yes", "domain", "clone", "src", "web4", "--linked")[0] == 0
    rc, out, err = fake.havirt("-f", "json", "image", "list")
    assert rc == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert sorted(rows) == ["master.qcow2", "src-1.qcow2", "web4-1.qcow2"]
    assert rows["web4-1.qcow2"] == {
        "pool": "main", "path": f"{POOL}/web4-1.qcow2", "name": "web4-1.qcow2", "format": "qcow2",
        "virtual_size": 2 * GIB, "virtual_gib": 2.0, "actual_size": 200704,
        "backing": f"{POOL}/src-1.qcow2", "domains": ["web4"], "backing_of": [], "orphan": False,
        "node": "node1", "error": None}
    assert rows["src-1.qcow2"]["backing_of"] == ["web4"] and rows["master.qcow2"]["orphan"]
    rc, out, _ = fake.havirt("image", "list")
    assert out.splitlines()[0].split() == ["pool", "image", "format", "size", "GiB", "backing",
                                           "file", "used", "by", "base", "of", "orphan"]


def test_define_of_another_domains_disk_is_refused_naming_both(fake, tmp_path):
    fake.node("node1")
    fake.conf("web1", disks=["/srv/web1.img"])
    other = tmp_path / "web2.xml"
    other.write_text(domain_xml("web2", disks=["/srv/web1.img"]))
    rc, out, err = fake.havirt("domain", "define", "web2", "--file", str(other))
    assert rc == 3 and out == ""
    assert err == ("havirt: refused: conf/web2.xml left as it was; disk /srv/web1.img of web2 is also "
                   "a disk of web1 (a disk belongs to one domain, unless both mark it <shareable/>)\n")
    assert not (fake.home / "conf" / "web2.xml").exists()
    reader = domain_xml("web2", disks=["/srv/web1.img"]).replace("/></disk>", "/><readonly/></disk>")
    other.write_text(reader)
    assert fake.havirt("domain", "define", "web2", "--file", str(other))[0] == 3   # web1 writes it
    for name in ("web1", "web2"):      # both mark it shareable: a cluster file system
        path = tmp_path / f"{name}.xml"
        path.write_text(domain_xml(name, disks=["/srv/web1.img"]).replace(
            "/></disk>", "/><shareable/></disk>"))
        rc, _, err = fake.havirt("domain", "define", name, "--file", str(path), "--force")
        assert rc == 0, err


def test_start_with_a_cdrom_sends_it_and_leaves_conf_alone(fake):
    a, b, _ = setup(fake)
    fake.conf("web1")
    before = (fake.home / "conf" / "web1.xml").read_bytes()
    rc, _, err = fake.havirt("--yes", "domain", "start", "web1", "node2", "--cdrom", "/iso/x.iso")
    assert rc == 3 and "/iso/x.iso" in err and "web1" not in b.domains
    b.paths.add("/iso/x.iso")
    rc, out, err = fake.havirt("domain", "start", "web1", "node2", "--cdrom", "/iso/x.iso")
    assert rc == 0 and ("< conf/web1.xml  # with the CD-ROM /iso/x.iso attached, first to boot "
                        "(conf/ unchanged)") in out
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2", "--cdrom", "/iso/x.iso")
    assert rc == 0, err
    sent = parse_domain_xml(b.xml["web1"])
    (cd,) = [d for d in sent.disk_specs if d.device == "cdrom"]
    assert cd.path == "/iso/x.iso" and "<boot order=\"1\" />" in b.xml["web1"]
    assert (fake.home / "conf" / "web1.xml").read_bytes() == before


def test_validate_reports_a_disk_two_domains_write(fake):
    fake.node("node1")
    fake.conf("web1", disks=["/srv/a.img"])
    fake.conf("web2", disks=["/srv/a.img"])
    rc, out, err = fake.havirt("-f", "json", "cluster", "validate")
    kinds = [(f["kind"], f["subject"]) for f in json.loads(out)["findings"]]
    assert rc == 1 and ("disk-shared", "web1+web2") in kinds


def test_an_edit_onto_another_domains_disk_is_refused_and_kept(fake, monkeypatch, tmp_path):
    fake.node("node1")
    fake.conf("web1", disks=["/srv/web1.img"])
    fake.conf("web2", disks=["/srv/web2.img"])
    before = (fake.home / "conf" / "web2.xml").read_bytes()
    editor = tmp_path / "editor"
    editor.write_text("#!/bin/sh\nsed -i 's|/srv/web2.img|/srv/web1.img|' \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(editor))
    rc, out, err = fake.havirt("domain", "edit", "web2")
    assert rc == 3 and "disk /srv/web1.img of web2 is also a disk of web1" in err
    kept = err.rsplit("the edit is in ", 1)[1].strip()
    assert "/srv/web1.img" in Path(kept).read_text()
    assert (fake.home / "conf" / "web2.xml").read_bytes() == before
