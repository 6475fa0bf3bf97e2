"""Planners of making and removing domains (pure): new, clone, delete.

Each takes the facts (a fresh Cluster, the pools as qemu-img read them on a
node that sees them, conf/'s definitions) and a request, and returns a
Making: the image steps to run on the nodes, the definition to write to
conf/, what is kept as it is. Or it raises a Refusal naming every problem.
Writing conf/ is the operation's (ops/making.py), after the steps ran.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from havirt.errors import Refusal, UsageError
from havirt.names import valid_name
from havirt.parse.domxml import DomainSpec, parse_domain_xml
from havirt.parse.numbers import DOMAIN_MEMORY_MIB, DOMAIN_VCPUS
from havirt.plan.definition import ClonedDisk, NewDisk, cloned_xml, new_domain_xml
from havirt.remote import commands as remote
from havirt.remote.steps import Plan, Step
from havirt.rules.ownership import definition_problems, removal_problems
from havirt.rules.presence import presence_problems
from havirt.scan.cluster import Cluster
from havirt.scan.images import Images

MAC_END = re.compile(r"([0-9a-f]{2}(?::[0-9a-f]{2}){5})$")
VIRT_TYPES = ("kvm", "qemu")


@dataclass(frozen=True)
class DiskRequest:
    """--disk size=GIB[,pool=POOL] (a new image) or --disk path=PATH (used as it is)."""

    size_mib: int | None = None
    pool: str | None = None
    path: str | None = None


@dataclass
class NewRequest:
    name: str
    memory_mib: int
    vcpus: int
    disks: list[DiskRequest] = field(default_factory=list)
    networks: list[tuple[str, str]] = field(default_factory=list)   # (bridge|network, name)
    cdrom: str | None = None
    os_variant: str | None = None
    virt_type: str = "kvm"


@dataclass
class Making:
    """What new, clone or delete would do."""

    plan: Plan
    xml: str | None = None                 # the definition to write (new, clone)
    spec: DomainSpec | None = None         # that definition, read back
    images: list[str] = field(default_factory=list)   # the images the steps make or remove
    kept: list[str] = field(default_factory=list)     # disks left as they are, and why


# -- reading the options -------------------------------------------------------------------

def _fields(option: str, text: str, allowed) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in allowed or not value or key in out:
            raise UsageError(f"--{option} {text!r}: expected {' or '.join(allowed)}, "
                             "each once, as KEY=VALUE separated by commas")
        out[key] = value
    return out


def absolute_path(what: str, path: str) -> str:
    if not path.startswith("/") or any(ord(c) < 32 for c in path) or "/../" in path + "/":
        raise UsageError(f"{what} {path!r}: give an absolute path")
    return path


def parse_disk(text: str) -> DiskRequest:
    """`size=GIB[,pool=POOL]` or `path=PATH` (virt-install's spelling)."""
    f = _fields("disk", text, ("size", "pool", "path"))
    if "path" in f:
        if len(f) > 1:
            raise UsageError(f"--disk {text!r}: path= is used as it is; size= and pool= make a new image")
        return DiskRequest(path=absolute_path("--disk path=", f["path"]))
    if "size" not in f:
        raise UsageError(f"--disk {text!r}: give size=GIB (a new image) or path=PATH")
    size = gib_to_mib(f["size"], "--disk size=")
    if "pool" in f and not valid_name(f["pool"]):
        raise UsageError(f"--disk pool={f['pool']!r}: not a pool name")
    return DiskRequest(size_mib=size, pool=f.get("pool"))


def gib_to_mib(text: str, what: str) -> int:
    """A disk size given in GiB (a decimal number, more than 0, at most 65536) -> MiB."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) or not 0 < float(text) <= 65536:
        raise UsageError(f"{what}{text}: a number of GiB, more than 0, at most 65536")
    return math.ceil(float(text) * 1024)


def parse_network(text: str) -> tuple[str, str]:
    """`bridge=BR` or `network=NET`."""
    f = _fields("network", text, ("bridge", "network"))
    kind, name = next(iter(f.items()))
    if len(f) != 1 or not valid_name(name):
        raise UsageError(f"--network {text!r}: give bridge=NAME or network=NAME (letters, digits, "
                         "'.', '_', '-')")
    return kind, name


def check_size(memory_mib: int, vcpus: int, virt_type: str) -> None:
    if memory_mib not in DOMAIN_MEMORY_MIB:
        raise UsageError(f"--memory must be {DOMAIN_MEMORY_MIB} MiB, not {memory_mib}")
    if vcpus not in DOMAIN_VCPUS:
        raise UsageError(f"--vcpus must be {DOMAIN_VCPUS}, not {vcpus}")
    if virt_type not in VIRT_TYPES:
        raise UsageError(f"--virt-type {virt_type}: one of {', '.join(VIRT_TYPES)}")


def pool_for(cfg, disk: DiskRequest) -> str:
    """The pool a new image goes to: pool=, else the only one."""
    names = ", ".join(sorted(cfg.pools)) or "none"
    if disk.pool is not None:
        if disk.pool not in cfg.pools:
            raise UsageError(f"unknown pool {disk.pool!r} (pools in config.yaml: {names})")
        return disk.pool
    if len(cfg.pools) != 1:
        raise UsageError("--disk size=... needs " + ("a pool: config.yaml has none (see pools:)"
                         if not cfg.pools else f"pool=NAME: config.yaml has several ({names})"))
    return next(iter(cfg.pools))


def conf_macs(specs) -> set[str]:
    """Every MAC address of conf/'s interfaces."""
    return {m.group(1) for s in specs.values() for i in s.interfaces
            for m in [MAC_END.search(i)] if m}


def size_text(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


# -- the planners -------------------------------------------------------------------------

def _name_free(cluster: Cluster, name: str) -> list[str]:
    return [f"a domain named {name} is already {fact.state} on {node}"
            for node, fact in cluster.copies(name)]


def new_image(cfg, images: Images, pool: str, path: str, problems: list[str]) -> str | None:
    """The node that makes `path` in `pool` (None: it cannot be made, said in problems)."""
    node = images.readers.get(cfg.pools[pool])
    if node is None:
        problems.append(f"no node that answered sees the pool {pool} ({cfg.pools[pool]})")
    elif path in images.facts:
        problems.append(f"{path} exists already: havirt never overwrites an image")
    return node


def given_disk(images: Images, path: str, problems: list[str]) -> NewDisk | None:
    fact = images.facts.get(path)
    if fact is None:
        problems.append(f"disk {path}: no node that answered sees it")
    elif fact.kind in ("missing", "other"):
        problems.append(f"disk {path} on {images.read_by[path]}: "
                        + ("no such file" if fact.kind == "missing" else "neither a file nor a block device"))
    else:
        return NewDisk(path, fact.kind, "raw" if fact.kind == "block" else fact.format or "raw")
    return None


def plan_new(cfg, cluster: Cluster, images: Images, specs, req: NewRequest) -> Making:
    problems = _name_free(cluster, req.name)
    disks, steps, made = [], [], []
    for i, d in enumerate(req.disks, 1):
        if d.path is not None:
            disk = given_disk(images, d.path, problems)
            disks += [disk] if disk else []
            continue
        pool = pool_for(cfg, d)
        path = f"{cfg.pools[pool]}/{req.name}-{i}.qcow2"
        node = new_image(cfg, images, pool, path, problems)
        disks.append(NewDisk(path))
        made.append(path)
        if node is not None:
            steps.append(Step(node=node, command=remote.create_image(path, d.size_mib), domain=req.name,
                              why=f"create the image {path} ({size_text(d.size_mib)})"))
    if req.cdrom and not any(f.paths.get(req.cdrom) for f in cluster.nodes.values() if f.reachable):
        problems.append(f"the CD-ROM {req.cdrom}: no node that answered sees it")
    xml = new_domain_xml(req.name, req.memory_mib, req.vcpus, disks, req.networks, req.cdrom,
                         req.os_variant, conf_macs(specs), req.virt_type)
    spec = parse_domain_xml(xml, f"the new {req.name}")
    problems += definition_problems(spec, specs, images.chains())
    if problems:
        raise Refusal(problems)
    return Making(Plan(steps), xml, spec, made)


def plan_clone(cfg, cluster: Cluster, images: Images, specs, src: DomainSpec, name: str,
               linked: bool) -> Making:
    """A copy of `src` under `name`: each writable disk in a pool copied in
    full, or (linked) a qcow2 overlay whose backing file is the source's image."""
    problems = [f"{src.name} must be shut off everywhere to be cloned: {p}"
                for p in presence_problems(cluster, src.name, force=False)]
    problems += _name_free(cluster, name)
    cloned, steps, made, kept = {}, [], [], []
    for d in src.disk_specs:
        if d.readonly or d.shareable:
            kept.append(f"{d.path}: {'read-only' if d.readonly else 'shareable'}, used by both as it is")
            continue
        pool = cfg.pool_of(d.path)
        if pool is None:
            problems.append(f"disk {d.path} of {src.name} is not in a pool: havirt copies only "
                            "images in its pools")
            continue
        path = f"{cfg.pools[pool]}/{name}-{len(cloned) + 1}.qcow2"
        node = new_image(cfg, images, pool, path, problems)
        fact = images.facts.get(d.path)
        if node is not None and (fact is None or fact.kind != "file"):
            problems.append(f"disk {d.path} of {src.name}: no such file on {node}")
        if node is None or fact is None or fact.kind != "file":
            continue
        fmt = d.format or fact.format or "raw"
        if linked:
            chain = ((d.path, fmt),) + tuple(zip(fact.backing, (f or "raw" for f in fact.backing_formats)))
            step = Step(node=node, command=remote.overlay_image(path, d.path, fmt), domain=name,
                        why=f"create {path}, a qcow2 overlay on {d.path}")
        else:
            chain = ()
            step = Step(node=node, command=remote.copy_image(d.path, fmt, path), domain=name,
                        why=f"copy {d.path} to {path}")
        cloned[d.path] = ClonedDisk(path, chain)
        steps.append(step)
        made.append(path)
    xml = cloned_xml(src.raw, src.path or src.name, name, cloned, conf_macs(specs))
    spec = parse_domain_xml(xml, f"the clone {name}")
    problems += definition_problems(spec, specs, images.chains())
    if problems:
        raise Refusal(problems)
    return Making(Plan(steps), xml, spec, made, kept)


def plan_delete(cfg, cluster: Cluster, images: Images | None, specs, spec: DomainSpec,
                disks: bool) -> Making:
    """Undefine `spec`'s domain and, with `disks`, remove its images in the pools."""
    problems = presence_problems(cluster, spec.name, force=False)
    kept, doomed = [], []
    for d in spec.disk_specs:
        pool = cfg.pool_of(d.path)
        if not disks:
            kept.append(f"{d.path}: kept (--disks removes the images in pools)")
        elif d.readonly or d.shareable:
            kept.append(f"{d.path}: kept ({'read-only' if d.readonly else 'shareable'})")
        elif pool is None:
            kept.append(f"{d.path}: kept, not in a pool"
                        + (" (a block device is never wiped)" if d.kind == "block" else ""))
        elif images.readers.get(cfg.pools[pool]) is None:
            problems.append(f"no node that answered sees the pool {pool} ({cfg.pools[pool]})")
        elif d.path not in images.facts:
            kept.append(f"{d.path}: not found in the pool {pool}, nothing to remove")
        else:
            doomed.append((images.readers[cfg.pools[pool]], d.path))
    problems += removal_problems(spec.name, [p for _, p in doomed], specs,
                                 images.chains() if images else {})
    if problems:
        raise Refusal([f"{spec.name} stays defined"] + problems)
    steps = [removal_step(node, path, spec.name) for node, path in doomed]
    return Making(Plan(steps), images=[p for _, p in doomed], kept=kept)


def removal_step(node: str, path: str, domain: str) -> Step:
    return Step(node=node, command=remote.remove_image(path), domain=domain,
                why=f"remove the image {path}")
