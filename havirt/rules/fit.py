"""The placement rules: the one place that says whether a domain fits a node.

Start, migrate, evacuation, balance, failover, N+1 and `cluster validate`
all ask here. The balance planner compiles these rules into arrays for
speed; a unit test proves the compiled form gives the same answers.

How a domain is sized (one decision, used everywhere):

* a domain that runs holds what its node reports for it (its balloon's
  current memory, else its maximum; current vCPUs);
* a domain that is *started* (start, offline migration, failover, and the
  N+1 question "could it be restarted elsewhere?") needs what conf/ says
  (`currentMemory`, else `memory`; `vcpu current`, else `vcpu`);
* a domain moved by live migration takes to its target what it holds on
  its source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from havirt.rules.disks import disk_problems
from havirt.rules.drivers import driver_problems


def vcpu_cap(cpus: int, max_ratio: float) -> int:
    """The most vCPUs ``k`` a node may carry: ``k / cpus <= max_ratio``, exactly
    as the division compares (10 CPUs at 0.3 carry 3). The product is off by
    one at most within the ranges of parse/numbers.py; a few steps at the most,
    whatever the numbers (beyond 2**53 a step may no longer change the ratio)."""
    if cpus <= 0:
        return 0
    if max_ratio < 0 or math.isnan(max_ratio):
        return -1
    if math.isinf(max_ratio):
        return 1 << 62
    k = math.floor(max_ratio * cpus)
    for _ in range(4):
        if (k + 1) / cpus <= max_ratio:
            k += 1
        elif k > 0 and k / cpus > max_ratio:
            k -= 1
        else:
            break
    return k


def usable_memory(cap_mib: int | None, total_mib: int | None, reserve_mib: int) -> int | None:
    """The memory domains may use on a node: the admin's cap (never more than
    the node has), or else its total minus the host reserve."""
    if cap_mib is not None:
        return cap_mib if total_mib is None else min(cap_mib, total_mib)
    return None if total_mib is None else max(0, total_mib - reserve_mib)


@dataclass(frozen=True)
class Need:
    """What a domain needs on a node, see the module docstring."""

    name: str
    memory_mib: int
    vcpus: int
    disks: tuple[str, ...] = ()
    container: bool = False       # needs libvirt's LXC driver on the node (rules/drivers.py)


def need_to_start(spec) -> Need:
    """A domain started from conf/ (start, offline migration, failover)."""
    return Need(spec.name, spec.memory_mib, spec.vcpus, tuple(spec.disks), spec.container)


def held(fact) -> tuple[int, int]:
    """(MiB, vCPUs) a domain present on a node holds there: what the node
    reports (its balloon's current size, else its maximum; current vCPUs)."""
    return fact.memory_mib or 0, fact.vcpus or 0


def allocated(domains) -> tuple[int, int, int]:
    """(MiB, vCPUs, count) a node's `domains` hold there, counting those
    present (held): the one sum behind admission (load_of) and every listing
    of what a node carries (node list, cluster status, metrics)."""
    mem = vcpus = count = 0
    for d in domains:
        if d.active:
            m, v = held(d)
            mem, vcpus, count = mem + m, vcpus + v, count + 1
    return mem, vcpus, count


def need_to_move(fact, spec) -> Need:
    """A running domain moved live: it takes what it holds; its disks are conf/'s."""
    mem, vcpus = held(fact)
    return Need(fact.name, mem, vcpus, tuple(spec.disks) if spec is not None else (), fact.container)


@dataclass(frozen=True)
class Load:
    """A node as the rules see it, moments ago: what it can give and what it carries."""

    name: str
    reachable: bool
    error: str | None = None
    maintenance: bool = False
    usable_mib: int | None = None     # None: unknown (never scanned)
    basis: str = ""                   # how usable_mib was found, for messages
    cpus: int = 0
    max_ratio: float = 4.0
    memory_mib: int = 0               # held by the domains present there
    vcpus: int = 0
    count: int = 0
    paths: Mapping[str, bool] = field(default_factory=dict)   # disk paths checked there (rules.disks)
    lxc: bool | None = None           # it offers containers (rules.drivers)
    lxc_error: str | None = None

    @property
    def vcpu_cap(self) -> int:
        return vcpu_cap(self.cpus, self.max_ratio)


def capacity_problems(load: Load) -> list[str]:
    """Why the node takes no domain at all, whatever its size (empty: its
    capacity is known). The one decision about a node whose memory or CPUs
    are not known (never read by a scan, no cap), or that has no memory to
    give: it takes nothing, never "anything fits"."""
    node, problems = load.name, []
    if load.usable_mib is None:
        problems.append(f"memory: how much memory {node} has is not known (no scan read it, "
                        "no cap is set): it takes no domain")
    elif load.usable_mib <= 0:
        problems.append(f"memory: {node} can give domains no memory ({load.basis}): "
                        "it takes no domain")
    if not load.cpus:
        problems.append(f"vCPUs: how many CPUs {node} has is not known (no scan read it): "
                        "it takes no domain")
    return problems


def memory_fits(load: Load, memory_mib: int) -> bool:
    return load.usable_mib is not None and load.memory_mib + memory_mib <= load.usable_mib


def vcpus_fit(load: Load, vcpus: int) -> bool:
    return bool(load.cpus) and load.vcpus + vcpus <= load.vcpu_cap


def fit_problems(load: Load, need: Need, extra_mib: int = 0, extra_vcpus: int = 0) -> list[str]:
    """Why `need` cannot be placed on the node now (empty: it can), with the numbers.

    `extra_*` count what a plan has already promised to that node.
    """
    node = load.name
    if not load.reachable:
        return [f"target {node} is unreachable ({load.error or 'not scanned'})"]
    problems = [f"node {node} is in maintenance"] if load.maintenance else []
    problems += driver_problems(node, load.lxc, load.lxc_error, need.container)
    unknown = capacity_problems(load)
    if unknown:
        return problems + unknown + disk_problems(node, load.paths, need.disks)
    mem, vcpus = load.memory_mib + extra_mib, load.vcpus + extra_vcpus
    after = Load(**{**load.__dict__, "memory_mib": mem, "vcpus": vcpus})
    if not memory_fits(after, need.memory_mib):
        problems.append(
            f"memory: {node} can give domains {load.usable_mib} MiB ({load.basis}), {mem} MiB "
            f"are allocated to {load.count} running domain(s), {need.name} needs "
            f"{need.memory_mib} MiB: {mem + need.memory_mib - load.usable_mib} MiB short")
    if not vcpus_fit(after, need.vcpus):
        problems.append(
            f"vCPUs: {node} has {load.cpus} CPUs and {vcpus} vCPUs allocated; {need.name}'s "
            f"{need.vcpus} would make {(vcpus + need.vcpus) / load.cpus:.2f} per CPU, over the "
            f"limit of {load.max_ratio:g}")
    return problems + disk_problems(node, load.paths, need.disks)


def growth_problems(load: Load, fact, memory_mib: int | None = None,
                    vcpus: int | None = None) -> list[str]:
    """Why a domain present on the node (`fact`: it holds there what `held`
    says) cannot grow in place to `memory_mib` / `vcpus` (None: unchanged),
    with the numbers; empty: it can. Shrinking always fits. The load already
    counts what the domain holds: only the growth is added to it."""
    node, name = load.name, fact.name
    mem_now, vcpus_now = held(fact)
    more_mib = max(0, (memory_mib if memory_mib is not None else mem_now) - mem_now)
    more_vcpus = max(0, (vcpus if vcpus is not None else vcpus_now) - vcpus_now)
    if not more_mib and not more_vcpus:
        return []
    if not load.reachable:
        return [f"node {node} is unreachable ({load.error or 'not scanned'})"]
    unknown = capacity_problems(load)
    if unknown:
        return unknown
    problems = []
    if more_mib and not memory_fits(load, more_mib):
        problems.append(
            f"memory: {node} can give domains {load.usable_mib} MiB ({load.basis}), {load.memory_mib} "
            f"MiB are allocated to {load.count} running domain(s) ({name} holds {mem_now} MiB); "
            f"{name} at {memory_mib} MiB needs {more_mib} MiB more: "
            f"{load.memory_mib + more_mib - load.usable_mib} MiB short")
    if more_vcpus and not vcpus_fit(load, more_vcpus):
        problems.append(
            f"vCPUs: {node} has {load.cpus} CPUs and {load.vcpus} vCPUs allocated ({name} holds "
            f"{vcpus_now}); {name} at {vcpus} would make {(load.vcpus + more_vcpus) / load.cpus:.2f} "
            f"per CPU, over the limit of {load.max_ratio:g}")
    return problems


def over_limits(load: Load) -> list[tuple[str, str]]:
    """(kind, message) for a node that already carries more than its known
    limits allow (an unknown limit: capacity_problems)."""
    out = []
    if load.usable_mib is not None and not memory_fits(load, 0):
        out.append(("over-memory", f"{load.name} has {load.memory_mib} MiB allocated, "
                                   f"{load.usable_mib} MiB usable"))
    if load.cpus and not vcpus_fit(load, 0):
        out.append(("over-vcpu", f"{load.name} runs {load.vcpus} vCPUs on {load.cpus} CPUs "
                                 f"({load.vcpus / load.cpus:.2f} per CPU, limit {load.max_ratio:g})"))
    return out


def load_of(cluster, state, cfg, node: str) -> Load:
    """The node's Load from a fresh scan (`cluster`) and the admin's facts (`state`)."""
    rec = state.nodes[node]
    facts = cluster.nodes.get(node)
    if facts is None or not facts.reachable:
        return Load(node, False, facts.error if facts is not None else "not scanned",
                    rec.maintenance)
    total = facts.memory_mib or rec.memory_mib
    basis = (f"cap {rec.memory_cap_mib} MiB" if rec.memory_cap_mib is not None
             else f"{total} MiB total - {cfg.reserve_mib} MiB reserve")
    mem, vcpus, count = allocated(facts.every_domain())
    return Load(node, True, None, rec.maintenance,
                usable_memory(rec.memory_cap_mib, total, cfg.reserve_mib), basis,
                facts.cpus or 0, cfg.vcpu_ratio, mem, vcpus, count,
                facts.paths, facts.lxc, facts.lxc_error)
