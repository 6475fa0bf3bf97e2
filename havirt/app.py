"""What every command works with: home, configuration, state, runner, output."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from .cluster import Cluster, Finding, check_identity, record_scan, scan_nodes
from .config import Config, Home, load_config
from .domxml import DomainSpec, read_domain_file
from .errors import ConfigError, DomainXMLError, UsageError
from .names import check_name
from .state import State, command_line, load_state, locked, save_state


class App:
    def __init__(self, home: Home, cfg: Config, *, yes=False, dryrun=False, fmt="screen",
                 quiet=False, verbose=False, debug=False, runner_factory=None):
        self.home = home
        self.cfg = cfg
        self.yes = yes
        self.force_dryrun = dryrun
        self.fmt = fmt
        self.quiet = quiet
        self.verbose = verbose
        self.debug = debug
        self._state: State | None = None
        self._runner = None
        self._runner_factory = runner_factory

    @classmethod
    def create(cls, home: Home, config_path: Path | None, **kw) -> "App":
        if config_path is not None and not config_path.is_file():
            raise ConfigError(f"{config_path}: no such file (given with --config)")
        cfg = load_config(config_path or home.root / "config.yaml")
        home.ensure()
        return cls(home, cfg, **kw)

    # -- modes -----------------------------------------------------------------
    @property
    def dry_run(self) -> bool:
        if self.force_dryrun:
            return True
        if self.yes:
            return False
        return self.cfg.dryrun

    # -- output ----------------------------------------------------------------
    def say(self, text: str = "") -> None:
        """A line for the admin; on stderr under -f json, so stdout stays JSON."""
        if not self.quiet:
            print(text, flush=True, file=sys.stderr if self.fmt == "json" else sys.stdout)

    def note(self, text: str) -> None:
        """Progress and details: only with -v, on stderr."""
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def progress(self, chunk: str) -> None:
        if not self.quiet:
            sys.stderr.write(chunk)
            sys.stderr.flush()
            self._progress_open = not chunk.endswith("\n")

    def end_progress(self) -> None:
        """End a line of progress, if one was left open."""
        if getattr(self, "_progress_open", False):
            self.progress("\n")

    # -- state -----------------------------------------------------------------
    @property
    def state(self) -> State:
        if self._state is None:
            self._state = load_state(self.home.state_file)
        return self._state

    def reload_state(self) -> State:
        self._state = None
        return self.state

    def save(self) -> None:
        save_state(self.home.state_file, self.state)

    @contextmanager
    def lock(self):
        """Hold the home's lock; the state is re-read inside it."""
        with locked(self.home.lock_file, self.cfg.lock_timeout, command_line()):
            self.reload_state()
            yield

    # -- conf/ -----------------------------------------------------------------
    def conf_file(self, name: str) -> Path:
        return self.home.conf / f"{check_name('domain', name)}.xml"

    def conf_names(self) -> set[str]:
        return {p.stem for p in self.home.conf.glob("*.xml")}

    def load_spec(self, name: str) -> DomainSpec:
        path = self.conf_file(name)
        try:
            spec = read_domain_file(path)
        except FileNotFoundError:
            raise UsageError(f"unknown domain {name!r}: no {path} "
                             f"(havirt domain import {name} --from NODE)") from None
        if spec.name != name:
            raise DomainXMLError(f"{path}: <name> is {spec.name!r}, not {name!r}")
        return spec

    # -- nodes -----------------------------------------------------------------
    @property
    def runner(self):
        if self._runner is None:
            if self._runner_factory is not None:
                self._runner = self._runner_factory(self)
            else:
                from .transport import SSHRunner, Target
                targets = {n: Target(n, r.address, r.user, r.port)
                           for n, r in self.state.nodes.items()}
                self._runner = SSHRunner(self.cfg.ssh, targets)
        return self._runner

    def reset_runner(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner = None

    def scan(self, names=None, paths=(), dump_running=False) -> tuple[Cluster, list[Finding]]:
        """A fresh scan (one session per node, in parallel), folded into the state."""
        names = sorted(names or self.state.nodes)
        for n in names:
            self.state.node(n)
        cluster = scan_nodes(self.runner, self.cfg, names, paths, dump_running)
        suspects = sorted({n for ns in cluster.duplicates().values() for n in ns})
        if suspects:
            # The nodes were read at slightly different moments: at the very end
            # of a live migration one read can catch the source still running and
            # the other the target already running. Ask those nodes once more
            # before calling it a double run; a real one is still there.
            cluster.nodes.update(scan_nodes(self.runner, self.cfg, suspects, paths,
                                            dump_running).nodes)
        check_identity(cluster, self.state)
        for n, f in sorted(cluster.nodes.items()):
            self.note(f"scan {n}: " + ("ok" if f.reachable else f.error)
                      + (f" ({f.duration:.2f} s)" if f.duration else ""))
        findings = record_scan(self.state, cluster, self.conf_names())
        return cluster, findings

    def executor(self):
        """The one place that changes nodes, with this command's runner and output."""
        from .executor import Executor
        return Executor(self.runner, self.cfg, self.home, self.progress)

    def check_scan(self, paths=()) -> tuple[Cluster, list[Finding]]:
        """The fresh scan a safety check needs. Recorded in the state file,
        except on a dry run, which changes nothing."""
        cluster, findings = self.scan(paths=paths)
        if not self.dry_run:
            self.save()
        return cluster, findings

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
