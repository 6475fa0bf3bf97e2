"""domain attach-disk, detach-disk, attach-nic, detach-nic and resize-disk
against the fake cluster and its storage: live where the domain runs and in
conf/, conf/ alone while it is off everywhere; every refusal; a guest that
does not let go of a device."""

import json
import re

from fake_live import GIB, POOL, WEB1, V, conf_text, drift_of, history, running, said_no, setup
from fakes import home_snapshot

from havirt.parse.domxml import parse_domain_xml

NEW_IMAGE = (f"ssh root@10.0.0.1 '[ ! -e {POOL}/web1-2.qcow2 ] && [ ! -L {POOL}/web1-2.qcow2 ] || "
             f"{{ echo {POOL}/web1-2.qcow2 exists: not overwritten >&2; exit 1; }}; qemu-img create -q -f "
             f"qcow2 {POOL}/web1-2.qcow2 2G || {{ rm -f {POOL}/web1-2.qcow2; exit 1; }}'")
VDB = ("<disk type='file' device='disk'>\n"
       "  <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\n"
       f"  <source file='{POOL}/web1-2.qcow2'/>\n"
       "  <target dev='vdb' bus='virtio'/>\n"
       "</disk>")


def disks(fake, node="node1"):
    return parse_domain_xml(fake.nodes[node].xml["web1"]).disks


# -- attach-disk ---------------------------------------------------------------------------

def test_attach_disk_dry_run_prints_the_image_and_the_device_on_stdin(fake):
    setup(fake)
    before = home_snapshot(fake.home)
    rc, out, err = fake.havirt("domain", "attach-disk", "web1", "--disk", "size=2")
    assert rc == 0, err
    assert out.split("\n")[:-1] == [
        NEW_IMAGE,
        f"ssh root@10.0.0.1 '{V} attach-device web1 /dev/stdin --live' <<'EOF'", *VDB.split("\n"), "EOF",
        f"# then conf/web1.xml is written with disk vdb ({POOL}/web1-2.qcow2) (the previous version kept "
        "in conf/.history/web1/; -v prints the new definition)",
        "dry run: nothing was changed; add --yes (havirt --yes ...) to execute"]
    assert home_snapshot(fake.home) == before and list(fake.storage.images) == [f"{POOL}/web1-1.qcow2"]


def test_attach_a_new_image_live_and_in_conf_then_detach_it(fake):
    setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", "attach-disk", "web1", "--disk", "size=2")
    assert rc == 0, err
    assert fake.storage.images[f"{POOL}/web1-2.qcow2"].virtual_size == 2 * GIB
    assert disks(fake) == [f"{POOL}/web1-1.qcow2", f"{POOL}/web1-2.qcow2"]
    assert parse_domain_xml(conf_text(fake)).disks == disks(fake)
    assert conf_text(fake) == WEB1.replace("    <memballoon", "    " + VDB.replace(
        "\n", "\n    ") + "\n    <memballoon")
    assert out.splitlines() == [
        f"create the image {POOL}/web1-2.qcow2 (2 GiB) on node1: done",
        f"attach {POOL}/web1-2.qcow2 to web1 as vdb on node1: done",
        f"web1 on node1 runs with disk vdb ({POOL}/web1-2.qcow2) (its running definition, read again)",
        f"saved conf/web1.xml (the previous version is in conf/.history/web1/{history(fake)[0]})"]
    assert drift_of(fake) == []
    logged = json.loads(fake.audit_lines()[-1])
    assert logged["remote"] == f"{V} attach-device web1 /dev/stdin --live <<'EOF'\n{VDB}\nEOF"
    rc, out, err = fake.havirt("--yes", "domain", "detach-disk", "web1", "vdb")
    assert rc == 0, err
    assert disks(fake) == [f"{POOL}/web1-1.qcow2"] and conf_text(fake) == WEB1
    assert f"{POOL}/web1-2.qcow2" in fake.storage.images               # the image is kept
    assert out.splitlines()[0] == f"{POOL}/web1-2.qcow2 is kept: detaching a disk never removes its image"
    assert f"web1 on node1 runs without disk vdb ({POOL}/web1-2.qcow2) (its running definition, read " \
           "again)" in out
    assert len(history(fake)) == 2 and drift_of(fake) == []


def test_attach_a_given_path_names_the_nodes_that_do_not_see_it(fake):
    setup(fake, nodes=("node1", "node2", "node3"))
    fake.storage.block("/dev/lun7", "node1", "node2")
    rc, out, err = fake.havirt("--yes", "domain", "attach-disk", "web1", "--disk", "path=/dev/lun7",
                               "--target", "vdc")
    assert rc == 0, err
    assert out.splitlines()[0] == ("disk /dev/lun7 of web1 is missing on node3 (it could not start or "
                                   "migrate there)")
    assert disks(fake) == [f"{POOL}/web1-1.qcow2", "/dev/lun7"]
    assert "<disk type='block' device='disk'>" in conf_text(fake) and "<source dev='/dev/lun7'/>" in \
        conf_text(fake) and "<target dev='vdc' bus='virtio'/>" in conf_text(fake)


def test_attach_to_a_domain_off_everywhere_writes_conf_only(fake):
    setup(fake, run_on=None)
    rc, out, err = fake.havirt("domain", "attach-disk", "web1", "--disk", "size=2")
    assert rc == 0 and out.splitlines()[0] == NEW_IMAGE and "attach-device" not in out, out
    rc, out, err = fake.havirt("--yes", "domain", "attach-disk", "web1", "--disk", "size=2")
    assert rc == 0, err
    assert [c for _, c in fake.changing_calls() if "attach" in c] == []
    assert parse_domain_xml(conf_text(fake)).disks == [f"{POOL}/web1-1.qcow2", f"{POOL}/web1-2.qcow2"]
    assert out.splitlines()[-1] == f"web1 is off on every node: it starts with disk vdb ({POOL}/web1-2.qcow2)"
    rc, out, err = fake.havirt("--yes", "domain", "detach-disk", "web1", "vdb")
    assert rc == 0 and conf_text(fake) == WEB1, err


def test_attach_disk_refusals_say_why_and_change_nothing(fake):
    setup(fake, nodes=("node1", "node2", "node3"))
    (fake.home / "conf" / "web2.xml").write_text(WEB1.replace("web1", "web2").replace(
        "web2-1.qcow2", "shared.qcow2"))
    fake.storage.add(f"{POOL}/shared.qcow2")
    fake.storage.block("/dev/lun8", "node2")
    cases = [
        (["--disk", f"path={POOL}/shared.qcow2"], 3, f"disk {POOL}/shared.qcow2 of web1 is also a disk of web2"),
        (["--disk", "path=/dev/lun8"], 3, "refused: disk: /dev/lun8 does not exist on node1"),
        (["--disk", "path=/srv/none.img"], 3, "disk /srv/none.img: no node that answered sees it"),
        (["--disk", "size=1", "--target", "vda"], 2, "web1 has a disk vda already (in conf/ or in its "
                                                      "running definition)"),
        (["--disk", "size=1", "--target", "sdb"], 2, "--target 'sdb': a virtio disk's name, vdb, vdc, ..."),
        (["--disk", "size=1,pool=fast"], 2, "unknown pool 'fast' (pools in config.yaml: main)"),
        (["--disk", "size=0"], 2, "--disk size=0: a number of GiB, more than 0, at most 65536"),
        (["--disk", "path=relative.img"], 2, "give an absolute path"),
    ]
    for extra, code, fragment in cases:
        said_no(fake, ["--yes", "domain", "attach-disk", "web1", *extra], code, fragment)
    fake.storage.mounts[POOL] = {"node2", "node3"}        # the pool is not seen where web1 runs
    said_no(fake, ["--yes", "domain", "attach-disk", "web1", "--disk", "size=1"], 3,
            f"disk: {POOL} does not exist on node1")
    assert list(fake.storage.images) == [f"{POOL}/web1-1.qcow2", f"{POOL}/shared.qcow2"]


def test_a_failed_attach_removes_the_new_image_again_and_leaves_conf(fake):
    setup(fake)
    fake.nodes["node1"].domains["web1"].attach_fails = "internal error: No more available PCI slots"
    before = conf_text(fake)
    rc, out, err = fake.havirt("--yes", "domain", "attach-disk", "web1", "--disk", "size=2")
    assert rc == 1 and err.count("\n") == 1, err
    assert err == (f"havirt: attach {POOL}/web1-2.qcow2 to web1 as vdb failed on node1: exit 1: error: "
                   f"internal error: No more available PCI slots; the images it had made were removed "
                   f"again ({POOL}/web1-2.qcow2); conf/ unchanged\n")
    assert f"{POOL}/web1-2.qcow2" not in fake.storage.images and conf_text(fake) == before
    assert history(fake) == []


def test_an_image_that_could_not_be_made_is_never_removed(fake):
    setup(fake)
    fake.storage.failing.add(f"{POOL}/web1-2.qcow2")
    before = conf_text(fake)
    rc, out, err = fake.havirt("--yes", "domain", "attach-disk", "web1", "--disk", "size=2")
    assert rc == 1 and err == (f"havirt: create the image {POOL}/web1-2.qcow2 (2 GiB) failed on node1: exit "
                               f"1: qemu-img: {POOL}/web1-2.qcow2: No space left on device; nothing was "
                               "made, conf/ unchanged\n"), err
    assert [c for _, c in fake.changing_calls() if "rm --" in c or "attach" in c] == []
    assert conf_text(fake) == before and disks(fake) == [f"{POOL}/web1-1.qcow2"]


# -- detach-disk -------------------------------------------------------------------------------

def with_vdb(fake, lets_go=True):
    setup(fake)
    fake.storage.add(f"{POOL}/web1-2.qcow2")
    assert fake.havirt("--yes", "domain", "attach-disk", "web1", "--disk", f"path={POOL}/web1-2.qcow2")[0] == 0
    fake.nodes["node1"].domains["web1"].lets_go = lets_go
    return conf_text(fake)


def test_detach_disk_dry_run_prints_the_detach_and_the_wait(fake):
    with_vdb(fake)
    rc, out, err = fake.havirt("domain", "detach-disk", "web1", "vdb", "--timeout", "45")
    assert rc == 0, err
    assert out.splitlines()[1:4] == [
        f"ssh root@10.0.0.1 '{V} detach-disk web1 vdb --live'",
        "ssh root@10.0.0.1 'end=$(( $(date +%s) + 45 )); while :; do s=$(virsh -c qemu:///system "
        "domblklist web1 2>&1) || { echo \"$s\" >&2; exit 2; }; ! echo \"$s\" | grep -qF \" vdb \" && "
        "exit 0; [ \"$(date +%s)\" -ge \"$end\" ] && { echo disk vdb is still attached to web1 after 45 s: "
        "libvirt asked the guest, which has not let go of it >&2; exit 1; }; sleep 1; done'",
        f"# then conf/web1.xml is written without disk vdb ({POOL}/web1-2.qcow2) (the previous version "
        "kept in conf/.history/web1/; -v prints the new definition)"]


def test_a_guest_that_keeps_the_disk_is_said_and_conf_keeps_it(fake):
    before = with_vdb(fake, lets_go=False)
    rc, out, err = fake.havirt("--yes", "domain", "detach-disk", "web1", "vdb")
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err == ("havirt: wait up to 20 s for the guest of web1 to let go of vdb failed on node1: exit "
                   "1: disk vdb is still attached to web1 after 20 s: libvirt asked the guest, which has "
                   f"not let go of it; conf/web1.xml keeps disk vdb ({POOL}/web1-2.qcow2) while it is "
                   "attached\n")
    assert conf_text(fake) == before and f"{POOL}/web1-2.qcow2" in disks(fake)
    assert drift_of(fake) == []
    fake.nodes["node1"].domains["web1"].lets_go = True      # it lets go later: a second detach finishes
    assert fake.havirt("--yes", "domain", "detach-disk", "web1", "vdb")[0] == 0
    assert conf_text(fake) == WEB1


def test_detach_of_a_disk_only_one_definition_has(fake):
    before = with_vdb(fake)
    fake.nodes["node1"].xml["web1"] = WEB1                  # gone from the running domain already
    rc, out, err = fake.havirt("--yes", "domain", "detach-disk", "web1", "vdb")
    assert rc == 0, err
    assert out.splitlines()[0] == (f"disk vdb ({POOL}/web1-2.qcow2) is not attached to the running web1: "
                                   "conf/ alone changes")
    assert conf_text(fake) == WEB1 and [c for _, c in fake.changing_calls() if "detach" in c] == []
    fake.nodes["node1"].xml["web1"] = before                  # now only the running domain has it
    rc, out, err = fake.havirt("--yes", "domain", "detach-disk", "web1", "vdb")
    assert rc == 0, err
    assert "is attached to the running web1 but not in conf/: conf/ stays as it is" in out
    assert "saved" not in out and conf_text(fake) == WEB1 and disks(fake) == [f"{POOL}/web1-1.qcow2"]


def test_detach_of_an_unknown_disk_is_a_usage_error(fake):
    setup(fake)
    said_no(fake, ["domain", "detach-disk", "web1", "vdz"], 2,
            "web1 has no disk vdz (conf/: vda; running: vda)")
    for args in (["detach-disk", "web1", "fda"], ["resize-disk", "web1", "vd b", "9"]):
        said_no(fake, ["domain", *args], 2, "havirt names disks vdX, sdX, hdX or xvdX (domain info lists them)")


# -- network cards -----------------------------------------------------------------------------

def test_attach_and_detach_a_network_card(fake):
    setup(fake)
    rc, out, err = fake.havirt("domain", "attach-nic", "web1", "--network", "bridge=br0")
    assert rc == 0, err
    mac = re.search(r"<mac address='(52:54:00(?::[0-9a-f]{2}){3})'/>", out).group(1)
    assert out.split("\n")[:-1] == [
        f"ssh root@10.0.0.1 '{V} attach-device web1 /dev/stdin --live' <<'EOF'",
        "<interface type='bridge'>", f"  <mac address='{mac}'/>", "  <source bridge='br0'/>",
        "  <model type='virtio'/>", "</interface>", "EOF",
        f"# then conf/web1.xml is written with network card {mac} (bridge br0) (the previous version "
        "kept in conf/.history/web1/; -v prints the new definition)",
        "dry run: nothing was changed; add --yes (havirt --yes ...) to execute"]
    rc, out, err = fake.havirt("--yes", "domain", "attach-nic", "web1", "--network", "network=default")
    assert rc == 0, err
    (iface,) = parse_domain_xml(fake.nodes["node1"].xml["web1"]).interfaces
    assert iface.startswith("network:default:52:54:00:")
    assert parse_domain_xml(conf_text(fake)).interfaces == [iface] and drift_of(fake) == []
    mac = iface.split(":", 2)[2]
    rc, out, err = fake.havirt("domain", "detach-nic", "web1", mac.upper())
    assert rc == 0, err
    assert out.splitlines()[:2] == [
        f"ssh root@10.0.0.1 '{V} detach-interface web1 network --mac {mac} --live'",
        "ssh root@10.0.0.1 'end=$(( $(date +%s) + 20 )); while :; do s=$(virsh -c qemu:///system "
        "domiflist web1 2>&1) || { echo \"$s\" >&2; exit 2; }; ! echo \"$s\" | grep -qiF "
        f"{mac} && exit 0; [ \"$(date +%s)\" -ge \"$end\" ] && {{ echo network card {mac} is still attached "
        "to web1 after 20 s: libvirt asked the guest, which has not let go of it >&2; exit 1; }; sleep 1; "
        "done'"]
    rc, out, err = fake.havirt("--yes", "domain", "detach-nic", "web1", mac)
    assert rc == 0, err
    assert parse_domain_xml(fake.nodes["node1"].xml["web1"]).interfaces == [] and conf_text(fake) == WEB1


def test_a_guest_that_keeps_its_card_is_said_and_conf_keeps_it(fake):
    setup(fake)
    assert fake.havirt("--yes", "domain", "attach-nic", "web1", "--network", "bridge=br0")[0] == 0
    before = conf_text(fake)
    mac = parse_domain_xml(before).interfaces[0].split(":", 2)[2]
    fake.nodes["node1"].domains["web1"].lets_go = False
    rc, out, err = fake.havirt("--yes", "domain", "detach-nic", "web1", mac, "--timeout", "5")
    assert rc == 1 and err.count("\n") == 1, err
    assert err.endswith(f"network card {mac} is still attached to web1 after 5 s: libvirt asked the guest, "
                        f"which has not let go of it; conf/web1.xml keeps network card {mac} while it is "
                        "attached\n"), err
    assert conf_text(fake) == before


def test_nic_refusals(fake):
    setup(fake)
    said_no(fake, ["domain", "detach-nic", "web1", "52:54:00:zz:00:01"], 2,
            "'52:54:00:zz:00:01': a MAC address is six pairs of hex digits, as 52:54:00:12:34:56")
    said_no(fake, ["domain", "detach-nic", "web1", "52:54:00:00:00:01"], 2,
            "web1 has no network card 52:54:00:00:00:01 (conf/: none; running: none)")
    said_no(fake, ["domain", "attach-nic", "web1", "--network", "bridge=br 0"], 2, "--network")
    said_no(fake, ["domain", "attach-nic", "web1"], 2, "--network")


# -- resize-disk -------------------------------------------------------------------------------

def test_resize_a_running_domains_disk_with_blockresize(fake):
    setup(fake)
    rc, out, err = fake.havirt("domain", "resize-disk", "web1", "vda", "2.5")
    assert rc == 0, err
    assert out.splitlines() == ["conf/web1.xml unchanged: a disk's size is its image's",
                                f"ssh root@10.0.0.1 '{V} blockresize web1 vda 2560M'",
                                "dry run: nothing was changed; add --yes (havirt --yes ...) to execute"]
    assert fake.storage.images[f"{POOL}/web1-1.qcow2"].virtual_size == GIB
    before = conf_text(fake)
    rc, out, err = fake.havirt("--yes", "domain", "resize-disk", "web1", "vda", "3")
    assert rc == 0, err
    assert fake.storage.images[f"{POOL}/web1-1.qcow2"].virtual_size == 3 * GIB
    assert out.splitlines()[1:] == ["grow vda of web1 to 3 GiB on node1: done",
                                    f"{POOL}/web1-1.qcow2 has 3 GiB now"]
    assert conf_text(fake) == before and history(fake) == []


def test_resize_a_disk_of_a_domain_off_everywhere_with_qemu_img(fake):
    setup(fake, run_on=None)
    rc, out, err = fake.havirt("domain", "resize-disk", "web1", "vda", "20")
    assert rc == 0, err
    assert out.splitlines()[1] == f"ssh root@10.0.0.1 'qemu-img resize -q -f qcow2 {POOL}/web1-1.qcow2 20G'"
    rc, out, err = fake.havirt("--yes", "domain", "resize-disk", "web1", "vda", "20")
    assert rc == 0, err
    assert fake.storage.images[f"{POOL}/web1-1.qcow2"].virtual_size == 20 * GIB
    assert out.splitlines()[-1] == f"{POOL}/web1-1.qcow2 has 20 GiB now"


def test_resize_refusals_name_both_sizes_and_the_reason(fake):
    xml = WEB1.replace("    <memballoon", "    <disk type='block' device='disk'><source dev='/dev/lun7'/>"
                       "<target dev='vdb' bus='virtio'/></disk>\n"
                       f"    <disk type='file' device='cdrom'><source file='{POOL}/d.iso'/>"
                       "<target dev='sda' bus='sata'/><readonly/></disk>\n"
                       f"    <disk type='file' device='disk'><source file='{POOL}/shared.qcow2'/>"
                       "<target dev='vdc' bus='virtio'/><shareable/></disk>\n    <memballoon")
    setup(fake, xml=xml)
    fake.storage.block("/dev/lun7", "node1", "node2")
    fake.storage.add(f"{POOL}/d.iso", format="raw")
    fake.storage.add(f"{POOL}/shared.qcow2")
    fake.storage.images[f"{POOL}/web1-1.qcow2"].virtual_size = 20 * GIB + 512
    cases = [
        (["vda", "20"], 3, "refused: vda of web1 has 20.00 GiB (21474836992 bytes); 20 GiB would not grow "
                           "it (havirt never shrinks a disk)"),
        (["vda", "10"], 3, "10 GiB would not grow it"),
        (["vdb", "30"], 3, "refused: vdb of web1 is a block device (/dev/lun7): havirt grows image files "
                           "only (grow the device itself, then virsh blockresize)"),
        (["sda", "30"], 3, f"refused: sda of web1 is read-only ({POOL}/d.iso): havirt grows only a disk "
                           "that one domain writes"),
        (["vdc", "30"], 3, "vdc of web1 is shareable"),
        (["vdz", "30"], 2, "web1 has no disk vdz with an image (vda, vdb, sda, vdc)"),
        (["vda", "0"], 2, "SIZE_GIB 0: a number of GiB, more than 0, at most 65536"),
        (["vda", "huge"], 2, "SIZE_GIB huge"),
    ]
    for extra, code, fragment in cases:
        said_no(fake, ["--yes", "domain", "resize-disk", "web1", *extra], code, fragment)
    del fake.nodes["node1"].domains["web1"]              # off: the same rules
    said_no(fake, ["--yes", "domain", "resize-disk", "web1", "vda", "20"], 3, "would not grow it")


def test_what_no_node_sees_is_refused_off_or_running(fake):
    setup(fake, run_on=None)
    del fake.storage.images[f"{POOL}/web1-1.qcow2"]
    said_no(fake, ["--yes", "domain", "resize-disk", "web1", "vda", "5"], 3,
            f"refused: {POOL}/web1-1.qcow2: no node that answered sees it as an image file")
    fake.storage.mounts.clear()
    said_no(fake, ["--yes", "domain", "attach-disk", "web1", "--disk", "size=1"], 3,
            f"refused: no node that answered sees the pool main ({POOL})")


def test_resize_of_a_base_of_linked_clones_is_refused(fake):
    setup(fake, run_on=None)
    clone = WEB1.replace("web1</name>", "web2</name>").replace(
        f"<source file='{POOL}/web1-1.qcow2'/>",
        f"<source file='{POOL}/web2-1.qcow2'/><backingStore type='file'><format type='qcow2'/>"
        f"<source file='{POOL}/web1-1.qcow2'/></backingStore>")
    (fake.home / "conf" / "web2.xml").write_text(clone)
    fake.storage.add(f"{POOL}/web2-1.qcow2", backing=f"{POOL}/web1-1.qcow2", backing_format="qcow2")
    said_no(fake, ["--yes", "domain", "resize-disk", "web1", "vda", "5"], 3,
            f"web1 writes {POOL}/web1-1.qcow2, the backing file of web2's disk {POOL}/web2-1.qcow2")
    rc, out, err = fake.havirt("--yes", "domain", "resize-disk", "web2", "vda", "5")   # the clone may grow
    assert rc == 0, err


def test_resize_when_the_running_disk_differs_from_conf_is_refused(fake):
    setup(fake)
    fake.nodes["node1"].xml["web1"] = WEB1.replace("web1-1.qcow2", "other.qcow2")
    said_no(fake, ["domain", "resize-disk", "web1", "vda", "5"], 3,
            f"vda of the running web1 is {POOL}/other.qcow2, conf/ says {POOL}/web1-1.qcow2: settle that "
            "first (domain info)")


def test_what_else_runs_on_the_node_counts_in_the_growth(fake):
    setup(fake)
    running(fake, "node1", "web9", WEB1.replace("web1</name>", "web9</name>"), memory_mib=6400)
    said_no(fake, ["domain", "set", "web1", "--memory", "1024"], 3,
            "memory: node1 can give domains 7168 MiB (8192 MiB total - 1024 MiB reserve), 6912 MiB are "
            "allocated to 2 running domain(s) (web1 holds 512 MiB); web1 at 1024 MiB needs 512 MiB more: "
            "256 MiB short")
    assert fake.havirt("--yes", "domain", "set", "web1", "--memory", "768")[0] == 0
