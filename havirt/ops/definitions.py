"""Changing conf/: domain edit, define and undefine, each keeping the previous version.

A definition is checked by the rules of every conf/ file (domxml and
conf.check_named: UTF-8, XML, a <domain> whose <name> is NAME, memory and
vCPUs readable) before conf/NAME.xml changes; conf/ is written atomically
(conf.Conf.write). The version replaced or removed goes to the history,
conf/.history/NAME/STAMP-ACTION.xml: it belongs with the definitions (a
backup or a copy of conf/ takes it along), and the dot keeps it out of
conf/*.xml. Restore one with `havirt domain define NAME --file ... --force`.

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
import time
from dataclasses import dataclass, field
from pathlib import Path

from havirt.errors import ConfigError, DomainXMLError, HavirtError, HomeError, Refusal, UsageError
from havirt.names import check_name
from havirt.parse.domxml import DomainSpec, domain_from_bytes
from havirt.rules.drift import recorded_drift
from havirt.rules.ownership import definition_problems
from havirt.rules.presence import presence_problems
from havirt.store.conf import check_named, read_xml
from havirt.store.files import reason, writable_folder

HISTORY = ".history"


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


def home_relative(app, path: Path) -> str:
    try:
        return str(path.relative_to(app.home.root))
    except ValueError:
        return str(path)


def history_folder(app, name: str, make: bool = True) -> Path:
    """conf/.history/NAME/, a folder havirt may write into (store.files.writable_folder:
    a link there only if root or havirt's own user made it), created when `make`."""
    folder = app.conf.folder / HISTORY / check_name("domain", name)
    return writable_folder(folder, app.home.root, make)


def _keep(app, name: str, raw: bytes, action: str) -> Path:
    """Write the version about to be replaced or removed into the history, as
    a new file (never over a file, never through a link)."""
    folder = history_folder(app, name)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for n in range(1, 1000):
        path = folder / f"{stamp}{'' if n == 1 else f'.{n}'}-{action}.xml"
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


def _forget(kept: Path) -> None:
    """Remove a history entry of a change that did not happen after all."""
    try:
        kept.unlink()
    except OSError:
        pass


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
    path = app.conf.path(name)
    change = DefinitionChange(name, action, home_relative(app, path), changed=True)
    kept = _keep(app, name, before, action) if before is not None else None
    try:
        app.conf.write(name, after.decode("utf-8"))
    except HavirtError:
        if kept is not None:
            _forget(kept)          # the history records only what happened
        raise
    if kept is not None:
        change.kept = home_relative(app, kept)
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
    path = app.conf.path(name)
    shown = home_relative(app, path)
    before = app.conf.raw(name)
    if before is None:
        raise UsageError(f"unknown domain {name!r}: no {path} (havirt domain define {name} "
                         "--file FILE, or havirt domain import)")
    history_folder(app, name, make=False)     # a history that cannot be used: said before editing
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
    path = app.conf.path(name)
    with app.work(dry_run=False) as w:
        before = app.conf.raw(name)
        if before == raw:
            return DefinitionChange(name, "define", home_relative(app, path))
        if before is not None and not force:
            raise UsageError(f"{home_relative(app, path)} exists and differs (--force replaces it; "
                             "the current version is kept in the history)")
        return _replace(w, name, before, raw, spec, "define")


def undefine(app, name: str, force: bool = False) -> DefinitionChange:
    """Move conf/NAME.xml into the history; refused while NAME is present on
    any node (a fresh scan of every node), or might be (a node that did not
    answer, unless `force`)."""
    check_name("domain", name)
    path = app.conf.path(name)
    with app.work(dry_run=False) as w:    # conf/ changes at once; the scan is recorded
        before = app.conf.raw(name)
        if before is None:
            raise UsageError(f"unknown domain {name!r}: no {path}")
        findings = []

        def refuse_while_present():
            nonlocal findings
            cluster, findings = w.scan()
            problems = presence_problems(cluster, name, force)
            if problems:
                raise Refusal([f"{name} stays defined"] + problems)

        kept = retire(w, name, "undefine", before, refuse_while_present)
        return DefinitionChange(name, "undefine", home_relative(app, path), changed=True,
                                kept=home_relative(app, kept), findings=findings)


def retire(w, name: str, action: str, before: bytes, check=None) -> Path:
    """Move conf/NAME.xml (whose bytes are `before`) into the history
    (undefine, delete): the copy is written first (a history that cannot be
    written fails before anything else), then `check()` runs (a refusal after
    a fresh scan), then conf/NAME.xml is removed; if any of it fails, the
    history entry is forgotten (it records only what happened). The record of
    a domain that does not run is dropped. Returns where the copy went."""
    app = w.app
    path = app.conf.path(name)
    kept = _keep(app, name, before, action)
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
    rec = w.state.domains.get(name)
    if rec is not None and not rec.active:
        del w.state.domains[name]      # nothing left to say about it
        w.changed()
    return kept
