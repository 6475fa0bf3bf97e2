"""The rule of ownership (rules/ownership.py) on hand-made definitions: a disk belongs to one domain."""

import pytest
from facts import dom, world

from havirt.parse.domxml import parse_domain_xml
from havirt.rules.ownership import (
    bases,
    definition_problems,
    ownership_findings,
    removal_problems,
    start_problems,
)


def disk(path, *marks, backing=(), device="disk"):
    store = "".join(f"<backingStore type='file'><format type='qcow2'/><source file='{b}'/>"
                    for b in backing) + "</backingStore>" * len(backing)
    return (f"<disk type='file' device='{device}'><source file='{path}'/>{store}<target dev='vda'/>"
            + "".join(f"<{m}/>" for m in marks) + "</disk>")


def spec(name, *disks):
    return parse_domain_xml(f"<domain><name>{name}</name><memory unit='MiB'>64</memory>"
                            f"<devices>{''.join(disks)}</devices></domain>")


A = "/pool/a.qcow2"


@pytest.mark.parametrize("mine, theirs, refused", [
    (disk(A), disk(A), True),                                    # two writers
    (disk(A, "readonly"), disk(A), True),                        # it changes under the reader
    (disk(A), disk(A, "readonly"), True),
    (disk(A, "readonly"), disk(A, "readonly"), False),           # two readers
    (disk(A, device="cdrom"), disk(A, device="cdrom"), False),   # one ISO, many drives
    (disk(A, "shareable"), disk(A, "shareable"), False),         # both say so
    (disk(A, "shareable"), disk(A), True),                       # only one says so
    (disk(A), disk("/pool/b.qcow2"), False),
    (disk("/pool/c.qcow2", backing=[A]), disk(A), False),        # a linked clone of theirs
    (disk(A), disk("/pool/c.qcow2", backing=[A]), True),         # writing their base
    (disk(A), disk("/pool/d.qcow2", backing=["/pool/c.qcow2", A]), True),   # deeper in the chain
    (disk("/pool/c.qcow2", backing=[A]), disk("/pool/d.qcow2", backing=[A]), False),   # two clones
])
def test_what_a_definition_may_use(mine, theirs, refused):
    problems = definition_problems(spec("new", mine), {"old": spec("old", theirs)})
    assert bool(problems) is refused, problems


def test_chains_read_by_qemu_img_count_where_conf_has_none():
    clone = spec("clone", disk("/pool/c.qcow2"))
    assert definition_problems(spec("new", disk(A)), {"clone": clone}) == []
    assert definition_problems(spec("new", disk(A)), {"clone": clone},
                               {"/pool/c.qcow2": (A,)}) == [
        f"new writes {A}, the backing file of clone's disk /pool/c.qcow2 (a linked clone of new)"]


def test_an_edit_keeps_the_clashes_it_had_and_may_not_add_any():
    base, clone = spec("base", disk(A)), spec("clone", disk("/pool/c.qcow2", backing=[A]))
    bigger = spec("base", disk(A), disk("/pool/e.qcow2"))
    assert definition_problems(bigger, {"clone": clone}, before=base) == []
    worse = spec("base", disk(A), disk("/pool/c.qcow2"))
    assert definition_problems(worse, {"clone": clone}, before=base) == [
        "disk /pool/c.qcow2 of base is also a disk of clone (a disk belongs to one domain, "
        "unless both mark it <shareable/>)"]


def test_start_refuses_a_base_and_a_clone_whose_base_runs():
    base, clone = spec("base", disk(A)), spec("clone", disk("/pool/c.qcow2", backing=[A]))
    specs = {"base": base, "clone": clone}
    cluster, _ = world({"n1": {}, "n2": {}})
    assert start_problems(base, specs, cluster) == [
        f"base writes {A}, the backing file of clone's disk /pool/c.qcow2 (a linked clone of base): "
        "starting base would change it under clone"]
    assert start_problems(clone, specs, cluster) == []
    cluster, _ = world({"n1": {"domains": [dom("base")]}, "n2": {}})
    assert start_problems(clone, specs, cluster) == [
        f"base writes {A}, the backing file of clone's disk /pool/c.qcow2 (a linked clone of base), "
        "and base is running on n1"]


def test_removal_bases_and_findings():
    base, clone = spec("base", disk(A)), spec("clone", disk("/pool/c.qcow2", backing=[A]))
    specs = {"base": base, "clone": clone}
    assert removal_problems("clone", ["/pool/c.qcow2"], specs) == []
    assert removal_problems("base", [A], specs) == [
        f"{A} is the backing file of clone's disk /pool/c.qcow2"]
    assert removal_problems("base", [A], {"base": base}, {"/pool/orphan.qcow2": (A,)}) == [
        f"{A} is the backing file of the image /pool/orphan.qcow2"]
    assert bases(specs) == {"base": ["clone"]}
    cluster, _ = world({"n1": {"domains": [dom("base")]}})
    twin = spec("twin", disk(A))
    found = ownership_findings({**specs, "twin": twin}, cluster)
    assert [(f.kind, f.subject) for f in found] == [("base-running", "base"),
                                                    ("disk-shared", "base+twin")]   # twin is off
