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
process that lost the lock writes nothing. (etcd takes at most 128
operations in a transaction: more than TXN_OPS records are written in
several, each so guarded.) The lock is a key on a lease of
store.lock_ttl seconds, kept alive by a thread while the operation runs: a
killed or cut-off holder frees it within lock_ttl; a holder whose lease ran
out stops before its next step (check_lock, LockLost).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from contextlib import contextmanager

from havirt.errors import HavirtError, HomeError, LockBusy, LockLost, StoreRefused, StoreUnavailable
from havirt.names import printable
from havirt.store import etcdclient as e
from havirt.store.etcdconf import EtcdConf
from havirt.store.interface import Store, entry_line, parse_entry
from havirt.store.state import FORMAT, State, now_iso, state_from_dict

MAX_ENTRIES = 1 << 20       # audit entries a listing reads at most
TXN_OPS = 64                # writes in one transaction (etcd takes at most 128)
LEASE_GONE = "requested lease not found"   # etcd's ErrLeaseNotFound
UNSENT = "audit-unsent.log"    # in the home's var/: audit entries etcd did not take (yet)
REFUSED = "audit-refused.log"  # in var/: kept entries etcd refuses (too large), not sent again


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
        """The records that changed, TXN_OPS to a transaction (etcd takes at most
        128 operations in one), `updated` with the last: a commit of up to
        TXN_OPS records is whole or not at all; a larger one (a scan of a big
        cluster) is written in parts, each under the lock, and a failure says how
        far it got (each record stays whole: the old one or the new one)."""
        if not keep_time:
            state.updated = now_iso()
        new = self.state_keys(state)
        updated = self.key("state", "updated")
        changes: list[tuple[str, bytes | None]] = [
            (key, value) for key, value in new.items()
            if key != updated and (key not in self._seen or self._seen[key][0] != value)]
        changes += [(key, None) for key in self._seen if key not in new]
        if not changes and not keep_time:      # no record changed: nothing worth a write
            return
        changes.append((updated, new[updated]))
        for i in range(0, len(changes), TXN_OPS):
            part = changes[i:i + TXN_OPS]
            compare = [e.unchanged(k, self._seen[k][1] if k in self._seen else 0) for k, _ in part
                       if k != updated]
            ops = [e.delete(k) if v is None else e.put(k, v) for k, v in part]
            try:
                result = self.write(compare, ops, "the state")
            except HavirtError as err:
                if i:
                    raise type(err)(f"{err} (this part; {i} of the {len(changes)} records changed "
                                    "were written before it, each whole)") from None
                raise
            rev = int(result.get("header", {}).get("revision", 0))
            for k, v in part:
                if v is None:
                    self._seen.pop(k, None)
                else:
                    self._seen[k] = (v, rev)

    def write(self, compare: list, ops: list, what: str) -> dict:
        """One transaction, under this process's lock (when it holds one):
        all of `ops` or nothing. Raises LockLost, or HavirtError on a conflict."""
        fence = self._lock.fence()
        try:
            result = self.etcd.txn(fence + compare, ops, [e.get(self.key("lock"))])
        except StoreRefused as err:          # too large, ...: say what it was
            raise StoreRefused(f"{what}: {err}") from None
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
        """One entry of a step that ran; if etcd does not take it (no answer, or
        refused: too large), it is kept in the home's var/audit-unsent.log (and
        the error says so): never lost."""
        try:
            self.audit_append_many([line])
        except (StoreUnavailable, StoreRefused) as err:
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
            raise type(err)(f"{err}; the entry is kept in {path}") from None

    def _kept_lines(self) -> tuple[list[bytes], str]:
        """The entries in var/audit-unsent.log, and why they cannot be read
        ("": they can). A symbolic link there is not followed: what it points
        to would go to etcd as audit entries (havirt writes the file through
        no link either)."""
        from havirt.store.files import MAX_LOG, read_file
        path = self.home.var / UNSENT
        try:
            data = read_file(path, MAX_LOG, follow=False)
        except FileNotFoundError:
            return [], ""
        except OSError as err:
            why = "it is a symbolic link" if err.errno == errno.ELOOP else err.strerror or str(err)
            return [], f"the kept audit entries in {path} cannot be read ({why}): they are not sent"
        return [line for line in data.split(b"\n") if line.strip()], ""

    def refused_path(self):
        return self.home.var / REFUSED if self.home is not None else None

    def refused_raw(self) -> list[bytes]:
        """The entries in var/audit-refused.log (never through a link); one
        that cannot be read stops the caller (a move would leave it behind)."""
        if self.home is None:
            return []
        from havirt.store.files import MAX_LOG, read_file, reason
        path = self.refused_path()
        try:
            data = read_file(path, MAX_LOG, follow=False)
        except FileNotFoundError:
            return []
        except OSError as err:
            why = "it is a symbolic link" if err.errno == errno.ELOOP else reason(err)
            raise HomeError(f"{path}: the audit entries etcd refused cannot be read ({why})") from None
        return [line for line in data.split(b"\n") if line.strip()]

    def kept(self) -> str:
        if self.home is None:
            return ""
        lines, problem = self._kept_lines()
        refused = self.home.var / REFUSED
        lines_out = [problem] if problem else []
        if lines:
            lines_out.append(f"{_entries(len(lines))} of steps that ran wait in {self.home.var / UNSENT} "
                             "(etcd did not answer); the next command that is not a dry run sends them")
        if refused.exists():
            lines_out.append(f"audit entries etcd refused (larger than it takes) are kept in {refused}")
        return "\n".join(lines_out)

    def send_kept(self) -> tuple[str, list[str]]:
        """The entries kept in var/audit-unsent.log, sent in their order (each
        keeps its own time; etcd lists it where it arrives), one transaction
        each; what is left is written back as soon as the sending ends, however
        it ends (Ctrl-C included), and the file goes once every one is taken.
        With no answer, the rest stay for the next command. An entry etcd
        refuses (too large: it would be refused every time) moves to
        var/audit-refused.log, said once, and the others are sent. At least
        once: an entry whose answer was lost may be there twice."""
        if self.home is None:
            return "", []
        lines, problem = self._kept_lines()
        if problem or not lines:
            return "", [problem] if problem else []
        path, refused_path = self.home.var / UNSENT, self.home.var / REFUSED
        refused: list[bytes] = []
        why_refused = stopped = ""
        n = 0
        problems: list[str] = []
        try:
            for n, line in enumerate(lines):
                try:
                    self.audit_append_many([line])
                except StoreRefused as err:          # this one (too large): the others go on
                    refused.append(line)
                    why_refused = str(err)
            n = len(lines)
        except HavirtError as err:                   # no answer, or anything else: the rest wait
            stopped = str(err)
        finally:
            left = lines[n:]                         # not sent: the one that failed, and those after it
            if refused:
                moved = _append_lines(refused_path, refused)
                if moved:
                    left = refused + left
                    problems.append(f"{_entries(len(refused))} that etcd refuses ({why_refused}) could not "
                                    f"be moved to {refused_path} ({moved}): still kept in {path}")
                else:
                    problems.append(f"{_entries(len(refused))} that etcd refuses ({why_refused}) moved to "
                                    f"{refused_path}: kept there, not sent again")
            if len(left) < len(lines):
                problems += self._keep_only(path, left)
        if stopped:
            problems.append(f"{_entries(len(lines) - n)} still kept in {path} for the next command: "
                            f"{stopped}")
        sent = n - len(refused)
        return (f"sent {_entries(sent)} kept in {path} to etcd" if sent else ""), problems

    @staticmethod
    def _keep_only(path, left: list[bytes]) -> list[str]:
        """The kept file holds `left` only from now on (removed when empty)."""
        from havirt.store.files import reason, replace_file
        try:
            if left:
                replace_file(path, b"".join(x + b"\n" for x in left), 0o600)
            else:
                path.unlink()
        except OSError as err:
            return [f"{path} could not be {'rewritten' if left else 'removed'} ({reason(err)}): every "
                    "command sends its entries to etcd again until it is; remove the sent ones from it"]
        return []

    def audit_append_many(self, lines: list[bytes]) -> None:
        """New keys (never an existing one), in the order etcd creates them
        (ties, in one transaction, in the order of their keys)."""
        for i in range(0, len(lines), TXN_OPS):
            compare, ops = [], []
            when = f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}"   # one per transaction
            for line in lines[i:i + TXN_OPS]:
                self._seq += 1
                key = self.key("audit", f"{when}-{self._seq:08d}")
                compare.append(e.absent(key))
                ops.append(e.put(key, line.rstrip(b"\n")))
            if not self.etcd.txn(compare, ops).get("succeeded"):
                raise HavirtError(f"etcd {self.key('audit')}/: a new entry's key exists already")

    def _audit_kvs(self, tail: int | None) -> list[dict]:
        """The last `tail` entries (None: all), oldest first. etcd orders by the
        revision only; entries of one transaction (TXN_OPS at most) share it, so a
        tail asks for TXN_OPS more and orders the ties by their keys here."""
        kvs, _ = self.etcd.range(self.key("audit") + "/", prefix=True, sort_target="CREATE",
                                 sort_order="DESCEND", limit=tail + TXN_OPS if tail else MAX_ENTRIES)
        kvs.sort(key=lambda kv: (int(kv.get("create_revision", 0)), kv["key"]))
        return kvs[-tail:] if tail else kvs

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
    """The operation lock: P/lock on a lease kept alive by a thread.

    `until` is when the lease runs out at the latest, as far as this process
    knows: the TTL etcd gave, counted from when the renewal was sent (etcd
    counts from when it got it, later; the PD lease of TiKV counts so too). A
    step starts only while at least half of lock_ttl is sure to be left (see
    check): a holder cut off from etcd stops half a TTL before another home
    can take the lock, not at the last second."""

    def __init__(self, store: EtcdStore):
        self.store = store
        self.lease: int | None = None
        self.lost = False
        self.until = 0.0            # time.monotonic() by which the lease runs out at the latest
        self._stop = threading.Event()

    @property
    def ttl(self) -> int:
        return self.store.cfg.lock_ttl

    def left(self) -> float:
        return self.until - time.monotonic()

    def fence(self) -> list[dict]:
        """The compare that makes a write hold only while the lock is ours."""
        if self.lease is None:
            return []
        self.check()
        return [e.leased(self.store.key("lock"), self.lease)]

    def _grant(self, etcd) -> None:
        sent = time.monotonic()
        self.lease = etcd.grant(self.ttl)
        self.until = sent + self.ttl

    def renew(self, etcd) -> None:
        """Renew the lease (raises HavirtError when etcd does not answer)."""
        sent, lease = time.monotonic(), self.lease
        left = etcd.keepalive(lease)
        if lease != self.lease:      # released meanwhile
            return
        if left <= 0:
            self.lost = True
        else:
            self.until = max(self.until, sent + left)

    @contextmanager
    def held(self, timeout: float, what: str):
        etcd, key = self.store.etcd, self.store.key("lock")
        info = (f"pid {os.getpid()} on {socket.gethostname()} ({_user()}, since {now_iso()}"
                f"{', ' + what if what else ''})")
        with _terminated_as_interrupted():
            self.lost = False
            self._grant(etcd)
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
        regranted = 0
        while True:
            try:
                r = etcd.txn([e.absent(key)], [e.put(key, info, self.lease)], [e.get(key)])
            except StoreRefused as err:
                # the lease ran out while this process was stopped (Ctrl-Z, a
                # paused VM) before it asked with it: ask again on a new one
                # (whatever lock_timeout says: waiting for a busy lock is not
                # what took the time)
                if LEASE_GONE not in str(err) or regranted >= 3:
                    raise
                regranted += 1
                self._grant(etcd)
                continue
            if r.get("succeeded"):
                return
            if time.monotonic() >= deadline:
                holder = e.ranged(r)
                shown = printable(holder[0]["value"].decode(errors="replace"))[:300] if holder else "unknown"
                raise LockBusy(f"etcd {key} is held by {shown}; gave up after {timeout:g} s")
            time.sleep(0.2)
            if self.left() <= self.ttl * 2 / 3:     # the lease waits with us
                self.renew(etcd)
                if self.lost:
                    self.lost = False
                    self._grant(etcd)

    def _keep(self) -> None:
        """Renew the lease every third of its TTL until told to stop, or until it
        is lost (a client of its own: the operation's requests go on meanwhile).
        Whatever goes wrong in a renewal counts as no answer: the thread never
        dies while the lease may still be renewed."""
        etcd = e.Etcd(self.store.cfg)
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew(etcd)
            except Exception:        # no answer (HavirtError), or anything unforeseen
                pass
            if self.lost or self.left() <= 0:
                self.lost = True
                return

    def check(self) -> None:
        """Whether the lock is still ours, as etcd says now (when it answers: a
        lease can be revoked, or run out while this process was stopped), and
        whether at least half of lock_ttl is sure to be left (else the lease is
        renewed here, when the thread fell behind and etcd answers)."""
        if self.lease is None:
            return
        if not self.lost:
            try:
                kvs, _ = self.store.etcd.range(self.store.key("lock"))
                self.lost = not kvs or int(kvs[0].get("lease", 0)) != self.lease
                if not self.lost and self.left() < self.ttl / 2:
                    self.renew(self.store.etcd)
            except StoreUnavailable:
                pass
        if self.lost or self.left() < self.ttl / 2:
            self.lost = True
            quiet = self.ttl - self.left()
            raise LockLost(f"the lock in etcd ({self.store.key('lock')}) was lost: its lease ran out or "
                           f"was revoked, or could run out within half of lock_ttl (last renewed "
                           f"{quiet:.0f} s ago, lock_ttl {self.ttl} s; etcd unreachable, or this "
                           "process stopped for longer); stopped before the next step: what was done "
                           "is in the audit log, `havirt node scan` shows where things are")


@contextmanager
def _terminated_as_interrupted():
    """While the lock is held, SIGTERM ends the process as Ctrl-C does (the lock
    released, what the work found committed), not at once with the lock left
    to run out (a flock is freed by the kernel; a lease is not)."""
    import signal
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _append_lines(path, lines: list[bytes]) -> str:
    """Append `lines` to `path` (never through a link); why not ("": done)."""
    from havirt.store.files import open_to_write, reason
    try:
        fd = open_to_write(path, os.O_WRONLY | os.O_APPEND, "the refused audit entries")
        try:
            os.write(fd, b"".join(x.rstrip(b"\n") + b"\n" for x in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
    except HavirtError as err:
        return str(err)
    except OSError as err:
        return reason(err)
    return ""


def _entries(n: int) -> str:
    return f"{n} audit entr{'y' if n == 1 else 'ies'}"


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return str(os.getuid())
