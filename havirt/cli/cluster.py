"""havirt cluster ..."""

from __future__ import annotations

import math

import click

from havirt.cli.group import Whole, cli, pass_app
from havirt.errors import Reported
from havirt.parse import numbers


@cli.group(epilog="Example: havirt cluster status")
def cluster():
    """The whole cluster: status, balance, validate."""


@cluster.command("status", epilog="Example: havirt -f json cluster status --no-scan")
@click.option("--no-scan", is_flag=True, help="Show the state file as it is (no SSH).")
@pass_app
def cluster_status(opts, no_scan):
    """Per node: CPUs, vCPUs and their ratio, memory, domains, leases, and
    whether the cluster survives its loss (N+1: its running domains
    restarted on the others as failover would place them); totals; the
    imbalance score (see cluster balance)."""
    from havirt.ops.status import STATUS_COLUMNS, n_plus_1_lines
    from havirt.ops.status import cluster_status as status
    out = opts.out
    rows, totals, score, n1, findings = status(opts.app(), no_scan)
    from havirt.ops.views import finding_rows
    out.emit(rows + [totals], STATUS_COLUMNS,
             doc={"nodes": rows, "totals": totals, "score": score, "n_plus_1": n1,
                  "anomalies": finding_rows(findings)} if out.fmt == "json" else None)
    if out.fmt == "screen":
        out.say(f"imbalance score: {'-' if score is None else f'{score:.4f}'}")
        for line in n_plus_1_lines(n1):
            out.say(line)
    out.findings(findings, json_done=True)


def _finite(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("a number of 0 or more")
    return value


@cluster.command("balance", epilog="""\b
Examples: havirt cluster balance                 # print the plan
          havirt --yes cluster balance --max-moves 5
          havirt cluster balance --min-gain 0 --max-moves none   # as far as it goes
          havirt --home /tmp/whatif cluster balance --no-scan""")
@click.option("--max-moves", metavar="N|none", type=Whole(numbers.MOVES, "a number of moves", ("none",),
                                                         " for no limit"),
              help="At most N migrations; none: no limit (default: balance.max_moves).")
@click.option("--min-gain", type=click.FloatRange(numbers.MIN_GAIN.low, numbers.MIN_GAIN.high), metavar="G",
              callback=_finite,
              help="Least gain of a migration, times the number of nodes (default: balance.min_gain).")
@click.option("--no-n-plus-1", "n_plus_1", flag_value=False, default=None,
              help="Allow moves that leave the loss of some node unsurvivable.")
@click.option("--no-scan", is_flag=True,
              help="Plan from the state file as it is (what-if); never executes.")
@pass_app
def cluster_balance(opts, max_moves, min_gain, n_plus_1, no_scan):
    """Plan live migrations that even out memory (and vCPU) use across the
    nodes that are up and not in maintenance, never breaking a limit.

    Score = pstdev of each node's free memory fraction + 0.5 x pstdev of
    vCPU ratios (the weights 1 and 0.5: balance.weights in config.yaml;
    vcpu: 1 gives Ganeti hbal's score). A migration is planned only if it
    lowers the score by at least min_gain divided by the number of nodes
    (an exchange of two domains: both migrations together, by twice that),
    so one value suits a cluster of any size. Unless --no-n-plus-1, no move makes the loss of
    some node unsurvivable (N+1), and moves that make it survivable again
    come first. The first moves are the most useful: stopping after any
    of them leaves the cluster as balanced as the planner makes it in that
    many moves. Of two moves whose gains are within 2 %, the one that copies
    less memory comes first.
    """
    from havirt.ops.moves import balance
    opts.out.outcome(balance(opts.app(), no_scan, max_moves, min_gain, n_plus_1))


@cluster.command("validate", epilog="Example: havirt cluster validate")
@pass_app
def cluster_validate(opts):
    """A read-only consistency report; exit 1 when anything is wrong."""
    from havirt.ops.validate import validate
    from havirt.ops.views import FINDING_COLUMNS, finding_rows
    out = opts.out
    findings = validate(opts.app())
    rows = finding_rows(findings)
    if findings or out.fmt != "screen":
        out.emit(rows, FINDING_COLUMNS, doc={"findings": rows, "ok": not findings})
    else:
        out.say("all consistent")
    if findings:
        raise Reported()
