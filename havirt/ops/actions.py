"""Core operations: lock, fresh scan, plan, execute or print, verify, record.

Each click command calls one function here and renders what it returns.
"""

from __future__ import annotations

import socket

from havirt.errors import ConfigError, DomainXMLError, NodeUnreachable, Refusal, RemoteError, UsageError
from havirt.names import check_address, check_name, check_user, quote_argv, valid_name
from havirt.ops.outcome import Outcome
from havirt.parse.domxml import parse_domain_xml
from havirt.parse.virsh import split_sections
from havirt.plan.domains import plan_destroy, plan_migrate, plan_reboot, plan_shutdown, plan_start
from havirt.remote import commands as remote
from havirt.remote.steps import Plan
from havirt.scan.fresh import Scan
from havirt.store.state import NodeRecord

# -- nodes ---------------------------------------------------------------------

def node_add(app, name, address=None, user=None, port=None, memory_cap=None) -> NodeRecord:
    check_name("node", name)
    address = check_address(name if address is None else address)   # '' is no address
    if user is not None:
        check_user(user)
    with app.lock():
        if name in app.state.nodes:
            raise UsageError(f"node {name} exists already (havirt node set {name} ...)")
        for other in app.state.nodes.values():
            if other.address == address:
                raise UsageError(f"node {other.name} has the address {other.address} already")
        rec = NodeRecord(name=name, address=address, user=user, port=port,
                         memory_cap_mib=memory_cap)
        app.state.nodes[name] = rec
        facts = app.scan([name]).cluster.nodes[name]
        if not facts.reachable:
            raise NodeUnreachable(name, facts.error)
        for other in app.state.nodes.values():
            if other.name != name and other.hostname and other.hostname == facts.hostname:
                raise UsageError(f"{rec.address} is host {facts.hostname}, already node {other.name}")
        app.save()
        return rec


def node_set(app, name, **changes) -> NodeRecord:
    if changes.get("address") is not None:
        check_address(changes["address"])
    if changes.get("user") is not None:
        check_user(changes["user"])
    with app.lock():
        rec = app.state.node(name)
        for key, value in changes.items():
            setattr(rec, key, value)
        app.save()
        return rec


def node_remove(app, name, force=False) -> list[str]:
    with app.lock():
        app.state.node(name)
        facts = app.scan([name]).cluster.nodes[name]
        if not facts.reachable and not force:
            raise Refusal(f"node {name} did not answer ({facts.error}); domains may run there "
                          "(--force removes it anyway)")
        running = sorted(d.name for d in facts.domains.values() if d.active)
        if running:
            raise Refusal(f"domains run on {name}: {', '.join(running)} "
                          "(migrate or shut them down first)")
        forgotten = []
        for d in app.state.domains.values():
            if d.node == name:
                # keep the last known place: starting it elsewhere needs --force
                d.stale = True
                forgotten.append(d.name)
        del app.state.nodes[name]
        app.save()
        return forgotten


def node_scan(app, names=(), recover=False) -> Scan:
    """Scan and record; with `recover`, fail over nodes silent for too long
    (see failover.recover): for real, unless --dryrun was given. The scan's
    findings come with what recovery did or could not do."""
    if not app.state.nodes:   # a mistyped home must never make cron silently blind
        raise ConfigError(f"no nodes in the home {app.home.root}: nothing to scan (check --home "
                          "or HAVIRT_HOME, or add one: havirt node add NAME --address ADDRESS)")
    with app.lock():
        scan = app.scan_and_save(list(names) or None)
        if recover:
            from havirt.ops.failover import recover as recover_nodes
            scan = Scan(scan.cluster, scan.findings + recover_nodes(app, dry_run=app.force_dryrun))
        return scan


def set_maintenance(app, kind, name, on: bool) -> None:
    """Set the flag (the lock is the caller's)."""
    if kind == "node":
        rec = app.state.node(name)
    else:
        check_name("domain", name)
        if name not in app.conf.names() and name not in app.state.domains:
            raise UsageError(f"unknown domain {name!r}")
        rec = app.state.domain(name)
    rec.maintenance = on
    app.save()


# -- domains -------------------------------------------------------------------

def local_node(app) -> str:
    host = socket.gethostname().split(".")[0]
    if host in app.state.nodes:
        return host
    raise UsageError(f"this host ({host}) is not a node: name the node to start on")


def execute(app, plan: Plan, out: Outcome) -> None:
    """Print (dry run) or run the plan; `out` says what happened."""
    ex = app.executor()
    out.lines = ex.show(plan)
    if not app.dry_run:
        for step, outcome in ex.run(plan):
            out.done.append(f"{step.why}: {outcome}")


def _verify(app, node: str, name: str, want_present: bool) -> str:
    """Scan `node` again (one session), record it, and check `name` is (or is
    not) there; returns its state. The running definition is read in the
    same session (recorded for `domain list`'s drift column)."""
    facts = app.scan_and_save([node], dump_running=[name] if want_present else False
                              ).cluster.nodes[node]
    if not facts.reachable:
        raise RemoteError(f"could not confirm {name} on {node}: {facts.error}")
    fact = facts.domains.get(name)
    present = fact is not None and fact.active
    if present != want_present:
        now = fact.state if fact else "not defined"
        raise RemoteError(f"{name} on {node} is {now} after the command")
    return fact.state if fact else "gone"


def domain_start(app, name, node=None, force=False) -> Outcome:
    check_name("domain", name)
    with app.lock():
        spec = app.conf.load(name)   # read once, inside the lock: what is checked is what is sent
        node = node or local_node(app)
        app.state.node(node)
        cluster, findings = app.safety_scan(paths=spec.disks)
        plan = plan_start(cluster, app.state, app.cfg, spec, node, force=force)
        out = Outcome(dry_run=app.dry_run, findings=findings)
        execute(app, plan, out)
        if not app.dry_run:
            out.done.append(f"{name} is {_verify(app, node, name, True)} on {node}")
        return out


def _act_where_it_runs(app, plan_for) -> tuple[Outcome, str]:
    """Fresh scan, `plan_for(cluster)` on the node where the domain runs,
    print or execute; a failed step records what the node then says.
    Returns the outcome and that node (the lock is the caller's)."""
    cluster, findings = app.safety_scan()
    plan = plan_for(cluster)
    out = Outcome(dry_run=app.dry_run, findings=findings)
    node = plan.steps[0].node
    try:
        execute(app, plan, out)
    except Exception:
        if not app.dry_run:
            app.scan_and_save([node])    # a step failed: record what the node now says
        raise
    return out, node


def domain_stop(app, name, mode, wait=None, force=False) -> Outcome:
    check_name("domain", name)
    with app.lock():
        if mode == "shutdown":
            out, node = _act_where_it_runs(
                app, lambda cluster: plan_shutdown(cluster, app.cfg, name, wait, force))
        else:
            out, node = _act_where_it_runs(app, lambda cluster: plan_destroy(cluster, app.cfg, name))
        if not app.dry_run and (mode == "destroy" or wait):
            _verify(app, node, name, False)
            rec = app.state.domains.get(name)
            silent = sorted({*(rec.maybe_on if rec else []), *([rec.node] if rec and rec.stale else [])})
            out.done.append(f"{name} is off on {node}" + (
                f"; {', '.join(silent)} did not answer and may still run it" if silent else ""))
            out.status = 1 if silent else 0
        return out


def domain_reboot(app, name, hard=False) -> Outcome:
    """`virsh reboot` (ACPI) or, `hard`, `virsh reset`, where it runs."""
    check_name("domain", name)
    with app.lock():
        out, node = _act_where_it_runs(app, lambda cluster: plan_reboot(cluster, app.cfg, name, hard))
        if not app.dry_run:
            out.done.append(f"{name} is {_verify(app, node, name, True)} on {node}")
        return out


def domain_migrate(app, name, target=None, offline=False, timeout=None) -> Outcome:
    from havirt.ops.migration import run_migration
    check_name("domain", name)
    timeout = timeout or app.cfg.migrate_timeout
    with app.lock():
        spec = app.conf.load(name)
        if target is not None:
            app.state.node(target)
        cluster, findings = app.safety_scan(paths=spec.disks)
        plan = plan_migrate(cluster, app.state, app.cfg, spec, target, offline, timeout)
        out = Outcome(dry_run=app.dry_run, findings=findings)
        ex = app.executor()
        out.lines = ex.show(plan)
        if not app.dry_run:
            out.done += run_migration(app, ex, plan, spec)
        return out


def _imported(app, res, node, wanted, all_, force):
    """Check what a node printed for `domain import`: (files to write, skipped)."""
    sections = {k[4:]: v for k, v in split_sections(res.stdout).items() if k.startswith("xml ")}
    problems, todo, skipped = [], [], []
    for n in (sorted(sections) if all_ else wanted):
        xml = sections.get(n, "").strip()
        if all_ and not valid_name(n):   # --all takes what havirt can manage, and says what it left
            skipped.append(f"{quote_argv([n])}: its name is outside havirt's name rule "
                           "(1-64 letters, digits, '.', '_', '-'), so conf/ cannot hold it")
            continue
        if not xml:
            err = res.stderr.strip().splitlines()
            problems.append(f"{n}: not found on {node}" + (f" ({err[-1]})" if err else ""))
            continue
        try:
            spec = parse_domain_xml(xml, f"{n} on {node}")
        except (DomainXMLError, UsageError) as e:
            if all_:   # --all takes what havirt can manage, and says what it left
                skipped.append(f"{n}: {e}")
                continue
            problems.append(str(e))
            continue
        path = app.conf.path(n)
        if app.conf.differs(n, xml) and not force:
            problems.append(f"{path} exists and differs (--force to overwrite)")
            continue
        todo.append((xml, spec))
    if problems:
        raise UsageError("import refused, nothing written: " + "; ".join(problems))
    return todo, skipped


def domain_import(app, names, node, all_=False, force=False) -> tuple[list[str], list[str]]:
    """Save domains' XML from `node` into conf/; returns (saved files, skipped)."""
    app.state.node(node)
    for n in names:
        check_name("domain", n)
    with app.lock():
        res = app.runner.run(node, remote.dump_inactive(app.cfg, None if all_ else list(names)))
        todo, skipped = _imported(app, res, node, list(names), all_, force)
        saved = []
        for xml, spec in todo:
            saved.append(str(app.conf.write(spec.name, xml + "\n")))
            rec = app.state.domain(spec.name)
            rec.memory_mib = rec.memory_mib or spec.memory_mib
            rec.vcpus = rec.vcpus or spec.vcpus
        app.save()
        return saved, skipped
