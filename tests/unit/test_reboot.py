"""domain reboot / reset: where it runs, dry run by default, refused unless running."""

import pytest
from facts import cfg, dom, world
from fakes import is_scan

from havirt.errors import Refusal
from havirt.plan.domains import plan_reboot

V = "virsh -c qemu:///system"


def test_plan_reboot_and_reset_act_where_it_runs():
    cluster, _ = world({"node1": {}, "node2": {"domains": [dom("web1")]}})
    (step,) = plan_reboot(cluster, cfg(), "web1").steps
    assert (step.node, step.command.text(), step.why) == ("node2", f"{V} reboot web1",
                                                   "ask web1 on node2 to reboot")
    (step,) = plan_reboot(cluster, cfg(), "web1", hard=True).steps
    assert (step.node, step.command.text(), step.why) == ("node2", f"{V} reset web1",
                                                          "reset web1 on node2")


@pytest.mark.parametrize("domains, words", [
    ([], "web1 is not running on any node that answered"),
    ([dom("web1", state="paused", reason=1)], "web1 is paused on node1, not running"),
    ([dom("web1", state="paused", reason=2)], "(a migration is under way)"),
    ([dom("web1", state="crashed")], "web1 is crashed on node1, not running"),
])
def test_plan_reboot_refused_unless_running(domains, words):
    cluster, _ = world({"node1": {"domains": domains}})
    for hard in (False, True):
        with pytest.raises(Refusal) as e:
            plan_reboot(cluster, cfg(), "web1", hard=hard)
        assert words in str(e.value)


def setup(fake, **kw):
    a, b = fake.node("node1"), fake.node("node2")
    b.add("web1", **kw)
    fake.conf("web1")
    return a, b


@pytest.mark.parametrize("verb", ["reboot", "reset"])
def test_dry_run_prints_the_command_and_changes_nothing(fake, verb):
    _, b = setup(fake)
    before = fake.state_file.read_bytes()
    rc, out, err = fake.havirt("domain", verb, "web1")
    assert rc == 0, err
    assert out == (f"ssh root@10.0.0.2 '{V} {verb} web1'\n"
                   "dry run: nothing was changed; add --yes (havirt --yes ...) to execute\n")
    assert all(is_scan(c) for _, c in fake.calls)
    assert b.domains["web1"].boots == 1
    assert fake.state_file.read_bytes() == before
    assert not (fake.home / "var" / "audit.log").exists()


@pytest.mark.parametrize("verb, said", [("reboot", "ask web1 on node2 to reboot"),
                                        ("reset", "reset web1 on node2")])
def test_yes_runs_it_on_its_node_and_checks_it_runs(fake, verb, said):
    _, b = setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", verb, "web1")
    assert rc == 0, err
    assert out == f"{said}: ok\nweb1 is running on node2\n"
    assert [(n, c) for n, c in fake.calls if not is_scan(c)] == [("node2", f"{V} {verb} web1")]
    assert b.domains["web1"].boots == 2
    log = (fake.home / "var" / "audit.log").read_text()
    assert f"{V} {verb} web1" in log


@pytest.mark.parametrize("verb", ["reboot", "reset"])
def test_refused_for_a_paused_or_absent_domain_with_exit_3(fake, verb):
    setup(fake, state="paused")
    out, err = fake.refused("--yes", "domain", verb, "web1")
    assert (out, err) == ("", "havirt: refused: web1 is paused on node2, not running\n")
    _, err = fake.refused("--yes", "domain", verb, "db9")
    assert err == "havirt: refused: db9 is not running on any node that answered\n"
    assert all(is_scan(c) for _, c in fake.calls)


def test_a_failed_reboot_exits_1_with_virshs_reason(fake):
    _, b = setup(fake)

    class Stopping(type(fake).runner_class):
        def run(self, node, command, **kw):
            if command.text() == f"{V} reboot web1":
                b.domains["web1"].state = "paused"     # it changed between the scan and the step
            return super().run(node, command, **kw)
    fake.runner_class = Stopping
    rc, out, err = fake.havirt("--yes", "domain", "reboot", "web1")
    assert rc == 1
    assert err.startswith("havirt: ask web1 on node2 to reboot failed on node2: exit 1: "
                          "error: Requested operation is not valid: domain is not running")
    assert fake.state().domains["web1"].state == "paused"     # what the node then said, recorded


def test_invalid_name_is_a_usage_error(fake):
    setup(fake)
    assert "invalid domain name" in fake.refused("--yes", "domain", "reboot", "--", "-x", code=2)[1]
    assert "invalid domain name" in fake.refused("--yes", "domain", "reset", "../x", code=2)[1]
    assert fake.calls == []
