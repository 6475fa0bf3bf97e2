"""Snapshots and backups of a domain: one unit of work each.

A fresh scan of every node first (it checks the disk paths, reads the
running definition of the domain, and checks the backup's files), then
qemu-img on a node that sees them reads the images (their snapshots too),
then the pure planner (plan/snapshots.py). A dry run prints the exact
commands. With --yes they run one by one (each in the audit log), and the
images are read again to verify: the snapshot is there (or gone), the
backup's files exist, with their sizes. conf/ is never changed.
"""

from __future__ import annotations

from havirt.errors import HavirtError, Interrupted, RemoteError, UsageError
from havirt.names import check_name, check_snapshot_name
from havirt.ops.making import failed_line, make_one_by_one
from havirt.ops.outcome import Outcome
from havirt.plan.making import absolute_path
from havirt.plan.snapshots import (
    Place,
    backup_name,
    backup_paths,
    copied,
    has,
    place,
    plan_backup,
    plan_snapshot,
    snapshot_rows,
    undo_step,
)
from havirt.remote.steps import Plan
from havirt.rules.drivers import vm_only
from havirt.scan.images import parent

DONE = {"create": "taken", "revert": "reverted to", "delete": "deleted"}


def snapshot_list(app, name: str) -> tuple[list[dict], list[str], list]:
    """The snapshots of NAME's writable disks, as qemu-img reads them now;
    notes (what keeps it from having snapshots, disks left out); findings."""
    check_name("domain", name)
    with app.work(dry_run=True, record=True) as w:      # a read: the scan is recorded
        spec = w.conf.load(name)
        vm_only(spec, "snapshot")
        cluster, findings = w.scan(paths=spec.disks)
        copies = cluster.copies(name)
        p = Place(copies[0][0] if len(copies) == 1 else None,
                  copies[0][1].state if len(copies) == 1 else None, tuple(spec.disk_specs))
        images = w.images(cluster, [], spec.disks)
    rows, notes = snapshot_rows(name, p, images)
    where = f"{name} runs on {p.node}" if p.node else \
        f"{name} is not running on any node that answered"
    return rows, [where] + notes, findings


def snapshot_change(app, name: str, action: str, snapshot: str) -> Outcome:
    """create, revert or delete the snapshot SNAPSHOT of every writable disk of NAME."""
    check_name("domain", name)
    check_snapshot_name(snapshot)
    if action not in DONE:
        raise UsageError(f"unknown snapshot change {action!r}: one of {', '.join(DONE)}")
    with app.work() as w:
        spec = w.conf.load(name)
        vm_only(spec, "snapshot")
        specs, _ = w.conf.load_all()
        folders = sorted(w.cfg.pools.values())          # the rule of ownership: linked clones
        cluster, findings = w.scan(paths=[*folders, *spec.disks], dump_running=[name])
        p = place(cluster, spec)
        images = w.images(cluster, folders, [d for d in spec.disks if parent(d) not in folders])
        sp = plan_snapshot(w.cfg, action, spec, specs, p, images, snapshot)
        out = Outcome(dry_run=w.dry_run, findings=findings, notes=sp.notes)
        out.lines = w.show(sp.plan)
        out.data = {"snapshot": snapshot, "images": sp.images, "node": sp.node}
        if w.dry_run:
            return out
        _run_steps(w, sp, action, snapshot, name)
        after = w.images(cluster, [], sp.images)
        wrong = [path for path in sp.images if has(after.facts.get(path), snapshot) == (action == "delete")]
        if wrong:
            raise RemoteError(f"after the command, the snapshot {snapshot} is "
                              f"{'still in' if action == 'delete' else 'not in'} {', '.join(wrong)}")
        out.done.append(f"snapshot {snapshot} of {name} {DONE[action]}"
                        + (f" on {sp.node} (it runs there)" if sp.node else "")
                        + f": {', '.join(sp.images)}")
        if action == "revert":
            out.done.append(f"{name} starts from the disks as they were at {snapshot} "
                            "(conf/ unchanged)")
        return out


def _run_steps(w, sp, action: str, snapshot: str, name: str) -> None:
    """Run the steps one by one. A create that stops half-way deletes the
    snapshots it took; a revert or delete that stops says which images it changed."""
    done: list[tuple[str, str]] = []       # (node, image) changed by qemu-img so far
    for step in sp.plan.steps:
        try:
            w.run(Plan([step]))
        except HavirtError as e:
            if not done:
                raise
            what, paths = failed_line(step, e), [p for _, p in done]
            if action == "create":
                raise Interrupted(_take_back(w, done, snapshot, name, what), e) from None
            rest = [p for p in sp.images if p not in paths]
            raise Interrupted(f"{what}; {DONE[action]} {snapshot} already: {', '.join(paths)}; "
                              f"not: {', '.join(rest)}", e) from None
        if step.command.op == "img-snapshot":
            done.append((step.node, step.command.args[1]))


def _take_back(w, done, snapshot: str, name: str, what: str) -> str:
    """Delete the snapshots a create that stopped half-way took; say what happened."""
    left = []
    for node, path in reversed(done):
        undo = undo_step(node, path, snapshot, name)
        try:
            w.run(Plan([undo]))
        except HavirtError:
            left.append(w.show(Plan([undo]))[0])
    if left:
        return f"{what}; delete what it took by hand: {'; '.join(left)}"
    return f"{what}; the snapshots it had taken were deleted again ({', '.join(p for _, p in done)})"


def domain_backup(app, name: str, folder: str, copy: str | None = None,
                  seconds: float = 3600) -> Outcome:
    """Copy every writable disk of NAME into FOLDER (on the nodes), with a
    definition of the copy next to them, without stopping it if it runs."""
    check_name("domain", name)
    folder = absolute_path("the backup folder", folder).rstrip("/") or "/"
    copy = check_name("domain", copy or backup_name(name))
    if copy == name:
        raise UsageError("the copy needs a name of its own (--as)")
    with app.work() as w:
        spec = w.conf.load(name)
        vm_only(spec, "backup")
        specs, _ = w.conf.load_all()
        files, definition = backup_paths(spec.disk_specs, folder, copy)
        cluster, findings = w.scan(paths=[*spec.disks, folder, *files, definition], dump_running=[name])
        p = place(cluster, spec)
        images = None if p.node else w.images(cluster, [], [d.path for d in copied(p.disks)])
        bp = plan_backup(w.cfg, cluster, images, spec, specs, p, folder, copy, seconds)
        out = Outcome(dry_run=w.dry_run, findings=findings, notes=bp.notes)
        out.lines = w.show(bp.plan)
        out.data = {"copies": [c for _, c in bp.copies], "definition": bp.definition, "node": bp.node}
        w.out.note(bp.xml)
        if w.dry_run:
            return out
        steps = list(zip(bp.plan.steps, bp.makes))
        make_one_by_one(w, steps, name)
        out.done += [f"{step.why}: done" for step, _ in steps]
        out.done += _verify_backup(w, bp, name, p)
        return out


def _verify_backup(w, bp, name: str, p: Place) -> list[str]:
    """Scan the node again: the files are there (qemu-img reads the copies and
    their sizes), and a domain that ran still runs."""
    copies = [c for _, c in bp.copies]
    cluster = w.scan([bp.node], paths=[*copies, bp.definition]).cluster
    facts = cluster.nodes[bp.node]
    missing = [f for f in [*copies, bp.definition] if not facts.paths.get(f)]
    if missing:
        raise RemoteError(f"after the backup, {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not on {bp.node}")
    images = w.images(cluster, [], copies)
    lines = []
    for path in copies:
        f = images.facts.get(path)
        if f is None or f.kind != "file" or f.format != "qcow2" or f.error:
            raise RemoteError(f"after the backup, qemu-img cannot read {path} as qcow2"
                              + (f": {f.error}" if f and f.error else ""))
        lines.append(f"{path}: qcow2, {_size(f.virtual_size)} virtual, {_size(f.actual_size)} on disk")
    lines.append(f"{bp.definition}: the definition of the copy "
                 f"(havirt domain define {bp.name} --file {bp.definition})")
    if p.node:
        fact = facts.domains.get(name)
        if fact is None or not fact.active:
            raise RemoteError(f"after the backup, {name} is "
                              f"{fact.state if fact else 'not defined'} on {p.node}")
        lines.append(f"{name} is {fact.state} on {p.node}")
    return lines


def _size(n: int | None) -> str:
    if n is None:
        return "? bytes"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"
