"""domxml.parse_domain_xml: units, current values, devices, and every refusal."""

from pathlib import Path

import pytest

from havirt.errors import DomainXMLError
from havirt.parse.domxml import DiskSpec, DomainSpec, parse_domain_xml

VIRSH = Path(__file__).resolve().parents[1] / "fixtures" / "virsh"


def xml(body="", name="web1", memory="<memory unit='MiB'>512</memory>", vcpu="<vcpu>2</vcpu>"):
    name_el = "" if name is None else f"<name>{name}</name>"
    return f"<domain type='kvm'>{name_el}{memory}{vcpu}<devices>{body}</devices></domain>"


def test_real_dumpxml_fixtures():
    for f in ("dumpxml-disk1.xml", "dumpxml-inactive-disk1.xml"):
        spec = parse_domain_xml((VIRSH / f).read_text(), f)
        assert spec == DomainSpec(name="disk1", memory_mib=48, vcpus=1,
                                  disks=["/work/main/tests/lab/run/shared/disk1.qcow2"],
                                  interfaces=[],
                                  leased=["/work/main/tests/lab/run/shared/disk1.qcow2"],
                                  disk_specs=[DiskSpec("/work/main/tests/lab/run/shared/disk1.qcow2",
                                                       format="qcow2", target="vda")])


@pytest.mark.parametrize("disk, leased, gaps", [
    ("<disk type='block' device='disk'><source dev='/dev/sdb'/></disk>", ["/dev/sdb"], []),
    ("<disk type='file' device='disk'><source file='/srv/a.img'/></disk>", ["/srv/a.img"], []),
    ("<disk type='file' device='cdrom'><source file='/iso/a.iso'/><readonly/></disk>", [], []),
    ("<disk type='file' device='cdrom'/>", [], []),
    ("<disk type='file' device='disk'><source file='/srv/s.img'/><shareable/></disk>", [], []),
    ("<disk type='network' device='disk'><source protocol='rbd' name='pool/img'/></disk>", [],
     ["pool/img: a network disk without a local path, not leased"]),
    ("<disk type='volume' device='disk'><source pool='p' volume='v1'/></disk>", [],
     ["v1: a volume disk without a local path, not leased"]),
])
def test_which_disks_leases_lock(disk, leased, gaps):
    spec = parse_domain_xml(xml(disk))
    assert (spec.leased, spec.lease_gaps) == (leased, gaps)


@pytest.mark.parametrize("memory, mib", [
    ("<memory>524288</memory>", 512),                          # KiB is the default
    ("<memory unit='KiB'>524288</memory>", 512),
    ("<memory unit='k'>524288</memory>", 512),
    ("<memory unit='MiB'>512</memory>", 512),
    ("<memory unit='M'>512</memory>", 512),
    ("<memory unit='GiB'>2</memory>", 2048),
    ("<memory unit='G'>2</memory>", 2048),
    ("<memory unit='bytes'>536870912</memory>", 512),
    ("<memory unit='b'>536870912</memory>", 512),
    ("<memory unit='KB'>1048576</memory>", 1000),              # 1048576000 bytes
    ("<memory unit='MB'>1000</memory>", 953),                  # 10^9 bytes, rounded down
    ("<memory unit='GB'>1</memory>", 953),
    ("<memory unit='TiB'>1</memory>", 1024 * 1024),
    ("<memory unit='MiB'> 64 </memory>", 64),                  # whitespace is fine
])
def test_memory_units(memory, mib):
    assert parse_domain_xml(xml(memory=memory)).memory_mib == mib


def test_current_memory_is_preferred():
    spec = parse_domain_xml(xml(memory="<memory unit='GiB'>4</memory>"
                                       "<currentMemory unit='MiB'>1024</currentMemory>"))
    assert spec.memory_mib == 1024


def test_vcpu_current_attribute_and_default():
    assert parse_domain_xml(xml(vcpu="<vcpu placement='static' current='2'>8</vcpu>")).vcpus == 2
    assert parse_domain_xml(xml(vcpu="<vcpu>8</vcpu>")).vcpus == 8
    assert parse_domain_xml(xml(vcpu="")).vcpus == 1


def test_disks_file_and_dev_and_interfaces():
    body = ("<disk type='file' device='disk'><source file='/srv/a.qcow2'/><target dev='vda'/></disk>"
            "<disk type='block' device='disk'><source dev='/dev/vg0/b'/><target dev='vdb'/></disk>"
            "<disk type='file' device='cdrom'><target dev='hdc'/></disk>"   # empty cdrom: no source
            "<interface type='bridge'><mac address='52:54:00:AA:BB:CC'/><source bridge='br0'/></interface>"
            "<interface type='network'><source network='default'/></interface>"
            "<interface type='user'/>")
    spec = parse_domain_xml(xml(body))
    assert spec.disks == ["/srv/a.qcow2", "/dev/vg0/b"]
    assert spec.interfaces == ["bridge:br0:52:54:00:aa:bb:cc", "network:default:", "user::"]


@pytest.mark.parametrize("text, message", [
    ("<domain><name>web1</name>", r"^conf/web1.xml: not valid XML \(no element found: line 1"),
    ("", r"^conf/web1.xml: not valid XML"),
    ("<domain type='kvm'><memory>1</memory></domain>", r"^conf/web1.xml: no <name>$"),
    (xml(name=""), r"^conf/web1.xml: no <name>$"),
    (xml(name="a b"), r"^conf/web1.xml: invalid domain name 'a b'"),
    (xml(name="x;rm"), r"^conf/web1.xml: invalid domain name 'x;rm'"),
    (xml(name=".."), r"^conf/web1.xml: invalid domain name '..'"),
    (xml(name="a..b"), r"^conf/web1.xml: invalid domain name 'a..b'"),
    (xml(name="-rf"), r"^conf/web1.xml: invalid domain name '-rf'"),
    (xml(name="x" * 200), r"^conf/web1.xml: invalid domain name "),
    (xml(memory=""), r"^conf/web1.xml: no <memory>$"),
    (xml(memory="<memory unit='MiB'>0</memory>"), r"<memory> of 0 MiB is not believable"),
    (xml(memory="<memory unit='KiB'>512</memory>"), r"<memory> of 0 MiB is not believable"),
    (xml(memory="<memory unit='TiB'>100</memory>"), r"<memory> of 104857600 MiB is not believable \(1 MiB to 16777216 MiB\)"),
    (xml(memory="<memory unit='MiB'>-5</memory>"), r"<memory> is not a whole number: '-5'"),
    (xml(memory="<memory unit='MiB'>lots</memory>"), r"<memory> is not a whole number: 'lots'"),
    (xml(memory="<memory unit='parsecs'>5</memory>"), r"<memory> has an unknown unit 'parsecs'"),
    (xml(memory="<memory unit='MiB'>512</memory><currentMemory unit='MiB'>0</currentMemory>"),
     r"<currentMemory> of 0 MiB is not believable"),
    (xml(vcpu="<vcpu>0</vcpu>"), r"<vcpu> must be 1 to 4096, not '0'"),
    (xml(vcpu="<vcpu>5000</vcpu>"), r"<vcpu> must be 1 to 4096, not '5000'"),
    (xml(vcpu="<vcpu>two</vcpu>"), r"<vcpu> must be 1 to 4096, not 'two'"),
    (xml(vcpu="<vcpu current='0'>2</vcpu>"), r"<vcpu> must be 1 to 4096, not '0'"),
    ("<network><name>web1</name></network>", r"the root element is <network>, not <domain>"),
    (xml("<disk type='file'><source file='/srv/a&#10;b'/></disk>"), r"a disk path holds a control character"),
])
def test_errors(text, message):
    with pytest.raises(DomainXMLError, match=message) as e:
        parse_domain_xml(text, "conf/web1.xml")
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2
