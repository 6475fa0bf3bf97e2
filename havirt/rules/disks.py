"""Disk visibility: whether a node sees a domain's disk, one three-way rule.

A scan checks, on every node that answers, the disk paths the command needs.
For a (node, path) the answer is one of:

* ``SEEN``: the node said the path exists;
* ``MISSING``: the node said it does not;
* ``NOT_CHECKED``: nobody knows: the scan did not check that path, or the
  node did not answer.

Only ``SEEN`` lets a domain start or move to a node: a path not checked is
never taken as there, nor as missing. Placement (``fit.fit_problems``), the
nodes balance, evacuation, failover and N+1 may use for a domain, ``cluster
validate`` and ``domain info`` all ask here.

What-if planning (``cluster status --no-scan``, ``cluster balance
--no-scan``) reads only the state file, which records no disk paths: there,
by decision, every disk of conf/ counts as seen by every node
(:func:`what_if_paths`). A what-if plan is never executed; every command
that acts (start, migrate, balance, evacuation, failover) asks the nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SEEN, MISSING, NOT_CHECKED = "seen", "missing", "not checked"


def disk_state(paths: Mapping[str, bool], path: str) -> str:
    """One node: SEEN, MISSING or NOT_CHECKED, from what its scan said
    (`paths`: path -> exists, for the paths it checked)."""
    exists = paths.get(path)
    return NOT_CHECKED if exists is None else SEEN if exists else MISSING


def disks_seen(paths: Mapping[str, bool], disks: Iterable[str]) -> bool:
    """Every one of `disks` is SEEN on the node."""
    return all(disk_state(paths, p) == SEEN for p in disks)


def disk_problems(node: str, paths: Mapping[str, bool], disks: Iterable[str]) -> list[str]:
    """Why the disks keep a domain off `node` (empty: every one is SEEN there)."""
    problems = []
    for path in disks:
        state = disk_state(paths, path)
        if state == MISSING:
            problems.append(f"disk: {path} does not exist on {node}")
        elif state == NOT_CHECKED:
            problems.append(f"disk: {path} was not checked on {node}")
    return problems


@dataclass(frozen=True)
class Visibility:
    """One path over several nodes: which see it, miss it, were not checked."""

    seen: tuple[str, ...]
    missing: tuple[str, ...]
    not_checked: tuple[str, ...]

    @property
    def everywhere(self) -> bool | None:
        """True: every node sees it; False: some node misses it; None: not known."""
        if self.missing:
            return False
        return True if self.seen and not self.not_checked else None


def visibility(cluster, path: str, nodes: Iterable[str] | None = None) -> Visibility:
    """`path` on `nodes` (default: every node of the scan); a node that did
    not answer has checked nothing."""
    out: dict[str, list[str]] = {SEEN: [], MISSING: [], NOT_CHECKED: []}
    for name in sorted(cluster.nodes) if nodes is None else nodes:
        facts = cluster.nodes.get(name)
        paths = facts.paths if facts is not None and facts.reachable else {}
        out[disk_state(paths, path)].append(name)
    return Visibility(tuple(out[SEEN]), tuple(out[MISSING]), tuple(out[NOT_CHECKED]))


def what_if_paths(paths: Iterable[str]) -> dict[str, bool]:
    """What a node is taken to say about `paths` in what-if planning: each is
    SEEN (see the module docstring: the state file records no disk paths)."""
    return dict.fromkeys(paths, True)
