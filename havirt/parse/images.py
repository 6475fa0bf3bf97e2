"""What `qemu-img info` says about disk images (pure: text in, facts out).

The input is the output of remote.commands.images(): one '@@image N' section
per path, holding the path, its kind (file, block, missing, other) and, for a
file, `qemu-img info --backing-chain --output=json` (or qemu-img's error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from havirt.errors import ParseError
from havirt.parse.virsh import split_sections

KINDS = ("file", "block", "missing", "other")


@dataclass(frozen=True)
class SnapshotFact:
    """One internal snapshot of a qcow2 image (`qemu-img info`: "snapshots")."""

    name: str
    id: str
    date: int | None = None            # when it was taken, seconds since 1970 (UTC)
    vm_state_size: int = 0             # bytes of the guest's memory it holds (taken while running)


@dataclass(frozen=True)
class ImageFact:
    """One path as the node that read it sees it."""

    path: str
    kind: str                          # file, block, missing, other
    format: str | None = None          # qcow2, raw ...
    virtual_size: int | None = None    # bytes the guest sees
    actual_size: int | None = None     # bytes it takes on the storage
    backing: tuple[str, ...] = ()      # its backing chain, nearest first
    backing_formats: tuple[str | None, ...] = ()   # the format of each of them
    error: str | None = None           # qemu-img could not read it
    snapshots: tuple[SnapshotFact, ...] = ()   # its internal snapshots (not those of its backing files)


def _whole(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_image(section: str, where: str) -> ImageFact:
    """One '@@image' section -> ImageFact."""
    path, _, rest = section.partition("\n")
    kind, _, text = rest.partition("\n")
    if not path.startswith("/") or kind not in KINDS:
        raise ParseError(f"cannot parse the images of {where}: {section[:120]!r}")
    if kind != "file":
        return ImageFact(path, kind)
    lines = text.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln[:1] in ("[", "{")), len(lines))
    try:
        chain = json.loads("\n".join(lines[start:]))   # after any warning qemu-img printed
    except ValueError:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return ImageFact(path, kind, error=lines[-1] if lines else "qemu-img said nothing")
    if isinstance(chain, dict):
        chain = [chain]
    if not chain or not all(isinstance(c, dict) for c in chain):
        raise ParseError(f"cannot parse qemu-img info of {path} on {where}: not a list of objects")
    top, below = chain[0], [c for c in chain[1:] if c.get("filename")]
    backing = tuple(str(c["filename"]) for c in below)
    formats = tuple(_text(c.get("format")) for c in below)
    if not backing and top.get("full-backing-filename"):
        backing = (str(top["full-backing-filename"]),)
        formats = (_text(top.get("backing-filename-format")),)
    return ImageFact(path, kind, format=_text(top.get("format")),
                     virtual_size=_whole(top.get("virtual-size")),
                     actual_size=_whole(top.get("actual-size")), backing=backing,
                     backing_formats=formats, snapshots=_snapshots(top.get("snapshots"), path, where))


def _snapshots(items, path: str, where: str) -> tuple[SnapshotFact, ...]:
    """The "snapshots" list of one image; a snapshot without a name or an ID is
    not one qemu-img prints: the whole image's output is not understood."""
    if items is None:
        return ()
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ParseError(f"cannot parse the snapshots of {path} on {where}: not a list of objects")
    out = []
    for item in items:
        name, ident = item.get("name"), item.get("id")
        if not isinstance(name, str) or not isinstance(ident, str):
            raise ParseError(f"cannot parse the snapshots of {path} on {where}: {str(item)[:80]}")
        out.append(SnapshotFact(name, ident, _whole(item.get("date-sec")),
                                _whole(item.get("vm-state-size")) or 0))
    return tuple(out)


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_images(text: str, where: str) -> dict[str, ImageFact]:
    """The whole output -> {path: ImageFact}."""
    out = {}
    for key, section in split_sections(text).items():
        if key.startswith("image "):
            fact = parse_image(section, where)
            out[fact.path] = fact
    return out
