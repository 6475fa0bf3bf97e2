"""havirt cluster ..."""

from __future__ import annotations

import click

from . import cli, pass_app


@cli.group(epilog="Example: havirt cluster status")
def cluster():
    """The whole cluster: status, balance, validate."""


@cluster.command("status", epilog="Example: havirt -f json cluster status --no-scan")
@click.option("--no-scan", is_flag=True, help="Show the state file as it is (no SSH).")
@pass_app
def cluster_status(opts, no_scan):
    """Per node: CPUs, vCPUs and their ratio, memory, domains; totals; the
    imbalance score (see cluster balance)."""
    from ..status import STATUS_COLUMNS, cluster_status as status
    from ..views import finding_rows
    out = opts.out
    rows, totals, score, findings = status(opts.app(), no_scan)
    out.emit(rows + [totals], STATUS_COLUMNS,
             doc={"nodes": rows, "totals": totals, "score": score,
                  "anomalies": finding_rows(findings)} if out.fmt == "json" else None)
    if out.fmt == "screen":
        out.say(f"imbalance score: {'-' if score is None else f'{score:.4f}'}")
    out.findings(findings, json_done=True)   # under json: in the document, which stays one


@cluster.command("balance", epilog="""\b
Examples: havirt cluster balance                 # print the plan
          havirt --yes cluster balance --max-moves 5
          havirt --home /tmp/whatif cluster balance --no-scan""")
@click.option("--max-moves", type=click.IntRange(1, 10000), metavar="N",
              help="At most N migrations (default: balance.max_moves).")
@click.option("--no-scan", is_flag=True,
              help="Plan from the state file as it is (what-if); never executes.")
@pass_app
def cluster_balance(opts, max_moves, no_scan):
    """Plan live migrations that even out memory (and vCPU) use across the
    nodes that are up and not in maintenance, never breaking a limit.

    Score = pstdev of each node's free memory fraction + 0.5 x pstdev of
    vCPU ratios. A move is made only if it lowers the score by at least
    balance.min_gain.
    """
    from ..moves import balance
    opts.out.outcome(balance(opts.app(), max_moves, no_scan))


@cluster.command("validate", epilog="Example: havirt cluster validate")
@pass_app
def cluster_validate(opts):
    """A read-only consistency report; exit 1 when anything is wrong."""
    from ..validate import validate
    from ..views import FINDING_COLUMNS, finding_rows
    out = opts.out
    findings = validate(opts.app())
    rows = finding_rows(findings)
    if findings or out.fmt != "screen":
        out.emit(rows, FINDING_COLUMNS, doc={"findings": rows, "ok": not findings})
    else:
        out.say("all consistent")
    if findings:
        raise SystemExit(1)
