"""The only place that changes a node: runs a Plan, or prints it (dry run).

Every executed step appends one entry to the audit log (the store's: one
JSON line in var/audit.log, or a key in etcd). With a lock that can be lost
(etcd's lease), the lock is checked before every step: an operation whose
lock ran out stops there and says so.

Independent plans may run at the same time (Overlap: the restarts of a
failover), each on a thread of its own; the store is then asked by one
thread at a time (AuditLog.lock), so that each audit entry is written whole,
in the order the steps ended.
"""

from __future__ import annotations

import getpass
import os
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from havirt.errors import HavirtError, NodeUnreachable, RemoteError
from havirt.names import quote_argv
from havirt.remote.commands import WAIT_OFF, WAIT_RUNNING
from havirt.remote.steps import Plan, Step, StepKind
from havirt.store.files import reason
from havirt.store.state import command_line, now_iso


def _render(runner, home_root: Path, step: Step) -> str:
    """A shell line an admin could paste."""
    text = step.command.text()
    if step.kind in (StepKind.LOCAL, StepKind.LOCAL_UNTIL):
        until = f"   # until it prints /{step.expect}/" if step.kind is StepKind.LOCAL_UNTIL else ""
        return text + until
    line = f"{runner.describe(step.node)} {quote_argv([text])}" + _stdin(home_root, step)
    if step.kind is StepKind.FORCE_OFF:
        line = f"# only if still running after the wait:\n{line}"
    return line


def _stdin(home_root: Path, step: Step) -> str:
    """What goes on the step's stdin, as a shell line shows it: `< FILE` for a
    conf/ file, else the bytes themselves in a here-document (a device's XML)."""
    if step.stdin_file:
        return (f" < {quote_argv([_shown_path(home_root, step.stdin_file)])}"
                + (f"  # {step.stdin_note}" if step.stdin_note else ""))
    if step.stdin_data is not None:
        return " <<'EOF'\n" + step.stdin_data.decode(errors="replace").rstrip("\n") + "\nEOF"
    return ""


def _shown_path(home_root: Path, path: str) -> str:
    try:
        return str(Path(path).relative_to(home_root))
    except ValueError:
        return path


class AuditLog:
    """The audit log: one entry per executed step, appended to the store's log
    (var/audit.log in a home of files, keys in order in etcd)."""

    def __init__(self, store):
        self.store = store
        self.failures: list[str] = []
        self.lock = threading.Lock()     # the store is asked by one thread at a time

    def check(self) -> None:
        """Before any remote step: the log must be writable (else nothing is done)."""
        try:
            with self.lock:
                self.store.audit_check()
        except HavirtError as e:
            raise type(e)(f"{e}; nothing was done") from None

    def append(self, **entry) -> None:
        """Write one entry; a failure is kept (and reported at the end), never
        raised mid-plan: what happened on the nodes must still be verified and
        recorded. Entries of plans run at once go one at a time, each whole,
        timed when it is written (the log's order is the order of its times)."""
        with self.lock:
            entry = {"time": now_iso(), "user": _user(), "command": command_line(), **entry}
            step = f"{entry.get('node')}: {(str(entry.get('remote')).splitlines() or [''])[0]}"
            try:
                self.store.audit_append(entry)
            except HavirtError as e:
                self.failures.append(f"{step}: {e}")
            except OSError as e:
                self.failures.append(f"{step}: {reason(e)}")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover
        return str(os.getuid())


class Executor:
    def __init__(self, runner, cfg, home, audit: AuditLog, progress=None, check_lock=None):
        self.runner = runner
        self.check_lock = check_lock or (lambda: None)   # raises LockLost
        self.cfg = cfg
        self.home = home
        self.progress = progress        # streamed output of long steps
        self.audit = audit

    def show(self, plan: Plan) -> list[str]:
        """The plan as the shell lines a dry run prints."""
        return [_render(self.runner, self.home.root, s) for s in plan.steps]

    def overlap(self, limit: int) -> "Overlap":
        """Independent plans run at the same time, at most `limit` at once."""
        return Overlap(self, limit)

    def _lock_held(self) -> None:
        """Raise LockLost if the operation's lock is gone (asked of the store
        by one thread at a time, as the audit log is)."""
        with self.audit.lock:
            self.check_lock()

    def run(self, plan: Plan) -> list[tuple[Step, str]]:
        """Execute in order; stop at the first failure (raised, after logging)."""
        self.audit.check()
        done = []
        still_running = False
        for i, step in enumerate(plan.steps):
            if step.kind is StepKind.FORCE_OFF and not still_running:
                continue
            self._lock_held()
            outcome, res = self._run_step(step)
            if step.kind is StepKind.WAIT_OFF:
                if res.exit_code not in (WAIT_OFF, WAIT_RUNNING):
                    raise RemoteError(f"cannot tell whether {step.domain} is off on "
                                      f"{step.node}: {outcome}")
                still_running = res.exit_code == WAIT_RUNNING
                forced = i + 1 < len(plan.steps) and plan.steps[i + 1].kind is StepKind.FORCE_OFF
                if still_running and not forced:
                    raise RemoteError(f"{step.domain} is still running on {step.node} after "
                                      f"{step.timeout:g} s" + (f" ({step.hint})" if step.hint else ""))
            elif outcome != "ok":
                where = "on this host" if step.kind in (StepKind.LOCAL, StepKind.LOCAL_UNTIL) \
                    else f"on {step.node}"
                raise RemoteError(f"{step.why} failed {where}: {outcome}")
            done.append((step, outcome))
        return done

    def _run_step(self, step: Step):
        if step.kind in (StepKind.LOCAL, StepKind.LOCAL_UNTIL):
            return self._run_local(step)
        timeout = None
        if step.timeout:
            timeout = step.timeout + self.cfg.ssh.command_timeout
        on_output = self.progress if step.kind is StepKind.MIGRATE else None
        start = time.monotonic()
        logged = step.command.text() + (f" < {_shown_path(self.home.root, step.stdin_file)}"
                                        if step.stdin_file else "") + \
            (f" ({step.stdin_note})" if step.stdin_note else "") + \
            ("" if step.stdin_file else _stdin(self.home.root, step))
        try:
            res = self.runner.run(step.node, step.command, stdin=step.stdin_data,
                                  timeout=timeout, on_output=on_output)
        except NodeUnreachable as e:
            self.audit.append(node=step.node, remote=logged, exit_code=None,
                              duration=round(time.monotonic() - start, 3),
                              outcome=f"unreachable: {e.reason}")
            raise
        err = (res.stderr.strip().splitlines() or [""])[-1]
        outcome = "ok" if res.ok else (f"exit {res.exit_code}: {err}" if err else f"exit {res.exit_code}")
        self.audit.append(node=step.node, remote=logged, exit_code=res.exit_code,
                          duration=round(res.duration, 3), outcome=outcome)
        return outcome, res

    def _run_local(self, step: Step):
        """A command on the admin host (fencing a node): LOCAL once, LOCAL_UNTIL
        every 2 s until its output matches `expect` or `timeout` runs out."""
        import re
        import subprocess

        from havirt.remote.transport import Result
        text = step.command.text()
        start = time.monotonic()
        deadline = start + (step.timeout or self.cfg.ssh.command_timeout)
        while True:
            try:
                p = subprocess.run(["sh", "-c", text], capture_output=True, text=True,
                                   stdin=subprocess.DEVNULL,
                                   timeout=max(1.0, deadline - time.monotonic()))
                code, out, err = p.returncode, p.stdout, p.stderr
            except subprocess.TimeoutExpired:
                code, out, err = None, "", "timed out"
            matched = step.kind is StepKind.LOCAL or (
                code == 0 and re.search(step.expect or "", out, re.IGNORECASE) is not None)
            if (code == 0 and matched) or time.monotonic() >= deadline or code is None:
                break
            time.sleep(2)
        last = ((out.strip() or err.strip()).splitlines() or [""])[-1]
        if code == 0 and matched:
            outcome = "ok"
        elif code == 0:
            outcome = f"not confirmed within {step.timeout:g} s (last said: {last or 'nothing'})"
        else:
            outcome = f"exit {code}: {last}" if code is not None else f"timed out: {last}"
        self.audit.append(node=step.node, remote=f"(on this host) {text}", exit_code=code,
                          duration=round(time.monotonic() - start, 3), outcome=outcome)
        return outcome, Result(step.node, text, 0 if outcome == "ok" else 1, out, err)


class Overlap:
    """Plans that run at the same time, each on a thread of its own, at most
    `limit` at once: a plan's own steps in order, stopping at its first
    failure (Executor.run). What each plan did is collected by the caller
    (`ended`); the failure of one is its own outcome and neither stops nor
    hides another. Leaving the block waits for every plan started: an
    interrupt starts nothing new, and what runs ends and is logged.

        with executor.overlap(4) as o:
            o.start("vol1", plan1)
            o.start("vol2", plan2)
            for key, error in o.ended(every=True): ...
    """

    def __init__(self, executor: Executor, limit: int):
        self.executor = executor
        self.limit = max(1, limit)
        self._pool: ThreadPoolExecutor | None = None
        self._plans: dict[object, Future] = {}      # started, not yet collected

    def __enter__(self) -> "Overlap":
        self._pool = ThreadPoolExecutor(max_workers=self.limit, thread_name_prefix="havirt-plan")
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)      # nothing waits in its queue: see start()

    def start(self, key, plan: Plan) -> None:
        """Start `plan` now, on a free thread (waiting first for one of the
        plans running to end, when `limit` of them are)."""
        busy = [f for f in self._plans.values() if not f.done()]
        if len(busy) >= self.limit:
            wait(busy, return_when=FIRST_COMPLETED)
        self._plans[key] = self._pool.submit(self.executor.run, plan)

    def ended(self, keys=None, every: bool = False) -> list[tuple[object, BaseException | None]]:
        """Wait until one of the plans of `keys` (None: every plan not yet
        collected) has ended, or all of them (`every`); return the ended
        ones, in the order they were started, with what stopped each (None:
        it ran to its end). Those are collected: not returned again."""
        chosen = {k: f for k, f in self._plans.items() if keys is None or k in keys}
        if chosen:
            wait(chosen.values(), return_when=ALL_COMPLETED if every else FIRST_COMPLETED)
        done = [(k, f.exception()) for k, f in chosen.items() if f.done()]
        for k, _ in done:
            del self._plans[k]
        return done
