"""One unit of work: what every operation runs inside.

    with app.work() as w:          # the lock; the state loaded once, under it
        scan = w.scan(paths=...)   # a fresh scan, folded into w.state
        plan = plan_start(scan.cluster, w.state, ...)
        out.lines = w.show(plan)   # the dry run ...
        if not w.dry_run:
            w.run(plan)            # ... or the real thing (the executor)
                                   # at the end: one commit of w.state

The commit follows one policy, decided when the work opens:
  * `w.changed()` marks an admin fact (a node added, a maintenance flag): it
    is written whatever happens next, dry run included;
  * what the scans found is written when the work records scans (`record`;
    by default: unless a dry run), whether the operation then succeeds or
    not: the state is a cache of what the nodes said, and a refusal based on
    a scan (a node that did not answer) is worth remembering;
  * nothing else: a dry run of a change writes nothing (but its admin facts).
Works do not nest: opening one inside another is a programming error, said
loudly, never a second flock on the same file.

A node that did not answer a scan (no session: refused, timed out) is not
asked again by the later scans of the same work that ask every node: its
first answer stands ("did not answer"), so a dead node's connect timeout is
paid once per operation, not once per step. A scan that names its nodes
asks them whatever they did before (the operation needs that answer).
"""

from __future__ import annotations

from havirt.errors import DomainXMLError
from havirt.rules.drift import note_running_definitions
from havirt.scan.cluster import Finding
from havirt.scan.fresh import Scan, fresh_scan
from havirt.scan.images import Images, read_images
from havirt.scan.record import record_scan
from havirt.store.state import State


class Work:
    def __init__(self, app, state: State, dry_run: bool, record: bool):
        self.app = app
        self.cfg = app.cfg
        self.conf = app.conf
        self.out = app.out
        self.state = state
        self.dry_run = dry_run
        self.record = record
        self.executed = False      # a step ran on a node (or on this host, a fence)
        self._scanned = False
        self._admin = False
        self._silent: dict = {}    # node -> its facts, for nodes that did not answer in this work

    # -- reading the nodes ------------------------------------------------------------
    def scan(self, names=None, paths=(), dump_running=False) -> Scan:
        """A fresh scan (one session per node, in parallel), folded into w.state.
        `names` None: every node, but those that did not answer earlier in this
        work (see the module docstring); named nodes are always asked."""
        self.app.store.check_lock()       # a lock lost: stop before asking the nodes
        every = names is None
        names = sorted(names or self.state.nodes)
        for n in names:
            self.state.node(n)
        skipped = {n: self._silent[n] for n in names if every and n in self._silent}
        asked = [n for n in names if n not in skipped]
        cluster = fresh_scan(self.app.runner, self.cfg, self.state, asked, paths, dump_running)
        for n in asked:
            f = cluster.nodes[n]
            if f.alive or f.reachable:
                self._silent.pop(n, None)
            else:
                self._silent[n] = f
        for n, f in sorted(cluster.nodes.items()):
            self.out.note(f"scan {n}: " + ("ok" if f.reachable else f.error)
                          + (f" ({f.duration:.2f} s)" if f.duration else ""))
        try:
            conf_names, unreadable = self.conf.names(), None
        except DomainXMLError as e:   # conf/ unreadable: the scan still reports the rest
            conf_names, unreadable = set(cluster.present()), e   # no no-xml guesses
        findings = record_scan(self.state, cluster, conf_names)
        for n, f in skipped.items():      # its answer of this work, not counted again
            self.out.note(f"scan {n}: not asked again ({f.error})")
            cluster.nodes[n] = f
        if unreadable is not None:
            findings.append(Finding("error", "conf-unreadable", self.conf.label, str(unreadable),
                                    "make conf/ readable by the user running havirt"))
        note_running_definitions(self.state, cluster)
        self._scanned = True
        return Scan(cluster, findings)

    def images(self, cluster, folders, paths=()) -> Images:
        """The images in `folders` (pools) and at `paths`, as qemu-img on a node
        that sees them says now (the node chosen from `cluster`, a fresh scan
        that checked those folders and paths)."""
        images = read_images(self.app.runner, self.cfg, cluster, folders, paths)
        for folder, node in sorted(images.readers.items()):
            self.out.note(f"images in {folder}: read on {node}")
        return images

    # -- changing ------------------------------------------------------------------------
    def changed(self) -> None:
        """An admin fact in w.state changed: it is written at the end, dry run or not."""
        self._admin = True

    def show(self, plan) -> list[str]:
        """The plan as the shell lines an admin could paste."""
        return self.app.executor().show(plan)

    def run(self, plan):
        """Execute `plan` (the executor: audit log, stop at the first failure)."""
        self._executing()
        return self.app.executor().run(plan)

    def overlap(self):
        """Independent plans run at the same time, at most ssh.parallel at once
        (remote/executor.py's Overlap, a context manager: leaving it waits for
        all of them)."""
        self._executing()
        return self.app.executor().overlap(self.cfg.ssh.parallel)

    def _executing(self) -> None:
        if self.dry_run:
            raise RuntimeError("a dry run reached the executor")
        self.executed = True

    # -- the one commit ---------------------------------------------------------------------
    def commit(self) -> None:
        if self._admin or (self._scanned and self.record):
            self.app.store.save_state(self.state)
