"""The havirt command line: parse options, call one core function, render."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from .. import __version__
from ..errors import EXIT_FAILURE, EXIT_USAGE, HavirtError
from .complete import attach, complete_domains, complete_nodes
from ..names import printable

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Options:
    """The global options; the App is built on first use (so --help costs nothing)."""

    def __init__(self, runner_factory=None, **kw):
        self.kw = kw
        self.runner_factory = runner_factory
        self._app = None
        self._out = None

    @property
    def out(self):
        """The console: formats, -q, -v; also the App's Reporter."""
        if self._out is None:
            from .output import Console
            self._out = Console(self.kw.get("fmt", "screen"), self.kw.get("quiet", False),
                                self.kw.get("verbose", False))
        return self._out

    def set(self, name, value) -> None:
        """A common option given after the module or action."""
        self.kw[name] = value
        if self._out is not None and hasattr(self._out, name):   # fmt, quiet, verbose
            setattr(self._out, name, value)

    def audit_failures(self) -> list[str]:
        app = self._app
        return app.audit.failures if app is not None and app._audit is not None else []

    def app(self):
        if self._app is None:
            from ..app import App
            from ..config import resolve_home
            from .complete import script_dir
            home = resolve_home(self.kw["home"], script_dir())
            config = Path(self.kw["config"]) if self.kw["config"] else None
            self._app = App.create(home, config, yes=self.kw["yes"], dryrun=self.kw["dryrun"],
                                   out=self.out, runner_factory=self.runner_factory)
        return self._app


pass_app = click.make_pass_decorator(Options)

# The options every command takes, before the module (`havirt -f json node list`)
# or after the action (`havirt node list -f json`): declared once, here.
COMMON_OPTIONS = (
    (("-y", "--yes"), dict(is_flag=True, help="Execute: without it, changes are only printed.")),
    (("--dryrun",), dict(is_flag=True, help="Only print, even where config.yaml says dryrun: false.")),
    (("-f", "--format", "fmt"), dict(type=click.Choice(["screen", "tsv", "json"]),
                                     help="Output format of listings (default: screen).")),
    (("-q", "--quiet"), dict(is_flag=True, help="Print only anomalies and errors (for cron).")),
    (("-v", "--verbose"), dict(is_flag=True, help="Say more (each node's scan time, ...).")),
    (("--debug",), dict(is_flag=True, help="Show the traceback of errors.")),
)


def common_options(f):
    """The common options of the top command, with their defaults."""
    for decls, kw in reversed(COMMON_OPTIONS):
        f = click.option(*decls, **kw, **({"default": "screen"} if "type" in kw else {}))(f)
    return f


def _given_here(ctx, param, value):
    """An option given after the module or action wins over the same given before."""
    opts = ctx.find_object(Options)
    if value and opts is not None:
        opts.set(param.name, value)


def _common_params(taken: set[str]) -> list[click.Option]:
    """The common options a command lacks; a spelling it uses itself (its own
    -f for --force) stays its own, the other spelling (--format) still works."""
    out = []
    for decls, kw in COMMON_OPTIONS:
        name = click.Option(decls, **kw).name
        free = [d for d in decls if d.startswith("-") and d not in taken]
        if free and name not in taken:
            out.append(click.Option([*free, name], expose_value=False, callback=_given_here, **kw))
    return out


class _Common:
    """Every command and group takes the common options (unless it has its own
    option of that name) and completes node and domain names by itself."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        taken = {p.name for p in self.params} | {o for p in self.params for o in p.opts}
        self.params.extend(_common_params(taken))
        attach(self.params)


class HavirtCommand(_Common, click.Command):
    pass


class HavirtGroup(_Common, click.Group):
    """`@group.command()` and `@group.group()` of it make havirt commands and groups."""

    command_class = HavirtCommand
    group_class = type


@click.group(cls=HavirtGroup, context_settings=CONTEXT, epilog="""\b
Examples:
  havirt node add node1 --address 10.0.0.11
  havirt node scan
  havirt domain start web1 node2          # prints what it would do
  havirt --yes domain start web1 node2    # does it
""")
@click.option("--home", metavar="DIR", help="Folder holding conf/, var/ and config.yaml "
              "(default: $HAVIRT_HOME, else the folder of havirt.py).")
@click.option("--config", metavar="FILE", help="Configuration file (default: HOME/config.yaml).")
@common_options
@click.version_option(__version__, "--version", prog_name="havirt")
@click.pass_context
def cli(ctx, **kw):
    """havirt: run KVM domains on a small cluster of nodes, never twice at once.

    Every change is printed as the exact commands it would run, unless --yes.
    """
    if isinstance(ctx.obj, Options):
        ctx.obj.kw.update(kw)
    else:
        ctx.obj = Options(**kw)


def load_commands() -> None:
    from . import cluster, domain, log, node  # noqa: F401  (they register themselves)


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


__all__ = ["cli", "main", "run", "pass_app", "complete_domains", "complete_nodes", "EXIT_USAGE"]
