"""node failover: restart the domains of a node that does not answer on the
other nodes, but only under a guard that proves they cannot run twice.

Guards, strongest first:
  leases       libvirt's leases were in force on the silent node at its last
               scan and are on every receiving node, in the same lockspace:
               if the node is in fact alive, each start fails at qemu;
  fence        the node's fence command (config.yaml) powered it off, and its
               status command confirmed it;
  confirm-off  the admin says the node is powered off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from havirt.errors import HavirtError, Refusal, RemoteError
from havirt.ops.moves import show_moves
from havirt.ops.outcome import Outcome
from havirt.parse.virsh import is_lease_refusal
from havirt.plan.balance import Move, plan_failover
from havirt.plan.domains import create_step, placement_problems
from havirt.plan.planner_input import (
    allowed_nodes,
    disk_paths,
    node_loads,
    planner_domain,
    planner_domains,
    planner_nodes,
)
from havirt.remote import commands as remote
from havirt.remote.steps import Plan, Step, StepKind
from havirt.rules.fit import need_to_start
from havirt.rules.leases import lease_gaps, lease_guard_problems
from havirt.rules.presence import presence_problems
from havirt.scan.cluster import Finding


@dataclass
class FailoverPlan:
    node: str
    guard: str | None                        # leases, fence, confirm-off; None: refused
    why: list[str]                           # how the guard holds, or why none does
    moves: list[Move] = field(default_factory=list)
    blocking: list[tuple[str, str]] = field(default_factory=list)
    fence: Plan = field(default_factory=Plan)    # the fence steps (guard fence)


def last_seen_on(state, node: str) -> list[str]:
    """Domains the last scans saw running on `node` (before this command's scan)."""
    return sorted(d.name for d in state.domains.values() if d.node == node and d.active)


def _to_restart(app, cluster, candidates, specs: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Which of `candidates` to restart, and those that stay down (why)."""
    names, skipped = [], []
    for name in candidates:
        rec = app.state.domain(name)
        copies = cluster.copies(name)
        if rec.maintenance:
            skipped.append((name, "in maintenance: failover never starts it"))
        elif copies:
            skipped.append((name, f"already {copies[0][1].state} on {copies[0][0]}"))
        elif name not in specs:
            skipped.append((name, "no usable XML in conf/"))
        else:
            names.append(name)
    return names, skipped


def _guard(app, cluster, node, receivers, names, specs, confirm_off, allow_confirm):
    """(guard, how it holds or why none does, domains the guard leaves out)."""
    lease_problems = lease_guard_problems(cluster, app.state, node, receivers) if receivers else \
        ["no node can receive"]
    gaps = {n: lease_gaps(specs[n]) for n in names}
    uncovered = {n: g for n, g in gaps.items() if g}
    fence = app.cfg.fence.get(node)
    if not lease_problems and not uncovered:
        return "leases", [f"leases were in force on {node} at its last scan "
                          f"({app.state.nodes[node].last_scan}) and are on "
                          f"{', '.join(receivers)}, in the same lockspace "
                          f"({app.state.nodes[node].lockspace})"], {}
    if fence is not None:
        return "fence", [f"{node} is powered off by its fence command first"], {}
    if confirm_off and allow_confirm:
        return "confirm-off", [f"the admin says {node} is powered off (--confirm-off)"], {}
    if not lease_problems:
        left = {n: f"leases cannot protect it: {'; '.join(g)}" for n, g in uncovered.items()}
        return "leases", [f"leases are in force on {node} and {', '.join(receivers)}, same lockspace;"
                          " the domains they cannot protect stay down"], left
    why = [f"leases: {'; '.join(lease_problems)}", f"fence: none configured for {node}"]
    why.append("--confirm-off: not given" if allow_confirm else "--confirm-off: never from recovery")
    return None, why, {}


def decide_failover(app, cluster, node: str, candidates, specs: dict, to=None, confirm_off=False,
                    allow_confirm=True) -> FailoverPlan:
    """From a fresh scan (no I/O here): the guard, and where each domain of
    `node` restarts (the placement itself is balance.plan_failover's)."""
    app.state.node(node)
    for t in to or ():
        app.state.node(t)
    facts = cluster.nodes[node]
    if facts.reachable:
        raise Refusal(f"node {node} answers: use havirt node maintenance {node} on")
    if facts.alive:
        confirm_off = False         # its sshd answered (virsh failed): it is not powered off
    nodes = [n for n in planner_nodes(cluster, app.state, app.cfg) if n.name != node and (not to or n.name in to)]
    receivers = [n.name for n in nodes if not n.maintenance]
    names, skipped = _to_restart(app, cluster, candidates, specs)
    guard, why, left_out = _guard(app, cluster, node, receivers, names, specs, confirm_off,
                                  allow_confirm)
    plan = FailoverPlan(node, guard, why, blocking=skipped + sorted(left_out.items()))
    if guard is None:
        return plan
    if guard == "fence":
        plan.fence = _fence_plan(app, node)
    loads = node_loads(cluster, app.state, app.cfg, nodes)
    leaving = [planner_domain(name, node, None, specs[name], "", allowed_nodes(loads, specs[name]))
               for name in names if name not in left_out]
    evac = plan_failover(nodes, planner_domains(cluster, app.state, app.cfg, nodes, specs) + leaving, node)
    plan.moves, plan.blocking = evac.moves, plan.blocking + evac.blocking
    return plan


def _fence_plan(app, node: str) -> Plan:
    fence, rec = app.cfg.fence[node], app.state.nodes[node]
    return Plan(steps=[
        Step(node=node, command=remote.local(fence.argv("power_off", node, rec.address)),
             kind=StepKind.LOCAL, why=f"power {node} off (fence)", timeout=fence.timeout),
        Step(node=node, command=remote.local(fence.argv("power_status", node, rec.address)),
             kind=StepKind.LOCAL_UNTIL, expect=fence.off_when.pattern, timeout=fence.timeout,
             why=f"confirm {node} is off"),
    ])


def failover(app, node: str, to=(), confirm_off=False, recovering=False, dry_run=None) -> Outcome:
    """Plan, and unless a dry run, fence (if that is the guard) and restart
    each domain, each re-checked against a fresh scan and verified by one.
    The caller holds the lock."""
    dry_run = app.dry_run if dry_run is None else dry_run
    specs, _ = app.conf.load_all()
    app.state.node(node)
    candidates = last_seen_on(app.state, node)
    cluster, findings = app.scan(paths=disk_paths(specs))
    if not dry_run:
        app.save()
    plan = decide_failover(app, cluster, node, candidates, specs, to, confirm_off,
                         allow_confirm=not recovering)
    out = Outcome(dry_run=dry_run, findings=findings)
    out.notes = [f"failover of {node} ({cluster.nodes[node].error}): "
                 + (f"guard: {plan.guard}" if plan.guard else "no guard holds")]
    out.notes += [f"  {line}" for line in plan.why]
    if plan.guard is None:
        raise Refusal([f"failover of {node} refused: no guard proves its domains cannot run "
                       "twice"] + plan.why)
    show_moves(out, plan.moves)
    out.notes += [f"  stays down: {d}: {why}" for d, why in plan.blocking]
    out.data.update(guard=plan.guard, blocking=[{"domain": d, "why": w} for d, w in plan.blocking])
    ex = app.executor()
    steps = plan.fence.steps + [create_step(app.cfg, specs[m.domain], m.target) for m in plan.moves]
    out.lines = ex.show(Plan(steps=steps))
    if dry_run:
        return out
    if plan.fence.steps:
        try:
            ex.run(plan.fence)
        except RemoteError as e:
            raise Refusal(f"the fence of {node} did not confirm it off, nothing was started: {e}") from None
        out.done.append(f"{node} fenced: powered off and confirmed off")
    start = time.monotonic()
    results = []
    for i, m in enumerate(plan.moves, 1):
        app.out.step(i, len(plan.moves), f"{m.domain}: {node} -> {m.target}", time.monotonic() - start)
        results.append(_restart(app, ex, plan, m, specs[m.domain]))
    out.data["results"] = [{"domain": d, "outcome": o, "node": n} for d, o, n in results]
    out.done += [f"{d}: {o}" for d, o, _ in results]
    if any(o != f"started on {n}" for _, o, n in results):
        out.status = 1
    return out


def _restart(app, ex, plan: FailoverPlan, move: Move, spec) -> tuple[str, str, str | None]:
    """(domain, what happened, where it runs now)."""
    node, target, name = plan.node, move.target, move.domain
    cluster, _ = app.scan_and_save(paths=spec.disks)
    problems = presence_problems(cluster, name, force=False, excused={node}, can_force=False)
    problems += placement_problems(cluster, app.state, app.cfg, need_to_start(spec), target)
    if plan.guard == "leases":
        problems += lease_guard_problems(cluster, app.state, node, [target])
    if problems:
        return name, f"not started: {'; '.join(problems)}", None
    try:
        ex.run(Plan(steps=[create_step(app.cfg, spec, target)]))
    except RemoteError as e:
        if is_lease_refusal(str(e)):
            return name, f"refused by its lease: it still runs on {node}, which is alive", node
        return name, f"failed on {target}: {e}", None
    except HavirtError as e:
        return name, f"failed on {target}: {e}", None
    facts = app.scan_and_save([target]).cluster.nodes[target]
    fact = facts.domains.get(name) if facts.reachable else None
    if fact is None or not fact.active:
        return name, f"not confirmed on {target}: {facts.error or 'not running after the start'}", None
    app.state.domains[name].maybe_on = []     # the guard proved it does not run on `node`
    app.save()
    return name, f"started on {target}", target


def recover(app, dry_run: bool) -> list[Finding]:
    """From cron (`node scan --recover`): fail over every node silent for
    `recover.after` scans in a row that still has domains, under the leases
    or fence guard only (never on the admin's word). Domains in maintenance,
    and domains the admin shut off, are never started. What happened comes
    back as findings, so that cron mails it."""
    findings = []
    for name, rec in sorted(app.state.nodes.items()):
        if rec.reachable or rec.silent_scans < app.cfg.recover_after:
            continue
        if not any(not app.state.domains[d].maintenance for d in last_seen_on(app.state, name)):
            continue
        silent = f"{name} has not answered {rec.silent_scans} scans in a row"
        try:
            out = failover(app, name, recovering=True, dry_run=dry_run)
        except HavirtError as e:
            findings.append(Finding("error", "not-recovered", name, f"{silent}; not recovered: {e}",
                                    f"havirt node failover {name} (see its guards)"))
            continue
        if dry_run:
            findings += [Finding("warning", "recovery-planned", m["domain"],
                                 f"{silent}: would start {m['domain']} on {m['to']}")
                         for m in out.data.get("moves", [])]
        for r in out.data.get("results", []):
            started = r["outcome"].startswith("started on")
            findings.append(Finding("warning" if started else "error",
                                    "recovered" if started else "not-recovered", r["domain"],
                                    f"{silent} ({out.data['guard']}): {r['domain']} {r['outcome']}"))
        findings += [Finding("error", "not-recovered", b["domain"],
                             f"{silent}: {b['domain']} stays down: {b['why']}")
                     for b in out.data.get("blocking", [])]
    return findings
