"""havirt(1) is generated from the click commands and renders without a warning."""

import re
import subprocess
import sys

import click

from havirt.cli import cli, load_commands
from havirt.cli.manpage import manpage

load_commands()


def leaves(group=cli, path=("havirt",)):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, path + (name,))
        else:
            yield " ".join(path + (name,))


def render(tmp_path, text, width=80):
    page = tmp_path / "havirt.1"
    page.write_text(text)
    p = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                       env={"MANWIDTH": str(width), "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin",
                            "MAN_KEEP_FORMATTING": ""}, timeout=60)
    return p


def test_renders_without_warnings_and_has_every_command(tmp_path):
    p = render(tmp_path, manpage())
    assert p.returncode == 0 and p.stderr == "", p.stderr
    text = p.stdout
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS",
                    "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"):
        assert f"\n{section}\n" in text
    commands = list(leaves())
    assert len(commands) > 10
    for command in commands:
        assert command in text, command
    assert "havirt node scan [OPTIONS] [NAMES]..." in text
    assert "--metrics FILE" in text and "havirt node list -f json" in text
    assert "\u2010" not in text      # options stay typeable: - is a minus, never a hyphen
    src = manpage()                  # ... in the roff too, where a UTF-8 man would show a hyphen
    assert "\\-\\-metrics" in src and not re.search(r"(?<![\\\w])-(?=[\w-])", src)


def test_the_renderer_does_warn_on_bad_roff(tmp_path):
    """The check above can fail: man reports what groff does not understand."""
    p = render(tmp_path, manpage() + ".NOSUCHMACRO\n")
    assert "NOSUCHMACRO" in p.stderr


def test_python_m_havirt_manpage_prints_it():
    p = subprocess.run([sys.executable, "-m", "havirt.cli.manpage"], capture_output=True, text=True,
                       env={"SOURCE_DATE_EPOCH": "0"}, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith('.TH HAVIRT 1 "1970-01-01" "havirt ')
