"""node failover and recovery: the decision is plan/failover.py's (pure);
here the fence runs, and each domain is restarted, re-checked against a
fresh scan first (one after the other), the starts at the same time, and
all verified by one scan after."""

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


# Starts at once on one node: each is a session on the node's one SSH
# connection (sshd allows 10 by default, MaxSessions), and each guest boots
# on the same CPUs; what fits there was decided before, whatever the number.
PER_NODE = 4


def _restart_all(w, plan: FailoverPlan, specs) -> list[Restart]:
    """Restart the planned domains, each re-checked against ONE fresh scan
    taken before the first (what the restarts before it take counts on its
    target: _Restarts), the starts at the same time; then all verified by
    one scan of their targets. The failed node, silent since the plan's
    scan, is not asked again (ops/work.py)."""
    cluster, _ = w.scan(paths=sorted({p for m in plan.moves for p in specs[m.domain].disks}))
    with w.overlap() as starts:
        restarts = _Restarts(w, plan, specs, cluster, starts)
        for i, m in enumerate(plan.moves, 1):
            if restarts.may_start(m):
                restarts.start(i, m)
        restarts.collect(starts.ended(every=True))
    results = restarts.results
    started = [m for m in plan.moves if results[m.domain].result is Result.STARTED]
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


class _Restarts:
    """The restarts of one failover: decided here, one after the other in the
    plan's order, each against the one fresh scan and what the restarts
    before it take on its target; only the starts overlap (remote/executor.py's
    Overlap), PER_NODE at most on one node.

    A start not yet collected counts on its target for all that its domain needs.
    A domain that fits with it counted fits whatever it becomes; one that
    does not waits for the starts on its target to end: one refused by its
    lease then frees what it took (its domain runs on the silent node), one
    that failed otherwise does not (its domain may run). So each decision is
    the one taken when the restarts ran one after the other."""

    def __init__(self, w, plan: FailoverPlan, specs, cluster, starts):
        self.w, self.plan, self.specs, self.cluster, self.starts = w, plan, specs, cluster, starts
        self.promised: dict[str, tuple[int, int]] = {}    # target -> (MiB, vCPUs) taken since the scan
        self.running: dict[str, str] = {}                 # domain -> target, started, not collected
        self.results: dict[str, Restart] = {}
        self.t0 = time.monotonic()

    def may_start(self, m) -> bool:
        """Whether m's domain may start on its target now (if not, its result says why)."""
        problems = self._problems(m)
        if problems and self._on(m.target):       # it may fit once those starts ended
            self.collect(self.starts.ended(self._on(m.target), every=True))
            problems = self._problems(m)
        if problems:
            self.results[m.domain] = Restart(m.domain, Result.DID_NOT_FIT, None, "; ".join(problems))
        return not problems

    def start(self, i: int, m) -> None:
        """Start the i-th move's domain (when its target has room for one more start)."""
        while len(self._on(m.target)) >= PER_NODE:
            self.collect(self.starts.ended(self._on(m.target)))
        self.w.out.step(i, len(self.plan.moves), f"{m.domain}: {self.plan.node} -> {m.target}",
                        time.monotonic() - self.t0)
        spec = self.specs[m.domain]
        self._take(m.target, spec, 1)
        self.running[m.domain] = m.target
        self.starts.start(m.domain, Plan(steps=[create_step(self.w.cfg, spec, m.target)]))

    def collect(self, ended) -> None:
        """What the starts that `ended` did (Overlap.ended), each its own Restart."""
        for domain, error in ended:
            target = self.running.pop(domain)
            self.results[domain] = r = _restart(self.plan, domain, target, error)
            if r.result is Result.LEASE_REFUSED:
                self._take(target, self.specs[domain], -1)

    def _on(self, target: str) -> list[str]:
        return [d for d, t in self.running.items() if t == target]

    def _take(self, target: str, spec, sign: int) -> None:
        need, (mem, vcpus) = need_to_start(spec), self.promised.get(target, (0, 0))
        self.promised[target] = (mem + sign * need.memory_mib, vcpus + sign * need.vcpus)

    def _problems(self, m) -> list[str]:
        return _problems(self.w, self.plan, self.cluster, self.specs[m.domain], m.target,
                         self.promised.get(m.target, (0, 0)))


def _problems(w, plan: FailoverPlan, cluster, spec, target: str, promised) -> list[str]:
    """Why `spec` may not start on `target` now (empty: it may)."""
    guards = silent_guards(cluster, w.state, spec, target)
    problems = presence_problems(cluster, spec.name, force=False, excused={plan.node, *guards},
                                 can_force=False)
    problems += placement_problems(cluster, w.state, w.cfg, need_to_start(spec), target, *promised)
    if plan.guard is Guard.LEASES:
        problems += lease_guard_problems(cluster, w.state, plan.node, [target])
    return problems


def _restart(plan: FailoverPlan, domain: str, target: str, error) -> Restart:
    """What became of `virsh create` of `domain` on `target`, from what stopped
    it (None: it succeeded, STARTED; verified after)."""
    if error is None:
        return Restart(domain, Result.STARTED, target)
    if isinstance(error, RemoteError) and is_lease_refusal(str(error)):
        return Restart(domain, Result.LEASE_REFUSED, plan.node)
    if isinstance(error, HavirtError):
        return Restart(domain, Result.FAILED, None, f"failed on {target}: {error}")
    raise error


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
