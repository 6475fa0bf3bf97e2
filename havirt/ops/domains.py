"""Domain operations on the nodes: start, shutdown, destroy, reboot, reset,
migrate, import. Each is one unit of work (ops/work.py): the lock, the
state read once, a fresh scan for the safety checks, the plan printed or
run, the result verified by another scan, one commit."""

from __future__ import annotations

import socket

from havirt.errors import DomainXMLError, RemoteError, UsageError
from havirt.names import check_name, quote_argv, valid_name
from havirt.ops.outcome import Outcome
from havirt.parse.domxml import parse_domain_xml
from havirt.parse.virsh import split_sections
from havirt.plan.definition import cdrom_spec
from havirt.plan.domains import plan_destroy, plan_migrate, plan_reboot, plan_shutdown, plan_start
from havirt.plan.making import absolute_path
from havirt.remote import commands as remote
from havirt.remote.steps import Plan


def local_node(state) -> str:
    host = socket.gethostname().split(".")[0]
    if host in state.nodes:
        return host
    raise UsageError(f"this host ({host}) is not a node: name the node to start on")


def execute(w, plan: Plan, out: Outcome) -> None:
    """Print (dry run) or run the plan; `out` says what happened."""
    out.lines = w.show(plan)
    if not w.dry_run:
        for step, outcome in w.run(plan):
            out.done.append(f"{step.why}: {outcome}")


def verify(w, node: str, name: str, want_present: bool) -> str:
    """Scan `node` again (one session) and check `name` is (or is not) there;
    returns its state. The running definition is read in the same session
    (recorded for `domain list`'s drift column)."""
    facts = w.scan([node], dump_running=[name] if want_present else False).cluster.nodes[node]
    if not facts.reachable:
        raise RemoteError(f"could not confirm {name} on {node}: {facts.error}")
    fact = facts.domains.get(name)
    present = fact is not None and fact.active
    if present != want_present:
        now = fact.state if fact else "not defined"
        raise RemoteError(f"{name} on {node} is {now} after the command")
    return fact.state if fact else "gone"


def domain_start(app, name, node=None, force=False, cdrom=None) -> Outcome:
    """Start NAME from conf/ (with `cdrom`: once, with that CD-ROM first to boot)."""
    check_name("domain", name)
    if cdrom is not None:
        absolute_path("--cdrom", cdrom)
    with app.work() as w:
        spec = w.conf.load(name)   # read once, inside the lock: what is checked is what is sent
        specs, _ = w.conf.load_all()
        spec, note = cdrom_spec(spec, cdrom) if cdrom else (spec, "")
        node = node or local_node(w.state)
        w.state.node(node)
        cluster, findings = w.scan(paths=spec.disks)
        plan = plan_start(cluster, w.state, w.cfg, spec, node, force=force, specs=specs, note=note)
        out = Outcome(dry_run=w.dry_run, findings=findings, notes=plan.notes)
        execute(w, plan, out)
        if not w.dry_run:
            out.done.append(f"{name} is {verify(w, node, name, True)} on {node}")
        return out


def _act_where_it_runs(w, plan_for) -> tuple[Outcome, str]:
    """Fresh scan, `plan_for(cluster)` on the node where the domain runs,
    print or execute; a failed step records what the node then says.
    Returns the outcome and that node."""
    cluster, findings = w.scan()
    plan = plan_for(cluster)
    out = Outcome(dry_run=w.dry_run, findings=findings)
    node = plan.steps[0].node
    try:
        execute(w, plan, out)
    except Exception:
        if w.executed:
            w.scan([node])    # a step failed: record what the node now says
        raise
    return out, node


def domain_stop(app, name, mode, wait=None, force=False) -> Outcome:
    check_name("domain", name)
    with app.work() as w:
        if mode == "shutdown":
            out, node = _act_where_it_runs(
                w, lambda cluster: plan_shutdown(cluster, w.cfg, name, wait, force))
        else:
            out, node = _act_where_it_runs(w, lambda cluster: plan_destroy(cluster, w.cfg, name))
        if not w.dry_run and (mode == "destroy" or wait):
            verify(w, node, name, False)
            rec = w.state.domains.get(name)
            silent = sorted({*(rec.maybe_on if rec else []), *([rec.node] if rec and rec.stale else [])})
            out.done.append(f"{name} is off on {node}" + (
                f"; {', '.join(silent)} did not answer and may still run it" if silent else ""))
            out.failed = bool(silent)
        return out


def domain_reboot(app, name, hard=False) -> Outcome:
    """`virsh reboot` (ACPI) or, `hard`, `virsh reset`, where it runs."""
    check_name("domain", name)
    with app.work() as w:
        out, node = _act_where_it_runs(w, lambda cluster: plan_reboot(cluster, w.cfg, name, hard))
        if not w.dry_run:
            out.done.append(f"{name} is {verify(w, node, name, True)} on {node}")
        return out


def domain_migrate(app, name, target=None, offline=False, timeout=None) -> Outcome:
    from havirt.ops.migration import run_migration
    check_name("domain", name)
    timeout = timeout or app.cfg.migrate_timeout
    with app.work() as w:
        spec = w.conf.load(name)
        if target is not None:
            w.state.node(target)
        cluster, findings = w.scan(paths=spec.disks)
        plan = plan_migrate(cluster, w.state, w.cfg, spec, target, offline, timeout)
        out = Outcome(dry_run=w.dry_run, findings=findings, notes=plan.notes)
        out.lines = w.show(plan)
        if not w.dry_run:
            out.done += run_migration(w, plan, spec)
        return out


def _imported(conf, res, node, wanted, all_, force):
    """Check what a node printed for `domain import`: (files to write, skipped)."""
    sections = {k[4:]: v for k, v in split_sections(res.stdout).items() if k.startswith("xml ")}
    problems, todo, skipped, same = [], [], [], []
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
        path = conf.where(n)
        held = conf.holds(n, xml)
        if held:
            same.append(path)      # conf/ has it already: nothing to write
            continue
        if held is False and not force:
            problems.append(f"{path} exists and differs (--force to overwrite)")
            continue
        todo.append((xml, spec))
    if problems:
        raise UsageError("import refused, nothing written: " + "; ".join(problems))
    return todo, skipped, same


def domain_import(app, names, node, all_=False, force=False) -> tuple[list[str], list[str], list[str]]:
    """Save domains' XML from `node` into conf/; returns (saved files, skipped,
    files left alone because they hold the same already)."""
    for n in names:
        check_name("domain", n)
    with app.work(dry_run=False) as w:
        w.state.node(node)
        res = app.runner.run(node, remote.dump_inactive(w.cfg, None if all_ else list(names)))
        todo, skipped, same = _imported(w.conf, res, node, list(names), all_, force)
        saved = []
        for xml, spec in todo:
            w.conf.write(spec.name, xml + "\n")
            saved.append(w.conf.where(spec.name))
            rec = w.state.domain(spec.name)
            rec.memory_mib = rec.memory_mib or spec.memory_mib
            rec.vcpus = rec.vcpus or spec.vcpus
        if todo:
            w.changed()
        return saved, skipped, same
