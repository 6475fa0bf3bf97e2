"""havirt domain snapshot / backup: snapshots in the images, consistent copies."""

from __future__ import annotations

import click

from havirt.cli.complete import complete_domains
from havirt.cli.domain import SECONDS, domain
from havirt.cli.group import pass_app
from havirt.names import printable

ACTIONS = ("create", "list", "revert", "delete")


@domain.command("snapshot", epilog="""\b
Examples: havirt domain snapshot web1 list
          havirt --yes domain snapshot web1 create before-upgrade
          havirt --yes domain snapshot web1 revert before-upgrade    # web1 off everywhere
          havirt --yes domain snapshot web1 delete before-upgrade""")
@click.argument("name", shell_complete=complete_domains)
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("snapshot", required=False)
@pass_app
def domain_snapshot(opts, name, action, snapshot):
    """Snapshots of NAME: qcow2 internal snapshots named SNAPSHOT in every
    writable disk, kept in the image files (they survive the domain's end,
    moves, and another admin host).

    \b
    create  running: libvirt takes it on its node, every disk at once, with
            the guest's memory; off everywhere: qemu-img on a node that sees
            each image. Refused if a writable disk is not a qcow2 image.
    list    what qemu-img finds in the images now (no change).
    revert  the disks back to SNAPSHOT; NAME must be off everywhere.
    delete  remove SNAPSHOT from every disk that has it.

    A fresh scan of every node first; read-only disks are left out; conf/
    is never changed. Like every change, a dry run without --yes.
    """
    if action == "list":
        if snapshot:
            raise click.UsageError("list takes no SNAPSHOT")
        from havirt.ops.snapshots import snapshot_list
        from havirt.plan.snapshots import SNAPSHOT_COLUMNS
        rows, notes, findings = snapshot_list(opts.app(), name)
        if opts.out.fmt == "json":     # stdout holds the rows alone
            for f in findings:
                click.echo(printable(f"{f.severity.upper()} {f.kind} {f.subject}: {f.message}"), err=True)
        else:
            opts.out.findings(findings, err=True)
        for note in notes:
            opts.out.say(note)
        opts.out.emit(rows, SNAPSHOT_COLUMNS)
        return
    if not snapshot:
        raise click.UsageError(f"{action} needs the name of a SNAPSHOT")
    from havirt.ops.snapshots import snapshot_change
    opts.out.outcome(snapshot_change(opts.app(), name, action, snapshot))


@domain.command("backup", epilog="""\b
Examples: havirt domain backup web1 /srv/backup/2026-11-21
          havirt --yes domain backup web1 /srv/backup/2026-11-21 --as web1-restored
          havirt domain define web1-backup --file /srv/backup/2026-11-21/web1-backup.xml""")
@click.argument("name", shell_complete=complete_domains)
@click.argument("folder", metavar="DIR")
@click.option("--as", "copy", metavar="COPY", help="The copy's name (default: NAME-backup).")
@click.option("--timeout", type=SECONDS, default=3600, show_default=True,
              help="Seconds each copy may take; a running backup job is aborted then.")
@pass_app
def domain_backup(opts, name, folder, copy, timeout):
    """Copy every writable disk of NAME into DIR, a folder on the nodes
    (shared storage; it must exist and be writable there): COPY-N.qcow2, and
    COPY.xml, a definition of the copy with a new UUID and new MAC addresses.

    Running: libvirt's backup job on its node (a consistent copy, the guest
    keeps running), waited for in the same session. Off everywhere (a fresh
    scan): qemu-img convert on a node that sees DIR and the disks. Nothing is
    overwritten. `havirt domain define COPY --file DIR/COPY.xml` makes the
    copy a domain that can run beside NAME.
    """
    from havirt.ops.snapshots import domain_backup as backup
    opts.out.outcome(backup(opts.app(), name, folder, copy, timeout))
