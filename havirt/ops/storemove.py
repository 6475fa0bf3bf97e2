"""havirt store migrate: a home's facts moved into the other store.

Both stores are locked for the whole move (no command changes either
meanwhile): the home's own by the unit of work, the target's here, the one
other place that takes a lock (it is not the home's store yet). The target
must hold nothing yet. The copy is read back and compared with what was
read; a copy that fails part way or differs is taken out of the target again
(store/copy.py: discard_copy). Only when it is whole is the source cleared: a
home's files are moved into var/moved-STAMP/ (renamed, never removed), etcd's
keys under the prefix are deleted in one transaction. Then config.yaml's
store.backend must name the target (the command says so; it never edits
config.yaml). A dry run (the default) says what it would move, and where.
"""

from __future__ import annotations

from havirt.errors import ConfigError, HavirtError, Interrupted, Refusal, UsageError
from havirt.ops.outcome import Outcome
from havirt.store.copy import (
    Facts,
    differences,
    discard_copy,
    move_aside,
    move_file_aside,
    read_facts,
    write_facts,
)
from havirt.store.state import command_line
from havirt.store.stores import FilesStore, open_store


def _entries(n: int) -> str:
    return f"{n} audit entr{'y' if n == 1 else 'ies'}"


def target_store(app, to: str):
    """The store `to` names, the other one than the home's."""
    if to == app.store.name:
        raise UsageError(f"the home's store is {to} already (store.backend in {app.cfg.path}): "
                         "nothing to move")
    if to == "files":
        return FilesStore(app.home)
    if not app.cfg.store.endpoints:
        raise ConfigError(f"{app.cfg.path}: key 'store.endpoints' must list the etcd members' client "
                          "URLs to move the home's facts there")
    from dataclasses import replace

    from havirt.store.config import Config
    cfg: Config = replace(app.cfg, store=replace(app.cfg.store, backend="etcd"))
    return open_store(app.home, cfg)


def migrate(app, to: str) -> Outcome:
    """Move the home's facts into the store `to` (files, etcd); a dry run unless --yes."""
    source, target = app.store, target_store(app, to)
    with app.work(dry_run=app.dry_run, record=False), \
            target.locked(app.cfg.lock_timeout, command_line()):      # the other store's lock too
        facts = read_facts(source)
        refused = source.refused_raw()         # etcd's too large ones: the files' log takes them
        facts.audit += refused
        there = read_facts(target)
        if not there.empty():
            raise Refusal([f"{target.describe()} holds facts already ({there.counts()}): nothing "
                           "moved; move them away first, or point the home elsewhere (store.prefix)"])
        out = Outcome(app.dry_run, data={"from": source.describe(), "to": target.describe(),
                                         "facts": facts.counts(), "left_behind": facts.skipped})
        out.notes = [f"left behind: {s}" for s in facts.skipped]
        if out.dry_run:
            cleared = "moved into var/moved-STAMP/" if source.name == "files" else "its keys deleted"
            out.lines = [f"# copy {facts.counts()}", f"#   from {source.describe()}",
                         f"#   into {target.describe()}",
                         f"# then read the copy back and compare it; then clear the source ({cleared})"]
            if refused:
                out.lines.insert(1, f"#   the last {_entries(len(refused))} from {source.refused_path()} "
                                    "(etcd refused them: too large for it)")
            return out
        copy = copy_into(target, facts)
        out.done.append(f"copied {copy.counts()} into {target.describe()}; read back: identical")
        if source.name == "files":
            out.done.append(f"the home's files moved into {move_aside(app.home, facts)}")
        else:
            source.clear()
            out.done.append(f"removed them from {source.describe()}")
            if refused:
                out.done.append(f"the {_entries(len(refused))} etcd had refused are in the audit log now; "
                                f"{source.refused_path()} moved into "
                                f"{move_file_aside(app.home, source.refused_path())}")
        out.done.append(f"now set store.backend: {to} in {app.cfg.path} (and in every other home "
                        "that used the source)")
        return out


def copy_into(target, facts: Facts) -> Facts:
    """`facts` written into `target` (empty, locked), read back and compared;
    a copy that fails part way, or differs, is taken out of the target again
    (so the move can simply be run again), and the source is left as it was."""
    try:
        write_facts(target, facts)
        copy = read_facts(target)
        wrong = differences(facts, copy)
        if wrong:
            raise HavirtError(f"the copy in {target.describe()} differs from the source in "
                              f"{', '.join(wrong)}")
        return copy
    except KeyboardInterrupt:
        discard_copy(target, facts)
        raise
    except HavirtError as e:
        raise Interrupted(f"{e}; {discard_copy(target, facts)}; the source was left as it was", e) from None

