"""The wait until a domain is off: what its script answers on a node (run here
by sh, with a stand-in for virsh), and what havirt does when it answers
"cannot tell": nothing that rests on the domain being off."""

import json
import subprocess

import pytest
from facts import cfg
from fakes import is_scan

from havirt.remote.commands import WAIT_OFF, WAIT_RUNNING, WAIT_UNKNOWN, wait_off

V = "virsh -c qemu:///system"
DOWN = "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused"


def wait_text(name, seconds):
    return (f"end=$(( $(date +%s) + {seconds} )); while :; do s=$({V} domstate {name} 2>&1) || "
            "case \"$s\" in *'failed to get domain'*|*'Domain not found'*) exit 0;; "
            "*) printf '%s\\n' \"$s\" >&2; exit 2;; esac; [ \"$s\" = 'shut off' ] && exit 0; "
            "[ \"$(date +%s)\" -ge \"$end\" ] && exit 1; sleep 1; done")


# -- the script itself -------------------------------------------------------------

STUB = """#!/bin/sh
printf '%s\\n' "$@" > "$0.args"
case "$STUB_SAYS" in
  off) echo 'shut off' ;;
  running) echo running ;;
  gone) echo "error: failed to get domain '$4'" >&2; exit 1 ;;
  down) echo 'error: failed to connect to the hypervisor' >&2; exit 1 ;;
esac
"""


@pytest.mark.parametrize("says, code, stderr", [
    ("off", WAIT_OFF, ""),
    ("gone", WAIT_OFF, ""),                       # a transient domain that shut down
    ("running", WAIT_RUNNING, ""),                # still running at the deadline
    ("down", WAIT_UNKNOWN, "error: failed to connect to the hypervisor\n"),
])
def test_the_wait_script_exits_with_havirts_codes(tmp_path, says, code, stderr):
    stub = tmp_path / "virsh"
    stub.write_text(STUB)
    stub.chmod(0o755)
    script = wait_off(cfg(virsh_command=str(stub)), "web 1's", 0).text()
    p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "STUB_SAYS": says})
    assert (p.returncode, p.stdout, p.stderr) == (code, "", stderr)
    # the name reached virsh as one argument, quote and space included
    assert (tmp_path / "virsh.args").read_text().splitlines() == [
        "-c", "qemu:///system", "domstate", "web 1's"]


def test_the_exit_codes_are_the_ones_the_executor_reads():
    assert (WAIT_OFF, WAIT_RUNNING, WAIT_UNKNOWN) == (0, 1, 2)
    assert wait_off(cfg(), "web1", 7).text() == wait_text("web1", 7)


# -- havirt, when the wait cannot tell ------------------------------------------------

def audit(fake):
    lines = (fake.home / "var" / "audit.log").read_text().splitlines()
    return [(e["node"], e["remote"], e["exit_code"], e["outcome"]) for e in map(json.loads, lines)]


def running_on_node1(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1")
    a.add("web1", shuts_down=False)
    a.libvirt_stops_in_wait = True
    return a, b


def test_an_offline_migration_never_starts_the_domain_when_the_wait_cannot_tell(fake):
    a, b = running_on_node1(fake)
    rc, out, err = fake.havirt("domain", "migrate", "web1", "node2", "--offline", "--yes",
                               "--timeout", "7")
    assert rc == 1 and out == ""
    assert err == (f"havirt: cannot tell whether web1 is off on node1: exit 2: {DOWN}; "
                   f"now node1: unreachable (virsh failed: {DOWN}); node2: not running\n")
    assert b.domains == {} and "web1" in a.domains
    assert [(n, c) for n, c in fake.calls if not is_scan(c)] == [
        ("node1", f"{V} shutdown web1"), ("node1", wait_text("web1", 7))]    # no create anywhere
    assert audit(fake) == [("node1", f"{V} shutdown web1", 0, "ok"),
                           ("node1", wait_text("web1", 7), 2, f"exit 2: {DOWN}")]
    assert fake.state().domains["web1"].node != "node2"


def test_shutdown_wait_force_never_powers_off_on_a_guess(fake):
    a, _ = running_on_node1(fake)
    rc, out, err = fake.havirt("--yes", "domain", "shutdown", "web1", "--wait", "5", "--force")
    assert rc == 1 and out == ""
    assert err == f"havirt: cannot tell whether web1 is off on node1: exit 2: {DOWN}\n"
    assert [(n, c) for n, c in fake.calls if not is_scan(c)] == [
        ("node1", f"{V} shutdown web1"), ("node1", wait_text("web1", 5))]    # no destroy
    assert audit(fake)[-1] == ("node1", wait_text("web1", 5), 2, f"exit 2: {DOWN}")
    assert a.domains["web1"].state == "running"
