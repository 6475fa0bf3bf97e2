"""Evacuation and balance: turn a scan into the pure planner's input, run moves.

The planning itself (scores, limits, search) is pure, in balance.py.
"""

from __future__ import annotations

from .actions import Outcome
from .balance import BDomain, BNode, Move, plan_balance, plan_evacuation, score
from .cluster import Cluster, usable_memory
from .domxml import read_domain_file
from .errors import HavirtError, NodeUnreachable, RemoteError
from .executor import render_step
from .migration import run_migration
from .planner import migrate_step, plan_migrate


def _specs(app) -> dict:
    specs = {}
    for name in app.conf_names():
        try:
            specs[name] = read_domain_file(app.conf_file(name))
        except HavirtError:
            pass  # a broken conf/ file: its domain is not movable (validate reports it)
    return specs


def eligible_nodes(app, cluster: Cluster | None) -> list[BNode]:
    """Nodes that may take part: up and not in maintenance."""
    out = []
    for name, rec in sorted(app.state.nodes.items()):
        facts = cluster.nodes.get(name) if cluster else None
        up = facts.reachable if facts is not None else bool(rec.reachable)
        if rec.maintenance or not up:
            continue
        cpus = (facts.cpus if facts is not None else rec.cpus) or 0
        usable = usable_memory(rec, facts, app.cfg.reserve_mib)
        if not cpus or not usable:
            continue
        out.append(BNode(name=name, usable_mib=usable, cpus=cpus, max_ratio=app.cfg.vcpu_ratio))
    return out


def running_domains(app, cluster: Cluster | None, nodes: set[str], specs: dict) -> list[BDomain]:
    """Running domains on `nodes`, with where their disks are visible."""
    out = []
    if cluster is not None:
        # one entry per domain: its running copy (not a migration's standby copy);
        # a domain on two nodes is counted once and never moved
        copies: dict[str, tuple] = {}
        for n, f in sorted(cluster.nodes.items()):
            if n not in nodes or not f.reachable:
                continue
            for d in f.domains.values():
                if d.active and (d.name not in copies or copies[d.name][1] and not d.standby):
                    copies[d.name] = ((n, d.name, d.memory_mib, d.vcpus), d.standby)
        placed = [entry for entry, _ in copies.values()]
    else:
        placed = [(r.node, r.name, r.memory_mib, r.vcpus) for r in app.state.domains.values()
                  if r.node in nodes and r.state != "shut off"]
    dups = cluster.duplicates() if cluster is not None else {}
    for node, name, mem, vcpus in sorted(placed):
        rec = app.state.domains.get(name)
        spec = specs.get(name)
        movable = spec is not None and not (rec and rec.maintenance) and name not in dups
        why = ("runs on several nodes" if name in dups else "in maintenance"
               if rec and rec.maintenance else "no usable XML in conf/")
        allowed = None
        if spec is not None and spec.disks and cluster is not None:
            allowed = frozenset(n for n in nodes
                                if all(cluster.nodes[n].paths.get(p) for p in spec.disks))
        out.append(BDomain(name=name, node=node, memory_mib=mem or 0, vcpus=vcpus or 0,
                           movable=movable, why_fixed=why, allowed=allowed))
    return out


def _disk_paths(specs) -> list[str]:
    return sorted({p for s in specs.values() for p in s.disks})


def _move_lines(app, moves: list[Move]) -> list[str]:
    lines = []
    for m in moves:
        step = migrate_step(app.state, app.cfg, m.domain, m.source, m.target,
                            app.cfg.migrate_timeout)
        lines.append(render_step(app.runner, app.cfg, app.home.root, step))
    return lines


def _table(moves: list[Move]) -> list[str]:
    return [f"  {i}. {m.domain}: {m.source} -> {m.target} ({m.memory_mib} MiB), "
            f"score after {m.score_after:.4f}" for i, m in enumerate(moves, 1)]


def _down_notes(cluster: Cluster | None, moves: list[Move]) -> list[str]:
    """Say up front what --yes would hit: no migration runs while a node is silent."""
    down = [f.name for f in cluster.unreachable()] if cluster is not None and moves else []
    return [f"  note: {', '.join(down)} did not answer: each move is refused until every "
            "node answers (a domain there could be running already)"] if down else []


def _run_moves(app, moves: list[Move], out: Outcome) -> None:
    """Each move re-checked against a fresh scan; stop at the first failure."""
    ex = app.executor()
    for i, m in enumerate(moves, 1):
        spec = app.load_spec(m.domain)
        try:
            cluster, _ = app.scan(paths=spec.disks)
            app.save()
            plan = plan_migrate(cluster, app.state, app.cfg, spec, m.target, False,
                                app.cfg.migrate_timeout)
            app.say(f"[{i}/{len(moves)}] {m.domain}: {m.source} -> {m.target}")
            out.done += run_migration(app, ex, plan, spec)
        except HavirtError as e:
            left = [x.domain for x in moves[i - 1:]]
            err = RemoteError(f"stopped at move {i} of {len(moves)} ({m.domain}): {e}. "
                              f"Moved: {', '.join(out.done) or 'nothing'}. "
                              f"Not moved: {', '.join(left)}")
            err.exit_code = e.exit_code     # a refusal stays 3, an unreachable node 4
            raise err from None


def evacuate(app, node: str) -> Outcome:
    specs = _specs(app)
    with app.lock():
        cluster, findings = app.check_scan(paths=_disk_paths(specs))
        targets = eligible_nodes(app, cluster)
        facts = cluster.nodes[node]
        if not facts.reachable:
            raise NodeUnreachable(node, f"{facts.error}; cannot evacuate it")
        source = BNode(name=node, usable_mib=usable_memory(app.state.nodes[node], facts,
                                                           app.cfg.reserve_mib) or 1,
                       cpus=facts.cpus or 1, max_ratio=app.cfg.vcpu_ratio)
        nodes = [source] + [t for t in targets if t.name != node]
        names = {n.name for n in nodes}
        domains = running_domains(app, cluster, names, specs)
        plan = plan_evacuation(nodes, domains, node)
        out = Outcome(dry_run=app.dry_run, findings=findings)
        out.notes = [f"evacuating {node}: {len(plan.moves)} domain(s) to move"]
        out.notes += _table(plan.moves)
        out.notes += [f"  blocking: {d}: {why}" for d, why in plan.blocking]
        out.notes += _down_notes(cluster, plan.moves)
        out.lines = _move_lines(app, plan.moves)
        if not app.dry_run:
            _run_moves(app, plan.moves, out)
            if plan.blocking:
                out.done.append(f"{node} still runs: {', '.join(d for d, _ in plan.blocking)}")
        return out


def status_score(app, cluster: Cluster | None) -> float | None:
    nodes = eligible_nodes(app, cluster)
    if not nodes:
        return None
    domains = running_domains(app, cluster, {n.name for n in nodes}, {})
    return score(nodes, domains)


def balance(app, max_moves: int | None, no_scan: bool) -> Outcome:
    specs = _specs(app)
    if no_scan:
        cluster, findings = None, []
        out = Outcome(dry_run=True)
        return _plan_balance(app, cluster, specs, max_moves, out, findings)
    with app.lock():
        cluster, findings = app.check_scan(paths=_disk_paths(specs))
        out = Outcome(dry_run=app.dry_run, findings=findings)
        return _plan_balance(app, cluster, specs, max_moves, out, findings)


def _plan_balance(app, cluster, specs, max_moves, out, findings) -> Outcome:
    nodes = eligible_nodes(app, cluster)
    domains = running_domains(app, cluster, {n.name for n in nodes}, specs)
    plan = plan_balance(nodes, domains, max_moves or app.cfg.balance_max_moves,
                        app.cfg.balance_min_gain)
    out.notes = [f"score before: {plan.score_before:.4f}",
                 *(_table(plan.moves) or ["  no move lowers the score by "
                                          f"{app.cfg.balance_min_gain:g} or more"]),
                 f"score after:  {plan.score_after:.4f} ({len(plan.moves)} move(s))",
                 *_down_notes(cluster, plan.moves)]
    out.plan = plan
    out.lines = _move_lines(app, plan.moves) if cluster is not None else []
    if cluster is not None and not app.dry_run:
        _run_moves(app, plan.moves, out)
    return out
