"""Making and removing domains: new, clone, delete; one unit of work each.

A fresh scan of every node (it also checks the pool folders and the paths
the command needs), then qemu-img on a node that sees each pool reads the
images (w.images), then the pure planner (plan/making.py). A dry run prints
the qemu-img lines and what conf/ would get, and changes nothing.

With --yes the image steps run one by one, then conf/ is written: a new
definition only once its images exist. If a step fails, or conf/ cannot be
written, the images this command made are removed again; what could not be
is named, with the command that removes it. delete moves the definition into
conf/.history/ first, then removes the images; a removal that fails is
named the same way.
"""

from __future__ import annotations

from havirt.errors import HavirtError, Interrupted, UsageError
from havirt.names import check_name
from havirt.ops.definitions import retire
from havirt.ops.outcome import Outcome
from havirt.plan.making import (
    Making,
    NewRequest,
    check_size,
    plan_clone,
    plan_delete,
    plan_new,
    pool_for,
    removal_step,
)
from havirt.remote.steps import Plan


def _free_in_conf(w, name: str) -> None:
    if w.conf.exists(name):
        raise UsageError(f"conf/{name}.xml exists: choose another name (havirt domain delete "
                         f"{name} removes that domain)")


def undo_images(w, made: list[tuple[str, str]], what: str, domain: str) -> str:
    """Remove the images in `made` (node, path) again; say what happened."""
    left = []
    for node, path in reversed(made):
        step = removal_step(node, path, domain)
        try:
            w.run(Plan([step]))
        except HavirtError:
            left.append(w.show(Plan([step]))[0])
    if not made:
        return f"{what}; nothing was made, conf/ unchanged"
    if not left:
        return (f"{what}; the images it had made were removed again "
                f"({', '.join(p for _, p in made)}); conf/ unchanged")
    return f"{what}; conf/ unchanged; remove what it made by hand: {'; '.join(left)}"


def failed_line(step, e: HavirtError) -> str:
    """What failed: the executor's own line names the step; a node that stopped answering does not."""
    return str(e) if str(e).startswith(step.why) else f"{step.why} failed: {e}"


def make_one_by_one(w, steps: list, domain: str) -> list[tuple[str, str]]:
    """Run each (step, files it makes) in turn; when one fails, remove what the
    earlier ones made (undo_images) and raise Interrupted. The (node, path) made."""
    made: list[tuple[str, str]] = []
    for step, files in steps:
        try:
            w.run(Plan([step]))
        except HavirtError as e:
            raise Interrupted(undo_images(w, made, failed_line(step, e), domain), e) from None
        made += [(step.node, f) for f in files]
    return made


def _carry_out(w, name: str, making: Making, findings) -> Outcome:
    """Print (dry run), or make the images one by one and then write conf/NAME.xml."""
    out = Outcome(dry_run=w.dry_run, findings=findings, notes=list(making.kept))
    out.lines = w.show(making.plan) + [f"# then conf/{name}.xml is written (the new definition; "
                                       "-v prints it)"]
    out.data = {"xml": making.xml, "images": making.images}
    w.out.note(making.xml)
    if w.dry_run:
        return out
    steps = list(zip(making.plan.steps, [[path] for path in making.images]))
    made = make_one_by_one(w, steps, name)
    out.done += [f"{step.why} on {step.node}: done" for step, _ in steps]
    try:
        path = w.conf.write(name, making.xml)
    except HavirtError as e:
        raise Interrupted(undo_images(w, made, f"writing conf/{name}.xml failed: {e}", name), e) from None
    out.done.append(f"saved {path}")
    return out


def domain_new(app, req: NewRequest) -> Outcome:
    """A new domain: its images made in the pools, its definition in conf/."""
    check_name("domain", req.name)
    check_size(req.memory_mib, req.vcpus, req.virt_type)
    with app.work() as w:
        _free_in_conf(w, req.name)
        specs, _ = w.conf.load_all()
        folders = sorted({w.cfg.pools[pool_for(w.cfg, d)] for d in req.disks if d.path is None})
        paths = sorted({d.path for d in req.disks if d.path is not None})
        cluster, findings = w.scan(paths=[*folders, *paths, *([req.cdrom] if req.cdrom else [])])
        images = w.images(cluster, folders, paths)
        making = plan_new(w.cfg, cluster, images, specs, req)
        return _carry_out(w, req.name, making, findings)


def domain_clone(app, source: str, name: str, linked: bool = False) -> Outcome:
    """A copy of SOURCE under NAME: new UUID and MACs, its disks in pools copied
    (or, linked, qcow2 overlays on SOURCE's images)."""
    check_name("domain", source)
    check_name("domain", name)
    if source == name:
        raise UsageError("a clone needs a name of its own")
    with app.work() as w:
        spec = w.conf.load(source)
        _free_in_conf(w, name)
        specs, _ = w.conf.load_all()
        folders = sorted(w.cfg.pools.values())
        cluster, findings = w.scan(paths=folders)
        images = w.images(cluster, folders)
        making = plan_clone(w.cfg, cluster, images, specs, spec, name, linked)
        return _carry_out(w, name, making, findings)


def domain_delete(app, name: str, disks: bool = False) -> Outcome:
    """Undefine NAME (its definition kept in conf/.history/) and, with `disks`,
    remove its images in the pools."""
    check_name("domain", name)
    with app.work() as w:
        spec = w.conf.load(name)
        specs, _ = w.conf.load_all()
        folders = sorted(w.cfg.pools.values()) if disks else []
        cluster, findings = w.scan(paths=folders)
        images = w.images(cluster, folders) if disks else None
        making = plan_delete(w.cfg, cluster, images, specs, spec, disks)
        out = Outcome(dry_run=w.dry_run, findings=findings, notes=list(making.kept))
        out.lines = [f"# first conf/{name}.xml moves into conf/.history/{name}/"] + w.show(making.plan)
        out.data = {"images": making.images}
        if w.dry_run:
            return out
        kept = retire(w, name, "delete", spec.raw)
        out.done.append(f"removed conf/{name}.xml (kept as {kept})")
        for i, (step, path) in enumerate(zip(making.plan.steps, making.images)):
            try:
                w.run(Plan([step]))
            except HavirtError as e:
                rest = w.show(Plan(making.plan.steps[i:]))
                raise Interrupted(f"{name} is undefined (kept as {kept}), but removing {path} "
                                  f"failed: {e}; what is left to remove: {'; '.join(rest)}",
                                  e) from None
            out.done.append(f"removed {path} on {step.node}")
        return out
