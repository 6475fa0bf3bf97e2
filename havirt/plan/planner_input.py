"""A scan turned into the balance planner's input (pure).

Evacuation, balance, failover, N+1 (cluster status, cluster validate) all
build their :class:`BNode` and :class:`BDomain` here, from a scan
(`cluster`), the admin's facts (`state`) and config.yaml (`cfg`), by asking
the rules (``havirt.rules``): the planner's compiled fit answers what
``rules.fit.fit_problems`` answers (a unit test checks it on random clusters).
"""

from __future__ import annotations

from havirt.plan.balance import BDomain, BNode, Weights, n_plus_1, score
from havirt.rules.disks import disks_seen, what_if_paths
from havirt.rules.drivers import driver_problems
from havirt.rules.fit import Load, capacity_problems, held, load_of, need_to_start
from havirt.scan.cluster import Cluster
from havirt.scan.record import cluster_from_state


def planner_nodes(cluster: Cluster, state, cfg) -> list[BNode]:
    """The nodes that are up, as the planners see them. Those that take no
    domain, in maintenance or of unknown capacity (rules.capacity_problems),
    are flagged ``maintenance``: never a target, outside the score, their
    domains left where they are, but N+1 asks about their loss."""
    out = []
    for name in sorted(state.nodes):
        load = load_of(cluster, state, cfg, name)
        if load.reachable:
            takes = not load.maintenance and not capacity_problems(load)
            out.append(BNode(name, load.usable_mib or 0, load.cpus, cfg.vcpu_ratio,
                             maintenance=not takes))
    return out


def planner_domain(name, node, fact, spec, why, allowed) -> BDomain:
    """One domain for the planners: what it holds now (rules.held), what it
    needs to start again from conf/ (rules.need_to_start), whether it may move
    and whether live (a container: only stopped and started elsewhere)."""
    mem, vcpus = held(fact) if fact is not None else (0, 0)
    need = need_to_start(spec) if spec is not None else None
    container = bool(fact is not None and fact.container or spec is not None and spec.container)
    return BDomain(name=name, node=node, memory_mib=mem, vcpus=vcpus, movable=not why, live=not container,
                   why_fixed=why or "in maintenance", allowed=allowed,
                   restart_memory_mib=need.memory_mib if need else None,
                   restart_vcpus=need.vcpus if need else None,
                   restarted=why != "in maintenance")


def node_loads(cluster: Cluster, state, cfg, nodes: list[BNode]) -> dict[str, Load]:
    """Each of `nodes` as the rules see it: computed once, asked for every domain."""
    return {n.name: load_of(cluster, state, cfg, n.name) for n in nodes}


def allowed_nodes(loads: dict[str, Load], spec) -> frozenset[str] | None:
    """The nodes that see every disk of `spec` (rules.disks) and offer its
    driver (rules.drivers: a container needs the LXC driver); None: every node."""
    if spec is None or not (spec.disks or spec.container):
        return None
    return frozenset(name for name, load in loads.items() if disks_seen(load.paths, spec.disks)
                     and not driver_problems(name, load.lxc, load.lxc_error, spec.container))


def planner_domains(cluster: Cluster, state, cfg, nodes: list[BNode], specs: dict) -> list[BDomain]:
    """The domains running on `nodes`, each once (its running copy)."""
    names = {n.name for n in nodes}
    dups = cluster.duplicates()
    loads = node_loads(cluster, state, cfg, nodes)
    out = []
    for name, (node, fact) in sorted(cluster.placements().items()):
        if node not in names:
            continue
        rec = state.domains.get(name)
        spec = specs.get(name)
        why = ("runs on several nodes" if name in dups else
               "in maintenance" if rec and rec.maintenance else
               "no usable XML in conf/" if spec is None else "")
        out.append(planner_domain(name, node, fact, spec, why, allowed_nodes(loads, spec)))
    return out


def planner_weights(cfg) -> Weights:
    """The weights of the imbalance score (config.yaml balance.weights)."""
    return Weights(*cfg.balance_weights)


def cluster_verdict(cluster: Cluster, state, cfg, specs: dict):
    """(the imbalance score, N+1): None, None when no node is up."""
    nodes = planner_nodes(cluster, state, cfg)
    if not nodes:
        return None, None
    domains = planner_domains(cluster, state, cfg, nodes, specs)
    weights = planner_weights(cfg)
    return score(nodes, domains, weights), n_plus_1(nodes, domains, weights)


def disk_paths(specs) -> list[str]:
    """Every disk path of conf/: what a scan must check on each node before
    anything decides where a domain may run (placement, N+1)."""
    return sorted({p for s in specs.values() for p in s.disks})


def what_if_cluster(state, specs) -> Cluster:
    """The cluster as the state file last saw it, for what-if planning
    (--no-scan), every disk of conf/ as rules.disks.what_if_paths decides."""
    cluster = cluster_from_state(state)
    paths = what_if_paths(disk_paths(specs))
    for facts in cluster.nodes.values():
        facts.paths = dict(paths)
    return cluster
