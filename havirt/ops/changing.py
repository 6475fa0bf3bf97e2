"""Changing a domain in place: domain set, attach-disk, detach-disk,
attach-nic, detach-nic, resize-disk; one unit of work each.

A fresh scan of every node, which also reads the domain's running
definition and checks the paths the change needs; the images as qemu-img
reads them where a disk is concerned (w.images); then the pure planner
(plan/changing.py). A dry run prints the commands and what conf/ would get,
and changes nothing.

With --yes the steps run one by one, then another scan of the node reads
the running definition again: conf/ gets what it shows (the previous
version kept in conf/.history/NAME/), and what waits for the next start
when nothing failed. A step that fails, or a guest that does not let go of
a device within --timeout, leaves conf/ consistent with what really runs,
and is said in one line (exit 1, or 4 for a node that stopped answering).
"""

from __future__ import annotations

from havirt.errors import HavirtError, Interrupted, RemoteError, UsageError
from havirt.names import check_name
from havirt.ops.definitions import record_change
from havirt.ops.making import undo_images
from havirt.ops.outcome import Outcome
from havirt.plan.changing import (
    Change,
    bytes_text,
    plan_attach_disk,
    plan_attach_nic,
    plan_detach_disk,
    plan_detach_nic,
    plan_resize_disk,
    plan_set,
    resize_path,
)
from havirt.plan.editing import DETACH_DISK, DETACH_NIC, apply_edits, changing, shown
from havirt.plan.making import DiskRequest, pool_for
from havirt.remote.steps import Plan
from havirt.rules.drift import live_spec
from havirt.rules.drivers import vm_only

WAIT = 20     # seconds a guest has to follow the balloon or let go of a device (--timeout)


def _written(edits) -> str:
    """What conf/ gets, in words: "with memory 512 MiB", "without disk vdb (...)"."""
    added = [e.says for e in edits if e.kind not in (DETACH_DISK, DETACH_NIC)]
    gone = [e.says for e in edits if e.kind in (DETACH_DISK, DETACH_NIC)]
    return " and ".join(part for part in (f"with {', '.join(added)}" if added else "",
                                          f"without {', '.join(gone)}" if gone else "") if part)


def _run_steps(w, change: Change, out: Outcome) -> tuple[HavirtError | None, list[tuple[str, str]]]:
    """The steps one by one: the first failure (what follows is not run), and
    the images made (node, path), those of the steps that succeeded only."""
    made = []
    for step in change.plan.steps:
        try:
            w.run(Plan([step]))
        except HavirtError as e:
            return e, made
        if step.command.op == "img-create":
            made.append((step.node, step.command.args[0]))
        out.done.append(f"{step.why} on {step.node}: done")
    return None, made


def _read_back(w, change: Change):
    """(the running definition as a new scan of the node reads it, or None; why not)."""
    cluster = w.scan([change.node], dump_running=[change.name]).cluster
    facts = cluster.nodes[change.node]
    if not facts.reachable:
        return None, f"{change.node} did not answer the check ({facts.error})"
    live = live_spec(cluster, change.node, change.name)
    return live, "" if live is not None else f"{change.name} no longer runs on {change.node}"


def _grown(w, cluster, change: Change) -> HavirtError | None:
    """resize-disk: qemu-img reads the image again; it must have the new size."""
    path, size = change.grown
    fact = w.images(cluster, [], [path]).facts.get(path)
    if fact is None or fact.virtual_size != size:
        now = bytes_text(fact.virtual_size) if fact is not None and fact.virtual_size else "no size"
        return RemoteError(f"{path} has {now} after the command, not {bytes_text(size)}")
    return None


def _record(w, spec, edits, action: str):
    """Write conf/ with `edits`, when they change it (None: they do not)."""
    where = spec.path or spec.name
    if not changing(spec.raw, where, edits):
        return None
    return record_change(w, spec.name, spec.raw, apply_edits(spec.raw, where, edits), action)


def _failed(w, spec, change: Change, held, made, failure: HavirtError | None, why: str,
            action: str) -> Interrupted:
    """conf/ gets what really runs (`held`); the one line that says what happened.
    The images this command `made` that nothing uses are removed again."""
    name = spec.name
    missed = [e for e in change.edits if e.live and e not in held]
    problem = str(failure) if failure else why
    if change.made and (missed or not held):     # the new image is attached nowhere: it goes again
        return Interrupted(undo_images(w, made, problem, name), failure or RemoteError(why))
    kept = [f"conf/{name}.xml keeps {e.says} while it is attached" for e in missed
            if e.kind in (DETACH_DISK, DETACH_NIC)]
    try:
        saved = _record(w, spec, held, action)
    except HavirtError as e:
        saved, kept = None, kept + [f"writing conf/{name}.xml failed too: {e}"]
    said = kept or ([f"conf/{name}.xml now has only what the running domain shows: {_written(held)}"]
                    if saved else [f"conf/{name}.xml unchanged"])
    return Interrupted("; ".join([problem, *said]), failure or RemoteError(why))


def carry_out(w, spec, change: Change, cluster, findings, action: str) -> Outcome:
    """Print (dry run), or run the steps, read the domain back, write conf/."""
    name = spec.name
    out = Outcome(dry_run=w.dry_run, findings=findings, notes=list(change.notes))
    edits = changing(spec.raw, spec.path or name, change.edits)
    out.lines = w.show(change.plan) + ([f"# then conf/{name}.xml is written {_written(edits)} (the "
                                        f"previous version kept in conf/.history/{name}/; -v prints "
                                        "the new definition)"] if edits else [])
    out.data = {"node": change.node, "xml": change.xml if edits else None,
                "live": [e.says for e in change.edits if e.live],
                "next_start": [e.says for e in change.edits if not e.live]}
    if edits:
        w.out.note(change.xml)
    if w.dry_run or not (change.plan.steps or edits):
        return out
    failure, made = _run_steps(w, change, out)
    live, why = _read_back(w, change) if change.node else (None, "")
    held = [e for e in change.edits if (live is not None and shown(e, live) if e.live else failure is None)]
    if failure is None and change.grown:
        failure = _grown(w, cluster, change)
    if failure is not None or len(held) < len(change.edits):
        why = why or f"the running definition of {name} does not show " + ", ".join(
            e.says for e in change.edits if e not in held)
        raise _failed(w, spec, change, held, made, failure, why, action)
    if change.node and any(e.live for e in change.edits):
        out.done.append(f"{name} on {change.node} runs {_written([e for e in change.edits if e.live])} "
                        "(its running definition, read again)")
    try:
        saved = _record(w, spec, change.edits, action)
    except HavirtError as e:
        if made and change.node is None:
            raise Interrupted(undo_images(w, made, f"writing conf/{name}.xml failed: {e}", name), e) from None
        raise Interrupted(f"{name} changed on {change.node}, but writing conf/{name}.xml failed: {e}; "
                          "conf/ unchanged (domain info shows the drift)", e) from None
    if saved is not None:
        out.done.append(f"saved {saved.file} (the previous version is in {saved.kept})")
    _waiting(change, saved, out)
    if change.grown:
        out.done.append(f"{change.grown[0]} has {bytes_text(change.grown[1])} now")
    return out


def _waiting(change: Change, saved, out: Outcome) -> None:
    """What takes effect at the next start, said plainly."""
    later = [e.says for e in change.edits if not e.live]
    if not later:
        return
    if change.node is None:
        out.done.append(f"{change.name} is off on every node: it starts with {', '.join(later)}")
        return
    drift = "; ".join(saved.drift) if saved is not None and saved.drift else ""
    out.done.append(f"{', '.join(later)}: at the next start of {change.name}, which runs on "
                    f"{change.node} as it was" + (f" (until then it differs from conf/: {drift})"
                                                  if drift else ""))


# -- the operations ------------------------------------------------------------------------

def _open(w, name: str, verb: str, paths=()):
    """conf/NAME.xml, every conf/ definition, and a fresh scan that reads NAME's
    running definition and checks `paths`; `havirt domain VERB` of a container
    is refused (rules.drivers.vm_only)."""
    spec = w.conf.load(name)
    vm_only(spec, verb)
    specs, _ = w.conf.load_all()
    cluster, findings = w.scan(paths=sorted(set(paths)), dump_running=[name])
    return spec, specs, cluster, findings


def domain_set(app, name: str, memory: int | None = None, vcpus: int | None = None,
               wait: float = WAIT) -> Outcome:
    """Memory and vCPUs: live where it runs (up to its maximum), and in conf/."""
    check_name("domain", name)
    if memory is None and vcpus is None:
        raise UsageError("nothing to set: give --memory, --vcpus or both")
    with app.work() as w:
        spec, _, cluster, findings = _open(w, name, "set")
        change = plan_set(w.cfg, w.state, cluster, spec, memory, vcpus, wait)
        return carry_out(w, spec, change, cluster, findings, "set")


def attach_disk(app, name: str, disk: DiskRequest, target: str | None = None) -> Outcome:
    """A disk (its path, or a new image in a pool) attached live and in conf/."""
    check_name("domain", name)
    with app.work() as w:
        folders = [w.cfg.pools[pool_for(w.cfg, disk)]] if disk.path is None else []
        paths = [disk.path] if disk.path is not None else []
        spec, specs, cluster, findings = _open(w, name, "attach-disk", folders + paths)
        images = w.images(cluster, folders, paths)
        change = plan_attach_disk(w.cfg, cluster, images, specs, spec, disk, target)
        return carry_out(w, spec, change, cluster, findings, "attach-disk")


def detach_disk(app, name: str, target: str, wait: float = WAIT) -> Outcome:
    check_name("domain", name)
    with app.work() as w:
        spec, _, cluster, findings = _open(w, name, "detach-disk")
        change = plan_detach_disk(w.cfg, cluster, spec, target, wait)
        return carry_out(w, spec, change, cluster, findings, "detach-disk")


def attach_nic(app, name: str, network: tuple[str, str]) -> Outcome:
    check_name("domain", name)
    with app.work() as w:
        spec, specs, cluster, findings = _open(w, name, "attach-nic")
        change = plan_attach_nic(w.cfg, cluster, specs, spec, network)
        return carry_out(w, spec, change, cluster, findings, "attach-nic")


def detach_nic(app, name: str, mac: str, wait: float = WAIT) -> Outcome:
    check_name("domain", name)
    with app.work() as w:
        spec, _, cluster, findings = _open(w, name, "detach-nic")
        change = plan_detach_nic(w.cfg, cluster, spec, mac, wait)
        return carry_out(w, spec, change, cluster, findings, "detach-nic")


def resize_disk(app, name: str, target: str, size_mib: int) -> Outcome:
    """Grow a disk's image: live where the domain runs, else with qemu-img."""
    check_name("domain", name)
    with app.work() as w:
        path = resize_path(w.conf.load(name), target)
        spec, specs, cluster, findings = _open(w, name, "resize-disk", [path] if path else [])
        images = w.images(cluster, [], [path] if path else [])
        change = plan_resize_disk(w.cfg, cluster, images, specs, spec, target, size_mib)
        return carry_out(w, spec, change, cluster, findings, "resize-disk")

