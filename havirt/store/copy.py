"""Everything a store holds, read whole, written into another store, compared,
and cleared from the first (`havirt store migrate`, ops/storemove.py).

What is copied: the state (every record, and when it was last written), the
definitions (their bytes), every kept version of the history (under its own
entry name), and the audit log (every entry's bytes, in order). Nothing is
parsed on the way but the state, so a copy is byte for byte."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from havirt.errors import HavirtError, HomeError
from havirt.names import valid_name
from havirt.store.conf import HISTORY
from havirt.store.files import reason, writable_folder
from havirt.store.state import State


@dataclass
class Facts:
    state: State
    definitions: dict[str, bytes] = field(default_factory=dict)
    history: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    audit: list[bytes] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)    # what cannot be copied, and why

    def counts(self) -> str:
        kept = sum(len(v) for v in self.history.values())
        return (f"{len(self.state.nodes)} node(s), {len(self.state.domains)} domain record(s), "
                f"{len(self.definitions)} definition(s), {kept} kept version(s) in the history, "
                f"{len(self.audit)} audit entr{'y' if len(self.audit) == 1 else 'ies'}")

    def empty(self) -> bool:
        return not (self.state.nodes or self.state.domains or self.definitions or self.history
                    or self.audit)


def read_facts(store) -> Facts:
    """All that `store` holds (under its lock, for a copy that is whole)."""
    facts = Facts(store.load_state())
    for name in store.conf.entries():
        if not valid_name(name):
            facts.skipped.append(f"{store.conf.where_raw(name)}: not a valid domain name, not copied")
            continue
        raw = store.conf.raw(name)
        if raw is not None:
            facts.definitions[name] = raw
    facts.history = store.conf.history()
    facts.audit = store.audit_raw()
    return facts


def write_facts(store, facts: Facts) -> None:
    """Copy `facts` into `store` (empty, and locked by this process)."""
    for name, raw in sorted(facts.definitions.items()):
        store.conf.write(name, raw)
    for name, versions in sorted(facts.history.items()):
        for entry, raw in versions:
            store.conf.put_history(name, entry, raw)
    store.audit_append_many(facts.audit)
    store.load_state()
    store.save_state(facts.state, keep_time=True)


def discard_copy(store, facts: Facts) -> str:
    """Take out of `store` what a copy of `facts` into it may have written (it
    held nothing before, and is still locked); say how that went."""
    try:
        if store.name == "etcd":
            store.clear()
        else:
            home, history = store.home, store.home.conf / HISTORY
            paths = [home.state_file, home.audit_file] + [home.conf / f"{n}.xml" for n in facts.definitions]
            paths += [history / n / entry for n, versions in facts.history.items() for entry, _ in versions]
            for path in paths:
                path.unlink(missing_ok=True)
            for n in facts.history:
                if (history / n).is_dir() and not any((history / n).iterdir()):
                    (history / n).rmdir()
    except (HavirtError, OSError) as e:
        why = reason(e) if isinstance(e, OSError) else str(e)
        return f"the part copied into {store.describe()} could not be taken out ({why}): remove it first"
    return f"the part copied into {store.describe()} was removed"


def differences(a: Facts, b: Facts) -> list[str]:
    """What differs between two stores' facts (empty: the copy is whole)."""
    out = []
    if a.state.to_dict() != b.state.to_dict():
        out.append("the state")
    for name in sorted(set(a.definitions) | set(b.definitions)):
        if a.definitions.get(name) != b.definitions.get(name):
            out.append(f"the definition of {name}")
    for name in sorted(set(a.history) | set(b.history)):
        if sorted(a.history.get(name, [])) != sorted(b.history.get(name, [])):
            out.append(f"the history of {name}")
    if [x.rstrip(b"\n") for x in a.audit] != [x.rstrip(b"\n") for x in b.audit]:
        out.append(f"the audit log ({len(a.audit)} entries against {len(b.audit)})")
    return out


def move_aside(home, facts: Facts) -> str:
    """A home's files, once copied: moved (renamed, never removed) into
    var/moved-STAMP/ (state.yaml, audit.log, conf/ with .history/). Returns it."""
    folder = _moved_folder(home, "conf")
    moves = [(home.state_file, folder / "state.yaml"), (home.audit_file, folder / "audit.log")]
    moves += [(home.conf / f"{name}.xml", folder / "conf" / f"{name}.xml") for name in facts.definitions]
    if facts.history:
        moves.append((home.conf / ".history", folder / "conf" / ".history"))
    _move(moves, folder)
    return str(folder)


def move_file_aside(home, path) -> str:
    """One file of the home's var/, once copied, moved into var/moved-STAMP/. Returns it."""
    folder = _moved_folder(home)
    _move([(path, folder / path.name)], folder)
    return str(folder)


def _moved_folder(home, sub: str = ""):
    folder = home.var / f"moved-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    writable_folder(folder / sub if sub else folder, home.root)
    return folder


def _move(moves, folder) -> None:
    for src, dst in moves:
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise HomeError(f"{src}: cannot move it into {folder}: {reason(e)}") from None
