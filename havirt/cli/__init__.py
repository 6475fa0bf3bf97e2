"""The havirt command line: parse options, call one core function, render."""

from __future__ import annotations

import os
import sys
import traceback

import click

from havirt.cli.complete import complete_domains, complete_nodes
from havirt.cli.group import COMMON_OPTIONS, Options, cli, pass_app
from havirt.errors import EXIT_FAILURE, EXIT_USAGE, HavirtError, Reported
from havirt.names import printable


def load_commands() -> None:
    from havirt.cli import changing, cluster, domain, image, log, making, node, snapshots, store  # noqa: F401  (they register themselves)


def run(args, runner_factory=None) -> int:
    """Run one havirt command line; return its exit code (errors printed)."""
    load_commands()
    debug = "--debug" in args
    opts = Options(runner_factory=runner_factory, home=None, config=None)
    try:
        rc = cli.main(args=list(args), prog_name="havirt", standalone_mode=False, obj=opts)
    except click.exceptions.Exit as e:
        rc = e.exit_code
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx else "havirt"
        click.echo(printable(f"havirt: {e.format_message()} (see: {where} --help)"), err=True)
        rc = e.exit_code
    except click.ClickException as e:
        click.echo(printable(f"havirt: {e.format_message()}"), err=True)
        rc = e.exit_code
    except click.Abort:
        click.echo("havirt: aborted", err=True)
        rc = EXIT_FAILURE
    except Reported as e:     # already said
        rc = e.exit_code
    except HavirtError as e:
        if debug:
            traceback.print_exc()
        click.echo(printable(f"havirt: {e}"), err=True)   # one line, whatever the error
        rc = e.exit_code
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else EXIT_FAILURE
    except KeyboardInterrupt:
        click.echo("havirt: interrupted", err=True)
        rc = 130
    except BrokenPipeError:
        rc = EXIT_FAILURE
    except Exception as e:  # a bug, not the user's fault: say so plainly
        if debug:
            traceback.print_exc()
        click.echo(printable(f"havirt: internal error: {type(e).__name__}: {e} (run with --debug)"),
                   err=True)
        rc = EXIT_FAILURE
    rc = rc if isinstance(rc, int) else 0
    failures = opts.audit_failures()
    if failures:
        # what was done was verified and recorded before this is said
        click.echo(f"havirt: could not write {len(failures)} entr{'y' if len(failures) == 1 else 'ies'} "
                   f"of the audit log: {failures[0]}", err=True)
        rc = rc or EXIT_FAILURE
    return rc


def main() -> None:
    rc = run(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    import threading
    if threading.active_count() > 1:
        # paramiko may leave a transport thread behind a hung node: never wait on it.
        os._exit(rc)
    sys.exit(rc)


__all__ = ["COMMON_OPTIONS", "cli", "main", "run", "pass_app", "complete_domains", "complete_nodes",
           "EXIT_USAGE"]
