"""conf/: one XML file per domain, the only place a domain is defined."""

from __future__ import annotations

from pathlib import Path

from havirt.errors import DomainXMLError, HavirtError, HomeError, UsageError
from havirt.names import check_name, valid_name
from havirt.parse.domxml import DomainSpec, domain_from_bytes
from havirt.store.files import MAX_XML, read_file, reason, replace_file


class Conf:
    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / f"{check_name('domain', name)}.xml"

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if p.name.endswith(".xml"))
        except OSError as e:
            raise DomainXMLError(f"{self.folder}: cannot read conf/: {e.strerror}") from None

    def names(self) -> set[str]:
        """Domains conf/ defines (files NAME.xml with a valid NAME)."""
        return {p.name[:-4] for p in self._files() if valid_name(p.name[:-4])}

    def load(self, name: str) -> DomainSpec:
        """conf/NAME.xml, read once (the spec carries the bytes that are sent)."""
        path = self.path(name)
        try:
            spec = read_domain_file(path)
        except FileNotFoundError:
            raise UsageError(f"unknown domain {name!r}: no {path} "
                             f"(havirt domain import {name} --from NODE)") from None
        return check_named(spec, name, path)

    def load_all(self) -> tuple[dict[str, DomainSpec], dict[str, tuple[str, str]]]:
        """Every usable spec, and for every other *.xml file the problem with it
        (name -> (kind, message)); a bad file never stops the others loading.
        Kinds: bad-file-name, name-mismatch, bad-xml."""
        specs, problems = {}, {}
        for p in self._files():
            name = p.name[:-4]
            if not valid_name(name):
                problems[name] = ("bad-file-name", f"{p}: {name!r} is not a valid domain name "
                                  "(letters, digits, '.', '_', '-'): file ignored")
                continue
            try:
                specs[name] = self.load(name)
            except NameMismatch as e:
                problems[name] = ("name-mismatch", str(e))
            except HavirtError as e:
                problems[name] = ("bad-xml", str(e))
        return specs, problems


    def raw(self, name: str) -> bytes | None:
        """The bytes of conf/NAME.xml as they are, not parsed (None: no such file)."""
        try:
            return read_xml(self.path(name))
        except FileNotFoundError:
            return None

    def holds(self, name: str, text: str) -> bool | None:
        """Whether conf/NAME.xml holds `text` (blank lines around it aside):
        None when there is no such file; an unreadable or non-UTF-8 file
        holds something else."""
        path = self.path(name)
        try:
            old = read_file(path, MAX_XML)
        except FileNotFoundError:
            return None
        except OSError:
            return False
        return old.decode("utf-8", errors="replace").strip() == text.strip()

    def write(self, name: str, text: str) -> Path:
        """Replace conf/NAME.xml atomically: a new file with an unpredictable
        name in conf/ (never through a link), then a rename over the old one."""
        path = self.path(name)
        try:
            replace_file(path, text.encode(), 0o640)
        except OSError as e:
            raise HomeError(f"{path}: cannot write: {reason(e)}") from None
        return path


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
