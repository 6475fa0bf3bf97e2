"""Printing what core functions return, in the chosen format."""

from __future__ import annotations

import json

import click

from ..render import render


def emit(app, rows, columns, doc=None) -> None:
    click.echo(render(app.fmt, rows, columns, doc))


def emit_findings(app, findings, json_done=False, err=False) -> None:
    """One line per anomaly (also under -q: that is what cron mails).

    err: on stderr, for anomalies seen on the way by a command that changes
    something (its stdout is the plan or what it did)."""
    if not findings:
        return
    if app.fmt == "json":
        if not json_done:
            from ..views import finding_rows
            click.echo(json.dumps({"anomalies": finding_rows(findings)}, indent=2))
        return
    for f in findings:
        fix = f" (fix: {f.fix})" if f.fix and app.verbose else ""
        click.echo(f"{f.severity.upper()} {f.kind} {f.subject}: {f.message}{fix}", err=err)


def emit_outcome(app, out) -> None:
    """The plan (dry run) or what was done."""
    if app.fmt == "json":
        from ..views import finding_rows
        click.echo(json.dumps({"dry_run": out.dry_run, "commands": out.lines, "done": out.done,
                               "notes": out.notes,
                               "anomalies": finding_rows(out.findings)}, indent=2))
        return
    emit_findings(app, out.findings, err=True)   # what the fresh scan found wrong, on the way
    for note in out.notes:
        app.say(note)
    if out.dry_run:
        for line in out.lines:
            click.echo(line)
        if out.lines:
            app.say("dry run: nothing was changed; add --yes (havirt --yes ...) to execute")
        return
    for line in out.done:
        app.say(line)
