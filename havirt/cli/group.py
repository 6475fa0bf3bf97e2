"""The top command `havirt`, its common options and the Options object every
command receives (the App is built on first use, so --help costs nothing).
The commands (cli/node.py, ...) register themselves on `cli`."""

from __future__ import annotations

import click

from havirt import __version__
from havirt.cli.complete import attach

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
            from havirt.cli.output import Console
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
            from havirt.cli.complete import script_dir
            from havirt.ops.app import App
            from havirt.store.home import resolve_config, resolve_home
            home = resolve_home(self.kw["home"], script_dir())
            config = resolve_config(self.kw["config"])
            self._app = App.create(home, config, yes=self.kw["yes"], dryrun=self.kw["dryrun"],
                                   out=self.out, runner_factory=self.runner_factory)
        return self._app


pass_app = click.make_pass_decorator(Options)


class Whole(click.ParamType):
    """A whole number in ASCII digits within its range (havirt/parse/numbers.py,
    the range the state and config.yaml use too), or one of `words`."""

    name = "integer"

    def __init__(self, rng, what: str, words: tuple[str, ...] = (), why: str = ""):
        self.rng, self.what, self.words, self.why = rng, what, words, why

    def convert(self, value, param, ctx):
        from havirt.parse.numbers import whole_in
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value)
        if text.lower() in self.words:
            return text.lower()
        number = whole_in(text, self.rng)
        if number is None:
            low = self.rng.low + 1 if self.rng.above else self.rng.low
            words = "".join(f", or '{w}'{self.why}" for w in self.words)
            shown = text if len(text) <= 24 else text[:20] + "..."
            self.fail(f"{self.what} from {low} to {self.rng.high}{words}, not {shown!r}", param, ctx)
        return number

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
