"""Leases: when libvirt's lock manager proves a domain cannot run twice
(failover's strongest guard)."""

from __future__ import annotations


def lease_gaps(spec) -> list[str]:
    """Why libvirt's leases cannot prove this domain is not running elsewhere
    (empty: a second start of it anywhere in the lockspace fails at qemu)."""
    gaps = list(spec.lease_gaps)
    if spec.container:
        gaps.append("a container: libvirt's leases lock only the disks of virtual machines")
    elif not spec.leased:
        gaps.append("no writable disk with a local path: no lease to hold")
    return gaps


def lease_guard_problems(cluster, state, dead: str, receivers) -> list[str]:
    """Leases guard a restart of `dead`'s domains on `receivers` when they were
    in force on `dead` at its last successful scan and are in force on every
    receiver now, in the same lockspace: each receiver shared it with `dead`
    then, and still sees `dead`'s marker in it now."""
    rec = state.nodes[dead]
    if not rec.leases:
        return [f"leases were not in force on {dead} at its last scan"
                + ("" if rec.last_scan else " (it never answered one)")]
    problems = []
    for r in receivers:
        facts = cluster.nodes[r]
        if not facts.leases:
            problems.append(f"leases are not in force on {r}: {facts.lease_problem or 'unknown'}")
        elif r not in rec.lockspace_peers:
            problems.append(f"{r} did not share {dead}'s lockspace ({rec.lockspace}) at "
                            f"{dead}'s last scan")
        elif facts.lease_marks.get(dead) != rec.hostname:
            problems.append(f"{r} no longer sees {dead}'s marker in its lockspace ({facts.lockspace})")
    return problems
