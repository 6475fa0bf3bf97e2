"""What the admin sees: tables in three formats, anomalies, plans, progress."""

from __future__ import annotations

import json
import sys

import click

from havirt.cli.render import render
from havirt.errors import Reported
from havirt.names import printable
from havirt.ops.app import Reporter


def _lines(text: str) -> str:
    """Each line printable: text from nodes (a domain's name) never drives the terminal."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


class Console(Reporter):
    """The Reporter of the command line, and the printing of results."""

    def __init__(self, fmt="screen", quiet=False, verbose=False):
        self.fmt = fmt
        self.quiet = quiet
        self.verbose = verbose
        self._progress_open = False

    # -- while core code works ---------------------------------------------------
    def say(self, text: str = "") -> None:
        """A line for the admin; on stderr under -f json, so stdout stays JSON."""
        if not self.quiet:
            print(_lines(text), flush=True, file=sys.stderr if self.fmt == "json" else sys.stdout)

    def note(self, text: str) -> None:
        if self.verbose:
            print(_lines(text), file=sys.stderr, flush=True)

    def source(self, text: str, shared: bool) -> None:
        """A shared store (etcd) is named on stderr (-q: not); the home's files under -v."""
        if (shared and not self.quiet) or self.verbose:
            print(_lines(text), file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        print(printable(f"havirt: warning: {text}"), file=sys.stderr, flush=True)

    def progress(self, chunk: str) -> None:
        if not self.quiet:
            sys.stderr.write(chunk)
            sys.stderr.flush()
            self._progress_open = not chunk.endswith("\n")

    def end_progress(self) -> None:
        if self._progress_open:
            self.progress("\n")

    def step(self, done: int, total: int, text: str, elapsed: float) -> None:
        """A progress line per move, on a terminal only (and never with -q)."""
        if not self.quiet and sys.stderr.isatty():
            print(f"[{done}/{total}] {text} ({elapsed:.0f} s elapsed)", file=sys.stderr, flush=True)

    # -- results -------------------------------------------------------------------
    def emit(self, rows, columns, doc=None) -> None:
        click.echo(render(self.fmt, rows, columns, doc))

    def findings(self, findings, json_done=False, err=False) -> None:
        """One line per anomaly (also under -q: that is what cron mails).

        err: on stderr, for anomalies seen on the way by a command that changes
        something (its stdout is the plan or what it did)."""
        if not findings:
            return
        if self.fmt == "json":
            if not json_done:
                from havirt.ops.views import finding_rows
                click.echo(json.dumps({"anomalies": finding_rows(findings)}, indent=2))
            return
        for f in findings:
            fix = f" (fix: {f.fix})" if f.fix and self.verbose else ""
            click.echo(printable(f"{f.severity.upper()} {f.kind} {f.subject}: {f.message}{fix}"), err=err)

    def outcome(self, out) -> None:
        """The plan (dry run) or what was done; then exit 1 when some part of it failed."""
        if self.fmt == "json":
            from havirt.ops.views import finding_rows
            click.echo(json.dumps({"dry_run": out.dry_run, "commands": out.lines, "done": out.done,
                                   "notes": out.notes, **out.data,
                                   "anomalies": finding_rows(out.findings)}, indent=2))
        else:
            self._outcome_text(out)
        if out.failed:
            raise Reported()

    def _outcome_text(self, out) -> None:
        self.findings(out.findings, err=True)   # what the fresh scan found wrong, on the way
        for note in out.notes:
            self.say(note)
        if out.dry_run:
            for line in out.lines:
                click.echo(line)
            if out.lines:
                self.say("dry run: nothing was changed; add --yes (havirt --yes ...) to execute")
            return
        for line in out.done:
            self.say(line)
