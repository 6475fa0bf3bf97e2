"""What every store gives (stores.py says which there are and why)."""

from __future__ import annotations

import json
from contextlib import contextmanager

from havirt.store.conf import Conf
from havirt.store.state import State


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

    def save_state(self, state: State, keep_time: bool = False) -> None:
        """Write `state` (under the lock: Work.commit only), whole or not at all
        (etcd: a commit of more records than one transaction takes is written in
        parts, each record whole); `keep_time`: its `updated` stays (a copy)."""
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

    def audit_append_many(self, lines: list[bytes]) -> None:
        """Stored entries (a copy from another store), in their order."""
        for line in lines:
            self.audit_append_raw(line)

    def audit_append_raw(self, line: bytes) -> None:
        raise NotImplementedError

    def audit_entries(self, tail: int | None = None) -> list[tuple[str, dict | None]]:
        """The last `tail` entries (None: every one), oldest first, with where
        each is ("line 3"); None: an entry that cannot be read."""
        raise NotImplementedError

    def audit_raw(self) -> list[bytes]:
        """Every entry as the bytes stored (a copy into another store keeps them)."""
        raise NotImplementedError

    def refused_raw(self) -> list[bytes]:
        """Entries of steps that ran which the store refuses for good (etcd:
        larger than it takes), kept in the home's var/ (`kept` says where): a
        move into a store that takes them (files) takes them along. None: []."""
        return []

    def kept(self) -> str:
        """Entries of steps that ran but that the store did not take then (etcd
        gone, or an entry too large): lines that say how many wait where, or
        why they cannot be read ("": none; files: none)."""
        return ""

    def send_kept(self) -> tuple[str, list[str]]:
        """Under the lock: send the kept entries (`kept`) now, in their order.
        (what was sent, or ""; the problems, which the user sees even under -q:
        entries still kept and why, a file that cannot be read or removed)."""
        return "", []

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
