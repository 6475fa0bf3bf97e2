"""havirt store ..."""

from __future__ import annotations

import click

from havirt.cli.group import cli, pass_app


@cli.group(epilog="Example: havirt store migrate --to etcd")
def store():
    """Where the home keeps its facts: migrate."""


@store.command("migrate", epilog="""Examples:
          havirt store migrate --to etcd          # what would move, and where
          havirt --yes store migrate --to etcd    # then set store.backend: etcd
          havirt --yes store migrate --to files   # back into this home's files""")
@click.option("--to", "to", type=click.Choice(["etcd", "files"]), required=True,
              help="The store to move the facts into.")
@pass_app
def store_migrate(opts, to):
    """Move the home's facts (the state, conf/ with its history, the audit
    log) into the other store: from the home's files into etcd (store.endpoints,
    store.prefix of config.yaml), or from etcd into the home's files. Both
    stores are locked meanwhile; the target must hold nothing yet. The copy is
    read back and compared (one that fails part way, or differs, is taken out
    of the target again); only then is the source cleared (files are moved
    into var/moved-STAMP/, never removed; etcd's keys under the prefix are
    deleted). config.yaml is never edited: set store.backend afterwards, in
    every home that uses the store. A dry run unless --yes."""
    from havirt.ops.storemove import migrate
    opts.out.outcome(migrate(opts.app(), to))
