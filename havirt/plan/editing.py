"""Edits of a conf/ definition (pure): what `domain set`, `attach-*` and
`detach-*` write to conf/, and whether a running definition shows them.

An edit changes only its own elements: the rest of the file keeps its
comments, its order and its layout, and the file keeps libvirt's way of
writing XML (attributes in single quotes, `<x/>`), so that the history's
versions differ in the lines that changed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from havirt.parse.domxml import DomainSpec, interface_fields, maxima
from havirt.plan.definition import definition_text, parse_definition

# What an edit is about (Edit.kind).
MEMORY, VCPUS = "memory", "vcpus"
ATTACH_DISK, DETACH_DISK, ATTACH_NIC, DETACH_NIC = "attach-disk", "detach-disk", "attach-nic", "detach-nic"


@dataclass(frozen=True)
class Edit:
    """One change of conf/NAME.xml."""

    kind: str           # MEMORY, VCPUS, ATTACH_DISK, ...
    key: object         # MiB, vCPUs, a disk target (vdb), a MAC address
    live: bool          # made on the running domain too (False: conf/ only, for its next start)
    says: str           # what it is, for the admin: "memory 512 MiB"
    device: str = ""    # ATTACH_*: the device's XML, as `virsh attach-device` reads it


def disk_targets(text: str) -> list[str]:
    """Every <disk>'s target (vda, sda, ...) of a definition, CD-ROMs included."""
    root = ET.fromstring(text)
    return [t.get("dev") for t in root.findall("devices/disk/target") if t.get("dev")]


def macs(spec: DomainSpec) -> list[str]:
    """The MAC addresses of a definition's cards (its interfaces are "type:source:mac")."""
    return [i.split(":", 2)[2] for i in spec.interfaces if i.count(":") >= 2 and i.split(":", 2)[2]]


def shown(edit: Edit, live: DomainSpec) -> bool:
    """Whether the running definition `live` shows `edit`."""
    if edit.kind == MEMORY:
        return live.memory_mib == edit.key
    if edit.kind == VCPUS:
        return live.vcpus == edit.key
    if edit.kind in (ATTACH_DISK, DETACH_DISK):
        there = edit.key in {d.target for d in live.disk_specs}
        return there if edit.kind == ATTACH_DISK else not there
    there = edit.key in macs(live)
    return there if edit.kind == ATTACH_NIC else not there


def apply_edits(raw: bytes, where: str, edits) -> str:
    """conf/'s definition `raw` with `edits` made."""
    text = raw.decode("utf-8")
    max_mib, max_vcpus = maxima(text, where)
    root = parse_definition(text, where)
    for e in edits:
        if e.kind == MEMORY:
            _memory(root, e.key, max_mib)
        elif e.kind == VCPUS:
            _vcpus(root, e.key, max_vcpus)
        elif e.kind in (ATTACH_DISK, ATTACH_NIC):
            _attach(root, e.device)
        elif e.kind == DETACH_DISK:
            for disk in _devices(root).findall("disk"):
                target = disk.find("target")
                if target is not None and target.get("dev") == e.key:
                    _remove(_devices(root), disk)
        else:
            for iface in _devices(root).findall("interface"):
                if interface_fields(iface)[2] == e.key:
                    _remove(_devices(root), iface)
    return libvirt_style(definition_text(root))


# -- memory and vCPUs ----------------------------------------------------------------------

def _memory(root: ET.Element, mib: int, max_mib: int) -> None:
    """currentMemory `mib`; <memory> (the most it may have) raised to it if lower."""
    mem = root.find("memory")
    if mib > max_mib:
        mem.set("unit", "MiB")
        mem.text = str(mib)
    cur = root.find("currentMemory")
    if cur is None:
        cur = ET.Element("currentMemory")
        _insert(root, cur, list(root).index(mem) + 1)
    cur.set("unit", "MiB")
    cur.text = str(mib)


def _vcpus(root: ET.Element, vcpus: int, max_vcpus: int) -> None:
    """<vcpu current=N>: the maximum raised to N if lower; no `current` when equal."""
    el = root.find("vcpu")
    if el is None:
        el = ET.Element("vcpu")
        anchor = root.find("currentMemory") if root.find("currentMemory") is not None \
            else root.find("memory")
        _insert(root, el, list(root).index(anchor) + 1)
    top = max(max_vcpus, vcpus)
    el.text = str(top)
    if vcpus == top:
        el.attrib.pop("current", None)
    else:
        el.set("current", str(vcpus))


# -- devices -------------------------------------------------------------------------------

def _devices(root: ET.Element) -> ET.Element:
    devices = root.find("devices")
    if devices is None:
        devices = ET.Element("devices")
        _insert(root, devices, len(root))
    return devices


def _attach(root: ET.Element, device: str) -> None:
    """The device after the last of its kind (a card with none: after the disks)."""
    el = ET.fromstring(device)
    devices = _devices(root)
    kids = list(devices)
    kinds = ("disk",) if el.tag == "disk" else (el.tag, "disk")
    after = next((max(i for i, k in enumerate(kids) if k.tag == kind) for kind in kinds
                  if any(k.tag == kind for k in kids)), None)
    if after is None:     # first of its kind: after <emulator> if there is one
        after = next((i for i, k in enumerate(kids) if k.tag == "emulator"), -1)
    _insert(devices, el, after + 1)


def _indent_of(parent: ET.Element) -> str:
    """The whitespace before a child of `parent` ("\\n    "), as the file has it."""
    text = parent.text or ""
    return text if text.startswith("\n") and not text.strip() else "\n" + "  " * (2 if parent.tag == "devices" else 1)


def _insert(parent: ET.Element, el: ET.Element, index: int) -> None:
    """Insert `el` at `index` among `parent`'s children, laid out like its siblings."""
    indent = _indent_of(parent)
    for sub in el.iter():          # its own lines, shifted to the siblings' column
        if sub is not el and sub.tail is not None and not sub.tail.strip():
            sub.tail = sub.tail.replace("\n", indent)
        if sub.text is not None and not sub.text.strip() and len(sub):
            sub.text = sub.text.replace("\n", indent)
    kids = list(parent)
    if not kids:
        parent.text, el.tail = indent, indent[:-2] if len(indent) > 2 else "\n"
    elif index >= len(kids):
        el.tail, kids[-1].tail = kids[-1].tail, indent
    else:
        el.tail = indent
    parent.insert(index, el)


def _remove(parent: ET.Element, el: ET.Element) -> None:
    """Remove `el`; the line it stood on goes with it."""
    kids = list(parent)
    i = kids.index(el)
    if i == len(kids) - 1:
        if i > 0:
            kids[i - 1].tail = el.tail
        else:
            parent.text = el.tail
    parent.remove(el)


# -- libvirt's way of writing XML -------------------------------------------------------------

_COMMENT = re.compile(r"(<!--.*?-->)", re.DOTALL)
_TAG = re.compile(r"<[A-Za-z_][^<>]*>")
_ATTR = re.compile(r"(\s[^\s=<>]+)=\"([^\"']*)\"")


def libvirt_style(text: str) -> str:
    """ElementTree's serialisation as libvirt writes it: attributes in single
    quotes (where the value holds none), empty elements as `<x/>`. Comments
    are left as they are."""
    def tag(m):
        t = _ATTR.sub(r"\1='\2'", m.group(0))
        return t[:-3] + "/>" if t.endswith(" />") else t
    parts = _COMMENT.split(text)
    return "".join(p if i % 2 else _TAG.sub(tag, p) for i, p in enumerate(parts))


def changing(raw: bytes, where: str, edits) -> list[Edit]:
    """The edits that change conf/'s definition `raw` (a detach of a device
    conf/ does not have, memory it has already, change nothing)."""
    same = apply_edits(raw, where, [])
    return [e for e in edits if apply_edits(raw, where, [e]) != same]
