"""node failover's starts run at the same time (several on one node too, at
most ops/failover.PER_NODE), while each decision stays the one taken when
they ran one after the other; a start that fails hides none of the others."""

import json
import re
import threading

import pytest
from fakes import FakeRunner
from test_failover import intruder_before_the_recheck, power_off, setup, where

from havirt.errors import NodeUnreachable
from havirt.remote import commands as remote
from havirt.remote.transport import Result

V = "virsh -c qemu:///system"
QEMU_DIED = "error: internal error: qemu unexpectedly closed the monitor\n"


class Starts(FakeRunner):
    """The fake cluster, with each `virsh create` seen as it begins and ends
    (outside the fake's own lock: starts sent at once are in flight at once)."""

    events: list = []
    meet = None                  # a threading.Barrier every start waits at before it runs
    fail: dict = {}              # domain -> how its start fails ("exit" or "unreachable")
    failed = threading.Event()   # set once that start has failed (the others wait for it)

    def run(self, node, command, stdin=None, timeout=None, on_output=None):
        if command != remote.create(self.cfg):
            return super().run(node, command, stdin, timeout, on_output)
        name = re.search(rb"<name>([^<]+)</name>", stdin).group(1).decode()
        self.events.append(("begin", node, name))
        if name in self.fail:
            self.calls.append((node, command.text()))
            self.events.append(("end", node, name))
            self.failed.set()
            if self.fail[name] == "unreachable":
                raise NodeUnreachable(node, "ssh session failed: Connection reset by peer")
            return Result(node, command.text(), 1, "", QEMU_DIED)
        if self.meet is not None:
            try:
                self.meet.wait()
            except threading.BrokenBarrierError:
                self.events.append(("alone", node, name))     # nobody came: one at a time
        if self.fail and not self.failed.wait(5):
            self.events.append(("late", node, name))          # it did not run beside the failure
        try:
            return super().run(node, command, stdin, timeout, on_output)
        finally:
            self.events.append(("end", node, name))


@pytest.fixture
def starts(fake):
    class Run(Starts):
        events, fail, failed = [], {}, threading.Event()
    fake.runner_class = Run
    return Run


def audit(fake):
    return [json.loads(line) for line in fake.audit_lines()]


def test_the_three_starts_are_in_flight_at_once_two_of_them_on_one_node(fake, starts):
    power_off(setup(fake))
    starts.meet = threading.Barrier(3, timeout=5)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 0, (out, err)
    assert [e[0] for e in starts.events] == ["begin"] * 3 + ["end"] * 3, starts.events
    targets = [node for what, node, _ in starts.events if what == "begin"]
    assert sorted(targets.count(n) for n in set(targets)) == [1, 2], targets
    for d in ("vol1", "vol2", "vol3"):
        assert len(where(fake, d)) == 1 and f"{d}: started on {where(fake, d)[0]}" in out
    log = audit(fake)
    assert sorted(e["remote"] for e in log) == [f"{V} create /dev/stdin < conf/{d}.xml"
                                               for d in ("vol1", "vol2", "vol3")]
    assert [e["time"] for e in log] == sorted(e["time"] for e in log)
    assert all(e["outcome"] == "ok" and e["exit_code"] == 0 for e in log)


def test_no_more_than_per_node_starts_at_once_on_one_node(fake, starts, monkeypatch):
    from havirt.ops import failover
    monkeypatch.setattr(failover, "PER_NODE", 2)
    domains = tuple((f"vol{i}", 256) for i in range(1, 5))
    power_off(setup(fake, domains=domains))
    starts.meet = threading.Barrier(2, timeout=5)     # each start waits for a second one
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3", "--to", "node1")
    assert rc == 0, (out, err)
    flying, most = 0, 0
    for what, node, _ in starts.events:
        assert node == "node1" and what != "alone", starts.events
        flying += {"begin": 1, "end": -1}[what]
        most = max(most, flying)
    assert most == 2, starts.events                   # two by two, never three at once
    assert all(where(fake, d) == ["node1"] for d, _ in domains)


@pytest.mark.parametrize("failure, logged", [
    ("exit", "exit 1: " + QEMU_DIED.strip()),
    ("unreachable", "unreachable: ssh session failed: Connection reset by peer")])
def test_a_start_that_fails_while_the_others_run_hides_none_of_them(fake, starts, failure, logged):
    """vol1 and vol3 wait, in flight, until vol2's start has failed; then they
    start, are reported, verified and recorded as if vol2 had not failed."""
    power_off(setup(fake))
    starts.fail = {"vol2": failure}
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 1, (out, err)
    assert "late" not in [e[0] for e in starts.events], starts.events
    assert [name for what, _, name in starts.events if what == "end"][0] == "vol2", starts.events
    target = next(node for _, node, name in starts.events if name == "vol2")
    said = (f"start vol2 on {target} failed on {target}: {logged}" if failure == "exit" else
            f"node {target} unreachable: ssh session failed: Connection reset by peer")
    assert f"vol2: failed on {target}: {said}" in out, out
    assert where(fake, "vol2") == []
    for d in ("vol1", "vol3"):
        assert len(where(fake, d)) == 1 and f"{d}: started on {where(fake, d)[0]}" in out
        assert fake.state().domains[d].node == where(fake, d)[0]
    outcomes = {e["remote"].split("conf/")[1]: e["outcome"] for e in audit(fake)}
    assert outcomes == {"vol1.xml": "ok", "vol2.xml": logged, "vol3.xml": "ok"}, outcomes


def test_a_start_refused_by_its_lease_leaves_its_room_to_the_next_as_one_by_one(fake, starts,
                                                                                monkeypatch):
    """Planned while node1 had room for both; before the re-check a domain
    started there by hand leaves room for one: vol2 fits only if vol1 takes
    nothing. vol1 still runs on node3 (alive behind a cut link: its lease
    refuses the start), vol2 died there: vol2 waits for vol1's answer, then
    starts, as when the restarts ran one after the other."""
    node3 = setup(fake, domains=(("vol1", 1024), ("vol2", 1024)))
    node3.reachable = False
    del node3.domains["vol2"]
    intruder_before_the_recheck(fake, monkeypatch)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3", "--to", "node1")
    assert rc == 1, (out, err)
    assert "vol1: refused by its lease: it still runs on node3, which is alive" in out, out
    assert "vol2: started on node1" in out, out
    assert [(what, name) for what, _, name in starts.events] == [
        ("begin", "vol1"), ("end", "vol1"), ("begin", "vol2"), ("end", "vol2")]
    assert where(fake, "vol1") == ["node3"] and where(fake, "vol2") == ["node1"]


def test_with_ssh_parallel_1_the_starts_run_one_after_the_other(fake, starts):
    power_off(setup(fake))
    fake.write_config(ssh={"parallel": 1})
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 0, (out, err)
    assert [e[0] for e in starts.events] == ["begin", "end"] * 3, starts.events
    assert all(len(where(fake, d)) == 1 for d in ("vol1", "vol2", "vol3"))


def test_on_an_etcd_home_the_starts_overlap_each_one_whole_audit_entry(fake, starts, etcd):
    """On a home whose facts are in etcd the starts run at once too: the lock
    is checked before each, and each start's audit entry is in etcd, whole."""
    from conftest import move_to_etcd

    from havirt.store import etcdclient as e
    from havirt.store.storeconfig import StoreConfig
    node3 = setup(fake)
    move_to_etcd(fake, etcd)
    power_off(node3)
    starts.meet = threading.Barrier(3, timeout=5)
    rc, out, err = fake.havirt("--yes", "node", "failover", "node3")
    assert rc == 0, (out, err)
    assert [x[0] for x in starts.events] == ["begin"] * 3 + ["end"] * 3, starts.events
    kvs, _ = e.Etcd(StoreConfig("etcd", [etcd.url])).range(etcd.prefix + "/audit/", prefix=True)
    kvs.sort(key=lambda kv: int(kv["create_revision"]))
    log = [json.loads(kv["value"]) for kv in kvs]
    assert sorted(x["remote"].split("<<'EOF'")[0] for x in log) == [f"{V} create /dev/stdin "] * 3
    assert sorted(re.search(r"<name>(\w+)</name>", x["remote"]).group(1) for x in log) == [
        "vol1", "vol2", "vol3"]
    assert [x["time"] for x in log] == sorted(x["time"] for x in log)
    assert all(x["outcome"] == "ok" for x in log)
    assert all(len(where(fake, d)) == 1 for d in ("vol1", "vol2", "vol3"))
