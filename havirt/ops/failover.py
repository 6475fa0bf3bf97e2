"""node failover and recovery: the decision is plan/failover.py's (pure);
here the fence runs, and each domain is restarted, re-checked against a
fresh scan first and verified by one after."""

from __future__ import annotations

import time

from havirt.errors import HavirtError, Refusal, RemoteError
from havirt.ops.moves import show_moves
from havirt.ops.outcome import Outcome
from havirt.parse.virsh import is_lease_refusal
from havirt.plan.domains import create_step, placement_problems
from havirt.plan.failover import FailoverPlan, Guard, Restart, Result, decide_failover, last_seen_on
from havirt.plan.planner_input import disk_paths
from havirt.remote.steps import Plan
from havirt.rules.fit import need_to_start
from havirt.rules.leases import lease_guard_problems
from havirt.rules.presence import presence_problems, silent_guards
from havirt.scan.cluster import Finding
from havirt.store.state import now_iso


def node_failover(app, node: str, to=(), confirm_off=False) -> Outcome:
    """`havirt node failover`: one unit of work."""
    with app.work() as w:
        return failover(w, node, to, confirm_off)[0]


def failover(w, node: str, to=(), confirm_off=False,
             recovering=False) -> tuple[Outcome, list[Restart]]:
    """Plan, and unless a dry run, fence (if that is the guard) and restart
    each domain, each re-checked against a fresh scan and verified by one.
    Returns what to show, and what became of each domain it tried."""
    specs, _ = w.conf.load_all()
    w.state.node(node)
    candidates = last_seen_on(w.state, node)
    cluster, findings = w.scan(paths=disk_paths(specs))
    plan = decide_failover(cluster, w.state, w.cfg, node, candidates, specs, to, confirm_off,
                           allow_confirm=not recovering)
    out = Outcome(dry_run=w.dry_run, findings=findings)
    out.notes = [f"failover of {node} ({cluster.nodes[node].error}): "
                 + (f"guard: {plan.guard.value}" if plan.guard else "no guard holds")]
    out.notes += [f"  {line}" for line in plan.why]
    if plan.guard is None:
        raise Refusal([f"failover of {node} refused: no guard proves its domains cannot run "
                       "twice"] + plan.why)
    show_moves(out, plan.moves)
    out.notes += [f"  stays down: {d}: {why}" for d, why in plan.blocking]
    out.data.update(guard=plan.guard.value,
                    blocking=[{"domain": d, "why": w_} for d, w_ in plan.blocking])
    steps = plan.fence.steps + [create_step(w.cfg, specs[m.domain], m.target) for m in plan.moves]
    out.lines = w.show(Plan(steps=steps))
    if w.dry_run:
        return out, []
    if plan.fence.steps:
        try:
            w.run(plan.fence)
        except RemoteError as e:
            raise Refusal(f"the fence of {node} did not confirm it off, nothing was started: {e}") from None
        out.done.append(f"{node} fenced: powered off and confirmed off")
    rec = w.state.nodes[node]      # down until it answers again (see rules.presence.silent_guards)
    rec.down_since, rec.down_guard = now_iso(), plan.guard.value
    w.changed()
    results = _restart_all(w, plan, specs)
    out.data["results"] = [{"domain": r.domain, "outcome": r.text, "node": r.node} for r in results]
    out.done += [f"{r.domain}: {r.text}" for r in results]
    out.failed = any(r.result is not Result.STARTED for r in results)
    return out, results


def _restart_all(w, plan: FailoverPlan, specs) -> list[Restart]:
    """Restart the planned domains in turn, each re-checked against ONE fresh
    scan taken before the first (what was started since counts on its target,
    and where a start failed for another reason than its lease, it may run:
    counted too), then all verified by one scan of their targets. The failed
    node, silent since the plan's scan, is not asked again (ops/work.py)."""
    cluster, _ = w.scan(paths=sorted({p for m in plan.moves for p in specs[m.domain].disks}))
    promised: dict[str, tuple[int, int]] = {}      # target -> (MiB, vCPUs) started there since
    results, started = {}, []
    t0 = time.monotonic()
    for i, m in enumerate(plan.moves, 1):
        w.out.step(i, len(plan.moves), f"{m.domain}: {plan.node} -> {m.target}", time.monotonic() - t0)
        spec, need = specs[m.domain], need_to_start(specs[m.domain])
        problems = _problems(w, plan, cluster, spec, m.target, promised.get(m.target, (0, 0)))
        if problems:
            results[m.domain] = Restart(m.domain, Result.DID_NOT_FIT, None, "; ".join(problems))
            continue
        results[m.domain] = _start(w, plan, spec, m.target)
        if results[m.domain].result is not Result.LEASE_REFUSED:
            mem, vcpus = promised.get(m.target, (0, 0))
            promised[m.target] = (mem + need.memory_mib, vcpus + need.vcpus)
        if results[m.domain].result is Result.STARTED:
            started.append(m)
    if started:
        nodes = w.scan(sorted({m.target for m in started})).cluster.nodes
        for m in started:
            facts = nodes[m.target]
            fact = facts.domains.get(m.domain) if facts.reachable else None
            if fact is None or not fact.active:
                results[m.domain] = Restart(m.domain, Result.FAILED, None, f"not confirmed on {m.target}: "
                                            f"{facts.error or 'not running after the start'}")
            else:
                w.state.domains[m.domain].maybe_on = []   # the guard proved it does not run on the node
    return [results[m.domain] for m in plan.moves]


def _problems(w, plan: FailoverPlan, cluster, spec, target: str, promised) -> list[str]:
    """Why `spec` may not start on `target` now (empty: it may)."""
    guards = silent_guards(cluster, w.state, spec, target)
    problems = presence_problems(cluster, spec.name, force=False, excused={plan.node, *guards},
                                 can_force=False)
    problems += placement_problems(cluster, w.state, w.cfg, need_to_start(spec), target, *promised)
    if plan.guard is Guard.LEASES:
        problems += lease_guard_problems(cluster, w.state, plan.node, [target])
    return problems


def _start(w, plan: FailoverPlan, spec, target: str) -> Restart:
    """`virsh create` on `target`; STARTED means the command succeeded (verified after)."""
    try:
        w.run(Plan(steps=[create_step(w.cfg, spec, target)]))
    except RemoteError as e:
        if is_lease_refusal(str(e)):
            return Restart(spec.name, Result.LEASE_REFUSED, plan.node)
        return Restart(spec.name, Result.FAILED, None, f"failed on {target}: {e}")
    except HavirtError as e:
        return Restart(spec.name, Result.FAILED, None, f"failed on {target}: {e}")
    return Restart(spec.name, Result.STARTED, target)


def recover(w) -> list[Finding]:
    """From cron (`node scan --recover`): fail over every node silent for
    `recover.after` scans in a row that still has domains, under the leases
    or fence guard only (never on the admin's word). Domains in maintenance,
    and domains the admin shut off, are never started. What happened comes
    back as findings, so that cron mails it."""
    findings = []
    for name, rec in sorted(w.state.nodes.items()):
        if rec.reachable or rec.silent_scans < w.cfg.recover_after:
            continue
        if not any(not w.state.domains[d].maintenance for d in last_seen_on(w.state, name)):
            continue
        silent = f"{name} has not answered {rec.silent_scans} scans in a row"
        try:
            out, results = failover(w, name, recovering=True)
        except HavirtError as e:
            findings.append(Finding("error", "not-recovered", name, f"{silent}; not recovered: {e}",
                                    f"havirt node failover {name} (see its guards)"))
            continue
        if w.dry_run:
            findings += [Finding("warning", "recovery-planned", m["domain"],
                                 f"{silent}: would start {m['domain']} on {m['to']}")
                         for m in out.data.get("moves", [])]
        for r in results:
            started = r.result is Result.STARTED
            findings.append(Finding("warning" if started else "error",
                                    "recovered" if started else "not-recovered", r.domain,
                                    f"{silent} ({out.data['guard']}): {r.domain} {r.text}"))
        findings += [Finding("error", "not-recovered", b["domain"],
                             f"{silent}: {b['domain']} stays down: {b['why']}")
                     for b in out.data.get("blocking", [])]
    return findings
