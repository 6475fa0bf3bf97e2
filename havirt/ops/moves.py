"""Evacuation and balance: the planned live migrations run one by one, each
re-checked (a container, which cannot move live, is stopped and started on
its target by evacuation; balance never moves one).

The planning itself is pure: its input is built from the scan in
plan/planner_input.py, the plan in plan/balance/.
"""

from __future__ import annotations

import time

from havirt.errors import HavirtError, Interrupted, NodeUnreachable
from havirt.ops.migration import run_migration
from havirt.ops.outcome import Outcome
from havirt.plan.balance import Move, plan_balance, plan_evacuation
from havirt.plan.domains import move_steps, plan_migrate
from havirt.plan.planner_input import (
    disk_paths,
    planner_domains,
    planner_nodes,
    planner_weights,
    what_if_cluster,
)
from havirt.remote.steps import Plan
from havirt.scan.cluster import Cluster


def show_moves(out: Outcome, moves: list[Move]) -> None:
    """A plan's moves as a table (notes) and as data (JSON `moves`)."""
    out.notes += [f"  {i}. {m.domain}: {m.source} -> {m.target} ({m.memory_mib} MiB), "
                  f"score after {m.score_after:.4f}" for i, m in enumerate(moves, 1)]
    out.data["moves"] = [{"domain": m.domain, "from": m.source, "to": m.target,
                          "memory_mib": m.memory_mib, "score_after": round(m.score_after, 6)}
                         for m in moves]


def _show(w, out: Outcome, moves: list[Move], cluster: Cluster, executable: bool, specs) -> None:
    """The plan as a table, as data, and (in a work) as the commands --yes runs
    (a container's move: stopped, then started on its target)."""
    show_moves(out, moves)
    down = [f.name for f in cluster.unreachable()] if moves and executable else []
    if down:
        out.notes.append(f"  note: {', '.join(down)} did not answer: each move is refused until "
                         "every node answers (a domain there could be running already)")
    if executable:
        out.lines = w.show(Plan(steps=[s for m in moves for s in move_steps(
            cluster, w.state, w.cfg, specs[m.domain], m.source, m.target, w.cfg.migrate_timeout)]))


def run_moves(w, moves: list[Move], out: Outcome) -> None:
    """Each move re-checked against a fresh scan; stop at the first failure."""
    start = time.monotonic()
    for i, m in enumerate(moves, 1):
        try:
            spec = w.conf.load(m.domain)
            cluster, _ = w.scan(paths=spec.disks)
            plan = plan_migrate(cluster, w.state, w.cfg, spec, m.target, spec.container,
                                w.cfg.migrate_timeout)
            w.out.step(i, len(moves), f"{m.domain}: {m.source} -> {m.target}",
                       time.monotonic() - start)
            out.done += run_migration(w, plan, spec)
        except HavirtError as e:
            left = [x.domain for x in moves[i - 1:]]
            raise Interrupted(f"stopped at move {i} of {len(moves)} ({m.domain}): {e}. "
                              f"Moved: {', '.join(out.done) or 'nothing'}. "
                              f"Not moved: {', '.join(left)}", e) from None


def evacuate(w, node: str) -> Outcome:
    """Plan (and unless a dry run, run) the live migrations that empty `node`."""
    specs, _ = w.conf.load_all()
    cluster, findings = w.scan(paths=disk_paths(specs))
    facts = cluster.nodes[node]
    if not facts.reachable:
        raise NodeUnreachable(node, f"{facts.error}; cannot evacuate it")
    nodes = planner_nodes(cluster, w.state, w.cfg)
    plan = plan_evacuation(nodes, planner_domains(cluster, w.state, w.cfg, nodes, specs), node,
                           planner_weights(w.cfg))
    out = Outcome(dry_run=w.dry_run, findings=findings)
    out.notes = [f"evacuating {node}: {len(plan.moves)} domain(s) to move"]
    _show(w, out, plan.moves, cluster, executable=True, specs=specs)
    out.notes += [f"  blocking: {d}: {why}" for d, why in plan.blocking]
    out.data["blocking"] = [{"domain": d, "why": why} for d, why in plan.blocking]
    if not w.dry_run:
        run_moves(w, plan.moves, out)
        if plan.blocking:
            out.done.append(f"{node} still runs: {', '.join(d for d, _ in plan.blocking)}")
    return out


UNLIMITED = "none"


def balance(app, no_scan: bool, max_moves=None, min_gain=None, n_plus_1=None) -> Outcome:
    """Plan (and with --yes run) the live migrations that even out the nodes.
    None for an option: config.yaml's value; max_moves UNLIMITED: no limit."""
    opts = (app.cfg.balance_max_moves if max_moves is None else max_moves,
            app.cfg.balance_min_gain if min_gain is None else min_gain,
            app.cfg.balance_n_plus_1 if n_plus_1 is None else n_plus_1)
    if no_scan:     # what-if, from the state file: nothing locked, run or written
        specs, _ = app.conf.load_all()
        return _balance(app, what_if_cluster(app.state, specs), specs,
                        opts, Outcome(dry_run=True), executable=False)
    with app.work() as w:
        specs, _ = w.conf.load_all()
        cluster, findings = w.scan(paths=disk_paths(specs))
        out = Outcome(dry_run=w.dry_run, findings=findings)
        return _balance(w, cluster, specs, opts, out, executable=True)


def _balance(w, cluster, specs, opts, out: Outcome, executable: bool) -> Outcome:
    """`w` is the open work, or for a what-if (not executable) the App."""
    max_moves, min_gain, keep_n_plus_1 = opts
    nodes = planner_nodes(cluster, w.state, w.cfg)
    plan = plan_balance(nodes, planner_domains(cluster, w.state, w.cfg, nodes, specs),
                        None if max_moves == UNLIMITED else max_moves, min_gain, keep_n_plus_1,
                        planner_weights(w.cfg))
    out.notes = [f"score before: {plan.score_before:.4f}"]
    _show(w, out, plan.moves, cluster, executable, specs)
    active = sum(not n.maintenance for n in nodes)
    if not plan.moves:
        out.notes.append(f"  no move lowers the score by {min_gain:g} / {active} node(s) or more")
    out.notes.append(f"score after:  {plan.score_after:.4f} ({len(plan.moves)} move(s), "
                     f"{plan.memory_mib} MiB to migrate)")
    n1 = {k: None if v is None else {"ok": v.ok, "failing": v.failing}
          for k, v in (("n_plus_1_before", plan.n_plus_1_before), ("n_plus_1_after", plan.n_plus_1_after))}
    if plan.n_plus_1_before is not None:
        out.notes.append(f"N+1: {_n_plus_1_text(plan.n_plus_1_before.failing)} before, "
                         f"{_n_plus_1_text(plan.n_plus_1_after.failing)} after")
    out.data.update(score_before=round(plan.score_before, 6), score_after=round(plan.score_after, 6),
                    memory_mib=plan.memory_mib, **n1)
    if executable and not w.dry_run:
        run_moves(w, plan.moves, out)
    return out


def _n_plus_1_text(failing) -> str:
    return "every node's loss survivable" if not failing else \
        f"the loss of {', '.join(failing)} not survivable"
