"""The fake cluster itself: a command havirt was not meant to send fails the test."""

from dataclasses import replace

from conftest import FakeCluster
from fakes import FakeRunner

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
