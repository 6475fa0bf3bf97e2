"""The etcd store when etcd misbehaves as real members do: an answer lost
after etcd did the request, an answer cut short, a client cut off from a
member that still serves the others, a holder terminated, a commit larger
than one transaction takes (tests/unit/etcd_server.py: EtcdProxy)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import domain_xml
from etcd_server import EtcdProxy
from test_store_etcd import HOLDER, keys, setup

from havirt.errors import LockBusy, LockLost, StoreRefused, StoreUnavailable
from havirt.store import etcdclient as e
from havirt.store.etcd import EtcdStore
from havirt.store.state import DomainRecord
from havirt.store.storeconfig import StoreConfig


@pytest.fixture
def proxy(etcd):
    p = EtcdProxy(etcd)
    yield p
    p.stop()


def store_via(etcd, *urls, lock_ttl=5):
    return EtcdStore(StoreConfig("etcd", list(urls), etcd.prefix, lock_ttl=lock_ttl))


def test_an_answer_cut_short_is_one_line_exit_6(fake, etcd, proxy):
    setup(fake, etcd)
    fake.write_config(store={**fake.config["store"], "endpoints": [proxy.url]})
    proxy.cut_short.add("kv/range")
    rc, out, err = fake.havirt("node", "list")
    assert rc == 6 and out == "" and err.count("\n") == 1, (out, err)
    assert err.startswith(f"havirt: etcd did not answer (unreachable, or without quorum): {proxy.url}: "
                          "its answer was cut short"), err


def test_a_lock_whose_answer_was_lost_is_not_asked_for_again(etcd, proxy):
    """etcd created P/lock, the answer was lost: sent again to the next member,
    the request found the lock taken (by itself) and waited for it to the end.
    A write that a member may have done is never sent again (as etcd's own
    client does); the lease is revoked, so the lock is free at once."""
    a = store_via(etcd, proxy.url, etcd.url)
    proxy.lose.add("kv/txn")
    t = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"{proxy.url}: closed the connection without an answer; "
                                               "etcd may have done it or not"):
        with a.locked(3, "a"):
            pass
    assert time.monotonic() - t < 2
    assert "lock" not in keys(etcd, "lock")
    with store_via(etcd, etcd.url).locked(0.5, "b"):
        pass


def test_a_commit_whose_answer_was_lost_does_not_say_nothing_was_written(etcd, proxy):
    a = store_via(etcd, proxy.url, etcd.url)
    with a.locked(5, "a"):
        st = a.load_state()
        st.domains["d1"] = DomainRecord("d1", node="node1", state="running")
        proxy.lose.add("kv/txn")
        with pytest.raises(StoreUnavailable) as got:
            a.save_state(st)
    assert "nothing was written" not in str(got.value) and "may have done it" in str(got.value)
    assert "state/domains/d1" in keys(etcd, "state/")       # it was: the message may not deny it


def test_the_lease_is_kept_when_a_renewal_is_cut_short(etcd, proxy):
    """The first member cuts its keepalive answers short: the renewal goes on to
    the next member (renewing twice is harmless), the lock stays held."""
    a = store_via(etcd, proxy.url, etcd.url, lock_ttl=2)
    proxy.cut_short.add("lease/keepalive")
    with a.locked(5, "a"):
        time.sleep(4.5)
        a.check_lock()
        (lock,) = e.Etcd(StoreConfig("etcd", [etcd.url])).range(etcd.prefix + "/lock")[0]
        assert int(lock["lease"]) == a._lock.lease


def test_a_holder_cut_off_stops_half_a_lock_ttl_before_another_can_take_it(etcd, proxy):
    """Home A is cut off from etcd (the members serve home B): A may not start a
    step when its lease could run out before the step has done its work.
    It stops once less than half of lock_ttl is sure to be left, counted from
    when its last renewal was sent; B takes the lock only when the lease ran out."""
    ttl = 6
    a, b = store_via(etcd, proxy.url, lock_ttl=ttl), store_via(etcd, etcd.url, lock_ttl=ttl)
    took = {}

    def other():
        with b.locked(30, "b"):
            took["b"] = time.monotonic()
    with pytest.raises(LockLost):
        with a.locked(5, "a"):
            time.sleep(1)
            proxy.cut = True
            t = threading.Thread(target=other)
            t.start()
            while True:
                try:
                    a.check_lock()
                except LockLost:
                    took["a stopped"] = time.monotonic()
                    raise
                time.sleep(0.05)
    t.join(30)
    assert took["b"] - took["a stopped"] >= ttl / 2 - 0.5, took


def test_a_holder_terminated_frees_the_lock_at_once(etcd):
    """SIGTERM (kill, systemd stopping a unit): the lock is released as on
    Ctrl-C, not left to run out (a flock is freed at once too)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.Popen([sys.executable, "-c", HOLDER, root, etcd.url, etcd.prefix],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline() == "held\n"
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        t = time.monotonic()
        with store_via(etcd, etcd.url).locked(10, "the other home"):
            waited = time.monotonic() - t
    finally:
        p.kill()
        p.wait()
    assert waited < 1, waited


def test_a_commit_of_more_records_than_one_transaction_takes(etcd):
    """etcd takes at most 128 operations in a transaction (--max-txn-ops): a
    scan of 150 domains is still recorded, every record of it."""
    a = store_via(etcd, etcd.url)
    with a.locked(5, "a"):
        st = a.load_state()
        for i in range(150):
            st.domains[f"d{i:03d}"] = DomainRecord(f"d{i:03d}", node="node1", state="running")
        a.save_state(st)
        st.domains["d007"].maintenance = True
        a.save_state(st)
    got = store_via(etcd, etcd.url).load_state()
    assert len(got.domains) == 150 and got.domains["d149"].node == "node1"
    assert got.domains["d007"].maintenance is True and got.updated == st.updated


def test_lock_busy_is_still_said_when_a_member_is_away(etcd):
    """(The lost-answer rule above does not turn a lock held by another into
    a store error: a member that refuses the connection never got the request.)"""
    from etcd_server import closed_port
    dead = f"http://127.0.0.1:{closed_port()}"
    a, b = store_via(etcd, etcd.url), store_via(etcd, dead, etcd.url)
    with a.locked(5, "a"):
        with pytest.raises(LockBusy):
            with b.locked(0.5, "b"):
                pass


def test_the_tail_of_entries_written_in_one_transaction(etcd, monkeypatch):
    """A copy writes 64 audit entries to a transaction (one revision): the tail
    is still the last entries in order, and a wall clock stepping back while a
    batch is made does not reorder it."""
    s = store_via(etcd, etcd.url)
    clock = iter(range(10 ** 12, 0, -1000))
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    s.audit_append_many([json.dumps({"n": i}).encode() for i in range(100)])
    assert [x["n"] for _, x in s.audit_entries()] == list(range(100))
    assert [x["n"] for _, x in s.audit_entries(20)] == list(range(80, 100))


def test_a_listing_reads_every_definition_in_one_request(fake, etcd, monkeypatch):
    setup(fake, etcd)
    store = store_via(etcd, etcd.url)
    with store.locked(5, "seed"):
        for i in range(5):
            store.conf.write(f"more{i}", domain_xml(f"more{i}", memory_mib=64))
    asked = []
    call = e.Etcd.call
    monkeypatch.setattr(e.Etcd, "call", lambda self, path, body: asked.append(path) or call(self, path, body))
    rc, out, err = fake.havirt("-f", "json", "domain", "list")
    assert rc == 0 and {r["name"] for r in json.loads(out)} == {"web1"} | {f"more{i}" for i in range(5)}
    assert asked == ["kv/range", "kv/range"], asked        # the state; the definitions


def test_etcd_gone_after_a_step_ran_does_not_say_nothing_was_changed(fake, etcd, proxy):
    """This host loses etcd right after the start was sent: web1 runs, its
    audit entry waits in var/audit-unsent.log, the state cannot be written.
    The command says the step ran, never that nothing was changed."""
    a, b, _ = setup(fake, etcd)
    fake.write_config(store={**fake.config["store"], "endpoints": [proxy.url]})

    class Cut(fake.runner_class):
        def run(self, node, command, **kw):
            res = super().run(node, command, **kw)
            if "create" in command.text():
                proxy.cut = True
            return res
    fake.runner_class = Cut
    rc, out, err = fake.havirt("--yes", "domain", "start", "web1", "node2")
    assert rc == 6 and "web1" in b.domains, (out, err)
    first = [x for x in err.splitlines() if x.startswith("havirt: ")][0]
    assert first.startswith("havirt: the steps above ran on the nodes, but the state could not be written: "
                            "etcd did not "), err
    assert "audit-unsent.log" in err


def test_an_audit_entry_etcd_refuses_is_kept_in_the_home(etcd, tmp_path):
    """An entry larger than etcd takes (a step's stdin is in it) is kept in
    var/audit-unsent.log as one etcd does not answer for: never lost."""
    from havirt.store.home import Home
    home = Home(tmp_path / "home")
    home.ensure()
    s = EtcdStore(StoreConfig("etcd", [etcd.url], etcd.prefix, lock_ttl=5), home)
    with pytest.raises(StoreRefused, match="larger than max.*; the entry is kept in .*audit-unsent.log"):
        s.audit_append({"node": "node1", "remote": "x" * (3 << 20)})
    (line,) = (home.var / "audit-unsent.log").read_text().splitlines()
    assert json.loads(line)["node"] == "node1"


def kept_file(home, *entries):
    path = home / "var" / "audit-unsent.log"
    path.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in entries))
    return path


def etcd_home(etcd, tmp_path):
    from havirt.store.home import Home
    home = Home(tmp_path / "home")
    home.ensure()
    return EtcdStore(StoreConfig("etcd", [etcd.url], etcd.prefix, lock_ttl=5), home), tmp_path / "home"


def test_kept_entries_are_sent_by_the_next_command_that_is_not_a_dry_run(fake, etcd):
    """Entries of steps that ran while etcd did not answer: `log` says they
    wait (even under -q); a dry run leaves them; the next command that
    changes something (here cron's node scan) sends them in their order, and
    the file goes."""
    setup(fake, etcd)
    path = kept_file(fake.home, {"time": "T1", "node": "node2", "remote": "virsh create x", "exit_code": 0},
                     {"time": "T2", "node": "node2", "remote": "virsh destroy x", "exit_code": 0})
    rc, out, err = fake.havirt("-q", "log")
    assert rc == 0 and f"havirt: warning: 2 audit entries of steps that ran wait in {path}" in err, err
    assert "virsh create x" not in out

    rc, out, err = fake.havirt("domain", "start", "web1", "node2")        # a dry run
    assert rc == 0 and path.exists() and "audit entries kept" not in err, err

    rc, out, err = fake.havirt("node", "scan")
    assert rc == 0, (out, err)
    assert f"sent 2 audit entries kept in {path} to etcd" in err, err
    assert not path.exists()
    rc, out, err = fake.havirt("-f", "json", "log")
    remotes = [x["remote"] for x in json.loads(out)]
    assert remotes[-2:] == ["virsh create x", "virsh destroy x"], remotes
    assert "wait in" not in err


def test_a_kept_entry_etcd_refuses_moves_aside_the_others_are_sent(etcd, tmp_path):
    """etcd refuses an entry larger than it takes every time: it moves to
    var/audit-refused.log (said once, never sent again), the others go."""
    s, home = etcd_home(etcd, tmp_path)
    path = kept_file(home, {"node": "a"}, {"node": "big", "remote": "x" * (3 << 20)}, {"node": "c"})
    with s.locked(5, "test"):
        sent, problems = s.send_kept()
    assert sent == f"sent 2 audit entries kept in {path} to etcd", sent
    (moved,) = problems
    assert moved.startswith("1 audit entry that etcd refuses (") and "larger than max" in moved, moved
    assert moved.endswith(f"moved to {home / 'var' / 'audit-refused.log'}: kept there, not sent again"), moved
    assert not path.exists()
    (line,) = (home / "var" / "audit-refused.log").read_text().splitlines()
    assert json.loads(line)["node"] == "big"
    assert [x["node"] for _, x in s.audit_entries()] == ["a", "c"]
    assert "audit-refused.log" in s.kept()
    with s.locked(5, "test"):
        assert s.send_kept() == ("", [])


def test_kept_entries_stay_while_etcd_does_not_answer(etcd, tmp_path):
    """etcd gone after the lock was taken: the rest stay for the next
    command; those sent before it went are not sent again."""
    from etcd_server import closed_port
    s, home = etcd_home(etcd, tmp_path)
    path = kept_file(home, {"node": "a"}, {"node": "b"}, {"node": "c"})
    live, dead = s.etcd, e.Etcd(StoreConfig("etcd", [f"http://127.0.0.1:{closed_port()}"]))
    sent = []
    real = EtcdStore.audit_append_many

    def once_then_gone(self, lines):
        if sent:
            self.etcd = dead
        real(self, lines)
        sent.append(lines)
    with s.locked(5, "test"):
        EtcdStore.audit_append_many = once_then_gone
        try:
            done, problems = s.send_kept()
        finally:
            EtcdStore.audit_append_many = real
            s.etcd = live
    assert done == f"sent 1 audit entry kept in {path} to etcd", done
    (problem,) = problems
    assert problem.startswith(f"2 audit entries still kept in {path} for the next command: "), problems
    assert [json.loads(x)["node"] for x in path.read_text().splitlines()] == ["b", "c"]
    assert [x["node"] for _, x in s.audit_entries()] == ["a"]


def test_an_interrupt_while_sending_keeps_only_what_was_not_sent(etcd, tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which ends a command as Ctrl-C does) on the third
    entry: the two sent leave the file at once; the third, which etcd may or
    may not have taken, stays (at least once), and the next command sends it."""
    s, home = etcd_home(etcd, tmp_path)
    path = kept_file(home, {"node": "a"}, {"node": "b"}, {"node": "c"})
    real, calls = EtcdStore.audit_append_many, []

    def interrupted_on_the_third(self, lines):
        calls.append(lines)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(self, lines)
    with s.locked(5, "test"):
        monkeypatch.setattr(EtcdStore, "audit_append_many", interrupted_on_the_third)
        with pytest.raises(KeyboardInterrupt):
            s.send_kept()
        monkeypatch.setattr(EtcdStore, "audit_append_many", real)
    assert [json.loads(x)["node"] for x in path.read_text().splitlines()] == ["c"]
    with s.locked(5, "test"):
        assert s.send_kept() == (f"sent 1 audit entry kept in {path} to etcd", [])
    assert [x["node"] for _, x in s.audit_entries()] == ["a", "b", "c"]


def test_a_kept_file_that_cannot_be_read_never_stops_a_command(fake, etcd):
    """A folder, a FIFO or a link where the kept entries should be: every
    command still works; each says, even under -q, that they are not sent
    (a link is not followed: what it points to would go to etcd)."""
    setup(fake, etcd)
    path = fake.home / "var" / "audit-unsent.log"
    secret = fake.home / "secret"
    secret.write_text('{"node": "not an entry"}\n')
    for make in (path.mkdir, lambda: os.mkfifo(path), lambda: path.symlink_to(secret)):
        make()
        rc, out, err = fake.havirt("-q", "node", "scan")
        assert rc == 0 and err.startswith(f"havirt: warning: the kept audit entries in {path} cannot "
                                          "be read ("), err
        assert "): they are not sent" in err, err
        rc, out, err = fake.havirt("-f", "json", "log")
        assert rc == 0 and json.loads(out) is not None and "not sent" in err, (out, err)
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    rc, out, err = fake.havirt("-f", "json", "log")
    assert "not an entry" not in out


def test_a_kept_file_that_cannot_be_removed_is_said_under_q(fake, etcd, monkeypatch):
    """The entries were sent but the file stays (var/ read-only, an immutable
    file): every command would send them again, so each says so, even
    under -q (cron's node scan)."""
    import pathlib
    setup(fake, etcd)
    path = kept_file(fake.home, {"node": "a", "remote": "virsh create x"})
    real = pathlib.Path.unlink

    def refuse(self, *a, **kw):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **kw)
    monkeypatch.setattr(pathlib.Path, "unlink", refuse)
    rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 0, err
    assert f"havirt: warning: {path} could not be removed (Permission denied): every command sends its " \
           "entries to etcd again until it is" in err, err


@pytest.mark.parametrize("lock_timeout", [10, 0])
def test_a_lease_that_ran_out_before_the_lock_was_asked_for_is_granted_again(etcd, monkeypatch, lock_timeout):
    """The process was stopped (Ctrl-Z, a paused VM) for longer than
    lock_ttl between the lease's grant and asking for the lock with it: etcd
    says "requested lease not found". It asks for the lock on a new lease
    instead of stopping with exit 6, whatever lock_timeout (0: do not wait
    for a busy lock) says."""
    s = store_via(etcd, etcd.url, lock_ttl=2)
    real, granted = e.Etcd.grant, []

    def stopped_after_the_first_grant(self, ttl):
        lease = real(self, 1 if not granted else ttl)
        granted.append(lease)
        if len(granted) == 1:
            time.sleep(2.5)              # it ran out meanwhile
        return lease
    monkeypatch.setattr(e.Etcd, "grant", stopped_after_the_first_grant)
    with s.locked(lock_timeout, "after a stop"):
        s.check_lock()
        (lock,) = keys(etcd, "lock").values()
    assert len(granted) == 2 and s._lock.lease is None
    assert b"after a stop" in lock
