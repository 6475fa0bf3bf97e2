"""The rule of drivers: a container (<domain type='lxc'>) runs only on a node
whose libvirt LXC driver answered the last scan; a virtual machine on any.

Start, offline migration, evacuation, failover, balance, N+1 and `cluster
validate` ask here, through the fit rule (rules/fit.py) and the planners'
allowed nodes (plan/planner_input.py)."""

from __future__ import annotations

from havirt.errors import Refusal


def driver_problems(name: str, offers_containers: bool | None, why_not: str | None,
                    container: bool) -> list[str]:
    """Why a domain (`container` or not) cannot run on node `name`, which
    offers containers or not (`why_not`: what its LXC driver said); empty: it can."""
    if not container or offers_containers:
        return []
    return [f"containers: {name} offers none (libvirt's LXC driver: "
            f"{why_not or 'not asked yet'}); install libvirt-daemon-driver-lxc there, "
            "with the cgroup controllers mounted"]


def live_move_problems(name: str, container: bool) -> list[str]:
    """Why a running domain cannot move live (empty: it can): libvirt cannot
    migrate a running container; it is stopped and started on the target."""
    if container:
        return [f"{name} is a container: libvirt cannot migrate a running container; use --offline "
                "(it stops it and starts it on the target)"]
    return []


def vm_only(spec, verb: str) -> None:
    """Refuse `havirt domain VERB` of a container: the changes in place
    (set, attach-*, detach-*, resize-disk), snapshots and backups act on a
    virtual machine's devices and disk images, which a container has not."""
    if spec.container:
        raise Refusal(f"{spec.name} is a container: domain {verb} is for virtual machines "
                      "(a container has no disk images or devices to change; edit conf/ and restart it)")
