"""Reading domain XML from conf/ (pure: text in, facts out)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from havirt.errors import DomainXMLError
from havirt.names import check_name
from havirt.parse.numbers import DOMAIN_MEMORY_MIB, DOMAIN_VCPUS, whole, whole_in
from havirt.parse.virsh import LXC, QEMU

_UNITS = {
    "b": 1, "bytes": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000**2,
    "m": 1024**2, "mib": 1024**2, "gb": 1000**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
}


@dataclass(frozen=True)
class DiskSpec:
    """One <disk> with a local path, as the rule of ownership sees it."""

    path: str
    device: str = "disk"          # disk, cdrom, floppy, lun
    kind: str = "file"            # the type attribute: file, block, ...
    format: str | None = None     # <driver type=...>: qcow2, raw
    target: str | None = None     # vda, sda ...
    readonly: bool = False        # <readonly/>, or a CD-ROM or floppy
    shareable: bool = False       # <shareable/>
    backing: tuple[str, ...] = ()  # <backingStore> chain in conf/, nearest first

    @property
    def writes(self) -> bool:
        return not self.readonly


@dataclass
class DomainSpec:
    name: str
    memory_mib: int
    vcpus: int
    disks: list[str] = field(default_factory=list)       # source file/dev paths
    interfaces: list[str] = field(default_factory=list)  # "type:source:mac"
    leased: list[str] = field(default_factory=list)      # writable disks a lease locks for one host
    lease_gaps: list[str] = field(default_factory=list)  # writable disks no lease can lock, and why
    path: str | None = None      # the conf/ file it was read from
    raw: bytes | None = None     # its exact bytes: what is sent on stdin, read once
    disk_specs: list[DiskSpec] = field(default_factory=list)   # the disks with a path
    driver: str = QEMU           # <domain type='lxc'>: LXC, a container; else a virtual machine

    @property
    def container(self) -> bool:
        return self.driver == LXC


def _memory_mib(where: str, el) -> int:
    text = (el.text or "").strip()
    unit = el.get("unit", "KiB").lower()
    if unit not in _UNITS:
        raise DomainXMLError(f"{where}: <{el.tag}> has an unknown unit {el.get('unit')!r}")
    if not (text.isascii() and text.isdigit()):   # int() would also take '٣٢'
        raise DomainXMLError(f"{where}: <{el.tag}> is not a whole number: {text[:30]!r}")
    number = whole(text)
    mib = None if number is None else number * _UNITS[unit] // (1024 ** 2)
    if mib not in DOMAIN_MEMORY_MIB:
        size = f"{mib} MiB" if mib is not None else f"{len(text)} digits"
        raise DomainXMLError(f"{where}: <{el.tag}> of {size} is not believable "
                             f"({DOMAIN_MEMORY_MIB.low} MiB to {DOMAIN_MEMORY_MIB.high} MiB)")
    return mib


def domain_from_bytes(raw: bytes, where: str) -> DomainSpec:
    """The rules of every conf/ file, on bytes: UTF-8, then parse_domain_xml."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DomainXMLError(f"{where}: not UTF-8 text") from None
    spec = parse_domain_xml(text, where)
    spec.raw = raw
    return spec


def disk_path(disk) -> str | None:
    """The file or device a <disk> element uses (None: no source, e.g. an empty CD)."""
    src = disk.find("source")
    if src is None:
        return None
    return src.get("file") or src.get("dev") or None


def interface_fields(iface) -> tuple[str, str, str]:
    """(type, bridge or network or device, MAC in lower case) of an <interface>.
    The source named after the type comes first: a running definition adds
    the bridge of a libvirt network beside its name (network='default' bridge='virbr0')."""
    src = iface.find("source")
    source = ""
    if src is not None:
        source = (src.get(iface.get("type", "")) or src.get("bridge") or src.get("network")
                  or src.get("dev") or "")
    mac = iface.find("mac")
    return (iface.get("type", ""), source,
            (mac.get("address") or "").lower() if mac is not None else "")


def parse_domain_xml(text: str, where: str = "domain XML") -> DomainSpec:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise DomainXMLError(f"{where}: not valid XML ({e})") from None
    if root.tag != "domain":
        raise DomainXMLError(f"{where}: the root element is <{root.tag}>, not <domain>")
    name_el = root.find("name")
    if name_el is None or not (name_el.text or "").strip():
        raise DomainXMLError(f"{where}: no <name>")
    name = name_el.text.strip()
    try:
        check_name("domain", name)
    except Exception as e:
        raise DomainXMLError(f"{where}: {e}") from None
    mem_el = root.find("currentMemory")
    if mem_el is None:
        mem_el = root.find("memory")
    if mem_el is None:
        raise DomainXMLError(f"{where}: no <memory>")
    memory = _memory_mib(where, mem_el)
    vcpu_el = root.find("vcpu")
    vtext = (vcpu_el.get("current") or vcpu_el.text or "").strip() if vcpu_el is not None else "1"
    vcpus = whole_in(vtext, DOMAIN_VCPUS)
    if vcpus is None:
        raise DomainXMLError(f"{where}: <vcpu> must be {DOMAIN_VCPUS}, not {vtext[:20]!r}")
    disks, leased, gaps, details = [], [], [], []
    for disk in root.findall("devices/disk"):
        path = disk_path(disk)
        if path:
            if any(ord(c) < 32 for c in path):
                raise DomainXMLError(f"{where}: a disk path holds a control character")
            disks.append(path)
            details.append(disk_spec(disk, path))
        gap = _lease_gap(disk, path)
        if gap:
            gaps.append(gap)
        elif path and disk.find("shareable") is None and disk.find("readonly") is None \
                and disk.get("device", "disk") not in ("cdrom", "floppy"):
            leased.append(path)
    interfaces = [":".join(interface_fields(i)) for i in root.findall("devices/interface")]
    driver = LXC if root.get("type") == "lxc" else QEMU
    if driver == LXC:    # a container's folders (its root...) must be seen where it starts
        disks += [p for p in _mounted_folders(where, root) if p not in disks]
    return DomainSpec(name=name, memory_mib=memory, vcpus=vcpus, disks=disks,
                      interfaces=interfaces, leased=leased, lease_gaps=gaps, disk_specs=details,
                      driver=driver)


def _mounted_folders(where: str, root) -> list[str]:
    """The host folders and files a container mounts (<filesystem type='mount'>
    or 'file': its root, its shares), as the rule of disks sees them."""
    out = []
    for fs in root.findall("devices/filesystem"):
        src = fs.find("source")
        path = (src.get("dir") or src.get("file") or "") if src is not None else ""
        if path and fs.get("type", "mount") in ("mount", "file"):
            if any(ord(c) < 32 for c in path):
                raise DomainXMLError(f"{where}: a filesystem source holds a control character")
            out.append(path)
    return out


def maxima(text: str, where: str = "domain XML") -> tuple[int, int]:
    """(MiB, vCPUs) a definition allows at most: <memory> and the <vcpu> count
    (its `current` attribute is what runs; parse_domain_xml reads that)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise DomainXMLError(f"{where}: not valid XML ({e})") from None
    mem_el, vcpu_el = root.find("memory"), root.find("vcpu")
    if mem_el is None:
        raise DomainXMLError(f"{where}: no <memory>")
    vtext = (vcpu_el.text or "").strip() if vcpu_el is not None else "1"
    vcpus = whole_in(vtext, DOMAIN_VCPUS)
    if vcpus is None:
        raise DomainXMLError(f"{where}: <vcpu> must be {DOMAIN_VCPUS}, not {vtext[:20]!r}")
    return _memory_mib(where, mem_el), vcpus


def disk_spec(disk, path: str) -> DiskSpec:
    """A <disk> element with a local path -> DiskSpec (its <backingStore> chain too)."""
    device = disk.get("device", "disk")
    driver, target = disk.find("driver"), disk.find("target")
    backing, store = [], disk.find("backingStore")
    while store is not None and len(backing) < 64:
        below = disk_path(store)
        if not below:
            break
        backing.append(below)
        store = store.find("backingStore")
    return DiskSpec(path=path, device=device, kind=disk.get("type", "file"),
                    format=driver.get("type") if driver is not None else None,
                    target=target.get("dev") if target is not None else None,
                    readonly=disk.find("readonly") is not None or device in ("cdrom", "floppy"),
                    shareable=disk.find("shareable") is not None, backing=tuple(backing))


def _lease_gap(disk, path: str | None) -> str | None:
    """A writable disk libvirt's lockd leases cannot lock (None: they can, or
    the disk needs no lock). Leases are taken on a disk's local path; read-only
    disks need none, and shareable ones are meant for several writers."""
    shared = disk.find("shareable") is not None or disk.find("readonly") is not None
    if shared or disk.get("device", "disk") in ("cdrom", "floppy") or path:
        return None
    return f"{_network_name(disk)}: a {disk.get('type', '?')} disk without a local path, not leased"


def _network_name(disk) -> str:
    src = disk.find("source")
    if src is None:
        return "a disk without a source"
    return src.get("name") or src.get("volume") or src.get("protocol") or "a network disk"
