"""The rule of the promise: before a domain starts anywhere it must be present
nowhere else, and every node must have answered. (Whether a domain is present
at all is `active`, in parse/virsh.py: the one spelling of libvirt's states.)"""

from __future__ import annotations


def presence_problems(cluster, name: str, force: bool, allow_on: str | None = None,
                      excused=(), can_force: bool = True) -> list[str]:
    """The rule of the promise: before `name` starts anywhere (or moves from
    `allow_on`) it must be present nowhere else, and every node must have
    answered (else it might run there), unless `force`, or unless the silent
    node is `excused` (failover: a guard proves that node cannot run it).
    `can_force`: the command has --force, and the refusal says so."""
    problems = []
    for node, fact in cluster.copies(name):
        if node == allow_on:
            continue
        if fact.migrating:
            problems.append(f"{name} is arriving by migration on {node} (paused, reason {fact.reason})")
        else:
            problems.append(f"{name} is already {fact.state} on {node}")
    if not force:
        for f in cluster.unreachable():
            if f.name in excused:
                continue
            problems.append(f"node {f.name} did not answer ({f.error}): {name} might run there "
                            + ("(--force to go on without it)" if can_force
                               else f"(cannot prove {name} runs only once)"))
    return problems
