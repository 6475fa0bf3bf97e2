"""The common options (-f, -q, -v, -y, --dryrun, --debug) work before the module
and after the action, for every command, also for commands added later."""

import json

import click
import pytest

from havirt.cli import load_commands
from havirt.cli.group import COMMON_OPTIONS, HavirtGroup, cli, pass_app

load_commands()

COMMON = {click.Option(d, **kw).name for d, kw in COMMON_OPTIONS}


def every_command(group=cli, path=()):
    for name, cmd in group.commands.items():
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from every_command(cmd, path + (name,))


def test_node_list_format_after_the_action(fake):
    fake.node("node1")
    rc, out, err = fake.havirt("node", "list", "-f", "json")
    assert rc == 0, err
    assert [n["name"] for n in json.loads(out)] == ["node1"]


def test_after_the_action_wins_over_before_the_module(fake):
    fake.node("node1")
    rc, out, _ = fake.havirt("-f", "tsv", "node", "list", "--format", "json")
    assert rc == 0 and json.loads(out)[0]["name"] == "node1"
    rc, out, _ = fake.havirt("-f", "tsv", "node", "list")
    assert rc == 0 and out.startswith("name\taddress")


def test_format_after_the_module_too(fake):
    fake.node("node1")
    rc, out, _ = fake.havirt("node", "-f", "json", "list")
    assert rc == 0 and json.loads(out)[0]["name"] == "node1"


def test_yes_after_the_arguments_executes(fake):
    fake.node("node1")
    b = fake.node("node2")
    fake.conf("web1", memory_mib=512, vcpus=2)
    rc, out, err = fake.havirt("domain", "start", "web1", "node2", "--yes")
    assert rc == 0, err
    assert "web1" in b.domains and "dry run" not in out
    assert fake.state().domains["web1"].node == "node2"


def test_dryrun_after_the_arguments_beats_yes_before(fake):
    fake.node("node1")
    b = fake.node("node2")
    fake.conf("web1")
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2", "--dryrun")
    assert rc == 0, err
    assert "dry run" in out and "web1" not in b.domains


def test_quiet_and_verbose_after_scan(fake):
    fake.node("node1")
    rc, out, err = fake.havirt("node", "scan", "-q")
    assert (rc, out, err) == (0, "", "")
    rc, out, err = fake.havirt("node", "scan", "-v")
    assert rc == 0 and "node1" in out and "scan node1: ok" in err


def test_a_bad_value_after_the_action_is_a_usage_error(fake):
    rc, out, err = fake.havirt("node", "list", "-f", "xml")
    assert rc == 2 and out == ""
    assert err.startswith("havirt: ") and "'xml' is not one of" in err and err.count("\n") == 1


def test_debug_after_the_action_shows_the_traceback(fake):
    rc, _, err = fake.havirt("domain", "start", "nosuch", "node9", "--debug")
    assert rc == 2 and "Traceback" in err and "unknown domain 'nosuch'" in err


@pytest.mark.parametrize("path", [p for p, _ in every_command()], ids=" ".join)
def test_every_command_takes_the_common_options(path):
    cmd = dict(every_command())[path]
    assert COMMON <= {p.name for p in cmd.params}


def test_a_command_added_later_takes_them_with_no_change(fake):
    """A group of havirt (any module) gives its new commands the common options."""
    group = cli.commands["domain"]
    assert isinstance(group, HavirtGroup)
    seen = {}

    @group.command("probe-options", epilog="Example: havirt domain probe-options x")
    @click.argument("name")
    @pass_app
    def probe(opts, name):
        seen.update(opts.kw, name=name, out_fmt=opts.out.fmt, quiet=opts.out.quiet)

    try:
        rc, _, err = fake.havirt("domain", "probe-options", "x", "-f", "json", "-q", "-y")
    finally:
        del group.commands["probe-options"]
    assert rc == 0, err
    assert seen["name"] == "x" and seen["out_fmt"] == "json" and seen["quiet"] and seen["yes"]


def test_a_command_keeps_its_own_option_of_the_same_letter():
    g = HavirtGroup("g")

    @g.command("c")
    @click.option("-q", "--quick", is_flag=True)
    @click.option("-f", "--force", is_flag=True)
    @click.option("--verbose", "loud", is_flag=True)
    def c(quick, force, loud):
        pass

    params = {p.name: p for p in g.commands["c"].params}
    assert params["quick"].opts == ["-q", "--quick"] and params["force"].opts == ["-f", "--force"]
    assert params["quiet"].opts == ["--quiet"]           # -q is the command's own
    assert params["fmt"].opts == ["--format"]            # so is -f
    assert params["loud"].opts == ["--verbose"] and params["verbose"].opts == ["-v"]
    assert {"yes", "dryrun", "debug"} <= set(params)


def test_its_own_f_and_the_common_format(fake):
    """Through the CLI: the command's -f is its own, --format is the common one."""
    group = cli.commands["domain"]
    seen = {}

    @group.command("probe-force", epilog="Example: havirt domain probe-force -f")
    @click.option("-f", "--force", is_flag=True)
    @pass_app
    def probe(opts, force):
        seen.update(force=force, fmt=opts.out.fmt)

    try:
        rc, _, err = fake.havirt("domain", "probe-force", "-f", "--format", "tsv")
    finally:
        del group.commands["probe-force"]
    assert rc == 0, err
    assert seen == {"force": True, "fmt": "tsv"}
