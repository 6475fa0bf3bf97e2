"""Pure planners: a fresh Cluster + the state + a request -> a Plan, or a Refusal.

No I/O here. Every refusal names the rule and the numbers; the rules
themselves are in rules/.
"""

from __future__ import annotations

from havirt.errors import Refusal, UsageError
from havirt.parse.domxml import DomainSpec
from havirt.remote import commands as remote
from havirt.remote.steps import Plan, Step, StepKind
from havirt.rules.drivers import live_move_problems
from havirt.rules.fit import Need, fit_problems, load_of, need_to_move, need_to_start
from havirt.rules.ownership import start_problems
from havirt.rules.presence import presence_problems, silent_guards
from havirt.scan.cluster import Cluster
from havirt.store.state import State


def placement_problems(cluster: Cluster, state: State, cfg, need: Need, node: str,
                       extra_mib: int = 0, extra_vcpus: int = 0) -> list[str]:
    """Why `need` cannot go to `node` now, by the rules (empty: it can);
    `extra_*`: what was placed there since `cluster` was read."""
    return fit_problems(load_of(cluster, state, cfg, node), need, extra_mib, extra_vcpus)


def create_step(cfg, spec: DomainSpec, node: str, note: str = "") -> Step:
    """`virsh create` of `spec`'s bytes (`note`: how they differ from its conf/ file)."""
    return Step(node=node, command=remote.create(cfg, uri=remote.driver_uri(cfg, spec.driver)),
                stdin_file=spec.path, stdin_note=note,
                stdin_data=spec.raw, domain=spec.name, why=f"start {spec.name} on {node}")


def plan_start(cluster: Cluster, state: State, cfg, spec: DomainSpec, node: str,
               force: bool = False, specs=None, note: str = "") -> Plan:
    """Start `spec` on `node`; `specs` (conf/) for the rule of ownership."""
    if node not in state.nodes:
        raise UsageError(f"unknown node {node!r}")
    problems = []
    drec = state.domains.get(spec.name)
    if drec is not None and drec.maintenance:
        problems.append(f"domain {spec.name} is in maintenance (havirt domain maintenance {spec.name} off)")
    guards = silent_guards(cluster, state, spec, node)
    problems += presence_problems(cluster, spec.name, force, excused=guards)
    if drec is not None and drec.stale and drec.node and drec.node not in cluster.nodes \
            and not force:
        problems.append(f"{spec.name} was last seen on {drec.node}, which is no longer "
                        "scanned: it might still run there (--force to go on)")
    problems += start_problems(spec, specs or {}, cluster)
    problems += placement_problems(cluster, state, cfg, need_to_start(spec), node)
    if problems:
        raise Refusal(problems)
    return Plan(steps=[create_step(cfg, spec, node, note)], notes=sorted(guards.values()))


def where_running(cluster: Cluster, name: str) -> str:
    """The one node where `name` runs; refuses when none or several."""
    return running_copy(cluster, name)[0]


def running_copy(cluster: Cluster, name: str):
    """(node, DomainFact) of the one copy of `name` that runs, VM or
    container; refuses when none or several."""
    copies = cluster.copies(name)
    if not copies:
        down = [f.name for f in cluster.unreachable()]
        extra = f" (unreachable, not checked: {', '.join(down)})" if down else ""
        raise Refusal(f"{name} is not running on any node that answered{extra}")
    if len(copies) > 1:
        raise Refusal(f"{name} is present on {len(copies)} nodes: "
                      f"{', '.join(n for n, _ in copies)}; act on each node by hand")
    return copies[0]


def uri_of(cfg, fact) -> str:
    """The URI of the driver that runs this copy (a container: virsh.lxc_uri)."""
    return remote.driver_uri(cfg, fact.driver)


def wait_off_step(cfg, node: str, name: str, seconds: float, hint: str = "",
                  uri: str | None = None) -> Step:
    return Step(node=node, command=remote.wait_off(cfg, name, seconds, uri=uri), kind=StepKind.WAIT_OFF,
                domain=name, timeout=seconds, why=f"wait up to {seconds:g} s for {name} to be off",
                hint=hint)


def plan_shutdown(cluster: Cluster, cfg, name: str, wait: float | None, force: bool) -> Plan:
    node, fact = running_copy(cluster, name)
    uri = uri_of(cfg, fact)
    steps = [Step(node=node, command=remote.shutdown(cfg, name, uri=uri), domain=name,
                  why=f"ask {name} on {node} to shut down")]
    if wait:
        steps.append(wait_off_step(cfg, node, name, wait,
                                   "" if force else "add --force to power it off then", uri=uri))
        if force:
            steps.append(Step(node=node, command=remote.destroy(cfg, name, uri=uri), domain=name,
                              kind=StepKind.FORCE_OFF,
                              why=f"power {name} off if it is still running"))
    return Plan(steps=steps)


def plan_destroy(cluster: Cluster, cfg, name: str) -> Plan:
    node, fact = running_copy(cluster, name)
    return Plan(steps=[Step(node=node, command=remote.destroy(cfg, name, uri=uri_of(cfg, fact)), domain=name,
                            why=f"power {name} off on {node}")])


def migrate_step(state: State, cfg, name: str, source: str, target: str, timeout: float) -> Step:
    t = state.nodes[target]
    command = remote.migrate(cfg, name, t.address, t.user or cfg.ssh.user, t.port or cfg.ssh.port)
    return Step(node=source, command=command, kind=StepKind.MIGRATE, domain=name, target=target,
                timeout=timeout, why=f"live-migrate {name} from {source} to {target}")


def best_target(cluster: Cluster, state: State, cfg, need: Need, source: str,
                candidates) -> tuple[str | None, dict[str, list[str]]]:
    """The node with the most free memory after the move, among those that pass."""
    best, best_free, rejected = None, None, {}
    for node in sorted(candidates):
        if node == source:
            continue
        load = load_of(cluster, state, cfg, node)
        problems = fit_problems(load, need)
        if problems:
            rejected[node] = problems
            continue
        free = load.usable_mib - load.memory_mib - need.memory_mib
        if best_free is None or free > best_free:
            best, best_free = node, free
    return best, rejected


def plan_migrate(cluster: Cluster, state: State, cfg, spec: DomainSpec, target: str | None,
                 offline: bool, timeout: float) -> Plan:
    """Live: the domain takes what it holds now; offline: it starts anew from conf/."""
    problems = []
    drec = state.domains.get(spec.name)
    if drec is not None and drec.maintenance:
        problems.append(f"domain {spec.name} is in maintenance")
    copies = cluster.copies(spec.name)
    if len(copies) != 1:
        where = ", ".join(n for n, _ in copies) or "no node that answered"
        raise Refusal([f"{spec.name} must run on exactly one node to migrate; it is on {where}"])
    source, fact = copies[0]
    if not offline and (fact.container or spec.container):
        raise Refusal(live_move_problems(spec.name, True))
    if fact.state not in ("running", "paused") or fact.migrating:
        problems.append(f"{spec.name} is {fact.state} on {source}"
                        + (" (a migration is under way)" if fact.migrating else ""))
    need = need_to_start(spec) if offline else need_to_move(fact, spec)
    if target is None:
        target, rejected = best_target(cluster, state, cfg, need, source, state.nodes)
        if target is None:
            detail = "; ".join(f"{n}: {', '.join(p)}" for n, p in rejected.items()) or "no other node"
            problems.append(f"no node can take {spec.name}: {detail}")
    elif target == source:
        problems.append(f"{spec.name} already runs on {target}")
    else:
        if target not in state.nodes:
            raise UsageError(f"unknown node {target!r}")
        problems += placement_problems(cluster, state, cfg, need, target)
    guards = silent_guards(cluster, state, spec, target) if target else {}
    problems += presence_problems(cluster, spec.name, force=False, allow_on=source, excused=guards,
                                  can_force=False)
    if problems:
        raise Refusal(problems)
    notes = sorted(guards.values())
    if offline:
        return Plan(notes=notes, steps=offline_steps(cfg, spec, fact, source, target, timeout))
    return Plan(steps=[migrate_step(state, cfg, spec.name, source, target, timeout)], notes=notes)


def offline_steps(cfg, spec: DomainSpec, fact, source: str, target: str, timeout: float) -> list[Step]:
    """Stop the running copy (`fact`, by its own driver) on `source`, wait
    until it is off, start `spec` on `target`: an offline move, the one way
    a container moves."""
    uri = remote.driver_uri(cfg, (fact or spec).driver)
    return [Step(node=source, command=remote.shutdown(cfg, spec.name, uri=uri), domain=spec.name,
                 why=f"shut {spec.name} down on {source}"),
            wait_off_step(cfg, source, spec.name, timeout, uri=uri),
            create_step(cfg, spec, target)]


def move_steps(cluster: Cluster, state: State, cfg, spec: DomainSpec, source: str, target: str,
               timeout: float) -> list[Step]:
    """The steps of one planned move (evacuation, balance): a live migration,
    or for a container (rules.drivers: no live move) an offline one."""
    copies = [f for n, f in cluster.copies(spec.name) if n == source]
    if spec.container or (copies and copies[0].container):
        fact = copies[0] if copies else None
        return offline_steps(cfg, spec, fact, source, target, timeout)
    return [migrate_step(state, cfg, spec.name, source, target, timeout)]


def plan_reboot(cluster: Cluster, cfg, name: str, hard: bool = False) -> Plan:
    """Reboot (ACPI, the guest's choice) or reset (at once) where it runs;
    refused unless it is running there (paused, arriving, crashed: no). A
    container has no reset: libvirt's LXC driver does not implement one."""
    node, fact = running_copy(cluster, name)
    if hard and fact.container:
        raise Refusal(f"{name} is a container: libvirt's LXC driver has no reset; use "
                      f"havirt domain reboot {name}, or destroy then start")
    if fact.state != "running":
        raise Refusal(f"{name} is {fact.state} on {node}, not running"
                      + (" (a migration is under way)" if fact.migrating else ""))
    return Plan(steps=[Step(node=node, command=remote.reboot(cfg, name, hard, uri=uri_of(cfg, fact)),
                            domain=name,
                            why=f"reset {name} on {node}" if hard
                            else f"ask {name} on {node} to reboot")])
