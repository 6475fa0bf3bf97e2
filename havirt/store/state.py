"""var/state.yaml: the admin's facts about nodes plus a cache of the last scan.

Written atomically (temporary file, fsync, rename) under the lock; read
without the lock (a reader sees the old file or the new one, never half).
The state is never the ground for a safety decision: those use a fresh scan.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import yaml

from havirt.errors import HomeError, LockBusy, StateError
from havirt.names import printable, valid_name
from havirt.parse import numbers as n
from havirt.parse.virsh import SHUT_OFF, active
from havirt.store import strictyaml
from havirt.store.files import MAX_STATE, open_to_write, reason, replace_file, writable_folder

FORMAT = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class NodeRecord:
    name: str
    address: str
    user: str | None = None          # None: the configured default
    port: int | None = None          # None: the configured default
    memory_cap_mib: int | None = None
    cpus: int | None = None
    memory_mib: int | None = None
    hostname: str | None = None
    libvirt_version: str | None = None
    maintenance: bool = False
    last_scan: str | None = None
    reachable: bool | None = None
    error: str | None = None
    leases: bool | None = None       # libvirt's lock manager (virtlockd) active at the last scan
    lockspace: str | None = None     # its lockspace folder at the last scan
    lockspace_peers: list[str] = field(default_factory=list)  # nodes seen sharing it then
    silent_scans: int = 0            # scans in a row it did not answer (recovery counts them)
    down_since: str | None = None    # failed over then, and silent ever since
    down_guard: str | None = None    # the guard of that failover: leases, fence, confirm-off
    containers: bool | None = None   # its LXC driver answered the last scan (it offers containers)


@dataclass
class DomainRecord:
    name: str
    node: str | None = None           # where it runs; None when not running
    state: str = SHUT_OFF
    memory_mib: int | None = None
    vcpus: int | None = None
    maintenance: bool = False
    last_seen: str | None = None
    stale: bool = False               # its node did not answer the last scan
    conflict: list[str] = field(default_factory=list)  # every node, when more than one
    maybe_on: list[str] = field(default_factory=list)  # silent nodes that ran it last, seen elsewhere since
    disks: list[str] | None = None    # the running definition's, when a scan read it (drift.py)
    interfaces: list[str] | None = None
    container: bool = False           # what runs is a container (libvirt's LXC driver)

    @property
    def active(self) -> bool:
        """Recorded present on a node (see parse.virsh.active)."""
        return self.node is not None and active(self.state)


@dataclass
class State:
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    domains: dict[str, DomainRecord] = field(default_factory=dict)
    updated: str | None = None

    def node(self, name: str) -> NodeRecord:
        from havirt.errors import UsageError
        try:
            return self.nodes[name]
        except KeyError:
            raise UsageError(f"unknown node {name!r} (known: "
                             f"{', '.join(sorted(self.nodes)) or 'none; add one with havirt node add'})") from None

    def domain(self, name: str) -> DomainRecord:
        rec = self.domains.get(name)
        if rec is None:
            rec = self.domains[name] = DomainRecord(name=name)
        return rec

    def to_dict(self) -> dict:
        def clean(rec):
            d = asdict(rec)
            d.pop("name")
            return d
        return {
            "format": FORMAT,
            "updated": self.updated,
            "nodes": {n: clean(r) for n, r in sorted(self.nodes.items())},
            "domains": {n: clean(r) for n, r in sorted(self.domains.items())},
        }


# The range of every number in the state (a hand edit can put anything there):
# the ranges the command line, config.yaml and the scan's parsers use
# (parse/numbers.py); any other whole number is a count.
_RANGES = {"port": n.PORT, "memory_cap_mib": n.MEMORY_CAP_MIB, "cpus": n.CPUS,
           "memory_mib": n.MEMORY_MIB, "vcpus": n.VCPUS}


def _records(path: Path, kind: str, cls, data) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StateError(f"{path}: '{kind}' must be a mapping of name to record")
    types = {f.name: _allowed(f.type) for f in fields(cls) if f.name != "name"}
    ranges = {k: _RANGES.get(k, n.COUNT) for k in types}
    out = {}
    for name, rec in data.items():
        if not isinstance(name, str) or not isinstance(rec, dict):
            raise StateError(f"{path}: {kind} entry {str(name)[:40]!r} is not a mapping")
        for key, value in rec.items():
            t = type(value)     # exactly the types JSON and YAML give: bool is never an int here
            if t not in types.get(key, ()) or \
                    (t is int and value not in ranges[key]) or \
                    (t is list and not all(map(_LIST_ITEM.get(key, _is_text), value))):
                raise StateError(f"{path}: {kind} {printable(name[:40])}: "
                                 f"{_problem(key, value, types)}; left untouched")
        try:
            out[name] = cls(name=name, **rec)
        except TypeError:   # a required key is missing
            missing = [f.name for f in fields(cls) if f.name != "name" and f.name not in rec
                       and f.default is MISSING and f.default_factory is MISSING]
            raise StateError(f"{path}: {kind} {printable(name[:40])}: missing {', '.join(missing)}; "
                             "left untouched") from None
    return out


def _problem(key, value, types) -> str:
    """What is wrong with one value of a record (see _records)."""
    if key not in types:
        return f"unknown keys {printable(str(key))[:40]}"
    if type(value) not in types[key]:
        return f"'{key}' has a value of the wrong type: {_shown(value)}"
    if type(value) is int:
        return f"'{key}' must be {_RANGES.get(key, n.COUNT)}, not {_shown(value)}"
    if key in _LIST_ITEM:
        return f"'{key}' must be a list of node names, not {_shown(value)}"
    return f"'{key}' must be a list of text, not {_shown(value)}"


def _is_text(item) -> bool:
    return type(item) is str


# lists whose items are node names; other lists (disks, interfaces) hold any text
_LIST_ITEM = {"conflict": lambda n: _is_text(n) and valid_name(n),
              "maybe_on": lambda n: _is_text(n) and valid_name(n)}


def _shown(value) -> str:
    """A value in a message: short, one line, whatever it is (never str() of a
    huge structure)."""
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)}"
    return printable(repr(value)[:40])


_TYPES = {"str": str, "int": int, "bool": bool, "None": type(None), "list[str]": list}


def _allowed(annotation: str) -> tuple:
    """'int | None' -> (int, NoneType): the types a state value may have."""
    return tuple(_TYPES[t.strip()] for t in str(annotation).split("|"))


def state_from_dict(path: Path, data) -> State:
    if data is None:
        raise StateError(f"{path} is empty; remove it to start afresh, or restore a backup")
    if not isinstance(data, dict):
        raise StateError(f"{path} is not a mapping; left untouched")
    fmt = data.get("format")
    if type(fmt) is not int or fmt != FORMAT:     # never `true`, which Python equates with 1
        raise StateError(f"{path}: format {_shown(fmt)} is not supported by this havirt "
                         f"(it reads format {FORMAT}); left untouched")
    extra = set(data) - {"format", "updated", "nodes", "domains"}
    if extra:
        raise StateError(f"{path}: unknown keys {printable(', '.join(sorted(map(str, extra))))[:80]}")
    if not isinstance(data.get("updated"), (str, type(None))):
        raise StateError(f"{path}: 'updated' must be a time, not {_shown(data['updated'])}")
    nodes = _records(path, "nodes", NodeRecord, data.get("nodes"))
    domains = _records(path, "domains", DomainRecord, data.get("domains"))
    from havirt.names import check_address, check_name, check_user
    try:
        for n, rec in nodes.items():
            check_name("node", n)
            check_address(rec.address)
            if rec.user is not None:
                check_user(rec.user)
        for d, rec in domains.items():
            if rec.node is not None:
                check_name("node", rec.node)
    except Exception as e:
        raise StateError(f"{path}: {e}; left untouched") from None
    # Domain names are not checked: a domain observed on a node may have any
    # name libvirt accepts, and the state must load whatever a scan recorded
    # (names.valid_name is the rule for names the admin gives).
    return State(nodes=nodes, domains=domains, updated=data.get("updated"))


_NOT_JSON = object()


def dump_state(doc: dict) -> str:
    """YAML in flow style, one node or domain per line.

    Every line is also JSON, so havirt reads its own file with the json
    module (20,000 domains in well under a second, where libyaml takes
    several); any YAML written by hand is read with PyYAML.
    """
    out = [f'{{"format": {json.dumps(doc["format"])},', f' "updated": {json.dumps(doc["updated"])},']
    for section in ("nodes", "domains"):
        items = list(doc[section].items())
        out.append(f' "{section}": {{' + ("" if items else "}" + ("," if section == "nodes" else "")))
        for i, (name, rec) in enumerate(items):
            end = "," if i < len(items) - 1 else ("}," if section == "nodes" else "}")
            out.append(f"  {json.dumps(name)}: {json.dumps(rec)}{end}")
    out[-1] += "}"
    return "\n".join(out) + "\n"


def _no_key_twice(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        twice = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise strictyaml.Refused(f"the key {twice[:40]!r} is given twice in one mapping")
    return d


def load_state(path: Path) -> State:
    """The state, or an empty one when the file does not exist yet."""
    text = strictyaml.read_text(path, StateError, MAX_STATE)
    if text is None:
        return State()
    try:
        try:
            # the flow style havirt writes: fast path
            data = json.loads(text, object_pairs_hook=_no_key_twice)
        except ValueError:
            data = _NOT_JSON
        except RecursionError:
            raise strictyaml.Refused(f"nested too deeply (more than {strictyaml.MAX_DEPTH} "
                                     "levels)") from None
        if data is _NOT_JSON:     # written or edited by hand in any YAML style
            data = strictyaml.load(text)
    except strictyaml.Refused as e:
        raise StateError(f"{path}: {e}; left untouched") from None
    except yaml.YAMLError as e:
        line = strictyaml.error_line(e)
        raise StateError(f"{path} is not valid YAML{f' (line {line})' if line else ''}; left untouched") from e
    return state_from_dict(path, data)


def save_state(path: Path, state: State, keep_time: bool = False) -> None:
    """Atomic replace: temporary file in the same folder, fsync, rename.
    `keep_time`: `updated` stays as it is (a copy from another store)."""
    if not keep_time:
        state.updated = now_iso()
    text = dump_state(state.to_dict())
    writable_folder(path.parent, path.parent)
    try:
        replace_file(path, text.encode(), 0o600)
    except OSError as e:
        raise HomeError(f"{path}: cannot write the state: {reason(e)}") from None
    _remove_leftovers(path.parent)


def _remove_leftovers(folder: Path) -> None:
    """Temporary files of a writer that was killed mid-write (a minute old)."""
    for p in folder.glob(".state.*.tmp"):
        try:
            if time.time() - p.stat().st_mtime > 60:
                p.unlink()
        except OSError:
            pass


@contextmanager
def locked(lock_path: Path, timeout: float, what: str = ""):
    """Hold the home's lock (flock on var/havirt.lock) for the block.

    Waits up to `timeout` seconds, then raises LockBusy naming the holder.
    """
    writable_folder(lock_path.parent, lock_path.parent)
    fd = open_to_write(lock_path, os.O_RDWR, "the lock")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    # written by another havirt, or by anyone who can write var/: shown cleaned
                    holder = printable(os.pread(fd, 512, 0).decode(errors="replace").strip()
                                       )[:300] or "unknown"
                    raise LockBusy(f"{lock_path} is held by {holder}; "
                                   f"gave up after {timeout:g} s") from None
                time.sleep(0.05)
        info = (f"pid {os.getpid()} ({_user()}, since {now_iso()}"
                f"{', ' + what if what else ''})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return str(os.getuid())


def command_line() -> str:
    return " ".join(["havirt"] + sys.argv[1:])
