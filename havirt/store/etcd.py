"""The etcd store: the facts of every home that points at one etcd cluster.

Keys, all under store.prefix (P, /havirt by default):

  P/state/nodes/NAME       one node's record (JSON, as in var/state.yaml)
  P/state/domains/NAME     one domain's record
  P/state/updated          when the state was last written
  P/lock                   the operation lock: who holds it, on a lease
  P/conf/NAME.xml          a definition (the bytes of conf/NAME.xml)
  P/history/NAME/ENTRY     a kept version (conf/.history/NAME/ENTRY)
  P/audit/KEY              one audit entry (a JSON line), ordered by the
                           revision that created it

A commit writes only the records that changed, in one transaction that holds
only while the lock's key is still on this process's lease and every record
it writes is as it was read: two homes never overwrite each other, and a
process that lost the lock writes nothing. The lock is a key on a lease of
store.lock_ttl seconds, kept alive by a thread while the operation runs: a
killed or cut-off holder frees it within lock_ttl; a holder whose lease ran
out stops before its next step (check_lock, LockLost).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager

from havirt.errors import HavirtError, LockBusy, LockLost, StoreUnavailable
from havirt.names import printable
from havirt.store import etcdclient as e
from havirt.store.etcdconf import EtcdConf
from havirt.store.interface import Store, entry_line, parse_entry
from havirt.store.state import FORMAT, State, now_iso, state_from_dict

MAX_ENTRIES = 1 << 20       # audit entries a listing reads at most
TXN_OPS = 64                # writes in one transaction (etcd takes at most 128)
UNSENT = "audit-unsent.log"  # in the home's var/: audit entries etcd did not take


class EtcdStore(Store):
    name = "etcd"
    shared = True

    def __init__(self, cfg, home=None):
        self.cfg = cfg
        self.home = home            # where audit entries etcd did not take are kept
        self.prefix = cfg.prefix
        self.etcd = e.Etcd(cfg)
        self._lock = _Lease(self)
        self.conf = EtcdConf(self)
        self._seen: dict[str, tuple[bytes, int]] = {}     # state key -> (value, mod_revision) read
        self._revision = 0
        self._seq = 0

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])

    def describe(self) -> str:
        where = self.etcd.answered or ", ".join(self.cfg.endpoints)
        rev = f", revision {self._revision}" if self._revision else ""
        return f"etcd at {where} (prefix {self.prefix}{rev})"

    # -- the state ------------------------------------------------------------------------
    def load_state(self) -> State:
        kvs, self._revision = self.etcd.range(self.key("state") + "/", prefix=True)
        self._seen = {kv["key"].decode(): (kv["value"], int(kv.get("mod_revision", 0))) for kv in kvs}
        return self.state_from(self._seen)

    def state_from(self, kvs: dict[str, tuple[bytes, int]]) -> State:
        """The state these keys hold, checked as var/state.yaml is (state_from_dict)."""
        data: dict = {"format": FORMAT, "updated": None, "nodes": {}, "domains": {}}
        where = f"etcd {self.key('state')}/"
        for key, (value, _) in kvs.items():
            rest = key[len(self.key("state")) + 1:]
            kind, _, name = rest.partition("/")
            try:
                doc = json.loads(value)
            except ValueError:
                doc = value.decode(errors="replace")[:40]
            if rest == "updated":
                data["updated"] = doc
            elif kind in ("nodes", "domains") and name:
                data[kind][name] = doc
            else:
                data.setdefault(printable(rest)[:60], doc)   # an unknown key: refused by the check
        return state_from_dict(where, data)

    def state_keys(self, state: State) -> dict[str, bytes]:
        doc = state.to_dict()
        out = {self.key("state", "updated"): json.dumps(doc["updated"]).encode()}
        for kind in ("nodes", "domains"):
            for name, rec in doc[kind].items():
                out[self.key("state", kind, name)] = json.dumps(rec).encode()
        return out

    def save_state(self, state: State, keep_time: bool = False) -> None:
        if not keep_time:
            state.updated = now_iso()
        new = self.state_keys(state)
        updated = self.key("state", "updated")
        compare, ops = [], []
        for key, value in new.items():
            seen = self._seen.get(key)
            if key != updated and (seen is None or seen[0] != value):
                compare.append(e.unchanged(key, seen[1] if seen else 0))
                ops.append(e.put(key, value))
        for key, (_, rev) in self._seen.items():
            if key not in new:
                compare.append(e.unchanged(key, rev))
                ops.append(e.delete(key))
        if not ops and not keep_time:      # no record changed: nothing worth a write
            return
        result = self.write(compare, ops + [e.put(updated, new[updated])], "the state")
        rev = int(result.get("header", {}).get("revision", 0))
        self._seen = {k: (v, rev if k not in self._seen or self._seen[k][0] != v else self._seen[k][1])
                      for k, v in new.items()}

    def write(self, compare: list, ops: list, what: str) -> dict:
        """One transaction, under this process's lock (when it holds one):
        all of `ops` or nothing. Raises LockLost, or HavirtError on a conflict."""
        fence = self._lock.fence()
        result = self.etcd.txn(fence + compare, ops, [e.get(self.key("lock"))])
        if not result.get("succeeded"):
            holder = e.ranged(result)
            if fence and (not holder or int(holder[0].get("lease", 0)) != self._lock.lease):
                self._lock.lost = True
                raise LockLost(f"the lock in etcd ({self.key('lock')}) was lost before {what} "
                               "was written: nothing was written")
            raise HavirtError(f"{what} in etcd changed since it was read (another writer "
                              "outside the lock?): nothing was written; run the command again")
        return result

    # -- the lock -------------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout: float, what: str):
        with self._lock.held(timeout, what):
            yield

    def check_lock(self) -> None:
        self._lock.check()

    # -- the audit log --------------------------------------------------------------------
    def audit_check(self) -> None:
        self.etcd.range(self.key("audit") + "/", prefix=True, count_only=True)

    def audit_append(self, entry: dict) -> None:
        self.audit_append_raw(entry_line(entry))

    def audit_append_raw(self, line: bytes) -> None:
        """One entry of a step that ran; if etcd does not take it, it is kept in
        the home's var/audit-unsent.log (and the error says so): never lost."""
        try:
            self.audit_append_many([line])
        except StoreUnavailable as err:
            if self.home is None:
                raise
            from havirt.store.files import open_to_write
            path = self.home.var / UNSENT
            try:
                fd = open_to_write(path, os.O_WRONLY | os.O_APPEND, "the unsent audit entries")
                try:
                    os.write(fd, line.rstrip(b"\n") + b"\n")
                finally:
                    os.close(fd)
            except (HavirtError, OSError):
                raise err from None
            raise StoreUnavailable(f"{err}; the entry is kept in {path}") from None

    def audit_append_many(self, lines: list[bytes]) -> None:
        """New keys (never an existing one), in the order etcd creates them
        (ties, in one transaction, in the order of their keys)."""
        for i in range(0, len(lines), TXN_OPS):
            compare, ops = [], []
            for line in lines[i:i + TXN_OPS]:
                self._seq += 1
                key = self.key("audit", f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-"
                                        f"{self._seq:08d}")
                compare.append(e.absent(key))
                ops.append(e.put(key, line.rstrip(b"\n")))
            if not self.etcd.txn(compare, ops).get("succeeded"):
                raise HavirtError(f"etcd {self.key('audit')}/: a new entry's key exists already")

    def _audit_kvs(self, tail: int | None) -> list[dict]:
        kvs, _ = self.etcd.range(self.key("audit") + "/", prefix=True, sort_target="CREATE",
                                 sort_order="DESCEND", limit=tail or MAX_ENTRIES)
        return sorted(kvs, key=lambda kv: (int(kv.get("create_revision", 0)), kv["key"]))

    def clear(self) -> None:
        """Every fact under the prefix removed, in one transaction (a move into files)."""
        ops = [{"request_delete_range": {"key": e.b64(self.key(part) + "/"),
                                         "range_end": e.prefix_end(self.key(part) + "/")}}
               for part in ("state", "conf", "history", "audit")]
        self.write([], ops, "the removal of the copied facts")

    def audit_raw(self) -> list[bytes]:
        return [kv["value"] for kv in self._audit_kvs(None)]

    def audit_entries(self, tail: int | None = None) -> list[tuple[str, dict | None]]:
        return [(f"entry {kv['key'].decode(errors='replace')}", parse_entry(kv["value"]))
                for kv in self._audit_kvs(tail)]


class _Lease:
    """The operation lock: P/lock on a lease kept alive by a thread."""

    def __init__(self, store: EtcdStore):
        self.store = store
        self.lease: int | None = None
        self.lost = False
        self.renewed = 0.0          # time.monotonic() of the last renewal etcd confirmed
        self._stop = threading.Event()

    @property
    def ttl(self) -> int:
        return self.store.cfg.lock_ttl

    def fence(self) -> list[dict]:
        """The compare that makes a write hold only while the lock is ours."""
        if self.lease is None:
            return []
        self.check()
        return [e.leased(self.store.key("lock"), self.lease)]

    @contextmanager
    def held(self, timeout: float, what: str):
        etcd, key = self.store.etcd, self.store.key("lock")
        self.lease, self.lost = etcd.grant(self.ttl), False
        self.renewed = time.monotonic()
        info = (f"pid {os.getpid()} on {socket.gethostname()} ({_user()}, since {now_iso()}"
                f"{', ' + what if what else ''})")
        try:
            self._acquire(etcd, key, info, timeout)
        except BaseException:
            etcd.revoke(self.lease)
            self.lease = None
            raise
        self._stop.clear()
        thread = threading.Thread(target=self._keep, name="havirt-lock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=1)
            lease, self.lease = self.lease, None
            try:
                etcd.txn([e.leased(key, lease)], [e.delete(key)])
            except HavirtError:      # etcd gone: the lease runs out by itself
                pass
            etcd.revoke(lease)

    def _acquire(self, etcd, key: str, info: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = etcd.txn([e.absent(key)], [e.put(key, info, self.lease)], [e.get(key)])
            if r.get("succeeded"):
                return
            if time.monotonic() >= deadline:
                holder = e.ranged(r)
                shown = printable(holder[0]["value"].decode(errors="replace"))[:300] if holder else "unknown"
                raise LockBusy(f"etcd {key} is held by {shown}; gave up after {timeout:g} s")
            time.sleep(0.2)
            if time.monotonic() - self.renewed >= self.ttl / 3:    # the lease waits with us
                if etcd.keepalive(self.lease) <= 0:
                    self.lease = etcd.grant(self.ttl)
                self.renewed = time.monotonic()

    def _keep(self) -> None:
        """Renew the lease every third of its TTL until told to stop, or until it
        is lost (a client of its own: the operation's requests go on meanwhile)."""
        etcd = e.Etcd(self.store.cfg)
        while not self._stop.wait(self.ttl / 3):
            try:
                left = etcd.keepalive(self.lease)
            except HavirtError:
                if time.monotonic() - self.renewed >= self.ttl:
                    self.lost = True
                    return
                continue
            if left <= 0:
                self.lost = True
                return
            self.renewed = time.monotonic()

    def check(self) -> None:
        """Whether the lock is still ours, as etcd says now (when it answers: a
        lease can be revoked, or run out while this process was stopped);
        without an answer, whether it was renewed within its TTL."""
        if self.lease is None:
            return
        if not self.lost:
            try:
                kvs, _ = self.store.etcd.range(self.store.key("lock"))
                self.lost = not kvs or int(kvs[0].get("lease", 0)) != self.lease
            except StoreUnavailable:
                pass
        quiet = time.monotonic() - self.renewed
        if self.lost or quiet >= self.ttl - 1:
            self.lost = True
            raise LockLost(f"the lock in etcd ({self.store.key('lock')}) was lost: its lease ran out or "
                           f"was revoked (last renewed {quiet:.0f} s ago, lock_ttl {self.ttl} s; etcd "
                           "unreachable, or this process stopped for longer); stopped before the next "
                           "step: what was done is in the audit log, `havirt node scan` shows where "
                           "things are")


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return str(os.getuid())
