"""The rule of ownership: a disk belongs to one domain.

Two domains writing one disk corrupt it exactly as one domain running twice
does. Two conf/ domains clash when

* they use the same path and either writes it, unless both mark it
  <shareable/> (a read-only disk, a CD-ROM, is only read): "shared";
* one writes an image that the other's disk reads as its backing file (a
  linked clone and its base): "base". The clone may exist and run; the base
  may then neither start (its image would change under the clone) nor lose
  its disks.

A disk's backing chain is the <backingStore> chain of its conf/ definition
(havirt writes one for every overlay it makes), else what qemu-img said when
the command read the pools (`chains`: path -> backing files, nearest first).

new, define, clone and edit refuse a definition that brings a new "shared"
clash, or that would write a base image; start refuses a shared disk, a base,
and a clone whose base is present on a node; delete --disks refuses an image
another domain uses or reads; cluster validate reports the clashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from havirt.parse.domxml import DomainSpec
from havirt.scan.cluster import Cluster, Finding

NO_CHAINS: Mapping[str, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Use:
    """How a domain uses one path."""

    domain: str
    path: str
    writes: bool
    shareable: bool
    backing: tuple[str, ...]     # the images below it, nearest first


@dataclass(frozen=True)
class Clash:
    kind: str       # shared: one path, two domains; base: `base` writes what `over` reads
    base: str       # shared: the domain asked about; base: the domain that writes the image
    over: str       # shared: the other domain; base: the domain whose disk reads it as backing
    path: str       # the image they meet on
    message: str


def uses(spec: DomainSpec, chains: Mapping[str, tuple[str, ...]] = NO_CHAINS) -> list[Use]:
    return [Use(spec.name, d.path, d.writes, d.shareable, d.backing or tuple(chains.get(d.path, ())))
            for d in spec.disk_specs]


def clashes_between(a: DomainSpec, b: DomainSpec,
                    chains: Mapping[str, tuple[str, ...]] = NO_CHAINS) -> list[Clash]:
    """Every clash between domains `a` and `b` (a first in shared clashes)."""
    out = []
    for u in uses(a, chains):
        for v in uses(b, chains):
            if u.path == v.path:
                if (u.writes or v.writes) and not (u.shareable and v.shareable):
                    out.append(Clash("shared", a.name, b.name, u.path,
                                     f"disk {u.path} of {a.name} is also a disk of {b.name} "
                                     "(a disk belongs to one domain, unless both mark it "
                                     "<shareable/>)"))
                continue
            for base, over, top in ((u, v, v.path), (v, u, u.path)):
                if base.writes and base.path in over.backing:
                    out.append(Clash("base", base.domain, over.domain, base.path,
                                     f"{base.domain} writes {base.path}, the backing file of "
                                     f"{over.domain}'s disk {top} (a linked clone of "
                                     f"{base.domain})"))
    return out


def clashes(spec: DomainSpec, specs: Mapping[str, DomainSpec],
            chains: Mapping[str, tuple[str, ...]] = NO_CHAINS) -> list[Clash]:
    """`spec` against every other conf/ domain."""
    return [c for name, other in sorted(specs.items()) if name != spec.name
            for c in clashes_between(spec, other, chains)]


def definition_problems(spec: DomainSpec, specs: Mapping[str, DomainSpec],
                        chains: Mapping[str, tuple[str, ...]] = NO_CHAINS,
                        before: DomainSpec | None = None) -> list[str]:
    """new, define, clone, edit: a shared disk, or a base image `spec` would
    write, that `before` (the definition it replaces) did not have already.
    Reading another domain's image as a backing file (a linked clone) is allowed."""
    had = {(c.kind, c.base, c.over, c.path) for c in clashes(before, specs, chains)} \
        if before is not None else set()
    return [c.message for c in clashes(spec, specs, chains)
            if (c.kind, c.base, c.over, c.path) not in had
            and (c.kind == "shared" or c.base == spec.name)]


def start_problems(spec: DomainSpec, specs: Mapping[str, DomainSpec], cluster: Cluster,
                   chains: Mapping[str, tuple[str, ...]] = NO_CHAINS) -> list[str]:
    """start: no shared disk; not a base (its image would change under a
    clone); and no base of its own disks present on a node."""
    problems = []
    for c in clashes(spec, specs, chains):
        if c.kind == "shared" or c.base == spec.name:
            problems.append(c.message + (f": starting {spec.name} would change it under "
                                         f"{c.over}" if c.kind == "base" else ""))
            continue
        for node, fact in cluster.copies(c.base):
            problems.append(f"{c.message}, and {c.base} is {fact.state} on {node}")
    return problems


def removal_problems(name: str, paths, specs: Mapping[str, DomainSpec],
                     chains: Mapping[str, tuple[str, ...]] = NO_CHAINS) -> list[str]:
    """delete --disks: an image of `name` that another conf/ domain uses, or
    that is the backing file of another image (any that qemu-img read, or a
    conf/ chain)."""
    problems = []
    for path in paths:
        for other, spec in sorted(specs.items()):
            if other == name:
                continue
            for u in uses(spec, chains):
                if u.path == path:
                    problems.append(f"{path} is also a disk of {other}")
                elif path in u.backing:
                    problems.append(f"{path} is the backing file of {other}'s disk {u.path}")
        for image, below in sorted(chains.items()):
            if path in below and not any(image == u.path for s in specs.values()
                                         for u in uses(s, chains)):
                problems.append(f"{path} is the backing file of the image {image}")
    return problems


def bases(specs: Mapping[str, DomainSpec],
          chains: Mapping[str, tuple[str, ...]] = NO_CHAINS) -> dict[str, list[str]]:
    """Every base domain -> the domains whose disks read its image (its linked clones)."""
    out: dict[str, set[str]] = {}
    names = sorted(specs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for c in clashes_between(specs[a], specs[b], chains):
                if c.kind == "base":
                    out.setdefault(c.base, set()).add(c.over)
    return {k: sorted(v) for k, v in sorted(out.items())}


def ownership_findings(specs: Mapping[str, DomainSpec], cluster: Cluster,
                       chains: Mapping[str, tuple[str, ...]] = NO_CHAINS) -> list[Finding]:
    """cluster validate: every shared disk, and every base present on a node."""
    findings = []
    names = sorted(specs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for c in clashes_between(specs[a], specs[b], chains):
                if c.kind == "shared":
                    findings.append(Finding("error", "disk-shared", f"{a}+{b}", c.message,
                                            "give each domain a disk of its own (domain clone), "
                                            "or mark it <shareable/> in both"))
                    continue
                for node, fact in cluster.copies(c.base):
                    findings.append(Finding("error", "base-running", c.base,
                                            f"{c.message}, and {c.base} is {fact.state} on {node}",
                                            f"shut {c.base} down; a base must not run while "
                                            "its linked clones exist"))
    return findings
