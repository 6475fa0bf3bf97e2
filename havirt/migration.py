"""Running migrations and finding out where a domain really is afterwards."""

from __future__ import annotations

from .errors import HavirtError, NodeUnreachable, Refusal, RemoteError
from .planner import Plan, Step, placement_problems, presence_problems
from .remote import virsh_argv


def locate(app, name: str, nodes) -> str:
    """Scan `nodes` and say where `name` is; the state records only what a scan saw."""
    cluster, _ = app.scan(sorted(set(nodes)))
    app.save()
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


def _abort_job(ex, node: str, name: str) -> None:
    """Abort a migration job that outlived its time (best effort, audited)."""
    step = Step(node=node, argv=virsh_argv(ex.cfg, "domjobabort", name),
                domain=name, why=f"abort the migration job of {name}")
    try:
        ex.run(Plan(steps=[step]))
    except HavirtError:
        pass    # no job left, or the node is gone: locate() says where it is


def run_migration(app, ex, plan: Plan, spec) -> list[str]:
    """Execute a migrate plan (live or offline); verify and record the result."""
    steps = plan.steps
    source = steps[0].node
    target = steps[-1].target or steps[-1].node
    try:
        if steps[0].kind == "migrate":
            ex.run(plan)
        else:
            # offline: shut down and wait, then check again, with a fresh scan of
            # every node, that it is off everywhere and still fits the target
            ex.run(Plan(steps=steps[:-1]))
            cluster, _ = app.scan(paths=spec.disks)
            app.save()
            problems = (presence_problems(cluster, spec.name, force=False)
                        + placement_problems(cluster, app.state, app.cfg, spec, target))
            if problems:
                raise Refusal([f"{spec.name} was shut down on {source} but not started on "
                               f"{target}"] + problems)
            ex.run(Plan(steps=steps[-1:]))
    except NodeUnreachable as e:
        if steps[0].kind == "migrate":
            _abort_job(ex, source, spec.name)
        where = locate(app, spec.name, [source, target])
        raise RemoteError(f"migration of {spec.name} did not finish ({e.reason}); "
                          f"now {where}") from None
    except RemoteError as e:
        where = locate(app, spec.name, [source, target])
        raise RemoteError(f"{e}; now {where}") from None
    finally:
        app.end_progress()
    cluster, _ = app.scan(sorted({source, target}))
    app.save()
    on_target = cluster.nodes[target].reachable and any(n == target for n, _ in cluster.copies(spec.name))
    on_source = any(n == source for n, _ in cluster.copies(spec.name))
    if not on_target or on_source or not cluster.nodes[source].reachable:
        raise RemoteError(f"after migrating {spec.name}: {locate(app, spec.name, [source, target])}")
    return [f"{spec.name} moved from {source} to {target}"]
