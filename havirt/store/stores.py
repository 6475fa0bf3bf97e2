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

import os
from contextlib import contextmanager

from havirt.errors import HomeError
from havirt.store.conf import FilesConf
from havirt.store.files import MAX_LOG, open_to_write, read_file, reason
from havirt.store.interface import Store, entry_line, parse_entry
from havirt.store.state import State, load_state, locked, save_state

__all__ = ["Store", "FilesStore", "open_store"]


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

    def save_state(self, state: State, keep_time: bool = False) -> None:
        save_state(self.home.state_file, state, keep_time)

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
