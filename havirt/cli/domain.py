"""havirt domain ..."""

from __future__ import annotations

import click

from ..names import printable
from . import cli, pass_app


@cli.group(epilog="Example: havirt domain list --running")
def domain():
    """Domains: list, import, start, shutdown, destroy, migrate, maintenance."""


@domain.command("list", epilog="Example: havirt domain list --node node2 --running")
@click.option("--node", help="Only domains on this node.")
@click.option("--running", "running", flag_value=True, default=None, help="Only running ones.")
@click.option("--stopped", "running", flag_value=False, help="Only stopped ones.")
@pass_app
def domain_list(opts, node, running):
    """Every domain of conf/ plus any seen running without XML (no SSH)."""
    from ..views import DOMAIN_COLUMNS, domain_rows
    app = opts.app()
    if node:
        app.state.node(node)
    specs, problems = app.conf.load_all()   # a bad file is listed and flagged, never fatal
    listed = {**specs, **{n: msg for n, (_, msg) in problems.items()}}
    opts.out.emit(domain_rows(app.state, listed, node, running), DOMAIN_COLUMNS)
    for _, problem in sorted(problems.values()):
        click.echo(printable(f"havirt: warning: {problem}"), err=True)


@domain.command("import", epilog="""\b
Examples: havirt domain import web1 db1 --from node1
          havirt domain import --all --from node1""")
@click.argument("names", nargs=-1)
@click.option("--from", "node", required=True, metavar="NODE", help="Node to read the XML from.")
@click.option("--all", "all_", is_flag=True, help="Every domain defined or running on NODE.")
@click.option("--force", is_flag=True, help="Overwrite a conf/ file that differs.")
@pass_app
def domain_import(opts, names, node, all_, force):
    """Save `virsh dumpxml --inactive` of domains on NODE as conf/NAME.xml."""
    from ..actions import domain_import as do_import
    if bool(names) == all_:
        raise click.UsageError("name the domains, or give --all")
    saved, skipped = do_import(opts.app(), names, node, all_, force)
    for path in saved:
        opts.out.say(f"saved {path}")
    for why in skipped:
        click.echo(printable(f"havirt: warning: skipped {why}"), err=True)


@domain.command("start", epilog="""\b
Examples: havirt domain start web1 node2          # print the plan
          havirt --yes domain start web1 node2    # start it""")
@click.argument("name")
@click.argument("node", required=False)
@click.option("--force", is_flag=True, help="Go on even if some node did not answer.")
@pass_app
def domain_start(opts, name, node, force):
    """Start NAME on NODE (default: this host) from conf/NAME.xml.

    A fresh scan of every node comes first. Refused if NAME runs, is paused
    or arriving anywhere; if a node did not answer (unless --force); if NODE
    or NAME is in maintenance; if NODE lacks memory or vCPUs; if a disk of
    NAME does not exist on NODE.
    """
    from ..actions import domain_start as start
    app = opts.app()
    opts.out.outcome(start(app, name, node, force))


@domain.command("shutdown", epilog="Example: havirt --yes domain shutdown web1 --wait 120 --force")
@click.argument("name")
@click.option("--wait", type=click.IntRange(1, 86400), metavar="SECONDS",
              help="Wait until it is off, at most SECONDS.")
@click.option("--force", is_flag=True, help="With --wait: power it off when the wait runs out.")
@pass_app
def domain_shutdown(opts, name, wait, force):
    """Ask NAME to shut down (ACPI), where it runs."""
    from ..actions import domain_stop
    if force and not wait:
        raise click.UsageError("--force needs --wait SECONDS")
    opts.out.outcome(domain_stop(opts.app(), name, "shutdown", wait, force))


@domain.command("destroy", epilog="Example: havirt --yes domain destroy web1")
@click.argument("name")
@pass_app
def domain_destroy(opts, name):
    """Power NAME off at once (like pulling the plug)."""
    from ..actions import domain_stop
    opts.out.outcome(domain_stop(opts.app(), name, "destroy"))


@domain.command("migrate", epilog="""\b
Examples: havirt domain migrate web1 node3          # print the command
          havirt --yes domain migrate web1          # to the best node
          havirt --yes domain migrate web1 node3 --offline""")
@click.argument("name")
@click.argument("target", required=False)
@click.option("--offline", is_flag=True, help="Shut down, then start on TARGET from conf/.")
@click.option("--timeout", type=click.IntRange(1, 86400), metavar="SECONDS",
              help="Give up after SECONDS (default: migrate.timeout).")
@pass_app
def domain_migrate(opts, name, target, offline, timeout):
    """Live-migrate NAME to TARGET (default: the node with most free memory after)."""
    from ..actions import domain_migrate as migrate
    opts.out.outcome(migrate(opts.app(), name, target, offline, timeout))


@domain.command("maintenance", epilog="Example: havirt domain maintenance web1 on")
@click.argument("name")
@click.argument("mode", type=click.Choice(["on", "off"]))
@pass_app
def domain_maintenance(opts, name, mode):
    """A domain in maintenance cannot be started and is never moved by balance
    or evacuation."""
    from ..actions import set_maintenance
    app = opts.app()
    with app.lock():
        set_maintenance(app, "domain", name, mode == "on")
    opts.out.say(f"domain {name}: maintenance {mode}")
