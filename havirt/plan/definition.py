"""Domain XML that havirt writes (pure): a new domain, a clone's definition,
a definition with a CD-ROM attached for one start.

No virt-install: the XML is built here, a modern KVM domain that libvirt's
schema accepts (`virt-xml-validate`, in the unit tests).
"""

from __future__ import annotations

import io
import random
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from havirt.errors import DomainXMLError
from havirt.names import xml_attr
from havirt.parse.domxml import DomainSpec, domain_from_bytes

OSINFO = "http://libosinfo.org/xmlns/libvirt/domain/1.0"
MAC_PREFIX = "52:54:00"          # the locally administered prefix qemu and libvirt use


@dataclass(frozen=True)
class NewDisk:
    """A disk of a new definition: an image havirt makes, or a path used as it is."""

    path: str
    kind: str = "file"        # file or block
    format: str = "qcow2"     # qcow2 or raw


def new_mac(used, rng=None) -> str:
    """52:54:00:xx:xx:xx that is not in `used` (MACs in lower case)."""
    rng = rng or random.SystemRandom()
    used = {m.lower() for m in used}
    while True:
        mac = MAC_PREFIX + "".join(f":{rng.randrange(256):02x}" for _ in range(3))
        if mac not in used:
            return mac


def new_uuid(rng=None) -> str:
    """A random UUID (version 4), drawn from `rng` when given."""
    if rng is None:
        return str(uuidlib.uuid4())
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


def _disk_lines(disk: NewDisk, target: str) -> list[str]:
    src = "dev" if disk.kind == "block" else "file"
    extra = " io='native'" if disk.kind == "block" else " discard='unmap'"
    return [f"    <disk type='{disk.kind}' device='disk'>",
            f"      <driver name='qemu' type='{disk.format}' cache='none'{extra}/>",
            f"      <source {src}={xml_attr(disk.path)}/>",
            f"      <target dev='{target}' bus='virtio'/>",
            "    </disk>"]


def _cdrom_lines(path: str, target: str = "sda") -> list[str]:
    return ["    <disk type='file' device='cdrom'>",
            "      <driver name='qemu' type='raw'/>",
            f"      <source file={xml_attr(path)}/>",
            f"      <target dev='{target}' bus='sata'/>",
            "      <readonly/>",
            "    </disk>"]


def disk_xml(disk: NewDisk, target: str) -> str:
    """One disk as a device of its own (what `virsh attach-device` reads)."""
    return "\n".join(line[4:] for line in _disk_lines(disk, target)) + "\n"


def interface_xml(kind: str, source: str, mac: str) -> str:
    """One network card as a device of its own."""
    return "\n".join(line[4:] for line in _interface_lines(kind, source, mac)) + "\n"


def _interface_lines(kind: str, source: str, mac: str) -> list[str]:
    return [f"    <interface type='{kind}'>",
            f"      <mac address='{mac}'/>",
            f"      <source {kind}={xml_attr(source)}/>",
            "      <model type='virtio'/>",
            "    </interface>"]


HOTPLUG_PORTS = 8     # spare PCIe root ports of a new domain: disks and cards attached while it runs


def new_domain_xml(name: str, memory_mib: int, vcpus: int, disks=(), networks=(),
                   cdrom: str | None = None, os_variant: str | None = None,
                   used_macs=(), virt_type: str = "kvm", rng=None) -> str:
    """The definition of a new domain: q35, virtio disks and network cards, a
    serial console (what `domain console` reaches), VNC on localhost, the
    guest agent's channel, and HOTPLUG_PORTS spare PCIe root ports (on q35 a
    hot-plugged disk or card needs a free one, and libvirt adds only those
    the definition's own devices take). networks: (bridge|network, name) pairs; each gets a
    MAC address not in `used_macs`. With a CD-ROM the disks boot first, then
    the CD-ROM: an empty disk falls through to the installer."""
    macs = set(used_macs)
    lines = [f"<domain type='{virt_type}'>", f"  <name>{name}</name>",
             f"  <uuid>{uuidlib.uuid4()}</uuid>"]
    if os_variant:
        lines += ["  <metadata>", f"    <libosinfo:libosinfo xmlns:libosinfo='{OSINFO}'>",
                  f"      <libosinfo:os id={xml_attr(os_variant)}/>",
                  "    </libosinfo:libosinfo>", "  </metadata>"]
    lines += [f"  <memory unit='MiB'>{memory_mib}</memory>",
              f"  <currentMemory unit='MiB'>{memory_mib}</currentMemory>",
              f"  <vcpu placement='static'>{vcpus}</vcpu>",
              "  <os>", "    <type arch='x86_64' machine='q35'>hvm</type>",
              "    <boot dev='hd'/>", *(["    <boot dev='cdrom'/>"] if cdrom else []), "  </os>",
              "  <features>", "    <acpi/>", "    <apic/>", "  </features>",
              "  <clock offset='utc'>", "    <timer name='rtc' tickpolicy='catchup'/>",
              "    <timer name='pit' tickpolicy='delay'/>", "    <timer name='hpet' present='no'/>",
              "  </clock>",
              "  <on_poweroff>destroy</on_poweroff>", "  <on_reboot>restart</on_reboot>",
              "  <on_crash>destroy</on_crash>", "  <devices>"]
    for i, disk in enumerate(disks):
        lines += _disk_lines(disk, "vd" + chr(ord("a") + i))
    if cdrom:
        lines += _cdrom_lines(cdrom)
    for kind, source in networks:
        mac = new_mac(macs, rng)
        macs.add(mac)
        lines += _interface_lines(kind, source, mac)
    lines += ["    <controller type='pci' index='0' model='pcie-root'/>",
              *["    <controller type='pci' model='pcie-root-port'/>"] * HOTPLUG_PORTS]
    lines += ["    <serial type='pty'>", "      <target type='isa-serial' port='0'/>", "    </serial>",
              "    <console type='pty'>", "      <target type='serial' port='0'/>", "    </console>",
              "    <channel type='unix'>",
              "      <target type='virtio' name='org.qemu.guest_agent.0'/>", "    </channel>",
              "    <input type='tablet' bus='usb'/>",
              "    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>",
              "      <listen type='address' address='127.0.0.1'/>", "    </graphics>",
              "    <video>", "      <model type='virtio'/>", "    </video>",
              "    <memballoon model='virtio'/>",
              "    <rng model='virtio'>", "      <backend model='random'>/dev/urandom</backend>",
              "    </rng>", "  </devices>", "</domain>"]
    return "\n".join(lines) + "\n"


# -- changing a definition ---------------------------------------------------------------

def parse_definition(text: str, where: str) -> ET.Element:
    """Parse keeping comments and the prefixes of the document's namespaces."""
    try:
        for _, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):
            if prefix:
                ET.register_namespace(prefix, uri)
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
        return ET.fromstring(text, parser=parser)
    except ET.ParseError as e:
        raise DomainXMLError(f"{where}: not valid XML ({e})") from None


def definition_text(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode") + "\n"


def _backing_store(chain) -> ET.Element | None:
    """<backingStore> elements for a chain of (path, format), nearest first."""
    top = None
    for path, fmt in reversed(list(chain)):
        store = ET.Element("backingStore", type="file")
        ET.SubElement(store, "format", type=fmt or "raw")
        ET.SubElement(store, "source", file=path)
        if top is not None:
            store.append(top)
        top = store
    return top


@dataclass(frozen=True)
class ClonedDisk:
    """What becomes of one disk of the source in the clone."""

    path: str                        # the clone's image
    chain: tuple[tuple[str, str], ...] = ()   # linked: (path, format) below it, nearest first


def cloned_xml(raw: bytes, where: str, name: str, disks: dict[str, ClonedDisk],
               used_macs=(), rng=None) -> str:
    """The source's definition under a new name and UUID, with new MAC
    addresses (none in `used_macs`), a new generation ID if it had one, and
    each disk of `disks` (source path -> ClonedDisk) on its new qcow2 image.
    `rng` (a random.Random) draws the UUIDs and MACs: a seeded one makes the
    same definition again (a dry run then shows what --yes writes)."""
    root = parse_definition(raw.decode("utf-8"), where)
    root.find("name").text = name
    uuid_el = root.find("uuid")
    if uuid_el is None:
        uuid_el = ET.Element("uuid")
        root.insert(list(root).index(root.find("name")) + 1, uuid_el)
    uuid_el.text = new_uuid(rng)
    genid = root.find("genid")
    if genid is not None:
        genid.text = new_uuid(rng)
    macs = set(used_macs)
    for iface in root.findall("devices/interface"):
        mac_el = iface.find("mac")
        if mac_el is None:
            mac_el = ET.SubElement(iface, "mac")
        mac_el.set("address", new_mac(macs, rng))
        macs.add(mac_el.get("address"))
    for disk in root.findall("devices/disk"):
        src = disk.find("source")
        path = src.get("file") or src.get("dev") if src is not None else None
        if path not in disks:
            continue
        new = disks[path]
        disk.set("type", "file")
        src.attrib.pop("dev", None)
        src.set("file", new.path)
        driver = disk.find("driver")
        if driver is None:
            driver = ET.SubElement(disk, "driver", name="qemu")
        driver.set("type", "qcow2")
        for old in disk.findall("backingStore"):
            disk.remove(old)
        store = _backing_store(new.chain)
        if store is not None:
            disk.insert(list(disk).index(src) + 1, store)
    ET.indent(root, space="  ")
    return definition_text(root)


def with_cdrom(raw: bytes, where: str, iso: str) -> bytes:
    """The definition with the CD-ROM `iso` attached and first in the boot
    order (for one start; conf/ is not changed). An existing CD-ROM drive
    gets the disc; otherwise a drive is added (SATA on q35, else IDE)."""
    root = parse_definition(raw.decode("utf-8"), where)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    order = _boot_order(root)
    cdrom = next((d for d in devices.findall("disk") if d.get("device") == "cdrom"), None)
    if cdrom is None:
        cdrom = _new_cdrom(root, devices)
    for el in cdrom.findall("source"):
        cdrom.remove(el)
    cdrom.set("type", "file")
    cdrom.insert(0, ET.Element("source", file=iso))
    for parent in [root.find("os"), *devices]:
        for el in parent.findall("boot") if parent is not None else ():
            parent.remove(el)
    for i, dev in enumerate([cdrom] + [d for d in order if d is not cdrom], 1):
        ET.SubElement(dev, "boot", order=str(i))
    return definition_text(root).encode()


def cdrom_spec(spec: DomainSpec, iso: str) -> tuple[DomainSpec, str]:
    """`spec` to start once with the CD-ROM `iso` first to boot, and how it
    differs from its conf/ file (said in the dry run and the audit log)."""
    run = domain_from_bytes(with_cdrom(spec.raw, spec.path or spec.name, iso),
                            f"{spec.name} with the CD-ROM {iso}")
    run.path = spec.path
    return run, f"with the CD-ROM {iso} attached, first to boot (conf/ unchanged)"


def _boot_order(root: ET.Element) -> list[ET.Element]:
    """The devices a definition boots from, in order (os/boot or <boot order>)."""
    devices = root.find("devices")
    if devices is None:
        return []
    numbered = [(int(b.get("order", "0")), dev) for dev in devices
                for b in dev.findall("boot") if b.get("order", "").isdigit()]
    if numbered:
        return [dev for _, dev in sorted(numbered, key=lambda x: x[0])]
    first = {"hd": [d for d in devices.findall("disk") if d.get("device", "disk") == "disk"],
             "cdrom": [d for d in devices.findall("disk") if d.get("device") == "cdrom"],
             "network": devices.findall("interface")}
    out = []
    for b in root.findall("os/boot"):
        found = first.get(b.get("dev"), [])
        if found and found[0] not in out:
            out.append(found[0])
    return out


def _new_cdrom(root: ET.Element, devices: ET.Element) -> ET.Element:
    type_el = root.find("os/type")
    q35 = type_el is not None and "q35" in (type_el.get("machine") or "")
    bus, prefix = ("sata", "sd") if q35 else ("ide", "hd")
    taken = {t.get("dev") for t in devices.iter("target")}
    dev = next(f"{prefix}{chr(c)}" for c in range(ord("a"), ord("z") + 1)
               if f"{prefix}{chr(c)}" not in taken)
    cdrom = ET.Element("disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "driver", name="qemu", type="raw")
    ET.SubElement(cdrom, "target", dev=dev, bus=bus)
    ET.SubElement(cdrom, "readonly")
    disks = devices.findall("disk")
    devices.insert(list(devices).index(disks[-1]) + 1 if disks else 0, cdrom)
    return cdrom
