"""havirt(1): one manual page generated from the click commands.

    python -m havirt.manpage > havirt.1      (make man; make install installs it)

Every command is there with its usage, its help, its own options and its
examples, as `--help` shows them, so the page never drifts from the program.
The sections --help has no room for (exit status, environment, files) are
written here.
"""

from __future__ import annotations

import os
import sys
import time

import click

from havirt import __version__
from havirt.cli import COMMON_OPTIONS, cli, load_commands

EXIT_STATUS = (
    (0, "ok"),
    (1, "a step failed, a scan or validate found anomalies, or the metrics file could not "
        "be written"),
    (2, "usage or configuration error: bad option, unknown node or domain, invalid name, bad "
        "config.yaml, unreadable state file, bad conf/ XML; a home that cannot be used safely "
        "(a folder or file not writable, a link made by another user where havirt writes)"),
    (3, "refused by a safety check (the message names the rule and the numbers)"),
    (4, "a node the command must talk to did not answer (SSH error)"),
    (5, "another havirt held the lock longer than lock_timeout"),
)

ENVIRONMENT = (
    ("HAVIRT_HOME", "The home (conf/, var/, config.yaml) when --home is not given; else the "
                    "folder that holds havirt.py."),
    ("_HAVIRT_COMPLETE", "Set by the shell completion scripts: bash_source, zsh_source or "
                         "fish_source print the script to load, e.g. "
                         'eval "$(_HAVIRT_COMPLETE=bash_source havirt)".'),
)

FILES = (
    ("HOME/config.yaml", "The configuration; every key is documented in config.sample.yaml."),
    ("HOME/conf/NAME.xml", "The libvirt XML of domain NAME, the only place a domain is defined."),
    ("HOME/var/state.yaml", "The admin's facts about nodes and a cache of the last scan."),
    ("HOME/var/audit.log", "One JSON line per executed step."),
    ("HOME/var/havirt.lock", "The lock; while held it names the holder."),
    ("HOME/var/moved-STAMP/", "What store migrate moved out of the home (store.backend: etcd keeps "
                              "the state, conf/, the audit log and the lock in etcd instead)."),
)

SEE_ALSO = "virsh(1), ssh(1), ssh_config(5), prometheus\\-node\\-exporter(1), systemd.timer(5)"


def roff(text: str) -> str:
    """Text as roff: backslashes and hyphens escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def paragraphs(text: str | None) -> list[str]:
    """Help text as click shows it: paragraphs rewrapped, a `\\b` block kept as it is."""
    out = []
    for block in (text or "").strip().split("\n\n"):
        if not block.strip():
            continue
        if block.startswith("\b"):
            out += [".PP", ".nf", roff(block[1:].strip("\n")), ".fi"]
        else:
            out += [".PP", roff(" ".join(line.strip() for line in block.splitlines()))]
    return out


def options(cmd: click.Command, ctx: click.Context, skip: set[str]) -> list[str]:
    out = []
    for p in cmd.get_params(ctx):
        if not isinstance(p, click.Option) or p.name in skip or p.hidden or \
                (cmd is not cli and "--help" in p.opts):
            continue
        decl, help_text = p.get_help_record(ctx)
        out += [".TP", f"\\fB{roff(decl)}\\fR", roff(help_text or "")]
    return out


def commands(group: click.Group, ctx: click.Context, skip: set[str]):
    for name in sorted(group.commands):
        cmd = group.commands[name]
        sub = click.Context(cmd, info_name=name, parent=ctx)
        if isinstance(cmd, click.Group):
            yield from commands(cmd, sub, skip)
            continue
        usage = " ".join(cmd.collect_usage_pieces(sub))
        yield [f'.SS "{roff(sub.command_path)} {roff(usage)}"',
               *paragraphs(cmd.help), *options(cmd, sub, skip),
               *paragraphs(cmd.epilog)]


def manpage() -> str:
    load_commands()
    ctx = click.Context(cli, info_name="havirt")
    common = {click.Option(d, **kw).name for d, kw in COMMON_OPTIONS}
    stamp = float(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    lines = [
        f'.TH HAVIRT 1 "{time.strftime("%Y-%m-%d", time.gmtime(stamp))}" '
        f'"havirt {__version__}" "User Commands"',
        ".ad l",
        ".nh",
        ".SH NAME",
        "havirt \\- run KVM domains on a small cluster of nodes over SSH, never twice at once",
        ".SH SYNOPSIS",
        ".B havirt",
        "[\\fIOPTIONS\\fR] \\fIMODULE\\fR \\fIACTION\\fR [\\fIARGUMENTS\\fR] [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        *paragraphs(cli.help),
        ".PP",
        "The options " + ", ".join(f"\\fB{roff(d[0])}\\fR" for d, _ in COMMON_OPTIONS) +
        " go before the module or after the action (\\fBhavirt node list \\-f json\\fR); "
        "given in both places, the later one counts.",
        ".SH OPTIONS",
        *options(cli, ctx, set()),
        ".SH COMMANDS",
    ]
    for block in commands(cli, ctx, common):
        lines += block
    lines += [".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", roff(meaning)]
    lines += [".SH ENVIRONMENT"]
    for name, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{roff(name)}\\fR", roff(meaning)]
    lines += [".SH FILES"]
    for name, meaning in FILES:
        lines += [".TP", f"\\fI{roff(name)}\\fR", roff(meaning)]
    lines += [".SH EXAMPLES", *paragraphs(cli.epilog), ".SH SEE ALSO", SEE_ALSO]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manpage())
