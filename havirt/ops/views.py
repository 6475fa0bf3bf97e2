"""Rows for listings, computed from the state file (pure)."""

from __future__ import annotations

from havirt.parse.virsh import SHUT_OFF
from havirt.rules.drift import recorded_drift
from havirt.rules.fit import allocated, usable_memory
from havirt.rules.ownership import bases
from havirt.scan.cluster import Finding
from havirt.scan.record import cluster_from_state
from havirt.store.state import State

NODE_COLUMNS = [("name", "node"), ("address", "address"), ("cpus", "cpus"),
                ("memory_mib", "memory"), ("memory_cap_mib", "cap"),
                ("allocated_mib", "mem used"), ("allocated_vcpus", "vcpus used"),
                ("domains", "domains"), ("maintenance", "maint"), ("reachable", "up"),
                ("leases", "leases"), ("containers", "containers"), ("down_since", "down since"),
                ("last_scan", "last scan")]

DOMAIN_COLUMNS = [("name", "domain"), ("state", "state"), ("node", "node"),
                  ("memory_mib", "memory"), ("vcpus", "vcpus"), ("maintenance", "maint"),
                  ("xml", "xml"), ("drift", "drift"), ("base_of", "base of"), ("stale", "stale"),
                  ("last_seen", "last seen")]

FINDING_COLUMNS = [("severity", "severity"), ("kind", "kind"), ("subject", "subject"),
                   ("message", "message"), ("fix", "fix")]


def node_rows(state: State, reserve_mib: int) -> list[dict]:
    """One row per node, from the state file; what each carries is
    rules.allocated over the domains the state records there."""
    cluster = cluster_from_state(state)
    rows = []
    for name, r in sorted(state.nodes.items()):
        m, v, c = allocated(cluster.nodes[name].every_domain())
        rows.append({
            "name": name, "address": r.address, "user": r.user, "port": r.port,
            "cpus": r.cpus, "memory_mib": r.memory_mib, "memory_cap_mib": r.memory_cap_mib,
            "usable_mib": usable_memory(r.memory_cap_mib, r.memory_mib, reserve_mib),
            "allocated_mib": m, "allocated_vcpus": v, "domains": c,
            "maintenance": r.maintenance, "reachable": r.reachable, "error": r.error,
            "last_scan": r.last_scan, "hostname": r.hostname,
            "libvirt_version": r.libvirt_version,
            "leases": r.leases, "lockspace": r.lockspace, "lockspace_peers": r.lockspace_peers,
            "containers": r.containers,
            "down_since": r.down_since, "down_guard": r.down_guard,
        })
    return rows


def domain_rows(state: State, conf_specs: dict, node=None, running=None) -> list[dict]:
    """Every domain of conf/ plus any the state knows (seen running without XML).

    conf_specs: name -> DomainSpec, or an error string for a conf/ file that
    does not parse.
    """
    rows = []
    base = bases({n: s for n, s in conf_specs.items() if not isinstance(s, str)})
    for name in sorted(set(conf_specs) | set(state.domains)):
        rec = state.domains.get(name)
        spec = conf_specs.get(name)
        spec_ok = spec is not None and not isinstance(spec, str)
        row = {
            "name": name,
            "kind": "container" if (spec.container if spec_ok else rec is not None and rec.container)
            else "vm",
            "state": rec.state if rec else SHUT_OFF,
            "node": rec.node if rec else None,
            "memory_mib": (rec.memory_mib if rec and rec.memory_mib else None)
            or (spec.memory_mib if spec_ok else None),
            "vcpus": (rec.vcpus if rec and rec.vcpus else None) or (spec.vcpus if spec_ok else None),
            "maintenance": rec.maintenance if rec else False,
            "xml": spec is not None,
            "xml_error": spec if isinstance(spec, str) else None,
            "stale": rec.stale if rec else False,
            "conflict": rec.conflict if rec else [],
            "last_seen": rec.last_seen if rec else None,
            "base_of": base.get(name, []),     # its linked clones: it may not start
        }
        drift = recorded_drift(rec, spec if spec_ok else None)
        row["drift"] = [d.aspect for d in drift]
        row["drift_detail"] = [d.message for d in drift]
        if node and row["node"] != node:
            continue
        is_running = rec is not None and rec.active
        if running is True and not is_running or running is False and is_running:
            continue
        rows.append(row)
    return rows


def finding_rows(findings: list[Finding]) -> list[dict]:
    return [{"severity": f.severity, "kind": f.kind, "subject": f.subject,
             "message": f.message, "fix": f.fix} for f in findings]
