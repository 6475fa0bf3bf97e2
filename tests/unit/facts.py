"""Hand-built facts for direct tests of the pure rules and planners (no CLI, no runner)."""

from __future__ import annotations

import random
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


PATHS = ("/d/a", "/d/b", "/d/c")


def random_world(seed: int):
    """A random scan: nodes with and without caps, of known and unknown
    memory and CPUs, some silent, some in maintenance, each having checked
    some disk paths (seen or missing); domains of random sizes running once,
    most with conf/ XML (disks among PATHS, a restart size of their own)."""
    rng = random.Random(seed)
    config = cfg(vcpu_ratio=rng.choice([4.0, 1.0, 1.3, 2.7, 0.5, 1 / 3, 0.0]),
                 reserve_mib=rng.choice([0, 512, 1024]))
    cluster, state = Cluster(), State()
    for i in range(rng.randint(1, 7)):
        name, up = f"n{i}", rng.random() > 0.15
        memory = rng.choice([None, 1024, 2048, 8192, 16384, 16384])
        cpus = rng.choice([None, 0, 1, 2, 4, 8, 8])
        cluster.nodes[name] = NodeFacts(
            name=name, reachable=up, error=None if up else "connect timed out",
            cpus=cpus if up else None, memory_mib=memory if up else None,
            paths={p: rng.random() < 0.7 for p in PATHS if up and rng.random() < 0.8})
        state.nodes[name] = NodeRecord(
            name=name, address=f"10.0.0.{i + 1}", cpus=cpus, reachable=up,
            memory_cap_mib=rng.choice([None, None, 0, 1024, 6000, 10 ** 6]),
            memory_mib=rng.choice([memory, memory, None, 4096]),
            maintenance=rng.random() < 0.15)
    up = [n for n, f in cluster.nodes.items() if f.reachable]
    specs = {}
    for k in range(rng.randint(0, 5 * len(up)) if up else 0):
        name, m, v = f"d{k:02d}", rng.choice([256, 512, 1024, 3000]), rng.choice([1, 1, 2, 4])
        cluster.nodes[rng.choice(up)].domains[name] = dom(name, m, v, state=rng.choice(["running", "paused"]))
        if rng.random() < 0.85:
            specs[name] = spec(name, rng.choice([m, 2 * m, m // 2]), rng.choice([v, v + 1]),
                               rng.sample(PATHS, rng.randint(0, 2)))
        if rng.random() < 0.1:
            state.domain(name).maintenance = True
    return cluster, state, config, specs
