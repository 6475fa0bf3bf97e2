"""The rule of the promise: before a domain starts anywhere it must be present
nowhere else, and every node must have answered. (Whether a domain is present
at all is `active`, in parse/virsh.py: the one spelling of libvirt's states.)"""

from __future__ import annotations

from havirt.rules.leases import lease_gaps, lease_guard_problems


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


def silent_guards(cluster, state, spec, target: str) -> dict[str, str]:
    """The silent nodes that cannot run `spec` unnoticed if it starts on
    `target`, and the guard that says so:

    * a node failed over under a guard that proved it powered off (its fence,
      or the admin's --confirm-off), silent ever since (state: down_since);
    * a node whose leases, in force at its last scan, cover every writable
      disk of `spec` in the lockspace `target` shares with it now (a copy
      running there holds the leases, and the start fails at qemu).

    Any other silent node might run it: presence_problems refuses."""
    out = {}
    covered = not lease_gaps(spec)
    for f in cluster.unreachable():
        rec = state.nodes.get(f.name)
        if rec is None:
            continue
        if rec.down_since and rec.down_guard in ("fence", "confirm-off"):
            out[f.name] = (f"node {f.name} did not answer: it is down since its failover at "
                           f"{rec.down_since} ({rec.down_guard}: powered off)")
        elif covered and not lease_guard_problems(cluster, state, f.name, [target]):
            out[f.name] = (f"node {f.name} did not answer: leases guard every disk of {spec.name} "
                           f"against it (a copy there would hold them, and {target} shares its "
                           "lockspace)")
    return out
