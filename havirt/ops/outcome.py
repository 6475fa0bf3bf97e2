"""What a changing command did, or would do on a dry run: the CLI renders it."""

from __future__ import annotations

from dataclasses import dataclass, field

from havirt.scan.cluster import Finding


@dataclass
class Outcome:
    """What a changing command did (or would do, on a dry run)."""

    dry_run: bool
    lines: list[str] = field(default_factory=list)   # the plan as shell lines
    done: list[str] = field(default_factory=list)    # what happened
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # printed before the plan
    data: dict = field(default_factory=dict)         # the plan as data (JSON), where there is one
    failed: bool = False                             # some part failed (said in `done`)
