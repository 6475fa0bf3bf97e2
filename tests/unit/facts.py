"""Hand-built facts for direct tests of the pure rules and planners (no CLI, no runner)."""

from __future__ import annotations

from types import SimpleNamespace

from havirt.parse.domxml import DomainSpec
from havirt.parse.virsh import STATE_NAMES, DomainFact, NodeFacts
from havirt.scan.cluster import Cluster
from havirt.store.config import load_config
from havirt.store.state import NodeRecord, State

CODES = {v: k for k, v in STATE_NAMES.items()}


def cfg(tmp_path=None, **over):
    """The default configuration (reserve 1024 MiB, ratio 4), with overrides."""
    from pathlib import Path
    c = load_config(Path("/nonexistent/config.yaml"))
    for k, v in over.items():
        setattr(c, k, v)
    return c


def dom(name, mem=512, vcpus=1, state="running", reason=1, **kw) -> DomainFact:
    return DomainFact(name=name, state=state, state_code=CODES[state], reason=reason,
                      memory_mib=mem, vcpus=vcpus, **kw)


def world(nodes: dict, **node_kw) -> tuple[Cluster, State]:
    """nodes: name -> dict(cpus=4, memory=8192, domains=[DomainFact...], paths={..},
    reachable=True, maintenance=False, cap=None, hostname=name)."""
    cluster, state = Cluster(), State()
    for name, d in nodes.items():
        d = {**node_kw, **d}
        reachable = d.get("reachable", True)
        facts = NodeFacts(name=name, reachable=reachable,
                          error=None if reachable else "connect timed out after 5 s",
                          hostname=d.get("hostname", name), cpus=d.get("cpus", 4),
                          memory_mib=d.get("memory", 8192),
                          domains={x.name: x for x in d.get("domains", [])},
                          paths=dict(d.get("paths", {})))
        if not reachable:
            facts.domains, facts.cpus, facts.memory_mib = {}, None, None
        cluster.nodes[name] = facts
        state.nodes[name] = NodeRecord(name=name, address=f"10.0.0.{len(state.nodes) + 1}",
                                       memory_cap_mib=d.get("cap"), cpus=d.get("cpus", 4),
                                       memory_mib=d.get("memory", 8192), hostname=name,
                                       maintenance=d.get("maintenance", False), reachable=reachable)
    return cluster, state


def spec(name, mem=512, vcpus=1, disks=()) -> DomainSpec:
    raw = f"<domain><name>{name}</name></domain>".encode()
    return DomainSpec(name=name, memory_mib=mem, vcpus=vcpus, disks=list(disks),
                      path=f"/home/conf/{name}.xml", raw=raw)


def ns(**kw):
    return SimpleNamespace(**kw)
