"""havirt node ..."""

from __future__ import annotations

import time

import click

from havirt.cli.group import Whole, cli, pass_app
from havirt.errors import Reported
from havirt.parse import numbers


@cli.group(epilog="Example: havirt node list")
def node():
    """Nodes: add, set, list, scan, remove, maintenance."""


def _metrics_name(ctx, param, value):
    from havirt.store.config import metrics_name_ok
    if value is not None and not metrics_name_ok(value):
        raise click.BadParameter("the file must end in .prom (node_exporter's textfile collector "
                                 "reads no other)")
    return value


PORT = Whole(numbers.PORT, "a port number")
CAP = Whole(numbers.MEMORY_CAP_MIB, "a number of MiB", ("none",))


@node.command("add", epilog="Example: havirt node add node1 --address 10.0.0.11 --memory-cap 16384")
@click.argument("name")
@click.option("--address", help="Host name or IP address to SSH to (default: NAME).")
@click.option("--user", help="SSH user, where not the configured one.")
@click.option("--port", type=PORT, help="SSH port, where not the configured one.")
@click.option("--memory-cap", type=CAP, metavar="MIB", help="Most memory (MiB) domains may use on this node.")
@pass_app
def node_add(opts, name, address, user, port, memory_cap):
    """Probe NAME over SSH (one session) and record it."""
    from havirt.ops.nodes import node_add as add
    rec = add(opts.app(), name, address, user, port, None if memory_cap == "none" else memory_cap)
    opts.out.say(f"added {name}: {rec.address}, {rec.cpus} CPUs, {rec.memory_mib} MiB, "
                   f"libvirt {rec.libvirt_version}, hostname {rec.hostname}")


@node.command("set", epilog="Example: havirt node set node1 --memory-cap none")
@click.argument("name")
@click.option("--address")
@click.option("--user")
@click.option("--port", type=PORT)
@click.option("--memory-cap", type=CAP, metavar="MIB|none", help="Most memory (MiB) for domains; 'none' removes the cap.")
@pass_app
def node_set(opts, name, address, user, port, memory_cap):
    """Change what `node add` recorded."""
    from havirt.ops.nodes import node_set as set_
    changes = {k: v for k, v in (("address", address), ("user", user), ("port", port))
               if v is not None}   # an empty --address or --user is checked, never dropped
    if memory_cap is not None:
        changes["memory_cap_mib"] = None if memory_cap == "none" else memory_cap
    if not changes:
        raise click.UsageError("nothing to change: give --address, --user, --port or --memory-cap")
    set_(opts.app(), name, **changes)
    opts.out.say(f"{name}: " + ", ".join(f"{k}={v}" for k, v in changes.items()))


@node.command("list", epilog="Example: havirt -f json node list")
@pass_app
def node_list(opts):
    """The nodes as the state file knows them (no SSH)."""
    from havirt.ops.views import NODE_COLUMNS, node_rows
    app = opts.app()
    opts.out.emit(node_rows(app.state, app.cfg.reserve_mib), NODE_COLUMNS)


@node.command("scan", epilog="""\b
Example: havirt node scan
Cron:    */5 * * * * /opt/havirt/havirt.py node scan -q --recover
Metrics: havirt node scan -q --metrics /var/lib/prometheus/node-exporter/havirt.prom""")
@click.argument("names", nargs=-1)
@click.option("--recover", is_flag=True,
              help="Fail over nodes silent for recover.after scans (leases or fence guard only).")
@click.option("--metrics", "metrics_file", metavar="FILE", type=click.Path(dir_okay=False),
              callback=_metrics_name,
              help="Also write Prometheus metrics to FILE, for node_exporter's textfile "
                   "collector (default: metrics.textfile of config.yaml).")
@pass_app
def node_scan(opts, names, recover, metrics_file):
    """Ask every node (or NAMES) what runs there, in parallel; record it.

    Exit 1 when anything is wrong: a domain on two nodes, a node that did
    not answer, a running domain with no XML in conf/, a domain defined
    persistent or autostart on a node; or when the metrics file could not
    be written (the scan is recorded all the same).

    With --recover (or recover.enabled in config.yaml), a node that has not
    answered recover.after scans in a row has its domains restarted on the
    other nodes, as `node failover` would, but only where leases or a fence
    prove it cannot run them; what was recovered, and what was not, is
    printed (also with -q) so that cron mails it.
    """
    from havirt.ops.nodes import node_scan as scan
    from havirt.ops.views import NODE_COLUMNS, finding_rows, node_rows
    app = opts.app()
    out = opts.out
    began = time.monotonic()
    result = scan(app, names, recover=recover or app.cfg.recover_enabled)
    seconds, when, findings = time.monotonic() - began, time.time(), result.findings
    if not out.quiet:
        rows = [r for r in node_rows(app.state, app.cfg.reserve_mib) if not names or r["name"] in names]
        out.emit(rows, NODE_COLUMNS, doc={"nodes": rows, "anomalies": finding_rows(findings)}
                 if out.fmt == "json" else None)
    out.findings(findings, json_done=not out.quiet)
    if metrics_file or app.cfg.metrics_textfile:
        from havirt.ops.metrics import write_scan_metrics
        write_scan_metrics(metrics_file or app.cfg.metrics_textfile, app, result, seconds, when)
    if findings:
        raise Reported()


@node.command("remove", epilog="Example: havirt node remove node4")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove it even if it does not answer.")
@pass_app
def node_remove(opts, name, force):
    """Forget NAME; refused while domains run there."""
    from havirt.ops.nodes import node_remove as remove
    forgotten = remove(opts.app(), name, force)
    opts.out.say(f"removed {name}" + (f"; these domains were last seen there and may still "
                                       f"run: {', '.join(forgotten)} (starting them needs --force)"
                                       if forgotten else ""))


@node.command("maintenance", epilog="""\b
Examples: havirt node maintenance node2 on        # flag it, print the evacuation plan
          havirt --yes node maintenance node2 on  # flag it and move its domains away
          havirt node maintenance node2 off""")
@click.argument("name")
@click.argument("mode", type=click.Choice(["on", "off"]))
@click.option("--no-evacuate", is_flag=True, help="Only set the flag; move nothing.")
@pass_app
def node_maintenance(opts, name, mode, no_evacuate):
    """A node in maintenance never receives a domain; `on` moves its domains away.

    The flag is set at once (it only protects). The live migrations that
    empty the node are printed, and run with --yes.
    """
    from havirt.ops.nodes import node_maintenance
    outcome = node_maintenance(opts.app(), name, mode == "on", evacuate=not no_evacuate)
    if outcome is not None:
        opts.out.outcome(outcome)


@node.command("failover", epilog="""\b
Examples: havirt node failover node3                    # print the plan and its guard
          havirt --yes node failover node3
          havirt --yes node failover node3 --to node1 --to node2 --confirm-off""")
@click.argument("name")
@click.option("--to", "to", multiple=True, metavar="NODE", help="Only restart on these nodes.")
@click.option("--confirm-off", is_flag=True, help="You state that NAME is powered off.")
@pass_app
def node_failover(opts, name, to, confirm_off):
    """Restart the domains of NAME, a node that does not answer, on the others.

    Refused (exit 3, naming why) unless a guard proves they cannot run
    twice: leases in force on NAME at its last scan and on every receiving
    node, in the same lockspace; or NAME's fence command (config.yaml)
    powering it off and confirming it; or --confirm-off. The placement is
    checked as a whole (memory, vCPUs, disks, maintenance); each start is
    re-checked and verified by a fresh scan, the starts running at the same
    time (4 at most on one node). Exit 1 if any domain was not started.
    """
    from havirt.ops.failover import node_failover
    opts.out.outcome(node_failover(opts.app(), name, to, confirm_off))
