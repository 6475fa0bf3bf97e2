"""cluster validate: a read-only consistency report (the state is not written)."""

from __future__ import annotations

import copy

from havirt.parse.domxml import DomainSpec
from havirt.plan.planner_input import cluster_verdict, disk_paths
from havirt.rules.disks import visibility
from havirt.rules.drift import definition_drift, live_spec
from havirt.rules.fit import load_of, over_limits
from havirt.rules.ownership import ownership_findings
from havirt.scan.cluster import Cluster, Finding
from havirt.scan.record import lockspace_peers


def conf_findings(w) -> tuple[dict[str, DomainSpec], list[Finding]]:
    specs, problems = w.conf.load_all()
    findings = []
    fixes = {"name-mismatch": "rename the file after its <name>, or fix <name>",
             "bad-file-name": "rename or remove the file"}
    for name, (kind, problem) in sorted(problems.items()):
        fix = fixes.get(kind, f"fix or remove {w.conf.where_raw(name)}")
        findings.append(Finding("error", kind, name, problem, fix))
    return specs, findings


def cluster_findings(w, cluster: Cluster, specs: dict[str, DomainSpec]) -> list[Finding]:
    findings = []
    state = w.state
    for node, facts in sorted(cluster.nodes.items()):
        if not facts.reachable:
            continue
        for kind, message in over_limits(load_of(cluster, state, w.cfg, node)):
            findings.append(Finding("error", kind, node, message,
                                    "migrate a domain away (havirt cluster balance)"))
        for dname in sorted(facts.xml):
            conf = specs.get(dname)
            live = live_spec(cluster, node, dname)
            if conf is None or live is None:
                continue
            diffs = [d.message for d in definition_drift(conf, live)]
            if diffs:
                findings.append(Finding("warning", "drift", dname,
                                        f"{dname} on {node} differs from conf/: {'; '.join(diffs)}",
                                        f"havirt domain import {dname} --from {node} --force, "
                                        "or restart it from conf/"))
    findings += lease_findings(cluster, state, specs)
    findings += n_plus_1_findings(w, cluster, specs)
    return findings + disk_findings(cluster, specs)


def disk_findings(cluster: Cluster, specs: dict[str, DomainSpec]) -> list[Finding]:
    """Disks of conf/ that a node that answered misses, or did not check (rules.disks)."""
    findings = []
    up = cluster.answered()
    for dname, spec in sorted(specs.items()):
        for path in spec.disks:
            vis = visibility(cluster, path, up)
            if vis.missing and len(vis.missing) == len(up):
                findings.append(Finding("error", "disk-missing", dname,
                                        f"disk {path} of {dname} is missing on every node",
                                        "restore the disk or fix conf/"))
            elif vis.missing:
                findings.append(Finding("warning", "disk-missing", dname,
                                        f"disk {path} of {dname} is missing on {', '.join(vis.missing)} "
                                        "(it could not start or migrate there)",
                                        "make the storage visible on every node"))
            if vis.not_checked:
                findings.append(Finding("warning", "disk-not-checked", dname,
                                        f"disk {path} of {dname} was not checked on "
                                        f"{', '.join(vis.not_checked)} (it could not start or "
                                        "migrate there until a scan sees it)",
                                        "havirt cluster validate again"))
    return findings


def n_plus_1_findings(w, cluster: Cluster, specs) -> list[Finding]:
    """A node whose loss the cluster would not survive (its domains restarted
    elsewhere as failover would place them)."""
    _, n1 = cluster_verdict(cluster, w.state, w.cfg, specs)
    findings = []
    for name in n1.failing if n1 else ():
        loss = n1.nodes[name]
        findings.append(Finding(
            "warning", "n-plus-1", name,
            f"the cluster would not survive the loss of {name}: "
            + "; ".join(f"{s.domain} would not restart ({s.reason})" for s in loss.stranded)
            + f"; {loss.missing_mib} MiB, {loss.missing_vcpus} vCPUs missing",
            "add capacity, or let havirt cluster balance restore N+1 where moves can"))
    return findings


def lease_findings(cluster: Cluster, state, specs: dict[str, DomainSpec]) -> list[Finding]:
    """Nodes without leases, nodes that do not share one lockspace, and
    domains with a disk no lease can lock."""
    findings = []
    peers = lockspace_peers(cluster, state)
    fix = "see the README, Leases: lock_manager = \"lockd\", one file_lockspace_dir on shared storage"
    for node in cluster.answered():
        facts = cluster.nodes[node]
        if not facts.leases:
            findings.append(Finding("warning", "no-leases", node,
                                    f"leases are not in force on {node}: {facts.lease_problem}", fix))
            continue
        apart = [m for m in peers if m != node and m not in peers[node]]
        if apart:
            where = ", ".join(f"{m} ({cluster.nodes[m].lockspace})" for m in apart)
            findings.append(Finding("error", "lockspace", node,
                                    f"{node} ({facts.lockspace}) does not share its lockspace "
                                    f"with {where}: their leases cannot see each other", fix))
    for name, spec in sorted(specs.items()):
        for gap in spec.lease_gaps:
            findings.append(Finding("warning", "lease-gap", name,
                                    f"a disk of {name} no lease can lock: {gap}",
                                    "give it a local path (a block device or file), or accept "
                                    "that failover under leases cannot protect it"))
    return findings


def state_findings(before, after) -> list[Finding]:
    """Where the state file (before the scan) disagrees with the nodes."""
    findings = []
    for name in sorted(set(before.domains) | set(after.domains)):
        b = before.domains.get(name)
        a = after.domains.get(name)
        was = b.node if b and b.active else None
        now = a.node if a and a.active else None
        if a is not None and a.stale:
            continue
        if was != now:
            findings.append(Finding("warning", "state-stale", name,
                                    f"state file says {name} runs on {was or 'no node'}, "
                                    f"the nodes say {now or 'no node'}",
                                    "havirt node scan"))
    return findings


def validate(app) -> list[Finding]:
    with app.work(dry_run=True, record=False) as w:    # read-only: the state is never written
        specs, findings = conf_findings(w)
        before = copy.deepcopy(w.state)
        folders = sorted(w.cfg.pools.values())
        cluster, scan_findings = w.scan(paths=disk_paths(specs) + folders, dump_running=True)
        findings += scan_findings
        findings += cluster_findings(w, cluster, specs)
        chains = w.images(cluster, folders).chains() if folders else {}
        findings += ownership_findings(specs, cluster, chains)
        findings += state_findings(before, w.state)
    order = {"critical": 0, "error": 1, "warning": 2}
    return sorted(findings, key=lambda f: (order.get(f.severity, 3), f.kind, f.subject))
