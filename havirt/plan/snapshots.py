"""Planners of snapshots and backups (pure): facts in, a Plan or a Refusal out.

A snapshot is a qcow2 internal snapshot of the same name in every writable
disk of a domain: it lives in the image files themselves, so it survives the
end of the (transient) domain, a move to another node, and a new admin host.
Where the domain runs, libvirt takes it (every disk at once, the guest's
memory too); where it is off everywhere, `qemu-img snapshot` on a node that
sees each image. A revert needs the domain off everywhere.

A backup copies every writable disk of a domain into a folder on the nodes,
as new qcow2 files: libvirt's backup job while it runs, `qemu-img convert`
while it is off everywhere; a definition of the copy (a new name, UUID and
MAC addresses, its disks on the copies) is written next to them.

The facts: a fresh Cluster (which checked the disk paths and read the
running definition), the images as qemu-img read them (with their
snapshots), conf/'s definitions (the rule of ownership: a base of linked
clones keeps its image as it is).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

from havirt.errors import Refusal
from havirt.names import xml_attr
from havirt.parse.domxml import DiskSpec, DomainSpec, parse_domain_xml
from havirt.parse.images import ImageFact
from havirt.plan.definition import ClonedDisk, cloned_xml
from havirt.plan.making import conf_macs
from havirt.remote import commands as remote
from havirt.remote import snapshots as snap_remote
from havirt.remote.steps import Plan, Step
from havirt.rules.disks import MISSING, SEEN, disk_state
from havirt.rules.drift import definition_drift, live_spec
from havirt.rules.ownership import bases
from havirt.rules.presence import presence_problems
from havirt.scan.cluster import Cluster
from havirt.scan.images import Images


@dataclass(frozen=True)
class Place:
    """Where a domain is, for snapshots and backups."""

    node: str | None                 # where it runs (None: off on every node)
    state: str | None                # running, paused (None: off)
    disks: tuple[DiskSpec, ...]      # the disks it runs with, or would start with


@dataclass
class SnapshotPlan:
    plan: Plan
    images: list[str]                # the images the steps change
    node: str | None                 # where the domain runs (None: off)
    notes: list[str] = field(default_factory=list)


def place(cluster: Cluster, spec: DomainSpec) -> Place:
    """Where `spec`'s domain is, by a fresh scan: running (or paused) on one
    node, with the disks of conf/; or off on every node, all of which answered."""
    name = spec.name
    copies = cluster.copies(name)
    if len(copies) > 1:
        raise Refusal(f"{name} is present on {len(copies)} nodes: {', '.join(n for n, _ in copies)}")
    if not copies:
        problems = presence_problems(cluster, name, force=False, can_force=False)
        if problems:
            raise Refusal(problems)
        return Place(None, None, tuple(_with_paths(spec).disk_specs))
    node, fact = copies[0]
    if fact.standby or fact.migrating or fact.state not in ("running", "paused"):
        raise Refusal(f"{name} is {fact.state} on {node}"
                      + (" (a migration is under way)" if fact.migrating or fact.standby else ""))
    live = live_spec(cluster, node, name)
    if live is None:
        raise Refusal(f"the running definition of {name} on {node} could not be read")
    drift = [d.message for d in definition_drift(spec, live) if d.aspect == "disks"]
    if drift:
        raise Refusal(f"{name} runs on {node} with other disks than conf/ names ({drift[0]}): "
                      "restart it from conf/, or make conf/ say what runs")
    return Place(node, fact.state, tuple(_with_paths(live).disk_specs))


def _with_paths(spec: DomainSpec) -> DomainSpec:
    """`spec`, if every writable disk has a local path (what qemu-img and the
    checks of havirt can reach); a network disk is refused."""
    if spec.lease_gaps:
        raise Refusal(f"{spec.name} has a writable disk without a local path ({spec.lease_gaps[0]}): "
                      "havirt snapshots and copies only disks with a path")
    return spec


# -- snapshots ------------------------------------------------------------------------------

def covered(name: str, p: Place, images: Images) -> tuple[list[DiskSpec], list[str], list[str]]:
    """The disks a snapshot covers (every writable disk, each a qcow2 file),
    why it cannot (problems), and the disks it leaves out (read-only ones)."""
    disks, problems, notes = [], [], []
    for d in p.disks:
        fact = images.facts.get(d.path)
        if d.readonly:
            notes.append(f"{d.path}: read-only, left out of snapshots (it never changes)")
        elif d.shareable:
            problems.append(f"disk {d.path} of {name} is shareable (other domains write it): "
                            f"a snapshot of it would not be {name}'s alone")
        elif fact is None or fact.kind == "missing":
            problems.append(f"disk {d.path} of {name}: no node that answered sees it")
        elif fact.error:
            problems.append(f"disk {d.path} of {name}: qemu-img cannot read it ({fact.error})")
        elif fact.kind != "file" or fact.format != "qcow2":
            what = "a block device" if fact.kind == "block" else f"a {fact.format or fact.kind} image"
            problems.append(f"disk {d.path} of {name} is {what}, not qcow2: a snapshot must cover "
                            "every writable disk, and only qcow2 images hold snapshots")
        else:
            disks.append(d)
    if not disks and not problems:
        problems.append(f"{name} has no writable disk: nothing to snapshot")
    return disks, problems, notes


def has(fact: ImageFact | None, snapshot: str) -> bool:
    return fact is not None and any(s.name == snapshot for s in fact.snapshots)


def _base_problems(spec: DomainSpec, specs, images: Images) -> list[str]:
    """The rule of ownership: a base of linked clones keeps its image as it is."""
    clones = bases({**specs, spec.name: spec}, images.chains()).get(spec.name)
    return [f"{spec.name} is the base of {', '.join(clones)} (linked clones read its image): "
            "its snapshots may not change"] if clones else []


def _img_step(action: str, node: str, path: str, snapshot: str, name: str) -> Step:
    verb = {"create": "take", "revert": "revert to", "delete": "delete"}[action]
    return Step(node=node, command=snap_remote.image_snapshot(action, path, snapshot), domain=name,
                why=f"{verb} the snapshot {snapshot} of {path}")


def undo_step(node: str, path: str, snapshot: str, name: str) -> Step:
    """Delete a snapshot this command took on an image (a create that stopped half-way)."""
    return _img_step("delete", node, path, snapshot, name)


def plan_snapshot(cfg, action: str, spec: DomainSpec, specs, p: Place, images: Images,
                  snapshot: str) -> SnapshotPlan:
    """create, revert or delete `snapshot` of every writable disk of `spec`."""
    name = spec.name
    disks, problems, notes = covered(name, p, images)
    if action == "revert" and p.node:
        raise Refusal(f"{name} runs on {p.node}: stop it first (a revert changes its disks)")
    problems += _base_problems(spec, specs, images)
    holding = [d.path for d in disks if has(images.facts.get(d.path), snapshot)]
    lacking = [d.path for d in disks if d.path not in holding]
    if action == "create" and holding:
        problems.append(f"a snapshot named {snapshot} exists already in {', '.join(holding)}")
    elif action == "revert" and lacking and disks:
        problems.append(f"no snapshot {snapshot} in {', '.join(lacking)}: a revert needs it in "
                        "every writable disk")
    elif action == "delete" and not holding and disks:
        problems.append(f"no snapshot {snapshot} in the disks of {name}")
    if problems:
        raise Refusal(problems)
    changed = holding if action == "delete" else [d.path for d in disks]
    if p.node:
        command = snap_remote.snapshot_live(cfg, name, snapshot) if action == "create" \
            else snap_remote.delete_live(cfg, name, snapshot)
        why = (f"take the snapshot {snapshot} of {name} on {p.node} (every disk, and its memory)"
               if action == "create" else f"delete the snapshot {snapshot} of {name} on {p.node}")
        steps = [Step(node=p.node, command=command, domain=name, why=why,
                      timeout=cfg.migrate_timeout)]
    else:
        steps = [_img_step(action, images.read_by[path], path, snapshot, name) for path in changed]
    return SnapshotPlan(Plan(steps), changed, p.node, notes)


SNAPSHOT_COLUMNS = [("name", "snapshot"), ("taken", "taken (UTC)"), ("memory", "memory"),
                    ("disks", "disks"), ("complete", "complete")]


def snapshot_rows(name: str, p: Place, images: Images) -> tuple[list[dict], list[str]]:
    """One row per snapshot name found in the writable qcow2 disks, oldest
    first: when, whether it holds the guest's memory (taken while running),
    the disks (targets) that have it, and whether every writable disk has it.
    Also what keeps the domain from having snapshots, if anything."""
    disks, problems, notes = covered(name, p, images)
    found: dict[str, dict] = {}
    for d in disks:
        for s in images.facts[d.path].snapshots:
            row = found.setdefault(s.name, {"name": s.name, "date": s.date, "memory": False,
                                            "disks": [], "ids": {}})
            row["date"] = min(filter(None, (row["date"], s.date)), default=None)
            row["memory"] = row["memory"] or s.vm_state_size > 0
            row["disks"].append(d.target or d.path)
            row["ids"][d.path] = s.id
    rows = []
    for row in sorted(found.values(), key=lambda r: (r["date"] or 0, r["name"])):
        row["taken"] = (datetime.fromtimestamp(row["date"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                        if row["date"] else None)
        row["complete"] = len(row["disks"]) == len(disks)
        rows.append(row)
    return rows, problems + notes


# -- backups --------------------------------------------------------------------------------

@dataclass
class BackupPlan:
    name: str                        # the copy's
    plan: Plan
    copies: list[tuple[str, str]]    # (disk, its copy)
    definition: str                  # the copy's definition, a file in the folder
    xml: str                         # its text
    node: str                        # where the steps run
    makes: list[list[str]] = field(default_factory=list)   # the files each step makes
    notes: list[str] = field(default_factory=list)


def copied(disks) -> list[DiskSpec]:
    """The disks a backup copies: the writable ones that are a domain's own."""
    return [d for d in disks if not (d.readonly or d.shareable)]


def backup_paths(disks, folder: str, copy: str) -> tuple[list[str], str]:
    """The files a backup into `folder` makes: a qcow2 copy of each disk it
    copies (COPY-N.qcow2, N from 1 in the order of the definition), and the
    copy's definition (COPY.xml). The scan checks them before."""
    n = len(copied(disks))
    return [f"{folder}/{copy}-{i}.qcow2" for i in range(1, n + 1)], f"{folder}/{copy}.xml"


def _backup_node(cluster: Cluster, p: Place, folder: str, files, sources) -> tuple[str | None, list[str]]:
    """The node that writes the backup: where the domain runs, else the first
    node that answered and sees the folder and every disk to copy."""
    candidates = [p.node] if p.node else cluster.answered()
    for node in candidates:
        paths = cluster.nodes[node].paths
        if disk_state(paths, folder) != SEEN or any(disk_state(paths, s) != SEEN for s in sources):
            continue
        return node, [f"{f} {'exists' if disk_state(paths, f) == SEEN else 'was not checked'} on "
                      f"{node}: havirt never overwrites a file" for f in files
                      if disk_state(paths, f) != MISSING]
    where = f"{p.node}, where it runs," if p.node else "no node that answered"
    return None, [f"{where} sees the folder {folder}" + ("" if p.node else " and every disk to copy")]


def _backup_xml(targets: dict[str, str], p: Place) -> str:
    """libvirt's <domainbackup> (push mode): each writable disk to its new
    qcow2 file; read-only and shareable ones not backed up."""
    lines = ['<domainbackup mode="push">', "  <disks>"]
    for d in p.disks:
        if d.path in targets:
            lines += [f'    <disk name="{_attr(d.target)}" type="file">', '      <driver type="qcow2"/>',
                      f'      <target file="{_attr(targets[d.path])}"/>', "    </disk>"]
        elif d.target:
            lines.append(f'    <disk name="{_attr(d.target)}" backup="no"/>')
    return "\n".join(lines + ["  </disks>", "</domainbackup>"])


def _attr(text: str) -> str:
    return xml_attr(text)[1:-1]


def plan_backup(cfg, cluster: Cluster, images: Images | None, spec: DomainSpec, specs, p: Place,
                folder: str, copy: str, seconds: float) -> BackupPlan:
    """A consistent copy of every writable disk of `spec` in `folder`, and a
    definition of the copy, named `copy` (a new UUID and MAC addresses, as a
    clone). `images`: the disks as qemu-img read them (needed when it is off)."""
    files, definition = backup_paths(p.disks, folder, copy)
    writable = copied(p.disks)
    notes = [f"{d.path}: {'read-only' if d.readonly else 'shareable'}, not copied (the copy uses "
             "it as it is)" for d in p.disks if d.readonly or d.shareable]
    node, problems = _backup_node(cluster, p, folder, [*files, definition], [d.path for d in writable])
    targets = dict(zip((d.path for d in writable), files))
    if not writable:
        problems.append(f"{spec.name} has no writable disk: nothing to back up")
    problems += [f"disk {d.path} of {spec.name} has no target device name" for d in writable
                 if p.node and not d.target]
    for d in writable if not p.node else ():
        fact = images.facts.get(d.path)
        if fact is None or fact.kind not in ("file", "block") or fact.error:
            problems.append(f"disk {d.path} of {spec.name}: "
                            + (fact.error if fact and fact.error else "not a file nor a block device"))
    if problems:
        raise Refusal(problems)
    seed = hashlib.sha256("\0".join([spec.raw.decode("utf-8", "replace"), folder, copy]).encode())
    xml = cloned_xml(spec.raw, spec.path or spec.name, copy,     # the same, dry run or not
                     {src: ClonedDisk(dst) for src, dst in targets.items()}, conf_macs(specs),
                     random.Random(seed.digest()))
    parse_domain_xml(xml, f"the copy {copy}")
    if p.node:
        steps = [Step(node=node, command=snap_remote.backup_live(cfg, spec.name, _backup_xml(targets, p),
                                                                 files, seconds),
                      domain=spec.name, timeout=seconds,
                      why=f"back up {spec.name} on {node} into {folder} (libvirt's backup job)")]
        makes = [files]
    else:
        steps, makes = [], [[t] for t in files]
        for d in writable:
            fact = images.facts[d.path]
            fmt = "raw" if fact.kind == "block" else fact.format or d.format or "raw"
            steps.append(Step(node=node, command=remote.copy_image(d.path, fmt, targets[d.path]),
                              domain=spec.name, timeout=seconds,
                              why=f"copy {d.path} to {targets[d.path]}"))
    steps.append(Step(node=node, command=snap_remote.write_new_file(definition, xml), domain=spec.name,
                      why=f"write the definition of the copy, {definition}"))
    return BackupPlan(copy, Plan(steps), list(targets.items()), definition, xml, node,
                      makes + [[definition]], notes)


def backup_name(name: str) -> str:
    """The copy's name when none is given."""
    return f"{name}-backup"
