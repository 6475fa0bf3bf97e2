"""The lease probe of the scan (remote.LEASE_PROBE) and libvirt's lease refusal, read."""

from __future__ import annotations

from havirt.errors import ParseError


def _bad(lineno: int, line: str, why: str) -> ParseError:
    return ParseError(f"cannot parse lease probe, line {lineno}: {line.strip()[:120]!r}: {why}")


def parse_leases(text: str, facts) -> None:
    """The lease probe's `key=value` lines (see remote.LEASE_PROBE) -> facts."""
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise _bad(n, line, "expected key=value")
        if key == "seen":
            parts = value.split()
            if len(parts) == 3 and parts[0] == "havirt-lease-mark":
                facts.lease_marks[parts[1]] = parts[2]
        else:
            values[key] = value.strip()
    facts.lockspace = values.get("lockspace") or None
    facts.lease_problem = _lease_problem(values)
    facts.leases = facts.lease_problem is None


def _lease_problem(v: dict[str, str]) -> str | None:
    """Why libvirt's leases are not in force on the node (None: they are).

    In force: the running libvirtd loaded the lockd lock manager (its memory
    map shows lockd.so: qemu.conf's lock_manager is read only at start),
    virtlockd listens, a file lockspace is set and exists, and qemu-lockd.conf
    did not change since libvirtd started."""
    loaded = v.get("lockd_loaded")
    if loaded != "yes":
        if v.get("lock_manager") != "lockd":
            return "qemu.conf has no lock_manager = \"lockd\""
        if loaded == "no":
            return "qemu.conf asks for lock_manager = \"lockd\" but libvirtd has not loaded it: restart libvirtd"
        return "cannot tell which lock manager libvirtd uses (no /run/libvirtd.pid)"
    if not v.get("lockspace"):
        return "qemu-lockd.conf has no file_lockspace_dir"
    if v.get("auto_disk_leases") == "0":
        return "qemu-lockd.conf sets auto_disk_leases = 0"
    if v.get("virtlockd") != "yes":
        return "virtlockd is not running (no /run/libvirt/virtlockd-sock)"
    if "marked" not in v:
        return f"the lockspace folder {v['lockspace']} does not exist"
    if v["marked"] != "yes":
        return f"cannot write in the lockspace {v['lockspace']}"
    if v.get("lockd_conf_newer") == "yes":
        return "qemu-lockd.conf changed after libvirtd started: restart libvirtd"
    return None


def is_lease_refusal(text: str) -> bool:
    """Did libvirt refuse to start a domain because another host holds its lease?
    (virtlockd: "resource busy: Lockspace resource '<sha256>' is locked")."""
    return "Lockspace resource" in text and "is locked" in text
