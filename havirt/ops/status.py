"""cluster status: rows per node and totals (from a fresh scan, or the state),
the imbalance score, and N+1 (would the cluster survive the loss of each node)."""

from __future__ import annotations

from havirt.ops.views import node_rows
from havirt.plan.planner_input import cluster_verdict, disk_paths, what_if_cluster

STATUS_COLUMNS = [("name", "node"), ("cpus", "cpus"), ("allocated_vcpus", "vcpus"),
                  ("vcpu_ratio", "ratio"), ("memory_mib", "memory"), ("memory_cap_mib", "cap"),
                  ("usable_mib", "usable"), ("allocated_mib", "allocated"), ("free_mib", "free"),
                  ("domains", "domains"), ("maintenance", "maint"), ("reachable", "up"),
                  ("leases", "leases"), ("containers", "containers"), ("survives_loss", "N+1"),
                  ("last_scan", "last scan")]


def cluster_status(app, no_scan: bool):
    if no_scan:
        specs, _ = app.conf.load_all()
        cluster, findings = what_if_cluster(app.state, specs), []   # what-if, as balance
    else:
        with app.work(dry_run=True, record=True) as w:    # a read: the scan is recorded
            specs, _ = w.conf.load_all()
            cluster, findings = w.scan(paths=disk_paths(specs))
    rows = node_rows(app.state, app.cfg.reserve_mib)
    score, n1 = cluster_verdict(cluster, app.state, app.cfg, specs)
    for r in rows:
        r["vcpu_ratio"] = round(r["allocated_vcpus"] / r["cpus"], 3) if r["cpus"] else None
        r["free_mib"] = None if r["usable_mib"] is None else r["usable_mib"] - r["allocated_mib"]
        loss = n1.nodes.get(r["name"]) if n1 else None
        r["survives_loss"] = None if loss is None else loss.survives
    keys = ("cpus", "allocated_vcpus", "memory_mib", "usable_mib", "allocated_mib", "free_mib",
            "domains")
    totals = {"name": "TOTAL", **{k: sum(r[k] or 0 for r in rows) for k in keys}}
    totals["vcpu_ratio"] = round(totals["allocated_vcpus"] / totals["cpus"], 3) if totals["cpus"] else None
    return rows, totals, None if score is None else round(score, 6), n_plus_1_doc(n1), findings


def n_plus_1_doc(n1) -> dict | None:
    """N+1 as data: {"ok", "failing", "nodes": {node: {"survives_loss", "restarts": [moves],
    "stranded": [{"domain", "reason", "memory_mib", "vcpus"}], "missing_mib", "missing_vcpus"}}}."""
    if n1 is None:
        return None
    return {"ok": n1.ok, "failing": n1.failing,
            "nodes": {name: {"survives_loss": loss.survives,
                             "restarts": [m.as_dict() for m in loss.restarts],
                             "stranded": [s.as_dict() for s in loss.stranded],
                             "missing_mib": loss.missing_mib, "missing_vcpus": loss.missing_vcpus}
                      for name, loss in n1.nodes.items()}}


def n_plus_1_lines(doc: dict | None) -> list[str]:
    """What to say on screen about N+1."""
    if doc is None:
        return []
    if doc["ok"]:
        return ["N+1: the cluster survives the loss of any one node"]
    lines = []
    for name in doc["failing"]:
        loss = doc["nodes"][name]
        lines.append(f"N+1: if {name} is lost, {len(loss['stranded'])} domain(s) would not restart "
                     f"({loss['missing_mib']} MiB, {loss['missing_vcpus']} vCPUs missing): "
                     + "; ".join(f"{s['domain']}: {s['reason']}" for s in loss["stranded"]))
    return lines
