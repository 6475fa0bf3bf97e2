"""Failover decided purely: from a fresh scan, the state, the configuration
and conf/'s definitions, the guard that proves a silent node's domains
cannot run twice, and where each restarts (no I/O here).

Guards, strongest first:
  leases       libvirt's leases were in force on the silent node at its last
               scan and are on every receiving node, in the same lockspace:
               if the node is in fact alive, each start fails at qemu;
  fence        the node's fence command (config.yaml) powered it off, and its
               status command confirmed it;
  confirm-off  the admin says the node is powered off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from havirt.errors import Refusal
from havirt.plan.balance import Move, plan_failover
from havirt.plan.planner_input import (
    allowed_nodes,
    node_loads,
    planner_domain,
    planner_domains,
    planner_nodes,
)
from havirt.remote import commands as remote
from havirt.remote.steps import Plan, Step, StepKind
from havirt.rules.leases import lease_gaps, lease_guard_problems


class Guard(Enum):
    LEASES = "leases"
    FENCE = "fence"
    CONFIRM_OFF = "confirm-off"


@dataclass
class FailoverPlan:
    node: str
    guard: Guard | None                      # None: refused
    why: list[str]                           # how the guard holds, or why none does
    moves: list[Move] = field(default_factory=list)
    blocking: list[tuple[str, str]] = field(default_factory=list)
    fence: Plan = field(default_factory=Plan)    # the fence steps (guard fence)


class Result(Enum):
    """What became of one domain a failover tried to restart."""

    STARTED = "started"
    LEASE_REFUSED = "refused by its lease"     # the silent node is alive and holds it
    DID_NOT_FIT = "not started"                # the re-check before the start said no
    FAILED = "failed"                          # the start failed, or was not confirmed


@dataclass
class Restart:
    domain: str
    result: Result
    node: str | None          # where it runs now (None: nowhere known)
    detail: str = ""

    @property
    def text(self) -> str:
        """What happened, in one phrase (shown, in JSON `outcome`, and in cron's mail)."""
        if self.result is Result.STARTED:
            return f"started on {self.node}"
        if self.result is Result.LEASE_REFUSED:
            return f"refused by its lease: it still runs on {self.node}, which is alive"
        return f"{self.result.value}: {self.detail}" if self.result is Result.DID_NOT_FIT \
            else self.detail


def last_seen_on(state, node: str) -> list[str]:
    """Domains the last scans saw running on `node` (before this command's scan)."""
    return sorted(d.name for d in state.domains.values() if d.node == node and d.active)


def to_restart(cluster, state, candidates, specs: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Which of `candidates` to restart, and those that stay down (why)."""
    names, skipped = [], []
    for name in candidates:
        rec = state.domains.get(name)
        copies = cluster.copies(name)
        if rec is not None and rec.maintenance:
            skipped.append((name, "in maintenance: failover never starts it"))
        elif copies:
            skipped.append((name, f"already {copies[0][1].state} on {copies[0][0]}"))
        elif name not in specs:
            skipped.append((name, "no usable XML in conf/"))
        else:
            names.append(name)
    return names, skipped


def choose_guard(cluster, state, cfg, node, receivers, names, specs, confirm_off,
                 allow_confirm) -> tuple[Guard | None, list[str], dict[str, str]]:
    """(guard, how it holds or why none does, domains the guard leaves out: why)."""
    lease_problems = lease_guard_problems(cluster, state, node, receivers) if receivers else \
        ["no node can receive"]
    uncovered = {n: g for n in names if (g := lease_gaps(specs[n]))}
    rec = state.nodes[node]
    if not lease_problems and not uncovered:
        return Guard.LEASES, [f"leases were in force on {node} at its last scan ({rec.last_scan}) "
                              f"and are on {', '.join(receivers)}, in the same lockspace "
                              f"({rec.lockspace})"], {}
    if cfg.fence.get(node) is not None:
        return Guard.FENCE, [f"{node} is powered off by its fence command first"], {}
    if confirm_off and allow_confirm:
        return Guard.CONFIRM_OFF, [f"the admin says {node} is powered off (--confirm-off)"], {}
    if not lease_problems:
        left = {n: f"leases cannot protect it: {'; '.join(g)}" for n, g in uncovered.items()}
        return Guard.LEASES, [f"leases are in force on {node} and {', '.join(receivers)}, same "
                              "lockspace; the domains they cannot protect stay down"], left
    why = [f"leases: {'; '.join(lease_problems)}", f"fence: none configured for {node}"]
    why.append("--confirm-off: not given" if allow_confirm else "--confirm-off: never from recovery")
    return None, why, {}


def fence_plan(state, cfg, node: str) -> Plan:
    fence, rec = cfg.fence[node], state.nodes[node]
    return Plan(steps=[
        Step(node=node, command=remote.local(fence.argv("power_off", node, rec.address)),
             kind=StepKind.LOCAL, why=f"power {node} off (fence)", timeout=fence.timeout),
        Step(node=node, command=remote.local(fence.argv("power_status", node, rec.address)),
             kind=StepKind.LOCAL_UNTIL, expect=fence.off_when.pattern, timeout=fence.timeout,
             why=f"confirm {node} is off"),
    ])


def decide_failover(cluster, state, cfg, node: str, candidates, specs: dict, to=(),
                    confirm_off=False, allow_confirm=True) -> FailoverPlan:
    """The guard, and where each domain of `node` restarts (the placement
    itself is balance.plan_failover's). Refuses a node that answers."""
    state.node(node)
    for t in to or ():
        state.node(t)
    facts = cluster.nodes[node]
    if facts.reachable:
        raise Refusal(f"node {node} answers: use havirt node maintenance {node} on")
    if facts.alive:
        confirm_off = False         # its sshd answered (virsh failed): it is not powered off
    nodes = [n for n in planner_nodes(cluster, state, cfg) if n.name != node and (not to or n.name in to)]
    receivers = [n.name for n in nodes if not n.maintenance]
    names, skipped = to_restart(cluster, state, candidates, specs)
    guard, why, left_out = choose_guard(cluster, state, cfg, node, receivers, names, specs,
                                        confirm_off, allow_confirm)
    plan = FailoverPlan(node, guard, why, blocking=skipped + sorted(left_out.items()))
    if guard is None:
        return plan
    if guard is Guard.FENCE:
        plan.fence = fence_plan(state, cfg, node)
    loads = node_loads(cluster, state, cfg, nodes)
    leaving = [planner_domain(name, node, None, specs[name], "", allowed_nodes(loads, specs[name]))
               for name in names if name not in left_out]
    evac = plan_failover(nodes, planner_domains(cluster, state, cfg, nodes, specs) + leaving, node)
    plan.moves, plan.blocking = evac.moves, plan.blocking + evac.blocking
    return plan
