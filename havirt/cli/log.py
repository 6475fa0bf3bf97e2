"""havirt log"""

from __future__ import annotations

import json

import click

from . import cli, pass_app

LOG_COLUMNS = [("time", "time"), ("user", "user"), ("node", "node"), ("remote", "remote command"),
               ("exit_code", "exit"), ("duration", "seconds"), ("outcome", "outcome")]


@cli.command("log", epilog="Example: havirt log --tail 20")
@click.option("--tail", type=click.IntRange(1), default=50, show_default=True, metavar="N",
              help="The last N entries.")
@pass_app
def log(opts, tail):
    """The audit log: every executed step (never dry runs), newest last."""
    app = opts.app()
    entries = []
    try:
        with open(app.home.audit_file) as f:
            lines = f.readlines()
    except FileNotFoundError:
        lines = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else {"outcome": f"(unreadable line {n})"})
    opts.out.emit(entries[-tail:], LOG_COLUMNS)
