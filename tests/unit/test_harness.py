"""The fake cluster itself: a command havirt was not meant to send fails the test."""

from dataclasses import replace

import pytest
from conftest import FakeCluster, domain_xml
from fakes import FakeRunner, is_scan

from havirt.remote.commands import Command


def test_an_unexpected_command_is_caught_even_when_the_cli_turns_it_into_an_exit_code(tmp_path, capsys):
    fake = FakeCluster(tmp_path, capsys)
    fake.node("node1")

    class Rogue(FakeRunner):
        def run_many(self, commands):
            self.run("node1", Command(op="rm", argv=("rm", "-rf", "/")))   # what havirt never should send
            return super().run_many(commands)

    fake.runner_class = Rogue
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 1 and "internal error" in err          # the CLI hides it behind an exit code...
    assert fake.unexpected == ["node1: unexpected command: rm -rf /"]   # ...the fixture does not


def test_a_scan_script_other_than_havirts_own_is_unexpected(tmp_path, capsys):
    fake = FakeCluster(tmp_path, capsys)
    fake.node("node1")

    class Tampering(FakeRunner):
        def run(self, node, command, **kw):
            if command.op == "scan":
                command = replace(command, script=command.script.replace("hostname", "hostname -f", 1))
            return super().run(node, command, **kw)

    fake.runner_class = Tampering
    fake.havirt("node", "scan")
    assert fake.unexpected and fake.unexpected[0].startswith("scan script differs")


def test_only_the_exact_commands_havirt_builds_are_accepted(tmp_path, capsys):
    """A command is accepted by what it is, not by a word it contains: an extra
    argument, another script under a known op, or a script's text that is not
    what its args build, is unexpected."""
    from havirt.remote import commands as remote
    fake = FakeCluster(tmp_path, capsys)
    fake.node("node1").add("web1")
    wrong = [
        lambda cfg: replace(remote.shutdown(cfg, "web1"),
                            argv=remote.shutdown(cfg, "web1").argv + ("--mode", "acpi")),
        lambda cfg: Command(op="dump-inactive", script="virsh dumpxml web1; rm -rf /", args=(("web1",),)),
        lambda cfg: replace(remote.wait_off(cfg, "web1", 5), args=("db1", 5)),
        lambda cfg: Command(op="dumpxml", argv=("virsh", "-c", cfg.virsh_uri, "dumpxml", "web1")),
    ]

    class Sloppy(FakeRunner):
        def run_many(self, commands):
            for make in wrong:
                try:
                    self.run("node1", make(self.cfg))
                except AssertionError:
                    pass
            return super().run_many(commands)

    fake.runner_class = Sloppy
    fake.havirt("node", "scan")
    assert [u.split("\n")[0] for u in fake.unexpected] == [
        "node1: unexpected command: virsh -c qemu:///system shutdown web1 --mode acpi",
        "dump-inactive script differs from havirt's own:",
        "wait-off script differs from havirt's own:",
        "node1: unexpected command: virsh -c qemu:///system dumpxml web1"]


def test_changing_calls_leave_out_the_scan_and_the_dumpxml_of_import(fake):
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1")
    fake.conf("db1")
    assert fake.havirt("domain", "import", "web1", "--from", "node1")[0] == 0
    assert fake.havirt("domain", "import", "--all", "--from", "node1")[0] == 0
    assert fake.havirt("--yes", "domain", "start", "db1", "node1")[0] == 0
    assert len(fake.calls) > 3
    assert fake.changing_calls() == [("node1", "virsh -c qemu:///system create /dev/stdin")]


def test_refused_fails_when_a_command_went_out(fake):
    fake.node("node1")
    fake.conf("db1")
    with pytest.raises(AssertionError, match="sent to a node although it exited 0"):
        fake.refused("--yes", "domain", "start", "db1", "node1", code=0)
    with pytest.raises(AssertionError, match=r"^\(0, "):
        fake.refused("--yes", "domain", "destroy", "db1")


def test_refused_fails_on_an_audit_entry_even_when_the_call_went_unrecorded(fake):
    fake.node("node1")
    fake.conf("db1")

    class Forgetful(FakeRunner):
        def run(self, node, command, **kw):
            res = super().run(node, command, **kw)
            if not is_scan(command.text()):
                self.calls.pop()
            return res

    fake.runner_class = Forgetful
    with pytest.raises(AssertionError, match="audit entry written although it exited 0"):
        fake.refused("--yes", "domain", "start", "db1", "node1", code=0)
