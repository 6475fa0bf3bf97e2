"""Pure planners: a fresh Cluster + the state + a request -> a Plan, or a Refusal.

No I/O here. Every refusal names the rule and the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cluster import Cluster, usable_memory
from .domxml import DomainSpec
from .errors import Refusal, UsageError
from .remote import migrate_argv, virsh_argv
from .state import State


@dataclass
class Step:
    node: str
    argv: list[str]
    why: str
    stdin_file: str | None = None      # the conf/ file whose bytes go on stdin (shown)
    stdin_data: bytes | None = None    # those bytes, read once when the spec was
    kind: str = "run"                  # run, migrate, wait-off
    domain: str | None = None
    target: str | None = None
    timeout: float | None = None
    hint: str = ""                     # what the admin can do when the step fails


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def node_capacity(cluster: Cluster, state: State, cfg, node: str):
    """(usable MiB, allocated MiB, allocated vCPUs, cpus, count) of a node, fresh."""
    facts = cluster.nodes[node]
    usable = usable_memory(state.nodes[node], facts, cfg.reserve_mib)
    mem, vcpus, count = cluster.allocated(node)
    return usable, mem, vcpus, facts.cpus or 0, count


def placement_problems(cluster: Cluster, state: State, cfg, spec: DomainSpec, node: str,
                       extra_mib: int = 0, extra_vcpus: int = 0) -> list[str]:
    """Why `spec` cannot run on `node` now (empty list: it can).

    `extra_*` count what a plan has already promised to that node.
    """
    rec = state.nodes[node]
    facts = cluster.nodes.get(node)
    if facts is None or not facts.reachable:
        why = facts.error if facts is not None else "not scanned"
        return [f"target {node} is unreachable ({why})"]
    problems = []
    if rec.maintenance:
        problems.append(f"node {node} is in maintenance")
    usable, mem, vcpus, cpus, count = node_capacity(cluster, state, cfg, node)
    mem += extra_mib
    vcpus += extra_vcpus
    basis = f"cap {rec.memory_cap_mib} MiB" if rec.memory_cap_mib is not None else \
        f"{facts.memory_mib} MiB total - {cfg.reserve_mib} MiB reserve"
    if usable is not None and mem + spec.memory_mib > usable:
        problems.append(
            f"memory: {node} can give domains {usable} MiB ({basis}), {mem} MiB are "
            f"allocated to {count} running domain(s), {spec.name} needs {spec.memory_mib} MiB: "
            f"{mem + spec.memory_mib - usable} MiB short")
    if cpus:
        ratio = (vcpus + spec.vcpus) / cpus
        if ratio > cfg.vcpu_ratio + 1e-9:
            problems.append(
                f"vCPUs: {node} has {cpus} CPUs and {vcpus} vCPUs allocated; "
                f"{spec.name}'s {spec.vcpus} would make {ratio:.2f} per CPU, over the "
                f"limit of {cfg.vcpu_ratio:g}")
    for path in spec.disks:
        seen = facts.paths.get(path)
        if seen is None:
            problems.append(f"disk: {path} was not checked on {node}")
        elif not seen:
            problems.append(f"disk: {path} does not exist on {node}")
    return problems


def presence_problems(cluster: Cluster, name: str, force: bool, allow_on: str | None = None) -> list[str]:
    """The domain must not be present anywhere (except `allow_on`), and every
    node must have answered (else it might be there), unless `force`."""
    problems = []
    for node, fact in cluster.copies(name):
        if node == allow_on:
            continue
        if fact.migrating:
            problems.append(f"{name} is arriving by migration on {node} (paused, reason {fact.reason})")
        else:
            problems.append(f"{name} is already {fact.state} on {node}")
    down = cluster.unreachable()
    if down and not force:
        for f in down:
            problems.append(f"node {f.name} did not answer ({f.error}): {name} might run there "
                            "(--force to go on without it)")
    return problems


def _create_step(cfg, spec: DomainSpec, node: str) -> Step:
    return Step(node=node, argv=virsh_argv(cfg, "create", "/dev/stdin"), stdin_file=spec.path,
                stdin_data=spec.raw, domain=spec.name, why=f"start {spec.name} on {node}")


def plan_start(cluster: Cluster, state: State, cfg, spec: DomainSpec, node: str,
               force: bool = False) -> Plan:
    if node not in state.nodes:
        raise UsageError(f"unknown node {node!r}")
    problems = []
    drec = state.domains.get(spec.name)
    if drec is not None and drec.maintenance:
        problems.append(f"domain {spec.name} is in maintenance (havirt domain maintenance {spec.name} off)")
    problems += presence_problems(cluster, spec.name, force)
    if drec is not None and drec.stale and drec.node and drec.node not in cluster.nodes \
            and not force:
        problems.append(f"{spec.name} was last seen on {drec.node}, which is no longer "
                        "scanned: it might still run there (--force to go on)")
    problems += placement_problems(cluster, state, cfg, spec, node)
    if problems:
        raise Refusal(problems)
    return Plan(steps=[_create_step(cfg, spec, node)])


def where_running(cluster: Cluster, name: str) -> str:
    """The one node where `name` runs; refuses when none or several."""
    copies = cluster.copies(name)
    if not copies:
        down = [f.name for f in cluster.unreachable()]
        extra = f" (unreachable, not checked: {', '.join(down)})" if down else ""
        raise Refusal(f"{name} is not running on any node that answered{extra}")
    if len(copies) > 1:
        raise Refusal(f"{name} is present on {len(copies)} nodes: "
                      f"{', '.join(n for n, _ in copies)}; act on each node by hand")
    return copies[0][0]


def plan_shutdown(cluster: Cluster, cfg, name: str, wait: float | None, force: bool) -> Plan:
    node = where_running(cluster, name)
    steps = [Step(node=node, argv=virsh_argv(cfg, "shutdown", name), domain=name,
                  why=f"ask {name} on {node} to shut down")]
    if wait:
        steps.append(Step(node=node, argv=[], kind="wait-off", domain=name, timeout=wait,
                          why=f"wait up to {wait:g} s for {name} to be off",
                          hint="" if force else "add --force to power it off then"))
        if force:
            steps.append(Step(node=node, argv=virsh_argv(cfg, "destroy", name), domain=name,
                              kind="destroy-if-running",
                              why=f"power {name} off if it is still running"))
    return Plan(steps=steps)


def plan_destroy(cluster: Cluster, cfg, name: str) -> Plan:
    node = where_running(cluster, name)
    return Plan(steps=[Step(node=node, argv=virsh_argv(cfg, "destroy", name), domain=name,
                            why=f"power {name} off on {node}")])


def migrate_step(state: State, cfg, name: str, source: str, target: str, timeout: float) -> Step:
    t = state.nodes[target]
    argv = migrate_argv(cfg, name, t.address, t.user or cfg.ssh.user, t.port or cfg.ssh.port)
    return Step(node=source, argv=argv, kind="migrate", domain=name, target=target,
                timeout=timeout, why=f"live-migrate {name} from {source} to {target}")


def best_target(cluster: Cluster, state: State, cfg, spec: DomainSpec, source: str,
                candidates) -> tuple[str | None, dict[str, list[str]]]:
    """The node with the most free memory after the move, among those that pass."""
    best, best_free, rejected = None, None, {}
    for node in sorted(candidates):
        if node == source:
            continue
        problems = placement_problems(cluster, state, cfg, spec, node)
        if problems:
            rejected[node] = problems
            continue
        usable, mem, _, _, _ = node_capacity(cluster, state, cfg, node)
        free = (usable or 0) - mem - spec.memory_mib
        if best_free is None or free > best_free:
            best, best_free = node, free
    return best, rejected


def plan_migrate(cluster: Cluster, state: State, cfg, spec: DomainSpec, target: str | None,
                 offline: bool, timeout: float) -> Plan:
    problems = []
    drec = state.domains.get(spec.name)
    if drec is not None and drec.maintenance:
        problems.append(f"domain {spec.name} is in maintenance")
    copies = cluster.copies(spec.name)
    if len(copies) != 1:
        where = ", ".join(n for n, _ in copies) or "no node that answered"
        raise Refusal([f"{spec.name} must run on exactly one node to migrate; it is on {where}"])
    source, fact = copies[0]
    if fact.state not in ("running", "paused") or fact.migrating:
        problems.append(f"{spec.name} is {fact.state} on {source}"
                        + (" (a migration is under way)" if fact.migrating else ""))
    for f in cluster.unreachable():
        problems.append(f"node {f.name} did not answer ({f.error}): cannot prove {spec.name} runs only once")
    if target is None:
        target, rejected = best_target(cluster, state, cfg, spec, source, state.nodes)
        if target is None:
            detail = "; ".join(f"{n}: {', '.join(p)}" for n, p in rejected.items()) or "no other node"
            problems.append(f"no node can take {spec.name}: {detail}")
    elif target == source:
        problems.append(f"{spec.name} already runs on {target}")
    else:
        if target not in state.nodes:
            raise UsageError(f"unknown node {target!r}")
        problems += placement_problems(cluster, state, cfg, spec, target)
    if problems:
        raise Refusal(problems)
    if offline:
        steps = [
            Step(node=source, argv=virsh_argv(cfg, "shutdown", spec.name), domain=spec.name,
                 why=f"shut {spec.name} down on {source}"),
            Step(node=source, argv=[], kind="wait-off", domain=spec.name, timeout=timeout,
                 why=f"wait up to {timeout:g} s for {spec.name} to be off"),
            _create_step(cfg, spec, target),
        ]
        return Plan(steps=steps)
    return Plan(steps=[migrate_step(state, cfg, spec.name, source, target, timeout)])
