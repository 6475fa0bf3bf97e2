"""Evacuation and balance: a scan turned into the pure planner's input, and
the planned live migrations run one by one, each re-checked.

The planning itself (score, search, placement) is pure, in balance/.
"""

from __future__ import annotations

import time

from .actions import Outcome
from .balance import BDomain, BNode, Move, plan_balance, plan_evacuation, score
from .cluster import Cluster
from .errors import HavirtError, NodeUnreachable, RemoteError
from .executor import render_step
from .migration import run_migration
from .planner import migrate_step, plan_migrate
from .rules import disks_visible, held, load_of
from .scan import cluster_from_state


def planner_nodes(app, cluster: Cluster, source: str | None = None) -> list[BNode]:
    """Nodes that may take part: up and not in maintenance (and `source`, the
    node being emptied, which never receives)."""
    out = []
    for name in sorted(app.state.nodes):
        load = load_of(cluster, app.state, app.cfg, name)
        if name == source:
            out.append(BNode(name, load.usable_mib or 1, load.cpus or 1, app.cfg.vcpu_ratio))
        elif load.reachable and not load.maintenance and load.cpus and load.usable_mib:
            out.append(BNode(name, load.usable_mib, load.cpus, app.cfg.vcpu_ratio))
    return out


def planner_domains(app, cluster: Cluster, nodes: list[BNode], specs: dict) -> list[BDomain]:
    """The domains running on `nodes`, each once (its running copy), sized by
    what it holds (rules.held), with the nodes where its disks are visible."""
    names = {n.name for n in nodes}
    loads = {n: load_of(cluster, app.state, app.cfg, n) for n in names}
    dups = cluster.duplicates()
    out = []
    for name, (node, fact) in sorted(cluster.placements().items()):
        if node not in names:
            continue
        rec = app.state.domains.get(name)
        spec = specs.get(name)
        why = ("runs on several nodes" if name in dups else
               "in maintenance" if rec and rec.maintenance else
               "no usable XML in conf/" if spec is None else "")
        allowed = None
        if spec is not None and spec.disks:
            allowed = frozenset(n for n in names if disks_visible(loads[n], spec.disks))
        mem, vcpus = held(fact)
        out.append(BDomain(name=name, node=node, memory_mib=mem, vcpus=vcpus,
                           movable=not why, why_fixed=why or "in maintenance", allowed=allowed))
    return out


def cluster_score(app, cluster: Cluster) -> float | None:
    nodes = planner_nodes(app, cluster)
    return score(nodes, planner_domains(app, cluster, nodes, {})) if nodes else None


def _disk_paths(specs) -> list[str]:
    return sorted({p for s in specs.values() for p in s.disks})


def show_moves(out: Outcome, moves: list[Move]) -> None:
    """A plan's moves as a table (notes) and as data (JSON `moves`)."""
    out.notes += [f"  {i}. {m.domain}: {m.source} -> {m.target} ({m.memory_mib} MiB), "
                  f"score after {m.score_after:.4f}" for i, m in enumerate(moves, 1)]
    out.data["moves"] = [{"domain": m.domain, "from": m.source, "to": m.target,
                          "memory_mib": m.memory_mib, "score_after": round(m.score_after, 6)}
                         for m in moves]


def _show(app, out: Outcome, moves: list[Move], cluster: Cluster, executable: bool) -> None:
    """The plan as a table, as data, and as the commands --yes runs."""
    show_moves(out, moves)
    down = [f.name for f in cluster.unreachable()] if moves and executable else []
    if down:
        out.notes.append(f"  note: {', '.join(down)} did not answer: each move is refused until "
                         "every node answers (a domain there could be running already)")
    if executable:
        out.lines = [render_step(app.runner, app.home.root,
                                 migrate_step(app.state, app.cfg, m.domain, m.source, m.target,
                                              app.cfg.migrate_timeout)) for m in moves]


def run_moves(app, moves: list[Move], out: Outcome) -> None:
    """Each move re-checked against a fresh scan; stop at the first failure."""
    ex = app.executor()
    start = time.monotonic()
    for i, m in enumerate(moves, 1):
        try:
            spec = app.conf.load(m.domain)
            cluster, _ = app.scan_and_save(paths=spec.disks)
            plan = plan_migrate(cluster, app.state, app.cfg, spec, m.target, False,
                                app.cfg.migrate_timeout)
            app.out.step(i, len(moves), f"{m.domain}: {m.source} -> {m.target}",
                         time.monotonic() - start)
            out.done += run_migration(app, ex, plan, spec)
        except HavirtError as e:
            left = [x.domain for x in moves[i - 1:]]
            err = RemoteError(f"stopped at move {i} of {len(moves)} ({m.domain}): {e}. "
                              f"Moved: {', '.join(out.done) or 'nothing'}. "
                              f"Not moved: {', '.join(left)}")
            err.exit_code = e.exit_code     # a refusal stays 3, an unreachable node 4
            raise err from None


def evacuate(app, node: str) -> Outcome:
    """Plan (and with --yes run) the live migrations that empty `node`.
    The caller holds the lock."""
    specs, _ = app.conf.load_all()
    cluster, findings = app.safety_scan(paths=_disk_paths(specs))
    facts = cluster.nodes[node]
    if not facts.reachable:
        raise NodeUnreachable(node, f"{facts.error}; cannot evacuate it")
    nodes = planner_nodes(app, cluster, source=node)
    plan = plan_evacuation(nodes, planner_domains(app, cluster, nodes, specs), node)
    out = Outcome(dry_run=app.dry_run, findings=findings)
    out.notes = [f"evacuating {node}: {len(plan.moves)} domain(s) to move"]
    _show(app, out, plan.moves, cluster, executable=True)
    out.notes += [f"  blocking: {d}: {why}" for d, why in plan.blocking]
    out.data["blocking"] = [{"domain": d, "why": why} for d, why in plan.blocking]
    if not app.dry_run:
        run_moves(app, plan.moves, out)
        if plan.blocking:
            out.done.append(f"{node} still runs: {', '.join(d for d, _ in plan.blocking)}")
    return out


def balance(app, max_moves: int | None, no_scan: bool) -> Outcome:
    if no_scan:
        specs, _ = app.conf.load_all()
        return _balance(app, cluster_from_state(app.state, _disk_paths(specs)), specs,
                        max_moves, Outcome(dry_run=True), executable=False)
    with app.lock():
        specs, _ = app.conf.load_all()
        cluster, findings = app.safety_scan(paths=_disk_paths(specs))
        out = Outcome(dry_run=app.dry_run, findings=findings)
        return _balance(app, cluster, specs, max_moves, out, executable=True)


def _balance(app, cluster, specs, max_moves, out: Outcome, executable: bool) -> Outcome:
    nodes = planner_nodes(app, cluster)
    plan = plan_balance(nodes, planner_domains(app, cluster, nodes, specs),
                        max_moves or app.cfg.balance_max_moves, app.cfg.balance_min_gain)
    out.notes = [f"score before: {plan.score_before:.4f}"]
    _show(app, out, plan.moves, cluster, executable)
    if not plan.moves:
        out.notes.append(f"  no move lowers the score by {app.cfg.balance_min_gain:g} or more")
    out.notes.append(f"score after:  {plan.score_after:.4f} ({len(plan.moves)} move(s))")
    out.data.update(score_before=round(plan.score_before, 6), score_after=round(plan.score_after, 6))
    if executable and not app.dry_run:
        run_moves(app, plan.moves, out)
    return out
