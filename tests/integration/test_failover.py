"""Leases and failover in the lab: the promise holds when a node dies, and
against a virsh typed by hand (README: Leases, failover and recovery).

The lab's block volumes (vol1..vol4) behave like iSCSI LUNs: only libvirt's
leases keep a domain on them from running on two nodes. Every effect is
checked with virsh and /proc on the nodes."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labkit import REPORT, anomaly_lines, refused

VOLS = ("vol1", "vol2", "vol3")


class DoubleRunWatch:
    """While it runs, asks every node that answers, again and again, which
    domains are running there (virsh, state running: a guest whose CPUs
    run), and keeps the most nodes any domain ran on at once. It also counts
    qemu processes per domain: a start refused by a lease shows one for a
    moment, paused, on the receiving node (libvirt takes the lease before it
    lets the guest's CPUs run)."""

    def __init__(self, lab):
        self.lab = lab
        self.most: Counter = Counter()
        self.qemu_most: Counter = Counter()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _running(self, node):
        p = self.lab.virsh(node, "list", "--name", "--state-running", timeout=10)
        return [ln.strip() for ln in p.stdout.splitlines() if ln.strip()] if p.returncode == 0 else []

    def _qemus(self) -> Counter:
        seen = Counter()
        for pid in self.lab.qemu_pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            for arg in cmd:
                if arg.startswith(b"guest="):
                    seen[arg[6:].split(b",")[0].decode()] += 1
        return seen

    def _watch(self):
        with ThreadPoolExecutor(len(self.lab.nodes)) as pool:
            while not self._stop.is_set():
                seen = Counter(d for names in pool.map(self._running, self.lab.nodes) for d in names)
                for name, n in seen.items():
                    self.most[name] = max(self.most[name], n)
                for name, n in self._qemus().items():
                    self.qemu_most[name] = max(self.qemu_most[name], n)
                self.rounds += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def where(lab, domain, down=()):
    """The nodes running `domain`, asked of every node but those powered off."""
    return sorted(n for n in lab.nodes if n not in down and domain in lab.running(n))


def three_on(lab, hv, node: str):
    for d in VOLS:
        hv.yes("domain", "start", d, node)
    assert all(lab.where(d) == [node] for d in VOLS)


def test_with_leases_a_hand_typed_start_elsewhere_fails(lab, hv):
    hv.yes("domain", "start", "vol1", "node1")
    p = lab.virsh("node2", "create", lab.xml("vol1"))
    assert p.returncode != 0 and "is locked" in p.stderr, p
    assert lab.where("vol1") == ["node1"]
    r = hv.run("-f", "json", "node", "list")
    assert all(n["leases"] is True and n["lockspace"] == str(lab.lockspace) for n in
               json.loads(r.out)), r
    r = hv.run("node", "scan")
    assert r.rc == 0 and not anomaly_lines(r.out), r
    assert hv.dom("vol1")["node"] == "node1" and hv.dom("vol1")["conflict"] == []
    r = hv.run("cluster", "validate")
    assert "no-leases" not in r.out and "lockspace" not in r.out, r


def test_a_lock_setting_changed_under_a_running_libvirtd_is_seen(lab, hv):
    """qemu-lockd.conf newer than the daemon's pid file (the probe's `-nt`):
    leases not in force until libvirtd restarts."""
    node = lab.nodes[-1]
    lab.exec(node, "touch", "/etc/libvirt/qemu-lockd.conf", check=True)
    r = hv.run("cluster", "validate")
    assert f"leases are not in force on {node}: qemu-lockd.conf changed after libvirtd " \
           "started: restart libvirtd" in r.out + r.err, r
    lab.leases(node, False)                      # each restarts libvirtd
    lab.leases(node, True)
    r = hv.run("cluster", "validate")
    assert "not in force" not in r.out + r.err, r


def test_power_off_then_failover_runs_each_once_within_memory(lab, hv):
    three_on(lab, hv, "node3")
    for n in ("node1", "node2"):            # room for two vol domains of 32 MiB each, not three
        hv.ok("node", "set", n, "--memory-cap", "80")
    hv.ok("node", "scan")
    lab.fault("node3", "power-off")
    r = hv.run("node", "failover", "node3")
    assert r.rc == 0 and "guard: leases" in r.out and r.out.count("create /dev/stdin") == 3, r
    t0 = time.monotonic()
    with DoubleRunWatch(lab) as watch:
        r = hv.run("--yes", "node", "failover", "node3")
    seconds = time.monotonic() - t0
    assert r.rc == 0, r
    here = {d: where(lab, d, down=["node3"]) for d in VOLS}
    assert all(len(w) == 1 and w[0] in ("node1", "node2") for w in here.values()), here
    assert all(watch.most[d] == 1 for d in VOLS) and watch.rounds > 3, (watch.most, watch.rounds)
    per_node = Counter(w[0] for w in here.values())
    assert sorted(per_node.values()) == [1, 2], per_node          # 2 x 32 MiB <= 80 MiB cap
    for d in VOLS:
        assert f"{d}: started on {here[d][0]}" in r.out, r
        assert hv.dom(d)["node"] == here[d][0] and hv.dom(d)["stale"] is False
    assert [e["outcome"] for e in hv.audit()][-3:] == ["ok"] * 3
    REPORT.append(f"failover of a powered-off node with 3 block-volume domains: {seconds:.1f} s")


def test_link_down_failover_is_refused_by_every_lease_and_nothing_runs_twice(lab, hv):
    three_on(lab, hv, "node3")
    hv.ok("node", "scan")
    lab.fault("node3", "link-down")           # alive, cut off: its guests run, its leases hold
    with DoubleRunWatch(lab) as watch:
        r = hv.run("--yes", "node", "failover", "node3")
    assert r.rc == 1, r
    for d in VOLS:
        assert f"{d}: refused by its lease: it still runs on node3, which is alive" in r.out, r
    assert all(watch.most[d] == 1 for d in VOLS) and watch.rounds > 3, (watch.most, watch.rounds)
    assert lab.running("node1") == set() and lab.running("node2") == set()
    REPORT.append(f"failover of a cut-off node: every start refused by its lease; most nodes "
                  f"running a domain at once {max(watch.most.values())}; most qemu processes of "
                  f"one domain at once {max(watch.qemu_most.values())} (a refused start's paused "
                  "qemu, stopped before its CPUs ran)")
    lab.fault("node3", "link-up")
    assert all(lab.where(d) == ["node3"] for d in VOLS)
    r = hv.run("node", "scan")
    assert r.rc == 0 and not anomaly_lines(r.out), r
    assert all(hv.dom(d)["node"] == "node3" for d in VOLS)


def test_without_leases_failover_is_refused_then_proceeds_on_the_admins_word(lab, hv):
    lab.leases("all", False)
    hv.yes("domain", "start", "vol1", "node3")
    hv.yes("domain", "start", "tiny1", "node3")
    hv.ok("node", "scan")
    lab.fault("node3", "power-off")
    r = hv.run("--yes", "node", "failover", "node3")
    refused(r, "no guard", "leases were not in force on node3", "--confirm-off: not given")
    assert where(lab, "vol1", ["node3"]) == [] and where(lab, "tiny1", ["node3"]) == []
    r = hv.run("--yes", "node", "failover", "node3", "--confirm-off")
    assert r.rc == 0 and "guard: confirm-off" in r.out, r
    assert len(where(lab, "vol1", ["node3"])) == 1 and len(where(lab, "tiny1", ["node3"])) == 1


def test_cron_recovers_a_powered_off_node_after_the_configured_scans(lab, hv):
    three_on(lab, hv, "node2")
    hv.configure(recover={"after": 2})
    hv.ok("node", "scan")
    lab.fault("node2", "power-off")
    r = hv.run("node", "scan", "-q", "--recover")                  # silent once: not yet
    assert r.rc == 1 and "recovered" not in r.out, r
    assert all(where(lab, d, ["node2"]) == [] for d in VOLS)
    r = hv.run("node", "scan", "-q", "--recover")                  # silent twice: recover
    assert r.rc == 1, r
    for d in VOLS:
        assert where(lab, d, ["node2"]) in (["node1"], ["node3"]), d
        assert any(ln.startswith(f"WARNING recovered {d}: node2 has not answered 2 scans in a row "
                                 "(leases)") for ln in r.out.splitlines()), r
    r = hv.run("node", "scan", "-q", "--recover")                  # nothing left to do
    assert "recovered" not in r.out and all(len(where(lab, d, ["node2"])) == 1 for d in VOLS), r
    lab.fault("node2", "power-on")
    r = hv.run("node", "scan", "-q")
    assert r.rc == 0 and r.out == "", r


def test_cron_recovers_a_second_dead_node_while_the_first_is_still_off(lab, hv):
    """node3 loses power and is failed over; the node its domains went to loses
    power too while node3 is still off: cron's recovery restarts them on the
    last node (leases guard each start against both silent nodes), each domain
    running once throughout; both come back and the scan is clean."""
    three_on(lab, hv, "node3")
    hv.configure(recover={"after": 1})
    hv.ok("node", "scan")
    lab.fault("node3", "power-off")
    with DoubleRunWatch(lab) as watch:
        r = hv.run("--yes", "node", "failover", "node3")
        assert r.rc == 0, r
        placed = {d: where(lab, d, ["node3"]) for d in VOLS}
        second = Counter(w[0] for w in placed.values()).most_common(1)[0][0]
        survivor = ({"node1", "node2"} - {second}).pop()
        lab.fault(second, "power-off")
        t0 = time.monotonic()
        r = hv.run("node", "scan", "-q", "--recover")
        seconds = time.monotonic() - t0
    assert r.rc == 1, r                                   # two nodes down: anomalies, mailed
    assert "WARNING down node3: node node3 is down since its failover at " in r.out, r
    for d, w in placed.items():
        if w == [second]:
            assert f"WARNING recovered {d}: {second} has not answered 1 scans in a row (leases): " \
                   f"{d} started on {survivor}" in r.out, r
    assert "not-recovered" not in r.out, r
    assert all(where(lab, d, ["node3", second]) == [survivor] for d in VOLS)
    assert all(watch.most[d] == 1 for d in VOLS) and watch.rounds > 3, (watch.most, watch.rounds)
    REPORT.append(f"recovery of a second powered-off node while the first is still off: "
                  f"{seconds:.1f} s, each domain on one node throughout")
    lab.fault("node3", "power-on")
    lab.fault(second, "power-on")
    r = hv.run("node", "scan", "-q")
    assert r.rc == 0 and r.out == "", r
    assert all(where(lab, d) == [survivor] for d in VOLS)
    assert all(n["down_since"] is None for n in json.loads(hv.run("-f", "json", "node", "list").out))
