"""What every command works with: home, configuration, the store (state,
lock, conf/, audit log: store/stores.py), runner, output.

The App never prints: core code reports through `app.out` (a Reporter the
command line provides) or returns what it found. Everything that changes the
state happens inside `app.work()` (ops/work.py).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from havirt.errors import ConfigError, HavirtError, Interrupted
from havirt.ops.work import Work
from havirt.store.config import Config, load_config
from havirt.store.home import Home
from havirt.store.state import State, command_line
from havirt.store.stores import Store, open_store


class Reporter:
    """Where core code sends what the admin should see while it works.
    This one is silent (tests, library use); the CLI gives a real one."""

    def say(self, text: str = "") -> None:
        """A line for the admin (what is being done, notes of a plan)."""

    def note(self, text: str) -> None:
        """A detail, only shown with -v."""

    def progress(self, chunk: str) -> None:
        """Streamed output of a long step (a migration's progress)."""

    def step(self, done: int, total: int, text: str, elapsed: float) -> None:
        """One of several moves begins (n of m, what, seconds since the first)."""

    def end_progress(self) -> None:
        """End a line of progress, if one was left open."""

    def source(self, text: str, shared: bool) -> None:
        """Where the facts a command shows come from (`shared`: a store other
        homes write too, said; the home's own files: a detail)."""

    def warn(self, text: str) -> None:
        """Something the admin must see even under -q (stderr)."""


class App:
    def __init__(self, home: Home, cfg: Config, *, yes=False, dryrun=False, out=None,
                 runner_factory=None, store: Store | None = None):
        self.home = home
        self.cfg = cfg
        self.yes = yes
        self.force_dryrun = dryrun
        self.out = out or Reporter()
        self.store = store or open_store(home, cfg)
        self.conf = self.store.conf
        self._said = False
        self._read: State | None = None
        self._work: Work | None = None
        self._runner = None
        self._runner_factory = runner_factory
        self._audit = None

    @classmethod
    def create(cls, home: Home, config_path: Path | None, **kw) -> "App":
        if config_path is not None and not os.path.lexists(config_path):
            raise ConfigError(f"{config_path}: no such file (given with --config)")
        cfg = load_config(config_path or home.root / "config.yaml")
        home.ensure()
        return cls(home, cfg, **kw)

    @property
    def dry_run(self) -> bool:
        """Changes are printed, not made: --dryrun, or no --yes with `dryrun: true`."""
        if self.force_dryrun:
            return True
        return False if self.yes else self.cfg.dryrun

    # -- state -----------------------------------------------------------------
    @property
    def state(self) -> State:
        """The open work's state; outside one, the state file as it was read
        (listings: no lock, never written) or as the last work left it."""
        if self._work is not None:
            return self._work.state
        if self._read is None:
            self._read = self.store.load_state()
            self.said_source()
        return self._read

    def said_source(self) -> None:
        """Say once which store the facts come from."""
        if not self._said:
            self._said = True
            self.out.source(f"facts from {self.store.describe()}", self.store.shared)

    @contextmanager
    def work(self, *, dry_run: bool | None = None, record: bool | None = None):
        """One unit of work (see ops/work.py). dry_run: None is the command's
        (--yes, --dryrun, config.yaml); record: whether what the scans find is
        written (None: unless a dry run)."""
        if self._work is not None:
            raise RuntimeError("a unit of work is already open: operations do not nest "
                               "(pass the open Work down instead)")
        dry = self.dry_run if dry_run is None else dry_run
        with self.store.locked(self.cfg.lock_timeout, command_line()):
            if not dry:                              # entries of steps that ran while etcd was away
                sent, problems = self.store.send_kept()
                if sent:
                    self.out.source(sent, True)      # on stderr, like the store's name (-q: not)
                for line in problems:
                    self.out.warn(line)
            w = Work(self, self.store.load_state(), dry, not dry if record is None else record)
            self.said_source()
            self._work = w
            try:
                try:
                    yield w
                except BaseException:
                    _commit(w)     # see ops/work.py: what is worth keeping is kept
                    raise
                _commit(w)
            finally:
                self._work = None
                self._read = w.state

    # -- nodes -----------------------------------------------------------------
    @property
    def runner(self):
        if self._runner is None:
            if self._runner_factory is not None:
                self._runner = self._runner_factory(self)
            else:
                from havirt.remote.backends import make_runner
                from havirt.remote.transport import Target
                targets = {n: Target(n, r.address, r.user, r.port)
                           for n, r in self.state.nodes.items()}
                self._runner = make_runner(self.cfg.ssh, targets)
        return self._runner

    @property
    def audit(self):
        if self._audit is None:
            from havirt.remote.executor import AuditLog
            self._audit = AuditLog(self.store)
        return self._audit

    def executor(self):
        """The one place that changes nodes, with this command's runner and output."""
        from havirt.remote.executor import Executor
        return Executor(self.runner, self.cfg, self.home, self.audit, self.out.progress,
                        self.store.check_lock)


def _commit(w: Work) -> None:
    """The work's one commit; when it fails after steps ran on the nodes, the
    message says so (the store's error alone would read as if nothing was done)."""
    try:
        w.commit()
    except HavirtError as e:
        if not w.executed or isinstance(e, Interrupted):
            raise
        raise Interrupted(f"the steps above ran on the nodes, but the state could not be written: {e}; "
                          "`havirt node scan` records where things are", e) from None

