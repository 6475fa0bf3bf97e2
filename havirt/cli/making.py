"""havirt domain new / clone / delete: making and removing domains."""

from __future__ import annotations

import click

from havirt.cli.complete import complete_domains
from havirt.cli.domain import domain
from havirt.cli.group import pass_app
from havirt.parse.numbers import DOMAIN_MEMORY_MIB, DOMAIN_VCPUS


@domain.command("new", epilog="""\b
Examples: havirt domain new web3 --memory 2048 --vcpus 2 --disk size=20 \\
              --network bridge=br0 --cdrom /srv/iso/debian-12.iso --os-variant http://debian.org/debian/12
          havirt --yes domain new db2 --memory 4096 --vcpus 4 --disk size=40,pool=fast \\
              --disk path=/dev/disk/by-id/lun7""")
@click.argument("name")
@click.option("--memory", type=click.IntRange(DOMAIN_MEMORY_MIB.low, DOMAIN_MEMORY_MIB.high), required=True, metavar="MIB",
              help="Memory in MiB.")
@click.option("--vcpus", type=click.IntRange(DOMAIN_VCPUS.low, DOMAIN_VCPUS.high), required=True, metavar="N",
              help="Virtual CPUs.")
@click.option("--disk", "disks", multiple=True, metavar="size=GIB[,pool=POOL]|path=PATH",
              help="A new qcow2 image NAME-N.qcow2 in POOL (the only pool by default), or a "
                   "file or block device used as it is. Repeatable.")
@click.option("--network", "networks", multiple=True, metavar="bridge=BR|network=NET",
              help="A virtio network card on a bridge or a libvirt network. Repeatable.")
@click.option("--cdrom", metavar="PATH", help="An ISO to install from (booted after the disks).")
@click.option("--os-variant", metavar="ID", help="libosinfo's id of the guest OS, recorded in "
              "the definition's metadata.")
@click.option("--virt-type", type=click.Choice(["kvm", "qemu"]), default="kvm", show_default=True,
              help="qemu: software emulation, where KVM is not available.")
@pass_app
def domain_new(opts, name, memory, vcpus, disks, networks, cdrom, os_variant, virt_type):
    """Make a new domain: conf/NAME.xml and its images in the pools.

    A fresh scan first; qemu-img runs on a node that sees the pool. Refused
    if NAME exists, an image is there already, or a disk belongs to another
    domain. The definition is written once its images exist.
    """
    from havirt.ops.making import domain_new as new
    from havirt.plan.making import NewRequest, absolute_path, parse_disk, parse_network
    req = NewRequest(name, memory, vcpus, [parse_disk(d) for d in disks],
                     [parse_network(n) for n in networks],
                     absolute_path("--cdrom", cdrom) if cdrom else None, os_variant, virt_type)
    opts.out.outcome(new(opts.app(), req))


@domain.command("clone", epilog="""\b
Examples: havirt domain clone web1 web4               # a full copy of web1's images
          havirt --yes domain clone base7 lab12 --linked""")
@click.argument("source", shell_complete=complete_domains)
@click.argument("name")
@click.option("--linked", is_flag=True, help="qcow2 overlays on SOURCE's images instead of "
              "copies: SOURCE then may not start nor lose its disks while NAME exists.")
@pass_app
def domain_clone(opts, source, name, linked):
    """Copy SOURCE as NAME: a new UUID and MAC addresses, each disk in a pool
    copied in full (qemu-img convert) or, --linked, an overlay on SOURCE's image.

    SOURCE must be shut off everywhere (a fresh scan). Disks outside the
    pools are refused; read-only and shareable ones are used by both.
    """
    from havirt.ops.making import domain_clone as clone
    opts.out.outcome(clone(opts.app(), source, name, linked))


@domain.command("delete", epilog="""\b
Examples: havirt domain delete web4                   # print what it would do
          havirt --yes domain delete web4 --disks""")
@click.argument("name")
@click.option("--disks", is_flag=True, help="Also remove its images in the pools.")
@pass_app
def domain_delete(opts, name, disks):
    """Undefine NAME (kept in conf/.history/NAME/) and, with --disks, remove
    its images in the pools.

    Refused while NAME runs anywhere or a node does not answer, and for an
    image another domain uses or reads as its backing file. Disks outside the
    pools (block devices) and read-only ones are never removed.
    """
    from havirt.ops.making import domain_delete as delete
    opts.out.outcome(delete(opts.app(), name, disks))
