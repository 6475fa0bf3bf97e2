"""Where a home keeps its facts: the store, below the unit of work.

A store holds four things: the state (nodes, domains, maintenance flags, the
cache of the last scan), the operation lock, conf/ (the definitions with
their history) and the audit log. Two backends, chosen by config.yaml's
`store.backend`:

  * `files` (the default): the home itself, var/state.yaml, var/havirt.lock
    (flock), conf/ and conf/.history/, var/audit.log;
  * `etcd`: an etcd cluster that several homes share (store/etcd.py, which
    alone imports an etcd client, and only when a command opens that store).

Every operation reaches them through the unit of work (ops/work.py): only
App.work takes the lock, only Work.commit writes the state, only the
executor appends to the audit log. Nothing above this layer knows which
backend it talks to, so every rule, scan and plan works unchanged on both.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from havirt.errors import HomeError
from havirt.store.conf import Conf, FilesConf
from havirt.store.files import MAX_LOG, open_to_write, read_file, reason
from havirt.store.state import State, load_state, locked, save_state


class Store:
    """The interface every backend gives (see the module docstring)."""

    name = "?"                       # files, etcd
    shared = False                   # True: other homes read and write it too
    conf: Conf

    def describe(self) -> str:
        """Where the facts come from, in one line."""
        raise NotImplementedError

    # -- the state ------------------------------------------------------------------------
    def load_state(self) -> State:
        """The state as it is now (no lock: a reader sees one whole version)."""
        raise NotImplementedError

    def save_state(self, state: State) -> None:
        """Write `state` (under the lock: Work.commit only), whole or not at all."""
        raise NotImplementedError

    # -- the lock -------------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout: float, what: str):
        """Hold the operation lock for the block (App.work only); waits up to
        `timeout` seconds for another holder (LockBusy)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def check_lock(self) -> None:
        """Raise LockLost if the lock held by this process is no longer held
        (before each step of an operation)."""

    # -- the audit log --------------------------------------------------------------------
    def audit_check(self) -> None:
        """Before any remote step: the log can be written (else nothing is done)."""
        raise NotImplementedError

    def audit_append(self, entry: dict) -> None:
        """One entry, appended after every entry before it (raises HavirtError or OSError)."""
        raise NotImplementedError

    def audit_entries(self, tail: int | None = None) -> list[tuple[str, dict | None]]:
        """The last `tail` entries (None: every one), oldest first, with where
        each is ("line 3"); None: an entry that cannot be read."""
        raise NotImplementedError

    def audit_raw(self) -> list[bytes]:
        """Every entry as the bytes stored (a copy into another store keeps them)."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of connections (the lock is released by `locked`)."""


def entry_line(entry: dict) -> bytes:
    """One audit entry as it is stored: one JSON line."""
    return (json.dumps(entry, sort_keys=False) + "\n").encode()


def parse_entry(line: bytes) -> dict | None:
    """An audit entry from its stored bytes; None if it is not one."""
    try:
        entry = json.loads(line)   # bytes: UTF-8 expected, anything else is unreadable
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


class FilesStore(Store):
    """The home's own files (see home.Home)."""

    name = "files"

    def __init__(self, home):
        self.home = home
        self.conf = FilesConf(home.conf, home.root)

    def describe(self) -> str:
        return f"files in {self.home.root}"

    def load_state(self) -> State:
        return load_state(self.home.state_file)

    def save_state(self, state: State) -> None:
        save_state(self.home.state_file, state)

    @contextmanager
    def locked(self, timeout: float, what: str):
        with locked(self.home.lock_file, timeout, what):
            yield

    def _open_log(self) -> int:
        return open_to_write(self.home.audit_file, os.O_WRONLY | os.O_APPEND, "the audit log")

    def audit_check(self) -> None:
        os.close(self._open_log())

    def audit_append(self, entry: dict) -> None:
        self.audit_append_raw(entry_line(entry))

    def audit_append_raw(self, line: bytes) -> None:
        fd = self._open_log()
        try:
            os.write(fd, line if line.endswith(b"\n") else line + b"\n")
        finally:
            os.close(fd)

    def _lines(self) -> list[bytes]:
        path = self.home.audit_file
        try:
            return read_file(path, MAX_LOG).split(b"\n")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise HomeError(f"{path}: cannot read the audit log: {reason(e)}") from None

    def audit_raw(self) -> list[bytes]:
        return [line for line in self._lines() if line.strip()]

    def audit_entries(self, tail: int | None = None) -> list[tuple[str, dict | None]]:
        entries = [(f"line {n}", line) for n, line in enumerate(self._lines(), 1) if line.strip()]
        return [(where, parse_entry(line)) for where, line in entries[-tail if tail else 0:]]


def open_store(home, cfg) -> Store:
    """The store config.yaml names (an etcd client is imported only for etcd)."""
    if cfg.store.backend == "etcd":
        from havirt.store.etcd import EtcdStore
        return EtcdStore(cfg.store, home)
    return FilesStore(home)
