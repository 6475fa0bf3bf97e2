"""havirt domain ..."""

from __future__ import annotations

import click

from havirt.cli.group import Whole, cli, pass_app
from havirt.names import printable
from havirt.parse import numbers

SECONDS = Whole(numbers.SECONDS, "a number of seconds")


@cli.group(epilog="Example: havirt domain list --running")
def domain():
    """Domains: list, info, new, clone, delete, import, define, edit, undefine,
    start, shutdown, destroy, reboot, reset, console, migrate, maintenance,
    set, attach-disk, detach-disk, attach-nic, detach-nic, resize-disk, snapshot, backup."""


@domain.command("list", epilog="Example: havirt domain list --node node2 --running")
@click.option("--node", help="Only domains on this node.")
@click.option("--running", "running", flag_value=True, default=None, help="Only running ones.")
@click.option("--stopped", "running", flag_value=False, help="Only stopped ones.")
@pass_app
def domain_list(opts, node, running):
    """Every domain of conf/ plus any seen running without XML (no SSH)."""
    from havirt.ops.views import DOMAIN_COLUMNS, domain_rows
    app = opts.app()
    if node:
        app.state.node(node)
    specs, problems = app.conf.load_all()   # a bad file is listed and flagged, never fatal
    listed = {**specs, **{n: msg for n, (_, msg) in problems.items()}}
    opts.out.emit(domain_rows(app.state, listed, node, running), DOMAIN_COLUMNS)
    for _, problem in sorted(problems.values()):
        click.echo(printable(f"havirt: warning: {problem}"), err=True)


@domain.command("info", epilog="""\b
Examples: havirt domain info web1
          havirt -f json domain info web1""")
@click.argument("name")
@pass_app
def domain_info(opts, name):
    """Where NAME runs, its state, memory and vCPUs (running and in conf/),
    disks (and whether every node sees them), interfaces, display, console,
    maintenance, last seen, and how the running definition differs from conf/.

    From a fresh scan of every node (one session each), recorded in the
    state; the running definition is read in that same session.
    """
    import json

    from havirt.cli.render import render
    from havirt.ops.info import domain_info as info
    from havirt.ops.info import info_rows
    from havirt.ops.views import finding_rows
    out = opts.out
    doc, findings = info(opts.app(), name)
    if out.fmt == "json":
        click.echo(json.dumps({**doc, "anomalies": finding_rows(findings)}, indent=2))
        return
    out.findings(findings, err=True)
    rows = info_rows(doc)
    if out.fmt == "tsv":
        click.echo(render("tsv", rows, [("field", "field"), ("value", "value")]))
        return
    width = max(len(r["field"]) for r in rows)
    for r in rows:
        click.echo(f"{r['field']:<{width}}  {r['value']}")


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
    from havirt.ops.domains import domain_import as do_import
    if bool(names) == all_:
        raise click.UsageError("name the domains, or give --all")
    saved, skipped, same = do_import(opts.app(), names, node, all_, force)
    for path in saved:
        opts.out.say(f"saved {path}")
    for path in same:
        opts.out.say(f"unchanged {path} (it holds that definition already)")
    for why in skipped:
        click.echo(printable(f"havirt: warning: skipped {why}"), err=True)


def _show_change(opts, change) -> None:
    """What edit, define or undefine did, in the chosen format."""
    import json
    out = opts.out
    if out.fmt == "json":
        from havirt.ops.views import finding_rows
        click.echo(json.dumps({**change.as_dict(), "anomalies": finding_rows(change.findings)},
                              indent=2))
        return
    out.findings(change.findings, err=True)
    for line in change.diff:
        click.echo(line)
    if not change.changed:
        out.say(f"{change.file} unchanged: nothing written")
    elif change.action == "undefine":
        out.say(f"removed {change.file} (kept as {change.kept})")
    else:
        out.say(f"saved {change.file}" + (f" (the previous version is in {change.kept})"
                                          if change.kept else ""))
    if change.changed and change.running_on:
        out.say(f"{change.name} runs on {change.running_on} (last scan) and keeps its running "
                "definition until its next start"
                + (": it now differs from conf/ in " + "; ".join(change.drift)
                   if change.drift else ""))


@domain.command("edit", epilog="""\b
Examples: havirt domain edit web1
          EDITOR=nano havirt domain edit web1""")
@click.argument("name")
@pass_app
def domain_edit(opts, name):
    """Edit conf/NAME.xml in $VISUAL or $EDITOR (on a copy).

    The result must pass the rules of every conf/ file (XML, a <domain>
    whose <name> is NAME, memory and vCPUs readable); then the change is
    shown, conf/NAME.xml replaced and the previous version kept in
    conf/.history/NAME/. A broken edit leaves conf/NAME.xml as it was: in a
    terminal havirt offers to edit again, otherwise it exits 2 with the
    reason. A running domain picks the change up at its next start.
    """
    import sys

    from havirt.ops.definitions import edit

    def again(reason):
        if not sys.stdin.isatty():
            return False
        click.echo(f"havirt: {reason}", err=True)
        return click.confirm("Edit again?", default=True, err=True)
    _show_change(opts, edit(opts.app(), name, again=again))


@domain.command("define", epilog="""\b
Examples: havirt domain define web2 --file /tmp/web2.xml
          havirt domain define web1 --file conf/.history/web1/20260101T120000Z-edit.xml --force""")
@click.argument("name")
@click.option("--file", "source", required=True, metavar="FILE", help="The domain XML to use.")
@click.option("--force", is_flag=True, help="Replace a conf/NAME.xml that differs (kept in the history).")
@pass_app
def domain_define(opts, name, source, force):
    """Add conf/NAME.xml from FILE, or replace it (--force).

    FILE must pass the rules of every conf/ file, its <name> being NAME. A
    replaced version is kept in conf/.history/NAME/. Nothing is started or
    changed on a node.
    """
    from havirt.ops.definitions import define
    _show_change(opts, define(opts.app(), name, source, force))


@domain.command("undefine", epilog="Example: havirt domain undefine web1")
@click.argument("name")
@click.option("--force", is_flag=True, help="Go on even if some node did not answer.")
@pass_app
def domain_undefine(opts, name, force):
    """Remove conf/NAME.xml (moved into conf/.history/NAME/).

    Refused while NAME runs, is paused or arrives anywhere, by a fresh scan
    of every node, and while a node does not answer (unless --force).
    """
    from havirt.ops.definitions import undefine
    _show_change(opts, undefine(opts.app(), name, force))


@domain.command("start", epilog="""\b
Examples: havirt domain start web1 node2          # print the plan
          havirt --yes domain start web1 node2    # start it
          havirt --yes domain start web3 node2 --cdrom /srv/iso/debian-12.iso""")
@click.argument("name")
@click.argument("node", required=False)
@click.option("--force", is_flag=True, help="Go on even if some node did not answer.")
@click.option("--cdrom", metavar="PATH", help="Start this once with the ISO PATH attached, "
              "first to boot (conf/ is not changed).")
@pass_app
def domain_start(opts, name, node, force, cdrom):
    """Start NAME on NODE (default: this host) from conf/NAME.xml.

    A fresh scan of every node comes first. Refused if NAME runs, is paused
    or arriving anywhere; if a node did not answer (unless --force); if NODE
    or NAME is in maintenance; if NODE lacks memory or vCPUs; if a disk of
    NAME (or the --cdrom ISO) does not exist on NODE; if a disk of NAME
    belongs to another domain, or NAME is the base of a linked clone.
    """
    from havirt.ops.domains import domain_start as start
    app = opts.app()
    opts.out.outcome(start(app, name, node, force, cdrom))


@domain.command("shutdown", epilog="Example: havirt --yes domain shutdown web1 --wait 120 --force")
@click.argument("name")
@click.option("--wait", type=SECONDS, metavar="SECONDS",
              help="Wait until it is off, at most SECONDS.")
@click.option("--force", is_flag=True, help="With --wait: power it off when the wait runs out.")
@pass_app
def domain_shutdown(opts, name, wait, force):
    """Ask NAME to shut down (ACPI), where it runs."""
    from havirt.ops.domains import domain_stop
    if force and not wait:
        raise click.UsageError("--force needs --wait SECONDS")
    opts.out.outcome(domain_stop(opts.app(), name, "shutdown", wait, force))


@domain.command("destroy", epilog="Example: havirt --yes domain destroy web1")
@click.argument("name")
@pass_app
def domain_destroy(opts, name):
    """Power NAME off at once (like pulling the plug)."""
    from havirt.ops.domains import domain_stop
    opts.out.outcome(domain_stop(opts.app(), name, "destroy"))


@domain.command("reboot", epilog="""\b
Examples: havirt domain reboot web1           # print the command
          havirt --yes domain reboot web1""")
@click.argument("name")
@pass_app
def domain_reboot(opts, name):
    """Ask NAME to reboot (ACPI, like virsh reboot), on the node where it runs.

    Refused unless NAME is running (not paused, not arriving by migration).
    The guest decides how and when; see domain reset for a hard reset.
    """
    from havirt.ops.domains import domain_reboot as reboot
    opts.out.outcome(reboot(opts.app(), name))


@domain.command("reset", epilog="Example: havirt --yes domain reset web1")
@click.argument("name")
@pass_app
def domain_reset(opts, name):
    """Reset NAME at once (like its reset button; the guest is not asked), on
    the node where it runs. Refused unless NAME is running."""
    from havirt.ops.domains import domain_reboot as reboot
    opts.out.outcome(reboot(opts.app(), name, hard=True))


@domain.command("console", epilog="""\b
Example: havirt domain console web1     # leave with Ctrl-]""")
@click.argument("name")
@pass_app
def domain_console(opts, name):
    """Attach this terminal to NAME's console, on the node where it runs.

    A fresh scan finds the node; then `ssh -t NODE virsh console NAME` runs
    in this terminal, with the SSH settings havirt's scans use. Leave with
    Ctrl-] (virsh's escape key; ssh's own ~ escape is off). Needs a terminal.
    """
    import sys

    from havirt.errors import UsageError
    from havirt.ops.console import ESCAPE_KEY, attach, console_session
    if not sys.stdin.isatty():
        raise UsageError("domain console needs a terminal (stdin is not one)")
    node, argv, ssh = console_session(opts.app(), name)
    opts.out.say(f"{name} runs on {node}: its console follows (virsh console over ssh); "
                 f"leave with {ESCAPE_KEY}")
    attach(node, argv, ssh)


@domain.command("migrate", epilog="""\b
Examples: havirt domain migrate web1 node3          # print the command
          havirt --yes domain migrate web1          # to the best node
          havirt --yes domain migrate web1 node3 --offline""")
@click.argument("name")
@click.argument("target", required=False)
@click.option("--offline", is_flag=True, help="Shut down, then start on TARGET from conf/.")
@click.option("--timeout", type=SECONDS, metavar="SECONDS",
              help="Give up after SECONDS (default: migrate.timeout).")
@pass_app
def domain_migrate(opts, name, target, offline, timeout):
    """Live-migrate NAME to TARGET (default: the node with most free memory after).

    A container cannot move live: it needs --offline (stopped, then started on TARGET)."""
    from havirt.ops.domains import domain_migrate as migrate
    opts.out.outcome(migrate(opts.app(), name, target, offline, timeout))


@domain.command("maintenance", epilog="Example: havirt domain maintenance web1 on")
@click.argument("name")
@click.argument("mode", type=click.Choice(["on", "off"]))
@pass_app
def domain_maintenance(opts, name, mode):
    """A domain in maintenance cannot be started and is never moved by balance
    or evacuation."""
    from havirt.ops.nodes import domain_maintenance as set_maintenance
    set_maintenance(opts.app(), name, mode == "on")
    opts.out.say(f"domain {name}: maintenance {mode}")
