"""A fresh picture of the cluster, built from one scan session per node."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import NodeUnreachable, ParseError
from .parsers import DomainFact, NodeFacts, parse_scan
from .remote import scan_script
from .state import NodeRecord, State, now_iso


@dataclass
class Cluster:
    """What every scanned node said, moments ago."""

    nodes: dict[str, NodeFacts] = field(default_factory=dict)

    def copies(self, domain: str) -> list[tuple[str, DomainFact]]:
        """Every node where `domain` is present (running, paused, incoming...)."""
        return [(n, f.domains[domain]) for n, f in sorted(self.nodes.items())
                if f.reachable and domain in f.domains and f.domains[domain].active]

    def unreachable(self) -> list[NodeFacts]:
        return [f for _, f in sorted(self.nodes.items()) if not f.reachable]

    def allocated(self, node: str) -> tuple[int, int, int]:
        """(memory MiB, vCPUs, count) of the domains present on `node`."""
        mem = vcpus = count = 0
        for d in self.nodes[node].domains.values():
            if d.active:
                mem += d.memory_mib or 0
                vcpus += d.vcpus or 0
                count += 1
        return mem, vcpus, count

    def duplicates(self) -> dict[str, list[str]]:
        """Domains whose guest runs on two or more nodes -> every node with a copy.

        A live migration shows a domain on two nodes for a while, the guest
        on one and a paused copy (standby) on the other: not a double run.
        """
        seen: dict[str, list[tuple[str, DomainFact]]] = {}
        for n, f in sorted(self.nodes.items()):
            if not f.reachable:
                continue
            for d in f.domains.values():
                if d.active:
                    seen.setdefault(d.name, []).append((n, d))
        return {d: [n for n, _ in copies] for d, copies in sorted(seen.items())
                if sum(not fact.standby for _, fact in copies) > 1}


def scan_nodes(runner, cfg, names, paths=(), dump_running=False) -> Cluster:
    """ONE session per node, all in parallel; unreachable nodes are facts too."""
    commands = {n: scan_script(cfg, paths, dump_running) for n in names}
    results = runner.run_many(commands)
    cluster = Cluster()
    for name in names:
        res = results[name]
        if isinstance(res, NodeUnreachable):
            cluster.nodes[name] = NodeFacts(name=name, reachable=False, error=res.reason)
            continue
        try:
            facts = parse_scan(name, res.stdout, res.stderr)
        except ParseError as e:
            facts = NodeFacts(name=name, reachable=False, error=f"unexpected output: {e}")
        facts.duration = res.duration
        cluster.nodes[name] = facts
    return cluster


def check_identity(cluster: Cluster, state: State) -> None:
    """A node must still be the host it was: an address that now reaches
    another machine would hide the real node's domains. A node that answers
    with another hostname than recorded, or the same hostname as another
    node, is treated as unknown (like a node that did not answer)."""
    seen: dict[str, list[str]] = {}
    for name, facts in sorted(cluster.nodes.items()):
        if not facts.reachable or not facts.hostname:
            continue
        recorded = state.nodes[name].hostname
        if recorded and facts.hostname != recorded:
            facts.reachable = False
            facts.error = (f"answers as host {facts.hostname!r}, recorded as {recorded!r}: check "
                           f"its address (havirt node set {name} --address ...)")
            continue
        seen.setdefault(facts.hostname, []).append(name)
    for host, names in seen.items():
        if len(names) > 1:
            for name in names:
                facts = cluster.nodes[name]
                facts.reachable = False
                facts.error = (f"nodes {', '.join(names)} all answer as host {host!r}: "
                               "check their addresses")


@dataclass
class Finding:
    severity: str          # critical, error, warning
    kind: str              # a short stable key, e.g. duplicate, unreachable
    subject: str           # the node or domain concerned
    message: str
    fix: str = ""


def usable_memory(rec: NodeRecord, facts: NodeFacts | None, reserve_mib: int) -> int | None:
    """The memory domains may use: the admin's cap, or total minus the reserve."""
    total = facts.memory_mib if facts is not None and facts.memory_mib else rec.memory_mib
    if rec.memory_cap_mib is not None:
        return rec.memory_cap_mib if total is None else min(rec.memory_cap_mib, total)
    return None if total is None else max(0, total - reserve_mib)


def record_scan(state: State, cluster: Cluster, conf_names: set[str]) -> list[Finding]:
    """Fold a scan into the state; return the anomalies it showed.

    Domains last seen on a node that did not answer stay where they were,
    marked stale: they are never silently dropped.
    """
    findings: list[Finding] = []
    when = now_iso()
    answered = {n for n, f in cluster.nodes.items() if f.reachable}
    for name, facts in sorted(cluster.nodes.items()):
        rec = state.nodes[name]
        if facts.reachable:
            rec.reachable, rec.error, rec.last_scan = True, None, when
            rec.cpus, rec.memory_mib = facts.cpus, facts.memory_mib
            rec.hostname, rec.libvirt_version = facts.hostname, facts.libvirt_version
        else:
            rec.reachable, rec.error = False, facts.error
            stale = sorted(d.name for d in state.domains.values() if d.node == name)
            findings.append(Finding(
                "error", "unreachable", name,
                f"node {name} did not answer: {facts.error}"
                + (f"; last known domains kept as stale: {', '.join(stale)}" if stale else ""),
                "check the node, its sshd and libvirtd"))
    # Where is every domain now, on the nodes that answered?
    present: dict[str, list[tuple[str, DomainFact]]] = {}
    for n in sorted(answered):
        for d in cluster.nodes[n].domains.values():
            if d.active:
                present.setdefault(d.name, []).append((n, d))
            if d.persistent or d.autostart:
                what = "set to autostart" if d.autostart else "defined persistent"
                findings.append(Finding(
                    "warning", "persistent", d.name,
                    f"domain {d.name} is {what} on {n}: libvirt could start it behind havirt's back",
                    f"on {n}: virsh autostart --disable {d.name}; virsh undefine {d.name}"
                    " (after 'havirt domain import' if conf/ has no copy)"))
    duplicates = cluster.duplicates()
    for dname, where in sorted(present.items()):
        rec = state.domain(dname)
        node, fact = ([(n, d) for n, d in where if not d.standby] or where)[0]
        rec.node, rec.state, rec.stale = node, fact.state, False
        rec.memory_mib, rec.vcpus, rec.last_seen = fact.memory_mib, fact.vcpus, when
        rec.conflict = duplicates.get(dname, [])
        if rec.conflict:
            findings.append(Finding(
                "critical", "duplicate", dname,
                f"DOMAIN {dname} RUNS ON {len(where)} NODES AT ONCE: "
                f"{', '.join(n for n, _ in where)}",
                "destroy all copies but one now: shared disks are being corrupted"))
        if dname not in conf_names:
            findings.append(Finding(
                "warning", "no-xml", dname,
                f"domain {dname} runs on {node} but conf/ has no {dname}.xml",
                f"havirt domain import {dname} --from {node}"))
    for dname, rec in state.domains.items():
        if dname in present:
            continue
        if rec.node in answered or (rec.node is None and answered == set(state.nodes)):
            rec.node, rec.state, rec.stale, rec.conflict = None, "shut off", False, []
        elif rec.node is not None and rec.node in cluster.nodes:
            rec.stale = True
    return findings

