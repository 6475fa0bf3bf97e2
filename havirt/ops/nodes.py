"""Node operations: add, set, remove, scan (with recovery), maintenance.

Each is one unit of work (ops/work.py): the lock, the state read once under
it, a fresh scan where a decision needs one, one commit.
"""

from __future__ import annotations

from havirt.errors import ConfigError, NodeUnreachable, Refusal, UsageError
from havirt.names import check_address, check_name, check_user
from havirt.ops.outcome import Outcome
from havirt.scan.fresh import Scan
from havirt.store.state import NodeRecord


def node_add(app, name, address=None, user=None, port=None, memory_cap=None) -> NodeRecord:
    check_name("node", name)
    address = check_address(name if address is None else address)   # '' is no address
    if user is not None:
        check_user(user)
    with app.work(dry_run=False, record=False) as w:    # written only once the node is in
        if name in w.state.nodes:
            raise UsageError(f"node {name} exists already (havirt node set {name} ...)")
        for other in w.state.nodes.values():
            if other.address == address:
                raise UsageError(f"node {other.name} has the address {other.address} already")
        rec = NodeRecord(name=name, address=address, user=user, port=port,
                         memory_cap_mib=memory_cap)
        w.state.nodes[name] = rec
        facts = w.scan([name]).cluster.nodes[name]
        if not facts.reachable:
            raise NodeUnreachable(name, facts.error)
        for other in w.state.nodes.values():
            if other.name != name and other.hostname and other.hostname == facts.hostname:
                raise UsageError(f"{rec.address} is host {facts.hostname}, already node {other.name}")
        w.changed()
        return rec


def node_set(app, name, **changes) -> NodeRecord:
    if changes.get("address") is not None:
        check_address(changes["address"])
    if changes.get("user") is not None:
        check_user(changes["user"])
    with app.work(dry_run=False) as w:
        rec = w.state.node(name)
        for key, value in changes.items():
            setattr(rec, key, value)
        w.changed()
        return rec


def node_remove(app, name, force=False) -> list[str]:
    with app.work(dry_run=False) as w:
        w.state.node(name)
        facts = w.scan([name]).cluster.nodes[name]
        if not facts.reachable and not force:
            raise Refusal(f"node {name} did not answer ({facts.error}); domains may run there "
                          "(--force removes it anyway)")
        running = sorted(d.name for d in facts.every_domain() if d.active)
        if running:
            raise Refusal(f"domains run on {name}: {', '.join(running)} "
                          "(migrate or shut them down first)")
        forgotten = []
        for d in w.state.domains.values():
            if d.node == name:
                # keep the last known place: starting it elsewhere needs --force
                d.stale = True
                forgotten.append(d.name)
        del w.state.nodes[name]
        w.changed()
        return forgotten


def node_scan(app, names=(), recover=False) -> Scan:
    """Scan and record; with `recover`, fail over nodes silent for too long
    (see failover.recover): for real, unless --dryrun was given. The scan's
    findings come with what recovery did or could not do."""
    if not app.state.nodes:   # a mistyped home must never make cron silently blind
        raise ConfigError(f"no nodes in the home {app.home.root}: nothing to scan (check --home "
                          "or HAVIRT_HOME, or add one: havirt node add NAME --address ADDRESS)")
    # the scan is recorded whatever; recovery runs unless --dryrun
    with app.work(dry_run=app.force_dryrun, record=True) as w:
        scan = w.scan(list(names) or None)
        if recover:
            from havirt.ops.failover import recover as recover_nodes
            scan = Scan(scan.cluster, scan.findings + recover_nodes(w))
        return scan


def set_maintenance(w, kind, name, on: bool) -> None:
    """Set the flag of a node or a domain (an admin fact: written, dry run or not)."""
    if kind == "node":
        rec = w.state.node(name)
    else:
        check_name("domain", name)
        if name not in w.conf.names() and name not in w.state.domains:
            raise UsageError(f"unknown domain {name!r}")
        rec = w.state.domain(name)
    rec.maintenance = on
    w.changed()


def node_maintenance(app, name, on: bool, evacuate: bool = True) -> Outcome | None:
    """The flag at once, and for `on` the evacuation (printed, or run with
    --yes), under one lock."""
    from havirt.ops.moves import evacuate as evacuate_node
    with app.work() as w:
        set_maintenance(w, "node", name, on)
        app.out.say(f"node {name}: maintenance {'on' if on else 'off'}")
        return evacuate_node(w, name) if on and evacuate else None


def domain_maintenance(app, name, on: bool) -> None:
    with app.work(dry_run=False) as w:
        set_maintenance(w, "domain", name, on)
