"""cluster status: rows per node and totals (from a fresh scan, or the state)."""

from __future__ import annotations

from .moves import cluster_score
from .scan import cluster_from_state
from .views import node_rows

STATUS_COLUMNS = [("name", "node"), ("cpus", "cpus"), ("allocated_vcpus", "vcpus"),
                  ("vcpu_ratio", "ratio"), ("memory_mib", "memory"), ("memory_cap_mib", "cap"),
                  ("usable_mib", "usable"), ("allocated_mib", "allocated"), ("free_mib", "free"),
                  ("domains", "domains"), ("maintenance", "maint"), ("reachable", "up"),
                  ("leases", "leases"), ("last_scan", "last scan")]


def cluster_status(app, no_scan: bool):
    if no_scan:
        cluster, findings = cluster_from_state(app.state), []
    else:
        with app.lock():
            cluster, findings = app.scan_and_save()
    rows = node_rows(app.state, app.cfg.reserve_mib)
    for r in rows:
        r["vcpu_ratio"] = round(r["allocated_vcpus"] / r["cpus"], 3) if r["cpus"] else None
        r["free_mib"] = None if r["usable_mib"] is None else r["usable_mib"] - r["allocated_mib"]
    keys = ("cpus", "allocated_vcpus", "memory_mib", "usable_mib", "allocated_mib", "free_mib",
            "domains")
    totals = {"name": "TOTAL", **{k: sum(r[k] or 0 for r in rows) for k in keys}}
    totals["vcpu_ratio"] = round(totals["allocated_vcpus"] / totals["cpus"], 3) if totals["cpus"] else None
    score = cluster_score(app, cluster)
    return rows, totals, None if score is None else round(score, 6), findings
