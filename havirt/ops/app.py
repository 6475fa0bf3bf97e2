"""What every command works with: home, configuration, state, conf/, runner.

The App never prints: core code reports through `app.out` (a Reporter the
command line provides) or returns what it found.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from havirt.errors import ConfigError, DomainXMLError
from havirt.rules.drift import note_running_definitions
from havirt.scan.cluster import Finding
from havirt.scan.fresh import Scan, fresh_scan
from havirt.scan.record import record_scan
from havirt.store.conf import Conf
from havirt.store.config import Config, Home, load_config
from havirt.store.state import State, command_line, load_state, locked, save_state


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


class App:
    def __init__(self, home: Home, cfg: Config, *, yes=False, dryrun=False, out=None,
                 runner_factory=None):
        self.home = home
        self.cfg = cfg
        self.yes = yes
        self.force_dryrun = dryrun
        self.out = out or Reporter()
        self.conf = Conf(home.conf)
        self._state: State | None = None
        self._runner = None
        self._runner_factory = runner_factory
        self._audit = None

    @classmethod
    def create(cls, home: Home, config_path: Path | None, **kw) -> "App":
        if config_path is not None and not config_path.is_file():
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
        if self._state is None:
            self._state = load_state(self.home.state_file)
        return self._state

    def save(self) -> None:
        save_state(self.home.state_file, self.state)

    @contextmanager
    def lock(self):
        """Hold the home's lock; the state is read afresh inside it."""
        with locked(self.home.lock_file, self.cfg.lock_timeout, command_line()):
            self._state = None
            yield

    # -- nodes -----------------------------------------------------------------
    @property
    def runner(self):
        if self._runner is None:
            if self._runner_factory is not None:
                self._runner = self._runner_factory(self)
            else:
                from havirt.remote.transport import SSHRunner, Target
                targets = {n: Target(n, r.address, r.user, r.port)
                           for n, r in self.state.nodes.items()}
                self._runner = SSHRunner(self.cfg.ssh, targets)
        return self._runner

    def scan(self, names=None, paths=(), dump_running=False) -> Scan:
        """A fresh scan (one session per node, in parallel), folded into the
        state in memory; the state file is not written."""
        names = sorted(names or self.state.nodes)
        for n in names:
            self.state.node(n)
        cluster = fresh_scan(self.runner, self.cfg, self.state, names, paths, dump_running)
        for n, f in sorted(cluster.nodes.items()):
            self.out.note(f"scan {n}: " + ("ok" if f.reachable else f.error)
                          + (f" ({f.duration:.2f} s)" if f.duration else ""))
        try:
            conf_names, unreadable = self.conf.names(), None
        except DomainXMLError as e:   # conf/ unreadable: the scan still reports the rest
            conf_names, unreadable = set(cluster.present()), e   # no no-xml guesses
        findings = record_scan(self.state, cluster, conf_names)
        if unreadable is not None:
            findings.append(Finding("error", "conf-unreadable", str(self.conf.folder), str(unreadable),
                                    "make conf/ readable by the user running havirt"))
        note_running_definitions(self.state, cluster)
        return Scan(cluster, findings)

    def scan_and_save(self, names=None, paths=(), dump_running=False) -> Scan:
        """The same, and the state file written."""
        result = self.scan(names, paths, dump_running)
        self.save()
        return result

    def safety_scan(self, names=None, paths=()) -> Scan:
        """The fresh scan a changing command's safety checks use: recorded in the
        state file, except on a dry run, which changes nothing."""
        result = self.scan(names, paths)
        if not self.dry_run:
            self.save()
        return result

    # -- changing nodes ----------------------------------------------------------
    @property
    def audit(self):
        if self._audit is None:
            from havirt.remote.executor import AuditLog
            self._audit = AuditLog(self.home.audit_file)
        return self._audit

    def executor(self):
        """The one place that changes nodes, with this command's runner and output."""
        from havirt.remote.executor import Executor
        return Executor(self.runner, self.cfg, self.home, self.audit, self.out.progress)
