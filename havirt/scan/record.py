"""What a scan means: its facts folded into the state, and the anomalies it
shows (a double run, a silent node, a domain without XML ...)."""

from __future__ import annotations

from havirt.names import quote_argv, valid_name
from havirt.parse.virsh import LXC, QEMU, SHUT_OFF, STATE_NAMES, DomainFact, NodeFacts
from havirt.scan.cluster import Cluster, Finding
from havirt.store.state import State, now_iso


def lockspace_peers(cluster: Cluster, state: State) -> dict[str, list[str]]:
    """For every node that answered with leases in force: the other nodes with
    leases that share its lockspace (each sees the other's marker in it). A
    node this scan did not read counts as it was at its last scan."""
    def now(m):
        f = cluster.nodes.get(m)
        return f if f is not None and f.reachable else None

    def host(m):
        return now(m).hostname if now(m) else state.nodes[m].hostname

    def leased(m):
        return now(m).leases if now(m) else state.nodes[m].leases

    def sees(n, m):
        return cluster.nodes[n].lease_marks.get(m) == host(m)

    out = {}
    for n in cluster.answered():
        if cluster.nodes[n].leases:
            out[n] = sorted(m for m in state.nodes if m != n and leased(m) and sees(n, m)
                            and (sees(m, n) if now(m) else n in state.nodes[m].lockspace_peers))
    return out


def _record_nodes(state: State, cluster: Cluster, when: str) -> None:
    peers = lockspace_peers(cluster, state)
    for name, facts in sorted(cluster.nodes.items()):
        rec = state.nodes[name]
        if facts.reachable:
            rec.reachable, rec.error, rec.last_scan = True, None, when
            rec.cpus, rec.memory_mib = facts.cpus, facts.memory_mib
            rec.hostname, rec.libvirt_version = facts.hostname, facts.libvirt_version
            rec.leases, rec.lockspace = facts.leases, facts.lockspace
            rec.containers = facts.lxc
            rec.lockspace_peers, rec.silent_scans = peers.get(name, []), 0
            rec.down_since = rec.down_guard = None     # it answers: down no longer
        else:
            rec.reachable, rec.error = False, facts.error
            rec.silent_scans += 1


def _record_domains(state: State, cluster: Cluster, when: str) -> None:
    """Where every domain is now. A domain that a silent node was the last to
    run is kept there (stale); if it now shows up on a node that answered, the
    silent node stays in `maybe_on`: nobody can say it stopped there."""
    silent = {n for n, r in state.nodes.items() if r.reachable is False}   # this scan or before
    answered = set(cluster.answered())
    duplicates = cluster.duplicates()
    placements = cluster.placements()
    for dname, rec in state.domains.items():
        if dname not in placements:
            maybe = sorted(m for m in {*rec.maybe_on, *([rec.node] if rec.node else [])} if m in silent)
            if maybe:
                rec.node, rec.stale, rec.maybe_on = maybe[0], True, maybe[1:]
            elif rec.node in answered or (rec.node is None and answered == set(state.nodes)):
                rec.node, rec.state, rec.stale, rec.conflict, rec.maybe_on = None, SHUT_OFF, False, [], []
    for dname, (node, fact) in sorted(placements.items()):
        rec = state.domain(dname)
        was = [*rec.maybe_on, *([rec.node] if rec.active or rec.stale else [])]
        rec.maybe_on = sorted({m for m in was if m in silent and m != node})
        rec.node, rec.state, rec.stale = node, fact.state, False
        rec.memory_mib, rec.vcpus, rec.last_seen = fact.memory_mib, fact.vcpus, when
        rec.container = fact.container
        rec.conflict = duplicates.get(dname, [])


def _findings(state: State, cluster: Cluster, conf_names: set[str]) -> list[Finding]:
    findings = []
    for f in cluster.unreachable():
        rec = state.nodes[f.name]
        if rec.down_since:
            findings.append(Finding(
                "warning", "down", f.name,
                f"node {f.name} is down since its failover at {rec.down_since} ({rec.down_guard}); "
                "its domains were restarted elsewhere", "bring it back (its next answer ends this), "
                f"or havirt node remove {f.name} --force"))
            continue
        kept = sorted(d.name for d in state.domains.values()
                      if d.node == f.name or f.name in d.maybe_on)
        findings.append(Finding(
            "error", "unreachable", f.name,
            f"node {f.name} did not answer: {f.error}"
            + (f"; last known domains kept as stale: {', '.join(kept)}" if kept else ""),
            "check the node, its sshd and libvirtd"))
    for n in cluster.answered():
        for d in cluster.nodes[n].every_domain():
            if d.persistent or d.autostart:
                what = "set to autostart" if d.autostart else "defined persistent"
                q = quote_argv([d.name])
                v = "virsh -c lxc:///system" if d.container else "virsh"
                findings.append(Finding(
                    "warning", "persistent", d.name,
                    f"{'container' if d.container else 'domain'} {q} is {what} on {n}: libvirt could "
                    "start it behind havirt's back",
                    f"on {n}: {v} autostart --disable {q}; {v} undefine {q}"
                    + (" (after 'havirt domain define' if conf/ has no copy)" if d.container else
                       " (after 'havirt domain import' if conf/ has no copy)")))
    present = cluster.present()
    for dname, (node, _) in sorted(cluster.placements().items()):
        rec = state.domains[dname]
        q = quote_argv([dname])     # any name a node reports, quoted where it is shown
        if rec.conflict:
            findings.append(Finding(
                "critical", "duplicate", dname,
                f"DOMAIN {q} RUNS ON {len(present[dname])} NODES AT ONCE: "
                f"{', '.join(n for n, _ in present[dname])}",
                f"destroy all copies but one now (virsh destroy {q} on each node but one): "
                "shared disks are being corrupted"))
        if rec.maybe_on:
            findings.append(Finding(
                "critical", "maybe-twice", dname,
                f"DOMAIN {q} RUNS ON {node} AND MAY STILL RUN ON {', '.join(rec.maybe_on)}, "
                "WHICH DID NOT ANSWER (it was last seen there)",
                f"find out at once whether {', '.join(rec.maybe_on)} still runs it (console, "
                "power): if so, shared disks are being corrupted"))
        if dname not in conf_names:
            findings.append(no_xml_finding(dname, node))
    return findings


def no_xml_finding(name: str, node: str) -> Finding:
    """A running domain conf/ does not define; one whose name is outside the
    name rule cannot be imported: it is counted, reported, never moved."""
    q = quote_argv([name])
    if valid_name(name):
        return Finding("warning", "no-xml", name, f"domain {name} runs on {node} but conf/ has "
                       f"no {name}.xml", f"havirt domain import {name} --from {node}")
    return Finding("warning", "no-xml", name,
                   f"domain {q} runs on {node} but conf/ has no XML for it, and cannot: its name is "
                   "outside havirt's name rule (1-64 letters, digits, '.', '_', '-'); it is "
                   "counted, never started or moved by havirt",
                   f"on {node}: give it a valid name (virsh domrename {q} NEWNAME, while it is "
                   f"defined and shut off), then havirt domain import NEWNAME --from {node}")


def record_scan(state: State, cluster: Cluster, conf_names: set[str]) -> list[Finding]:
    """Fold a scan into the state; return the anomalies it showed.

    Domains last seen on a node that did not answer stay where they were,
    marked stale: they are never silently dropped.
    """
    when = now_iso()
    _record_nodes(state, cluster, when)
    _record_domains(state, cluster, when)
    return _findings(state, cluster, conf_names)


def cluster_from_state(state: State) -> Cluster:
    """The cluster as the state file last saw it: never the ground of a
    safety decision. The state records no disk paths: none is checked."""
    codes = {v: k for k, v in STATE_NAMES.items()}
    cluster = Cluster()
    for name, rec in state.nodes.items():
        cluster.nodes[name] = NodeFacts(name=name, reachable=bool(rec.reachable), error=rec.error,
                                        hostname=rec.hostname, cpus=rec.cpus,
                                        memory_mib=rec.memory_mib, lxc=rec.containers)
    for d in state.domains.values():
        for node in (d.conflict or [d.node]) if d.active else ():
            if node in cluster.nodes:   # a double run: a copy on each node it was seen on
                cluster.nodes[node].domains[d.name] = DomainFact(
                    d.name, d.state, codes.get(d.state, 1), memory_mib=d.memory_mib, vcpus=d.vcpus,
                    driver=LXC if d.container else QEMU)
    return cluster
