"""conf/: one definition per domain, the only place a domain is defined,
and the history of every version replaced or removed.

`Conf` holds the rules of reading (a definition must be a <domain> named as
its entry); `FilesConf` keeps conf/NAME.xml and conf/.history/NAME/ in the
home (the etcd store keeps the same under its prefix, store/etcd.py). The
history is conf/.history/NAME/STAMP-ACTION.xml: it belongs with the
definitions (a backup or a copy of conf/ takes it along), and the dot keeps
it out of conf/*.xml."""

from __future__ import annotations

import os
import time
from pathlib import Path

from havirt.errors import DomainXMLError, HavirtError, HomeError, UsageError
from havirt.names import check_name, valid_name
from havirt.parse.domxml import DomainSpec, domain_from_bytes
from havirt.store.files import MAX_XML, read_file, reason, replace_file, writable_folder

HISTORY = ".history"


class Conf:
    """conf/: the definitions, whatever keeps them (a backend gives `where`,
    `shown`, `raw`, `entries` and the writes; the rules of reading are here)."""

    label = "conf/"                  # where the definitions are, for messages

    def where(self, name: str) -> str:
        """Where NAME's definition is, in a message (a path, or a key)."""
        raise NotImplementedError

    def shown(self, name: str) -> str:
        """NAME's definition as the output names it (conf/NAME.xml in a home)."""
        raise NotImplementedError

    def entries(self) -> list[str]:
        """The names of every definition entry, valid names or not (sorted)."""
        raise NotImplementedError

    def raw(self, name: str) -> bytes | None:
        """The bytes of NAME's definition as they are, not parsed (None: none)."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        return self.raw(name) is not None

    def names(self) -> set[str]:
        """Domains conf/ defines (entries NAME.xml with a valid NAME)."""
        return {n for n in self.entries() if valid_name(n)}

    def load(self, name: str) -> DomainSpec:
        """NAME's definition, read once (the spec carries the bytes that are sent)."""
        raw = self.raw(name)
        if raw is None:
            raise UsageError(f"unknown domain {name!r}: no {self.where(name)} "
                             f"(havirt domain import {name} --from NODE)")
        spec = domain_from_bytes(raw, self.where(name))
        spec.path = self.file(name)
        return check_named(spec, name, self.where(name))

    def file(self, name: str) -> str | None:
        """A local file holding NAME's definition, which a dry run may show as stdin."""
        return None

    def load_all(self) -> tuple[dict[str, DomainSpec], dict[str, tuple[str, str]]]:
        """Every usable spec, and for every other *.xml entry the problem with it
        (name -> (kind, message)); a bad entry never stops the others loading.
        Kinds: bad-file-name, name-mismatch, bad-xml."""
        specs, problems = {}, {}
        for name in self.entries():
            if not valid_name(name):
                problems[name] = ("bad-file-name", f"{self.where_raw(name)}: {name!r} is not a valid "
                                  "domain name (letters, digits, '.', '_', '-'): file ignored")
                continue
            try:
                specs[name] = self.load(name)
            except NameMismatch as e:
                problems[name] = ("name-mismatch", str(e))
            except HavirtError as e:
                problems[name] = ("bad-xml", str(e))
        return specs, problems

    def where_raw(self, entry: str) -> str:
        """Where an entry is, whatever its name (a bad name too)."""
        raise NotImplementedError

    def holds(self, name: str, text: str) -> bool | None:
        """Whether NAME's definition holds `text` (blank lines around it aside):
        None when there is none; an unreadable or non-UTF-8 one holds something else."""
        self.where(name)             # a name conf/ cannot hold: said, never "holds something else"
        try:
            old = self.raw(name)
        except HavirtError:
            return False
        if old is None:
            return None
        return old.decode("utf-8", errors="replace").strip() == text.strip()

    # -- writing (inside a unit of work) ------------------------------------------------
    def write(self, name: str, text: str | bytes) -> str:
        """NAME's definition becomes `text` (no history: a new definition).
        Returns where it went, as shown."""
        raise NotImplementedError

    def replace(self, name: str, before: bytes | None, after: bytes, action: str) -> str | None:
        """NAME's definition `before` kept in the history (when there was one)
        and replaced by `after`, or neither. Returns where the old one was kept."""
        raise NotImplementedError

    def retire(self, name: str, before: bytes, action: str, check=None) -> str:
        """NAME's definition (`before`) moved into the history after `check()`
        (which may refuse): all or nothing. Returns where it was kept."""
        raise NotImplementedError

    def check_history(self, name: str) -> None:
        """Raise now when NAME's history could not be written (before an edit)."""

    def history(self) -> dict[str, list[tuple[str, bytes]]]:
        """Every kept version: name -> [(STAMP-ACTION.xml, bytes)], oldest first."""
        raise NotImplementedError


def stamp() -> str:
    """The time a version is kept, as its history entry begins."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def history_entry(when: str, n: int, action: str) -> str:
    """The name of a kept version: STAMP-ACTION.xml, STAMP.N-ACTION.xml for the Nth in a second."""
    return f"{when}{'' if n == 1 else f'.{n}'}-{action}.xml"


class FilesConf(Conf):
    """conf/NAME.xml in the home, the history in conf/.history/NAME/."""

    def __init__(self, folder: Path, home_root: Path | None = None):
        self.folder = folder
        self.home_root = home_root if home_root is not None else folder.parent
        self.label = str(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{check_name('domain', name)}.xml"

    def where(self, name: str) -> str:
        return str(self.path(name))

    def where_raw(self, entry: str) -> str:
        return str(self.folder / f"{entry}.xml")

    def shown(self, name: str) -> str:
        return self._relative(self.path(name))

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.home_root))
        except ValueError:
            return str(path)

    def file(self, name: str) -> str | None:
        return str(self.path(name))

    def entries(self) -> list[str]:
        try:
            return sorted(p.name[:-4] for p in self.folder.iterdir() if p.name.endswith(".xml"))
        except OSError as e:
            raise DomainXMLError(f"{self.folder}: cannot read conf/: {e.strerror}") from None

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def raw(self, name: str) -> bytes | None:
        try:
            return read_xml(self.path(name))
        except FileNotFoundError:
            return None

    def write(self, name: str, text: str | bytes) -> str:
        """Replace conf/NAME.xml atomically: a new file with an unpredictable
        name in conf/ (never through a link), then a rename over the old one."""
        path = self.path(name)
        try:
            replace_file(path, text.encode() if isinstance(text, str) else text, 0o640)
        except OSError as e:
            raise HomeError(f"{path}: cannot write: {reason(e)}") from None
        return self._relative(path)

    def replace(self, name: str, before: bytes | None, after: bytes, action: str) -> str | None:
        kept = self._keep(name, before, action) if before is not None else None
        try:
            self.write(name, after)
        except HavirtError:
            if kept is not None:
                _forget(kept)          # the history records only what happened
            raise
        return self._relative(kept) if kept is not None else None

    def retire(self, name: str, before: bytes, action: str, check=None) -> str:
        """The copy is written first (a history that cannot be written fails
        before anything else), then `check()`, then conf/NAME.xml is removed;
        if any of it fails, the history entry is forgotten."""
        path = self.path(name)
        kept = self._keep(name, before, action)
        try:
            if check is not None:
                check()
            try:
                os.unlink(path)
            except OSError as e:
                raise HomeError(f"{path}: cannot remove: {reason(e)}") from None
        except BaseException:
            _forget(kept)
            raise
        return self._relative(kept)

    def history_folder(self, name: str, make: bool = True) -> Path:
        """conf/.history/NAME/, a folder havirt may write into (files.writable_folder:
        a link there only if root or havirt's own user made it), created when `make`."""
        folder = self.folder / HISTORY / check_name("domain", name)
        return writable_folder(folder, self.home_root, make)

    def check_history(self, name: str) -> None:
        self.history_folder(name, make=False)

    def _keep(self, name: str, raw: bytes, action: str, when: str | None = None) -> Path:
        """Write the version about to be replaced or removed into the history, as
        a new file (never over a file, never through a link)."""
        folder = self.history_folder(name)
        when = when or stamp()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for n in range(1, 1000):
            path = folder / history_entry(when, n, action)
            try:
                fd = os.open(path, flags, 0o640)
            except FileExistsError:
                continue
            except OSError as e:
                raise HomeError(f"{path}: cannot keep the previous version: {reason(e)}") from None
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(raw)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                _forget(path)
                raise HomeError(f"{path}: cannot keep the previous version: {reason(e)}") from None
            return path
        raise HavirtError(f"{folder}: too many versions in one second")

    def history(self) -> dict[str, list[tuple[str, bytes]]]:
        top = self.folder / HISTORY
        out: dict[str, list[tuple[str, bytes]]] = {}
        if not top.is_dir():
            return out
        for folder in sorted(top.iterdir()):
            if not folder.is_dir() or not valid_name(folder.name):
                continue
            for p in sorted(folder.iterdir()):
                if p.name.endswith(".xml"):
                    try:
                        out.setdefault(folder.name, []).append((p.name, read_xml(p)))
                    except FileNotFoundError:
                        continue
        return out

    def put_history(self, name: str, entry: str, raw: bytes) -> None:
        """A kept version under its own entry name (a copy from another store)."""
        path = self.history_folder(name) / entry
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        except OSError as e:
            raise HomeError(f"{path}: cannot write: {reason(e)}") from None
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())


def _forget(kept: Path) -> None:
    """Remove a history entry of a change that did not happen after all."""
    try:
        kept.unlink()
    except OSError:
        pass


class NameMismatch(DomainXMLError):
    """conf/NAME.xml holds another domain's <name>."""


def check_named(spec: DomainSpec, name: str, where) -> DomainSpec:
    """conf/NAME.xml must define the domain NAME."""
    if spec.name != name:
        raise NameMismatch(f"{where}: <name> is {spec.name!r}, not {name!r}")
    return spec


def read_xml(path) -> bytes:
    """The bytes of a domain XML file (FileNotFoundError raised as it is; any
    other problem is a DomainXMLError)."""
    try:
        return read_file(path, MAX_XML)     # a plain file only: a FIFO there would hang every listing
    except IsADirectoryError:
        raise DomainXMLError(f"{path}: is a folder, not a file") from None
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DomainXMLError(f"{path}: cannot read: {e.strerror}") from None


def read_domain_file(path) -> DomainSpec:
    """Read a conf/ file ONCE: the spec is parsed from, and carries, those bytes."""
    spec = domain_from_bytes(read_xml(path), str(path))
    spec.path = str(path)
    return spec
