"""The only place that changes a node: runs a Plan, or prints it (dry run).

Every executed step appends one JSON line to var/audit.log.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import time
from pathlib import Path

from .errors import NodeUnreachable, RemoteError
from .names import quote_argv
from .planner import Plan, Step
from .remote import virsh
from .state import command_line, now_iso


WAIT_OFF, WAIT_RUNNING, WAIT_UNKNOWN = 0, 1, 2


def wait_off_script(cfg, name: str, seconds: float) -> str:
    """Poll domstate once a second in ONE session, until a deadline.

    Exit 0: off, or gone (a transient domain that shut down); 1: still
    running at the deadline; 2: virsh failed otherwise (libvirtd down...),
    so nobody can tell, and nothing may be started elsewhere on that basis.
    """
    state = virsh(cfg, "domstate", name)
    return (f"end=$(( $(date +%s) + {int(seconds)} )); while :; do "
            f"s=$({state} 2>&1) || case \"$s\" in "
            "*'failed to get domain'*|*'Domain not found'*) exit 0;; "
            "*) printf '%s\\n' \"$s\" >&2; exit 2;; esac; "
            "[ \"$s\" = 'shut off' ] && exit 0; "
            "[ \"$(date +%s)\" -ge \"$end\" ] && exit 1; sleep 1; done")


def step_command(cfg, step: Step) -> str:
    """The remote command line of a step, exactly as it is sent."""
    if step.kind == "wait-off":
        return wait_off_script(cfg, step.domain, step.timeout or 0)
    return quote_argv(step.argv)


def render_step(runner, cfg, home_root: Path, step: Step) -> str:
    """A shell line an admin could paste."""
    line = f"{runner.describe(step.node)} {shlex.quote(step_command(cfg, step))}"
    if step.stdin_file:
        line += f" < {shlex.quote(_shown_path(home_root, step.stdin_file))}"
    if step.kind == "destroy-if-running":
        line = f"# only if still running after the wait:\n{line}"
    return line


def _shown_path(home_root: Path, path: str) -> str:
    try:
        return str(Path(path).relative_to(home_root))
    except ValueError:
        return path


class AuditLog:
    def __init__(self, path: Path):
        self.path = path

    def append(self, **entry) -> None:
        entry = {"time": now_iso(), "user": _user(), "command": command_line(), **entry}
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=False) + "\n").encode())
        finally:
            os.close(fd)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover
        return str(os.getuid())


class Executor:
    def __init__(self, runner, cfg, home, progress=None):
        self.runner = runner
        self.cfg = cfg
        self.home = home
        self.progress = progress        # streamed output of long steps
        self.audit = AuditLog(home.audit_file)

    def show(self, plan: Plan) -> list[str]:
        return [render_step(self.runner, self.cfg, self.home.root, s) for s in plan.steps]

    def run(self, plan: Plan) -> list[tuple[Step, str]]:
        """Execute in order; stop at the first failure (raised, after logging)."""
        done = []
        still_running = False
        for step in plan.steps:
            if step.kind == "destroy-if-running" and not still_running:
                continue
            outcome, res = self._run_step(step)
            if step.kind == "wait-off":
                if res.exit_code not in (WAIT_OFF, WAIT_RUNNING):
                    raise RemoteError(f"cannot tell whether {step.domain} is off on "
                                      f"{step.node}: {outcome}")
                still_running = res.exit_code == WAIT_RUNNING
                if still_running and not any(s.kind == "destroy-if-running" for s in plan.steps):
                    raise RemoteError(f"{step.domain} is still running on {step.node} after "
                                      f"{step.timeout:g} s" + (f" ({step.hint})" if step.hint else ""))
                done.append((step, outcome))
                continue
            if outcome != "ok":
                raise RemoteError(f"{step.why} failed on {step.node}: {outcome}")
            done.append((step, outcome))
        return done

    def _run_step(self, step: Step):
        command = step_command(self.cfg, step)
        stdin = step.stdin_data
        timeout = None
        if step.timeout:
            timeout = step.timeout + self.cfg.ssh.command_timeout
        on_output = self.progress if step.kind == "migrate" else None
        start = time.monotonic()
        logged = command + (f" < {_shown_path(self.home.root, step.stdin_file)}" if step.stdin_file else "")
        try:
            res = self.runner.run(step.node, command, stdin=stdin, timeout=timeout,
                                  on_output=on_output)
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
