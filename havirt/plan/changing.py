"""Planners of changes to a domain in place (pure): domain set, attach-disk,
detach-disk, attach-nic, detach-nic, resize-disk.

Each takes the facts (a fresh Cluster that read the domain's running
definition, the state, conf/'s definitions, the images as qemu-img read
them) and a request, and returns a Change: the steps for the nodes (virsh
--live on the node where the domain runs; qemu-img for an image), the edits
of conf/ (plan/editing.py), and what waits for the domain's next start. Or
it raises a Refusal naming every problem.

Where the domain is decides how: running on one node, it is changed there
(live) and in conf/; off on every node, in conf/ only. A node that did not
answer might run it: refused, as the rule of presence says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from havirt.errors import Refusal, UsageError
from havirt.parse.domxml import DomainSpec, maxima, parse_domain_xml
from havirt.parse.virsh import DomainFact
from havirt.plan.definition import NewDisk, disk_xml, interface_xml, new_mac
from havirt.plan.domains import where_running
from havirt.plan.editing import (
    ATTACH_DISK,
    ATTACH_NIC,
    DETACH_DISK,
    DETACH_NIC,
    MEMORY,
    VCPUS,
    Edit,
    apply_edits,
    disk_targets,
    libvirt_style,
    macs,
)
from havirt.plan.making import DiskRequest, conf_macs, given_disk, new_image, pool_for, size_text
from havirt.remote import commands as remote
from havirt.remote import live as virsh_live
from havirt.remote.live import MAC_RE, TARGET_RE
from havirt.remote.steps import Plan, Step
from havirt.rules.disks import disk_problems, visibility
from havirt.rules.drift import live_spec
from havirt.rules.fit import growth_problems, held, load_of
from havirt.rules.ownership import clashes, definition_problems
from havirt.rules.presence import presence_problems
from havirt.scan.cluster import Cluster
from havirt.scan.images import Images

GIB = 1024 ** 3


@dataclass
class Where:
    """Where the domain is: running on `node` (its running definition read), or off everywhere."""

    node: str | None = None
    fact: DomainFact | None = None
    live: DomainSpec | None = None
    live_xml: str = ""


@dataclass
class Change:
    """What a change in place would do."""

    name: str
    node: str | None                      # where it runs (None: off on every node)
    plan: Plan = field(default_factory=Plan)
    edits: list[Edit] = field(default_factory=list)    # what conf/ gets
    xml: str | None = None                # conf/ with every edit (None: conf/ unchanged)
    notes: list[str] = field(default_factory=list)     # what waits, where a disk is not seen
    made: list[tuple[str, str]] = field(default_factory=list)   # (node, image) the steps make
    grown: tuple[str, int] | None = None  # resize-disk: the image and the bytes it will have


def where_it_is(cluster: Cluster, name: str) -> Where:
    """Running on one node, or off on every node; refused when a node did
    not answer (it might run there), or when it is present but not running."""
    node = where_running(cluster, name) if cluster.copies(name) else None
    problems = presence_problems(cluster, name, force=False, allow_on=node, can_force=False)
    if problems:
        raise Refusal([f"{name} is left as it is"] + problems)
    if node is None:
        return Where()
    fact = cluster.nodes[node].domains[name]
    if fact.state != "running" or fact.migrating:
        raise Refusal(f"{name} is {fact.state} on {node}: a change in place needs it running "
                      "there, or off on every node (then conf/ alone changes)")
    live = live_spec(cluster, node, name)
    if live is None:
        raise Refusal(f"the running definition of {name} on {node} could not be read: nothing changed")
    return Where(node, fact, live, cluster.nodes[node].xml[name])


def _change(spec: DomainSpec, at: Where, edits, steps, notes, **kw) -> Change:
    xml = apply_edits(spec.raw, spec.path or spec.name, edits) if edits else None
    return Change(spec.name, at.node, Plan(steps), list(edits), xml, list(notes), **kw)


# -- memory and vCPUs ------------------------------------------------------------------------

def _size_edit(kind: str, want: int, conf_now: int, at: Where, name: str):
    """(the Edit or None, whether a live step makes it, a note) for one of memory or vCPUs."""
    def says_of(n):
        return f"memory {n} MiB" if kind == MEMORY else f"{n} vCPU" + ("" if n == 1 else "s")
    says = says_of(want)
    if at.node is None:
        edit = Edit(kind, want, False, says) if want != conf_now else None
        return edit, False, "" if edit else f"{name} has {says} in conf/ already"
    now = held(at.fact)[0 if kind == MEMORY else 1]
    top = maxima(at.live_xml, f"{name} on {at.node}")[0 if kind == MEMORY else 1]
    if want == now:
        edit = Edit(kind, want, True, says) if want != conf_now else None
        return edit, False, "" if edit else f"{name} has {says} already, running and in conf/"
    if want <= top:
        return Edit(kind, want, True, says), True, ""
    return Edit(kind, want, False, says), False, (
        f"{says} is above the {says_of(top)} {name} started with, the most it can have live: "
        f"it runs on with {says_of(now)}, and conf/ gets {says} for its next start")


def plan_set(cfg, state, cluster: Cluster, spec: DomainSpec, memory_mib: int | None = None,
             vcpus: int | None = None, wait: float = 20) -> Change:
    """Memory (the balloon's target, currentMemory) and vCPUs (<vcpu current>):
    live up to the maximum the domain started with, growth checked by the fit
    rules on its node; above it, or while it is off, in conf/ for the next start."""
    name, at = spec.name, where_it_is(cluster, spec.name)
    edits, steps, notes, grow = [], [], [], {}
    for kind, want, conf_now in ((VCPUS, vcpus, spec.vcpus), (MEMORY, memory_mib, spec.memory_mib)):
        if want is None:
            continue
        edit, step, note = _size_edit(kind, want, conf_now, at, name)
        edits += [edit] if edit else []
        notes += [note] if note else []
        if not step:
            continue
        grow[kind] = want
        if kind == VCPUS:
            steps.append(Step(node=at.node, command=virsh_live.set_vcpus(cfg, name, want), domain=name,
                              why=f"set the vCPUs of {name} to {want}"))
        else:
            steps += [Step(node=at.node, command=virsh_live.set_memory(cfg, name, want), domain=name,
                           why=f"set the memory of {name} to {want} MiB"),
                      Step(node=at.node, command=virsh_live.wait_balloon(cfg, name, want, wait),
                           domain=name, timeout=wait,
                           why=f"wait up to {wait:g} s for the guest of {name} to follow the balloon")]
    if at.node is not None:
        problems = growth_problems(load_of(cluster, state, cfg, at.node), at.fact,
                                   grow.get(MEMORY), grow.get(VCPUS))
        if problems:
            raise Refusal([f"{name} cannot grow on {at.node}"] + problems)
    return _change(spec, at, edits, steps, notes)


# -- disks ---------------------------------------------------------------------------------

def _taken(spec: DomainSpec, at: Where) -> set[str]:
    return set(disk_targets(spec.raw.decode("utf-8"))) | set(disk_targets(at.live_xml) if at.node else ())


def _target(given: str | None, taken: set[str], name: str) -> str:
    """--target, or the first free vdX."""
    if given is None:
        free = next((t for t in (f"vd{chr(c)}" for c in range(ord("a"), ord("z") + 1)) if t not in taken), None)
        if free is None:
            raise UsageError(f"{name} has every disk from vda to vdz: name one with --target (vdaa, ...)")
        return free
    if not given.startswith("vd") or not TARGET_RE.fullmatch(given):
        raise UsageError(f"--target {given!r}: a virtio disk's name, vdb, vdc, ...")
    if given in taken:
        raise UsageError(f"{name} has a disk {given} already (in conf/ or in its running definition)")
    return given


def _free_image(cfg, pool: str, name: str, images: Images, specs) -> str:
    """NAME-N.qcow2 in the pool, N the first number no image and no conf/ disk has."""
    used = set(images.facts) | {p for s in specs.values() for p in s.disks}
    n = 1
    while f"{cfg.pools[pool]}/{name}-{n}.qcow2" in used:
        n += 1
    return f"{cfg.pools[pool]}/{name}-{n}.qcow2"


def elsewhere(cluster: Cluster, path: str, node: str | None, what: str) -> list[str]:
    """Where else the domain could not go for want of `path` (as cluster validate says it)."""
    vis = visibility(cluster, path, [n for n in cluster.answered() if n != node])
    return [f"{what} is missing on {', '.join(vis.missing)} (it could not start or migrate "
            "there)"] if vis.missing else []


def plan_attach_disk(cfg, cluster: Cluster, images: Images, specs, spec: DomainSpec,
                     disk: DiskRequest, target: str | None = None) -> Change:
    """A disk given by its path, or a new image in a pool, attached as `target`."""
    name, at = spec.name, where_it_is(cluster, spec.name)
    target = _target(target, _taken(spec, at), name)
    problems, steps, made = [], [], []
    if disk.path is not None:
        new, seen = given_disk(images, disk.path, problems), disk.path
        what = f"disk {disk.path} of {name}"
    else:
        pool = pool_for(cfg, disk)
        new, seen = NewDisk(_free_image(cfg, pool, name, images, specs)), cfg.pools[pool]
        what = f"the pool {pool} ({seen}), which holds the new disk of {name},"
        node = new_image(cfg, images, pool, new.path, problems)
        if node is not None:
            steps.append(Step(node=node, command=remote.create_image(new.path, disk.size_mib), domain=name,
                              why=f"create the image {new.path} ({size_text(disk.size_mib)})"))
            made.append((node, new.path))
    if at.node is not None:
        problems += disk_problems(at.node, cluster.nodes[at.node].paths, [seen])
    if new is None:
        raise Refusal(problems)
    device = libvirt_style(disk_xml(new, target))
    edit = Edit(ATTACH_DISK, target, at.node is not None, f"disk {target} ({new.path})", device)
    xml = apply_edits(spec.raw, spec.path or name, [edit])
    problems += definition_problems(parse_domain_xml(xml, f"{name} with {new.path}"), specs,
                                    images.chains(), before=spec)
    if problems:
        raise Refusal(problems)
    if at.node is not None:
        steps.append(Step(node=at.node, command=virsh_live.attach_device(cfg, name), domain=name,
                          stdin_data=device.encode(), why=f"attach {new.path} to {name} as {target}"))
    return _change(spec, at, [edit], steps, elsewhere(cluster, seen, at.node, what), made=made)


def _named(target: str) -> str:
    """A disk target havirt can name in a command: vdX, sdX, hdX, xvdX."""
    if not TARGET_RE.fullmatch(target):
        raise UsageError(f"{target!r}: havirt names disks vdX, sdX, hdX or xvdX (domain info lists them)")
    return target


def _listing(conf: list[str], at: Where, live: list[str]) -> str:
    shown = f"conf/: {', '.join(conf) or 'none'}"
    return shown + (f"; running: {', '.join(live) or 'none'}" if at.node else "")


def plan_detach_disk(cfg, cluster: Cluster, spec: DomainSpec, target: str, wait: float = 20) -> Change:
    """Detach `target` live (waiting for the guest to let go) and from conf/."""
    _named(target)
    name, at = spec.name, where_it_is(cluster, spec.name)
    conf, live = disk_targets(spec.raw.decode("utf-8")), disk_targets(at.live_xml) if at.node else []
    if target not in conf and target not in live:
        raise UsageError(f"{name} has no disk {target} ({_listing(conf, at, live)})")
    disks = {d.target: d.path for d in [*spec.disk_specs, *(at.live.disk_specs if at.live else ())]}
    says = f"disk {target}" + (f" ({disks[target]})" if target in disks else "")
    steps, notes = [], []
    if target in live:
        steps = [Step(node=at.node, command=virsh_live.detach_disk(cfg, name, target), domain=name,
                      why=f"detach {target} from {name}"),
                 Step(node=at.node, command=virsh_live.wait_detached(cfg, name, "disk", target, wait),
                      domain=name, timeout=wait,
                      why=f"wait up to {wait:g} s for the guest of {name} to let go of {target}")]
    notes += _half(name, says, target in conf, target in live, at)
    if target in disks:
        notes.append(f"{disks[target]} is kept: detaching a disk never removes its image")
    return _change(spec, at, [Edit(DETACH_DISK, target, target in live, says)], steps, notes)


def _half(name: str, says: str, in_conf: bool, in_live: bool, at: Where) -> list[str]:
    """What a detach says when the device is in one definition only."""
    if at.node is not None and not in_live:
        return [f"{says} is not attached to the running {name}: conf/ alone changes"]
    if in_live and not in_conf:
        return [f"{says} is attached to the running {name} but not in conf/: conf/ stays as it is"]
    return []


# -- network cards ---------------------------------------------------------------------------

def plan_attach_nic(cfg, cluster: Cluster, specs, spec: DomainSpec, network: tuple[str, str],
                    rng=None) -> Change:
    """A virtio card on a bridge or a libvirt network, with a new MAC address."""
    name, at = spec.name, where_it_is(cluster, spec.name)
    kind, source = network
    mac = new_mac(conf_macs(specs) | set(macs(at.live) if at.live else ()), rng)
    device = libvirt_style(interface_xml(kind, source, mac))
    edit = Edit(ATTACH_NIC, mac, at.node is not None, f"network card {mac} ({kind} {source})", device)
    steps = [Step(node=at.node, command=virsh_live.attach_device(cfg, name), domain=name,
                  stdin_data=device.encode(), why=f"attach a network card {mac} to {name}")] \
        if at.node is not None else []
    return _change(spec, at, [edit], steps, [])


def plan_detach_nic(cfg, cluster: Cluster, spec: DomainSpec, mac: str, wait: float = 20) -> Change:
    """Detach the card with that MAC address live (waiting for the guest) and from conf/."""
    name, mac = spec.name, mac.lower()
    if not MAC_RE.fullmatch(mac):
        raise UsageError(f"{mac!r}: a MAC address is six pairs of hex digits, as 52:54:00:12:34:56")
    at = where_it_is(cluster, name)
    conf, live = macs(spec), macs(at.live) if at.live else []
    if mac not in conf and mac not in live:
        raise UsageError(f"{name} has no network card {mac} ({_listing(conf, at, live)})")
    says = f"network card {mac}"
    steps = []
    if mac in live:
        kind = next(i.split(":", 1)[0] for i in at.live.interfaces if i.endswith(mac))
        steps = [Step(node=at.node, command=virsh_live.detach_interface(cfg, name, kind, mac),
                      domain=name, why=f"detach the network card {mac} from {name}"),
                 Step(node=at.node, command=virsh_live.wait_detached(cfg, name, "interface", mac, wait),
                      domain=name, timeout=wait,
                      why=f"wait up to {wait:g} s for the guest of {name} to let go of {mac}")]
    return _change(spec, at, [Edit(DETACH_NIC, mac, mac in live, says)], steps,
                   _half(name, says, mac in conf, mac in live, at))


# -- growing a disk --------------------------------------------------------------------------

def bytes_text(n: int) -> str:
    return f"{n // GIB} GiB" if n % GIB == 0 else f"{n / GIB:.2f} GiB ({n} bytes)"


def resize_path(spec: DomainSpec, target: str) -> str | None:
    """The image conf/ names for `target` (what the scan checks before the plan)."""
    return next((d.path for d in spec.disk_specs if d.target == target), None)


def plan_resize_disk(cfg, cluster: Cluster, images: Images, specs, spec: DomainSpec, target: str,
                     size_mib: int) -> Change:
    """Grow the image of `target` to `size_mib` MiB: `virsh blockresize` where the
    domain runs, else `qemu-img resize` on a node that sees it. Never shrink."""
    _named(target)
    name, at = spec.name, where_it_is(cluster, spec.name)
    disk = next((d for d in (at.live or spec).disk_specs if d.target == target), None)
    if disk is None:
        raise UsageError(f"{name} has no disk {target} with an image ("
                         + ", ".join(d.target or "?" for d in (at.live or spec).disk_specs) + ")")
    if at.node is not None and resize_path(spec, target) != disk.path:
        raise Refusal(f"{target} of the running {name} is {disk.path}, conf/ says "
                      f"{resize_path(spec, target) or 'nothing'}: settle that first (domain info)")
    fact = images.facts.get(disk.path)
    if disk.kind == "block" or (fact is not None and fact.kind == "block"):
        raise Refusal(f"{target} of {name} is a block device ({disk.path}): havirt grows image "
                      "files only (grow the device itself, then virsh blockresize)")
    if disk.readonly or disk.shareable:
        raise Refusal(f"{target} of {name} is {'read-only' if disk.readonly else 'shareable'} "
                      f"({disk.path}): havirt grows only a disk that one domain writes")
    if fact is None or fact.kind != "file" or fact.virtual_size is None:
        raise Refusal(f"{disk.path}: " + (fact.error if fact is not None and fact.error else
                                          "no node that answered sees it as an image file"))
    new = size_mib * 1024 ** 2
    if new <= fact.virtual_size:
        raise Refusal(f"{target} of {name} has {bytes_text(fact.virtual_size)}; {bytes_text(new)} would "
                      "not grow it (havirt never shrinks a disk)")
    problems = [c.message for c in clashes(spec, specs, images.chains())
                if c.path == disk.path and (c.kind == "shared" or c.base == name)]
    if problems:
        raise Refusal(problems)
    if at.node is not None:
        step = Step(node=at.node, command=virsh_live.block_resize(cfg, name, target, size_mib), domain=name,
                    why=f"grow {target} of {name} to {size_text(size_mib)}")
    else:
        node = images.read_by[disk.path]
        step = Step(node=node, command=virsh_live.resize_image(disk.path, disk.format or fact.format or "raw",
                                                               size_mib),
                    domain=name, why=f"grow {disk.path} to {size_text(size_mib)}")
    notes = [f"conf/{name}.xml unchanged: a disk's size is its image's"]
    return _change(spec, at, [], [step], notes, grown=(disk.path, new))
