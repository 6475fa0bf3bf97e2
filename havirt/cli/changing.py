"""havirt domain set / attach-disk / detach-disk / attach-nic / detach-nic /
resize-disk: changing a domain in place."""

from __future__ import annotations

import click

from havirt.cli.complete import complete_domains
from havirt.cli.domain import SECONDS, domain
from havirt.cli.group import pass_app
from havirt.parse.numbers import DOMAIN_MEMORY_MIB, DOMAIN_VCPUS

TIMEOUT_HELP = ("Seconds the guest has to {what} (it runs in its own time; libvirt only asks). "
                "Default 20.")


@domain.command("set", epilog="""\b
Examples: havirt domain set web1 --memory 1024          # print what it would do
          havirt --yes domain set web1 --memory 1024 --vcpus 2
          havirt --yes domain set web1 --memory 8192      # above its maximum: at its next start""")
@click.argument("name", shell_complete=complete_domains)
@click.option("--memory", type=click.IntRange(DOMAIN_MEMORY_MIB.low, DOMAIN_MEMORY_MIB.high), metavar="MIB",
              help="Its memory in MiB (the balloon's target; currentMemory in conf/).")
@click.option("--vcpus", type=click.IntRange(DOMAIN_VCPUS.low, DOMAIN_VCPUS.high), metavar="N",
              help="Its vCPUs (<vcpu current=N> in conf/).")
@click.option("--timeout", "wait", type=SECONDS, default=20, metavar="SECONDS",
              help=TIMEOUT_HELP.format(what="follow the balloon"))
@pass_app
def domain_set(opts, name, memory, vcpus, wait):
    """Change NAME's memory and vCPUs, live where it runs and in conf/.

    A running domain changes at once up to the maximum it started with
    (virsh setmem/setvcpus --live), growth checked on its node like a
    start; above it, conf/ gets the new maximum and NAME takes it at its
    next start (said, and shown as drift until then). A domain off on every
    node changes in conf/ only. Refused while a node does not answer.
    """
    from havirt.ops.changing import domain_set as change
    opts.out.outcome(change(opts.app(), name, memory, vcpus, wait))


@domain.command("attach-disk", epilog="""\b
Examples: havirt domain attach-disk web1 --disk size=20            # a new image in the pool
          havirt --yes domain attach-disk web1 --disk path=/dev/disk/by-id/lun7 --target vdc""")
@click.argument("name", shell_complete=complete_domains)
@click.option("--disk", "disk", required=True, metavar="size=GIB[,pool=POOL]|path=PATH",
              help="A new qcow2 image NAME-N.qcow2 in POOL (the only pool by default), or a file "
                   "or block device used as it is.")
@click.option("--target", metavar="DEV", help="Its name in the guest's definition: vdb, vdc, ... "
              "(default: the first free vdX).")
@pass_app
def domain_attach_disk(opts, name, disk, target):
    """Attach a disk to NAME: live where it runs (virsh attach-device) and in conf/.

    The node where NAME runs must see the disk; the nodes that do not are
    named (NAME could not start or migrate there). A disk of another domain
    is refused. Off on every node: conf/ only.
    """
    from havirt.ops.changing import attach_disk
    from havirt.plan.making import parse_disk
    opts.out.outcome(attach_disk(opts.app(), name, parse_disk(disk), target))


@domain.command("detach-disk", epilog="""\b
Examples: havirt domain detach-disk web1 vdb
          havirt --yes domain detach-disk web1 vdb --timeout 60""")
@click.argument("name", shell_complete=complete_domains)
@click.argument("target")
@click.option("--timeout", "wait", type=SECONDS, default=20, metavar="SECONDS",
              help=TIMEOUT_HELP.format(what="let go of the disk"))
@pass_app
def domain_detach_disk(opts, name, target, wait):
    """Detach the disk TARGET (vdb, ...) from NAME: live and from conf/.

    A guest that has not let go of it within --timeout is said (exit 1), and
    conf/ keeps the disk while it is attached. The image itself is kept.
    """
    from havirt.ops.changing import detach_disk
    opts.out.outcome(detach_disk(opts.app(), name, target, wait))


@domain.command("attach-nic", epilog="""\b
Examples: havirt domain attach-nic web1 --network bridge=br0
          havirt --yes domain attach-nic web1 --network network=default""")
@click.argument("name", shell_complete=complete_domains)
@click.option("--network", required=True, metavar="bridge=BR|network=NET",
              help="A virtio network card on a bridge or a libvirt network, with a new MAC address.")
@pass_app
def domain_attach_nic(opts, name, network):
    """Attach a network card to NAME: live where it runs and in conf/."""
    from havirt.ops.changing import attach_nic
    from havirt.plan.making import parse_network
    opts.out.outcome(attach_nic(opts.app(), name, parse_network(network)))


@domain.command("detach-nic", epilog="""\b
Examples: havirt domain detach-nic web1 52:54:00:12:34:56
          havirt --yes domain detach-nic web1 52:54:00:12:34:56 --timeout 60""")
@click.argument("name", shell_complete=complete_domains)
@click.argument("mac")
@click.option("--timeout", "wait", type=SECONDS, default=20, metavar="SECONDS",
              help=TIMEOUT_HELP.format(what="let go of the card"))
@pass_app
def domain_detach_nic(opts, name, mac, wait):
    """Detach the network card with the address MAC from NAME: live and from conf/.

    A guest that has not let go of it within --timeout is said (exit 1), and
    conf/ keeps the card while it is attached.
    """
    from havirt.ops.changing import detach_nic
    opts.out.outcome(detach_nic(opts.app(), name, mac, wait))


@domain.command("resize-disk", epilog="""\b
Examples: havirt domain resize-disk web1 vdb 40
          havirt --yes domain resize-disk web1 vda 25.5""")
@click.argument("name", shell_complete=complete_domains)
@click.argument("target")
@click.argument("size_gib", metavar="SIZE_GIB")
@pass_app
def domain_resize_disk(opts, name, target, size_gib):
    """Grow the disk TARGET of NAME to SIZE_GIB: virsh blockresize where NAME
    runs, else qemu-img resize on a node that sees it.

    Grows only: a size not larger than the current one is refused, and so
    are block devices and read-only or shareable disks. conf/ is unchanged
    (the size is the image's).
    """
    from havirt.ops.changing import resize_disk
    from havirt.plan.making import gib_to_mib
    opts.out.outcome(resize_disk(opts.app(), name, target, gib_to_mib(size_gib, "SIZE_GIB ")))
