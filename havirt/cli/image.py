"""havirt image ..."""

from __future__ import annotations

import click

from havirt.cli.group import cli, pass_app
from havirt.names import printable


@cli.group(epilog="Example: havirt image list -f json")
def image():
    """Disk images in the pools: list."""


@image.command("list", epilog="""\b
Examples: havirt image list
          havirt -f json image list""")
@pass_app
def image_list(opts):
    """Every image in the pools: format, virtual size, backing file, the conf/
    domains that use it (or read it as a backing file); orphans marked.

    qemu-img reads them on a node that sees each pool (a fresh scan chooses it).
    """
    from havirt.ops.images import IMAGE_COLUMNS
    from havirt.ops.images import image_list as images
    rows, findings = images(opts.app())
    if opts.out.fmt == "json":
        for f in findings:
            click.echo(printable(f"{f.severity.upper()} {f.kind} {f.subject}: {f.message}"), err=True)
    else:
        opts.out.findings(findings, err=True)
    opts.out.emit(rows, IMAGE_COLUMNS)
