"""Prometheus metrics of a scan, for node_exporter's textfile collector.

`havirt node scan` writes them when asked (`--metrics FILE`, or the key
`metrics.textfile` of config.yaml), after the state file is saved, also under
-q and also when the scan found anomalies. The file is replaced atomically
(the text prometheus_client makes, written by havirt's own writer to a new
file beside it, then renamed over it; never through a link), so
node_exporter, which reads it at any moment, sees the old file or the new one.

Every value comes from the state file as the scan has just left it (nodes the
scan did not ask keep what their last scan said; their last scan time says how
old that is), from conf/, and from the scan itself (its anomalies, its time).
Only imported by a scan that writes metrics: prometheus_client costs nothing
to the other commands.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from havirt import __version__
from havirt.errors import HomeError, MetricsError
from havirt.ops.views import node_rows
from havirt.rules.fit import vcpu_cap
from havirt.store.files import reason, replace_file, writable_folder

MIB = 1 << 20

# Anomaly kinds always reported, 0 when the scan found none, so that an alert
# on `> 0` never depends on a series appearing. Other kinds appear when found.
ANOMALY_KINDS = ("duplicate", "no-xml", "persistent", "unreachable")


def timestamp(iso: str | None) -> float | None:
    """'2026-11-21T09:00:00Z' (the state's UTC times) -> seconds since the epoch."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _gauge(registry, name: str, doc: str, labels=()) -> Gauge:
    return Gauge(name, doc, labels, registry=registry)


def scan_registry(state, conf_names, cluster, findings, cfg, seconds: float,
                  when: float) -> CollectorRegistry:
    """The metrics of a scan that took `seconds` and ended at `when` (epoch)."""
    reg = CollectorRegistry()
    _nodes(reg, state, cluster, cfg, when)
    _domains(reg, state, conf_names)
    anomalies = _gauge(reg, "havirt_scan_anomalies", "Anomalies the last scan found, by kind "
                        "(duplicate: a domain on two or more nodes; unreachable: a node that did "
                        "not answer; no-xml: a running domain without conf/ XML; persistent: a "
                        "domain defined persistent or autostart on a node).", ["kind"])
    counts = dict.fromkeys(ANOMALY_KINDS, 0)
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    for kind, n in sorted(counts.items()):
        anomalies.labels(kind).set(n)
    _gauge(reg, "havirt_scan_duration_seconds", "How long the last scan took (waiting for the "
            "lock, asking the nodes, recording).").set(seconds)
    _gauge(reg, "havirt_scan_timestamp_seconds", "When the last scan ended (Unix time).").set(when)
    _gauge(reg, "havirt_scan_nodes", "Nodes the last scan asked.").set(len(cluster.nodes))
    _gauge(reg, "havirt_build_info", "The havirt that wrote these metrics.",
            ["version"]).labels(__version__).set(1)
    return reg


# Per node: (key, name, HELP). A value that is not known has no sample.
NODE_METRICS = (
    ("up", "havirt_node_up", "1 if the node answered its last scan (SSH, virsh, the same host "
     "as recorded), else 0."),
    ("maintenance", "havirt_node_maintenance", "1 if the node is in maintenance (it receives "
     "no domain), else 0."),
    ("cpus", "havirt_node_cpus", "Physical CPUs of the node (virsh nodeinfo)."),
    ("vcpus_allocated", "havirt_node_vcpus_allocated", "vCPUs of the domains present on the "
     "node."),
    ("vcpus_limit", "havirt_node_vcpus_limit", "Most vCPUs the node may carry (CPUs x "
     "reserve.vcpu_ratio)."),
    ("memory_total", "havirt_node_memory_total_bytes", "Memory of the node (virsh nodeinfo)."),
    ("memory_usable", "havirt_node_memory_usable_bytes", "Memory domains may use on the node: "
     "its cap, else its total minus reserve.memory_mib."),
    ("memory_allocated", "havirt_node_memory_allocated_bytes", "Memory of the domains present "
     "on the node, as the node reports it."),
    ("domains", "havirt_node_domains_running", "Domains present on the node (running, paused, "
     "migrating: every state but shut off)."),
    ("leases", "havirt_node_leases_active", "1 if libvirt's lock manager (virtlockd leases) "
     "was active at the node's last scan, else 0; absent when unknown."),
    ("last_scan", "havirt_node_last_scan_timestamp_seconds", "When the node last answered a "
     "scan (Unix time); absent if it never did."),
    ("age", "havirt_node_last_scan_age_seconds", "Seconds from the node's last answered scan "
     "to the end of the last scan."),
    ("scan_duration", "havirt_node_scan_duration_seconds", "How long the node took to answer "
     "the last scan (its SSH session)."),
)


def _nodes(reg, state, cluster, cfg, when: float) -> None:
    gauges = {key: _gauge(reg, name, doc, ["node"]) for key, name, doc in NODE_METRICS}
    for row in node_rows(state, cfg.reserve_mib):
        name, rec = row["name"], state.nodes[row["name"]]
        last = timestamp(row["last_scan"])
        facts = cluster.nodes.get(name)
        values = {
            "up": row["reachable"] is True, "maintenance": row["maintenance"],
            "cpus": row["cpus"], "vcpus_allocated": row["allocated_vcpus"],
            "vcpus_limit": vcpu_cap(row["cpus"], cfg.vcpu_ratio) if row["cpus"] else None,
            "memory_total": _bytes(row["memory_mib"]), "memory_usable": _bytes(row["usable_mib"]),
            "memory_allocated": _bytes(row["allocated_mib"]), "domains": row["domains"],
            "leases": rec.leases, "last_scan": last,
            "age": None if last is None else max(0.0, when - last),
            "scan_duration": facts.duration if facts is not None else None,
        }
        for key, value in values.items():
            if value is not None:
                gauges[key].labels(name).set(float(value))


def _domains(reg, state, conf_names) -> None:
    running = _gauge(reg, "havirt_domain_running", "1 for each node a domain is present on (two "
                      "series at 1: it runs twice), as last seen; 0 with node=\"\" when it runs "
                      "nowhere.", ["domain", "node"])
    maintenance = _gauge(reg, "havirt_domain_maintenance", "1 if the domain is in maintenance "
                          "(never started or moved by havirt), else 0.", ["domain"])
    for name in sorted(set(conf_names) | set(state.domains)):
        rec = state.domains.get(name)
        where = (rec.conflict or ([rec.node] if rec.active else [])) if rec is not None else []
        for node in where:
            running.labels(name, node).set(1)
        if not where:
            running.labels(name, "").set(0)
        maintenance.labels(name).set(1 if rec is not None and rec.maintenance else 0)


def _bytes(mib: int | None) -> int | None:
    return None if mib is None else mib * MIB


def write_textfile(path: str, registry) -> None:
    """The text prometheus_client makes of `registry`, written as havirt writes
    every file: into a folder havirt may write into (no link someone else
    made), under a new unpredictable name, then renamed over `path` (never
    through a link); mode 0644, for node_exporter's user. Raises HomeError
    or OSError."""
    target = Path(path)
    writable_folder(target.parent, target.parent, make=False)
    replace_file(target, generate_latest(registry), 0o644)


def write_scan_metrics(path: str, app, scan, seconds: float, when: float) -> None:
    """Write the metrics of `scan` to `path`, atomically (MetricsError if it cannot)."""
    registry = scan_registry(app.state, app.conf.names(), scan.cluster, scan.findings, app.cfg,
                             seconds, when)
    try:
        write_textfile(path, registry)
    except (HomeError, OSError) as e:
        why = reason(e) if isinstance(e, OSError) else str(e)
        raise MetricsError(f"cannot write the metrics file {path}: {why} "
                           "(the scan itself was recorded)") from None
