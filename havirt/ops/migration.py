"""Running migrations and finding out where a domain really is afterwards."""

from __future__ import annotations

from havirt.errors import HavirtError, Interrupted, NodeUnreachable, Refusal, RemoteError
from havirt.plan.domains import placement_problems
from havirt.remote import commands as remote
from havirt.remote.steps import Plan, Step, StepKind
from havirt.rules.fit import need_to_start
from havirt.rules.presence import presence_problems, silent_guards


def locate(w, name: str, nodes) -> str:
    """Scan `nodes` and say where `name` is; the state records only what a scan saw."""
    cluster, _ = w.scan(sorted(set(nodes)))
    parts = []
    for n in sorted(set(nodes)):
        f = cluster.nodes[n]
        if not f.reachable:
            parts.append(f"{n}: unreachable ({f.error})")
        elif name in f.domains and f.domains[name].active:
            d = f.domains[name]
            parts.append(f"{n}: {d.state}" + (" (incoming migration)" if d.migrating else ""))
        else:
            parts.append(f"{n}: not running")
    return "; ".join(parts)


def _abort_job(w, node: str, name: str) -> None:
    """Abort a migration job that outlived its time (best effort, audited)."""
    step = Step(node=node, command=remote.abort_job(w.cfg, name), domain=name,
                why=f"abort the migration job of {name}")
    try:
        w.run(Plan(steps=[step]))
    except HavirtError:
        pass    # no job left, or the node is gone: locate() says where it is


def _offline(w, plan: Plan, spec) -> None:
    """Shut down and wait, then check again with a fresh scan of every node
    that it is off everywhere and still fits the target, then start it there."""
    source, target = plan.steps[0].node, plan.steps[-1].node
    w.run(Plan(steps=plan.steps[:-1]))
    cluster, _ = w.scan(paths=spec.disks)
    guards = silent_guards(cluster, w.state, spec, target)
    problems = (presence_problems(cluster, spec.name, force=False, excused=guards, can_force=False)
                + placement_problems(cluster, w.state, w.cfg, need_to_start(spec), target))
    if problems:
        raise Refusal([f"{spec.name} was shut down on {source} but not started on "
                       f"{target}"] + problems)
    w.run(Plan(steps=plan.steps[-1:]))


def run_migration(w, plan: Plan, spec) -> list[str]:
    """Execute a migrate plan (live or offline); verify and record the result."""
    steps = plan.steps
    live = steps[0].kind is StepKind.MIGRATE
    source = steps[0].node
    target = steps[-1].target if live else steps[-1].node
    try:
        if live:
            w.run(plan)
        else:
            _offline(w, plan, spec)
    except NodeUnreachable as e:
        if live:
            _abort_job(w, source, spec.name)
        raise Interrupted(f"migration of {spec.name} did not finish ({e.reason}); "
                          f"now {locate(w, spec.name, [source, target])}", e) from None
    except RemoteError as e:
        raise RemoteError(f"{e}; now {locate(w, spec.name, [source, target])}") from None
    finally:
        w.out.end_progress()
    cluster, _ = w.scan(sorted({source, target}), dump_running=[spec.name])
    on_target = cluster.nodes[target].reachable and any(n == target for n, _ in cluster.copies(spec.name))
    on_source = any(n == source for n, _ in cluster.copies(spec.name))
    if not on_target or on_source or not cluster.nodes[source].reachable:
        raise RemoteError(f"after migrating {spec.name}: {locate(w, spec.name, [source, target])}")
    return [f"{spec.name} moved from {source} to {target}"]
