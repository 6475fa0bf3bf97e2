"""The etcd store (store/etcd.py) against a real etcd: the state as a key per
record written in guarded transactions, conf/ with its history, the ordered
audit log, the lock on a lease, and what a command does when etcd is away."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import domain_xml, move_to_etcd

from havirt.cli import run
from havirt.errors import HavirtError, LockBusy, LockLost
from havirt.store import etcdclient as e
from havirt.store.etcd import EtcdStore
from havirt.store.state import DomainRecord
from havirt.store.storeconfig import StoreConfig


def store_of(etcd, lock_ttl=5):
    return EtcdStore(StoreConfig("etcd", [etcd.url], etcd.prefix, lock_ttl=lock_ttl))


def keys(etcd, under=""):
    kvs, _ = e.Etcd(StoreConfig("etcd", [etcd.url])).range(etcd.prefix + "/" + under, prefix=True)
    return {kv["key"].decode()[len(etcd.prefix) + 1:]: kv["value"] for kv in kvs}


def setup(fake, etcd, **kw):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1", memory_mib=512)
    return a, b, move_to_etcd(fake, etcd, **kw)


def second_home(fake, tmp_path, name="home-b"):
    """Another admin home whose config.yaml points at the same etcd."""
    home = tmp_path / name
    (home / "conf").mkdir(parents=True)
    (home / "var").mkdir()
    (home / "config.yaml").write_text(yaml.safe_dump(fake.config))
    return home


def havirt_in(fake, home, *args):
    fake.capsys.readouterr()
    rc = run(["--home", str(home), *args], runner_factory=fake.factory)
    out = fake.capsys.readouterr()
    return rc, out.out, out.err


def test_a_record_per_key_and_a_start_recorded_there(fake, etcd):
    a, b, store = setup(fake, etcd)
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc == 0, err
    assert "web1" in b.domains and "web1" not in a.domains
    got = keys(etcd, "state/")
    assert sorted(got) == ["state/domains/web1", "state/nodes/node1", "state/nodes/node2", "state/updated"]
    assert json.loads(got["state/domains/web1"])["node"] == "node2"
    assert not fake.state_file.exists() and not (fake.home / "var" / "audit.log").exists()
    entries = [json.loads(v) for v in keys(etcd, "audit/").values()]
    (entry,) = entries           # what went on stdin is in it: etcd has no file to name
    assert entry["remote"].startswith("virsh -c qemu:///system create /dev/stdin <<'EOF'\n<domain")
    assert f"facts from etcd at {etcd.url} (prefix {etcd.prefix}" in err


def test_the_dry_run_shows_the_definition_it_would_send(fake, etcd):
    setup(fake, etcd)
    rc, out, err = fake.havirt("domain", "start", "web1", "node2")
    assert rc == 0, err
    assert "create /dev/stdin' <<'EOF'\n<domain type='kvm'><name>web1</name>" in out
    assert keys(etcd, "audit/") == {}


def test_another_home_sees_at_once_what_one_did(fake, etcd, tmp_path):
    setup(fake, etcd)
    other = second_home(fake, tmp_path)
    src = tmp_path / "web2.xml"
    src.write_text(domain_xml("web2", memory_mib=64))
    assert fake.havirt("domain", "define", "web2", "--file", str(src))[0] == 0
    assert fake.havirt("--yes", "domain", "start", "web1", "node1")[0] == 0
    rc, out, err = havirt_in(fake, other, "-f", "json", "domain", "list")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["web1"]["node"] == "node1" and "web2" in rows, (out, err)
    rc, out, _ = havirt_in(fake, other, "-f", "json", "log")
    assert [x["node"] for x in json.loads(out)] == ["node1"]
    assert list((other / "conf").iterdir()) == [] and not (other / "var" / "state.yaml").exists()


def test_two_homes_commits_do_not_overwrite_each_other(etcd):
    """Each writes only the records it changed: B's flag and A's domain both stay."""
    a, b = store_of(etcd), store_of(etcd)
    with a.locked(5, "seed"):
        st = a.load_state()
        st.domains["d1"] = DomainRecord("d1")
        st.domains["d2"] = DomainRecord("d2")
        a.save_state(st)
    with b.locked(5, "b"):
        st = b.load_state()
        st.domains["d2"].maintenance = True
        b.save_state(st)
    with a.locked(5, "a"):
        st = a.load_state()
        st.domains["d1"].node, st.domains["d1"].state = "node1", "running"
        a.save_state(st)
    final = store_of(etcd).load_state()
    assert final.domains["d2"].maintenance is True and final.domains["d1"].node == "node1"


def test_a_record_changed_behind_the_readers_back_is_not_overwritten(etcd):
    a = store_of(etcd)
    with a.locked(5, "a"):
        st = a.load_state()
        st.domains["d1"] = DomainRecord("d1")
        a.save_state(st)
        st = a.load_state()
        e.Etcd(StoreConfig("etcd", [etcd.url])).txn([], [e.put(etcd.prefix + "/state/domains/d1",
                                                               '{"state": "running", "node": "n9"}')])
        st.domains["d1"].maintenance = True
        st.domains["d3"] = DomainRecord("d3")
        with pytest.raises(HavirtError, match="changed since it was read.*nothing was written"):
            a.save_state(st)
    final = store_of(etcd).load_state()
    assert final.domains["d1"].node == "n9" and "d3" not in final.domains


def test_a_bad_record_is_refused_as_a_bad_state_file_is(fake, etcd):
    setup(fake, etcd)
    e.Etcd(StoreConfig("etcd", [etcd.url])).txn([], [e.put(etcd.prefix + "/state/nodes/node1",
                                                           '{"address": "10.0.0.1", "cpus": -1}')])
    rc, out, err = fake.havirt("node", "list")
    assert rc == 2 and err.count("\n") == 1
    assert f"etcd {etcd.prefix}/state/: nodes node1: 'cpus' must be" in err


def test_the_lock_keeps_a_second_home_out_and_names_the_holder(etcd):
    a, b = store_of(etcd), store_of(etcd)
    with a.locked(5, "havirt domain start web1"):
        t = time.monotonic()
        with pytest.raises(LockBusy, match=rf"etcd {etcd.prefix}/lock is held by pid {os.getpid()} .*"
                                           r"havirt domain start web1\); gave up after 0.5 s"):
            with b.locked(0.5, "b"):
                pass
        assert time.monotonic() - t < 2
    with b.locked(0.5, "b"):        # released: taken at once
        assert keys(etcd, "lock")


HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from havirt.store.etcd import EtcdStore
from havirt.store.storeconfig import StoreConfig
s = EtcdStore(StoreConfig("etcd", [sys.argv[2]], sys.argv[3], lock_ttl=5))
with s.locked(5, "the holder"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_holder_killed_with_sigkill_frees_the_lock_within_lock_ttl(etcd):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.Popen([sys.executable, "-c", HOLDER, root, etcd.url, etcd.prefix],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "held\n"
        time.sleep(2.5)              # past a renewal: a live holder keeps it beyond its first TTL
        os.kill(p.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        p.kill()
        p.wait()
    with store_of(etcd).locked(10, "the other home"):
        waited = time.monotonic() - killed
    assert 1 < waited <= 5 + 1, waited


def test_an_operation_whose_lease_ran_out_stops_before_its_next_step(fake, etcd):
    """The lease revoked between the two steps of a move (as etcd does when it
    hears nothing for lock_ttl): the second step is never sent, exit 5."""
    a, b, _ = setup(fake, etcd)
    fake.nodes["node1"].add("web1", memory_mib=512)
    revoke = e.Etcd(StoreConfig("etcd", [etcd.url]))

    class Revoking(fake.runner_class):
        def run(self, node, command, **kw):
            res = super().run(node, command, **kw)
            if "shutdown" in command.text():
                lock = revoke.range(etcd.prefix + "/lock")[0][0]
                revoke.revoke(int(lock["lease"]))
            return res
    fake.runner_class = Revoking
    rc, out, err = fake.havirt("--yes", "domain", "migrate", "web1", "node2", "--offline")
    assert rc == 5, (out, err)
    assert "ran out" in err and "stopped before the next step" in err
    sent = [c for n, c in fake.changing_calls()]
    assert any("shutdown" in c for c in sent) and not any("create" in c for c in sent)
    assert [json.loads(v)["remote"].split()[3] for v in keys(etcd, "audit/").values()] == ["shutdown"]


def test_definitions_and_their_history_live_in_etcd(fake, etcd, tmp_path):
    setup(fake, etcd)
    src = tmp_path / "new.xml"
    src.write_text(domain_xml("web1", memory_mib=256))
    rc, out, err = fake.havirt("domain", "define", "web1", "--file", str(src), "--force")
    assert rc == 0, err
    assert keys(etcd, "conf/")["conf/web1.xml"] == src.read_bytes()
    (kept,) = keys(etcd, "history/")
    assert kept.startswith("history/web1/") and kept.endswith("-define.xml")
    assert f"etcd {etcd.prefix}/{kept}" in out
    fake.nodes["node1"].reachable = True
    rc, out, err = fake.havirt("domain", "undefine", "web1")
    assert rc == 0, err
    assert "conf/web1.xml" not in keys(etcd, "conf/")
    assert sorted(v.split("-")[-1] for v in keys(etcd, "history/")) == ["define.xml", "undefine.xml"]
    assert list((fake.home / "conf").iterdir()) == []


def test_etcd_away_is_one_line_exit_6_and_nothing_sent(fake, etcd):
    setup(fake, etcd)
    from etcd_server import closed_port
    dead = f"http://127.0.0.1:{closed_port()}"
    fake.write_config(store={**fake.config["store"], "endpoints": [dead]})
    for args in (["node", "list"], ["--yes", "domain", "start", "web1", "node2"], ["log"]):
        t = time.monotonic()
        rc, out, err = fake.havirt(*args)
        assert rc == 6 and out == "" and err.count("\n") == 1, (args, out, err)
        assert err.startswith(f"havirt: etcd did not answer (unreachable, or without quorum): {dead}: "
                              "connection refused; nothing was changed")
        assert time.monotonic() - t < 3
    assert fake.changing_calls() == [] and fake.calls == []


def test_a_member_away_is_passed_over(fake, etcd):
    a, b, _ = setup(fake, etcd)
    from etcd_server import closed_port
    fake.write_config(store={**fake.config["store"],
                             "endpoints": [f"http://127.0.0.1:{closed_port()}", etcd.url]})
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc == 0, err
    assert "web1" in b.domains


def test_the_audit_log_keeps_its_order_and_the_tail(etcd):
    s = store_of(etcd)
    for i in range(12):
        s.audit_append({"n": i})
    assert [x["n"] for _, x in s.audit_entries()] == list(range(12))
    assert [x["n"] for _, x in s.audit_entries(3)] == [9, 10, 11]


def test_completion_offers_the_names_etcd_holds_and_nothing_when_it_is_away(fake, etcd, monkeypatch):
    from click.shell_completion import ShellComplete

    from havirt.cli import load_commands
    from havirt.cli.group import cli
    setup(fake, etcd)
    load_commands()
    monkeypatch.setenv("HAVIRT_HOME", str(fake.home))

    def offered(*words):
        comp = ShellComplete(cli, {}, "havirt", "_HAVIRT_COMPLETE")
        return [item.value for item in comp.get_completions(list(words[:-1]), words[-1])]
    assert offered("domain", "start", "w") == ["web1"]
    assert offered("node", "scan", "") == ["node1", "node2"]
    from etcd_server import closed_port
    fake.write_config(store={**fake.config["store"], "endpoints": [f"http://127.0.0.1:{closed_port()}"]})
    t = time.monotonic()
    assert offered("domain", "start", "w") == []
    assert time.monotonic() - t < 2


def test_a_commit_after_the_lock_was_lost_writes_nothing(etcd):
    a = store_of(etcd)
    with pytest.raises(LockLost, match="was lost"):
        with a.locked(5, "a"):
            st = a.load_state()
            st.domains["d1"] = DomainRecord("d1")
            lock = keys(etcd, "lock")
            assert lock
            e.Etcd(StoreConfig("etcd", [etcd.url])).revoke(a._lock.lease)
            a.save_state(st)
    assert "d1" not in store_of(etcd).load_state().domains and keys(etcd, "state/") == {}


def test_a_wait_for_the_lock_longer_than_lock_ttl_keeps_its_lease(etcd):
    """B waits 7 s (lock_ttl 5 s) for A: its own lease must still hold the lock it then takes."""
    import threading
    a, b = store_of(etcd), store_of(etcd)
    took = threading.Event()

    def hold():
        with a.locked(5, "a"):
            took.set()
            time.sleep(7)
    t = threading.Thread(target=hold)
    t.start()
    took.wait(5)
    with b.locked(15, "b"):
        (lock,) = e.Etcd(StoreConfig("etcd", [etcd.url])).range(etcd.prefix + "/lock")[0]
        assert int(lock["lease"]) == b._lock.lease
        b.check_lock()
    t.join()


def test_an_audit_entry_etcd_does_not_take_is_kept_in_the_home(fake, etcd):
    """etcd gone between the lock and the step's audit entry: the step ran, its
    entry waits in var/audit-unsent.log, and the command says so (exit 1)."""
    a, b, _ = setup(fake, etcd)
    from etcd_server import closed_port
    dead = e.Etcd(StoreConfig("etcd", [f"http://127.0.0.1:{closed_port()}"]))

    class Cut(fake.runner_class):
        def run(self, node, command, **kw):
            res = super().run(node, command, **kw)
            if "create" in command.text():
                self.app.store.etcd = dead            # etcd away from now on
                self.app.store._lock.check = lambda: None
            return res
    fake.runner_class = Cut
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc != 0 and "web1" in b.domains
    unsent = (fake.home / "var" / "audit-unsent.log").read_text().splitlines()
    assert len(unsent) == 1 and json.loads(unsent[0])["node"] == "node2"
    (line,) = [x for x in err.splitlines() if "audit log" in x]
    assert "could not write 1 entry of the audit log: node2: virsh -c qemu:///system create " \
           "/dev/stdin <<'EOF': etcd did not answer" in line and line.endswith("audit-unsent.log"), err
