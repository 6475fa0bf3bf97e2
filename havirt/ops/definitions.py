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
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from havirt.errors import ConfigError, DomainXMLError, HavirtError, Refusal, UsageError
from havirt.names import check_name
from havirt.parse.domxml import DomainSpec, domain_from_bytes
from havirt.rules.drift import recorded_drift
from havirt.rules.ownership import definition_problems
from havirt.rules.presence import presence_problems
from havirt.store.conf import check_named

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


def history_folder(app, name: str) -> Path:
    return app.conf.folder / HISTORY / check_name("domain", name)


def _history_path(app, name: str, action: str) -> Path:
    folder = history_folder(app, name)
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1, 1000):
        path = folder / f"{stamp}{'' if n == 1 else f'.{n}'}-{action}.xml"
        if not path.exists():
            return path
    raise HavirtError(f"{folder}: too many versions in one second")


def _keep(app, name: str, raw: bytes, action: str) -> Path:
    """Write the version about to be replaced into the history (never over a file)."""
    path = _history_path(app, name, action)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    return path


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
    if before is not None:
        change.kept = home_relative(app, _keep(app, name, before, action))
        change.diff = _diff(before, after, change.file)
    app.conf.write(name, after.decode("utf-8"))
    rec = w.state.domains.get(name)
    if rec is not None and rec.active:
        change.running_on = rec.node
        change.drift = [d.message for d in recorded_drift(rec, spec)]
    return change


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
    try:
        before = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"unknown domain {name!r}: no {path} (havirt domain define {name} "
                         "--file FILE, or havirt domain import)") from None
    except OSError as e:
        raise DomainXMLError(f"{path}: cannot read: {e.strerror}") from None
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
            after = copy.read_bytes()
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
            if not path.is_file() or path.read_bytes() != before:
                keep_copy = True
                raise HavirtError(f"{shown} changed while it was being edited: nothing "
                                  f"written (the edit is in {copy})")
            try:
                return _replace(w, name, before, after, spec, "edit")
            except Refusal as e:
                keep_copy = True
                raise Refusal(e.reasons + [f"the edit is in {copy}"]) from None
    finally:
        if not keep_copy:
            copy.unlink(missing_ok=True)
            work.rmdir()


# -- define / undefine -----------------------------------------------------------------

def define(app, name: str, source: str, force: bool = False) -> DefinitionChange:
    """conf/NAME.xml from the file `source`; replacing a different one needs `force`."""
    check_name("domain", name)
    try:
        raw = Path(source).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{source}: is a folder, not a file") from None
    except OSError as e:
        raise UsageError(f"{source}: cannot read: {e.strerror}") from None
    spec = check_definition(name, raw, source)
    path = app.conf.path(name)
    with app.work(dry_run=False) as w:
        before = path.read_bytes() if path.exists() else None
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
        if not path.is_file():
            raise UsageError(f"unknown domain {name!r}: no {path}")
        cluster, findings = w.scan()
        problems = presence_problems(cluster, name, force)
        if problems:
            raise Refusal([f"{name} stays defined"] + problems)
        kept = retire(w, name, "undefine")
        return DefinitionChange(name, "undefine", home_relative(app, path), changed=True,
                                kept=home_relative(app, kept), findings=findings)


def retire(w, name: str, action: str) -> Path:
    """Move conf/NAME.xml into the history (undefine, delete) and forget the
    record of a domain that does not run; returns where it went."""
    app = w.app
    kept = _history_path(app, name, action)
    os.replace(app.conf.path(name), kept)
    rec = w.state.domains.get(name)
    if rec is not None and not rec.active:
        del w.state.domains[name]      # nothing left to say about it
        w.changed()
    return kept
