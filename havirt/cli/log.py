"""havirt log"""

from __future__ import annotations

import click

from havirt.cli.group import cli, pass_app

LOG_COLUMNS = [("time", "time"), ("user", "user"), ("node", "node"), ("remote", "remote command"),
               ("exit_code", "exit"), ("duration", "seconds"), ("outcome", "outcome")]


@cli.command("log", epilog="Example: havirt log --tail 20")
@click.option("--tail", type=click.IntRange(1), default=50, show_default=True, metavar="N",
              help="The last N entries.")
@pass_app
def log(opts, tail):
    """The audit log: every executed step (never dry runs), newest last."""
    app = opts.app()
    entries = [entry if entry is not None else {"outcome": f"(unreadable {where})"}
               for where, entry in app.store.audit_entries(tail)]
    app.said_source()
    opts.out.emit(entries, LOG_COLUMNS)
    for line in filter(None, app.store.kept().split("\n")):   # entries etcd did not take (yet)
        opts.out.warn(line)
