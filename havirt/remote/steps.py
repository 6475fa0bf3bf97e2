"""What planners return and the executor runs: a Plan is a list of Steps.

A step carries its command as built by remote/commands.py: argv, or a
script. It becomes text in one place, Command.text(): where the executor
prints it (dry run) or logs it (audit log), and where the runner sends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from havirt.remote.commands import Command


class StepKind(Enum):
    RUN = "run"              # run the command; a non-zero exit is a failure
    MIGRATE = "migrate"      # the same, with virsh's progress streamed to the admin
    WAIT_OFF = "wait-off"    # poll until the domain is off (commands.wait_off's exit codes)
    FORCE_OFF = "force-off"  # run only if the WAIT_OFF before it ran out of time
    LOCAL = "local"          # run on the admin host (a fence command); must exit 0
    LOCAL_UNTIL = "local-until"  # run on the admin host every 2 s until its output matches `expect`


@dataclass
class Step:
    node: str
    command: Command                   # what runs: argv, or a script
    why: str
    kind: StepKind = StepKind.RUN
    domain: str | None = None
    target: str | None = None          # MIGRATE: the receiving node
    timeout: float | None = None       # seconds the step itself may take (WAIT_OFF, MIGRATE)
    stdin_file: str | None = None      # the conf/ file whose bytes go on stdin (shown)
    stdin_data: bytes | None = None    # those bytes, read once when the spec was
    stdin_note: str = ""               # how stdin_data differs from stdin_file (shown)
    hint: str = ""                     # what the admin can do when the step fails
    expect: str | None = None          # LOCAL_UNTIL: a regular expression its output must match


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # what the admin should know (a guard relied on)
