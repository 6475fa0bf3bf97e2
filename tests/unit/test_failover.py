"""node failover and node scan --recover, on the fake cluster: guards, placement,
each start checked and verified, leases refusing a start on a node that is alive."""

import json
import os
import stat

from fakes import is_scan

V = "virsh -c qemu:///system"


def setup(fake, leases=True, domains=(("vol1", 1024), ("vol2", 1024), ("vol3", 1024)), memory=4096):
    """node1, node2 with room; node3 runs `domains` (block volumes seen by all)."""
    for n in ("node1", "node2", "node3"):
        node = fake.node(n, memory_mib=memory)
        node.paths = {f"/dev/{d}" for d, _ in domains}
    for d, mem in domains:
        fake.conf(d, memory_mib=mem, disks=[f"/dev/{d}"])
        fake.nodes["node3"].add(d, memory_mib=mem, disks=[f"/dev/{d}"])
    if leases:
        fake.leases()
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 0, (out, err)
    return fake.nodes["node3"]


def power_off(node):
    node.reachable = False
    node.domains.clear()          # every process gone: the guests too, and their leases


def link_down(node):
    node.reachable = False        # alive behind a broken link: guests run, leases held


def where(fake, name):
    return sorted(n.name for n in fake.nodes.values() if name in n.domains)


def test_dry_run_names_the_guard_and_plans_within_memory(fake):
    power_off(setup(fake))
    rc, out, err = fake.havirt("node", "failover", "node3")
    assert rc == 0, err
    assert "failover of node3 (connect timed out after 5 s): guard: leases" in out
    assert "leases were in force on node3 at its last scan" in out
    creates = [ln for ln in out.splitlines() if ln.endswith("create /dev/stdin' < conf/vol1.xml")
               or "create" in ln]
    assert len(creates) == 3
    assert "dry run: nothing was changed" in out
    assert [c for _, c in fake.calls if not is_scan(c)] == []
    assert all(where(fake, d) == [] for d in ("vol1", "vol2", "vol3"))
    doc = json.loads(fake.havirt("-f", "json", "node", "failover", "node3")[1])
    assert doc["guard"] == "leases" and doc["dry_run"] is True
    assert [list(m) for m in doc["moves"]] == [["domain", "from", "to", "memory_mib", "score_after"]] * 3
    # placed as a whole: node1 and node2 have 3072 MiB usable each, 3 x 1024 fit, never 3 on one
    targets = [m["to"] for m in doc["moves"]]
    assert sorted(set(targets)) == ["node1", "node2"] and max(map(targets.count, targets)) <= 2


def test_power_off_then_failover_under_leases_runs_each_once(fake):
    power_off(setup(fake))
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 0, (out, err)
    for d in ("vol1", "vol2", "vol3"):
        assert len(where(fake, d)) == 1 and where(fake, d)[0] in ("node1", "node2")
        rec = fake.state().domains[d]
        assert rec.node == where(fake, d)[0] and not rec.stale
        assert f"{d}: started on {rec.node}" in out
    for n in ("node1", "node2"):
        used = sum(x.memory_mib for x in fake.nodes[n].domains.values())
        assert used <= 4096 - 1024
    log = [json.loads(line) for line in (fake.home / "var" / "audit.log").read_text().splitlines()]
    assert sorted(e["remote"] for e in log) == [f"{V} create /dev/stdin < conf/{d}.xml"   # in the
                                               for d in ("vol1", "vol2", "vol3")]          # order they ended
    assert all(e["outcome"] == "ok" for e in log)


def test_a_dead_node_is_asked_once_and_every_node_at_most_three_times(fake):
    """The dead node's timeout is paid once per failover: the later scans of the
    same work do not ask it again. One scan plans, one re-checks every domain,
    one asks the targets whether they run."""
    power_off(setup(fake))
    before = len(fake.calls)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 0, (out, err)
    asked = {n: sum(1 for m, c in fake.calls[before:] if m == n and is_scan(c)) for n in fake.nodes}
    assert asked["node3"] == 1, asked
    targets = {n for d in ("vol1", "vol2", "vol3") for n in where(fake, d)}
    assert targets == {"node1", "node2"} and asked["node1"] == asked["node2"] == 3, asked
    assert fake.state().nodes["node3"].silent_scans == 1     # counted once, like it was asked once


def intruder_before_the_recheck(fake, monkeypatch, memory_mib=2048):
    """A domain of `memory_mib` started on node1 by hand after the failover's
    plan, before its re-check (the second scan of the command)."""
    from havirt.ops.work import Work
    scan, scans = Work.scan, []

    def scan_then_intruder(self, *a, **kw):
        scans.append(a or kw)
        if len(scans) == 2:       # after the plan, before the re-check
            fake.nodes["node1"].add("intruder", memory_mib=memory_mib)
        return scan(self, *a, **kw)
    monkeypatch.setattr(Work, "scan", scan_then_intruder)


def test_what_was_started_counts_on_its_target_for_the_next_recheck(fake, monkeypatch):
    """Planned while node1 had room for both; a domain started there by hand
    before the re-check leaves room for one: the second is refused with the
    numbers, counting the first one started by this failover."""
    power_off(setup(fake, leases=False, domains=(("vol1", 1024), ("vol2", 1024))))
    intruder_before_the_recheck(fake, monkeypatch)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3", "--to", "node1", "--confirm-off")
    assert rc == 1, (out, err)
    started = [d for d in ("vol1", "vol2") if where(fake, d) == ["node1"]]
    assert len(started) == 1, out
    assert "1024 MiB are allocated" not in out and "3072 MiB are allocated" in out, out


def test_link_down_every_start_is_refused_by_its_lease(fake):
    node3 = setup(fake)
    link_down(node3)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 1
    for d in ("vol1", "vol2", "vol3"):
        assert f"{d}: refused by its lease: it still runs on node3, which is alive" in out
        assert where(fake, d) == ["node3"]                  # never on two nodes
        assert fake.state().domains[d].node == "node3"      # no place a scan did not confirm
    node3.reachable = True
    rc, out, err = fake.havirt("node", "scan")
    assert rc == 0, out


def test_no_guard_is_refused_naming_each(fake):
    power_off(setup(fake, leases=False))
    _, err = fake.refused("--yes", "node", "failover", "node3")
    assert err.startswith("havirt: refused: failover of node3 refused: no guard proves")
    assert "leases: leases were not in force on node3 at its last scan" in err
    assert "fence: none configured for node3" in err and "--confirm-off: not given" in err
    assert all(where(fake, d) == [] for d in ("vol1", "vol2", "vol3"))


def test_confirm_off_proceeds_without_leases(fake):
    power_off(setup(fake, leases=False))
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3", "--confirm-off")
    assert rc == 0, err
    assert "guard: confirm-off" in out
    assert all(len(where(fake, d)) == 1 for d in ("vol1", "vol2", "vol3"))


def test_a_node_that_answers_is_refused(fake):
    setup(fake)
    _, err = fake.refused("--yes", "node", "failover", "node3", "--confirm-off")
    assert "node node3 answers: use havirt node maintenance node3 on" in err


def test_confirm_off_does_not_count_for_a_node_whose_sshd_answers(fake):
    node3 = setup(fake, leases=False)
    node3.libvirt_up = False          # sshd answers, virsh fails: it is on
    _, err = fake.refused("--yes", "node", "failover", "node3", "--confirm-off")
    assert "--confirm-off: not given" in err


def test_to_limits_targets_and_what_does_not_fit_stays_down_with_the_numbers(fake):
    power_off(setup(fake, leases=False, domains=(("vol1", 2048), ("vol2", 2048))))
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3", "--to", "node1",
                               "--confirm-off")
    assert rc == 0, err
    assert where(fake, "vol1") == ["node1"] or where(fake, "vol2") == ["node1"]
    assert "stays down:" in out and "needs 2048 MiB, most free on an eligible node is 1024 MiB (node1)" in out
    assert not fake.nodes["node2"].domains


def test_maintenance_no_xml_and_already_running_stay_down(fake):
    node3 = setup(fake)
    fake.havirt("domain", "maintenance", "vol1", "on")
    (fake.home / "conf" / "vol2.xml").unlink()
    power_off(node3)
    fake.nodes["node1"].add("vol3", disks=["/dev/vol3"])    # someone restarted it already
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert "vol1: in maintenance: failover never starts it" in out
    assert "vol2: no usable XML in conf/" in out
    assert "vol3: already running on node1" in out
    assert where(fake, "vol1") == [] and where(fake, "vol3") == ["node1"]


def test_under_leases_a_domain_without_a_leased_disk_stays_down(fake):
    node3 = setup(fake)
    fake.conf("tiny1")
    node3.add("tiny1")
    fake.havirt("node", "scan")
    power_off(node3)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert "tiny1: leases cannot protect it: no writable disk with a local path" in out
    assert where(fake, "tiny1") == [] and len(where(fake, "vol1")) == 1


def fenced(fake, tmp_path, says, timeout):
    """node3 powered off, with a real fence on this host that records its calls
    and prints the power status `says`."""
    node3 = setup(fake, leases=False)
    log = tmp_path / "fence.log"
    script = tmp_path / "fence"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho 'Chassis Power is {says}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    fake.write_config(fence={"node3": {"power_off": f"{script} off {{node}} {{address}}",
                                       "power_status": f"{script} status {{node}}",
                                       "off_when": "is off", "timeout": timeout}})
    power_off(node3)
    return script, log


def test_fence_guard_powers_off_confirms_then_starts(fake, tmp_path):
    script, log = fenced(fake, tmp_path, "off", 5)
    rc, out, err = fake.havirt("node", "failover", "node3")         # dry run: the fence is shown
    assert rc == 0 and "guard: fence" in out and f"{script} off node3 10.0.0.3" in out
    assert not log.exists()
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 0, err
    assert log.read_text().splitlines() == ["off node3 10.0.0.3", "status node3"]
    assert "node3 fenced: powered off and confirmed off" in out
    assert all(len(where(fake, d)) == 1 for d in ("vol1", "vol2", "vol3"))
    audit = (fake.home / "var" / "audit.log").read_text()
    assert f"(on this host) {script} off node3 10.0.0.3" in audit


def test_a_fence_that_does_not_confirm_starts_nothing(fake, tmp_path):
    script, _ = fenced(fake, tmp_path, "on", 1)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 3 and "the fence of node3 did not confirm it off, nothing was started" in err
    assert "not confirmed within 1 s (last said: Chassis Power is on)" in err
    assert all(where(fake, d) == [] for d in ("vol1", "vol2", "vol3"))
    assert fake.changing_calls() == []
    logged = [json.loads(line)["remote"] for line in fake.audit_lines()]
    assert logged and all(r.startswith(f"(on this host) {script} ") for r in logged)   # the fence alone


# -- recovery from cron ------------------------------------------------------------------

def test_scan_recover_after_the_configured_scans_under_leases(fake):
    node3 = setup(fake)
    fake.write_config(recover={"after": 2})
    power_off(node3)
    rc, out, err = fake.havirt("-q", "node", "scan", "--recover")
    assert rc == 1 and "unreachable node3" in out and "recovered" not in out
    assert all(where(fake, d) == [] for d in ("vol1", "vol2", "vol3"))
    rc, out, err = fake.havirt("-q", "node", "scan", "--recover")
    assert rc == 1
    for d in ("vol1", "vol2", "vol3"):
        assert len(where(fake, d)) == 1
        assert f"WARNING recovered {d}: node3 has not answered 2 scans in a row (leases): {d} started on" in out
    rc, out, err = fake.havirt("-q", "node", "scan", "--recover")   # nothing left to do
    assert "recovered" not in out and all(len(where(fake, d)) == 1 for d in ("vol1", "vol2", "vol3"))


def test_scan_recover_never_on_the_admins_word_and_never_a_shut_off_domain(fake):
    node3 = setup(fake, leases=False)
    fake.havirt("--yes", "domain", "shutdown", "vol3")
    fake.write_config(recover={"after": 1, "enabled": True})
    power_off(node3)
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1
    assert "ERROR not-recovered node3: node3 has not answered 1 scans in a row; not recovered" in out
    assert all(where(fake, d) == [] for d in ("vol1", "vol2", "vol3"))


def test_scan_recover_leaves_a_domain_the_admin_shut_off_down(fake):
    node3 = setup(fake)                                        # leases: recovery may act
    assert fake.havirt("--yes", "domain", "shutdown", "vol3", "--wait", "5")[0] == 0
    fake.write_config(recover={"after": 1, "enabled": True})
    power_off(node3)
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert "WARNING recovered vol1: " in out and "WARNING recovered vol2: " in out, out
    assert "vol3" not in out and where(fake, "vol3") == [], out


def test_scan_recover_dryrun_says_what_it_would_do(fake):
    node3 = setup(fake)
    fake.write_config(recover={"after": 1})
    power_off(node3)
    rc, out, err = fake.havirt("--dryrun", "-q", "node", "scan", "--recover")
    assert "WARNING recovery-planned vol1: node3 has not answered 1 scans in a row: would start vol1 on" in out
    assert all(where(fake, d) == [] for d in ("vol1", "vol2", "vol3"))
    assert not os.path.exists(fake.home / "var" / "audit.log")


def test_no_progress_lines_off_a_terminal(fake):
    power_off(setup(fake))
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 0 and "[1/3]" not in err + out               # not a terminal: nothing extra


def test_progress_lines_on_a_terminal(fake, monkeypatch):
    import sys
    power_off(setup(fake))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    lines = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert [ln.split(" (")[0] for ln in lines] == [
        "[1/3] vol1: node3 -> " + fake.state().domains["vol1"].node,
        "[2/3] vol2: node3 -> " + fake.state().domains["vol2"].node,
        "[3/3] vol3: node3 -> " + fake.state().domains["vol3"].node]
    assert all(ln.endswith(" s elapsed)") for ln in lines)
    fake.nodes["node3"].reachable = True                      # back, empty: room to evacuate to
    assert where(fake, "vol1") and fake.nodes["node1"].domains
    rc, out, err = fake.havirt("-q", "--yes", "node", "maintenance", "node1", "on")
    assert rc == 0 and not fake.nodes["node1"].domains        # evacuated...
    assert "[1/" not in err, err                              # ... and with -q nothing extra
    assert fake.havirt("node", "maintenance", "node1", "off")[0] == 0
    on_node2 = len(fake.nodes["node2"].domains)
    rc, out, err = fake.havirt("--yes", "node", "maintenance", "node2", "on")   # evacuation again
    lines = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert rc == 0 and on_node2 and len(lines) == on_node2
    assert lines[0].startswith(f"[1/{on_node2}] ") and lines[-1].endswith(" s elapsed)")


def test_after_a_failover_no_domain_is_suspected_of_running_twice(fake):
    power_off(setup(fake))
    assert fake.havirt("--yes", "node", "failover", "node3")[0] == 0
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1 and [ln.split(":")[0] for ln in out.splitlines()] == ["WARNING down node3"]


def test_destroying_the_copy_that_answers_does_not_claim_it_is_off_everywhere(fake):
    node3 = setup(fake, leases=False)
    link_down(node3)
    fake.nodes["node1"].add("vol1", disks=["/dev/vol1"])      # started by hand behind havirt's back
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert "CRITICAL maybe-twice vol1: DOMAIN vol1 RUNS ON node1 AND MAY STILL RUN ON node3" in out
    rc, out, err = fake.havirt("--yes", "domain", "destroy", "vol1")
    assert rc == 1 and out.splitlines()[-1] == (
        "vol1 is off on node1; node3 did not answer and may still run it")
    rec = fake.state().domains["vol1"]
    assert (rec.node, rec.stale, rec.state) == ("node3", True, "running")
