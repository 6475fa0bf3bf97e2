"""havirt log"""

from __future__ import annotations

import json

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
    from havirt.errors import HomeError
    from havirt.store.files import MAX_LOG, read_file
    app = opts.app()
    path = app.home.audit_file
    entries = []
    try:
        lines = read_file(path, MAX_LOG).split(b"\n")
    except FileNotFoundError:
        lines = []
    except OSError as e:
        raise HomeError(f"{path}: cannot read the audit log: {e.strerror or e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)   # bytes: UTF-8 expected, anything else is unreadable
        except ValueError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else {"outcome": f"(unreadable line {n})"})
    opts.out.emit(entries[-tail:], LOG_COLUMNS)
