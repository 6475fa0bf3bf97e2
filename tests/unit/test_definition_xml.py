"""The domain XML havirt writes (plan/definition.py), checked by libvirt's own
schema with the real `virt-xml-validate`, and the options that ask for it."""

import random
import shutil
import subprocess

import pytest
from conftest import uuid_of

from havirt.errors import UsageError
from havirt.parse.domxml import parse_domain_xml
from havirt.plan.definition import ClonedDisk, NewDisk, cloned_xml, new_domain_xml, with_cdrom
from havirt.plan.making import DiskRequest, parse_disk, parse_network


def validates(tmp_path, text: str) -> None:
    """libvirt's schema accepts it (virt-xml-validate needs xmllint: libxml2-utils)."""
    tool = shutil.which("virt-xml-validate")
    assert tool and shutil.which("xmllint"), "virt-xml-validate and xmllint must be installed (make unit)"
    path = tmp_path / "domain.xml"
    path.write_text(text)
    p = subprocess.run([tool, str(path), "domain"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr + text


def full_new(rng=None):
    return new_domain_xml("web3", 2048, 2, [NewDisk("/srv/pool/web3-1.qcow2"),
                                            NewDisk("/dev/disk/by-id/lun7", "block", "raw")],
                          [("bridge", "br0"), ("network", "default")], cdrom="/srv/iso/d&i.iso",
                          os_variant="http://debian.org/debian/12", used_macs={"52:54:00:00:00:01"},
                          rng=rng)


def test_a_new_domain_validates_and_reads_back(tmp_path):
    text = full_new()
    validates(tmp_path, text)
    spec = parse_domain_xml(text)
    assert (spec.name, spec.memory_mib, spec.vcpus) == ("web3", 2048, 2)
    assert [(d.path, d.kind, d.format, d.target, d.readonly) for d in spec.disk_specs] == [
        ("/srv/pool/web3-1.qcow2", "file", "qcow2", "vda", False),
        ("/dev/disk/by-id/lun7", "block", "raw", "vdb", False),
        ("/srv/iso/d&i.iso", "file", "raw", "sda", True)]
    assert [i.rsplit(":", 6)[0] for i in spec.interfaces] == ["bridge:br0", "network:default"]
    for want in ("<model type='virtio'/>", "<console type='pty'>", "bus='virtio'",
                 "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>",
                 "<boot dev='hd'/>\n    <boot dev='cdrom'/>", "machine='q35'"):
        assert want in text
    # spare PCIe root ports for what is attached while it runs (the lab plugs a disk and a card in)
    assert text.count("<controller type='pci' model='pcie-root-port'/>") == 8
    minimal = new_domain_xml("tiny", 64, 1)
    validates(tmp_path, minimal)
    assert "cdrom" not in minimal and "<interface" not in minimal and "metadata" not in minimal


def test_mac_addresses_are_new():
    class Stuck(random.Random):     # offers a used address first
        def __init__(self):
            super().__init__(1)
            self.first = [0, 0, 1]

        def randrange(self, n):
            return self.first.pop(0) if self.first else super().randrange(n)
    text = full_new(Stuck())
    macs = [i[-17:] for i in parse_domain_xml(text).interfaces]
    assert "52:54:00:00:00:01" not in macs and len(set(macs)) == 2
    assert all(m.startswith("52:54:00:") for m in macs)


def test_a_clone_gets_a_name_uuid_macs_and_its_images(tmp_path):
    src = full_new().encode()
    text = cloned_xml(src, "src", "web4", {"/srv/pool/web3-1.qcow2": ClonedDisk(
        "/srv/pool/web4-1.qcow2", (("/srv/pool/web3-1.qcow2", "qcow2"), ("/srv/pool/m.qcow2", "raw")))},
        used_macs=set())
    validates(tmp_path, text)
    old, new = parse_domain_xml(src.decode()), parse_domain_xml(text)
    assert new.name == "web4" and uuid_of(text) != uuid_of(src.decode())
    assert not set(new.interfaces) & set(old.interfaces)
    assert new.disk_specs[0].path == "/srv/pool/web4-1.qcow2"
    assert new.disk_specs[0].backing == ("/srv/pool/web3-1.qcow2", "/srv/pool/m.qcow2")
    assert new.disk_specs[1:] == old.disk_specs[1:]          # the LUN and the ISO as they were
    assert 'xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"' in text


@pytest.mark.parametrize("machine, target", [("q35", "sda' bus='sata"), ("pc", "hda' bus='ide")])
def test_a_cdrom_first_to_boot(tmp_path, machine, target):
    raw = (f"<domain type='kvm'><name>g</name><memory>65536</memory><os><type arch='x86_64' "
           f"machine='{machine}'>hvm</type><boot dev='hd'/><boot dev='network'/></os><devices>"
           "<disk type='file' device='disk'><source file='/a.img'/><target dev='vda' bus='virtio'/>"
           "</disk><interface type='network'><source network='default'/></interface></devices>"
           "</domain>").encode()
    text = with_cdrom(raw, "g", "/iso/x.iso").decode()
    validates(tmp_path, text)
    spec = parse_domain_xml(text)
    assert spec.disks == ["/a.img", "/iso/x.iso"]
    assert "<boot dev" not in text
    assert text.index('<boot order="1" />') > text.index("x.iso")
    assert text.index('<boot order="2" />') > text.index("/a.img") < text.index("x.iso")
    assert text.index('<boot order="3" />') > text.index("<interface")
    assert target.replace("'", '"') in text
    again = with_cdrom(text.encode(), "g", "/iso/y.iso").decode()    # the drive is reused
    assert parse_domain_xml(again).disks == ["/a.img", "/iso/y.iso"]


@pytest.mark.parametrize("text, want", [
    ("size=20", DiskRequest(size_mib=20 * 1024)),
    ("size=0.5,pool=fast", DiskRequest(size_mib=512, pool="fast")),
    ("path=/dev/sdb", DiskRequest(path="/dev/sdb")),
])
def test_disk_options(text, want):
    assert parse_disk(text) == want


@pytest.mark.parametrize("text", ["size=20,path=/x", "pool=fast", "size=-1", "size=1e3",
                                  "path=x.img", "path=/a/../etc/shadow", "size=1,size=2", "bus=virtio",
                                  "size=1,pool=../x"])
def test_bad_disk_options(text):
    with pytest.raises(UsageError):
        parse_disk(text)


def test_network_options():
    assert parse_network("bridge=br0") == ("bridge", "br0")
    assert parse_network("network=default") == ("network", "default")
    for bad in ("bridge=br0,network=x", "bridge=", "tap=x", "bridge=a'b"):
        with pytest.raises(UsageError):
            parse_network(bad)
