"""Changing conf/: domain edit, define and undefine, each keeping the previous version.

A definition is checked by the rules of every conf/ file (domxml and
conf.check_named: UTF-8, XML, a <domain> whose <name> is NAME, memory and
vCPUs readable) before conf/NAME.xml changes; conf/ is written atomically
(conf.Conf.write). The version replaced or removed goes to the history,
conf/.history/NAME/STAMP-ACTION.xml (store/conf.py keeps it, in the home or
in etcd). Restore one with `havirt domain define NAME --file ... --force`.

These change conf/ only, never a node: they take effect at once (no
--yes). A domain that runs keeps its definition until its next start.
"""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from havirt.errors import ConfigError, DomainXMLError, HavirtError, Refusal, UsageError
from havirt.names import check_name
from havirt.parse.domxml import DomainSpec, domain_from_bytes
from havirt.rules.drift import recorded_drift
from havirt.rules.ownership import definition_problems
from havirt.rules.presence import presence_problems
from havirt.store.conf import check_named, read_xml


@dataclass
class DefinitionChange:
    """What edit, define or undefine did to conf/NAME.xml."""

    name: str
    action: str                    # edit, define, undefine
    file: str                      # conf/NAME.xml, as shown to the admin
    changed: bool = False
    kept: str | None = None        # where the previous version went
    diff: list[str] = field(default_factory=list)
    running_on: str | None = None  # where the state last saw it run
    drift: list[str] = field(default_factory=list)   # the running domain against the new conf/
    findings: list = field(default_factory=list)     # what undefine's fresh scan found wrong

    def as_dict(self) -> dict:
        return {"name": self.name, "action": self.action, "file": self.file,
                "changed": self.changed, "kept": self.kept, "diff": self.diff,
                "running_on": self.running_on, "drift": self.drift}


def check_definition(name: str, raw: bytes, where: str) -> DomainSpec:
    """The rules of every conf/ file, for a candidate conf/NAME.xml."""
    return check_named(domain_from_bytes(raw, where), name, where)


def _diff(before: bytes, after: bytes, shown: str) -> list[str]:
    return [line.rstrip("\n") for line in difflib.unified_diff(
        before.decode(errors="replace").splitlines(keepends=True),
        after.decode(errors="replace").splitlines(keepends=True),
        fromfile=f"{shown} (before)", tofile=shown)]


def check_ownership(w, spec: DomainSpec, before: bytes | None) -> None:
    """The rule of ownership against every other conf/ domain (their <backingStore>
    chains: no node is asked); clashes `before` already had are not new."""
    specs, _ = w.conf.load_all()
    specs.pop(spec.name, None)
    try:
        old = domain_from_bytes(before, "the previous version") if before is not None else None
    except DomainXMLError:
        old = None
    problems = definition_problems(spec, specs, before=old)
    if problems:
        raise Refusal([f"conf/{spec.name}.xml left as it was"] + problems)


def _replace(w, name: str, before: bytes | None, after: bytes, spec: DomainSpec,
             action: str) -> DefinitionChange:
    """Keep `before` in the history, write `after`; say what it means for a running
    domain (in the open work `w`)."""
    app = w.app
    check_ownership(w, spec, before)
    change = DefinitionChange(name, action, app.conf.shown(name), changed=True)
    change.kept = app.conf.replace(name, before, after, action)
    if change.kept is not None:
        change.diff = _diff(before, after, change.file)
    rec = w.state.domains.get(name)
    if rec is not None and rec.active:
        change.running_on = rec.node
        change.drift = [d.message for d in recorded_drift(rec, spec)]
    return change


def record_change(w, name: str, before: bytes, after: str, action: str) -> DefinitionChange:
    """conf/NAME.xml replaced by `after`, a change a command made (set,
    attach-disk, ...): checked by the rules of every conf/ file, the previous
    version `before` kept in the history (in the open work `w`)."""
    raw = after.encode("utf-8")
    spec = check_definition(name, raw, f"the new conf/{name}.xml")
    return _replace(w, name, before, raw, spec, action)


# -- edit ------------------------------------------------------------------------

def editor_command() -> list[str]:
    """$VISUAL, else $EDITOR, else vi (may hold arguments: "emacs -nw")."""
    text = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        argv = shlex.split(text)
    except ValueError:
        argv = []
    if not argv:
        raise ConfigError(f"cannot run the editor {text!r} ($VISUAL / $EDITOR)")
    return argv


def run_editor(path: Path) -> None:
    """Open `path` in the admin's editor, in this terminal, until it exits."""
    argv = editor_command()
    try:
        rc = subprocess.call(argv + [str(path)])
    except OSError as e:
        raise ConfigError(f"cannot run the editor {argv[0]!r} ($VISUAL / $EDITOR): "
                          f"{e.strerror}") from None
    if rc != 0:
        raise HavirtError(f"the editor ({argv[0]}) exited with {rc}")


def edit(app, name: str, open_editor=run_editor, again=lambda reason: False) -> DefinitionChange:
    """Edit conf/NAME.xml on a copy; write it back only when it passes the
    rules. `again(reason)` says whether to reopen a broken copy (interactive
    use); otherwise the reason is raised and conf/ stays as it was. The lock
    is taken only to write, never while the editor is open."""
    shown = app.conf.shown(name)
    before = app.conf.raw(name)
    if before is None:
        raise UsageError(f"unknown domain {name!r}: no {app.conf.where(name)} (havirt domain define "
                         f"{name} --file FILE, or havirt domain import)")
    app.conf.check_history(name)     # a history that cannot be used: said before editing
    work = Path(tempfile.mkdtemp(prefix="havirt-edit-"))
    copy = work / f"{name}.xml"
    copy.write_bytes(before)
    keep_copy = False
    try:
        while True:
            try:
                open_editor(copy)
            except HavirtError as e:
                raise type(e)(f"{e}; {shown} left as it was") from None
            after = _read_copy(copy, shown)
            if after == before:
                return DefinitionChange(name, "edit", shown)
            try:
                spec = check_definition(name, after, f"the edited {name}.xml")
                break
            except DomainXMLError as e:
                if not again(str(e)):
                    keep_copy = True
                    raise DomainXMLError(f"{e}; {shown} left as it was (the edit is in "
                                         f"{copy})") from None
        with app.work(dry_run=False) as w:
            if app.conf.raw(name) != before:
                keep_copy = True
                raise HavirtError(f"{shown} changed while it was being edited: nothing "
                                  f"written (the edit is in {copy})")
            try:
                return _replace(w, name, before, after, spec, "edit")
            except Refusal as e:          # the rules (a disk of another domain): the edit kept
                keep_copy = True
                raise Refusal(e.reasons + [f"the edit is in {copy}"]) from None
            except HavirtError as e:      # conf/ or its history cannot be written
                keep_copy = True
                raise type(e)(f"{e} (the edit is in {copy})") from None
    finally:
        if not keep_copy:      # whatever the editor left there (never followed: rmtree)
            shutil.rmtree(work, ignore_errors=True)


def _read_copy(copy: Path, shown: str) -> bytes:
    """The edited copy, by the guarded reader: the editor may have removed it,
    or left a folder, a FIFO or a huge file in its place."""
    try:
        return read_xml(copy)
    except FileNotFoundError:
        raise UsageError(f"{copy}: the edited copy is gone; {shown} left as it was") from None
    except DomainXMLError as e:
        raise DomainXMLError(f"{e}; {shown} left as it was") from None


# -- define / undefine -----------------------------------------------------------------

def define(app, name: str, source: str, force: bool = False) -> DefinitionChange:
    """conf/NAME.xml from the file `source`; replacing a different one needs `force`."""
    check_name("domain", name)
    try:
        raw = read_xml(Path(source))      # a plain file of a sane size: never a FIFO or a device
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    spec = check_definition(name, raw, source)
    shown = app.conf.shown(name)
    with app.work(dry_run=False) as w:
        before = app.conf.raw(name)
        if before == raw:
            return DefinitionChange(name, "define", shown)
        if before is not None and not force:
            raise UsageError(f"{shown} exists and differs (--force replaces it; "
                             "the current version is kept in the history)")
        return _replace(w, name, before, raw, spec, "define")


def undefine(app, name: str, force: bool = False) -> DefinitionChange:
    """Move conf/NAME.xml into the history; refused while NAME is present on
    any node (a fresh scan of every node), or might be (a node that did not
    answer, unless `force`)."""
    check_name("domain", name)
    with app.work(dry_run=False) as w:    # conf/ changes at once; the scan is recorded
        before = app.conf.raw(name)
        if before is None:
            raise UsageError(f"unknown domain {name!r}: no {app.conf.where(name)}")
        findings = []

        def refuse_while_present():
            nonlocal findings
            cluster, findings = w.scan()
            problems = presence_problems(cluster, name, force)
            if problems:
                raise Refusal([f"{name} stays defined"] + problems)

        kept = retire(w, name, "undefine", before, refuse_while_present)
        return DefinitionChange(name, "undefine", app.conf.shown(name), changed=True,
                                kept=kept, findings=findings)


def retire(w, name: str, action: str, before: bytes, check=None) -> str:
    """Move NAME's definition (whose bytes are `before`) into the history
    (undefine, delete), after `check()` (a refusal after a fresh scan), all or
    nothing (the store's Conf.retire). The record of a domain that does not
    run is dropped. Returns where the copy went, as shown."""
    kept = w.conf.retire(name, before, action, check)
    rec = w.state.domains.get(name)
    if rec is not None and not rec.active:
        del w.state.domains[name]      # nothing left to say about it
        w.changed()
    return kept
