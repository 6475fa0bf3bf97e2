"""Pure parsers of what virsh prints. Each names the bad line when it fails."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from havirt.errors import ParseError
from havirt.parse import numbers
from havirt.parse.leases import is_lease_refusal, parse_leases  # noqa: F401 (is_lease_refusal: theirs)
from havirt.parse.numbers import whole, whole_in

# virDomainState, as `virsh domstats --state` prints it (state.state=N).
STATE_NAMES = {
    0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "in shutdown",
    5: "shut off", 6: "crashed", 7: "pmsuspended",
}
SHUT_OFF = STATE_NAMES[5]     # the one spelling of the off state (also what `virsh domstate` prints)
STATE_CODES = {v: k for k, v in STATE_NAMES.items()}

# The two libvirt drivers havirt asks on every node: virtual machines (virsh.uri)
# and containers (virsh.lxc_uri, libvirt's LXC driver). A domain is of one kind.
QEMU, LXC = "qemu", "lxc"


def active(state: str) -> bool:
    """The rule of presence: a domain counts as present on a node unless it is
    shut off (running, paused, arriving by migration, crashed ... all hold the
    domain's disks). Every layer asks this one function."""
    return state != SHUT_OFF

PAUSED = 3
# virDomainPausedReason values that mean a migration is under way.
PAUSED_MIGRATION = 2
PAUSED_POSTCOPY = 12
PAUSED_POSTCOPY_FAILED = 13
PAUSED_STARTING_UP = 11


@dataclass
class DomainFact:
    """One domain as a node reports it."""

    name: str
    state: str
    state_code: int
    reason: int = 0
    memory_mib: int | None = None
    vcpus: int | None = None
    persistent: bool = False
    autostart: bool = False
    driver: str = QEMU            # QEMU: a virtual machine; LXC: a container

    @property
    def active(self) -> bool:
        """Present on its node (see active above)."""
        return active(self.state)

    @property
    def container(self) -> bool:
        return self.driver == LXC

    @property
    def migrating(self) -> bool:
        return self.state_code == PAUSED and self.reason in (
            PAUSED_MIGRATION, PAUSED_POSTCOPY, PAUSED_POSTCOPY_FAILED)

    @property
    def standby(self) -> bool:
        """A paused copy that runs no guest yet: one end of a live migration
        (an incoming copy is first paused 'starting up', then 'migration')."""
        return self.migrating or (self.state_code == PAUSED and self.reason == PAUSED_STARTING_UP)


@dataclass
class NodeFacts:
    """What one node said in one scan session (or why it said nothing)."""

    name: str
    reachable: bool = True
    error: str | None = None
    hostname: str | None = None
    libvirt_version: str | None = None
    cpus: int | None = None
    memory_mib: int | None = None
    domains: dict[str, DomainFact] = field(default_factory=dict)
    paths: dict[str, bool] = field(default_factory=dict)
    xml: dict[str, str] = field(default_factory=dict)
    duration: float | None = None
    alive: bool = False                 # its own sshd answered (even if virsh then failed)
    leases: bool | None = None          # libvirt's lock manager in force (lockd + virtlockd)
    lockspace: str | None = None        # the folder of its leases
    lease_problem: str | None = None    # why leases are not in force
    lease_marks: dict[str, str] = field(default_factory=dict)  # node -> host, markers seen in it
    lxc: bool | None = None             # libvirt's LXC driver answered: the node offers containers
    lxc_error: str | None = None        # why it does not
    twins: list[DomainFact] = field(default_factory=list)   # containers named like a VM here

    def every_domain(self) -> list[DomainFact]:
        """Every domain the node reported, VMs and containers: a container
        named like a VM of the same node is in `twins`, never hidden."""
        return [*self.domains.values(), *self.twins]

    def named(self, name: str) -> list[DomainFact]:
        """The domains of that name here: one, or a VM and a container."""
        first = self.domains.get(name)
        return ([first] if first is not None else []) + [d for d in self.twins if d.name == name]


def _lines(text: str) -> list[str]:
    """Lines as the node printed them: split at '\\n' only. str.splitlines()
    also splits at characters a domain's name may hold (\\x1c, \\x85,
    \\u2028...), which would cut a name in two and make a node unreadable."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()     # the text ended with a line break, as splitlines() sees it
    return lines


def _bad(what: str, lineno: int, line: str, why: str) -> ParseError:
    return ParseError(f"cannot parse {what}, line {lineno}: {line.strip()[:120]!r}: {why}")


def parse_nodeinfo(text: str) -> dict:
    """`virsh nodeinfo` -> {'cpus': int, 'memory_mib': int, ...}."""
    out: dict = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise _bad("nodeinfo", n, line, "expected 'Key: value'")
        key, value = (s.strip() for s in line.split(":", 1))
        if key == "CPU(s)":
            out["cpus"] = whole_in(value, numbers.CPUS)
            if out["cpus"] is None:
                raise _bad("nodeinfo", n, line, f"CPU(s) is not a number of {numbers.CPUS}")
        elif key == "Memory size":
            m = re.fullmatch(r"([0-9]+)\s*KiB", value)
            out["memory_mib"] = _kib_to_mib(m.group(1)) if m else None
            if out["memory_mib"] is None:
                raise _bad("nodeinfo", n, line, f"memory size is not 'N KiB' ({numbers.MEMORY_MIB} MiB)")
        elif key == "CPU model":
            out["cpu_model"] = value
    if "cpus" not in out or "memory_mib" not in out:
        raise ParseError("cannot parse nodeinfo: no 'CPU(s)' or 'Memory size' line")
    return out


def parse_version(text: str) -> str | None:
    """`virsh version --daemon` -> the daemon's libvirt version, e.g. '9.0.0'."""
    for line in text.splitlines():
        m = re.match(r"\s*Running against daemon:\s*(\S+)", line)
        if m:
            return m.group(1)
    for line in text.splitlines():
        m = re.match(r"\s*Using library: libvirt\s+(\S+)", line)
        if m:
            return m.group(1)
    return None


def parse_names(text: str) -> list[str]:
    """`virsh list --name`: one name per line, exactly as printed (a name may
    hold spaces, even at its ends); blank lines ignored."""
    return [line for line in _lines(text) if line.strip()]


def _kib_to_mib(text: str) -> int | None:
    kib = whole(text)
    return kib // 1024 if kib is not None and kib // 1024 in numbers.MEMORY_MIB else None


# The numbers of domstats havirt reads: their range, and the unit they are in.
_DOMSTATS = {"state.state": (numbers.COUNT, 1), "state.reason": (numbers.COUNT, 1),
             "balloon.current": (numbers.MEMORY_MIB, 1024), "balloon.maximum": (numbers.MEMORY_MIB, 1024),
             "vcpu.current": (numbers.VCPUS, 1), "vcpu.maximum": (numbers.VCPUS, 1)}


def parse_domstats(text: str) -> dict[str, DomainFact]:
    """`virsh domstats --state --balloon --vcpu` -> {name: DomainFact}."""
    domains: dict[str, DomainFact] = {}
    current: dict | None = None
    name = None

    def finish():
        if name is None:
            return
        if "state.state" not in current:
            raise ParseError(f"cannot parse domstats: domain {name!r} has no state.state")
        code = current["state.state"]
        mem = current.get("balloon.current", current.get("balloon.maximum"))
        vcpus = current.get("vcpu.current", current.get("vcpu.maximum"))
        domains[name] = DomainFact(
            name=name, state=STATE_NAMES.get(code, f"state {code}"), state_code=code,
            reason=current.get("state.reason", 0),
            memory_mib=None if mem is None else mem // 1024,
            vcpus=vcpus)

    for n, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"Domain: '(.*)'", line.strip(" \t\r"), re.DOTALL)
        if m:
            finish()
            name, current = m.group(1), {}
            continue
        if name is None:
            raise _bad("domstats", n, line, "value before any 'Domain:' line")
        if "=" not in line:
            raise _bad("domstats", n, line, "expected key=value")
        key, value = (s.strip() for s in line.split("=", 1))
        if key in _DOMSTATS:
            number = whole(value)
            if number is None:
                raise _bad("domstats", n, line, f"{key} is not a number of 0 or more")
            rng, unit = _DOMSTATS[key]
            if number // unit not in rng:
                raise _bad("domstats", n, line, f"{key} is not a number of {rng}"
                           + (" MiB (in KiB)" if unit > 1 else ""))
            current[key] = number
    finish()
    return domains


def split_sections(text: str) -> dict[str, str]:
    """Split output made of '@@name' marker lines into {name: text}.

    The first section of a name wins: a later '@@name' line (say, inside a
    domain's XML description) can never replace what virsh said before it.
    """
    sections: dict[str, list[str]] = {}
    current = None
    for line in _lines(text):
        if line.startswith("@@"):
            name = line[2:].strip()
            current = None if name in sections else name
            if current is not None:
                sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def parse_paths(text: str) -> dict[str, bool]:
    """Lines '1 PATH' (exists) or '0 PATH' (missing)."""
    out = {}
    for n, line in enumerate(_lines(text), 1):
        if not line:
            continue
        flag, sep, path = line.partition(" ")
        if flag not in ("0", "1") or not sep:
            raise _bad("path check", n, line, "expected '0 PATH' or '1 PATH'")
        out[path] = flag == "1"
    return out


# The sections of the scan's one virsh process that its VM driver printed
# ('virsh': what it said before its first command, such as a failed
# connection). virsh's errors are merged into its output where they happen, so
# an error line in any of them means the node's VMs are not known.
VM_SECTIONS = ("virsh", "version", "nodeinfo", "persistent", "autostart", "domstats", "end")


def parse_scan(node: str, text: str, stderr: str = "", exit_code: int = 0) -> NodeFacts:
    """The output of the scan script (see remote.scan_script) -> NodeFacts.

    A node whose virsh failed (libvirtd down, or restarting between nodeinfo
    and domstats) is returned unreachable with the error: the domains there
    are unknown, which for safety is the same thing. The script relays
    virsh's stderr on stdout and exits non-zero itself when virsh failed, so
    the verdict stands even if the session's stderr were lost.
    """
    s = split_sections(text)
    facts = NodeFacts(name=node)
    facts.hostname = (s.get("hostname") or "").strip() or None
    status = (s.get("virsh-exit") or "").strip()
    err = [ln.strip() for k in VM_SECTIONS for ln in _lines(s.get(k, "")) if ln.startswith("error:")]
    err += [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("@@")]
    failed = [ln for ln in err if ln.startswith("error:")]
    complete = all(k in s for k in ("nodeinfo", "domstats", "end"))
    if not complete or failed or status != "0" or exit_code != 0:
        facts.reachable = False
        code = status if status not in ("", "0") else exit_code or status or "?"
        facts.error = "virsh failed: " + (failed[-1] if failed else err[-1] if err else
                                          f"exit {code}; output incomplete")
        return facts
    info = parse_nodeinfo(s["nodeinfo"])
    facts.cpus, facts.memory_mib = info["cpus"], info["memory_mib"]
    facts.libvirt_version = parse_version(s.get("version", ""))
    facts.domains = parse_domstats(s["domstats"])
    for name in parse_names(s.get("persistent", "")):
        if name in facts.domains:
            facts.domains[name].persistent = True
    for name in parse_names(s.get("autostart", "")):
        if name in facts.domains:
            facts.domains[name].autostart = True
    error = parse_lxc(s, facts)
    if error:
        facts.reachable, facts.error = False, error
        return facts
    facts.paths = parse_paths(s.get("paths", ""))
    facts.xml = {k[4:]: v for k, v in s.items() if k.startswith("xml ")}
    if "leases" in s:
        parse_leases(s["leases"], facts)
    return facts


# What virsh says when a node has no LXC driver (libvirtd without it, or
# the modular daemons without virtlxcd): the node offers no containers.
_NO_LXC = ("no connection driver available", "virtlxcd-sock")
_GONE = ("failed to get domain", "Domain not found")


def parse_lxc(sections: dict[str, str], facts: NodeFacts) -> str | None:
    """The containers part of the scan (see remote.lxc_part) -> facts: the
    node's containers join `facts.domains` (or `twins`, named like a VM of
    the node). Sections: 'lxc-connect' (what virsh's `connect` said),
    'lxc-list' (the names), 'lxc-end', and 'lxc-domain NAME' (dominfo). A
    node without the driver offers none; any other failure of the driver, or
    a listed container without its dominfo, makes its containers unknown: the
    error returned (the node then counts as not answering, since a container
    may run there)."""
    if "lxc-end" not in sections:
        return "libvirt's LXC driver did not answer (virsh ended before it)"
    lines = [ln.strip() for ln in _lines(sections.get("lxc-connect", "")) if ln.strip()]
    said = " ".join(lines)
    if any(ln.startswith("error:") for ln in lines):
        if any(m in said for m in _NO_LXC):
            facts.lxc, facts.lxc_error = False, said
            return None
        return "libvirt's LXC driver failed: " + said
    listed = sections.get("lxc-list", "")
    failed = [ln.strip() for ln in _lines(listed) if ln.startswith("error:")]
    if failed:
        return "libvirt's LXC driver failed: " + " ".join(failed)
    facts.lxc = True
    for name in parse_names(listed):
        text = sections.get(("lxc-domain " + name).strip())   # split_sections strips marker lines
        if text is None:
            return f"libvirt's LXC driver failed: no dominfo of the container {name!r} it listed"
        if any(m in text for m in _GONE):
            continue    # gone between the list and its dominfo (a transient container stopped)
        d = parse_dominfo(name, text)
        if d.name in facts.domains:
            facts.twins.append(d)
        else:
            facts.domains[d.name] = d
    return None


def parse_dominfo(name: str, text: str) -> DomainFact:
    """`virsh dominfo` of a container -> DomainFact. It holds its memory
    limit (Max memory): the LXC driver has no balloon, and what a container
    may use is what the fit rules count."""
    values = {}
    for n, line in enumerate(_lines(text), 1):
        if line.startswith("error:"):
            raise _bad(f"dominfo of {name!r}", n, line, "virsh failed")
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    state = values.get("State", "")
    if state not in STATE_CODES:
        raise ParseError(f"cannot parse dominfo of {name!r}: state {state[:40]!r} is not libvirt's")
    m = re.fullmatch(r"([0-9]+) KiB", values.get("Max memory", ""))
    memory = _kib_to_mib(m.group(1)) if m else None
    vcpus = whole_in(values.get("CPU(s)", ""), numbers.VCPUS)
    if memory is None or vcpus is None:
        raise ParseError(f"cannot parse dominfo of {name!r}: no 'Max memory: N KiB' or 'CPU(s): N'")
    return DomainFact(name=name, state=state, state_code=STATE_CODES[state], memory_mib=memory,
                      vcpus=vcpus, persistent=values.get("Persistent") == "yes",
                      autostart=values.get("Autostart") == "enable", driver=LXC)
